"""Segmentation networks for the simulator teacher and the on-vehicle student.

Both are the same compact encoder-decoder (:class:`SegNet`) at different widths, so a student
is a teacher with fewer channels and the MACs ratio is set by ``SegNetConfig.widths``.
Normalisation lives inside the model: inputs are RGB floats in [0, 1], which is what
adversarial attacks and robustness numbers need.

Example:
    >>> import torch
    >>> net = SegNet(STUDENT_CONFIG)
    >>> net(torch.rand(1, 3, 64, 128)).shape
    torch.Size([1, 19, 64, 128])
    >>> count_macs(net, 128, 256) < count_macs(SegNet(TEACHER_CONFIG), 128, 256) / 10
    True
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from perception.labels import NUM_CLASSES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SegNetConfig:
    """Widths and depth of a :class:`SegNet`.

    widths: channels of the four encoder stages at strides 4, 8, 16, 32 (the stem runs at 2).
    blocks: residual blocks per stage.
    decoder: channels of the top-down decoder (feature-pyramid style).
    num_classes: output channels (19 canonical trainIds).
    """

    widths: tuple[int, int, int, int] = (32, 64, 96, 128)
    blocks: tuple[int, int, int, int] = (1, 2, 2, 2)
    stem: int = 16  # channels of the stride-2 stem
    decoder: int = 64
    num_classes: int = NUM_CLASSES  # the canonical trainIds


TEACHER_CONFIG = SegNetConfig(widths=(48, 96, 160, 224), blocks=(2, 2, 3, 2), stem=24, decoder=96)
STUDENT_CONFIG = SegNetConfig(widths=(16, 24, 48, 64), blocks=(1, 1, 2, 1), stem=8, decoder=24)
# the same MACs budget spent deeper: thinner early stages, more and wider blocks at strides 8-32
DEEP_STUDENT_CONFIG = SegNetConfig(widths=(12, 24, 48, 96), blocks=(1, 2, 3, 2), stem=8, decoder=24)
# about half the student's MACs: the cheapest entry of the sizing table (bench/ceiling.py)
TINY_STUDENT_CONFIG = SegNetConfig(widths=(8, 16, 32, 48), blocks=(1, 1, 1, 1), stem=8, decoder=16)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1, groups: int = 1):
        padding = dilation * (kernel // 2)
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    """Depthwise-separable residual block: dw 3x3 -> pw 1x1 (expand) -> pw 1x1 (project)."""

    def __init__(self, channels: int, dilation: int = 1, expand: int = 2):
        super().__init__()
        hidden = channels * expand
        self.depthwise = ConvBNReLU(channels, channels, 3, dilation=dilation, groups=channels)
        self.expand = ConvBNReLU(channels, hidden, 1)
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return F.relu(x + self.project(self.expand(self.depthwise(x))))


class SegNet(nn.Module):
    """Encoder (stride 32) + feature-pyramid decoder; logits at the input size."""

    def __init__(self, config: SegNetConfig = SegNetConfig()):
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
        self.context = ConvBNReLU(config.widths[3], config.decoder, 1)
        self.lateral = nn.ModuleList([ConvBNReLU(w, config.decoder, 1) for w in config.widths[:3]])
        self.smooth = nn.ModuleList(
            [ConvBNReLU(config.decoder, config.decoder, 3, groups=config.decoder) for _ in range(3)]
        )
        self.stem_lateral = ConvBNReLU(config.stem, config.decoder, 1)
        self.head = nn.Sequential(
            ConvBNReLU(config.decoder, config.decoder, 3, groups=config.decoder),
            nn.Conv2d(config.decoder, config.num_classes, 1),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features at stride 2, before the classifier (for feature distillation).

        Shape:
            x (B, 3, H, W) float in [0, 1] -> (B, decoder, H/2, W/2)
        """
        return self._decode(x)[0]

    def _decode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The decoder's output and the four encoder stages' (strides 4, 8, 16, 32).

        Shape:
            x (B, 3, H, W) -> (B, D, H/2, W/2), [(B, widths[i], H/2^(i+2), W/2^(i+2))] * 4
        """
        x = (x - self.mean) / self.std  # (B, 3, H, W)
        stem = self.stem(x)  # (B, stem, H/2, W/2)
        skips = []
        y = stem
        for stage in self.stages:
            y = stage(y)
            skips.append(y)  # strides 4, 8, 16, 32
        top = self.context(skips[3])  # (B, D, H/32, W/32)
        for level in (2, 1, 0):
            lateral = self.lateral[level](skips[level])  # (B, D, h, w)
            top = F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            top = self.smooth[level](top + lateral)
        top = F.interpolate(top, size=stem.shape[-2:], mode="bilinear", align_corners=False)
        return top + self.stem_lateral(stem), skips  # (B, D, H/2, W/2)

    def tap(self, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`coarse_logits` (the same values) and the feature map of ``layer``, one forward
        pass: ``"decoder"`` (before the classifier, stride 2) or ``"stage1"`` .. ``"stage4"``
        (the encoder stages, strides 4 .. 32; :data:`perception.taps.TAP_STRIDES`).

        Shape:
            x (B, 3, H, W) -> (B, K, H/2, W/2), (B, tap_channels(layer), H/s, W/s)
        """
        decoded, skips = self._decode(x)  # (B, D, H/2, W/2)
        return self.head(decoded), pick_layer(decoded, skips, layer)  # (B, K, H/2, W/2), (B, C, h, w)

    def tap_channels(self, layer: str) -> int:
        """Channels of :meth:`tap`'s feature map at ``layer``."""
        return layer_channels(self.config.decoder, self.config.widths, layer)

    def coarse_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits on the network's own output grid, before the upsampling to the input size
        (training losses there cost a fraction of full-size ones).

        Shape:
            x (B, 3, H, W) float in [0, 1] -> (B, num_classes, H/2, W/2)
        """
        return self.head(self.features(x))  # (B, K, H/2, W/2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: x (B, 3, H, W) float in [0, 1] -> logits (B, num_classes, H, W)."""
        logits = self.coarse_logits(x)  # (B, K, H/2, W/2)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def pick_layer(decoded: torch.Tensor, skips: list[torch.Tensor], layer: str) -> torch.Tensor:
    """The feature map named ``layer`` of one pass: the decoder's output, or an encoder stage's.

    Shape:
        decoded (B, D, h, w), skips [(B, widths[i], h_i, w_i)] * 4 -> the chosen map
    """
    return decoded if layer == "decoder" else skips[_stage_index(layer)]


