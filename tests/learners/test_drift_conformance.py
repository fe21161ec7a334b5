"""River-style conformance of every drift detector: one parametrised check per contract rule.

A detector is ``update(x)`` then read ``drift_detected``. Each entry of :data:`DETECTORS`
says how to build one, how to draw its input at a given level (a float, or a frame whose
brightness is that level), and, where the detector runs a numba kernel, a pure-python
reference that must flag exactly the same updates. A new detector is one line here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from drift_references import RefADWIN, RefInputDriftMonitor, RefPageHinkley
from learners.drift import ADWIN, ADWINConfig, PageHinkley, PageHinkleyConfig
from learners.input_stats import InputDriftConfig, InputDriftMonitor


def scalars(rng: np.random.Generator, level: float, n: int, noise: float = 0.05) -> list[float]:
    """``n`` values around ``level`` (exactly ``level`` when ``noise`` is 0)."""
    return (level + noise * rng.standard_normal(n)).tolist()


def frames(rng: np.random.Generator, level: float, n: int, noise: float = 0.05) -> list[np.ndarray]:
    """``n`` small textured RGB frames of brightness ``level`` in [0, 1] (read-only, as sources give)."""
    out = []
    base = np.full((12, 16, 3), 255.0 * level)  # (H, W, 3)
    base[::2] += 20.0  # stripes: some contrast and edges
    base[:, :, 2] *= 0.8
    for _ in range(n):
        image = np.clip(base + 255.0 * noise * 0.2 * rng.standard_normal(base.shape), 0, 255).astype(np.uint8)
        image.setflags(write=False)
        out.append(image)
    return out


def _ph_reference(config: PageHinkleyConfig) -> Callable[[], Any]:
    return lambda: RefPageHinkley(config.min_instances, config.delta, config.threshold, config.alpha, config.mode)


def _adwin_reference(config: ADWINConfig) -> Callable[[], Any]:
    return lambda: RefADWIN(config.delta, config.clock, config.max_buckets, config.min_window_length,
                            config.grace_period, config.mode)


@dataclass(frozen=True)
class DetectorCase:
    name: str
    make: Callable[[], Any]  # a fresh detector
    draw: Callable[..., list]  # draw(rng, level, n, noise=...) -> n inputs for update()
    reference: Callable[[], Any] | None = None  # pure-python twin: update(x) -> bool


PH_UP = PageHinkleyConfig(min_instances=10, delta=0.02, threshold=4.0, alpha=1.0, mode="up")
PH_BOTH = PageHinkleyConfig(min_instances=5, delta=0.01, threshold=3.0, alpha=0.999, mode="both")
AD_DEFAULT = ADWINConfig()
AD_UP = ADWINConfig(delta=0.01, clock=8, mode="up")

DETECTORS = [
    DetectorCase("page_hinkley_up", lambda: PageHinkley(PH_UP), scalars, _ph_reference(PH_UP)),
    DetectorCase("page_hinkley_both", lambda: PageHinkley(PH_BOTH), scalars, _ph_reference(PH_BOTH)),
    DetectorCase("adwin", lambda: ADWIN(AD_DEFAULT), scalars, _adwin_reference(AD_DEFAULT)),
    DetectorCase("adwin_up", lambda: ADWIN(AD_UP), scalars, _adwin_reference(AD_UP)),
    DetectorCase("input_drift", lambda: InputDriftMonitor(InputDriftConfig()), frames,
                 lambda: RefInputDriftMonitor(InputDriftConfig())),
]

LOW, HIGH, BEFORE, AFTER = 0.2, 0.8, 300, 200  # the obvious mean shift: 0.2 -> 0.8 at update 300


def shift_stream(case: DetectorCase, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return case.draw(rng, LOW, BEFORE) + case.draw(rng, HIGH, AFTER)


def run(detector: Any, xs: list) -> list[bool]:
    flags = []
    for x in xs:
        detector.update(x)
        flags.append(detector.drift_detected)
    return flags


cases = pytest.mark.parametrize("case", DETECTORS, ids=[c.name for c in DETECTORS])


@cases
def test_drift_detected_is_read_only(case):
    detector = case.make()
    assert detector.drift_detected is False
    detector.update(case.draw(np.random.default_rng(0), LOW, 1)[0])
    with pytest.raises(AttributeError):
        detector.drift_detected = True
    assert detector.drift_detected is False


@cases
def test_detects_an_obvious_mean_shift(case):
    flags = run(case.make(), shift_stream(case, seed=1))
    hits = [i for i, flag in enumerate(flags) if flag]
    assert hits, "no drift found"
    assert BEFORE <= hits[0] < BEFORE + 100, hits


@cases
def test_quiet_on_a_constant_stream(case):
    xs = case.draw(np.random.default_rng(2), 0.5, 1500, noise=0.0)
    detector = case.make()
    assert not any(run(detector, xs))
    assert detector.n_detections == 0


@cases
def test_flag_resets_on_the_next_update(case):
    xs = shift_stream(case, seed=3)
    detector = case.make()
    flags = run(detector, xs)
    first = flags.index(True)
    assert detector.n_detections == sum(flags)
    replay = case.make()
    run(replay, xs[: first + 1])
    assert replay.drift_detected
    replay.update(xs[first + 1])
    assert not replay.drift_detected  # the flag is not sticky
    assert replay.drift_detected == flags[first + 1]


@cases
@pytest.mark.parametrize("cut", ["warming", "before_shift", "at_detection", "after_detection"])
def test_state_round_trip_continues_identically(case, cut):
    xs = shift_stream(case, seed=4)
    flags = run(case.make(), xs)
    first = flags.index(True)
    k = {"warming": 3, "before_shift": BEFORE - 7, "at_detection": first + 1, "after_detection": first + 9}[cut]
    original = case.make()
    run(original, xs[:k])
    restored = case.make()
    restored.load_state(json.loads(json.dumps(original.state())))  # plain JSON, as a checkpoint holds it
    assert restored.drift_detected == original.drift_detected
    assert restored.state() == original.state()
    assert run(restored, xs[k:]) == run(original, xs[k:]) == flags[k:]
    assert restored.n_detections == original.n_detections
    assert restored.state() == original.state()


@cases
def test_state_of_another_config_is_refused(case):
    detector = case.make()
    state = detector.state()
    state["config"] = {**state["config"], "mode": "nonsense"} if "mode" in state["config"] else {"other": 1}
    with pytest.raises(ValueError, match=f"{type(detector).__name__}.load_state: state saved with config"):
        detector.load_state(state)
    with pytest.raises(ValueError, match="state must be a dict"):
        detector.load_state([1, 2])


@cases
def test_kernel_matches_the_python_reference(case):
    if case.reference is None:
        pytest.skip(f"{case.name} has no numba path")
    for seed in (5, 6):
        xs = shift_stream(case, seed) + case.draw(np.random.default_rng(seed), LOW, 150)
        reference = case.reference()
        expected = [reference.update(x) for x in xs]
        assert run(case.make(), xs) == expected
        assert sum(expected) >= 1
        if hasattr(case.make(), "update_many"):  # the batched kernel flags the same updates
            assert case.make().update_many(np.asarray(xs)).tolist() == [i for i, f in enumerate(expected) if f]
