"""Tests for learners.input_stats: frame statistics kernel, novelty tracker, drift monitor."""
from __future__ import annotations

import numpy as np
import pytest

from drift_references import reference_statistics
from learners.drift import PageHinkleyConfig
from learners.input_stats import (
    FEATURE_NAMES,
    InputDriftConfig,
    InputDriftMonitor,
    InputStatsConfig,
    InputStatsTracker,
    frame_statistics,
)


@pytest.mark.parametrize("shape", [(3, 2), (4, 5), (7, 9), (30, 41), (97, 128)])
def test_kernel_matches_numpy(shape):
    rng = np.random.default_rng(shape[0])
    image = rng.integers(0, 256, size=(*shape, 3)).astype(np.uint8)
    image[0, 0] = 0  # a black pixel (saturation 0)
    np.testing.assert_allclose(frame_statistics(image), reference_statistics(image), rtol=1e-9, atol=1e-12)
    view = np.zeros((shape[0], 2 * shape[1], 4), np.uint8)[:, ::2, :3]  # non-contiguous
    view[...] = image
    view.setflags(write=False)
    np.testing.assert_allclose(frame_statistics(view), reference_statistics(image), rtol=1e-9, atol=1e-12)


def test_constant_bands_are_exact():
    image = np.zeros((6, 4, 3), np.uint8)
    image[2:4] = (10, 20, 40)
    s = dict(zip(FEATURE_NAMES, frame_statistics(image).tolist()))
    assert s["top_red"] == 0 and s["top_saturation"] == 0 and s["top_contrast"] == 0
    assert s["middle_blue"] == 40 / 255 and s["middle_dark"] == 10 / 255 and s["middle_saturation"] == 0.75
    assert s["middle_contrast"] == 0 and s["middle_edges"] == 0 and s["bottom_edges"] == 0
    assert len(FEATURE_NAMES) == 21 and len(set(FEATURE_NAMES)) == 21


