"""Depth: the AbsRel metric by hand, its streaming scores, the teacher's depth output and its
shipped head, and the depth ground truth that only the evaluator sees."""
from __future__ import annotations

import numpy as np
import pytest

from learners.records import LearnerOutput
from perception.depth_metrics import DepthScores, abs_rel, abs_rel_sums, upsample_nearest
from perception.evaluator import EvaluatorConfig
from perception.teacher import TeacherOutput
from stream.evaluation import FrameEvaluator
from stream.frame import Frame, GroundTruth


def test_abs_rel_by_hand() -> None:
    gt = np.array([[5.0, 10.0], [40.0, 1000.0]], np.float32)  # 1000 m: the sim's sky, out of range
    pred = np.array([[4.0, 12.0], [30.0, 3.0]], np.float32)
    # |4-5|/5 = 0.2, |12-10|/10 = 0.2, |30-40|/40 = 0.25 -> mean 0.65 / 3
    assert abs_rel(pred, gt, max_depth=80.0) == pytest.approx(0.65 / 3)
    assert abs_rel_sums(pred, gt, max_depth=20.0) == (pytest.approx(0.4), 2)  # 40 m is beyond 20
    assert abs_rel(pred, np.full((2, 2), 1000.0, np.float32), 80.0) is None
    assert abs_rel(gt, gt, 80.0) == 0.0


def test_abs_rel_on_a_coarse_prediction() -> None:
    gt = np.array([[2.0, 2.0, 8.0, 8.0], [2.0, 2.0, 8.0, 8.0]], np.float32)
    coarse = np.array([[3.0, 8.0]], np.float32)  # one cell per 2x2 block
    np.testing.assert_array_equal(upsample_nearest(coarse, 2, 4), [[3, 3, 8, 8], [3, 3, 8, 8]])
    assert abs_rel(coarse, gt, 80.0) == pytest.approx((4 * 0.5 + 4 * 0.0) / 8)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        abs_rel(coarse[None], gt, 80.0)


def test_depth_scores_per_side_and_domain() -> None:
    scores = DepthScores(max_depth=80.0)
    assert not scores.active
    gt = np.array([[10.0, 20.0]], np.float32)
    scores.update("fog", "student", np.array([[12.0, 20.0]], np.float32), gt)  # 0.2 over 2 pixels
    scores.update("clear", "student", np.array([[10.0, 10.0]], np.float32), gt)  # 0.5 over 2 pixels
    scores.update("clear", "teacher", np.array([[10.0, 22.0]], np.float32), gt)  # 0.1 over 2 pixels
    summary = scores.summary()
    assert summary["student_depth_abs_rel"] == pytest.approx(0.7 / 4)
    assert summary["teacher_depth_abs_rel"] == pytest.approx(0.05)
    assert summary["student_on_teacher_frames_depth_abs_rel"] is None
    assert summary["per_domain"]["fog"]["student_depth_abs_rel"] == pytest.approx(0.1)
    assert summary["per_domain"]["fog"]["teacher_depth_abs_rel"] is None
    assert summary["depth_frames"] == {"student": 2, "teacher": 1, "student_on_teacher_frames": 0}
    with pytest.raises(ValueError, match="side must be one of"):
        scores.update("fog", "oracle", gt, gt)
    with pytest.raises(ValueError, match="max_depth must be > 0"):
        DepthScores(max_depth=0.0)
    with pytest.raises(ValueError, match="depth_max must be > 0"):
        EvaluatorConfig(depth_max=-1.0)


