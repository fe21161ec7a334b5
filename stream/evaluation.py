"""Scoring the stream: the learner's evaluation records into the numba evaluator.

:class:`FrameEvaluator` is what both runners feed (in the driver's process, or in the Ray
evaluator actor). It imports neither torch nor ray, so the evaluator actor's process stays
small and starts fast.

Example:
    >>> import numpy as np
    >>> from learners.records import EvalRecord
    >>> from perception.evaluator import EvaluatorConfig
    >>> evaluator = FrameEvaluator(EvaluatorConfig(window=2))
    >>> labels = np.zeros((4, 4), np.uint8)
    >>> windows = evaluator.update([EvalRecord(i, "clear", labels, labels, None) for i in range(2)])
    >>> windows[0]["frame_end"], windows[0]["student_miou"]
    (2, 1.0)
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from learners.records import EvalRecord
from perception.evaluator import EvaluatorConfig, StreamingEvaluator
from perception.labels import CAMVID_CLASS_NAMES, CITYSCAPES_TO_CAMVID


class EvalMapper:
    """Evaluate in the canonical space, or map predictions into a log's label set first."""

    def __init__(self, label_map: str, base: EvaluatorConfig):
        self.name = label_map
        if label_map in ("", "canonical", "cityscapes"):
            self.table = None
            self.config = base
        elif label_map == "camvid":
            self.table = np.full(256, 255, np.uint8)
            self.table[: len(CITYSCAPES_TO_CAMVID)] = CITYSCAPES_TO_CAMVID
            self.config = EvaluatorConfig(num_classes=len(CAMVID_CLASS_NAMES), ignore_index=base.ignore_index, window=base.window)
        else:
            raise ValueError(f"unknown label map {label_map!r} for evaluation (choose canonical or camvid)")

    def __call__(self, labels: np.ndarray | None) -> np.ndarray | None:
        if labels is None or self.table is None:
            return labels
        return self.table[labels]


class FrameEvaluator:
    """A :class:`StreamingEvaluator` fed with :class:`EvalRecord` s, skipping replays.

    Ground truth is expected in the evaluation label set; predictions are mapped into it.
    """

    def __init__(self, config: EvaluatorConfig, label_map: str = ""):
        self.mapper = EvalMapper(label_map, config)
        self.evaluator = StreamingEvaluator(self.mapper.config)
        self.last_index = -1

    def update(self, records: Iterable[EvalRecord]) -> list[dict[str, Any]]:
        """Count records in order; returns the windows completed."""
        windows = []
        for record in records:
            if record.index <= self.last_index:  # re-sent after an actor restart
                continue
            self.last_index = record.index
            self.evaluator.update(record.domain, self.mapper(record.student), record.ground_truth, self.mapper(record.teacher))
            window = self.evaluator.window_metrics()
            if window is not None:
                window["frame_end"] = record.index + 1
                window["domain"] = record.domain
                window["teacher_rate"] = window["teacher_frames"] / max(1, window["frames"])
                windows.append(window)
        return windows

    def check_labels(self, source: str = "") -> str | None:
        """Once enough labelled frames were counted, a loud warning (logged, and returned that
        one time) when the teacher agrees with the ground truth on almost no pixel: labels in
        another label set than ``run.label_map`` says. ``source`` is ``run.source`` (named in
        the warning). Cheap; call it after :meth:`update`. See :class:`stream.labelcheck.LabelGuard`.
        """
        from stream.labelcheck import LabelGuard

        if not hasattr(self, "label_guard"):
            self.label_guard = LabelGuard(self.mapper.name, source)
        return self.label_guard.check(self.evaluator)

    def finish(self) -> list[dict[str, Any]]:
        """Close the last, partial window at the end of a run (a log shorter than
        ``evaluator.window``, or the frames after the last full window); ``[]`` when it is
        empty. Stamped as :meth:`update`'s windows are, plus ``partial: True``.

        Example:
            >>> from learners.records import EvalRecord
            >>> evaluator = FrameEvaluator(EvaluatorConfig(window=10))
            >>> labels = np.zeros((4, 4), np.uint8)
            >>> evaluator.update([EvalRecord(i, "clear", labels, labels, None) for i in range(3)])
            []
            >>> [(w["frames"], w["frame_end"], w["domain"], w["partial"]) for w in evaluator.finish()]
            [(3, 3, 'clear', True)]
            >>> evaluator.finish()
            []
        """
        window = self.evaluator.window_metrics(final=True)
        if window is None:
            return []
        window["frame_end"] = self.last_index + 1
        window["domain"] = self.evaluator.last_domain
        window["teacher_rate"] = window["teacher_frames"] / max(1, window["frames"])
        window["partial"] = True
        return [window]

    def summary(self) -> dict[str, Any]:
        return self.evaluator.summary()