def _street(rng, h=48, w=64):
    """A crude street: blue sky, coloured buildings with windows, grey road; a little noise."""
    image = np.empty((h, w, 3), np.float64)
    image[: h // 3] = (110, 160, 230)
    image[h // 3: 2 * h // 3] = (150, 90, 70)
    image[h // 3: 2 * h // 3, ::6] = (40, 40, 50)
    image[2 * h // 3:] = (100, 100, 105)
    image[2 * h // 3:, w // 2 - 1: w // 2 + 1] = (230, 230, 230)
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255)


def _u8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _weather(name, image):
    h = image.shape[0]
    if name == "fog":  # I = J t + A (1 - t), depth grows towards the horizon
        depth = np.linspace(80, 10, h)[:, None, None]
        t = np.exp(-0.03 * depth)
        return image * t + 200 * (1 - t)
    if name == "night":
        return image * 0.15
    if name == "snow":
        out = image.copy()
        out[2 * h // 3:] = 0.3 * out[2 * h // 3:] + 0.7 * 240
        return out
    return image


def test_weather_moves_the_statistics():
    rng = np.random.default_rng(0)
    base = _street(rng)
    clear = dict(zip(FEATURE_NAMES, frame_statistics(_u8(base))))
    fog = dict(zip(FEATURE_NAMES, frame_statistics(_u8(_weather("fog", base)))))
    night = dict(zip(FEATURE_NAMES, frame_statistics(_u8(_weather("night", base)))))
    snow = dict(zip(FEATURE_NAMES, frame_statistics(_u8(_weather("snow", base)))))
    for band in ("top", "middle", "bottom"):
        assert fog[f"{band}_dark"] > clear[f"{band}_dark"]
        assert fog[f"{band}_contrast"] < clear[f"{band}_contrast"]
        assert fog[f"{band}_saturation"] < clear[f"{band}_saturation"]
        assert fog[f"{band}_edges"] < clear[f"{band}_edges"]
        assert night[f"{band}_green"] < 0.3 * clear[f"{band}_green"]
    assert snow["bottom_red"] > clear["bottom_red"] + 0.3 and snow["top_red"] == clear["top_red"]


def test_tracker_reference_and_novelty():
    rng = np.random.default_rng(1)
    tracker = InputStatsTracker(InputStatsConfig(warmup=20, alpha=0.05))
    feats = [frame_statistics(_u8(_street(rng))) for _ in range(60)]
    assert all(tracker.update(f) is None for f in feats[:20])
    np.testing.assert_allclose(tracker.mean, np.mean(feats[:20], axis=0), rtol=1e-12)
    np.testing.assert_allclose(tracker.var, np.var(feats[:20], axis=0), rtol=1e-9, atol=1e-15)
    assert tracker.warm
    quiet = [tracker.update(f) for f in feats[20:]]
    assert max(quiet) < 2.0
    fog = frame_statistics(_u8(_weather("fog", _street(rng))))
    assert tracker.score(fog) > 3.0
    assert tracker.score(fog) == tracker.score(fog)  # score does not update
    tracker.reset()
    assert not tracker.warm and tracker.update(fog) is None
    # deterministic: the same frames give the same scores
    again = InputStatsTracker(InputStatsConfig(warmup=20, alpha=0.05))
    assert [again.update(f) for f in feats][20:] == quiet


def test_tracker_exponential_update_matches_formula():
    cfg = InputStatsConfig(warmup=2, alpha=0.1, min_std=0.01, update_clip=3.0)
    tracker = InputStatsTracker(cfg, num_features=2)
    tracker.update(np.array([0.0, 0.0]))
    tracker.update(np.array([0.2, 0.0]))  # mean (0.1, 0), var (0.01, 0)
    x = np.array([0.15, 1.0])
    assert tracker.update(x) == pytest.approx((0.05 / 0.1 + 6.0) / 2)  # second z clipped at 6
    d = np.array([0.05, 3 * 0.01])  # the second deviation is clipped to 3 min_std
    np.testing.assert_allclose(tracker.mean, [0.1, 0.0] + 0.1 * d)
    np.testing.assert_allclose(tracker.var, 0.9 * (np.array([0.01, 0.0]) + 0.1 * d * d))


def _clip(rng, weather, n):
    return [_u8(_weather(weather, _street(rng))) for _ in range(n)]


def test_monitor_detects_weather_change_and_stays_quiet_otherwise():
    rng = np.random.default_rng(2)
    frames = _clip(rng, "clear", 200) + _clip(rng, "fog", 100) + _clip(rng, "night", 100)
    monitor = InputDriftMonitor(InputDriftConfig())
    hits = []
    for i, frame in enumerate(frames):
        monitor.update(frame)
        if monitor.drift_detected:
            hits.append(i)
    assert len(hits) == 2, hits
    assert 200 <= hits[0] < 210 and 300 <= hits[1] < 310
    assert monitor.n_detections == 2
    monitor.update(frames[-1])
    assert not monitor.drift_detected
    monitor.reset()
    assert monitor.novelty is None and not monitor.tracker.warm


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: frame_statistics(np.zeros((4, 4), np.uint8)), "image must be \\(H, W, 3\\)"),
        (lambda: frame_statistics(np.zeros((4, 4, 3), np.float32)), "image must be uint8"),
        (lambda: frame_statistics(np.zeros((2, 4, 3), np.uint8)), "at least 3 x 2"),
        (lambda: frame_statistics([[1, 2, 3]]), "image must be a numpy array"),
        (lambda: InputStatsTracker().update(np.zeros(5)), "features must have shape \\(21,\\)"),
        (lambda: InputStatsTracker().update(np.full(21, np.nan)), "features must be finite"),
        (lambda: InputStatsConfig(warmup=1), "InputStatsConfig.warmup"),
        (lambda: InputStatsConfig(alpha=1.0), "InputStatsConfig.alpha"),
        (lambda: InputStatsConfig(min_std=0.0), "InputStatsConfig.min_std"),
        (lambda: InputStatsConfig(z_clip=-1.0), "InputStatsConfig.z_clip"),
        (lambda: InputStatsConfig(update_clip=float("inf")), "InputStatsConfig.update_clip"),
        (lambda: InputDriftConfig(detector=InputStatsConfig()), "InputDriftConfig.detector"),
        (lambda: InputDriftConfig(stats=PageHinkleyConfig()), "InputDriftConfig.stats"),
    ],
)
def test_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()
