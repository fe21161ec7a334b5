"""The simulator teacher: a :class:`~perception.nets.SegNet` trained on every sim domain.

Its weights ship in ``perception/weights/sim_teacher.safetensors`` (made by
``odistill train-teacher``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from perception.argmax import class_labels
from perception.device import resolve_device
from perception.nets import TEACHER_CONFIG, SegNet, SegNetConfig, count_macs, count_params
from perception.taps import TAP_STRIDES, check_tap
from perception.teacher import TeacherOutput
from perception.weights import WEIGHTS_DIR, load_weights

log = logging.getLogger(__name__)

SIM_TEACHER_WEIGHTS = WEIGHTS_DIR / "sim_teacher.safetensors"


class SegNetTeacher:
    """A :class:`SegNet` used as a teacher (the sim teacher, or any SegNet checkpoint).

    Example:
        >>> import numpy as np
        >>> t = SegNetTeacher(weights=None, device="cpu")
        >>> out = t.label(np.zeros((1, 32, 64, 3), np.uint8))
        >>> out.labels.shape, out.logits.shape, out.features is None
        ((1, 32, 64), (1, 19, 8, 16), True)
        >>> t.request_features("decoder", 8)  # feature distillation: the decoder's map at stride 8
        >>> t.label(np.zeros((1, 32, 64, 3), np.uint8)).features.shape
        (1, 96, 4, 8)
    """

    def __init__(
        self,
        weights: str | Path | None = SIM_TEACHER_WEIGHTS,
        device: str = "auto",
        net: SegNetConfig = TEACHER_CONFIG,
        logits_stride: int = 4,
        name: str = "sim",
    ):
        self.name = name
        self.device = str(resolve_device(device, setting="teacher.device"))
        self.model = SegNet(net)
        if weights is not None:
            load_weights(self.model, weights)
        self.model.to(self.device).eval()
        self.params = count_params(self.model)
        self.logits_stride = logits_stride
        self.feature_layer: str | None = None  # set by request_features: ship this layer's map too
        self.feature_stride = 8

    def request_features(self, layer: str, stride: int) -> None:
        """Ship the feature map of ``layer`` (:data:`perception.taps.TAP_STRIDES`), average-pooled
        to 1/``stride`` of the frame, as float16 with every answer from now on."""
        check_tap(layer, stride)
        self.feature_layer, self.feature_stride = layer, stride

    def macs(self, height: int, width: int) -> int:
        return count_macs(self.model, height, width)

    @torch.inference_mode()
    def label(self, images: np.ndarray) -> TeacherOutput:
        """Shape: images (B, H, W, 3) uint8 -> labels (B, H, W), logits (B, 19, H/s, W/s), and when
        asked (:meth:`request_features`) features (B, C, H/f, W/f) float16."""
        if not images.flags.writeable:  # frames are read-only; torch wants writable memory
            images = images.copy()
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)  # (B, H, W, 3)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
        features = None
        if self.feature_layer is None:
            logits = self.model(x)  # (B, 19, H, W)
        else:  # the same logits (the forward pass's own ops), and the tapped layer on the way
            coarse, tapped = self.model.tap(x, self.feature_layer)  # (B, 19, H/2, W/2), (B, C, H/t, W/t)
            logits = F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, 19, H, W)
            pool = self.feature_stride // TAP_STRIDES[self.feature_layer]
            tapped = F.avg_pool2d(tapped, pool) if pool > 1 else tapped  # (B, C, H/f, W/f)
            features = tapped.to(torch.float16).cpu().numpy()
        labels = class_labels(logits)  # (B, H, W) uint8
        s = self.logits_stride
        small = F.avg_pool2d(logits, s) if s > 1 else logits  # (B, 19, H/s, W/s)
        return TeacherOutput(labels, small.float().cpu().numpy(), features=features)
