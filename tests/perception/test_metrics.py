"""Tests for perception.metrics (pure numpy metrics and the bincount reference)."""
from __future__ import annotations

import numpy as np
import pytest

from perception.labels import CITYSCAPES_TO_CAMVID, LabelMap
from perception.metrics import (
    class_support,
    confusion_matrix_numpy,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
    remap_confusion,
)


def _loop_confusion(target, pred, c, ignore=255):
    cm = np.zeros((c, c + 1), np.int64)
    for t, p in zip(target.ravel().tolist(), pred.ravel().tolist()):
        if t >= c or t == ignore:
            continue
        cm[t, p if (p < c and p != ignore) else c] += 1
    return cm


def test_reference_matches_pixel_loop():
    rng = np.random.default_rng(1)
    target = rng.choice([0, 1, 2, 3, 7, 255], size=(13, 17)).astype(np.uint8)
    pred = rng.choice([0, 1, 2, 3, 4, 255], size=(13, 17)).astype(np.uint8)
    for c in (1, 3, 4, 5):
        np.testing.assert_array_equal(confusion_matrix_numpy(target, pred, c), _loop_confusion(target, pred, c))
    # an ignore index inside the class range is skipped as a target and "none" as a prediction
    np.testing.assert_array_equal(confusion_matrix_numpy(target, pred, 5, ignore_index=2), _loop_confusion(target, pred, 5, 2))


def test_metrics_by_hand():
    # rows: gt 0, 1, 2; columns: pred 0, 1, 2, none
    cm = np.array([[3, 1, 0, 1], [0, 2, 0, 0], [0, 0, 0, 0]])
    iou = iou_per_class(cm)
    # class 0: tp 3, row 5, column 3 -> 3 / 5; class 1: tp 2, row 2, column 3 -> 2 / 3; class 2: empty
    np.testing.assert_allclose(iou[:2], [3 / 5, 2 / 3])
    assert np.isnan(iou[2])
    assert mean_iou(cm) == pytest.approx((3 / 5 + 2 / 3) / 2)
    assert pixel_accuracy(cm) == pytest.approx(5 / 7)
    assert class_support(cm).tolist() == [5, 2, 0]
    # a predicted-but-absent class has union > 0 and IoU 0, and counts in the mean
    cm2 = np.array([[3, 1, 0], [0, 0, 0]])
    assert iou_per_class(cm2).tolist() == [0.75, 0.0]
    assert mean_iou(cm2) == pytest.approx(0.375)


def test_square_matrix_accepted_and_empty_is_nan():
    cm = np.array([[2, 0], [1, 1]])
    assert mean_iou(cm) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert np.isnan(mean_iou(np.zeros((3, 4), np.int64)))
    assert np.isnan(pixel_accuracy(np.zeros((3, 4), np.int64)))


def test_remap_equals_mapping_labels_first():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 19, size=(40, 50)).astype(np.uint8)
    target[rng.random(target.shape) < 0.1] = 255
    pred = rng.integers(0, 19, size=(40, 50)).astype(np.uint8)
    pred[rng.random(pred.shape) < 0.05] = 255
    cm = confusion_matrix_numpy(target, pred, 19)
    camvid = LabelMap.from_pairs("camvid", dict(enumerate(CITYSCAPES_TO_CAMVID.tolist())))
    expected = confusion_matrix_numpy(camvid(target), camvid(pred), 11)
    np.testing.assert_array_equal(remap_confusion(cm, CITYSCAPES_TO_CAMVID), expected)
    np.testing.assert_array_equal(remap_confusion(cm, camvid.table, num_classes=11), expected)
    # a class sent to 255 drops its ground-truth rows and turns its predictions into "none"
    table = camvid.table.copy()
    table[13] = 255  # car -> void
    partial = LabelMap("partial", table)
    expected = confusion_matrix_numpy(partial(target), partial(pred), 11)
    np.testing.assert_array_equal(remap_confusion(cm, table, num_classes=11), expected)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mean_iou(np.zeros(5)), "cm must be"),
        (lambda: iou_per_class(np.zeros((3, 5))), "cm must be"),
        (lambda: remap_confusion(np.zeros((3, 4), np.int64), np.array([0, 1])), "table must be 1-D"),
        (lambda: remap_confusion(np.zeros((2, 3), np.int64), np.array([0.0, 1.0])), "table must hold"),
        (lambda: remap_confusion(np.zeros((2, 3), np.int64), np.array([255, 255])), "pass num_classes"),
        (lambda: confusion_matrix_numpy(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8)), "target shape"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
