"""VectorCUSUM ("mcusum"): the numba kernel against a plain-python reference, its behaviour on
scene-like and domain-like changes, its state, its errors and the registry's checks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from learners.drift_combined import check_signals, make_detector
from learners.drift_vector import VectorCUSUM, VectorCUSUMConfig


def _reference(xs: np.ndarray, c: VectorCUSUMConfig) -> list[int]:
    """The detector written out plainly (module docstring of learners.drift_vector)."""
    dim = xs.shape[1]
    size = dim // c.groups
    hits: list[int] = []
    n = 0
    mean = np.zeros(dim)
    scale = np.zeros(dim)
    up = np.zeros(dim)
    down = np.zeros(dim)
    for i, x in enumerate(xs):
        n += 1
        if n <= c.warmup:
            d = x - mean
            mean = mean + d / n
            if n > 1:
                scale = scale + (np.abs(d) - scale) / (n - 1)
            continue
        s = np.maximum(scale, c.min_scale)
        r = np.clip((x - mean) / s, -c.clip, c.clip)
        up = np.maximum(0.0, up + r - c.k)
        down = np.maximum(0.0, down - r - c.k)
        g = np.maximum(up, down)
        groups = [math.sqrt(float(np.sum(g[b * size:(b + 1) * size] ** 2))) for b in range(c.groups)]
        kept = sorted(groups)[: c.groups - c.drop_top]
        d = r * s
        mean = mean + c.alpha * d
        scale = scale + c.alpha * (np.abs(d) - scale)
        if sum(kept) > c.threshold:
            hits.append(i)
            n = 0
            mean, scale, up, down = np.zeros(dim), np.zeros(dim), np.zeros(dim), np.zeros(dim)
    return hits


def _frames(seed: int, n: int = 3000, dim: int = 21) -> np.ndarray:
    """Autocorrelated features in [0, 1] with a few steps of every group and one-group bumps."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, dim)
    noise = np.zeros((n, dim))
    for i in range(1, n):
        noise[i] = 0.7 * noise[i - 1] + rng.normal(0, 0.01, dim)
    xs = base + noise
    for start in rng.choice(np.arange(300, n - 200), 4, replace=False):
        xs[start:] += rng.normal(0, 0.1, dim)  # a domain change: every feature
    for start in rng.choice(np.arange(300, n - 100), 3, replace=False):
        xs[start:start + 60, :7] += 0.3  # a scene change: one band
    return xs


@pytest.mark.parametrize("config", [
    VectorCUSUMConfig(),
    VectorCUSUMConfig(drop_top=0, threshold=30.0, alpha=0.005),
    VectorCUSUMConfig(groups=7, drop_top=2, k=1.0, clip=3.0, warmup=10, min_scale=0.005),
    VectorCUSUMConfig(groups=1, drop_top=0, threshold=10.0),
])
def test_kernel_matches_the_reference_and_update_matches_update_many(config):
    for seed in (0, 1, 2):
        xs = _frames(seed)
        hits = VectorCUSUM(config).update_many(xs)
        assert hits.tolist() == _reference(xs, config)
        looped = VectorCUSUM(config)
        flags = []
        for row in xs:
            looped.update(row)
            flags.append(looped.drift_detected)
        assert np.flatnonzero(flags).tolist() == hits.tolist()
        assert looped.n_detections == len(hits)


def test_a_change_of_every_band_is_caught_and_a_one_band_change_is_not():
    rng = np.random.default_rng(5)
    xs = 0.5 + 0.005 * rng.normal(size=(1500, 21))  # (1500, 21)
    xs[400:500, 14:] -= 0.25  # the road band only, for 100 frames
    assert VectorCUSUM().update_many(xs).tolist() == []
    assert VectorCUSUM(VectorCUSUMConfig(drop_top=0)).update_many(xs).size > 0  # every group counting: fooled
    xs[1000:] += 0.1  # every band
    hits = VectorCUSUM().update_many(xs)
    assert hits.size == 1 and 1000 <= hits[0] <= 1010


def test_state_round_trip_continues_exactly():
    xs = _frames(3)
    det = VectorCUSUM()
    det.update_many(xs[:1500])
    twin = VectorCUSUM()
    twin.load_state(det.state())
    assert det.update_many(xs[1500:]).tolist() == twin.update_many(xs[1500:]).tolist()
    with pytest.raises(ValueError, match="state saved with config"):
        VectorCUSUM(VectorCUSUMConfig(threshold=5.0)).load_state(det.state())


def test_bad_configs_and_inputs_are_refused_naming_the_setting():
    with pytest.raises(ValueError, match=r"VectorCUSUMConfig.drop_top must be < groups=3"):
        VectorCUSUMConfig(drop_top=3)
    with pytest.raises(ValueError, match=r"VectorCUSUMConfig.groups must divide dim=21"):
        VectorCUSUMConfig(groups=2)
    with pytest.raises(ValueError, match=r"VectorCUSUMConfig.k must be a number in \[0, clip=4.0\)"):
        VectorCUSUMConfig(k=4.0)
    with pytest.raises(ValueError, match=r"VectorCUSUMConfig.min_scale must be a finite number > 0"):
        VectorCUSUMConfig(min_scale=0.0)
    det = VectorCUSUM()
    with pytest.raises(ValueError, match=r"x must be a vector of 21 finite numbers, got a NaN"):
        det.update(np.full(21, np.nan))
    with pytest.raises(ValueError, match=r"x must be a vector of 21 finite numbers, got shape \(20,\)"):
        det.update(np.zeros(20))
    with pytest.raises(ValueError, match=r"xs must be finite, got a NaN or an infinity in row 2"):
        det.update_many(np.array([[0.0] * 21, [0.0] * 21, [np.inf] * 21]))
    with pytest.raises(ValueError, match=r"xs must be \(N, 21\) real numbers, got shape \(5,\)"):
        det.update_many(np.zeros(5))
    with pytest.raises(ValueError, match=r"drift.detector=mcusum: VectorCUSUMConfig.alpha must be <= 1"):
        make_detector("mcusum", {"alpha": 2.0})
    assert make_detector("mcusum", {"threshold": 30.0}).config.threshold == 30.0


def test_signals_must_suit_the_detector():
    assert check_signals("stats", detector="mcusum") == ("stats",)
    assert check_signals(["input", "entropy"], detector="combined") == ("input", "entropy")
    with pytest.raises(ValueError, match=r"drift.signals: detector 'mcusum' watches the frame-statistics vector"):
        check_signals("input", detector="mcusum")
    with pytest.raises(ValueError, match=r"drift.signals: detector 'combined' combines scalar signals"):
        check_signals("input+stats", detector="combined")
    with pytest.raises(ValueError, match=r"drift.signals: detector 'adwin' watches one scalar signal"):
        check_signals("stats", detector="adwin")
