"""A runtime check that a run's ground truth and its evaluation label set fit together.

:func:`stream.config.check_label_maps` refuses, before a frame is read, a source
``label_map`` option and a ``run.label_map`` that cannot fit. What it cannot see is a log
whose label files are in another label set than the settings say (no ``label_map`` on a
CamVid log evaluated in the canonical set, a custom :class:`~perception.labels.LabelMap`, a
source handed to the driver as an object). :class:`LabelGuard` looks at the scores instead:
once enough labelled frames were counted, a teacher that agrees with the ground truth on
almost no labelled pixel (or ground truth with no pixel in the evaluation label set at all)
means the labels were mapped wrongly, and it logs one loud warning naming the settings.

Example:
    >>> import numpy as np
    >>> from perception.evaluator import EvaluatorConfig, StreamingEvaluator
    >>> evaluator = StreamingEvaluator(EvaluatorConfig(num_classes=11))
    >>> camvid_road, canonical_road = np.full((4, 4), 3, np.uint8), np.zeros((4, 4), np.uint8)
    >>> for _ in range(3):
    ...     _ = evaluator.update("log", camvid_road, ground_truth=canonical_road, teacher=camvid_road)
    >>> guard = LabelGuard("camvid", "images:log/frames?label_map=camvid", min_frames=3)
    >>> print(guard.check(evaluator))  # doctest: +ELLIPSIS
    LABELS DO NOT FIT: after 3 labelled frames the teacher agrees with the ground truth on 0.0% ...
    >>> guard.check(evaluator) is None  # warned once
    True
"""
from __future__ import annotations

import logging

import numpy as np

from perception.evaluator import StreamingEvaluator
from stream.sources import parse_spec
from stream.sources.base import SourceError
from stream.sources.labelmaps import EVALUATION_SPACES, get_label_map, maps_into

logger = logging.getLogger(__name__)

MIN_FRAMES = 10  # labelled frames (with a teacher answer) before the guard judges
MIN_AGREEMENT = 0.05  # below this share of labelled pixels the labels cannot be in the right set


class LabelGuard:
    """Warns once when the ground truth and the teacher hardly ever agree.

    ``check(evaluator)`` is cheap (it reads the evaluator's confusion matrices) and may be
    called after every update; it decides once, after ``min_frames`` frames with ground truth
    and about as many with a teacher answer too, and returns the warning (also logged) that
    one time, else None. Argmax agreement of a real teacher with hand labels is far above
    ``min_agreement`` (0.84 for ESPNetv2 s0.5 on CamVid 0016E5); labels in the wrong label
    set give about 0.004 there.

    ``label_map`` is ``run.label_map``; ``source`` the run's source spec (``run.source``),
    used only to name its ``label_map`` option in the warning.
    """

    def __init__(self, label_map: str = "", source: str = "", min_frames: int = MIN_FRAMES,
                 min_agreement: float = MIN_AGREEMENT) -> None:
        if min_frames < 1:
            raise ValueError(f"LabelGuard: min_frames must be >= 1, got {min_frames}")
        if not 0.0 <= min_agreement < 1.0:
            raise ValueError(f"LabelGuard: min_agreement must be in [0, 1), got {min_agreement}")
        self.label_map = label_map
        self.source = source
        self.min_frames = min_frames
        self.min_agreement = min_agreement
        self.decided = False
        self.agreement: float | None = None
        self.warning: str | None = None

    def check(self, evaluator: StreamingEvaluator) -> str | None:
        """Judge once enough frames were counted; the warning that one time, else None."""
        if self.decided:
            return None
        gt_frames = evaluator.frame_counts()["gt_frames"]
        if gt_frames < self.min_frames:
            return None
        classes = evaluator.config.num_classes
        labelled = int(evaluator.confusion("student").sum())  # ground-truth pixels inside 0..C-1, every labelled frame
        if labelled == 0:
            return self._warn(
                f"after {gt_frames} labelled frames no ground-truth pixel is a class of the evaluation label set "
                f"(0..{classes - 1}, {self._evaluation_set()}): every label is ignored or out of range"
            )
        teacher = evaluator.confusion("teacher")  # (C, C + 1) ground truth x teacher, frames with both
        pixels = int(teacher.sum())
        if pixels < self.min_frames * labelled / gt_frames:  # fewer than about min_frames frames with both
            return None
        self.decided = True
        self.agreement = float(np.trace(teacher[:, :classes]) / pixels)
        if self.agreement >= self.min_agreement:
            return None
        return self._warn(
            f"after {gt_frames} labelled frames the teacher agrees with the ground truth on {100 * self.agreement:.1f}% "
            f"of labelled pixels (a working setup agrees on most of them)"
        )

    def _evaluation_set(self) -> str:
        space = EVALUATION_SPACES.get(self.label_map, self.label_map)
        return f"run.label_map={self.label_map}" if self.label_map else f"run.label_map='' ({space})"

    def _source_labels(self) -> str:
        if not self.source:
            return "the source's label_map option"
        _, _, options = parse_spec(self.source)
        name = options.get("label_map")
        if not name:
            return f"run.source {self.source!r} (no label_map: its label files' values are used as they are)"
        try:
            space = get_label_map(name).space
        except SourceError:
            space = "unknown"
        return f"run.source {self.source!r} (label_map={name}: labels in the {space} label set)"

    def _warn(self, what: str) -> str:
        self.decided = True
        space = EVALUATION_SPACES.get(self.label_map, "canonical")
        fits = maps_into(space)
        self.warning = (
            f"LABELS DO NOT FIT: {what}. The ground truth is probably in another label set than the evaluation's: "
            f"check {self._source_labels()} and {self._evaluation_set()}, which wants ground truth in the {space} "
            f"label set (a source label_map of {' or '.join(fits) or 'its own'}). The mIoU figures of this run are not meaningful."
        )
        logger.warning(self.warning)
        return self.warning
