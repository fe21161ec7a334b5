"""RobustScores: robust and corrupted mIoU against the ground truth and the teacher, moved
references for geometric views, per domain and per window; the FrameEvaluator's summary keys."""
import numpy as np
import pytest

from learners.records import LearnerOutput, RobustRecord
from perception.evaluator import EvaluatorConfig, confusion_matrix
from perception.metrics import mean_iou
from perception.robust_scores import RobustScores, move_labels
from stream.evaluation import FrameEvaluator
from stream.frame import GroundTruth

RNG = np.random.default_rng(0)


def _maps(shape=(6, 8), classes=3):
    return RNG.integers(0, classes, shape).astype(np.uint8)


def test_scores_equal_the_confusion_matrix_of_the_frames_they_saw():
    scores = RobustScores(num_classes=3)
    truths = [_maps() for _ in range(3)]
    attacked = [_maps() for _ in range(3)]
    teacher = [_maps() for _ in range(3)]
    for truth, pred, taught in zip(truths, attacked, teacher):
        scores.update("fog", {"pgd 4/255": pred}, {}, clean=truth, truth=truth, teacher=taught)
    cm = sum(confusion_matrix(t, p, 3) for t, p in zip(truths, attacked))
    cm_teacher = sum(confusion_matrix(t, p, 3) for t, p in zip(teacher, attacked))
    out = scores.summary()
    assert out["frames"] == 3 and out["clean_miou"] == 1.0
    assert out["views"]["pgd 4/255"]["miou"] == pytest.approx(mean_iou(cm))
    assert out["views"]["pgd 4/255"]["miou_vs_teacher"] == pytest.approx(mean_iou(cm_teacher))
    assert out["per_domain"]["fog"] == {k: v for k, v in out.items() if k != "per_domain"}


def test_a_frame_without_ground_truth_is_scored_against_the_teacher_only():
    scores = RobustScores(num_classes=3)
    truth = _maps()
    scores.update("log", {"rain": truth}, {}, clean=truth, truth=None, teacher=truth)
    out = scores.summary()
    assert out["views"]["rain"] == {"miou_vs_teacher": 1.0} and out["clean_miou"] is None


def test_a_geometric_view_is_scored_against_the_reference_moved_with_it():
    truth = np.array([[0, 1, 2, 0]], np.uint8)
    shift = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # one pixel right
    predicted_on_view = np.array([[1, 0, 1, 2]], np.uint8)  # the moved truth, but the first pixel (outside) wrong
    scores = RobustScores(num_classes=3)
    scores.update("clear", {"shake": predicted_on_view}, {"shake": shift}, clean=truth, truth=truth, teacher=None)
    assert scores.summary()["views"]["shake"]["miou"] == 1.0  # the uncovered pixel is not scored
    unmoved = RobustScores(num_classes=3)
    unmoved.update("clear", {"shake": predicted_on_view}, {}, clean=truth, truth=truth, teacher=None)
    assert unmoved.summary()["views"]["shake"]["miou"] < 0.5


def test_move_labels_matches_an_integer_shift():
    labels = _maps((10, 12))
    moved = move_labels(labels, [[1, 0, 2], [0, 1, 3], [0, 0, 1]])
    assert (moved[3:, 2:] == labels[:-3, :-2]).all() and (moved[:3] == 255).all() and (moved[:, :2] == 255).all()


def test_windows_close_with_the_evaluator_and_are_empty_without_robust_frames():
    evaluator = FrameEvaluator(EvaluatorConfig(num_classes=3, window=2))
    truth = _maps()
    record = RobustRecord(labels={"pgd 4/255": np.zeros_like(truth), "worst_of_k": truth})
    outputs = [LearnerOutput(0, truth, truth, robust=record), LearnerOutput(1, truth, None),
               LearnerOutput(2, truth, None), LearnerOutput(3, truth, None)]
    windows = evaluator.update([GroundTruth(i, "clear", truth) for i in range(4)], outputs)
    assert windows[0]["robust_frames"] == 1 and windows[0]["student_corrupt_miou"] == {"worst_of_k": 1.0}
    assert windows[0]["student_robust_miou"]["4/255"] < 0.5
    assert "robust_frames" not in windows[1]
    summary = evaluator.summary()
    assert summary["robust_frames"] == 1 and summary["per_domain"]["clear"]["student_corrupt_miou"] == {"worst_of_k": 1.0}
    assert summary["student_clean_miou_on_robust_frames"] == 1.0


def test_a_run_without_robust_frames_has_no_robust_keys():
    evaluator = FrameEvaluator(EvaluatorConfig(num_classes=3, window=2))
    truth = _maps()
    evaluator.update([GroundTruth(0, "clear", truth)], [LearnerOutput(0, truth, None)])
    assert "student_robust_miou" not in evaluator.summary()


def test_camvid_evaluation_maps_the_views_and_moves_the_camvid_truth():
    from perception.labels import canonical_to_camvid

    evaluator = FrameEvaluator(EvaluatorConfig(), label_map="camvid")
    canonical = np.zeros((4, 4), np.uint8)  # road everywhere
    truth = canonical_to_camvid().table[canonical]
    record = RobustRecord(labels={"jpeg": canonical}, transforms={})
    evaluator.update([GroundTruth(0, "clip", truth)], [LearnerOutput(0, canonical, canonical, robust=record)])
    assert evaluator.summary()["student_corrupt_miou"] == {"jpeg": 1.0}
