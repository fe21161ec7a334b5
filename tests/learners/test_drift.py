"""Tests for learners.drift: Page-Hinkley and ADWIN against pure-python references."""
from __future__ import annotations

import math

import numpy as np
import pytest

from drift_references import RefADWIN, RefPageHinkley
from learners.drift import ADWIN, ADWINConfig, PageHinkley, PageHinkleyConfig


# ----------------------------------------------------------------------------- streams

def _streams(seed):
    rng = np.random.default_rng(seed)
    return {
        "iid": rng.normal(0.3, 0.1, 3000),
        "step_up": np.concatenate([rng.normal(0.2, 0.05, 800), rng.normal(0.5, 0.05, 800)]),
        "steps": np.concatenate([rng.normal(m, 0.1, 600) for m in (0.0, 1.0, 0.2, 0.9, 0.9)]),
        "bernoulli": (rng.random(4000) < np.repeat([0.1, 0.4, 0.1, 0.6], 1000)).astype(float),
        "ramp": np.linspace(0, 2, 2000) + rng.normal(0, 0.2, 2000),
    }


PH_CONFIGS = [
    PageHinkleyConfig(),
    PageHinkleyConfig(min_instances=10, delta=0.01, threshold=5.0, mode="up"),
    PageHinkleyConfig(min_instances=5, delta=0.005, threshold=3.0, alpha=0.99, mode="down"),
    PageHinkleyConfig(min_instances=1, delta=0.0, threshold=2.0, alpha=0.999, mode="both"),
]


