"""The learner's drift monitor: a named detector on named signals plus a disagreement detector.

- the named detector (``drift.detector`` on ``drift.signals``, names from
  :mod:`learners.drift_combined`; teacher-free signals are fed on every frame, so it reacts
  within a few frames):

  - ``page_hinkley`` on ``input`` (the default):
    :class:`~learners.input_stats.InputDriftMonitor` (frame statistics -> novelty ->
    Page-Hinkley, the ``input_*`` settings);
  - ``mcusum`` on ``stats``: :class:`~learners.drift_vector.VectorCUSUM` on the 21 frame
    statistics themselves;
  - any single-signal detector (``page_hinkley``, ``adwin``, ``kswin``, ``cusum``) on one of
    ``input`` (the novelty of an :class:`~learners.input_stats.InputStatsTracker`),
    ``entropy`` / ``confidence`` (the student's softmax on the frame,
    :func:`~learners.confidence.softmax_confidence`: pass them to :meth:`DriftMonitor.update_frame`)
    or ``disagreement``, with its config's defaults;
  - ``combined`` on several scalar signals: :class:`~learners.drift_combined.CombinedDetector`
    (one StepCUSUM each, an OR); a disagreement value arrives as a row of its own.

- disagreement: :class:`~learners.drift.ADWIN` on ``1 - pixel agreement`` of the student with
  the teacher on labelled frames, reporting increases only (the student getting worse).

A drift from either opens a cooldown during which further detections are folded into the
first (one change of the world, one event), and restarts every detector on the new regime.

Example:
    >>> import numpy as np
    >>> m = DriftMonitor(DriftConfig())
    >>> day = np.full((30, 40, 3), 120, np.uint8); day[::2] = 140
    >>> hits = [i for i, img in enumerate([day] * 80 + [day // 6] * 20) if m.update_input(img, i)]
    >>> hits
    [83]
    >>> m = DriftMonitor(DriftConfig(detector="mcusum", signals=("stats",)))
    >>> [i for i, img in enumerate([day] * 80 + [day // 6] * 20) if m.update_frame(img, i)]
    [83]
    >>> DriftConfig(detector="mcusum")
    Traceback (most recent call last):
    ...
    ValueError: drift.signals: detector 'mcusum' watches the frame-statistics vector: signals must be 'stats', got input
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from learners.drift import ADWIN, ADWINConfig, PageHinkleyConfig
from learners.drift_combined import CombinedConfig, StepCUSUMConfig, check_detector, check_signals, make_detector
from learners.input_stats import InputDriftConfig, InputDriftMonitor, InputStatsConfig, InputStatsTracker, frame_statistics

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
    detector: str = "page_hinkley"  # the teacher-free detector, a name of learners.drift_combined.DETECTORS
    signals: tuple[str, ...] = ("input",)  # what it watches (learners.drift_combined.SIGNALS; module docstring)

    def __post_init__(self) -> None:
        check_detector(self.detector, "drift.detector")
        object.__setattr__(self, "signals", check_signals(self.signals, "drift.signals", self.detector))
        if self.cooldown < 0:
            raise ValueError(f"cooldown must be >= 0, got {self.cooldown}")
        if not 0.0 < self.adwin_delta < 1.0:
            raise ValueError(f"adwin_delta must be in (0, 1), got {self.adwin_delta}")


class DriftMonitor:
    """The named detector, the disagreement detector, the cooldown, and a checkpointable state
    (module docstring)."""

    def __init__(self, config: DriftConfig = DriftConfig()):
        self.config = config
        self.input = InputDriftMonitor(
            InputDriftConfig(
                stats=InputStatsConfig(warmup=config.input_warmup, alpha=config.input_alpha),
                detector=PageHinkleyConfig(min_instances=10, delta=config.input_delta, threshold=config.input_threshold,
                                           alpha=1.0, mode="up"),
            )
        )
        # the shipped path (page_hinkley on input) is self.input; any other choice is self.detector
        self.legacy = config.detector == "page_hinkley" and config.signals == ("input",)
        self.detector: Any = None
        self.tracker: InputStatsTracker | None = None  # the input novelty of a named scalar detector
        if not self.legacy:
            if config.detector == "combined":
                members = (StepCUSUMConfig(),) * len(config.signals)
                self.detector = make_detector("combined", CombinedConfig(signals=config.signals, members=members, cooldown=0))
            else:
                self.detector = make_detector(config.detector)
            if "input" in config.signals:
                self.tracker = InputStatsTracker(InputStatsConfig(warmup=config.input_warmup, alpha=config.input_alpha))
        self._row = np.full(len(config.signals), np.nan)  # (S,) one frame's values for a combined detector
        self.disagreement = ADWIN(ADWINConfig(delta=config.adwin_delta, mode="up"))
        self.last_drift = -(10**9)
        self.detections = 0

    @property
    def wants_confidence(self) -> bool:
        """Whether the named detector watches the student's entropy or confidence (the caller
        then passes them to :meth:`update_frame`)."""
        return self.config.input and any(name in ("entropy", "confidence") for name in self.config.signals)

    def _fire(self, index: int) -> bool:
        if index - self.last_drift <= self.config.cooldown:
            return False
        self.last_drift = index
        self.detections += 1
        self.input.reset()
        self.disagreement.reset()
        if self.detector is not None:
            self.detector.reset()
        if self.tracker is not None:
            self.tracker.reset()
        return True

    def update_input(self, image: np.ndarray, index: int) -> bool:
        """Feed frame ``index``'s image; True when this update declares a drift.

        Shape:
            image (H, W, 3) uint8
        """
        return self.update_frame(image, index)

    def update_frame(self, image: np.ndarray, index: int, entropy: float | None = None,
                     confidence: float | None = None, features: np.ndarray | None = None) -> bool:
        """Feed frame ``index``: its image and, when :attr:`wants_confidence`, the student's
        entropy and confidence on it; True when this update declares a drift. ``features``:
        the frame's :func:`~learners.input_stats.frame_statistics` where the caller has them
        already (computed here otherwise, when a detector needs them).

        Shape:
            image (H, W, 3) uint8, features (21,) or None
        """
        if not self.config.input:
            return False
        needs_stats = self.legacy or self.tracker is not None or self.config.signals == ("stats",)
        if needs_stats and features is None:
            features = frame_statistics(image)
        return self.update_input_features(features, index, entropy, confidence)

    def update_input_features(self, features: np.ndarray | None, index: int, entropy: float | None = None,
                              confidence: float | None = None) -> bool:
        """:meth:`update_frame` from frame ``index``'s precomputed
        :func:`~learners.input_stats.frame_statistics` (a replay of one stream's features under
        several settings, e.g. ``bench/drift.py --tune``); the same detections.

        Shape:
            features (21,) float64
        """
        if not self.config.input:
            return False
        if self.legacy:
            self.input.update_features(features)
            return self.input.drift_detected and self._fire(index)
        signals = self.config.signals
        if signals == ("stats",):
            self.detector.update(features)
            return self.detector.drift_detected and self._fire(index)
        values = {"input": self.tracker.update(features) if self.tracker is not None else None,
                  "entropy": entropy, "confidence": confidence}
        if self.config.detector != "combined":
            value = values.get(signals[0])
            if value is None:  # warming up, or a signal this frame lacks
                return False
            self.detector.update(value)
            return self.detector.drift_detected and self._fire(index)
        row = self._row
        for s, name in enumerate(signals):
            value = values.get(name)
            row[s] = np.nan if value is None else value
        if np.isnan(row).all():
            return False
        self.detector.update(row)
        return self.detector.drift_detected and self._fire(index)

    def update_disagreement(self, value: float, index: int) -> bool:
        """Feed ``1 - agreement`` of a labelled frame (to the disagreement detector, and to the
        named detector when it watches ``disagreement``); True when this declares a drift."""
        fired = False
        if self.detector is not None and "disagreement" in self.config.signals:
            if self.config.detector == "combined":
                row = np.full(len(self.config.signals), np.nan)  # (S,)
                row[self.config.signals.index("disagreement")] = value
                self.detector.update(row)
            else:
                self.detector.update(value)
            fired = self.detector.drift_detected and self._fire(index)
        if not self.config.disagreement:
            return fired
        self.disagreement.update(value)
        return (self.disagreement.drift_detected and self._fire(index)) or fired

    def state(self) -> dict[str, Any]:
        out = {"last_drift": self.last_drift, "detections": self.detections,
               "input": self.input.state(), "disagreement": self.disagreement.state()}
        if self.detector is not None:
            out["detector"] = {"name": self.config.detector, "signals": list(self.config.signals),
                               "state": self.detector.state(),
                               "tracker": None if self.tracker is None else self.tracker.state()}
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        saved = state.get("detector")
        named = None if saved is None else (saved["name"], tuple(saved["signals"]))
        mine = None if self.detector is None else (self.config.detector, self.config.signals)
        if named != mine:
            raise ValueError(f"DriftMonitor.load_state: state saved with detector {named or ('page_hinkley', ('input',))}, "
                             f"this monitor has drift.detector={self.config.detector} on drift.signals={self.config.signals}")
        self.last_drift = int(state["last_drift"])
        self.detections = int(state["detections"])
        self.input.load_state(state["input"])
        self.disagreement.load_state(state["disagreement"])
        if saved is not None:
            self.detector.load_state(saved["state"])
            if self.tracker is not None:
                self.tracker.load_state(saved["tracker"])
