"""The teacher plug-in interface: anything that turns a batch of RGB frames into labels.

Every teacher answers in the canonical label space (19 Cityscapes trainIds, 255 = ignore):
hard labels at the frame's size, and logits (possibly at a lower resolution) for soft-label
distillation. A teacher that can also ship an intermediate feature map (for feature
distillation) has a ``request_features(layer, stride)`` method; :func:`request_features`
asks for them, or says which teacher cannot give them.

Example:
    >>> out = TeacherOutput(np.zeros((1, 8, 8), np.uint8), np.zeros((1, 19, 2, 2), np.float32),
    ...                     features=np.zeros((1, 96, 1, 1), np.float16))
    >>> out[0].features.shape
    (1, 96, 1, 1)
    >>> class Plain:
    ...     name = "plain"
    >>> request_features(Plain(), "decoder", 8)
    Traceback (most recent call last):
    ...
    perception.teacher.TeacherFeatureError: distill.feature_weight > 0 asks the teacher for its decoder features, but teacher 'plain' (Plain) cannot give intermediate features (SegNet teachers can: sim, segnet:PATH); set distill.feature_weight=0 for logits-only distillation
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from perception.views import FrameViews


@dataclass(frozen=True)
class TeacherOutput:
    """What a teacher returns for a batch of B frames.

    Attributes:
        labels: (B, H, W) uint8 canonical trainIds at the input frames' size, 255 = ignore
            (e.g. a teacher's own "background" class).
        logits: (B, 19, h, w) float32 canonical logits, h <= H and w <= W; consumers resize.
        views: for a one-frame answer, the robustness views the teacher part made of the
            frame (``adversarial.enabled``), or None.
        depth: (B, h, w) float32 metres on the logits' grid, 0 where the teacher gives no
            depth (its sky), from a teacher with a depth head; None from the others.
        features: (B, C, h', w') float16, an intermediate feature map at a coarse whole-pixel
            stride of the frame (feature distillation, ``distill.feature_weight`` > 0), or None.
    """

    labels: np.ndarray
    logits: np.ndarray
    views: FrameViews | None = None
    depth: np.ndarray | None = None
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.labels.ndim != 3 or self.labels.dtype != np.uint8:
            raise ValueError(f"TeacherOutput.labels must be (B, H, W) uint8, got {self.labels.shape} {self.labels.dtype}")
        if self.logits.ndim != 4 or self.logits.shape[0] != self.labels.shape[0]:
            raise ValueError(f"TeacherOutput.logits must be (B, C, h, w) with B={self.labels.shape[0]}, got {self.logits.shape}")
        if self.depth is not None and (self.depth.shape != (self.logits.shape[0], *self.logits.shape[2:])
                                       or self.depth.dtype != np.float32):
            raise ValueError(f"TeacherOutput.depth must be (B, h, w) float32 on the logits' grid "
                             f"{(self.logits.shape[0], *self.logits.shape[2:])}, got {self.depth.shape} {self.depth.dtype}")
        if self.features is not None and (self.features.ndim != 4 or self.features.shape[0] != self.labels.shape[0]):
            raise ValueError(f"TeacherOutput.features must be (B, C, h, w) with B={self.labels.shape[0]}, "
                             f"got {self.features.shape}")

    def __getitem__(self, i: int) -> "TeacherOutput":
        depth = None if self.depth is None else self.depth[i : i + 1]
        features = None if self.features is None else self.features[i : i + 1]
        return TeacherOutput(self.labels[i : i + 1], self.logits[i : i + 1], depth=depth, features=features)


class TeacherFeatureError(ValueError):
    """Feature distillation was asked of a teacher that cannot give intermediate features."""


def request_features(teacher: Any, layer: str, stride: int) -> None:
    """Ask ``teacher`` to ship the feature map of ``layer`` at 1/``stride`` of the frame with
    every answer (its ``request_features``; the adapters of :mod:`perception.teachers.grid`
    pass the request on to the teacher they wrap).

    Raises:
        TeacherFeatureError: the teacher has no ``request_features`` (the message names
            ``distill.feature_weight`` and the teacher).
    """
    ask = getattr(teacher, "request_features", None)
    if ask is None:
        name = getattr(teacher, "name", "?")
        raise TeacherFeatureError(
            f"distill.feature_weight > 0 asks the teacher for its {layer} features, but teacher {name!r} "
            f"({type(teacher).__name__}) cannot give intermediate features (SegNet teachers can: sim, segnet:PATH); "
            f"set distill.feature_weight=0 for logits-only distillation")
    ask(layer, stride)


@runtime_checkable
class Teacher(Protocol):
    """A labeller. ``label`` takes (B, H, W, 3) uint8 RGB and returns a :class:`TeacherOutput`.

    Attributes: ``name`` (str), ``device`` (a torch device string), ``params`` (int) and
    ``macs(height, width)`` -> int multiply-accumulates for one frame of that size.
    """

    name: str
    device: str
    params: int

    def label(self, images: np.ndarray) -> TeacherOutput: ...

    def macs(self, height: int, width: int) -> int: ...
