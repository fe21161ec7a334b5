"""Monocular depth heads: a small head on a segmentation net's decoder features.

The sim teacher and the students share one head design (:class:`DepthHead`): decoder features
plus one row-coordinate channel (the camera is level, so an image row says much about the
ground's distance), a 1x1 squeeze, a 3x3 convolution and a 1x1 to one channel of log-depth
(metres). Depth is ``exp`` of it, clamped to ``[MIN_DEPTH, MAX_DEPTH]``.

A student gets a head with :func:`attach_depth_head` after its segmentation weights are loaded
(the shipped weights have none: the head starts fresh), and :func:`coarse_outputs` gives both
its logits and its log-depth from one pass through the trunk.

Teacher depth travels at the teacher logits' grid with 0 meaning "no depth here" (sky, by the
teacher's own labels); :func:`log_depth_l1` skips those pixels.

Example:
    >>> import torch
    >>> from perception.nets import SegNet, STUDENT_CONFIG
    >>> net = attach_depth_head(SegNet(STUDENT_CONFIG))
    >>> logits, log_depth = coarse_outputs(net, torch.rand(2, 3, 32, 64))
    >>> tuple(logits.shape), tuple(log_depth.shape)
    ((2, 19, 16, 32), (2, 16, 32))
    >>> float(log_depth_l1(log_depth, torch.full((2, 8, 16), 10.0)).detach()) > 0
    True
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from perception.nets import ConvBNReLU

MIN_DEPTH = 0.5  # metres: nearer than the camera's bonnet is not a depth
MAX_DEPTH = 200.0  # metres: beyond the sim's draw distance (150 m); its sky reads 1000 m


class DepthHead(nn.Module):
    """Decoder features -> log-depth (metres), on the features' grid.

    Example:
        >>> head = DepthHead(24)
        >>> head(torch.rand(2, 24, 8, 16)).shape
        torch.Size([2, 8, 16])
    """

    def __init__(self, channels: int, hidden: int = 32):
        super().__init__()
        if channels < 1 or hidden < 1:
            raise ValueError(f"DepthHead: channels and hidden must be >= 1, got {channels}, {hidden}")
        self.squeeze = ConvBNReLU(channels + 1, hidden, 1)
        self.spatial = ConvBNReLU(hidden, hidden, 3)
        self.out = nn.Conv2d(hidden, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, math.log(15.0))  # starts at a typical street distance

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Shape: features (B, C, h, w) -> log-depth (B, h, w)."""
        b, _, h, w = features.shape
        rows = torch.linspace(-1.0, 1.0, h, device=features.device, dtype=features.dtype)  # (h,)
        rows = rows.view(1, 1, h, 1).expand(b, 1, h, w)  # (B, 1, h, w)
        y = self.spatial(self.squeeze(torch.cat([features, rows], 1)))  # (B, hidden, h, w)
        return self.out(y)[:, 0].clamp(math.log(MIN_DEPTH), math.log(MAX_DEPTH))  # (B, h, w)


def depth_channels(net: nn.Module) -> int:
    """Channels of a segmentation net's decoder features (what its depth head reads)."""
    config = getattr(net, "config", None)
    if config is None or not hasattr(config, "decoder") or not hasattr(net, "features"):
        raise ValueError(f"{type(net).__name__} has no decoder features for a depth head "
                         f"(a SegNet or FastSegNet has)")
    return int(config.decoder)


def attach_depth_head(net: nn.Module, hidden: int = 32) -> nn.Module:
    """Give ``net`` a fresh :class:`DepthHead` as ``net.depth_head`` (seed torch before), and
    return it. Its state dict then holds ``depth_head.*`` beside the segmentation weights."""
    net.depth_head = DepthHead(depth_channels(net), hidden)
    return net


def has_depth(net: nn.Module) -> bool:
    """Whether ``net`` carries a depth head."""
    return isinstance(getattr(net, "depth_head", None), nn.Module)


def coarse_outputs(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits and log-depth on the net's own output grid from one pass through its trunk
    (log-depth None for a net without a depth head).

    Shape:
        x (B, 3, H, W) float in [0, 1] -> logits (B, K, h, w), log-depth (B, h, w) or None
    """
    features = net.features(x)  # (B, D, h, w)
    logits = net.head(features)  # (B, K, h, w)
    if not has_depth(net):
        return logits, None
    return logits, net.depth_head(features)  # (B, h, w)


def log_depth_l1(log_depth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |log d_pred - log d_target| over the target's pixels with depth (> 0). A
    prediction on a finer grid than the target is average-pooled to the target's grid (the
    teacher's depth is as coarse as its logits).

    Shape:
        log_depth (B, h, w), target (B, h', w') metres, 0 = no depth -> scalar

    Example:
        >>> log_depth_l1(torch.log(torch.tensor([[[2.0, 4.0]]])), torch.tensor([[[4.0, 0.0]]]))
        tensor(0.6931)
    """
    if log_depth.shape[-2:] != target.shape[-2:]:
        log_depth = F.adaptive_avg_pool2d(log_depth[:, None], target.shape[-2:])[:, 0]  # (B, h', w')
    valid = target > 0  # (B, h', w')
    if not bool(valid.any()):
        return log_depth.sum() * 0.0
    return (log_depth[valid] - target[valid].clamp_min(MIN_DEPTH).log()).abs().mean()
