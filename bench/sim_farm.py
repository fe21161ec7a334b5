"""The scenario farm: a suite's wall time run one scenario after another (1 core) and as Ray
tasks on every core, and whether both give the same figures.

    .venv/bin/python bench/sim_farm.py [--scenarios scenarios/] [--short] [--cores N] [--set KEY=VALUE ...]

Baseline: the sequential suite (the in-process pipeline, one scenario at a time). Ours: the
same scenarios as Ray tasks, one CPU each, on a Ray instance of ``--cores`` CPUs (default:
every usable core); ``ray.init`` is timed apart. Every run pins one torch thread (sim-test's
default), so ``identical`` says whether each scenario's measured figures match exactly. Last
line: one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.machine import usable_cores  # noqa: E402
from stream.simtest import load_suite, run_suite  # noqa: E402

log = logging.getLogger("bench.sim_farm")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", nargs="+", default=[str(Path(__file__).resolve().parents[1] / "scenarios")])
    parser.add_argument("--short", action="store_true", help="only the short scenarios")
    parser.add_argument("--cores", type=int, default=0, help="Ray CPUs (0 = every usable core)")
    parser.add_argument("--set", action="append", default=[], help="a run setting for every scenario")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    scenarios, errors = load_suite(args.scenarios)
    if errors:
        raise SystemExit("scenario files that do not load:\n" + "\n".join(r.error or "" for r in errors))
    if args.short:
        scenarios = [s for s in scenarios if s.short]
    cores = args.cores or usable_cores()
    out = Path(tempfile.mkdtemp(prefix="odistill-farm-"))
    log.info("%d scenarios; sequential first, then Ray on %d cores", len(scenarios), cores)
    started = time.perf_counter()
    sequential = run_suite(scenarios, out / "sequential", runner="local", overrides=args.set)
    sequential_s = time.perf_counter() - started
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, configure_logging=False, log_to_driver=False)
    ray_init_s = time.perf_counter() - started
    started = time.perf_counter()
    farmed = run_suite(scenarios, out / "ray", runner="ray", overrides=args.set)
    ray_s = time.perf_counter() - started
    ray.shutdown()
    identical = [a.measured == b.measured and a.status == b.status for a, b in zip(sequential, farmed)]
    for a, b, same in zip(sequential, farmed, identical):
        print(f"{a.name:<28} {a.status:>7} {a.wall_s:7.1f} s sequential · {b.wall_s:7.1f} s in its Ray task · same figures: {same}")
    print(f"suite of {len(scenarios)}: sequential (baseline, 1 core) {sequential_s:.0f} s · Ray on {cores} cores "
          f"{ray_s:.0f} s (+ ray.init {ray_init_s:.1f} s) · speed-up {sequential_s / ray_s:.2f}x · identical: {all(identical)}")
    print(json.dumps({"scenarios": len(scenarios), "cores": cores, "sequential_s": sequential_s, "ray_s": ray_s,
                      "ray_init_s": ray_init_s, "speedup": sequential_s / ray_s, "identical": all(identical),
                      "passed": sum(r.passed for r in farmed)}))


if __name__ == "__main__":
    main()
