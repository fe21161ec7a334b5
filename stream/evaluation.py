"""Scoring the stream: the learner's outputs, joined with the ground truth, into the numba evaluator.

:class:`FrameEvaluator` is the evaluator part of a run (in the driver's process, or in the Ray
evaluator actor). It is the one place where the learner's outputs meet the ground truth and
the domain tags: the ingest part sends it each frame's :class:`~stream.frame.GroundTruth`, the
learner part its :class:`~learners.records.LearnerOutput` s, and it joins them by frame index.
It imports neither torch nor ray, so the evaluator actor's process stays small and starts fast.

Example:
    >>> import numpy as np
    >>> from learners.records import LearnerOutput
    >>> from perception.evaluator import EvaluatorConfig
    >>> from stream.frame import GroundTruth
    >>> evaluator = FrameEvaluator(EvaluatorConfig(window=2))
    >>> labels = np.zeros((4, 4), np.uint8)
    >>> truths = [GroundTruth(i, "clear", labels) for i in range(2)]
    >>> windows = evaluator.update(truths, [LearnerOutput(i, labels, None) for i in range(2)])
    >>> windows[0]["frame_end"], windows[0]["student_miou"]
    (2, 1.0)
"""
from __future__ import annotations

from collections import deque
from typing import Any, Iterable

import numpy as np

from learners.records import LearnerOutput
from perception.depth_metrics import DepthScores
from perception.evaluator import EvaluatorConfig, StreamingEvaluator
from perception.labels import CAMVID_CLASS_NAMES, canonical_to_camvid
from perception.robust_scores import RobustScores
from stream.frame import GroundTruth
from stream.machine import peak_rss_mb


ROBUST_KEYS = ("robust_frames", "student_clean_miou_on_robust_frames", "student_clean_miou_vs_teacher_on_robust_frames",
               "student_robust_miou", "student_robust_miou_vs_teacher", "student_corrupt_miou",
               "student_corrupt_miou_vs_teacher")  # what robust_named gives


def robust_named(robust: dict[str, Any] | None) -> dict[str, Any]:
    """:class:`~perception.robust_scores.RobustScores` figures under the summary's names:
    ``student_robust_miou`` (per PGD radius) and ``student_corrupt_miou`` (per Kornia preset,
    and ``worst_of_k``) against the ground truth, the same ``..._vs_teacher`` against the
    teacher's labels, and the student's clean mIoU on the same frames; {} without robustness
    frames.

    Example:
        >>> robust_named({"frames": 2, "clean_miou": 0.8, "clean_miou_vs_teacher": 0.9,
        ...               "views": {"pgd 4/255": {"miou": 0.3}, "rain": {"miou": 0.7, "miou_vs_teacher": 0.75}}})["student_robust_miou"]
        {'4/255': 0.3}
    """
    if not robust or not robust.get("frames"):
        return {}
    views = robust["views"]
    attacks = {name: name.removeprefix("pgd ") for name in views if name.startswith("pgd ")}
    return {
        "robust_frames": robust["frames"],
        "student_clean_miou_on_robust_frames": robust["clean_miou"],
        "student_clean_miou_vs_teacher_on_robust_frames": robust["clean_miou_vs_teacher"],
        "student_robust_miou": {short: views[name].get("miou") for name, short in attacks.items()},
        "student_robust_miou_vs_teacher": {short: views[name].get("miou_vs_teacher") for name, short in attacks.items()},
        "student_corrupt_miou": {name: scores.get("miou") for name, scores in views.items() if name not in attacks},
        "student_corrupt_miou_vs_teacher": {name: scores.get("miou_vs_teacher") for name, scores in views.items()
                                            if name not in attacks},
    }


class EvalMapper:
    """Evaluate in the canonical space, or map predictions into a log's label set first."""

    def __init__(self, label_map: str, base: EvaluatorConfig):
        self.name = label_map
        if label_map in ("", "canonical", "cityscapes"):
            self.table = None
            self.config = base
        elif label_map == "camvid":
            self.table = canonical_to_camvid().table  # (256,) a teacher's "no label" stays ignored
            self.config = EvaluatorConfig(num_classes=len(CAMVID_CLASS_NAMES), ignore_index=base.ignore_index, window=base.window)
        else:
            raise ValueError(f"unknown label map {label_map!r} for evaluation (choose canonical or camvid)")

    def __call__(self, labels: np.ndarray | None) -> np.ndarray | None:
        if labels is None or self.table is None:
            return labels
        return self.table[labels]


