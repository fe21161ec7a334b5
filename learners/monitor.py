"""The learner's drift monitor: a teacher-free input detector plus a disagreement detector.

- input: :class:`~learners.input_stats.InputDriftMonitor` (frame statistics -> novelty ->
  Page-Hinkley) on every frame; it needs no teacher, so it reacts within a few frames.
- disagreement: :class:`~learners.drift.ADWIN` on ``1 - pixel agreement`` of the student with
  the teacher on labelled frames, reporting increases only (the student getting worse).

A drift from either opens a cooldown during which further detections are folded into the
first (one change of the world, one event), and restarts both detectors on the new regime.

Example:
    >>> import numpy as np
    >>> m = DriftMonitor(DriftConfig())
    >>> day = np.full((30, 40, 3), 120, np.uint8); day[::2] = 140
    >>> hits = [i for i, img in enumerate([day] * 80 + [day // 6] * 20) if m.update_input(img, i)]
    >>> hits
    [83]
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from learners.drift import ADWIN, ADWINConfig, PageHinkleyConfig
from learners.input_stats import InputDriftConfig, InputDriftMonitor, InputStatsConfig, frame_statistics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftConfig:
    input: bool = True  # watch the teacher-free input statistics
    input_warmup: int = 30  # frames that build the input reference after a (re)start
    input_alpha: float = 0.02  # EWMA rate of the input reference
    input_delta: float = 0.5  # Page-Hinkley slack on the novelty score
    input_threshold: float = 12.0  # Page-Hinkley lambda on the novelty score (tuned on sim tours of the
    # DRIFT_TUNING worlds, reported on others: bench/drift.py --tune, bench/drift.py)
    disagreement: bool = True  # watch student-teacher disagreement on labelled frames
    adwin_delta: float = 0.002  # ADWIN confidence
    cooldown: int = 100  # frames after a drift during which new detections are folded in

    def __post_init__(self) -> None:
        if self.cooldown < 0:
            raise ValueError(f"cooldown must be >= 0, got {self.cooldown}")
        if not 0.0 < self.adwin_delta < 1.0:
            raise ValueError(f"adwin_delta must be in (0, 1), got {self.adwin_delta}")


class DriftMonitor:
    """Both detectors, the cooldown, and a checkpointable state (module docstring)."""

    def __init__(self, config: DriftConfig = DriftConfig()):
        self.config = config
        self.input = InputDriftMonitor(
            InputDriftConfig(
                stats=InputStatsConfig(warmup=config.input_warmup, alpha=config.input_alpha),
                detector=PageHinkleyConfig(min_instances=10, delta=config.input_delta, threshold=config.input_threshold,
                                           alpha=1.0, mode="up"),
            )
        )
        self.disagreement = ADWIN(ADWINConfig(delta=config.adwin_delta, mode="up"))
        self.last_drift = -(10**9)
        self.detections = 0

    def _fire(self, index: int) -> bool:
        if index - self.last_drift <= self.config.cooldown:
            return False
        self.last_drift = index
        self.detections += 1
        self.input.reset()
        self.disagreement.reset()
        return True

    def update_input(self, image: np.ndarray, index: int) -> bool:
        """Feed frame ``index``'s image; True when this update declares a drift.

        Shape:
            image (H, W, 3) uint8
        """
        if not self.config.input:
            return False
        return self.update_input_features(frame_statistics(image), index)

    def update_input_features(self, features: np.ndarray, index: int) -> bool:
        """:meth:`update_input` from frame ``index``'s precomputed
        :func:`~learners.input_stats.frame_statistics` (a replay of one stream's features under
        several settings, e.g. ``bench/drift.py --tune``); the same detections.

        Shape:
            features (21,) float64
        """
        if not self.config.input:
            return False
        self.input.update_features(features)
        return self.input.drift_detected and self._fire(index)

    def update_disagreement(self, value: float, index: int) -> bool:
        """Feed ``1 - agreement`` of a labelled frame; True when this declares a drift."""
        if not self.config.disagreement:
            return False
        self.disagreement.update(value)
        return self.disagreement.drift_detected and self._fire(index)

    def state(self) -> dict[str, Any]:
        return {"last_drift": self.last_drift, "detections": self.detections,
                "input": self.input.state(), "disagreement": self.disagreement.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.last_drift = int(state["last_drift"])
        self.detections = int(state["detections"])
        self.input.load_state(state["input"])
        self.disagreement.load_state(state["disagreement"])
