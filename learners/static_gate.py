"""The input-change gate: no teacher call and no learning on a frame that repeats the last one learned.

On a static stretch (the car stopped at a light) the camera sends the same view for many
seconds. A scheduler that keeps asking the teacher at its rate fills the replay buffer with
copies of that one view and takes its gradient steps on it again and again, and the student
drifts towards that view (a collapse the frozen starting student does not suffer). The gate
compares each frame the scheduler picks with the last frame the student learned from, on
small block-mean grey thumbnails, and skips the pick while the mean absolute change stays
under ``static.threshold`` grey levels: the first frame of a stop is learned, the rest of the
stop only predicted. Moving traffic and rain change a few blocks a little; a moving camera
changes most blocks by much more (``bench/static.py``, tuned on ``sim.seeds.STATIC_TUNING``).

Example:
    >>> import numpy as np
    >>> from learners.configs import StaticGateConfig
    >>> gate = StaticGate(StaticGateConfig(enabled=True, threshold=3.0, cells=4))
    >>> still = np.full((16, 32, 3), 100, np.uint8)
    >>> [gate.admit(still), gate.admit(still), gate.admit(still + 20)], gate.skipped_total
    ([True, False, True], 1)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from learners.configs import StaticGateConfig

GREY = np.array([0.299, 0.587, 0.114], np.float32)  # (3,) luma weights


def thumbnail(image: np.ndarray, cells: int) -> np.ndarray:
    """Grey block means of ``cells`` x ``cells`` pixels (the edge rows/columns that do not fill a block are left out).

    Shape:
        image (H, W, 3) uint8 -> (H // cells, W // cells) float32

    Example:
        >>> thumbnail(np.full((4, 6, 3), 10, np.uint8), 2).shape
        (2, 3)
    """
    h, w = image.shape[0] // cells, image.shape[1] // cells
    if h == 0 or w == 0:
        raise ValueError(f"static.cells={cells} is larger than the frame ({image.shape[1]}x{image.shape[0]})")
    grey = image[: h * cells, : w * cells].astype(np.float32) @ GREY  # (h*c, w*c)
    return grey.reshape(h, cells, w, cells).mean(axis=(1, 3))  # (h, w)


class StaticGate:
    """Decides, for each frame the scheduler picked, whether it is new enough to ask and learn."""

    def __init__(self, config: StaticGateConfig) -> None:
        self.config = config
        self.reference: np.ndarray | None = None  # (h, w) float32 thumbnail of the last frame admitted
        self.skipped_in_row = 0
        self.skipped_total = 0
        self.last_change = float("nan")

    def change(self, image: np.ndarray) -> float:
        """Mean absolute grey-level change of ``image`` against the last admitted frame (inf before the first)."""
        if self.reference is None:
            return float("inf")
        small = thumbnail(image, self.config.cells)  # (h, w)
        if small.shape != self.reference.shape:
            return float("inf")
        return float(np.abs(small - self.reference).mean())

    def admit(self, image: np.ndarray) -> bool:
        """True when the picked frame ``image`` should go to the teacher (and it becomes the reference)."""
        self.last_change = self.change(image)
        limit = self.config.max_skip
        if self.last_change < self.config.threshold and not (limit and self.skipped_in_row >= limit):
            self.skipped_in_row += 1
            self.skipped_total += 1
            return False
        self.reference = thumbnail(image, self.config.cells)
        self.skipped_in_row = 0
        return True

    def state(self) -> dict[str, Any]:
        """For a checkpoint (plain JSON values)."""
        ref = None if self.reference is None else [list(self.reference.shape), self.reference.ravel().tolist()]
        return {"reference": ref, "skipped_in_row": self.skipped_in_row, "skipped_total": self.skipped_total}

    def load_state(self, state: dict[str, Any]) -> None:
        ref = state.get("reference")
        self.reference = None if ref is None else np.asarray(ref[1], np.float32).reshape(ref[0])
        self.skipped_in_row = int(state.get("skipped_in_row", 0))
        self.skipped_total = int(state.get("skipped_total", 0))
