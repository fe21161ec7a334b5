"""Benchmark: the default run re-measured on held-out worlds (``sim.seeds.TOUR_BENCH``).

Each world runs the full default config (:func:`stream.config.load_config` with no file) with
only ``run.seed``, ``run.frames``, ``run.out`` and ``run.runner`` set: the default ``sim:tour``
(clear -> fog -> night in oldtown, rain -> snow -> clear in newtown), 3600 frames, the shipped
teacher and student, the shipped scheduler and drift settings. The worlds are none that a
model or a threshold was fitted on, and not the default run's own world (:mod:`sim.seeds`).

Per world it prints the run summary's figures; then their medians over the worlds and the
targets of the project:

- the student reaches >= 0.85 of the teacher's mIoU (on the frames the teacher labelled) at a
  teacher rate <= 0.15;
- every domain shift is caught within 60 frames (``stream.driver.DRIFT_TOLERANCE``);
- at most 1 false drift detection per 3000 frames.

Each target is judged on the medians and counted per world.

    .venv/bin/python bench/tour.py [--frames 3600] [--seeds 100101,100102,100103]
                                   [--out runs/bench-tour] [--runner local|ray]

The last line is one JSON object: ``seeds``, the medians (``student_teacher_ratio``,
``teacher_rate``, ``drift_max_delay``, ``false_per_3000``, ...), ``targets`` and ``per_seed``.
A full run takes about 4 minutes of CPU per world.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.seeds import TOUR_BENCH, training_use  # noqa: E402

RATIO_TARGET = 0.85  # student / teacher mIoU on the teacher's frames, at least
RATE_TARGET = 0.15  # teacher calls per frame, at most
FALSE_TARGET = 1.0  # false drift detections per 3000 frames, at most


def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` -> [1, 2, 3]."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds: expected comma-separated world seeds, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds: give at least one world seed")
    return seeds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3600, help="frames per run (default 3600, the default run's)")
    parser.add_argument("--seeds", type=parse_seeds, default=list(TOUR_BENCH),
                        help="comma-separated world seeds (default sim.seeds.TOUR_BENCH: "
                             + ",".join(map(str, TOUR_BENCH)) + ")")
    parser.add_argument("--out", default="runs/bench-tour", help="parent of the run folders (one per world: seed-S)")
    parser.add_argument("--runner", choices=["local", "ray"], default="local")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error(f"--frames must be >= 1, got {args.frames}")
    return args


def seed_figures(seed: int, summary: dict[str, Any]) -> dict[str, Any]:
    """One world's figures from its run summary."""
    drift = summary["drift"]
    delays = list(drift["delays"].values())
    frames = summary["frames"]
    return {
        "seed": seed,
        "student_teacher_ratio": summary["student_teacher_ratio"],
        "student_miou": summary["student_miou"],
        "student_miou_on_teacher_frames": summary["student_miou_on_teacher_frames"],
        "teacher_miou_on_teacher_frames": summary["teacher_miou_on_teacher_frames"],
        "teacher_rate": summary["teacher_rate"],
        "teacher_calls": summary["teacher_calls"],
        "true_shifts": summary["true_shifts"],
        "drift_detected": drift["detected"],
        "drift_missed": drift["missed"],
        "drift_max_delay": max(delays) if delays else None,
        "drift_false_events": drift["false_events"],
        "false_per_3000": drift["false_events"] * 3000 / max(1, frames),
        "frames": frames,
        "wall_s": summary["wall_s"],
        "fps": summary["fps"],
    }


