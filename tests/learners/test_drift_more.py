"""KSWIN against a plain numpy reference, the project's StepCUSUM and CombinedDetector on
synthetic streams, the detector / signal registry's errors, and the student-confidence signal."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learners.confidence import softmax_confidence
from learners.drift_combined import (
    DETECTORS, SIGNALS, CombinedConfig, CombinedDetector, StepCUSUM, StepCUSUMConfig, check_signals, make_detector,
)
from learners.kswin import KSWIN, KSWINConfig


class RefKSWIN:
    """KSWIN in plain python/numpy: a list window, ECDFs by searchsorted."""

    def __init__(self, alpha: float, window_size: int, stat_size: int) -> None:
        self.window: list[float] = []
        self.size, self.m = window_size, stat_size
        self.critical = max(0.1, math.sqrt(-math.log(alpha / 2.0) / stat_size))

    def update(self, x: float) -> bool:
        self.window.append(x)
        if len(self.window) > self.size:
            self.window.pop(0)
        if len(self.window) < self.size:
            return False
        old, new = np.sort(self.window[: self.m]), np.sort(self.window[-self.m:])
        grid = np.concatenate([old, new])
        gap = np.abs(np.searchsorted(old, grid, side="right") - np.searchsorted(new, grid, side="right")).max()
        if gap / self.m > self.critical:
            self.window = self.window[-self.m:]
            return True
        return False


def _stream(seed: int, n: int = 3000, rounding: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    levels = rng.normal(0.0, 1.0, 6)
    xs = np.concatenate([rng.normal(level, 0.5, n // 6) for level in levels])  # (n,)
    return np.round(xs, rounding) if rounding is not None else xs


@pytest.mark.parametrize("seed, alpha, window, stat, rounding", [
    (0, 0.005, 100, 30, None), (1, 0.05, 40, 10, 1), (2, 1e-4, 200, 60, None), (3, 0.01, 60, 30, 0)])
def test_kswin_kernel_matches_the_reference(seed, alpha, window, stat, rounding):
    xs = _stream(seed, rounding=rounding)
    ref = RefKSWIN(alpha, window, stat)
    expected = [i for i, x in enumerate(xs.tolist()) if ref.update(x)]
    got = KSWIN(KSWINConfig(alpha=alpha, window_size=window, stat_size=stat)).update_many(xs).tolist()
    assert got == expected and expected  # ties (rounding) included; the stream has changes to find
    det = KSWIN(KSWINConfig(alpha=alpha, window_size=window, stat_size=stat))
    flags = []
    for x in xs[:1500]:
        det.update(x)
        flags.append(det.drift_detected)
    assert [i for i, f in enumerate(flags) if f] == [i for i in expected if i < 1500]


def test_kswin_state_round_trip_and_config_errors():
    xs = _stream(5)
    a = KSWIN(KSWINConfig())
    a.update_many(xs[:1000])
    b = KSWIN(KSWINConfig())
    b.load_state(a.state())
    assert a.update_many(xs[1000:]).tolist() == b.update_many(xs[1000:]).tolist()
    with pytest.raises(ValueError, match="KSWIN.load_state: state saved with config"):
        KSWIN(KSWINConfig(alpha=0.01)).load_state(a.state())
    with pytest.raises(ValueError, match=r"KSWINConfig.window_size must be an int >= 2 \* stat_size = 60, got 50"):
        KSWINConfig(window_size=50)
    with pytest.raises(ValueError, match="KSWINConfig.alpha must be in"):
        KSWINConfig(alpha=0.0)


def _ar1(seed: int, n: int, phi: float = 0.8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, n)
    xs = np.empty(n)
    xs[0] = noise[0]
    for i in range(1, n):
        xs[i] = phi * xs[i - 1] + noise[i]
    return xs  # (n,) std about 1.67


def _ref_cusum(xs: np.ndarray, c: StepCUSUMConfig) -> list[int]:
    """StepCUSUM in plain python (the module docstring's recursion)."""
    n = mean = scale = up = down = 0.0
    flagged = False
    hits = []
    for i, x in enumerate(xs.tolist()):
        if flagged:
            n = mean = scale = up = down = 0.0
        n += 1
        if n <= c.warmup:
            d = x - mean
            mean += d / n
            scale += (abs(d) - scale) / n
            flagged = False
            continue
        s = max(scale, c.min_scale)
        r = min(max((x - mean) / s, -c.clip), c.clip)
        up, down = max(0.0, up + r - c.k), max(0.0, down - r - c.k)
        flagged = (c.mode != "down" and up > c.threshold) or (c.mode != "up" and down > c.threshold)
        mean += c.alpha * r * s
        scale += c.alpha * (abs(r * s) - scale)
        if flagged:
            hits.append(i)
    return hits


@pytest.mark.parametrize("mode", ["both", "up", "down"])
def test_cusum_kernel_matches_the_reference(mode):
    xs = _ar1(0, 4000) + np.repeat([0.0, 4.0, -2.0, 3.0], 1000)
    config = StepCUSUMConfig(threshold=15.0, k=1.0, mode=mode)
    expected = _ref_cusum(xs, config)
    assert StepCUSUM(config).update_many(xs).tolist() == expected and expected


def test_cusum_catches_a_step_and_stays_quiet_on_autocorrelated_noise():
    config = StepCUSUMConfig(threshold=40.0, k=1.0)
    quiet = _ar1(1, 20_000)
    assert StepCUSUM(config).update_many(quiet).tolist() == []
    stepped = _ar1(2, 4000)
    stepped[2000:] += 8.0  # about 5 of its standard deviations
    hits = StepCUSUM(config).update_many(stepped).tolist()
    assert len(hits) == 1 and 2000 <= hits[0] <= 2030


def _two_signals(seed: int, step_both: bool) -> np.ndarray:
    rows = np.stack([_ar1(seed, 6000), _ar1(seed + 100, 6000)], axis=1)  # (6000, 2)
    rows[3000:, 0] += 8.0
    if step_both:
        rows[3000:, 1] -= 8.0
    rows[1::2, 1] = np.nan  # the second signal arrives every other frame only
    return rows


def test_combined_votes_need_two_signals_to_move_and_or_needs_one():
    members = (StepCUSUMConfig(threshold=40.0),) * 2
    vote = CombinedConfig(signals=("input", "disagreement"), members=members, votes=2, window=30)
    either = CombinedConfig(signals=("input", "disagreement"), members=members, votes=1, window=30)
    both = CombinedDetector(vote).update_many(_two_signals(0, step_both=True)).tolist()
    assert len(both) == 1 and 3000 <= both[0] <= 3030
    assert CombinedDetector(vote).update_many(_two_signals(0, step_both=False)).tolist() == []
    one = CombinedDetector(either).update_many(_two_signals(0, step_both=False)).tolist()
    assert len(one) == 1 and 3000 <= one[0] <= 3030


def test_combined_stays_quiet_on_noise_and_update_matches_update_many():
    config = CombinedConfig(signals=("input", "entropy"), members=(StepCUSUMConfig(threshold=40.0),) * 2, votes=1)
    rows = np.stack([_ar1(7, 20_000), _ar1(8, 20_000)], axis=1)  # (20000, 2)
    assert CombinedDetector(config).update_many(rows).tolist() == []
    rows = _two_signals(3, step_both=True)
    many = CombinedDetector(config).update_many(rows).tolist()
    det = CombinedDetector(config)
    flags = []
    for row in rows:
        det.update(row)
        flags.append(det.drift_detected)
    assert [i for i, f in enumerate(flags) if f] == many and many
    twin = CombinedDetector(config)
    twin.load_state(det.state())
    assert twin.state() == det.state()


def test_combined_cooldown_folds_a_second_step():
    config = CombinedConfig(signals=("input",), members=(StepCUSUMConfig(threshold=40.0, warmup=10),), cooldown=500)
    xs = _ar1(4, 3000)
    xs[1000:] += 8.0
    xs[1200:] += 8.0  # inside the cooldown of the first
    xs[2000:] -= 16.0  # outside it
    hits = CombinedDetector(config).update_many(xs[:, None]).tolist()
    assert len(hits) == 2 and 1000 <= hits[0] <= 1020 and 2000 <= hits[1] <= 2020


def test_unknown_names_are_refused_naming_the_setting():
    assert set(DETECTORS) == {"page_hinkley", "adwin", "kswin", "cusum", "combined", "mcusum"}
    assert SIGNALS == ("input", "entropy", "confidence", "disagreement", "stats")
    with pytest.raises(ValueError, match=r"drift.detector: unknown detector 'ph'; choose one of page_hinkley, adwin"):
        make_detector("ph")
    with pytest.raises(ValueError, match=r"--detector: unknown detector"):
        make_detector("river_adwin", setting="--detector")
    with pytest.raises(ValueError, match=r"drift.detector=cusum: unknown setting 'lambda'; StepCUSUMConfig has alpha, k"):
        make_detector("cusum", {"lambda": 3.0})
    with pytest.raises(ValueError, match=r"drift.signals: unknown signal 'teacher'; choose from input, entropy"):
        check_signals("input+teacher")
    with pytest.raises(ValueError, match=r"CombinedConfig.signals: unknown signal 'entropie'"):
        CombinedConfig(signals=("input", "entropie"))
    with pytest.raises(ValueError, match=r"CombinedConfig.votes must be an int in \[1, 2\]"):
        CombinedConfig(votes=3)
    with pytest.raises(ValueError, match=r"StepCUSUMConfig.k must be a number in \[0, clip=5.0\)"):
        StepCUSUMConfig(k=6.0)
    with pytest.raises(ValueError, match=r"values must have 2 values per frame \(input, entropy\)"):
        CombinedDetector().update([1.0, 2.0, 3.0])
    for name in ("page_hinkley", "adwin", "kswin", "cusum"):
        assert make_detector(name).update_many(np.zeros(50)).shape == (0,)


def test_softmax_confidence_ranks_sure_above_unsure_and_checks_shapes():
    logits = torch.randn(3, 19, 8, 16)
    logits[0] *= 20.0  # a sharp student
    entropy, top = softmax_confidence(logits)
    assert entropy.shape == (3,) and top.shape == (3,)
    assert entropy[0] < entropy[1] and top[0] > top[1]
    assert bool(((entropy >= 0) & (entropy <= 1)).all()) and bool(((top > 1 / 19) & (top <= 1)).all())
    with pytest.raises(ValueError, match=r"logits must be a \(B, K, H, W\) tensor with K >= 2 classes, got \(19, 8, 16\)"):
        softmax_confidence(torch.zeros(19, 8, 16))
