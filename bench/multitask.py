"""Benchmark: multi-task distillation. What does learning depth beside segmentation do to the
online student's segmentation, and how good is the depth it learns?

Two online runs on the same stream (the default tour, ``--frames`` frames, on the held-out
world ``sim.seeds.MULTITASK_BENCH``), from the same shipped starting student and with the same
teacher (the sim teacher with its depth head, ``perception/weights/sim_teacher_depth.safetensors``):

- ``seg``: segmentation only (the default learner, ``distill.depth_weight=0``): the baseline;
- ``seg_depth``: segmentation + depth: the student gets a fresh depth head and the
  distillation loss gains ``--depth-weight`` x log-depth L1 against the teacher's depth,
  which travels with every labelled frame into the replay buffer.

Printed and in the JSON, for each: the student's prequential mIoU against the sim's ground truth
(overall and per domain), and the difference ``seg_depth - seg`` ("what depth does to
segmentation") with the ratio; for ``seg_depth``: the student's depth AbsRel against the sim's
depth (every frame; overall and per domain), the teacher's depth AbsRel on the frames it labelled,
and the student's on those same frames (with the ratio student / teacher). AbsRel counts ground
truth in ``(0, evaluator.depth_max]`` metres (80 by default; the sim's sky reads 1000 m).
The robustness probe (``evaluator.robust_every``) is off in both runs: it is not what is measured.

    .venv/bin/python bench/multitask.py [--frames 1800] [--depth-weight 0.5] [--out runs/bench-multitask]
                                        [--set SECTION.KEY=VALUE ...]

The last line is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.seeds import MULTITASK_BENCH, training_use  # noqa: E402
from stream.config import load_config  # noqa: E402

log = logging.getLogger("bench.multitask")

DEPTH_KEYS = ("student_depth_abs_rel", "teacher_depth_abs_rel_on_teacher_frames", "student_depth_abs_rel_on_teacher_frames")


def finished_summary(config: Any) -> dict[str, Any] | None:
    """A finished run's summary in the run folder, if its settings (but its folder) are these
    (``--reuse``)."""
    folder = Path(config.run.out)
    summary, written = folder / "summary.json", folder / "config.json"
    if not summary.is_file() or not written.is_file():
        return None
    saved, wanted = json.loads(written.read_text()), json.loads(config.to_json())
    for settings in (saved, wanted):
        settings["run"].pop("out", None)  # a finished run may have been moved into this folder
    if saved != wanted:
        return None
    data = json.loads(summary.read_text())
    return None if data.get("interrupted") else data


def run_one(name: str, overrides: list[str], reuse: bool = False) -> dict[str, Any]:
    """One online run (or, with ``reuse``, its finished summary with the same settings); its
    segmentation and (where it has them) depth figures."""
    from stream.local import run_local

    config = load_config(None, overrides)
    started = time.perf_counter()
    summary = finished_summary(config) if reuse else None
    if summary is None:
        summary = run_local(config, progress=False)
        wall = time.perf_counter() - started
    else:
        wall = float(summary["wall_s"])
        print(f"{name}: read back the finished run in {config.run.out}", flush=True)
    row: dict[str, Any] = {
        "student_miou": summary["student_miou"], "teacher_miou": summary.get("teacher_miou"),
        "teacher_rate": summary["teacher_rate"], "teacher_calls": summary["teacher_calls"],
        "frames": summary["frames"], "wall_s": round(wall, 1),
        "per_domain_miou": {d: s["student_miou"] for d, s in summary["per_domain"].items()},
    }
    if summary.get("student_depth_abs_rel") is not None:
        row.update({key: summary.get(key) for key in DEPTH_KEYS})
        row["depth_frames"] = summary.get("depth_frames")
        row["per_domain_depth_abs_rel"] = {d: {key: s.get(key) for key in DEPTH_KEYS}
                                           for d, s in summary["per_domain"].items()}
    print(f"{name}: {row['frames']} frames in {wall:.0f} s; student mIoU {row['student_miou']:.4f}, "
          f"teacher rate {row['teacher_rate']:.3f}", flush=True)
    return row


def compare(seg: dict[str, Any], both: dict[str, Any]) -> dict[str, Any]:
    """The difference depth makes to segmentation, overall and per domain (seg_depth - seg)."""
    delta = {d: both["per_domain_miou"][d] - seg["per_domain_miou"][d]
             for d in seg["per_domain_miou"] if d in both["per_domain_miou"]
             and None not in (seg["per_domain_miou"][d], both["per_domain_miou"][d])}
    out = {"miou_delta": both["student_miou"] - seg["student_miou"],
           "miou_ratio": both["student_miou"] / seg["student_miou"] if seg["student_miou"] else None,
           "per_domain_miou_delta": delta}
    teacher = both.get("teacher_depth_abs_rel_on_teacher_frames")
    student = both.get("student_depth_abs_rel_on_teacher_frames")
    out["depth_abs_rel_ratio_student_to_teacher"] = student / teacher if teacher and student is not None else None
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1800, help="frames of the tour")
    parser.add_argument("--depth-weight", type=float, default=0.5, help="distill.depth_weight of the seg_depth run")
    parser.add_argument("--seed", type=int, default=MULTITASK_BENCH[0], help="the stream's world")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override for both runs")
    parser.add_argument("--out", default="runs/bench-multitask")
    parser.add_argument("--runs", default="seg,seg_depth", help="which runs to make (both are needed for the comparison)")
    parser.add_argument("--reuse", action="store_true", help="read back a finished run with the same settings")
    args = parser.parse_args(argv)
    runs = {r.strip() for r in args.runs.split(",") if r.strip()}
    if not runs or runs - {"seg", "seg_depth"}:
        parser.error(f"--runs: choose from seg, seg_depth, got {args.runs!r}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.depth_weight <= 0:
        parser.error(f"--depth-weight must be > 0, got {args.depth_weight}")
    if training_use(args.seed) is not None:
        print(f"WARNING: world {args.seed} is in {training_use(args.seed)} (sim.seeds): not held out", flush=True)
    base = [f"run.seed={args.seed}", f"run.frames={args.frames}", "run.source=sim:tour", "evaluator.robust_every=0",
            *args.set]
    overrides = {"seg": base + [f"run.out={Path(args.out) / 'seg'}"],
                 "seg_depth": base + [f"distill.depth_weight={args.depth_weight}", f"run.out={Path(args.out) / 'seg_depth'}"]}
    rows = {name: run_one(name, overrides[name], args.reuse) for name in ("seg", "seg_depth") if name in runs}
    if len(rows) < 2:  # one half of the comparison (e.g. two processes side by side); --reuse joins them
        print(json.dumps({"settings": {"frames": args.frames, "seed": args.seed, "depth_weight": args.depth_weight}, **rows}))
        return rows
    seg, both = rows["seg"], rows["seg_depth"]
    if both.get("student_depth_abs_rel") is None:
        raise RuntimeError("the seg_depth run scored no depth: does the teacher have its depth head "
                           "(perception/weights/sim_teacher_depth.safetensors, odistill train-teacher-depth)?")
    versus = compare(seg, both)
    print(f"segmentation mIoU: seg {seg['student_miou']:.4f}, seg_depth {both['student_miou']:.4f} "
          f"({100 * versus['miou_delta']:+.2f} points, ratio {versus['miou_ratio']:.3f})")
    for domain, delta in versus["per_domain_miou_delta"].items():
        depth = both["per_domain_depth_abs_rel"].get(domain, {})
        print(f"  {domain:>14}: mIoU {seg['per_domain_miou'][domain]:.4f} -> {both['per_domain_miou'][domain]:.4f} "
              f"({100 * delta:+.2f}); depth AbsRel student {_fmt(depth.get('student_depth_abs_rel'))}, "
              f"teacher {_fmt(depth.get('teacher_depth_abs_rel_on_teacher_frames'))}")
    print(f"depth AbsRel: student {_fmt(both['student_depth_abs_rel'])} (every frame); on the teacher's frames student "
          f"{_fmt(both['student_depth_abs_rel_on_teacher_frames'])}, teacher "
          f"{_fmt(both['teacher_depth_abs_rel_on_teacher_frames'])} "
          f"(ratio {_fmt(versus['depth_abs_rel_ratio_student_to_teacher'])})")
    result = {"settings": {"frames": args.frames, "seed": args.seed, "depth_weight": args.depth_weight, "set": args.set,
                           "source": "sim:tour"},
              "seg": seg, "seg_depth": both, **versus}
    print(json.dumps(result))
    return result


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
