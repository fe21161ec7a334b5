"""Benchmark: numba confusion kernel vs the usual numpy ``np.bincount`` confusion matrix.

Label maps are 1024 x 512 (W x H) scene-like layouts: sky / buildings / sidewalk / road bands,
random boxes of the other classes (cars, poles, people, ...), a few percent of 255 (ignore)
along object borders; predictions are the same layout shifted by a few pixels with some
boxes of wrong classes (always in 0..18, as a student's argmax). Eight different frame pairs
are cycled. Every timing is the median over many repeats, after a JIT warm-up, in this one
process. The baseline is the well-known FCN-style ``_fast_hist``::

    mask = (target >= 0) & (target < C)
    np.bincount(C * target[mask].astype(int) + pred[mask], minlength=C * C).reshape(C, C)

Two extra rows, for honesty about the data dependence of the kernel's fast path (a word of
eight equal labels is counted with one add): real CamVid label maps (../shared/data, frame
k as target and frame k + 1 as "prediction", resized to 1024 x 512 nearest; skipped when the
data is absent) and maps of uniform random noise (the worst case, no regions at all).

The multi-threaded kernel's figure needs idle cores: on this 2-core machine it measured
0.10 ms with both cores free and 12 ms while another process kept both busy (its threads
wait for a time slice), so the evaluator uses the single-threaded kernel.

Run: ``.venv/bin/python bench/evaluator.py``; the last line is one JSON object.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMVID = os.path.join(ROOT, "..", "shared", "data", "logs", "camvid_0016E5_15hz", "labels")
sys.path.insert(0, ROOT)

from perception.evaluator import (  # noqa: E402
    EvaluatorConfig,
    StreamingEvaluator,
    confusion_update,
    confusion_update_parallel,
)
from perception.labels import CAMVID_CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES  # noqa: E402

C = NUM_CLASSES
HEIGHT, WIDTH = 512, 1024
TARGET_SPEEDUP = 10


def scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (target, pred) pair of scene-like piecewise-constant label maps, (H, W) uint8."""
    label = np.empty((HEIGHT, WIDTH), np.uint8)  # (H, W)
    horizon = int(rng.integers(HEIGHT // 4, HEIGHT // 2))
    road = int(rng.integers(horizon + 40, HEIGHT * 3 // 4))
    label[:horizon] = 10  # sky
    label[horizon:road] = 2  # building
    label[road:] = 0  # road
    left = int(rng.integers(50, 300))
    label[road:, :left] = 1  # sidewalk
    label[horizon:road, int(rng.integers(0, WIDTH // 2)): int(rng.integers(WIDTH // 2, WIDTH))] = 8  # vegetation
    border = np.zeros((HEIGHT, WIDTH), bool)  # (H, W)
    for _ in range(int(rng.integers(25, 45))):
        cls = int(rng.integers(0, C))
        h = int(rng.integers(8, 160))
        w = int(rng.integers(4, 220)) if cls not in (5, 6, 7) else int(rng.integers(3, 12))
        y = int(rng.integers(0, HEIGHT - h))
        x = int(rng.integers(0, WIDTH - w))
        label[y: y + h, x: x + w] = cls
        border[y: y + h, x: x + 2] = True
        border[y: y + 2, x: x + w] = True
    label[border & (rng.random((HEIGHT, WIDTH)) < 0.7)] = IGNORE_INDEX
    pred = np.roll(label, (int(rng.integers(-4, 5)), int(rng.integers(-6, 7))), axis=(0, 1)).copy()  # (H, W)
    for _ in range(10):
        h, w = int(rng.integers(10, 80)), int(rng.integers(10, 120))
        y, x = int(rng.integers(0, HEIGHT - h)), int(rng.integers(0, WIDTH - w))
        pred[y: y + h, x: x + w] = int(rng.integers(0, C))
    pred[pred == IGNORE_INDEX] = 0  # a student always predicts a class
    return label, pred


def fast_hist(target: np.ndarray, pred: np.ndarray, n_class: int = C) -> np.ndarray:
    """The confusion matrix as it is usually written (FCN ``_fast_hist``)."""
    mask = (target >= 0) & (target < n_class)
    return np.bincount(
        n_class * target[mask].astype(int) + pred[mask], minlength=n_class**2
    ).reshape(n_class, n_class)


def fast_hist_full(target: np.ndarray, pred: np.ndarray, n_class: int = C) -> np.ndarray:
    """Same, with our extra "no prediction" column, so the output equals the kernel's."""
    mask = target < n_class
    p = np.minimum(pred[mask], n_class).astype(int)
    return np.bincount(
        (n_class + 1) * target[mask].astype(int) + p, minlength=n_class * (n_class + 1)
    ).reshape(n_class, n_class + 1)


def camvid_pairs(limit: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive real CamVid labels (11 classes, 11 = void) at 1024 x 512; [] if absent."""
    if not os.path.isdir(CAMVID):
        return []
    import cv2

    names = sorted(n for n in os.listdir(CAMVID) if n.endswith(".png"))[: limit + 1]
    maps = [
        cv2.resize(cv2.imread(os.path.join(CAMVID, n), cv2.IMREAD_GRAYSCALE), (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST)
        for n in names
    ]
    pairs = []
    for target, nxt in zip(maps[:-1], maps[1:]):
        pred = nxt.copy()
        pred[pred >= 11] = 0  # a student always predicts a class
        pairs.append((np.ascontiguousarray(target), pred))
    return pairs


def median_ms(fn, pairs, repeats: int) -> float:
    times = []
    for r in range(repeats):
        t, p = pairs[r % len(pairs)]
        start = time.perf_counter()
        fn(t, p)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main() -> None:
    rng = np.random.default_rng(0)
    pairs = [scene(rng) for _ in range(8)]
    ignored = np.mean([(t == IGNORE_INDEX).mean() for t, _ in pairs])
    cm = np.zeros((C, C + 1), np.int64)  # (C, C + 1)

    def numba_serial(t, p):
        confusion_update(cm, t, p, IGNORE_INDEX)

    def numba_parallel(t, p):
        confusion_update_parallel(cm, t, p, IGNORE_INDEX)

    # correctness first (also the JIT warm-up)
    for t, p in pairs:
        cm[...] = 0
        confusion_update(cm, t, p, IGNORE_INDEX)
        assert (cm[:, :C] == fast_hist(t, p)).all() and (cm == fast_hist_full(t, p)).all()
        cm[...] = 0
        confusion_update_parallel(cm, t, p, IGNORE_INDEX)
        assert (cm == fast_hist_full(t, p)).all()

    evaluator = StreamingEvaluator(EvaluatorConfig())

    def evaluator_update(t, p):
        evaluator.update("bench", p, ground_truth=t, teacher=t)

    evaluator_update(*pairs[0])

    repeats = 300
    numpy_ms = median_ms(fast_hist, pairs, repeats)
    numpy_full_ms = median_ms(fast_hist_full, pairs, repeats)
    numba_ms = median_ms(numba_serial, pairs, repeats)
    numba_par_ms = median_ms(numba_parallel, pairs, repeats)
    update_ms = median_ms(evaluator_update, pairs, repeats)
    speedup = numpy_ms / numba_ms

    noise_rng = np.random.default_rng(1)
    noise = [(noise_rng.integers(0, C, (HEIGHT, WIDTH)).astype(np.uint8), noise_rng.integers(0, C, (HEIGHT, WIDTH)).astype(np.uint8)) for _ in range(4)]
    noise_numpy_ms = median_ms(fast_hist, noise, repeats // 3)
    noise_numba_ms = median_ms(numba_serial, noise, repeats // 3)

    camvid = camvid_pairs()
    camvid_numpy_ms = camvid_numba_ms = None
    if camvid:
        k = len(CAMVID_CLASS_NAMES)  # 11
        cm11 = np.zeros((k, k + 1), np.int64)  # (11, 12)
        confusion_update(cm11, *camvid[0], IGNORE_INDEX)
        assert (cm11[:, :k] == fast_hist(*camvid[0], n_class=k)).all()
        camvid_numpy_ms = median_ms(lambda t, p: fast_hist(t, p, k), camvid, repeats)
        camvid_numba_ms = median_ms(lambda t, p: confusion_update(cm11, t, p, IGNORE_INDEX), camvid, repeats)

    print(f"label maps: {len(pairs)} pairs of {WIDTH}x{HEIGHT}, {ignored:.1%} ignore, {repeats} repeats, medians")
    print(f"numpy bincount (FCN _fast_hist, CxC)        : {numpy_ms:8.3f} ms")
    print(f"numpy bincount, same Cx(C+1) output as ours : {numpy_full_ms:8.3f} ms")
    print(f"numba confusion_update (1 thread)           : {numba_ms:8.3f} ms  -> {speedup:.1f}x vs _fast_hist")
    print(f"numba confusion_update_parallel ({os.cpu_count()} cpus)    : {numba_par_ms:8.3f} ms  -> {numpy_ms / numba_par_ms:.1f}x")
    print(f"StreamingEvaluator.update (3 pairs)         : {update_ms:8.3f} ms")
    if camvid:
        print(f"real CamVid labels ({len(camvid)} pairs, 11 classes): numpy {camvid_numpy_ms:.3f} ms, "
              f"numba {camvid_numba_ms:.3f} ms -> {camvid_numpy_ms / camvid_numba_ms:.1f}x")
    else:
        print("real CamVid labels: ../shared/data absent, skipped")
    print(f"random noise maps (worst case)              : numpy {noise_numpy_ms:.3f} ms, numba {noise_numba_ms:.3f} ms "
          f"-> {noise_numpy_ms / noise_numba_ms:.1f}x")
    print(f"target: numba >= {TARGET_SPEEDUP}x faster -> {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}")
    print(json.dumps({
        "numpy_bincount_ms": round(numpy_ms, 4),
        "numpy_bincount_full_ms": round(numpy_full_ms, 4),
        "numba_ms": round(numba_ms, 4),
        "numba_parallel_ms": round(numba_par_ms, 4),
        "evaluator_update_ms": round(update_ms, 4),
        "speedup": round(speedup, 2),
        "speedup_vs_full": round(numpy_full_ms / numba_ms, 2),
        "target_speedup": TARGET_SPEEDUP,
        "camvid_numpy_ms": None if camvid_numpy_ms is None else round(camvid_numpy_ms, 4),
        "camvid_numba_ms": None if camvid_numba_ms is None else round(camvid_numba_ms, 4),
        "camvid_speedup": None if camvid_numba_ms is None else round(camvid_numpy_ms / camvid_numba_ms, 2),
        "noise_numpy_ms": round(noise_numpy_ms, 4),
        "noise_numba_ms": round(noise_numba_ms, 4),
        "noise_speedup": round(noise_numpy_ms / noise_numba_ms, 2),
        "height": HEIGHT,
        "width": WIDTH,
    }))


if __name__ == "__main__":
    main()
