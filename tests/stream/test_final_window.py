"""The last, partial evaluation window: closed by FrameEvaluator.finish and drawn by the report."""
from __future__ import annotations

import cv2
import numpy as np

from learners.records import LearnerOutput
from perception.evaluator import EvaluatorConfig
from stream.evaluation import FrameEvaluator
from stream.frame import GroundTruth
from stream.report import write_report


def _records(start: int, stop: int, domain: str, teacher_every: int = 2) -> tuple[list[GroundTruth], list[LearnerOutput]]:
    """(ground truth, learner outputs) of frames start..stop-1."""
    gt = np.zeros((6, 8), np.uint8)
    gt[3:] = 1
    student = gt.copy()
    student[:, :2] = 2
    teacher = gt.copy()
    teacher[:, -1] = 2  # the teacher is wrong elsewhere, so the three curves differ
    return ([GroundTruth(i, domain, gt) for i in range(start, stop)],
            [LearnerOutput(i, student, teacher if i % teacher_every == 0 else None) for i in range(start, stop)])


def _both(*parts: tuple[list, list]) -> tuple[list, list]:
    return [t for p in parts for t in p[0]], [o for p in parts for o in p[1]]


def test_a_log_shorter_than_the_window_gives_one_partial_window():
    evaluator = FrameEvaluator(EvaluatorConfig(window=100))
    assert evaluator.update(*_records(0, 37, "log")) == []
    (window,) = evaluator.finish()
    assert window["partial"] is True and window["frames"] == 37 and window["frame_end"] == 37
    assert window["domain"] == "log" and window["teacher_frames"] == 19
    assert window["teacher_rate"] == 19 / 37 and 0.0 < window["teacher_miou"] < 1.0
    assert 0.0 < window["student_miou"] < 1.0
    assert evaluator.finish() == []  # nothing left


def test_the_frames_after_the_last_full_window_are_not_dropped():
    evaluator = FrameEvaluator(EvaluatorConfig(window=10))
    windows = evaluator.update(*_both(_records(0, 20, "a"), _records(20, 23, "b")))
    assert [w["frame_end"] for w in windows] == [10, 20] and "partial" not in windows[0]
    (last,) = evaluator.finish()
    assert (last["frames"], last["frame_end"], last["domain"]) == (3, 23, "b")
    assert sum(w["frames"] for w in windows + [last]) == evaluator.summary()["frames"] == 23


def test_a_full_last_window_leaves_nothing_to_finish():
    evaluator = FrameEvaluator(EvaluatorConfig(window=5))
    assert len(evaluator.update(*_records(0, 10, "a"))) == 2
    assert evaluator.finish() == []


def _blue_pixels(path) -> int:
    image = cv2.imread(str(path))  # BGR
    student = np.array([180, 119, 31])  # tab:blue (#1f77b4) as BGR
    return int((np.abs(image.astype(int) - student).sum(axis=2) < 30).sum())


def test_the_report_draws_a_single_partial_window(tmp_path):
    evaluator = FrameEvaluator(EvaluatorConfig(window=100))
    evaluator.update(*_records(0, 40, "log"))
    metrics = evaluator.finish()
    one = write_report(tmp_path / "one.png", metrics, [], [(0, "log")], [], "one window")
    assert one.is_file()
    # the student's value is drawn across the window's 40 frames, not as a lone dot
    assert _blue_pixels(one) > 500
    image = cv2.imread(str(one))
    purple = np.array([189, 103, 148])  # tab:purple (#9467bd) as BGR: the teacher rate is drawn too
    assert (np.abs(image.astype(int) - purple).sum(axis=2) < 30).sum() > 200


def test_the_report_still_draws_many_windows(tmp_path):
    evaluator = FrameEvaluator(EvaluatorConfig(window=10))
    metrics = evaluator.update(*_both(_records(0, 50, "a"), _records(50, 95, "b"))) + evaluator.finish()
    assert metrics[-1]["partial"] and len(metrics) == 10
    path = write_report(tmp_path / "many.png", metrics, [{"kind": "drift", "index": 52}], [(0, "a"), (50, "b")], [50], "t")
    assert _blue_pixels(path) > 500
