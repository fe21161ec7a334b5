"""Teacher test-time augmentation: any teacher's answer averaged over views of the frame.

Where a teacher is unsure of a frame (night, fog) its answers on slightly different views of
that frame disagree, and their average is usually better than any one of them.
:class:`TTATeacher` labels every frame once per view (a horizontal flip, and rescalings of
the frame, e.g. 0.75x, 1x and 1.25x of the size the teacher runs at), maps each view's
logits back onto the frame's pixels (bilinear, flipped back), averages the views' softmax
probabilities (or their logits), and answers like any teacher: labels at the frame's size
(the argmax of the average; 255 where most views say ignore) and the averaged logits, as
log-probabilities, pooled to 1/``logits_stride`` of the frame.

The wrapped teacher must answer with full-resolution logits (``open_teacher`` opens it so,
``teacher.tta``); coarser logits are upsampled bilinearly, which blurs the labels.

Example:
    >>> import numpy as np
    >>> from perception.teachers.sim import SegNetTeacher
    >>> inner = SegNetTeacher(weights=None, device="cpu", logits_stride=1)
    >>> teacher = TTATeacher(inner, tta_views("flip+scales", (0.75, 1.0, 1.25)), logits_stride=4)
    >>> out = teacher.label(np.zeros((2, 36, 60, 3), np.uint8))
    >>> out.labels.shape, out.logits.shape, len(teacher.views), teacher.name
    ((2, 36, 60), (2, 19, 9, 15), 6, 'sim+tta6')
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from perception.argmax import class_labels
from perception.labels import IGNORE_INDEX
from perception.teacher import TeacherOutput
from perception.teachers import TTA_AVERAGES, tta_views

__all__ = ["TTATeacher", "tta_views", "view_size"]


def view_size(height: int, width: int, scale: float, multiple: int = 1) -> tuple[int, int]:
    """The (H, W) a view at ``scale`` of a (height, width) frame is made at: each side scaled
    and rounded, to a multiple of ``multiple`` where the network needs it (ESPNetv2: 16).

    Example:
        >>> view_size(128, 256, 0.75), view_size(37, 61, 1.25), view_size(360, 480, 0.75, 16)
        ((96, 192), (46, 76), (272, 368))
    """
    step = max(1, int(multiple))
    return tuple(max(step, int(math.floor(side * scale / step + 0.5)) * step) for side in (height, width))  # type: ignore[return-value]


def _resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frames resized to (H, W) ``size``: area averaging when shrinking, bilinear otherwise.

    Shape: images (B, H, W, 3) uint8 -> (B, size[0], size[1], 3) uint8
    """
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    shrink = size[0] <= images.shape[1] and size[1] <= images.shape[2]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(np.ascontiguousarray(image), (size[1], size[0]), interpolation=interpolation)
                     for image in images])  # (B, h, w, 3)


def _grid_stride(height: int, width: int, stride: int) -> int:
    """The largest stride <= ``stride`` that divides both sides (the learner crops on it)."""
    return next(s for s in range(max(1, stride), 0, -1) if height % s == 0 and width % s == 0)


class TTATeacher:
    """A teacher labelling each frame over several views and averaging them (module docstring).

    Args:
        teacher: the wrapped teacher (``label``, ``name``, ``device``, ``params``, ``macs``),
            best opened with full-resolution logits.
        views: (scale, flipped) pairs, e.g. from :func:`tta_views`; ``(1.0, False)`` is the
            plain frame.
        input_size: (H, W) the wrapped teacher runs at for a scale of 1 (``teacher.input_size``),
            or None for the frame's own size; each view is made at that size times its scale.
        multiple: round view sides to a multiple of this (the network's need, e.g. 16).
        logits_stride: the shipped logits are pooled to 1/this of the frame (the largest
            stride <= it that divides both sides).
        average: ``"probs"`` (mean softmax probability, shipped as its log) or ``"logits"``.

    ``macs(h, w)`` counts every view; every other attribute is the wrapped teacher's.
    """

    def __init__(self, teacher: Any, views: tuple[tuple[float, bool], ...], input_size: tuple[int, int] | None = None,
                 multiple: int = 1, logits_stride: int = 4, average: str = "probs") -> None:
        if not views:
            raise ValueError("TTATeacher: give at least one (scale, flipped) view")
        if any(not scale > 0 for scale, _ in views):
            raise ValueError(f"TTATeacher: view scales must be > 0, got {[scale for scale, _ in views]}")
        if average not in TTA_AVERAGES:
            raise ValueError(f"TTATeacher: average must be one of {', '.join(TTA_AVERAGES)}, got {average!r}")
        if logits_stride < 1:
            raise ValueError(f"TTATeacher: logits_stride must be >= 1, got {logits_stride}")
        self.teacher = teacher
        self.views = tuple((float(scale), bool(flipped)) for scale, flipped in views)
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.multiple = max(1, int(multiple))
        self.logits_stride = int(logits_stride)
        self.average = average
        self.name = f"{teacher.name}+tta{len(self.views)}"

    def __getattr__(self, name: str) -> Any:
        if name == "teacher":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.teacher, name)

    def view_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The (H, W) each view of a (height, width) frame runs at, in view order."""
        base = self.input_size or (height, width)
        return [view_size(base[0], base[1], scale, self.multiple) for scale, _ in self.views]

    def macs(self, height: int, width: int) -> int:
        """The wrapped teacher's multiply-accumulates summed over the views of one frame."""
        return int(sum(self.teacher.macs(*size) for size in self.view_sizes(height, width)))

    @torch.inference_mode()
    def label(self, images: np.ndarray) -> TeacherOutput:
        """Label a batch of frames over every view and average.

        Shape:
            images (B, H, W, 3) uint8 -> labels (B, H, W) uint8, logits (B, K, H/s, W/s) float32
        """
        batch, height, width = images.shape[:3]
        combined: torch.Tensor | None = None  # (B, K, H, W): running log-sum of probabilities, or sum of logits
        ignore_votes = np.zeros((batch, height, width), np.int32)  # (B, H, W)
        for (_, flipped), size in zip(self.views, self.view_sizes(height, width)):
            view = images[:, :, ::-1] if flipped else images  # (B, H, W, 3)
            out = self.teacher.label(np.ascontiguousarray(_resize_images(view, size)))
            logits = torch.from_numpy(np.ascontiguousarray(out.logits)).float()  # (B, K, h, w)
            if tuple(logits.shape[-2:]) != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)  # (B, K, H, W)
            labels = out.labels  # (B, h, w)
            if tuple(labels.shape[-2:]) != (height, width):
                labels = np.stack([cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST) for label in labels])
            if flipped:
                logits = logits.flip(-1)  # (B, K, H, W)
                labels = labels[:, :, ::-1]  # (B, H, W)
            ignore_votes += labels == IGNORE_INDEX
            score = F.log_softmax(logits, dim=1) if self.average == "probs" else logits  # (B, K, H, W)
            if combined is None:
                combined = score
            else:
                combined = torch.logaddexp(combined, score) if self.average == "probs" else combined + score
        assert combined is not None
        views = len(self.views)
        combined = combined - math.log(views) if self.average == "probs" else combined / views  # (B, K, H, W)
        labels = class_labels(combined.contiguous())  # (B, H, W) uint8
        labels[ignore_votes * 2 > views] = IGNORE_INDEX
        stride = _grid_stride(height, width, self.logits_stride)
        small = F.avg_pool2d(combined, stride) if stride > 1 else combined  # (B, K, H/s, W/s)
        return TeacherOutput(labels=labels, logits=small.float().numpy())
