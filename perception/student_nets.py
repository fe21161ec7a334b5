"""Student networks by name: the shipped simulator student and a faster one for real logs.

``student.net`` in a run's config and ``student_training.net`` (``odistill train-student --set student_training.net=NAME``)
pick one of :data:`STUDENT_NETS`:

- ``"default"``: :class:`perception.nets.SegNet` with ``STUDENT_CONFIG`` (the simulator
  student; its decoder and classifier run at stride 2);
- ``"deep"``: the same MACs as ``"default"`` spent deeper (thinner early stages, more blocks);
- ``"tiny"``: a SegNet at about half the default student's MACs;
- ``"fast"``: :class:`FastSegNet`, the same encoder with a decoder that stops at stride 4,
  so no layer runs at stride 2 except the stem: about 10 to 14 times faster than the
  ESPNetv2 s2.0 teacher at the same input size on one CPU thread (``bench/real_log.py``).

Both take RGB floats in [0, 1] (normalisation inside) and give 19 canonical logits at the
input size, so the online learner and the evaluator treat them alike.

Example:
    >>> import torch
    >>> net = build_student_net("fast")
    >>> net(torch.rand(1, 3, 64, 96)).shape
    torch.Size([1, 19, 64, 96])
    >>> build_student_net("huge")
    Traceback (most recent call last):
    ...
    ValueError: unknown student net 'huge' (choose one of: deep, default, fast, tiny)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from perception.labels import NUM_CLASSES
from perception.nets import (DEEP_STUDENT_CONFIG, IMAGENET_MEAN, IMAGENET_STD, STUDENT_CONFIG, TINY_STUDENT_CONFIG, ConvBNReLU,
                             ResidualBlock, SegNet, layer_channels, pick_layer)


@dataclass(frozen=True)
class FastSegNetConfig:
    """Widths and depth of a :class:`FastSegNet`.

    widths: channels of the four encoder stages at strides 4, 8, 16, 32 (the stem runs at 2).
    blocks: residual blocks per stage.
    """

    widths: tuple[int, int, int, int] = (16, 24, 48, 64)
    blocks: tuple[int, int, int, int] = (1, 1, 2, 1)
    stem: int = 8  # channels of the stride-2 stem
    decoder: int = 32  # channels of the top-down decoder (strides 32 -> 4)
    num_classes: int = NUM_CLASSES  # canonical trainIds

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or len(self.blocks) != 4:
            raise ValueError(f"FastSegNetConfig: widths and blocks need 4 stages, got {self.widths}, {self.blocks}")
        if min(self.widths) < 1 or min(self.blocks) < 0 or self.stem < 1 or self.decoder < 1 or self.num_classes < 1:
            raise ValueError(f"FastSegNetConfig: channel counts must be positive, got {self}")


class FastSegNet(nn.Module):
    """Encoder (stride 32) + feature-pyramid decoder ending at stride 4; logits at the input size.

    Example:
        >>> net = FastSegNet(FastSegNetConfig(decoder=16)).eval()
        >>> net.logits_stride4(torch.rand(2, 3, 64, 96)).shape
        torch.Size([2, 19, 16, 24])
    """

    def __init__(self, config: FastSegNetConfig = FastSegNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = ConvBNReLU(3, config.stem, 3, stride=2)
        stages = []
        cin = config.stem
        for index, (width, blocks) in enumerate(zip(config.widths, config.blocks)):
            dilation = 2 if index == 3 else 1
            layers: list[nn.Module] = [ConvBNReLU(cin, width, 3, stride=2)]
            layers += [ResidualBlock(width, dilation=dilation) for _ in range(blocks)]
            stages.append(nn.Sequential(*layers))
            cin = width
        self.stages = nn.ModuleList(stages)
        d = config.decoder
        self.context = ConvBNReLU(config.widths[3], d, 1)
        self.lateral = nn.ModuleList([ConvBNReLU(w, d, 1) for w in config.widths[:3]])
        self.smooth = nn.ModuleList([ConvBNReLU(d, d, 3, groups=d) for _ in range(3)])
        self.head = nn.Sequential(ConvBNReLU(d, d, 3, groups=d), nn.Conv2d(d, config.num_classes, 1))

    def logits_stride4(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits at stride 4, before the final upsampling.

        Shape:
            x (B, 3, H, W) float in [0, 1] -> (B, K, ceil(H/4), ceil(W/4))
        """
        return self.head(self.features(x))  # (B, K, H/4, W/4)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features at stride 4, before the classifier (what a depth head reads).

        Shape:
            x (B, 3, H, W) float in [0, 1] -> (B, decoder, ceil(H/4), ceil(W/4))
        """
        return self._decode(x)[0]  # (B, D, H/4, W/4)

    def _decode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The decoder's output (stride 4) and the four encoder stages' (strides 4, 8, 16, 32).

        Shape:
            x (B, 3, H, W) -> (B, D, H/4, W/4), [(B, widths[i], H/2^(i+2), W/2^(i+2))] * 4
        """
        x = (x - self.mean) / self.std  # (B, 3, H, W)
        y = self.stem(x)  # (B, stem, H/2, W/2)
        skips = []
        for stage in self.stages:
            y = stage(y)
            skips.append(y)  # strides 4, 8, 16, 32
        top = self.context(skips[3])  # (B, D, H/32, W/32)
        for level in (2, 1, 0):
            lateral = self.lateral[level](skips[level])  # (B, D, h, w)
            top = F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            top = self.smooth[level](top + lateral)  # (B, D, h, w)
        return top, skips  # (B, D, H/4, W/4)

    def tap(self, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`coarse_logits` and the feature map of ``layer`` in one forward pass (see
        :meth:`perception.nets.SegNet.tap`; this net's ``"decoder"`` ends at stride 4).

        Shape:
            x (B, 3, H, W) -> (B, K, H/4, W/4), (B, tap_channels(layer), H/s, W/s)
        """
        decoded, skips = self._decode(x)  # (B, D, H/4, W/4)
        return self.head(decoded), pick_layer(decoded, skips, layer)  # (B, K, H/4, W/4), (B, C, h, w)

    def tap_channels(self, layer: str) -> int:
        """Channels of :meth:`tap`'s feature map at ``layer``."""
        return layer_channels(self.config.decoder, self.config.widths, layer)

    def coarse_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits on the network's own output grid (see :meth:`SegNet.coarse_logits`).

        Shape:
            x (B, 3, H, W) float in [0, 1] -> (B, num_classes, H/4, W/4)
        """
        return self.logits_stride4(x)  # (B, K, H/4, W/4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: x (B, 3, H, W) float in [0, 1] -> logits (B, num_classes, H, W).

        The upsampling runs channels-last (about 10% faster on a CPU; same values).
        """
        logits = self.logits_stride4(x).contiguous(memory_format=torch.channels_last)  # (B, K, H/4, W/4)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, K, H, W)


FAST_STUDENT_CONFIG = FastSegNetConfig()

STUDENT_NETS: dict[str, Callable[[], nn.Module]] = {
    "default": lambda: SegNet(STUDENT_CONFIG),
    "fast": lambda: FastSegNet(FAST_STUDENT_CONFIG),
    "deep": lambda: SegNet(DEEP_STUDENT_CONFIG),
    "tiny": lambda: SegNet(TINY_STUDENT_CONFIG),
}


def build_student_net(name: str = "default") -> nn.Module:
    """A freshly initialised student network of the named kind (seed torch before calling)."""
    if name not in STUDENT_NETS:
        raise ValueError(f"unknown student net {name!r} (choose one of: {', '.join(sorted(STUDENT_NETS))})")
    return STUDENT_NETS[name]()