class VisitScores:
    """The student's mIoU per *visit*: a run of consecutive frames of one domain. Each visit
    keeps the confusion of its first and of its last ``edge`` frames, so that what the
    student knew of a domain when it left can be compared with what it still knows when it
    comes back (forgetting: the first visit's ``tail_miou`` minus the return's ``head_miou``).

    Example:
        >>> visits = VisitScores(num_classes=2, ignore_index=255, edge=1)
        >>> right, wrong = np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8)
        >>> for domain, pred in (("a", right), ("a", right), ("b", right), ("a", wrong)):
        ...     visits.update(domain, pred, right)
        >>> [(v["domain"], v["start"], v["frames"], v["tail_miou"], v["head_miou"]) for v in visits.summary()]
        [('a', 0, 2, 1.0, 1.0), ('b', 2, 1, 1.0, 1.0), ('a', 3, 1, 0.0, 0.0)]
    """

    def __init__(self, num_classes: int, ignore_index: int, edge: int = 50) -> None:
        if edge < 1:
            raise ValueError(f"VisitScores: edge must be >= 1 frame, got {edge}")
        self.num_classes, self.ignore_index, self.edge = num_classes, ignore_index, edge
        self.visits: list[dict[str, Any]] = []
        self.frames = 0
        self.head = self.whole = None  # (C, C + 1) int64 of the visit under way
        self.tail: deque[np.ndarray] = deque(maxlen=edge)  # per-frame (C, C + 1) of its last frames

    def update(self, domain: str, student: np.ndarray, label: np.ndarray | None, index: int | None = None) -> None:
        """Count one frame's prediction (H, W) against its ground truth (H, W); a frame without
        ground truth (None) still belongs to its visit (the stream's frames, not its labels,
        make the visits; ``index`` is the frame's, else the count of frames so far)."""
        from perception.evaluator import confusion_update

        matrix = np.zeros((self.num_classes, self.num_classes + 1), np.int64)  # (C, C + 1)
        if label is not None:
            confusion_update(matrix, label, student, self.ignore_index)
        self.add(domain, matrix, index)

    def add(self, domain: str, matrix: np.ndarray, index: int | None = None) -> None:
        """Count one frame given its confusion (C, C + 1) of the prediction against the ground
        truth (all zeros for a frame without ground truth): :meth:`update`'s work when the
        caller has the matrix already (the stream's evaluator computes it for its own tallies)."""
        if not self.visits or self.visits[-1]["domain"] != domain:
            self._close()
            self.visits.append({"domain": domain, "start": self.frames if index is None else index, "frames": 0})
            shape = (self.num_classes, self.num_classes + 1)
            self.head, self.whole = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
            self.tail.clear()
        visit = self.visits[-1]
        if visit["frames"] < self.edge:
            self.head += matrix
        self.whole += matrix
        self.tail.append(matrix)
        visit["frames"] += 1
        self.frames += 1

    def _scores(self) -> dict[str, float | None]:
        """The figures of the visit under way."""
        from perception.metrics import mean_iou

        tail = np.sum(list(self.tail), axis=0)  # (C, C + 1)
        scores = {}
        for key, matrix in (("miou", self.whole), ("head_miou", self.head), ("tail_miou", tail)):
            value = mean_iou(matrix)
            scores[key] = None if np.isnan(value) else round(float(value), 6)
        return scores

    def _close(self) -> None:
        if self.visits and "miou" not in self.visits[-1]:
            self.visits[-1].update(self._scores())

    def summary(self) -> list[dict[str, Any]]:
        """Every visit so far (the one under way as it stands): domain, start, frames, miou,
        head_miou, tail_miou."""
        out = [dict(v) for v in self.visits]
        if out and "miou" not in out[-1]:
            out[-1].update(self._scores())
        return out


