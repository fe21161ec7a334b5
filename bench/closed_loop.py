"""Closed loop: how well the lane keeper drives on each perception, on held-out worlds.

    .venv/bin/python bench/closed_loop.py [--frames 300] [--towns oldtown,newtown] [--set KEY=VALUE ...]

On each town of the CLOSED_LOOP_BENCH worlds (sim.seeds), the same lane keeper
(``sim/control.py``) steers the ego from:

- ``ground_truth``: the simulator's own segmentation (the controller's ceiling: what it does
  with perfect perception; the baseline the students are compared with);
- ``student_online``: the shipped student, learning online (the default run settings);
- ``student_frozen``: the shipped student, never learning;
- ``random_frozen``: a student of random weights that never learns (what a broken student does).

For each: lane departures, seconds off the road, seconds out of the lane, the smallest gap to
another car, the fraction of blind frames, and the student's mIoU. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.control import LaneKeeperConfig  # noqa: E402
from sim.seeds import CLOSED_LOOP_BENCH  # noqa: E402
from stream.config import load_config  # noqa: E402

log = logging.getLogger("bench.closed_loop")
DRIVERS = {"student_online": [], "student_frozen": ["learner.frozen=true"],
           "random_frozen": ["learner.frozen=true", "student.weights=none"]}


def ground_truth_drive(config: Any, seed: int, frames: int, schedule: str) -> dict[str, Any]:
    """Steer by the simulator's own segmentation (no pipeline: perfect perception)."""
    from stream.sources.sim import SimSource

    source = SimSource(config.sim, seed=seed, frames=frames, schedule=schedule, closed_loop=LaneKeeperConfig())
    for frame in source:
        source.steer(frame.index, frame.label)
    driving = source.stats()["driving"]
    source.close()
    return {**driving, "student_miou": None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--towns", default="oldtown,newtown")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from stream.local import run_local

    out = Path(tempfile.mkdtemp(prefix="odistill-closed-loop-"))
    rows: list[dict[str, Any]] = []
    for seed in CLOSED_LOOP_BENCH:
        for town in args.towns.split(","):
            schedule = f"clear@{town}"
            base = [f"run.frames={args.frames}", f"run.seed={seed}", f"run.source=sim:{schedule}", "run.closed_loop=true",
                    "run.torch_threads=1", "evaluator.robust_every=0", *args.set]
            config = load_config(None, [*base, f"run.out={out}/gt"])
            rows.append({"driver": "ground_truth", "town": town, "seed": seed,
                         **ground_truth_drive(config, seed, args.frames, schedule)})
            for driver, settings in DRIVERS.items():
                config = load_config(None, [*base, *settings, f"run.out={out}/{driver}-{town}-{seed}"])
                summary = run_local(config, progress=False)
                rows.append({"driver": driver, "town": town, "seed": seed, **summary["driving"],
                             "student_miou": summary["student_miou"]})
            for row in rows[-4:]:
                log.info("%s %s seed %d: %d departures, %.1f s off road, blind %d/%d", row["driver"], town, seed,
                         row["lane_departures"], row["seconds_off_road"], row["blind_frames"], row["steered_frames"])
    print(f"{'driver':<16}{'town':<9}{'seed':>7}{'departures':>11}{'off road s':>11}{'out of lane s':>14}"
          f"{'min gap m':>10}{'blind':>7}{'mIoU':>7}")
    for r in rows:
        gap = "-" if r["min_car_clearance_m"] is None else f"{r['min_car_clearance_m']:.2f}"
        miou = "-" if r["student_miou"] is None else f"{r['student_miou']:.3f}"
        print(f"{r['driver']:<16}{r['town']:<9}{r['seed']:>7}{r['lane_departures']:>11}{r['seconds_off_road']:>11.1f}"
              f"{r['seconds_out_of_lane']:>14.1f}{gap:>10}{r['blind_frames'] / max(1, r['steered_frames']):>7.2f}{miou:>7}")
    totals = {}
    for driver in ("ground_truth", *DRIVERS):
        mine = [r for r in rows if r["driver"] == driver]
        totals[driver] = {"lane_departures": sum(r["lane_departures"] for r in mine),
                          "seconds_off_road": round(sum(r["seconds_off_road"] for r in mine), 3),
                          "seconds_out_of_lane": round(sum(r["seconds_out_of_lane"] for r in mine), 3),
                          "blind_fraction": sum(r["blind_frames"] for r in mine) / max(1, sum(r["steered_frames"] for r in mine))}
        print(f"{driver:<16} all: {totals[driver]['lane_departures']} departures, {totals[driver]['seconds_off_road']:.1f} s "
              f"off road, {totals[driver]['seconds_out_of_lane']:.1f} s out of lane, blind {totals[driver]['blind_fraction']:.2f}")
    print(json.dumps({"frames": args.frames, "seeds": list(CLOSED_LOOP_BENCH), "towns": args.towns.split(","),
                      "totals": totals, "rows": rows}, default=float))


if __name__ == "__main__":
    main()
