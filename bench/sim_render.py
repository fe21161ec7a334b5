"""Benchmark: frames per second of the built-in simulator on ONE core, every domain.

For each weather x town it ticks a world with the three cameras of a frame attached (rgb,
semantic segmentation, depth: one render per tick) and times ``world.tick()`` plus reading
the three arrays. It reports the median frames/s per domain and overall against the 200
frames/s target (the baseline figure, same run), the ratio, and the class pixel frequency
per domain. ``--save DIR`` writes a contact sheet per domain (image | label colours |
depth) as PNG.

Run:  .venv/bin/python bench/sim_render.py [--frames 200] [--save runs/sim_sheets]
The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.labels import CLASS_NAMES, NUM_CLASSES, colorize  # noqa: E402
from sim.seeds import RENDER_BENCH  # noqa: E402
from sim.towns import TOWN_NAMES  # noqa: E402
from sim.weather import WEATHER_NAMES  # noqa: E402
from sim.world import SimConfig, World  # noqa: E402

TARGET_FPS = 200.0
SENSORS = ("sensor.camera.rgb", "sensor.camera.semantic_segmentation", "sensor.camera.depth")


def depth_colours(depth: np.ndarray) -> np.ndarray:
    """Log-scaled depth as a colour image. Shape: (H, W) float32 -> (H, W, 3) uint8 RGB."""
    import cv2

    d = np.clip(np.log1p(depth) / np.log1p(1000.0) * 255.0, 0, 255).astype(np.uint8)  # (H, W)
    return cv2.applyColorMap(d, cv2.COLORMAP_MAGMA)[..., ::-1]


def run_domain(weather: str, town: str, frames: int, warmup: int, seed: int, width: int, height: int,
               keep: int) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, ...]]]:
    """Tick ``frames`` frames; returns per-frame seconds, class pixel counts, kept samples."""
    world = World(SimConfig(width=width, height=height, town=town, weather=weather), seed=seed)
    got: dict[str, np.ndarray] = {}
    library = world.get_blueprint_library()
    for bp_id in SENSORS:
        cam = world.spawn_actor(library.find(bp_id), attach_to=world.ego)
        cam.listen(lambda image, key=bp_id: got.__setitem__(key, image.array))
    for _ in range(warmup):
        world.tick()
    seconds = np.empty(frames)
    counts = np.zeros(256, np.int64)
    samples = []
    every = max(1, frames // max(keep, 1))
    for i in range(frames):
        t0 = time.perf_counter()
        world.tick()
        rgb, label, depth = got[SENSORS[0]], got[SENSORS[1]], got[SENSORS[2]]
        seconds[i] = time.perf_counter() - t0
        counts += np.bincount(label.ravel(), minlength=256)
        if keep and i % every == 0 and len(samples) < keep:
            samples.append((rgb, label, depth))
    return seconds, counts, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="timed frames per domain")
    parser.add_argument("--warmup", type=int, default=10, help="untimed frames per domain first")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--seed", type=int, default=RENDER_BENCH[0], help="world seed (default: sim.seeds.RENDER_BENCH)")
    parser.add_argument("--save", type=Path, default=None, help="folder for contact-sheet PNGs")
    parser.add_argument("--sheet-rows", type=int, default=4, help="frames per contact sheet")
    args = parser.parse_args()
    if args.frames <= 0 or args.width <= 0 or args.height <= 0:
        parser.error("--frames, --width and --height must be positive")
    try:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        pinned = f"pinned to cpu {cpu}"
    except (AttributeError, OSError):
        pinned = "not pinned"

    t0 = time.perf_counter()
    World(SimConfig(width=args.width, height=args.height), seed=args.seed).render()  # numba load/compile
    print(f"kernel load/compile: {time.perf_counter() - t0:.2f} s ({pinned}, NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']})")

    per_domain: dict[str, float] = {}
    class_freq: dict[str, dict[str, float]] = {}
    all_seconds = []
    keep = args.sheet_rows if args.save else 0
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    print(f"{'domain':<18} {'fps':>8} {'ms/frame':>9}   class pixel share (%)")
    for town in TOWN_NAMES[::-1]:
        for weather in WEATHER_NAMES:
            domain = f"{weather}@{town}"
            seconds, counts, samples = run_domain(weather, town, args.frames, args.warmup, args.seed, args.width,
                                                  args.height, keep)
            med = float(np.median(seconds))
            per_domain[domain] = round(1.0 / med, 1)
            all_seconds.append(seconds)
            share = counts[:NUM_CLASSES] / max(1, counts.sum())
            class_freq[domain] = {CLASS_NAMES[k]: round(100.0 * float(share[k]), 2) for k in range(NUM_CLASSES) if share[k] > 0}
            top = ", ".join(f"{k} {v:.1f}" for k, v in sorted(class_freq[domain].items(), key=lambda kv: -kv[1]))
            print(f"{domain:<18} {1.0 / med:8.1f} {1000 * med:9.2f}   {top}")
            if args.save and samples:
                import cv2

                rows = [np.concatenate([rgb, colorize(label), depth_colours(depth)], axis=1) for rgb, label, depth in samples]
                sheet = np.concatenate(rows, axis=0)  # (rows H, 3 W, 3)
                cv2.imwrite(str(args.save / f"{domain.replace('@', '_')}.png"), sheet[..., ::-1])
    overall = 1.0 / float(np.median(np.concatenate(all_seconds)))
    ratio = overall / TARGET_FPS
    print(f"baseline (target): {TARGET_FPS:.0f} frames/s; ours (median, all domains): {overall:.1f} frames/s; "
          f"ratio {ratio:.2f} ({'meets' if ratio >= 1.0 else 'MISSES'} the target)")
    if args.save:
        print(f"contact sheets written to {args.save}")
    print(json.dumps({
        "fps_median": round(overall, 1), "target_fps": TARGET_FPS, "ratio": round(ratio, 3),
        "width": args.width, "height": args.height, "frames_per_domain": args.frames,
        "per_domain": per_domain, "class_freq": class_freq,
    }))


if __name__ == "__main__":
    main()