class FrameEvaluator:
    """A :class:`StreamingEvaluator` fed with the learner's outputs and the ground truth,
    joined by frame index; frames counted once (a restarted learner's re-sent frames are skipped).
    After each update a :class:`~stream.labelcheck.LabelGuard` checks, once enough labelled
    frames were counted, that the teacher and the ground truth are in one label set.

    Ground truth is expected in the evaluation label set; predictions are mapped into it.
    """

    def __init__(self, config: EvaluatorConfig, label_map: str = "", source: str = ""):
        """``source``: the run's source spec, named in the label check's warning."""
        from stream.labelcheck import LabelGuard

        self.mapper = EvalMapper(label_map, config)
        self.label_guard = LabelGuard(self.mapper.name, source)
        self.evaluator = StreamingEvaluator(self.mapper.config)
        self.robust = RobustScores(self.mapper.config.num_classes, self.mapper.config.ignore_index)
        self.depth = DepthScores(config.depth_max)  # AbsRel where the frames bring depth and a side predicts it
        self.visits = VisitScores(self.mapper.config.num_classes, self.mapper.config.ignore_index, config.visit_frames)
        self.last_index = -1
        self.truths: dict[int, GroundTruth] = {}  # ground truth of frames the learner has not finalised

    def update(self, truths: Iterable[GroundTruth], outputs: Iterable[LearnerOutput]) -> list[dict[str, Any]]:
        """Take the ground truth of newly read frames, then count the learner's outputs in
        order (each needs its frame's ground truth, sent now or earlier); returns the windows
        completed."""
        for truth in truths:
            if truth.index > self.last_index:
                self.truths[truth.index] = truth
        windows = []
        for output in outputs:
            if output.index <= self.last_index:  # re-sent after an actor restart
                continue
            truth = self.truths.pop(output.index, None)
            if truth is None:
                raise ValueError(f"FrameEvaluator: the learner finalised frame {output.index}, "
                                 f"whose ground truth record never arrived")
            self.last_index = output.index
            student = self.evaluator.update(truth.domain, self.mapper(output.student), truth.label,
                                            self.mapper(output.teacher))  # (C, C + 1) against the ground truth
            self.visits.add(truth.domain, student, output.index)
            if output.robust is not None:
                labels = {name: self.mapper(view) for name, view in output.robust.labels.items()}
                self.robust.update(truth.domain, labels, output.robust.transforms, self.mapper(output.student),
                                   truth.label, self.mapper(output.teacher))
            if truth.depth is not None:
                self._count_depth(truth, output)
            window = self.evaluator.window_metrics()
            if window is not None:
                windows.append(self._stamp(window, output.index, truth.domain))
        self.label_guard.check(self.evaluator)  # warns once, loudly, when the labels cannot be in the right set
        return windows

    def _count_depth(self, truth: GroundTruth, output: LearnerOutput) -> None:
        """The student's depth on every frame, the teacher's (and the student's beside it) on
        the frames the teacher labelled."""
        if output.student_depth is not None:
            self.depth.update(truth.domain, "student", output.student_depth, truth.depth)
        if output.teacher_depth is not None:
            self.depth.update(truth.domain, "teacher", output.teacher_depth, truth.depth)
            if output.student_depth is not None:
                self.depth.update(truth.domain, "student_on_teacher_frames", output.student_depth, truth.depth)

    def _stamp(self, window: dict[str, Any], index: int, domain: str) -> dict[str, Any]:
        window.update(robust_named(self.robust.window_metrics()))
        window.update(self.depth.window_metrics())  # a multi-task run's depth AbsRel in the window
        window["frame_end"] = index + 1
        window["domain"] = domain
        window["teacher_rate"] = window["teacher_frames"] / max(1, window["frames"])
        return window

    def finish(self) -> list[dict[str, Any]]:
        """Close the last, partial window at the end of a run (a log shorter than
        ``evaluator.window``, or the frames after the last full window); ``[]`` when it is
        empty. Stamped as :meth:`update`'s windows are, plus ``partial: True``.

        Example:
            >>> evaluator = FrameEvaluator(EvaluatorConfig(window=10))
            >>> labels = np.zeros((4, 4), np.uint8)
            >>> truths = [GroundTruth(i, "clear", labels) for i in range(3)]
            >>> evaluator.update(truths, [LearnerOutput(i, labels, None) for i in range(3)])
            []
            >>> [(w["frames"], w["frame_end"], w["domain"], w["partial"]) for w in evaluator.finish()]
            [(3, 3, 'clear', True)]
            >>> evaluator.finish()
            []
        """
        window = self.evaluator.window_metrics(final=True)
        if window is None:
            return []
        window = self._stamp(window, self.last_index, self.evaluator.last_domain)
        window["partial"] = True
        return [window]

    def summary(self) -> dict[str, Any]:
        """The evaluator's figures, and ``label_warning``: the label check's warning, or None."""
        out = {**self.evaluator.summary(), "label_warning": self.label_guard.warning, "visits": self.visits.summary()}
        robust = self.robust.summary()
        out.update(robust_named(robust))
        for name, scores in out["per_domain"].items():
            scores.update(robust_named(robust["per_domain"].get(name)))
        if self.depth.active:  # a multi-task run: depth AbsRel overall and per domain
            depth = self.depth.summary()
            out.update({k: v for k, v in depth.items() if k != "per_domain"})
            for name, scores in out["per_domain"].items():
                scores.update(depth["per_domain"].get(name, {}))
        return out

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()
