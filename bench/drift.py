"""Benchmark: drift detectors (numba kernels vs the same algorithms in plain python) and the
teacher-free input-statistics chain on real dash-cam video.

1. Throughput: Page-Hinkley and ADWIN over 200 000 values, ``update_many`` (numba) vs the
   pure-python reference implementations the unit tests check them against
   (tests/learners/test_drift.py), and the per-call cost of ``update(x)``. Medians of repeats.
2. ``frame_statistics`` at 1024 x 512: numba kernel vs the numpy reference of the tests.
3. Input drift chain (frame_statistics -> InputStatsTracker -> Page-Hinkley) on the real
   Udacity highway clip (../shared/data, 221 frames, resized to 480 x 270): false alarms on the
   clean clip, and the delay after a synthetic weather change applied from frame 120 on
   (fog as I = J t + A (1 - t), night = x 0.25, "rain" darkening = x 0.8). Skipped if the
   data is absent.

4. The same chain on the built-in simulator's ``tour`` schedule (clear -> fog -> night in
   oldtown, rain -> snow -> clear in newtown; 1200 frames at 256 x 128, shifts every 200
   frames) for a few seeds: shifts found within 60 frames, their delays, and false alarms
   (detections more than 60 frames after the last true shift). Skipped if ``sim`` is absent.

Run: ``.venv/bin/python bench/drift.py``; the last line is one JSON object.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from learners.drift import ADWIN, ADWINConfig, PageHinkley, PageHinkleyConfig  # noqa: E402
from learners.input_stats import InputDriftMonitor, frame_statistics  # noqa: E402

VIDEO = os.path.join(ROOT, "..", "shared", "data", "logs", "udacity_solidWhiteRight.mp4")
CHANGE_AT = 120


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


refs = _load("drift_refs", os.path.join(ROOT, "tests", "learners", "test_drift.py"))
stats_refs = _load("stats_refs", os.path.join(ROOT, "tests", "learners", "test_input_stats.py"))


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def detector_throughput() -> dict:
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.normal(m, 0.1, 40_000) for m in (0.2, 0.5, 0.3, 0.6, 0.1)])  # (200000,)
    values = xs.tolist()
    ph_cfg = PageHinkleyConfig(delta=0.02, threshold=4.0, alpha=1.0)
    ad_cfg = ADWINConfig()
    PageHinkley(ph_cfg).update_many(xs[:100])
    ADWIN(ad_cfg).update_many(xs[:100])

    def ph_python():
        ref = refs.RefPageHinkley(ph_cfg.min_instances, ph_cfg.delta, ph_cfg.threshold, ph_cfg.alpha, ph_cfg.mode)
        return [i for i, x in enumerate(values) if ref.update(x)]

    def ad_python():
        ref = refs.RefADWIN(ad_cfg.delta, ad_cfg.clock, ad_cfg.max_buckets, ad_cfg.min_window_length, ad_cfg.grace_period, ad_cfg.mode)
        return [i for i, x in enumerate(values) if ref.update(x)]

    assert ph_python() == PageHinkley(ph_cfg).update_many(xs).tolist()
    assert ad_python() == ADWIN(ad_cfg).update_many(xs).tolist()
    n = len(values)
    out = {
        "ph_python_us": median_s(ph_python, 3) / n * 1e6,
        "ph_numba_us": median_s(lambda: PageHinkley(ph_cfg).update_many(xs), 7) / n * 1e6,
        "adwin_python_us": median_s(ad_python, 3) / n * 1e6,
        "adwin_numba_us": median_s(lambda: ADWIN(ad_cfg).update_many(xs), 7) / n * 1e6,
    }
    ph, ad = PageHinkley(ph_cfg), ADWIN(ad_cfg)
    few = values[:20_000]
    out["ph_update_call_us"] = median_s(lambda: [ph.update(x) for x in few], 3) / len(few) * 1e6
    out["adwin_update_call_us"] = median_s(lambda: [ad.update(x) for x in few], 3) / len(few) * 1e6
    return out


def statistics_speed() -> dict:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(512, 1024, 3)).astype(np.uint8)
    np.testing.assert_allclose(frame_statistics(image), stats_refs.reference_statistics(image), rtol=1e-9)
    return {
        "stats_numpy_ms": median_s(lambda: stats_refs.reference_statistics(image), 7) * 1e3,
        "stats_numba_ms": median_s(lambda: frame_statistics(image), 21) * 1e3,
    }


def _fog(image: np.ndarray) -> np.ndarray:
    depth = np.linspace(60.0, 5.0, image.shape[0])[:, None, None]  # (H, 1, 1) metres, far at the top
    t = np.exp(-0.02 * depth)
    return np.clip(image * t + 200.0 * (1.0 - t), 0, 255).astype(np.uint8)


WEATHER = {
    "fog": _fog,
    "night": lambda image: (image * 0.25).astype(np.uint8),
    "darken_0.8": lambda image: (image * 0.8).astype(np.uint8),
}


def input_chain() -> dict | None:
    if not os.path.exists(VIDEO):
        return None
    import cv2

    capture = cv2.VideoCapture(VIDEO)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(cv2.resize(frame, (480, 270))[..., ::-1]))
    capture.release()
    out: dict = {"frames": len(frames)}
    for name, change in [("clean", None)] + list(WEATHER.items()):
        monitor = InputDriftMonitor()
        hits, novelty = [], []
        for i, frame in enumerate(frames):
            monitor.update(change(frame) if change is not None and i >= CHANGE_AT else frame)
            novelty.append(monitor.novelty)
            if monitor.drift_detected:
                hits.append(i)
        if change is None:
            scored = [v for v in novelty if v is not None]
            out["clean_false_alarms"] = len(hits)
            out["clean_novelty_mean"] = float(np.mean(scored))
            out["clean_novelty_max"] = float(np.max(scored))
        else:
            after = [h for h in hits if h >= CHANGE_AT]
            out[f"{name}_false_alarms"] = len([h for h in hits if h < CHANGE_AT])
            out[f"{name}_delay_frames"] = after[0] - CHANGE_AT if after else None
    return out


SIM_SEEDS = (0, 1, 2, 3)
HORIZON = 60  # a detection this many frames after a true shift counts as finding it


def sim_chain() -> dict | None:
    try:
        from sim.world import SimConfig
        from stream.sources.sim import SimSource
    except ImportError:
        return None
    found, total, false_alarms, delays = 0, 0, 0, []
    for seed in SIM_SEEDS:
        source = SimSource(SimConfig(), seed=seed, frames=1200, schedule="tour")
        monitor = InputDriftMonitor()
        hits = []
        for frame in source:
            monitor.update(frame.image)
            if monitor.drift_detected:
                hits.append(frame.index)
        shifts = source.true_shifts
        source.close()
        for shift in shifts:
            after = [h - shift for h in hits if shift <= h < shift + HORIZON]
            total += 1
            if after:
                found += 1
                delays.append(after[0])
        false_alarms += sum(1 for h in hits if not any(s <= h < s + HORIZON for s in shifts))
    return {
        "seeds": len(SIM_SEEDS),
        "shifts": total,
        "found": found,
        "false_alarms": false_alarms,
        "median_delay_frames": float(np.median(delays)) if delays else None,
        "max_delay_frames": int(max(delays)) if delays else None,
    }


def main() -> None:
    speed = detector_throughput()
    stats = statistics_speed()
    chain = input_chain()
    sim = sim_chain()
    print(f"Page-Hinkley: python {speed['ph_python_us']:.3f} us/value, numba update_many {speed['ph_numba_us']:.4f} us/value "
          f"-> {speed['ph_python_us'] / speed['ph_numba_us']:.0f}x; update(x) call {speed['ph_update_call_us']:.2f} us")
    print(f"ADWIN:        python {speed['adwin_python_us']:.3f} us/value, numba update_many {speed['adwin_numba_us']:.4f} us/value "
          f"-> {speed['adwin_python_us'] / speed['adwin_numba_us']:.0f}x; update(x) call {speed['adwin_update_call_us']:.2f} us")
    print(f"frame_statistics 1024x512: numpy {stats['stats_numpy_ms']:.2f} ms, numba {stats['stats_numba_ms']:.2f} ms "
          f"-> {stats['stats_numpy_ms'] / stats['stats_numba_ms']:.1f}x")
    if chain is None:
        print("input chain: ../shared/data absent, skipped")
    else:
        print(f"input chain on {chain['frames']} real frames: clean false alarms {chain['clean_false_alarms']} "
              f"(novelty mean {chain['clean_novelty_mean']:.2f}, max {chain['clean_novelty_max']:.2f})")
        for name in WEATHER:
            print(f"  {name:>10} from frame {CHANGE_AT}: delay {chain[f'{name}_delay_frames']} frames, "
                  f"false alarms before {chain[f'{name}_false_alarms']}")
    if sim is None:
        print("simulator tour: sim not available, skipped")
    else:
        print(f"simulator tour ({sim['seeds']} seeds x 1200 frames): found {sim['found']}/{sim['shifts']} shifts "
              f"within {HORIZON} frames, median delay {sim['median_delay_frames']} (max {sim['max_delay_frames']}) frames, "
              f"false alarms {sim['false_alarms']}")
    result = {k: round(v, 5) if isinstance(v, float) else v for k, v in {**speed, **stats}.items()}
    result["ph_speedup"] = round(speed["ph_python_us"] / speed["ph_numba_us"], 1)
    result["adwin_speedup"] = round(speed["adwin_python_us"] / speed["adwin_numba_us"], 1)
    result["stats_speedup"] = round(stats["stats_numpy_ms"] / stats["stats_numba_ms"], 2)
    result["input_chain"] = None if chain is None else {k: round(v, 4) if isinstance(v, float) else v for k, v in chain.items()}
    result["sim_tour"] = sim
    print(json.dumps(result))


if __name__ == "__main__":
    main()