def median(values: list[float | None]) -> float | None:
    """The median of the values that exist (None when none does)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def targets(per_seed: list[dict[str, Any]], medians: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target judged on the medians, and the number of worlds where it holds."""

    def quality(row: dict[str, Any]) -> bool:
        return (row["student_teacher_ratio"] is not None and row["student_teacher_ratio"] >= RATIO_TARGET
                and row["teacher_rate"] <= RATE_TARGET)

    def shifts(row: dict[str, Any]) -> bool:
        return not row["drift_missed"]  # a caught shift was caught within the tolerance

    def false(row: dict[str, Any]) -> bool:
        return row["false_per_3000"] <= FALSE_TARGET

    return {
        "student_teacher_ratio": {
            "target": f">= {RATIO_TARGET} at teacher rate <= {RATE_TARGET}",
            "holds": quality(medians), "worlds_holding": sum(map(quality, per_seed))},
        "shifts_caught": {
            "target": "every shift caught within 60 frames",
            "holds": medians["drift_missed"] == 0 and (medians["drift_max_delay"] or 0) <= 60,
            "worlds_holding": sum(map(shifts, per_seed))},
        "false_detections": {
            "target": f"<= {FALSE_TARGET:g} false detection per 3000 frames",
            "holds": medians["false_per_3000"] <= FALSE_TARGET, "worlds_holding": sum(map(false, per_seed))},
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from stream.config import load_config

    per_seed = []
    for seed in args.seeds:
        fitted = training_use(seed)
        if fitted is not None:
            print(f"WARNING: world {seed} is in {fitted} (sim.seeds): its figures are not held out", flush=True)
        config = load_config(None, [f"run.seed={seed}", f"run.frames={args.frames}", f"run.out={Path(args.out) / f'seed-{seed}'}",
                                    f"run.runner={args.runner}"])
        if args.runner == "ray":
            from stream.actors import run_ray

            summary = run_ray(config, progress=False)
        else:
            from stream.local import run_local

            summary = run_local(config, progress=False)
        row = seed_figures(seed, summary)
        row["fitted"] = fitted
        per_seed.append(row)
        print(f"world {seed}: student/teacher {_fmt(row['student_teacher_ratio'])} "
              f"(student {_fmt(row['student_miou_on_teacher_frames'])} / teacher {_fmt(row['teacher_miou_on_teacher_frames'])} "
              f"on the teacher's frames; student {_fmt(row['student_miou'])} on all), teacher rate {row['teacher_rate']:.3f} "
              f"({row['teacher_calls']} calls); drift {row['drift_detected']}/{len(row['true_shifts'])} shifts caught, "
              f"missed {row['drift_missed']}, max delay {row['drift_max_delay']}, false {row['drift_false_events']} "
              f"({row['false_per_3000']:.2f} per 3000 frames); {row['frames']} frames in {row['wall_s']:.0f} s "
              f"({row['fps']:.1f} fps)", flush=True)
    keys = ("student_teacher_ratio", "student_miou", "student_miou_on_teacher_frames", "teacher_miou_on_teacher_frames",
            "teacher_rate", "drift_max_delay", "false_per_3000", "fps", "wall_s")
    medians: dict[str, Any] = {key: median([row[key] for row in per_seed]) for key in keys}
    medians["teacher_calls"] = median([row["teacher_calls"] for row in per_seed])
    medians["drift_missed"] = median([len(row["drift_missed"]) for row in per_seed])
    judged = targets(per_seed, medians)
    print(f"medians over {len(per_seed)} world(s) {args.seeds}: student/teacher {_fmt(medians['student_teacher_ratio'])}, "
          f"teacher rate {_fmt(medians['teacher_rate'])}, drift max delay {medians['drift_max_delay']}, "
          f"false per 3000 frames {_fmt(medians['false_per_3000'], 2)}")
    for name, verdict in judged.items():
        print(f"  target {name} ({verdict['target']}): {'holds' if verdict['holds'] else 'does NOT hold'} on the medians; "
              f"holds on {verdict['worlds_holding']}/{len(per_seed)} world(s)")
    print(json.dumps({"seeds": args.seeds, "frames": args.frames, "runner": args.runner, **medians,
                      "targets": judged, "per_seed": per_seed}))


if __name__ == "__main__":
    main()
