"""A small deterministic teacher for the learner tests (no simulator, no network)."""
import numpy as np

from perception.teacher import TeacherOutput


class BrightnessTeacher:
    """Labels bright pixels 'sky' (10) and dark ones 'road' (0); counts its calls.

    >>> BrightnessTeacher().label(np.full((1, 2, 2, 3), 200, np.uint8)).labels[0, 0, 0]
    np.uint8(10)
    """

    name, device, params = "toy", "cpu", 0

    def __init__(self):
        self.calls = 0

    def label(self, images):
        self.calls += 1
        labels = np.where(images.mean(-1) > 100, 10, 0).astype(np.uint8)  # (B, H, W)
        return TeacherOutput(labels, np.zeros((len(images), 19, 4, 8), np.float32))

    def macs(self, h, w):
        return 0
