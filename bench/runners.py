"""Ray runner vs in-process runner on the same config: frames/s of each and the ratio.

    .venv/bin/python bench/runners.py [--frames 3600] [--repeats 1]

Target (issue 2): the Ray runner's fps at least 0.9 x the in-process runner's. The Ray figure
includes actor start-up but not ``ray.init`` (measured and printed separately). Last line: one
JSON object with the figures. ``same_metrics``: both runners gave the same student mIoU and
the same number of teacher calls (they split torch threads alike, ``run.inference_threads()``
and ``run.train_threads()``, so they compute the same thing and do the same work).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.config import load_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=3600)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="odistill-bench-"))
    import ray

    from stream.actors import run_ray
    from stream.local import run_local

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    ray_init_s = time.perf_counter() - t0
    local_fps, ray_fps, summaries = [], [], {}
    for repeat in range(args.repeats):
        for runner in ("local", "ray"):
            cfg = load_config(None, [f"run.frames={args.frames}", f"run.runner={runner}", f"run.out={out}/{runner}{repeat}"] + args.set)
            summary = run_ray(cfg, progress=False) if runner == "ray" else run_local(cfg, progress=False)
            (ray_fps if runner == "ray" else local_fps).append(summary["fps"])
            summaries[runner] = summary
            print(f"{runner:>5}: {summary['fps']:.1f} frames/s over {summary['frames']} frames "
                  f"(student mIoU {summary['student_miou']:.3f}, peak RSS {summary['peak_rss_mb']:.0f} MB)", flush=True)
    ray.shutdown()
    lf, rf = statistics.median(local_fps), statistics.median(ray_fps)
    pair_ratios = [r / l for l, r in zip(local_fps, ray_fps)]  # each from a back-to-back pair
    same = all(summaries["local"][key] == summaries["ray"][key] for key in ("student_miou", "teacher_calls"))
    print(f"in-process (baseline) {lf:.1f} fps · ray {rf:.1f} fps · ratio {rf / lf:.2f} (target >= 0.9) · ray.init {ray_init_s:.1f} s")
    print(f"same student mIoU and teacher calls in both runners: {same}")
    print(json.dumps({"frames": args.frames, "local_fps": lf, "ray_fps": rf, "ratio": rf / lf, "target_ratio": 0.9,
                      "pair_ratios": pair_ratios, "median_pair_ratio": statistics.median(pair_ratios),
                      "ray_init_s": ray_init_s, "same_metrics": same,
                      "local_peak_rss_mb": summaries["local"]["peak_rss_mb"], "ray_peak_rss_mb": summaries["ray"]["peak_rss_mb"]}))


if __name__ == "__main__":
    main()
