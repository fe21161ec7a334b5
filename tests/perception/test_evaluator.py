"""Tests for perception.evaluator: the numba confusion kernels and StreamingEvaluator."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception.evaluator import (
    EvaluatorConfig,
    StreamingEvaluator,
    confusion_matrix,
    confusion_update,
    confusion_update_batch,
    confusion_update_parallel,
)
from perception.metrics import confusion_matrix_numpy, mean_iou, pixel_accuracy


def _labels(rng, shape, c=19, junk=0.1):
    """Random labels with classes, 255 and some out-of-range values."""
    out = rng.integers(0, c, size=shape).astype(np.uint8)
    u = rng.random(shape)
    out[u < junk] = 255
    out[(u >= junk) & (u < 1.5 * junk)] = rng.integers(c, 255, size=int(((u >= junk) & (u < 1.5 * junk)).sum()))
    return out


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (2, 5), (7, 9), (33, 64), (64, 129)])
@pytest.mark.parametrize("c", [1, 2, 19])
def test_kernel_matches_numpy(shape, c):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1] + c)
    target, pred = _labels(rng, shape, c), _labels(rng, shape, c)
    cm = np.zeros((c, c + 1), np.int64)
    confusion_update(cm, target, pred)
    np.testing.assert_array_equal(cm, confusion_matrix_numpy(target, pred, c))
    confusion_update(cm, target, pred)  # accumulates
    np.testing.assert_array_equal(cm, 2 * confusion_matrix_numpy(target, pred, c))


def test_kernel_layouts_readonly_and_ignore_inside_range():
    rng = np.random.default_rng(3)
    target, pred = _labels(rng, (40, 60)), _labels(rng, (40, 60))
    views = [
        (target[::2, 1::3], pred[::2, 1::3]),  # strided
        (target.T, pred.T),  # F-ordered
        (np.asfortranarray(target), np.asfortranarray(pred)),
        (target[:, ::-1], pred[:, ::-1]),  # negative stride
        (np.asfortranarray(target), pred),  # mixed layouts
    ]
    for offset in (1, 3, 5):  # contiguous but not 8-byte aligned, different offsets
        buf_t = np.empty(target.size + 8, np.uint8)
        buf_p = np.empty(pred.size + 8, np.uint8)
        t = buf_t[offset: offset + target.size].reshape(target.shape)
        p = buf_p[8 - offset: 8 - offset + pred.size].reshape(pred.shape)
        t[...], p[...] = target, pred
        views.append((t, p))
    ro_t, ro_p = target.copy(), pred.copy()
    ro_t.setflags(write=False)
    ro_p.setflags(write=False)
    views.append((ro_t, ro_p))
    for t, p in views:
        cm = np.zeros((19, 20), np.int64)
        confusion_update(cm, t, p)
        np.testing.assert_array_equal(cm, confusion_matrix_numpy(t, p, 19))
    cm = np.zeros((19, 20), np.int64)
    confusion_update(cm, target, pred, 4)
    np.testing.assert_array_equal(cm, confusion_matrix_numpy(target, pred, 19, ignore_index=4))


@pytest.mark.parametrize("width", [8, 13, 64, 103])
def test_kernel_on_region_maps(width):
    """Maps made of runs (the one-add path for uniform words) mixed with noisy words."""
    rng = np.random.default_rng(width)
    target = np.repeat(rng.integers(0, 21, size=(9, width // 4 + 1)), 4, axis=1)[:, :width].astype(np.uint8)
    target[target == 20] = 255
    pred = np.repeat(rng.integers(0, 19, size=(9, width // 8 + 1)), 8, axis=1)[:, :width].astype(np.uint8)
    pred[rng.random(pred.shape) < 0.02] = 255
    cm = np.zeros((19, 20), np.int64)
    confusion_update(cm, target, pred)
    np.testing.assert_array_equal(cm, confusion_matrix_numpy(target, pred, 19))
    cm = np.zeros((19, 20), np.int64)
    confusion_update(cm, np.full((5, width), 3, np.uint8), np.full((5, width), 255, np.uint8))
    assert cm[3, 19] == 5 * width and cm.sum() == 5 * width


def test_batch_and_parallel_match():
    rng = np.random.default_rng(4)
    targets, preds = _labels(rng, (3, 37, 50)), _labels(rng, (3, 37, 50))
    expected = sum(confusion_matrix_numpy(t, p, 19) for t, p in zip(targets, preds))
    cm = np.zeros((19, 20), np.int64)
    confusion_update_batch(cm, targets, preds)
    np.testing.assert_array_equal(cm, expected)
    for chunks in (1, 5, 100, 1000):
        for t, p in ((targets[0], preds[0]), (targets[0, :, ::2], preds[0, :, ::2])):
            cm = np.zeros((19, 20), np.int64)
            confusion_update_parallel(cm, t, p, 255, chunks)
            np.testing.assert_array_equal(cm, confusion_matrix_numpy(t, p, 19))


def test_kernel_rejects_bad_shapes():
    a = np.zeros((4, 5), np.uint8)
    with pytest.raises(ValueError, match="cm must have shape"):
        confusion_update(np.zeros((19, 19), np.int64), a, a)
    with pytest.raises(ValueError, match="same shape"):
        confusion_update(np.zeros((19, 20), np.int64), a, np.zeros((5, 4), np.uint8))
    with pytest.raises(ValueError, match="must be uint8"):
        confusion_update(np.zeros((19, 20), np.int64), a, np.full((4, 5), 300, np.int64))
    with pytest.raises(ValueError, match="same shape"):
        confusion_update_batch(np.zeros((19, 20), np.int64), a[None], a[None, :3])


@pytest.mark.parametrize(
    "target, pred, c, match",
    [
        (np.zeros((2, 2), np.int32), np.zeros((2, 2), np.uint8), 19, "target must be uint8"),
        (np.zeros((2, 2, 1), np.uint8), np.zeros((2, 2), np.uint8), 19, "target must be a 2-D"),
        (np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), 19, "pred shape"),
        ([[0]], np.zeros((1, 1), np.uint8), 19, "target must be a numpy array"),
        (np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), 0, "num_classes"),
    ],
)
def test_confusion_matrix_bad_input(target, pred, c, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(target, pred, c)


def _frames(seed, n, shape=(12, 16), c=5):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        gt = _labels(rng, shape, c)
        student = rng.integers(0, c, size=shape).astype(np.uint8)
        teacher = np.where(rng.random(shape) < 0.7, gt, _labels(rng, shape, c)).astype(np.uint8)
        out.append(("fog" if i % 3 == 0 else "clear", student, gt if i % 4 else None, teacher if i % 2 else None))
    return out


def _expected(frames, c=5):
    cms = np.zeros((4, c, c + 1), np.int64)
    for _, s, g, t in frames:
        if g is not None:
            cms[0] += confusion_matrix_numpy(g, s, c)
        if g is not None and t is not None:
            cms[1] += confusion_matrix_numpy(g, t, c)
            cms[3] += confusion_matrix_numpy(g, s, c)
        if t is not None:
            cms[2] += confusion_matrix_numpy(t, s, c)
    return cms


def _run(frames, window=4):
    ev = StreamingEvaluator(EvaluatorConfig(num_classes=5, window=window))
    windows = []
    for frame in frames:
        ev.update(*frame)
        m = ev.window_metrics()
        if m is not None:
            windows.append(m)
    return ev, windows


def test_streaming_evaluator_matches_reference():
    frames = _frames(0, 11)
    ev, windows = _run(frames)
    cms = _expected(frames)
    for k, pair in enumerate(("student", "teacher", "student_vs_teacher", "student_on_teacher_frames")):
        np.testing.assert_array_equal(ev.confusion(pair), cms[k])
    s = ev.summary()
    assert s["frames"] == 11 and s["gt_frames"] == sum(f[2] is not None for f in frames)
    assert s["teacher_frames"] == sum(f[3] is not None for f in frames)
    assert s["student_miou"] == pytest.approx(mean_iou(cms[0]))
    assert s["teacher_pixel_acc"] == pytest.approx(pixel_accuracy(cms[1]))
    assert s["student_vs_teacher_miou"] == pytest.approx(mean_iou(cms[2]))
    assert s["student_on_teacher_frames_miou"] == pytest.approx(mean_iou(cms[3]))
    assert not np.array_equal(cms[3], cms[0])  # the teacher-frame subset is a real subset here
    fog = [f for f in frames if f[0] == "fog"]
    assert s["per_domain"]["fog"]["frames"] == len(fog)
    assert s["per_domain"]["fog"]["student_miou"] == pytest.approx(mean_iou(_expected(fog)[0]))
    assert ev.domains == ["fog", "clear"]
    # windows: two full windows of 4 frames, each exactly its own frames
    assert [w["frames"] for w in windows] == [4, 4] and [w["end_frame"] for w in windows] == [4, 8]
    assert windows[1]["student_miou"] == pytest.approx(mean_iou(_expected(frames[4:8])[0]))
    assert ev.window_metrics() is None  # 3 frames left in the window
    json.dumps(s, allow_nan=False)
    json.dumps(windows, allow_nan=False)
    assert all(isinstance(v, (int, float, type(None))) for v in windows[0].values())


def test_missing_pairs_are_none():
    ev = StreamingEvaluator(EvaluatorConfig(num_classes=3, window=1))
    ev.update("clear", np.zeros((2, 2), np.uint8))
    m = ev.window_metrics()
    assert m["frames"] == 1 and m["gt_frames"] == 0
    assert m["student_miou"] is None and m["teacher_miou"] is None and m["student_vs_teacher_pixel_acc"] is None


def test_state_dict_roundtrip_and_merge():
    from safetensors.numpy import load, save

    frames = _frames(1, 10)
    ev, _ = _run(frames, window=100)
    restored = StreamingEvaluator(EvaluatorConfig(num_classes=5, window=100))
    restored.load_state_dict(load(save(ev.state_dict())))
    assert restored.summary() == ev.summary()
    assert restored.domains == ev.domains
    # merging two halves equals one evaluator over everything (window included)
    a, _ = _run(frames[:6], window=100)
    b, _ = _run(frames[6:], window=100)
    a.merge(b)
    assert a.summary() == ev.summary()
    for key, value in ev.state_dict().items():
        np.testing.assert_array_equal(a.state_dict()[key], value)


def test_evaluator_bad_input():
    ev = StreamingEvaluator(EvaluatorConfig(num_classes=5))
    good = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="student must be uint8"):
        ev.update("a", good.astype(np.int64))
    with pytest.raises(ValueError, match="ground_truth shape"):
        ev.update("a", good, ground_truth=np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="teacher must be a 2-D"):
        ev.update("a", good, teacher=np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="domain"):
        ev.update("", good)
    with pytest.raises(ValueError, match="pair must be"):
        ev.confusion("nope")
    with pytest.raises(ValueError, match="never seen"):
        ev.confusion("student", domain="snow")
    other = StreamingEvaluator(EvaluatorConfig(num_classes=19))
    with pytest.raises(ValueError, match="num_classes, ignore_index"):
        ev.merge(other)
    with pytest.raises(ValueError, match="does not match"):
        ev.load_state_dict(other.state_dict())
    state = ev.state_dict()
    state["overall/cm"] = np.zeros((3, 5, 5), np.int64)
    with pytest.raises(ValueError, match="'overall/cm' has shape"):
        ev.load_state_dict(state)
    with pytest.raises(ValueError, match="missing 'window/cm'"):
        ev.load_state_dict({k: v for k, v in ev.state_dict().items() if not k.startswith("window")})


@pytest.mark.parametrize(
    "kwargs, field",
    [({"num_classes": 0}, "num_classes"), ({"ignore_index": 256}, "ignore_index"), ({"window": 0}, "window"), ({"num_classes": 2.0}, "num_classes")],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"EvaluatorConfig.{field}"):
        EvaluatorConfig(**kwargs)


def test_final_window_closes_a_partial_window_once():
    ev = StreamingEvaluator(EvaluatorConfig(num_classes=3, window=4))
    gt = np.array([[0, 1, 2, 255]], np.uint8)
    assert ev.window_metrics(final=True) is None  # nothing counted yet
    for i in range(6):
        ev.update("clear" if i < 5 else "fog", gt, ground_truth=gt, teacher=gt if i % 2 else None)
        full = ev.window_metrics()
        assert (full is not None) == (i == 3)
    assert ev.window_metrics() is None  # 2 frames left: not a full window
    last = ev.window_metrics(final=True)
    assert last["frames"] == 2 and last["teacher_frames"] == 1 and last["end_frame"] == 6
    assert last["student_miou"] == 1.0 and ev.last_domain == "fog"
    assert ev.window_metrics(final=True) is None  # closed: the next call has nothing
    assert ev.summary()["frames"] == 6  # the overall counts are untouched


def test_a_stream_shorter_than_the_window_gets_one_window():
    ev = StreamingEvaluator(EvaluatorConfig(num_classes=3, window=100))
    gt = np.zeros((2, 2), np.uint8)
    for _ in range(7):
        ev.update("log", gt, ground_truth=gt, teacher=gt)
        assert ev.window_metrics() is None
    window = ev.window_metrics(final=True)
    assert window["frames"] == 7 and window["teacher_miou"] == 1.0
    ev.reset()
    assert ev.last_domain is None and ev.window_metrics(final=True) is None
