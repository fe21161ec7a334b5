"""The simulator teacher: a :class:`~perception.nets.SegNet` trained on every sim domain.

Its weights ship in ``perception/weights/sim_teacher.safetensors`` (made by
``odistill train-teacher``), and a depth head on its frozen decoder features in
``perception/weights/sim_teacher_depth.safetensors`` (made by ``odistill train-teacher-depth``):
with it, every answer carries depth (metres, on the logits' grid, 0 where the teacher sees sky).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from perception.argmax import class_labels
from perception.depth import DepthHead
from perception.labels import CLASS_ID
from perception.device import resolve_device
from perception.nets import TEACHER_CONFIG, SegNet, SegNetConfig, count_macs, count_params, pick_layer
from perception.taps import TAP_STRIDES, check_tap
from perception.teacher import TeacherOutput
from perception.weights import WEIGHTS_DIR, load_weights

log = logging.getLogger(__name__)

SIM_TEACHER_WEIGHTS = WEIGHTS_DIR / "sim_teacher.safetensors"
SIM_TEACHER_DEPTH_WEIGHTS = WEIGHTS_DIR / "sim_teacher_depth.safetensors"
DEPTH_STRIDE = 4  # the depth head runs on the decoder features pooled to stride 4 (as it was trained)


def teacher_depth_head(net: SegNetConfig = TEACHER_CONFIG) -> DepthHead:
    """A fresh depth head for a teacher of this config (seed torch before)."""
    return DepthHead(net.decoder)


class SegNetTeacher:
    """A :class:`SegNet` used as a teacher (the sim teacher, or any SegNet checkpoint).

    Example:
        >>> import numpy as np
        >>> t = SegNetTeacher(weights=None, device="cpu")
        >>> out = t.label(np.zeros((1, 32, 64, 3), np.uint8))
        >>> out.labels.shape, out.logits.shape, out.depth, out.features is None
        ((1, 32, 64), (1, 19, 8, 16), None, True)
        >>> t.request_features("decoder", 8)  # feature distillation: the decoder's map at stride 8
        >>> t.label(np.zeros((1, 32, 64, 3), np.uint8)).features.shape
        (1, 96, 4, 8)

    ``depth_weights``: a depth head's safetensors (``"auto"``: the shipped one when the
    teacher's weights are the shipped ones and the file exists; None: no depth).
    """

    def __init__(
        self,
        weights: str | Path | None = SIM_TEACHER_WEIGHTS,
        device: str = "auto",
        net: SegNetConfig = TEACHER_CONFIG,
        logits_stride: int = 4,
        name: str = "sim",
        depth_weights: str | Path | None = "auto",
    ):
        self.name = name
        self.device = str(resolve_device(device, setting="teacher.device"))
        self.model = SegNet(net)
        if weights is not None:
            load_weights(self.model, weights)
        self.model.to(self.device).eval()
        self.depth_head: DepthHead | None = None
        if depth_weights == "auto":
            shipped = weights is not None and Path(weights) == SIM_TEACHER_WEIGHTS and SIM_TEACHER_DEPTH_WEIGHTS.is_file()
            depth_weights = SIM_TEACHER_DEPTH_WEIGHTS if shipped else None
        if depth_weights is not None:
            self.depth_head = load_weights(teacher_depth_head(net), depth_weights).to(self.device).eval()
        self.params = count_params(self.model) + (count_params(self.depth_head) if self.depth_head is not None else 0)
        self.logits_stride = logits_stride
        self.feature_layer: str | None = None  # set by request_features: ship this layer's map too
        self.feature_stride = 8

    def request_features(self, layer: str, stride: int) -> None:
        """Ship the feature map of ``layer`` (:data:`perception.taps.TAP_STRIDES`), average-pooled
        to 1/``stride`` of the frame, as float16 with every answer from now on."""
        check_tap(layer, stride)
        self.feature_layer, self.feature_stride = layer, stride

    def macs(self, height: int, width: int) -> int:
        macs = count_macs(self.model, height, width)
        if self.depth_head is not None:
            grid = (-(-height // DEPTH_STRIDE), -(-width // DEPTH_STRIDE))
            macs += count_macs(_OnFeatures(self.depth_head, self.model.config.decoder), *grid)
        return macs

    def depth_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Depth in metres at stride 4 from the decoder features (stride 2).

        Shape:
            features (B, D, H/2, W/2) -> (B, H/4, W/4)
        """
        assert self.depth_head is not None
        pooled = F.avg_pool2d(features, DEPTH_STRIDE // 2, ceil_mode=True)  # (B, D, H/4, W/4)
        return self.depth_head(pooled).exp()  # (B, H/4, W/4)

    @torch.inference_mode()
    def label(self, images: np.ndarray) -> TeacherOutput:
        """Shape: images (B, H, W, 3) uint8 -> labels (B, H, W), logits (B, 19, H/s, W/s), and when
        asked (:meth:`request_features`) features (B, C, H/f, W/f) float16."""
        if not images.flags.writeable:  # frames are read-only; torch wants writable memory
            images = images.copy()
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)  # (B, H, W, 3)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
        decoded, skips = self.model._decode(x)  # (B, D, H/2, W/2), the encoder stages
        logits = F.interpolate(self.model.head(decoded), size=x.shape[-2:], mode="bilinear",
                               align_corners=False)  # (B, 19, H, W), as SegNet.forward
        labels = class_labels(logits)  # (B, H, W) uint8
        s = self.logits_stride
        small = F.avg_pool2d(logits, s) if s > 1 else logits  # (B, 19, H/s, W/s)
        features = None
        if self.feature_layer is not None:  # the tapped layer of the same pass (SegNet.tap)
            tapped = pick_layer(decoded, skips, self.feature_layer)  # (B, C, H/t, W/t)
            pool = self.feature_stride // TAP_STRIDES[self.feature_layer]
            tapped = F.avg_pool2d(tapped, pool) if pool > 1 else tapped  # (B, C, H/f, W/f)
            features = tapped.to(torch.float16).cpu().numpy()
        depth = None
        if self.depth_head is not None:
            metres = self.depth_from_features(decoded)  # (B, H/4, W/4)
            if metres.shape[-2:] != small.shape[-2:]:
                metres = F.interpolate(metres[:, None], size=small.shape[-2:], mode="bilinear",
                                       align_corners=False)[:, 0]  # (B, H/s, W/s)
            sky = small.argmax(1) == CLASS_ID["sky"]  # (B, H/s, W/s) the teacher sees no depth there
            depth = metres.masked_fill(sky, 0.0).float().cpu().numpy()
        return TeacherOutput(labels, small.float().cpu().numpy(), depth=depth, features=features)


class _OnFeatures(torch.nn.Module):
    """A depth head fed a (1, 3, h, w) dummy as (1, D, h, w) features, for the MACs counter."""

    def __init__(self, head: DepthHead, channels: int):
        super().__init__()
        self.head = head
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x[:, :1].expand(-1, self.channels, -1, -1))  # (1, h, w)