@pytest.mark.parametrize("config", PH_CONFIGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_page_hinkley_matches_reference(config, seed):
    for name, xs in _streams(seed).items():
        ref = RefPageHinkley(config.min_instances, config.delta, config.threshold, config.alpha, config.mode)
        expected = [i for i, x in enumerate(xs.tolist()) if ref.update(x)]
        ph = PageHinkley(config)
        flags = []
        for x in xs[:500]:
            ph.update(float(x))
            flags.append(ph.drift_detected)
        got = [i for i, f in enumerate(flags) if f] + [500 + int(i) for i in ph.update_many(xs[500:])]
        assert got == expected, name
        assert ph.n_detections == len(expected)
        assert ph.estimation == pytest.approx(ref.mean, abs=0.0)


ADWIN_CONFIGS = [
    ADWINConfig(),
    ADWINConfig(clock=1),
    ADWINConfig(delta=0.05, clock=4, max_buckets=2, min_window_length=2, grace_period=4),
    ADWINConfig(delta=0.01, clock=8, mode="up"),
    ADWINConfig(delta=0.01, clock=8, mode="down"),
]


@pytest.mark.parametrize("config", ADWIN_CONFIGS)
def test_adwin_matches_reference(config):
    for name, xs in _streams(7).items():
        ref = RefADWIN(config.delta, config.clock, config.max_buckets, config.min_window_length, config.grace_period, config.mode)
        expected = [i for i, x in enumerate(xs.tolist()) if ref.update(x)]
        ad = ADWIN(config)
        flags = []
        for x in xs[:300]:
            ad.update(float(x))
            flags.append(ad.drift_detected)
        got = [i for i, f in enumerate(flags) if f] + [300 + int(i) for i in ad.update_many(xs[300:])]
        assert got == expected, name
        assert ad.width == ref.width and ad.estimation == ref.total / ref.width
        assert ad.variance == ref.m2 / ref.width
        assert ad.n_buckets == sum(len(r) for r in ref.rows)


def test_adwin_window_statistics_are_the_last_values():
    """Bucket bookkeeping: the window is always exactly the newest `width` values."""
    rng = np.random.default_rng(3)
    xs = np.concatenate([rng.normal(0, 1, 700), rng.normal(3, 2, 700), rng.normal(-1, 0.5, 700)])
    ad = ADWIN(ADWINConfig(clock=1))
    shrunk = 0
    for i, x in enumerate(xs):
        ad.update(float(x))
        window = xs[i + 1 - ad.width: i + 1]
        assert ad.estimation == pytest.approx(window.mean(), rel=1e-9, abs=1e-9)
        assert ad.variance == pytest.approx(window.var(), rel=1e-6, abs=1e-9)
        shrunk += ad.width < i + 1
    assert shrunk > 0  # cuts did happen
    assert ad.n_buckets <= (ad.config.max_buckets + 1) * (int(math.log2(ad.width)) + 1)


def test_detects_mean_shift_within_bounded_delay():
    rng = np.random.default_rng(11)
    for trial in range(5):
        xs = np.concatenate([rng.normal(0.2, 0.05, 1000), rng.normal(0.35, 0.05, 500)])  # +3 sigma
        ph = PageHinkley(PageHinkleyConfig(delta=0.02, threshold=4.0, alpha=1.0, mode="up"))
        hits = ph.update_many(xs)
        assert len(hits) >= 1 and 1000 <= hits[0] < 1060, (trial, hits)
        ad = ADWIN(ADWINConfig())
        hits = ad.update_many(xs)
        assert len(hits) >= 1 and 1000 <= hits[0] < 1100, (trial, hits)


def test_no_detection_on_long_stationary_stream():
    rng = np.random.default_rng(5)
    xs = rng.normal(0.3, 0.1, 20000)
    assert len(PageHinkley(PageHinkleyConfig(delta=0.02, threshold=4.0, alpha=1.0)).update_many(xs)) == 0
    assert len(PageHinkley(PageHinkleyConfig()).update_many(xs)) == 0
    assert len(ADWIN(ADWINConfig()).update_many(xs)) == 0
    coin = (rng.random(20000) < 0.3).astype(float)
    assert len(ADWIN(ADWINConfig()).update_many(coin)) == 0


def test_flags_reset_after_one_update_and_reset():
    xs = np.concatenate([np.zeros(100), np.ones(100)])
    ph = PageHinkley(PageHinkleyConfig(min_instances=5, delta=0.0, threshold=3.0))
    for x in xs:
        ph.update(x)
        if ph.drift_detected:
            break
    ph.update(1.0)
    assert not ph.drift_detected and ph.n_detections == 1
    ph.reset()
    assert ph.n_detections == 0 and not ph.drift_detected
    assert list(ph.update_many(xs)) == list(PageHinkley(ph.config).update_many(xs))

    ad = ADWIN(ADWINConfig())
    for x in xs:
        ad.update(x)
        if ad.drift_detected:
            break
    assert ad.drift_detected
    ad.update(1.0)
    assert not ad.drift_detected and ad.n_detections == 1
    ad.reset()
    assert ad.width == 0 and ad.n_detections == 0
    assert list(ad.update_many(xs)) == list(ADWIN(ad.config).update_many(xs))


def test_mode_filters_direction():
    xs = np.concatenate([np.full(300, 0.8), np.full(300, 0.2)]) + np.random.default_rng(0).normal(0, 0.05, 600)
    assert len(PageHinkley(PageHinkleyConfig(delta=0.01, threshold=2.0, mode="up")).update_many(xs)) == 0
    assert len(PageHinkley(PageHinkleyConfig(delta=0.01, threshold=2.0, mode="down")).update_many(xs)) >= 1
    up = ADWIN(ADWINConfig(mode="up"))
    assert len(up.update_many(xs)) == 0
    assert up.width < 600  # the window still adapted to the decrease
    assert len(ADWIN(ADWINConfig(mode="down")).update_many(xs)) >= 1


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: PageHinkleyConfig(min_instances=0), "min_instances"),
        (lambda: PageHinkleyConfig(delta=-1.0), "delta"),
        (lambda: PageHinkleyConfig(threshold=0.0), "threshold"),
        (lambda: PageHinkleyConfig(alpha=1.5), "alpha"),
        (lambda: PageHinkleyConfig(mode="sideways"), "mode"),
        (lambda: ADWINConfig(delta=0.0), "delta"),
        (lambda: ADWINConfig(delta=1.0), "delta"),
        (lambda: ADWINConfig(clock=0), "clock"),
        (lambda: ADWINConfig(max_buckets=1), "max_buckets"),
        (lambda: ADWINConfig(min_window_length=0), "min_window_length"),
        (lambda: ADWINConfig(grace_period=0), "grace_period"),
        (lambda: ADWINConfig(mode="UP"), "mode"),
    ],
)
def test_bad_config_names_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_bad_values():
    for detector in (PageHinkley(), ADWIN()):
        with pytest.raises(ValueError, match="x must be finite"):
            detector.update(float("nan"))
        with pytest.raises(ValueError, match="x must be a real number"):
            detector.update("a")
        with pytest.raises(ValueError, match="xs must be finite, got inf at index 2"):
            detector.update_many([0.0, 1.0, float("inf")])
        with pytest.raises(ValueError, match="xs must be 1-D, got shape \\(2, 2\\)"):
            detector.update_many(np.zeros((2, 2)))
        with pytest.raises(ValueError, match="xs must be a 1-D sequence"):
            detector.update_many(["a"])
        assert detector.update_many([]).tolist() == []
    with pytest.raises(ValueError, match="PageHinkleyConfig"):
        PageHinkley(ADWINConfig())
