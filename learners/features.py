"""Feature distillation: the student's intermediate map, through a small adapter, matched to the teacher's.

The teacher ships the feature map of ``distill.feature_layer`` pooled to 1/``feature_stride``
of the frame (:attr:`perception.teacher.TeacherOutput.features`). The student's map of the
same layer (:meth:`perception.nets.SegNet.tap`) is average-pooled to the teacher map's grid,
mapped to the teacher's channel count by a :class:`FeatureAdapter` and scored with
:func:`learners.losses.feature_distance`. The adapter belongs to the learner: it is trained
with the student (one optimiser), saved in the learner's checkpoints (``adapter.*``) and is
no part of the deployed student.

Example:
    >>> import torch
    >>> from perception.nets import SegNet, STUDENT_CONFIG
    >>> student = SegNet(STUDENT_CONFIG)
    >>> distiller = FeatureDistiller(student, "decoder", teacher_channels=96)
    >>> logits, feature = student.tap(torch.rand(2, 3, 32, 64), "decoder")
    >>> loss = distiller.loss(feature, torch.rand(2, 96, 4, 8))
    >>> loss.backward(); distiller.adapter[0].weight.grad.shape
    torch.Size([96, 24, 1, 1])
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from learners.losses import feature_distance


class FeatureAdapter(nn.Sequential):
    """1x1 convolution, batch norm and ReLU: the student's channels to the teacher's (the
    teacher's taps all end in a ReLU, so their maps are non-negative, and so is this one's).

    Shape:
        (B, student_channels, h, w) -> (B, teacher_channels, h, w)
    """

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__(
            nn.Conv2d(student_channels, teacher_channels, 1, bias=False),
            nn.BatchNorm2d(teacher_channels),
            nn.ReLU(inplace=True),
        )


class FeatureDistiller:
    """The adapter for one student and one tapped layer, and the feature term of the loss.

    ``seed`` (or None for torch's global generator) initialises the adapter, so two learners
    built alike get the same adapter whatever ran before.
    """

    def __init__(self, student: nn.Module, layer: str, teacher_channels: int, seed: int | None = 0) -> None:
        if not hasattr(student, "tap") or not hasattr(student, "tap_channels"):
            raise ValueError(f"distill.feature_weight > 0 needs a student net with feature taps; "
                             f"{type(student).__name__} has none (every perception.student_nets net has)")
        self.layer = layer
        student_channels = int(student.tap_channels(layer))
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.adapter = FeatureAdapter(student_channels, int(teacher_channels))

    def loss(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        """The student's map pooled to the teacher map's grid, adapted, against the teacher's.

        Shape:
            student_features (B, c, H, W), teacher_features (B, C, h, w), h <= H, w <= W -> scalar
        """
        pooled = F.adaptive_avg_pool2d(student_features, teacher_features.shape[-2:])  # (B, c, h, w)
        adapted = self.adapter.train()(pooled)  # (B, C, h, w)
        return feature_distance(adapted, teacher_features)
