"""A teacher for the part tests: every pixel 'road', logits on the 1/4 grid."""
from __future__ import annotations

import numpy as np

from perception.teacher import TeacherOutput


class FlatTeacher:
    """Labels every pixel 'road' (0), logits on the 1/4 grid; ``seen`` holds each call's first
    pixel (which frame it was), ``calls`` how many calls there were.

    >>> teacher = FlatTeacher(); teacher.label(np.full((1, 8, 8, 3), 3, np.uint8)).logits.shape, teacher.seen
    ((1, 19, 2, 2), [3])
    """

    name, device, params = "flat", "cpu", 1

    def __init__(self) -> None:
        self.seen: list[int] = []

    @property
    def calls(self) -> int:
        return len(self.seen)

    def label(self, images: np.ndarray) -> TeacherOutput:
        self.seen.append(int(images[0, 0, 0, 0]))
        batch, height, width = images.shape[:3]
        logits = np.zeros((batch, 19, height // 4, width // 4), np.float32)  # (B, 19, H/4, W/4)
        logits[:, 0] = 4.0
        return TeacherOutput(np.zeros((batch, height, width), np.uint8), logits)

    def macs(self, height: int, width: int) -> int:
        return 0
