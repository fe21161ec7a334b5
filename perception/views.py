"""What the teacher side makes of a labelled frame besides its labels: robustness views.

A :class:`FrameViews` travels with a :class:`~perception.teacher.TeacherOutput` from the
teacher part to the learner (in-process, or between Ray actors), so it holds plain numpy
arrays and JSON-safe recipes only. The views themselves are made by
:mod:`perception.attacks` (gradient attacks) and :mod:`perception.corruptions` (Kornia
presets, worst-of-k); :mod:`stream.parts` decides which frames get them.

Example:
    >>> import numpy as np
    >>> views = FrameViews(adversarial=np.zeros((4, 6, 3), np.uint8), recipe={"attack": "pgd"})
    >>> views.adversarial.shape, views.corrupted is None, views.nbytes
    ((4, 6, 3), True, 72)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FrameViews:
    """Views of one frame, each the frame's size.

    Attributes:
        adversarial: (H, W, 3) uint8, the frame under a gradient attack (or None).
        corrupted: (H, W, 3) uint8, the worst-of-k Kornia view (or None).
        corrupted_labels: (H, W) uint8, the teacher's labels carried to the Kornia view
            (moved with it by a geometric preset; 255 where nothing maps), or None.
        corrupted_aligned: whether the Kornia view is pixel-aligned with the frame (a
            photometric preset), so that the teacher's soft labels of the frame apply to it.
        recipe: how the views were made, JSON-safe: the attack's settings and target, the
            preset's name, seed and sampled parameters (replayable).
        ms: milliseconds spent making them.
    """

    adversarial: np.ndarray | None = None
    corrupted: np.ndarray | None = None
    corrupted_labels: np.ndarray | None = None
    corrupted_aligned: bool = True
    recipe: dict[str, Any] = field(default_factory=dict)
    ms: float = 0.0

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (what a transfer of the views costs)."""
        arrays = (self.adversarial, self.corrupted, self.corrupted_labels)
        return int(sum(a.nbytes for a in arrays if a is not None))
