"""Robust mIoU on the stream: the student's labels under attack and corruption, scored by the
numba confusion kernel against the ground truth (where a frame has some) and against the
teacher's labels (every robustness frame has them: the learner always asks the teacher there).

Each view (``pgd 4/255``, a Kornia preset, ``worst_of_k``) keeps two confusion matrices per
scope (overall, per domain, current window), plus the student's clean labels on the same
frames (``clean``), so that a robust figure sits beside the clean one it should be compared
with. A view that moved the pixels (a geometric preset) comes with the 3x3 matrix that takes
frame pixels to view pixels; the references are moved the same way (nearest neighbour, and
255 = not scored where no frame pixel lands). Torch-free, like the evaluator actor.

Example:
    >>> import numpy as np
    >>> scores = RobustScores(num_classes=3)
    >>> truth = np.array([[0, 1, 2, 2]], np.uint8)
    >>> scores.update("clear", {"pgd 4/255": np.array([[0, 1, 1, 1]], np.uint8)}, {}, clean=truth, truth=truth, teacher=truth)
    >>> out = scores.summary()
    >>> out["frames"], out["clean_miou"], round(out["views"]["pgd 4/255"]["miou"], 4)
    (1, 1.0, 0.4444)
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from perception.evaluator import confusion_update
from perception.labels import IGNORE_INDEX
from perception.metrics import mean_iou

CLEAN = "clean"
REFERENCES = ("truth", "teacher")


def move_labels(labels: np.ndarray, transform: list[list[float]] | np.ndarray) -> np.ndarray:
    """A label map moved by a frame-to-view pixel transform (nearest; 255 where nothing lands).

    Shape:
        labels (H, W) uint8, transform (3, 3) -> (H, W) uint8

    Example:
        >>> shift = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # one pixel to the right
        >>> move_labels(np.array([[1, 2, 3]], np.uint8), shift).tolist()
        [[255, 1, 2]]
    """
    height, width = labels.shape
    matrix = np.asarray(transform, np.float64).reshape(3, 3)
    return cv2.warpPerspective(labels, matrix, (width, height), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE_INDEX)  # (H, W)


class _Tally:
    """Per view: one (C, C + 1) matrix against each reference, and a frame count."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.cm: dict[str, np.ndarray] = {}  # "view/reference" -> (C, C + 1)
        self.frames = 0

    def add(self, view: str, reference: str, target: np.ndarray, pred: np.ndarray, ignore_index: int) -> None:
        key = f"{view}/{reference}"
        if key not in self.cm:
            self.cm[key] = np.zeros((self.num_classes, self.num_classes + 1), np.int64)  # (C, C + 1)
        confusion_update(self.cm[key], target, pred, ignore_index)

    def metrics(self) -> dict[str, Any]:
        views: dict[str, dict[str, float | None]] = {}
        for key, cm in self.cm.items():
            view, reference = key.rsplit("/", 1)
            value = mean_iou(cm) if cm.sum() else float("nan")
            suffix = "miou" if reference == "truth" else "miou_vs_teacher"
            views.setdefault(view, {})[suffix] = None if math.isnan(value) else float(value)
        clean = views.pop(CLEAN, {})
        return {"frames": self.frames, "clean_miou": clean.get("miou"), "clean_miou_vs_teacher": clean.get("miou_vs_teacher"),
                "views": {name: views[name] for name in sorted(views)}}


class RobustScores:
    """Robust and corrupted mIoU overall, per domain and per window (module docstring)."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.overall = _Tally(num_classes)
        self.window = _Tally(num_classes)
        self.domains: dict[str, _Tally] = {}

    def update(self, domain: str, labels: dict[str, np.ndarray], transforms: dict[str, Any], clean: np.ndarray,
               truth: np.ndarray | None, teacher: np.ndarray | None) -> None:
        """Count one robustness frame: the student's labels on each view, its clean labels,
        and the references it is scored against (either may be None).

        Shape:
            labels {view: (H, W) uint8}, clean, truth, teacher (H, W) uint8
        """
        scopes = [self.overall, self.window, self.domains.setdefault(domain, _Tally(self.num_classes))]
        references = {name: ref for name, ref in zip(REFERENCES, (truth, teacher)) if ref is not None}
        for scope in scopes:
            scope.frames += 1
        for reference, target in references.items():
            for scope in scopes:
                scope.add(CLEAN, reference, target, clean, self.ignore_index)
            for view, pred in labels.items():
                moved = move_labels(target, transforms[view]) if view in transforms else target  # (H, W)
                for scope in scopes:
                    scope.add(view, reference, moved, pred, self.ignore_index)

    def window_metrics(self) -> dict[str, Any] | None:
        """The current window's figures (None when it holds no robustness frame); starts a new window."""
        if self.window.frames == 0:
            return None
        out = self.window.metrics()
        self.window = _Tally(self.num_classes)
        return out

    def summary(self) -> dict[str, Any]:
        """Overall figures and ``per_domain`` with the same keys."""
        out = self.overall.metrics()
        out["per_domain"] = {name: tally.metrics() for name, tally in self.domains.items()}
        return out