def layer_channels(decoder: int, widths: tuple[int, ...], layer: str) -> int:
    """Channels of the map :func:`pick_layer` gives for ``layer`` in a net of these widths.

    Example:
        >>> layer_channels(96, (16, 32, 64, 128), "decoder"), layer_channels(96, (16, 32, 64, 128), "stage2")
        (96, 32)
    """
    return decoder if layer == "decoder" else widths[_stage_index(layer)]


def _stage_index(layer: str) -> int:
    """``"stage1"`` .. ``"stage4"`` -> 0 .. 3; anything else is refused by name."""
    from perception.taps import FEATURE_LAYERS

    if layer not in FEATURE_LAYERS or layer == "decoder":
        raise ValueError(f"unknown feature layer {layer!r} (choose {', '.join(FEATURE_LAYERS)})")
    return int(layer[len("stage"):]) - 1


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, height: int, width: int) -> int:
    """Multiply-accumulates of convolutions and linear layers for one (1, 3, height, width) input.

    The one MACs counter of the project (teachers and students alike). It runs the forward
    pass with hooks on a meta-device copy of ``module``: no real arithmetic, the module itself
    untouched (its device, mode and hooks), and the figure follows the architecture.

    Example:
        >>> count_macs(nn.Conv2d(3, 8, 3, padding=1), 10, 12)  # 10 * 12 outputs * 8 channels * 3 * 3 * 3
        25920
    """
    import copy

    meta = copy.deepcopy(module).to(device="meta", dtype=torch.float32).eval()
    total = 0

    def conv_hook(layer: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        per_output = layer.kernel_size[0] * layer.kernel_size[1] * (layer.in_channels // layer.groups)
        total += int(output[0].numel()) * per_output

    def linear_hook(layer: nn.Linear, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += int(output[0].numel()) * layer.in_features

    for layer in meta.modules():
        if isinstance(layer, nn.Conv2d):
            layer.register_forward_hook(conv_hook)
        elif isinstance(layer, nn.Linear):
            layer.register_forward_hook(linear_hook)
    with torch.no_grad():
        meta(torch.zeros(1, 3, height, width, device="meta"))  # (1, 3, H, W)
    return total