def test_frame_evaluator_scores_depth_only_with_depth_truth() -> None:
    labels = np.zeros((4, 4), np.uint8)
    gt = np.full((4, 4), 10.0, np.float32)
    student = np.full((2, 2), 12.0, np.float16)  # the student's grid: AbsRel 0.2
    teacher = np.full((1, 1), 9.0, np.float16)  # the teacher logits' grid: 0.1
    evaluator = FrameEvaluator(EvaluatorConfig(window=2))
    windows = evaluator.update([GroundTruth(0, "clear", labels, gt), GroundTruth(1, "clear", labels, gt)],
                               [LearnerOutput(0, labels, labels, student_depth=student, teacher_depth=teacher),
                                LearnerOutput(1, labels, None, student_depth=student)])
    assert windows[0]["student_depth_abs_rel"] == pytest.approx(0.2, abs=1e-3)  # in metrics.jsonl too
    assert windows[0]["teacher_depth_abs_rel"] == pytest.approx(0.1, abs=1e-3)
    summary = evaluator.summary()
    assert summary["student_depth_abs_rel"] == pytest.approx(0.2, abs=1e-3)
    assert summary["teacher_depth_abs_rel"] == pytest.approx(0.1, abs=1e-3)
    assert summary["student_on_teacher_frames_depth_abs_rel"] == pytest.approx(0.2, abs=1e-3)
    assert summary["per_domain"]["clear"]["teacher_depth_abs_rel"] == pytest.approx(0.1, abs=1e-3)
    plain = FrameEvaluator(EvaluatorConfig(window=1))  # no depth truth: no depth figures at all
    windows = plain.update([GroundTruth(0, "clear", labels)], [LearnerOutput(0, labels, None, student_depth=student)])
    assert not any("depth" in key for key in plain.summary()) and not any("depth" in key for key in windows[0])


def test_ground_truth_depth_only_on_request() -> None:
    depth = np.full((2, 3), 7.0, np.float32)
    frame = Frame(np.zeros((2, 3, 3), np.uint8), 0.0, "sim", 0, depth=depth, meta={"domain": "fog"})
    assert frame.truth().depth is None
    np.testing.assert_array_equal(frame.truth(depth=True).depth, depth)
    assert not hasattr(frame.observation(), "depth")


def test_teacher_output_depth_checks() -> None:
    labels = np.zeros((2, 8, 8), np.uint8)
    logits = np.zeros((2, 19, 2, 2), np.float32)
    out = TeacherOutput(labels, logits, depth=np.ones((2, 2, 2), np.float32))
    assert out[1].depth.shape == (1, 2, 2) and TeacherOutput(labels, logits)[0].depth is None
    with pytest.raises(ValueError, match="logits' grid"):
        TeacherOutput(labels, logits, depth=np.ones((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="float32"):
        TeacherOutput(labels, logits, depth=np.ones((2, 2, 2), np.float64))


def test_block_log_depth() -> None:
    from stream.depth_training import block_log_depth

    depth = np.array([[[1.0, 4.0, 1000.0, 1000.0], [1.0, 4.0, 2.0, 1000.0]]], np.float32)
    out = block_log_depth(depth, stride=2, max_depth=80.0)
    np.testing.assert_allclose(out, [[[2.0, 0.0]]])  # the geometric mean; a block mostly sky has none


def test_shipped_teacher_depth_head_loads_and_answers() -> None:
    from perception.nets import count_params
    from perception.teachers.sim import SIM_TEACHER_DEPTH_WEIGHTS, SegNetTeacher, teacher_depth_head
    from perception.weights import load_weights

    assert SIM_TEACHER_DEPTH_WEIGHTS.is_file() and SIM_TEACHER_DEPTH_WEIGHTS.stat().st_size < 1_000_000
    head = load_weights(teacher_depth_head(), SIM_TEACHER_DEPTH_WEIGHTS)  # strict: every tensor by name and shape
    teacher = SegNetTeacher(device="cpu")  # the shipped weights: the shipped head comes with them
    assert teacher.depth_head is not None and teacher.params > count_params(teacher.model) + count_params(head) - 1
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 64, 3), dtype=np.uint8)
    out = teacher.label(images)
    assert out.depth is not None and out.depth.shape == (2, 8, 16) and out.depth.dtype == np.float32
    assert np.all((out.depth == 0) | ((out.depth >= 0.5) & (out.depth <= 200.0)))
    plain = SegNetTeacher(device="cpu", depth_weights=None).label(images)
    assert plain.depth is None
    np.testing.assert_array_equal(plain.labels, out.labels)  # depth leaves the labels alone
    np.testing.assert_array_equal(plain.logits, out.logits)
    assert teacher.macs(32, 64) > SegNetTeacher(weights=None, device="cpu").macs(32, 64)
