"""What the stream learner gives back: one :class:`StepResult` per frame step, carrying an
:class:`EvalRecord` per finalised frame.

Plain dataclasses of numpy arrays and numbers, free of torch, so the Ray evaluator actor can
receive them without importing torch.

Example:
    >>> import numpy as np
    >>> record = EvalRecord(0, "clear", np.zeros((2, 2), np.uint8), None, None)
    >>> StepResult(index=0, asked_teacher=False, teacher_rate=0.1, records=[record]).records[0].domain
    'clear'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EvalRecord:
    """What the evaluator needs about one finalised frame."""

    index: int
    domain: str
    student: np.ndarray  # (H, W) uint8 prediction made before learning from the frame
    ground_truth: np.ndarray | None  # (H, W) uint8
    teacher: np.ndarray | None  # (H, W) uint8 teacher labels, on teacher frames only


@dataclass
class StepResult:
    """What one call to :meth:`StreamLearner.step` gives back: small values only."""

    index: int
    asked_teacher: bool
    teacher_rate: float
    records: list[EvalRecord] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # distillation loss of each labelled frame learned
