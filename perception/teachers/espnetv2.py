"""ESPNetv2 semantic segmentation (Mehta et al., CVPR 2019) and a teacher around it.

Our own implementation of the EdgeNets segmentation network: an EESP encoder (``base_net``,
the ImageNet classifier without its last stage) and a decoder of efficient pyramid-pooling
modules (``bu_dec_l*``) that fuses encoder features back in (``merge_enc_dec_l*``,
``bu_br_l*``). Module names follow the published checkpoints, so the pretrained Cityscapes
weights load with ``strict=True``.

The network, stage by stage (s = width; channels C = ``WIDTH_CHANNELS[s]``):

- ``level1``: 3x3 conv stride 2 -> BN -> PReLU (stride 2).
- ``level2_0``, ``level3_0``, ``level4_0``: strided EESP units (:class:`StridedEESP`):
  3x3 average pooling of the input concatenated with a stride-2 EESP block, plus the
  input-reinforcement branch (the normalised image, average-pooled to the same size, through
  3x3 CBR and 1x1 CB), then PReLU. Strides 4, 8, 16.
- ``level3`` (3 blocks) and ``level4`` (7 blocks): residual EESP blocks (:class:`EESP`):
  grouped 1x1 projection (4 groups) -> 4 depth-wise 3x3 dilated branches combined by
  hierarchical feature fusion (running sums) -> concat -> BN/PReLU -> grouped 1x1 expansion
  (4 groups) -> BN -> + input -> PReLU. The dilations come from a receptive-field limit per
  level (13, 11, 9, 9, 7 for level2_0, level3_0, level3, level4_0, level4).
- Decoder: pyramid pooling at scales (2, 1.5, 1, 0.5, 0.1) on the stride-16 features, then
  three times: upsample x2 (bilinear, ``align_corners=True``), add the gated projection of the
  encoder features at that stride, BN/PReLU, pyramid pooling. The last one gives the class
  logits at stride 2; a final bilinear upsampling (``align_corners=True``) gives full size.

Inputs are RGB floats in [0, 1]; the ImageNet normalisation happens inside the model, so
gradient attacks work in pixel space. Any input size works; sizes that are multiples of 16
reproduce the original code exactly (it upsamples by a fixed factor of 2 and needs them).

Example:
    >>> import torch
    >>> net = ESPNetv2Segmentation(width=0.5, num_classes=20).eval()
    >>> net(torch.rand(1, 3, 64, 96)).shape
    torch.Size([1, 20, 64, 96])
    >>> net.decode(torch.rand(1, 3, 64, 96)).shape  # logits before the last upsampling
    torch.Size([1, 20, 32, 48])
    >>> [block.dilations for block in (net.base_net.level3[0], net.base_net.level4[0])]
    [(1, 2, 3, 4), (1, 1, 2, 3)]
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception.device import resolve_device
from perception.labels import IGNORE_INDEX, NUM_CLASSES
from perception.nets import count_macs
from perception.teacher import TeacherOutput
from perception.teachers.common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckpointMismatchError,
    bounded_size,
    check_images,
    images_to_tensor,
    load_safetensors,
    load_state_strict,
    resize,
    resolve_dtype,
    round_to_multiple,
)

logger = logging.getLogger(__name__)

# channels of level1, level2_0, level3, level4 for each published width s
WIDTH_CHANNELS: dict[float, tuple[int, int, int, int]] = {
    0.5: (16, 32, 64, 128),
    1.0: (32, 64, 128, 256),
    1.25: (32, 80, 160, 320),
    1.5: (32, 96, 192, 384),
    2.0: (32, 128, 256, 512),
}
BRANCHES = 4  # parallel depth-wise branches in every EESP block
LEVEL3_BLOCKS = 3
LEVEL4_BLOCKS = 7
# receptive-field limits: level2_0, level3_0, level3 blocks, level4_0, level4 blocks
RECEPTIVE_LIMITS = (13, 11, 9, 9, 7)
REINFORCE_CHANNELS = 3  # width of the input-reinforcement branch's first conv
PYRAMID_SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)
DECODER_BASE = 16  # decoder widths are 4x, 3x, 2x this (Cityscapes / Pascal setting)
SIZE_MULTIPLE = 16  # sizes where the decoder's x2 upsampling meets the encoder exactly
CITYSCAPES_CLASSES_WITH_BACKGROUND = NUM_CLASSES + 1  # 19 trainIds + background
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = REPO_ROOT.parent / "shared" / "data" / "teachers" / "espnetv2_s2.0_cityscapes.safetensors"


# --------------------------------------------------------------------------- building blocks
class ConvBNPReLU(nn.Module):
    """conv (no bias) -> BN -> PReLU, as attributes ``conv``, ``bn``, ``act`` (encoder style)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ConvBN(nn.Module):
    """conv (no bias) -> BN, as attributes ``conv``, ``bn``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class BNPReLU(nn.Module):
    """BN -> PReLU, as attributes ``bn``, ``act``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class DilatedDepthwise(nn.Module):
    """One EESP branch: a depth-wise 3x3 conv with dilation ``d`` (attribute ``conv``)."""

    def __init__(self, channels: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            channels, channels, 3, stride, padding=dilation, dilation=dilation, groups=channels, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SeqConvBNPReLU(nn.Module):
    """conv -> BN -> PReLU held in one ``nn.Sequential`` named ``cbr`` (decoder style)."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, 1, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbr(x)


class SeqBNPReLU(nn.Module):
    """BN -> PReLU held in one ``nn.Sequential`` named ``br`` (decoder style)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.br = nn.Sequential(nn.BatchNorm2d(channels), nn.PReLU(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.br(x)


class ChannelShuffle(nn.Module):
    """Interleave ``groups`` equal channel groups: (g, c/g) -> (c/g, g)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, self.groups, c // self.groups, h, w)  # (B, g, C/g, H, W)
        return x.transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)


def eesp_dilations(branches: int, receptive_limit: int) -> tuple[int, ...]:
    """Dilation of each EESP branch: kernels 3, 5, 7, ... capped by the limit (back to 3), sorted.

    >>> eesp_dilations(4, 9), eesp_dilations(4, 7)
    ((1, 2, 3, 4), (1, 1, 2, 3))
    """
    sizes = sorted(3 + 2 * i if 3 + 2 * i <= receptive_limit else 3 for i in range(branches))
    return tuple((size - 1) // 2 for size in sizes)


class EESP(nn.Module):
    """Extremely efficient spatial pyramid block: reduce -> split -> transform -> merge.

    With ``stride=2`` it returns the expanded features before the residual and activation
    (the :class:`StridedEESP` unit finishes them); ``module_act`` then goes unused, as in
    the original.

    Example:
        >>> block = EESP(64, 64, stride=1, branches=4, receptive_limit=9).eval()
        >>> block(torch.rand(1, 64, 10, 12)).shape
        torch.Size([1, 64, 10, 12])
    """

    def __init__(self, cin: int, cout: int, stride: int, branches: int, receptive_limit: int) -> None:
        super().__init__()
        if cout % branches:
            raise ValueError(f"EESP: output channels {cout} must split evenly into {branches} branches")
        width = cout // branches
        self.stride = stride
        self.dilations = eesp_dilations(branches, receptive_limit)
        self.proj_1x1 = ConvBNPReLU(cin, width, 1, groups=branches)
        self.spp_dw = nn.ModuleList(DilatedDepthwise(width, stride, d) for d in self.dilations)
        self.conv_1x1_exp = ConvBN(cout, cout, 1, groups=branches)
        self.br_after_cat = BNPReLU(cout)
        self.module_act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.proj_1x1(x)  # (B, n, H, W)
        fused = [self.spp_dw[0](reduced)]  # each (B, n, H/s, W/s)
        for branch in self.spp_dw[1:]:
            fused.append(branch(reduced) + fused[-1])  # hierarchical feature fusion
        out = self.conv_1x1_exp(self.br_after_cat(torch.cat(fused, 1)))  # (B, cout, H/s, W/s)
        if self.stride == 2:
            return out
        if out.shape == x.shape:
            out = out + x
        return self.module_act(out)


class StridedEESP(nn.Module):
    """Down-sampling unit: [avg-pool(x), EESP stride 2(x)] + reinforcement(image), PReLU.

    ``image`` is the normalised input image already average-pooled to the output size.

    Example:
        >>> unit = StridedEESP(32, 128, branches=4, receptive_limit=13).eval()
        >>> unit(torch.rand(1, 32, 16, 20), torch.rand(1, 3, 8, 10)).shape
        torch.Size([1, 128, 8, 10])
    """

    def __init__(self, cin: int, cout: int, branches: int, receptive_limit: int) -> None:
        super().__init__()
        self.eesp = EESP(cin, cout - cin, stride=2, branches=branches, receptive_limit=receptive_limit)
        self.inp_reinf = nn.Sequential(
            ConvBNPReLU(3, REINFORCE_CHANNELS, 3),
            ConvBN(REINFORCE_CHANNELS, cout, 1),
        )
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1)  # (B, cin, H/2, W/2)
        out = torch.cat([pooled, self.eesp(x)], 1)  # (B, cout, H/2, W/2)
        if image.shape[-2:] != out.shape[-2:]:
            raise ValueError(f"StridedEESP: image size {tuple(image.shape[-2:])} != feature size {tuple(out.shape[-2:])}")
        return self.act(out + self.inp_reinf(image))


class EESPEncoder(nn.Module):
    """The ESPNetv2 backbone up to stride 16 (the classifier's level5 and head removed).

    ``forward`` returns the features at strides 2, 4, 8 and 16.
    """

    def __init__(self, width: float) -> None:
        super().__init__()
        if width not in WIDTH_CHANNELS:
            raise ValueError(f"ESPNetv2 width must be one of {sorted(WIDTH_CHANNELS)}, got {width!r}")
        c = WIDTH_CHANNELS[width]
        self.channels = c
        lim = RECEPTIVE_LIMITS
        self.level1 = ConvBNPReLU(3, c[0], 3, stride=2)
        self.level2_0 = StridedEESP(c[0], c[1], BRANCHES, lim[0])
        self.level3_0 = StridedEESP(c[1], c[2], BRANCHES, lim[1])
        self.level3 = nn.ModuleList(EESP(c[2], c[2], 1, BRANCHES, lim[2]) for _ in range(LEVEL3_BLOCKS))
        self.level4_0 = StridedEESP(c[2], c[3], BRANCHES, lim[3])
        self.level4 = nn.ModuleList(EESP(c[3], c[3], 1, BRANCHES, lim[4]) for _ in range(LEVEL4_BLOCKS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # the image pyramid for input reinforcement: repeated 3x3 stride-2 average pooling
        image2 = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1)  # (B, 3, H/2, W/2)
        image4 = F.avg_pool2d(image2, kernel_size=3, stride=2, padding=1)  # (B, 3, H/4, W/4)
        image8 = F.avg_pool2d(image4, kernel_size=3, stride=2, padding=1)  # (B, 3, H/8, W/8)
        image16 = F.avg_pool2d(image8, kernel_size=3, stride=2, padding=1)  # (B, 3, H/16, W/16)
        out2 = self.level1(x)  # (B, c0, H/2, W/2)
        out4 = self.level2_0(out2, image4)  # (B, c1, H/4, W/4)
        out8 = self.level3_0(out4, image8)  # (B, c2, H/8, W/8)
        for block in self.level3:
            out8 = block(out8)
        out16 = self.level4_0(out8, image16)  # (B, c3, H/16, W/16)
        for block in self.level4:
            out16 = block(out16)
        return out2, out4, out8, out16


class EfficientPyramidPool(nn.Module):
    """Pyramid pooling with one depth-wise 3x3 conv per scale, merged by a grouped conv.

    Scales above 1 upsample (bilinear, corners aligned), convolve, then average back down;
    scales below 1 average down (at least 5x5), convolve, then upsample back.

    Example:
        >>> pool = EfficientPyramidPool(64, 10, 48).eval()
        >>> pool(torch.rand(1, 64, 12, 16)).shape
        torch.Size([1, 48, 12, 16])
    """

    def __init__(self, cin: int, proj: int, cout: int, last_layer_br: bool = True) -> None:
        super().__init__()
        n = len(PYRAMID_SCALES)
        self.scales = PYRAMID_SCALES
        self.projection_layer = SeqConvBNPReLU(cin, proj, 1)
        self.stages = nn.ModuleList(
            nn.Conv2d(proj, proj, 3, 1, 1, groups=proj, bias=False) for _ in PYRAMID_SCALES
        )
        self.merge_layer = nn.Sequential(
            SeqBNPReLU(proj * n),
            ChannelShuffle(n),
            SeqConvBNPReLU(proj * n, proj, 3, groups=proj),
            nn.Conv2d(proj, cout, 1, bias=not last_layer_br),
        )
        self.last_layer_br = last_layer_br
        if last_layer_br:
            self.br = SeqBNPReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection_layer(x)  # (B, p, H, W)
        height, width = x.shape[-2:]
        branches = []
        for scale, stage in zip(self.scales, self.stages):
            # python float arithmetic on purpose: the sizes must match the original exactly
            size = (max(5, math.ceil(height * scale)), max(5, math.ceil(width * scale)))
            if scale < 1.0:
                y = stage(F.adaptive_avg_pool2d(x, size))  # (B, p, h_s, w_s)
                y = F.interpolate(y, (height, width), mode="bilinear", align_corners=True)
            elif scale > 1.0:
                y = stage(F.interpolate(x, size, mode="bilinear", align_corners=True))  # (B, p, h_s, w_s)
                y = F.adaptive_avg_pool2d(y, (height, width))
            else:
                y = stage(x)
            branches.append(y)  # (B, p, H, W)
        out = self.merge_layer(torch.cat(branches, 1))  # (B, cout, H, W)
        return self.br(out) if self.last_layer_br else out


class GatedProjection(nn.Module):
    """Encoder -> decoder projection: grouped 3x3 CBR, scaled by a sigmoid global gate."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.wt_layer = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.Sigmoid(),
        )
        self.expansion_layer = SeqConvBNPReLU(cin, cout, 3, groups=math.gcd(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expansion_layer(x) * self.wt_layer(x)  # (B, cout, H, W) * (B, cout, 1, 1)


def _upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear (corners aligned) resize of ``x`` to ``like``'s size: x2 for multiples of 16."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


# --------------------------------------------------------------------------- the network
class ESPNetv2Segmentation(nn.Module):
    """ESPNetv2 segmentation network; (B, 3, H, W) RGB in [0, 1] -> (B, K, H, W) logits.

    Args:
        width: the width multiplier s (0.5, 1.0, 1.25, 1.5 or 2.0).
        num_classes: output channels K (20 for the Cityscapes checkpoints: 19 + background).
        normalize: apply the ImageNet mean/std inside (non-persistent buffers, not in the
            state dict), so inputs are plain [0, 1] pixels.

    Example:
        >>> net = ESPNetv2Segmentation(width=0.5).eval()
        >>> net(torch.rand(2, 3, 32, 48)).shape
        torch.Size([2, 20, 32, 48])
    """

    def __init__(self, width: float = 2.0, num_classes: int = CITYSCAPES_CLASSES_WITH_BACKGROUND, normalize: bool = True) -> None:
        super().__init__()
        self.width = width
        self.num_classes = num_classes
        self.normalize = normalize
        self.base_net = EESPEncoder(width)
        c = self.base_net.channels
        dec = (4 * DECODER_BASE, 3 * DECODER_BASE, 2 * DECODER_BASE, num_classes)
        proj = min(num_classes // 2, DECODER_BASE)
        self.bu_dec_l1 = EfficientPyramidPool(c[3], proj, dec[0])
        self.bu_dec_l2 = EfficientPyramidPool(dec[0], proj, dec[1])
        self.bu_dec_l3 = EfficientPyramidPool(dec[1], proj, dec[2])
        self.bu_dec_l4 = EfficientPyramidPool(dec[2], proj, dec[3], last_layer_br=False)
        self.merge_enc_dec_l2 = GatedProjection(c[2], dec[0])
        self.merge_enc_dec_l3 = GatedProjection(c[1], dec[1])
        self.merge_enc_dec_l4 = GatedProjection(c[0], dec[2])
        self.bu_br_l2 = nn.Sequential(nn.BatchNorm2d(dec[0]), nn.PReLU(dec[0]))
        self.bu_br_l3 = nn.Sequential(nn.BatchNorm2d(dec[1]), nn.PReLU(dec[1]))
        self.bu_br_l4 = nn.Sequential(nn.BatchNorm2d(dec[2]), nn.PReLU(dec[2]))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits at stride 2, before the final upsampling.

        Shape:
            x (B, 3, H, W) float in [0, 1] -> (B, K, ceil(H/2), ceil(W/2))
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ESPNetv2: input x must be (B, 3, H, W), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"ESPNetv2: input x must be floating point in [0, 1], got {x.dtype}")
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)  # (B, 3, H, W)
        enc2, enc4, enc8, enc16 = self.base_net(x)
        out = self.bu_dec_l1(enc16)  # (B, 64, H/16, W/16)
        out = self.bu_br_l2(self.merge_enc_dec_l2(enc8) + _upsample_to(out, enc8))  # (B, 64, H/8, W/8)
        out = self.bu_dec_l2(out)  # (B, 48, H/8, W/8)
        out = self.bu_br_l3(self.merge_enc_dec_l3(enc4) + _upsample_to(out, enc4))  # (B, 48, H/4, W/4)
        out = self.bu_dec_l3(out)  # (B, 32, H/4, W/4)
        out = self.bu_br_l4(self.merge_enc_dec_l4(enc2) + _upsample_to(out, enc2))  # (B, 32, H/2, W/2)
        return self.bu_dec_l4(out)  # (B, K, H/2, W/2)

    def forward(self, x: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Logits at the input's size (or ``output_size``), bilinear with corners aligned.

        Shape:
            x (B, 3, H, W) float in [0, 1] -> (B, K, H, W)
        """
        size = tuple(x.shape[-2:]) if output_size is None else tuple(output_size)
        return F.interpolate(self.decode(x), size=size, mode="bilinear", align_corners=True)


def infer_width(state: dict[str, torch.Tensor], source_name: str = "checkpoint") -> float:
    """The width s of an ESPNetv2 checkpoint, from its level1 and level2_0 channels."""
    try:
        c0 = int(state["base_net.level1.conv.weight"].shape[0])
        c1 = int(state["base_net.level2_0.act.weight"].shape[0])
    except KeyError as err:
        raise ValueError(f"{source_name}: not an ESPNetv2 checkpoint, it has no tensor {err.args[0]!r}") from None
    for width, channels in WIDTH_CHANNELS.items():
        if channels[:2] == (c0, c1):
            return width
    raise ValueError(f"{source_name}: level1/level2_0 channels ({c0}, {c1}) match no ESPNetv2 width {sorted(WIDTH_CHANNELS)}")


def load_espnetv2(path: str | Path, width: float | None = None) -> ESPNetv2Segmentation:
    """Build the network for a Cityscapes checkpoint and load it strictly (eval mode, CPU).

    Raises:
        FileNotFoundError: no such file (named).
        CheckpointFormatError: not a safetensors file.
        CheckpointMismatchError: a tensor that does not fit (named, with both shapes).
    """
    state = load_safetensors(path, what="ESPNetv2 weights")
    source = str(path)
    net = ESPNetv2Segmentation(width=infer_width(state, source) if width is None else width)
    load_state_strict(net, state, source)
    return net.eval()


# --------------------------------------------------------------------------- the teacher
@dataclass(frozen=True)
class ESPNetv2Config:
    """Settings of :class:`ESPNetv2Teacher`."""

    weights: str = str(DEFAULT_WEIGHTS)  # a .safetensors file (never a pickle)
    width: float | None = None  # s; None = inferred from the file
    inference_size: tuple[int, int] | None = None  # (H, W) multiples of 16; None = frame size x scale, rounded to 16
    scale: float = 1.0  # only with inference_size=None: frame size multiplier before rounding
    device: str = "auto"  # "auto" = cuda if available else cpu
    batch_size: int = 4  # frames per forward pass
    dtype: str = "float32"  # "float32" | "float16" | "bfloat16" for the network's compute
    logits_max_side: int = 256  # shipped logits: frame size scaled down to this longer side

    def __post_init__(self) -> None:
        if self.width is not None and self.width not in WIDTH_CHANNELS:
            raise ValueError(f"ESPNetv2Config.width must be None or one of {sorted(WIDTH_CHANNELS)}, got {self.width!r}")
        if self.inference_size is not None:
            size = tuple(self.inference_size)
            if len(size) != 2 or any(not isinstance(s, int) or s < SIZE_MULTIPLE or s % SIZE_MULTIPLE for s in size):
                raise ValueError(
                    f"ESPNetv2Config.inference_size must be (H, W) positive multiples of {SIZE_MULTIPLE}, got {self.inference_size!r}"
                )
            object.__setattr__(self, "inference_size", size)
        if not self.scale > 0:
            raise ValueError(f"ESPNetv2Config.scale must be > 0, got {self.scale!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"ESPNetv2Config.batch_size must be a positive int, got {self.batch_size!r}")
        resolve_dtype(self.dtype)
        if not isinstance(self.logits_max_side, int) or self.logits_max_side < 8:
            raise ValueError(f"ESPNetv2Config.logits_max_side must be an int >= 8, got {self.logits_max_side!r}")


class ESPNetv2Teacher:
    """The pretrained Cityscapes ESPNetv2 as a :class:`perception.teacher.Teacher`.

    ``label(images)`` resizes each (H, W) frame bilinearly to the inference size, runs the
    network, upsamples its stride-2 logits (bilinear, corners aligned, the network's own
    convention) straight to the frame's size and takes the argmax there; the background
    class (20th channel) becomes 255. The 19 canonical logits (background dropped) are
    shipped at the frame's size scaled down to ``logits_max_side`` on the longer side, never
    up: 192x256 for a 360x480 frame (3.7 MB float32), at most 19x256x256 (5 MB) per frame;
    resampled bilinearly from the stride-2 map (corners aligned, antialiased when
    shrinking). The raw network is ``.model``: (B, 3, H, W) [0, 1] -> (B, 20, H, W), eval
    mode, parameters frozen (gradients flow to the input only). ``macs(h, w)`` counts the
    network's convolutions at the size a (h, w) frame runs at (resizing not counted).

    Example:
        >>> import os, tempfile
        >>> from safetensors.torch import save_file
        >>> path = os.path.join(tempfile.mkdtemp(), "random_s0.5.safetensors")
        >>> save_file(ESPNetv2Segmentation(width=0.5).state_dict(), path)
        >>> teacher = ESPNetv2Teacher(ESPNetv2Config(weights=path, inference_size=(64, 96), device="cpu"))
        >>> out = teacher.label(np.zeros((2, 60, 80, 3), np.uint8))
        >>> out.labels.shape, out.logits.shape, teacher.name
        ((2, 60, 80), (2, 19, 60, 80), 'espnetv2_s0.5')
    """

    def __init__(self, config: ESPNetv2Config = ESPNetv2Config()) -> None:
        self.config = config
        self._device = resolve_device(config.device, setting="ESPNetv2Config.device")
        self._dtype = resolve_dtype(config.dtype)
        net = load_espnetv2(config.weights, config.width)
        net.requires_grad_(False)
        self.model: ESPNetv2Segmentation = net.to(self._device, self._dtype).eval()
        self.width = net.width
        self.name = f"espnetv2_s{net.width:g}"
        self.device = str(self._device)
        self.params = sum(p.numel() for p in net.parameters())
        self._macs: dict[tuple[int, int], int] = {}
        logger.info("%s loaded from %s on %s (%d parameters)", self.name, config.weights, self.device, self.params)

    def at_input_size(self, size: tuple[int, int]) -> "ESPNetv2Teacher":
        """Run every frame at (H, W) ``size`` (multiples of 16) from now on; returns this teacher.

        The network's own resize policy (``inference_size``): labels are the argmax of its
        logits upsampled straight to the frame's size, as ``bench/espnetv2_camvid.py`` runs it.
        See :func:`perception.teachers.grid.at_input_size`.
        """
        self.config = dataclasses.replace(self.config, inference_size=tuple(size))  # checked there
        return self

    def inference_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the network runs at for a frame of (height, width)."""
        if self.config.inference_size is not None:
            return self.config.inference_size
        return round_to_multiple((height * self.config.scale, width * self.config.scale), SIZE_MULTIPLE)

    def macs(self, height: int, width: int) -> int:
        """Multiply-accumulates of convolutions for one frame of (height, width), at its inference size."""
        size = self.inference_size(height, width)
        if size not in self._macs:
            self._macs[size] = count_macs(self.model, *size)
        return self._macs[size]

    def label(self, images: np.ndarray) -> TeacherOutput:
        """Label a batch of RGB frames.

        Shape:
            images (B, H, W, 3) uint8 -> labels (B, H, W) uint8, logits (B, 19, h, w) float32
        """
        check_images(images, "ESPNetv2Teacher.label: images")
        frames, height, width = images.shape[:3]
        run_size = self.inference_size(height, width)
        out_size = bounded_size((height, width), self.config.logits_max_side)
        labels = np.empty((frames, height, width), np.uint8)
        logits = np.empty((frames, NUM_CLASSES, *out_size), np.float32)
        start = time.perf_counter()
        with torch.inference_mode():
            for first in range(0, frames, self.config.batch_size):
                chunk = images[first : first + self.config.batch_size]
                x = images_to_tensor(chunk, self._device)  # (b, 3, H, W)
                x = resize(x, run_size).to(self._dtype)  # (b, 3, h_in, w_in)
                low = self.model.decode(x).float()  # (b, 20, h_in/2, w_in/2)
                for i in range(low.shape[0]):
                    full = F.interpolate(low[i : i + 1], size=(height, width), mode="bilinear", align_corners=True)  # (1, 20, H, W)
                    pred = full[0].argmax(0)  # (H, W)
                    pred[pred == NUM_CLASSES] = IGNORE_INDEX
                    labels[first + i] = pred.to(torch.uint8).cpu().numpy()
                small = resize(low[:, :NUM_CLASSES], out_size, align_corners=True)  # (b, 19, h, w)
                logits[first : first + low.shape[0]] = small.cpu().numpy()
        logger.debug("%s labelled %d frames %dx%d in %.3f s", self.name, frames, height, width, time.perf_counter() - start)
        return TeacherOutput(labels=labels, logits=logits)


__all__ = [
    "CheckpointMismatchError",
    "EESP",
    "ESPNetv2Config",
    "ESPNetv2Segmentation",
    "ESPNetv2Teacher",
    "StridedEESP",
    "infer_width",
    "load_espnetv2",
]
