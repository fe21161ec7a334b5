"""What flows into and out of the stream learner: an :class:`Observation` per camera frame in,
one :class:`StepResult` per step out, carrying a :class:`LearnerOutput` per finalised frame.

An observation holds what a car has, and nothing else: the image, its index, its timestamp
and the camera's name. Ground truth and the simulator's domain tag never reach the learner:
the evaluator joins the learner's outputs with them by frame index. Plain dataclasses of numpy
arrays and numbers, free of torch, so the Ray ingest and evaluator actors can handle them
without importing torch.

Example:
    >>> import numpy as np
    >>> seen = Observation(np.zeros((2, 2, 3), np.uint8), index=0, timestamp=0.0, source_id="cam")
    >>> output = LearnerOutput(0, np.zeros((2, 2), np.uint8), None)
    >>> StepResult(index=0, asked_teacher=False, teacher_rate=0.1, outputs=[output]).outputs[0].index
    0
    >>> hasattr(seen, "label")
    False
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Observation:
    """One camera frame as the car sees it (no ground truth, no domain tag).

    Attributes:
        image: (H, W, 3) uint8 RGB, read-only.
        index: monotonic per source, from 0.
        timestamp: seconds on the source's clock.
        source_id: the camera or log it came from.
    """

    image: np.ndarray
    index: int
    timestamp: float
    source_id: str

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return self.image.shape[0], self.image.shape[1]


@dataclass
class RobustRecord:
    """The student's predictions on one frame under attack and corruption, made before it
    learnt from the frame (``evaluator.robust_every``); the evaluator scores them against the
    ground truth and the teacher's labels.

    ``labels`` maps a view's name (``pgd 4/255``, a Kornia preset, ``worst_of_k``) to the
    student's (H, W) uint8 labels on that view, in the view's own pixel grid; ``transforms``
    gives, for a view that moved the pixels (a geometric preset), the 3x3 matrix that takes
    frame pixels to view pixels, so that a reference label map can be moved the same way.
    """

    labels: dict[str, np.ndarray]
    transforms: dict[str, list[list[float]]] = field(default_factory=dict)
    ms: float = 0.0  # milliseconds the attacks and corruptions took


@dataclass
class LearnerOutput:
    """What the learner says about one finalised frame (the evaluator adds the ground truth)."""

    index: int
    student: np.ndarray  # (H, W) uint8 prediction made before learning from the frame
    teacher: np.ndarray | None  # (H, W) uint8 teacher labels, on teacher frames only
    robust: RobustRecord | None = None  # on the robustness frames only (evaluator.robust_every)
    student_depth: np.ndarray | None = None  # (h, w) float16 metres on the student's grid, predicted before learning
    # (a student with a depth head only)
    teacher_depth: np.ndarray | None = None  # (h', w') float16 metres on the teacher logits' grid, 0 = none
    # (teacher frames of a multi-task run only)


@dataclass
class StepResult:
    """What one call to :meth:`StreamLearner.step` gives back: small values only."""

    index: int
    asked_teacher: bool
    teacher_rate: float
    outputs: list[LearnerOutput] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # distillation loss of each labelled frame learned
    prediction: np.ndarray | None = None  # (H, W) uint8: the step's own prediction, for a closed loop (the
    # part that runs the learner drops it unless someone steers by it)
