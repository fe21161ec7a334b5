"""Depth accuracy against ground truth: AbsRel, streamed overall and per domain (numpy only,
so the evaluator's process stays free of torch).

AbsRel is ``mean |d_pred - d_gt| / d_gt`` over the valid pixels: ground truth in
``(0, max_depth]`` metres (the sim's sky reads 1000 m and falls out). A prediction on a
coarser grid than the ground truth (a net's own output grid) is brought to the ground truth's
size by nearest-neighbour upsampling.

Example:
    >>> import numpy as np
    >>> gt = np.array([[10.0, 20.0, 1000.0]], np.float32)
    >>> abs_rel(np.array([[11.0, 15.0, 5.0]], np.float32), gt, max_depth=80.0)  # (0.1 + 0.25) / 2
    0.175
    >>> scores = DepthScores(max_depth=80.0)
    >>> scores.update("fog", "student", np.array([[11.0, 15.0, 5.0]], np.float32), gt)
    >>> round(scores.summary()["per_domain"]["fog"]["student_depth_abs_rel"], 3)
    0.175
"""
from __future__ import annotations

from typing import Any

import numpy as np

DEPTH_SIDES = ("student", "teacher", "student_on_teacher_frames")


def upsample_nearest(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """``depth`` at (height, width) by nearest neighbour (each output pixel takes the grid
    cell its centre falls in).

    Shape:
        depth (h, w) -> (height, width)

    Example:
        >>> upsample_nearest(np.array([[1.0, 2.0]]), 2, 4).tolist()
        [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]
    """
    h, w = depth.shape
    if (h, w) == (height, width):
        return depth
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)  # (height,)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)  # (width,)
    return depth[rows[:, None], cols[None, :]]


def abs_rel_sums(pred: np.ndarray, gt: np.ndarray, max_depth: float) -> tuple[float, int]:
    """The sum of ``|pred - gt| / gt`` over valid pixels and their count.

    Shape:
        pred (h, w) metres (any grid), gt (H, W) metres -> (float, int)
    """
    if pred.ndim != 2 or gt.ndim != 2:
        raise ValueError(f"depth maps must be (H, W), got pred {pred.shape}, gt {gt.shape}")
    pred = upsample_nearest(np.asarray(pred, np.float64), *gt.shape)  # (H, W)
    gt = np.asarray(gt, np.float64)
    valid = (gt > 0) & (gt <= max_depth)  # (H, W)
    if not valid.any():
        return 0.0, 0
    return float((np.abs(pred[valid] - gt[valid]) / gt[valid]).sum()), int(valid.sum())


def abs_rel(pred: np.ndarray, gt: np.ndarray, max_depth: float) -> float | None:
    """AbsRel of one depth map (None when no pixel is valid). Shape: pred (h, w), gt (H, W)."""
    total, count = abs_rel_sums(pred, gt, max_depth)
    return total / count if count else None


class DepthScores:
    """Streaming AbsRel of the student (every frame it predicts depth on), the teacher (the
    frames it labelled) and the student on the teacher's frames, overall and per domain."""

    def __init__(self, max_depth: float = 80.0) -> None:
        if not max_depth > 0:
            raise ValueError(f"max_depth must be > 0, got {max_depth}")
        self.max_depth = float(max_depth)
        self._overall = np.zeros((len(DEPTH_SIDES), 2), np.float64)  # (sides, [sum, pixels])
        self._window = np.zeros((len(DEPTH_SIDES), 2), np.float64)  # the same since the last window_metrics
        self._frames = np.zeros(len(DEPTH_SIDES), np.int64)
        self._domains: dict[str, np.ndarray] = {}

    def update(self, domain: str, side: str, pred: np.ndarray, gt: np.ndarray) -> None:
        """Count one frame's depth map of ``side`` (one of :data:`DEPTH_SIDES`).

        Shape:
            pred (h, w) metres, gt (H, W) metres
        """
        if side not in DEPTH_SIDES:
            raise ValueError(f"side must be one of {DEPTH_SIDES}, got {side!r}")
        total, count = abs_rel_sums(pred, gt, self.max_depth)
        k = DEPTH_SIDES.index(side)
        scope = self._domains.setdefault(domain, np.zeros((len(DEPTH_SIDES), 3), np.float64))
        for sums in (self._overall[k], self._window[k], scope[k]):
            sums[0] += total
            sums[1] += count
        scope[k, 2] += 1
        self._frames[k] += 1

    @property
    def active(self) -> bool:
        """Whether any depth map was counted."""
        return bool(self._frames.any())

    @staticmethod
    def _named(sums: np.ndarray) -> dict[str, float | None]:
        return {f"{side}_depth_abs_rel": (float(sums[k, 0] / sums[k, 1]) if sums[k, 1] > 0 else None)
                for k, side in enumerate(DEPTH_SIDES)}

    def window_metrics(self) -> dict[str, float | None]:
        """``<side>_depth_abs_rel`` since the last call (then reset); {} when nothing was counted.

        Example:
            >>> scores = DepthScores()
            >>> scores.update("fog", "student", np.array([[12.0]]), np.array([[10.0]]))
            >>> round(scores.window_metrics()["student_depth_abs_rel"], 3), scores.window_metrics()
            (0.2, {})
        """
        if not self._window[:, 1].any():
            return {}
        out = self._named(self._window)
        self._window = np.zeros_like(self._window)
        return out

    def summary(self) -> dict[str, Any]:
        """``<side>_depth_abs_rel`` overall, ``depth_frames`` per side and ``per_domain`` AbsRel."""
        out: dict[str, Any] = self._named(self._overall)
        out["depth_frames"] = {side: int(n) for side, n in zip(DEPTH_SIDES, self._frames)}
        out["depth_max"] = self.max_depth
        out["per_domain"] = {name: self._named(sums) for name, sums in self._domains.items()}
        return out
