"""Benchmark: does the online student forget a domain before the stream comes back to it?

The stream is the default tour twice over (clear -> fog -> night in oldtown, rain -> snow ->
clear in newtown, then all six again), ``--segment`` frames per domain, on a held-out world
(``sim.seeds.FORGETTING_BENCH``), with the shipped teacher and student. The learner writes a
checkpoint at the end of every segment. Each domain gets a fixed probe set: ``--probe`` frames
of that domain alone, rendered from another held-out world, with the simulator's ground truth.
Every checkpoint's predictor (the EMA weights where the run keeps them) is scored on every
probe set, so for each domain:

- ``first``: its probe mIoU at the end of its first visit;
- ``before_return``: at the end of the segment before the stream returns to it (five other
  domains later);
- ``forgetting`` = ``first - before_return`` (points of mIoU lost while away).

The stream's own figure is printed beside it: the prequential mIoU of the first
``--window`` frames of the return against the last ``--window`` frames of the first visit (it
mixes forgetting with how hard those particular frames are, so the probe figure is the one
judged).

Three learners, the same stream and teacher budget otherwise:

- ``replay``: the default learner (replay of earlier domains' teacher labels);
- ``no_replay``: every step trains on the newest labelled frame alone (``online.batch_size=1``);
- ``ema``: the default learner predicting with an exponential moving average of its weights
  (``online.ema``);
- ``frame_bn``: the default learner normalising each frame by its own statistics when it
  predicts (``online.predict_bn=frame``), so batch norm's running statistics, which follow the
  newest domain, play no part in what it predicts.
- ``experts`` / ``experts_no_replay``: the default learner (with replay / without) keeping a
  bank of domain experts (``experts.enabled``, :mod:`learners.experts`): the student is banked
  at every drift with its regime's input statistics and restored when they come back; each
  frame is predicted by the nearest expert. A checkpoint's predictor is then the whole bank
  (:class:`learners.experts.ExpertRouter`): every probe frame goes to the expert its own
  statistics are nearest, as a frame of the stream would.

Target (issue 12): on every returning domain, for each learner, ``forgetting`` at most 1 point.

    .venv/bin/python bench/forgetting.py [--segment 300] [--probe 16] [--learners replay,no_replay,ema]
                                         [--ema 0.99] [--out runs/bench-forgetting]

The last line is one JSON object: per learner the per-domain ``first``, ``before_return``,
``forgetting`` and ``stream_*`` figures, ``max_forgetting``, and ``targets``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.schedule import SCHEDULES  # noqa: E402
from sim.seeds import FORGETTING_BENCH, FORGETTING_PROBES, training_use  # noqa: E402
from stream.config import RunConfig, load_config  # noqa: E402

FORGETTING_TARGET = 0.01  # mIoU lost on a domain while the stream was away, at most
LEARNERS = {
    "replay": [],
    "no_replay": ["online.batch_size=1"],
    "ema": [],  # online.ema is added from --ema
    "frame_bn": ["online.predict_bn=frame"],
    "experts": ["experts.enabled=true"],
    "experts_no_replay": ["experts.enabled=true", "online.batch_size=1"],
}

log = logging.getLogger("bench.forgetting")


def twice_over() -> list[str]:
    """The tour's domains, then the same six again."""
    domains = [f"{weather}@{town}" for weather, town in SCHEDULES["tour"]]
    return domains + domains


def probe_sets(config: RunConfig, domains: list[str], frames: int, seed: int) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per domain, ``frames`` (image, ground truth) pairs of that domain alone from world ``seed``,
    one every 10 frames of its route."""
    from stream.sources.sim import SimSource

    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for domain in sorted(set(domains)):
        source = SimSource(config.sim, seed=seed, frames=frames * 10, schedule=domain)
        out[domain] = [(f.image, f.label) for f in source if f.index % 10 == 5 and f.label is not None]
        source.close()
    return out


def checkpoint_students(config: RunConfig) -> dict[int, torch.nn.Module]:
    """Every checkpoint's predictor (:func:`stream.builders.student_from_checkpoint`), by the frame
    count it was written at."""
    from stream.builders import student_from_checkpoint

    return {int(path.stem.split("_")[1]): student_from_checkpoint(config, path)
            for path in sorted((Path(config.run.out) / "checkpoints").glob("learner_*.safetensors"))}


def probe_miou(model: torch.nn.Module, frames: list[tuple[np.ndarray, np.ndarray]], num_classes: int) -> float:
    """The student's mIoU against the ground truth over one probe set."""
    from perception.argmax import net_labels
    from perception.evaluator import confusion_update
    from perception.metrics import mean_iou
    from perception.teachers.common import images_to_tensor

    matrix = np.zeros((num_classes, num_classes + 1), np.int64)
    with torch.no_grad():
        for image, truth in frames:
            confusion_update(matrix, truth, net_labels(model, images_to_tensor(image[None])), 255)
    return float(mean_iou(matrix))


def window_miou(windows: list[dict[str, Any]], start: int, end: int) -> float | None:
    """The prequential student mIoU over the run's metrics windows (``metrics.jsonl`` rows) inside frames [start, end)."""
    values = [row["student_miou"] for row in windows if "student_miou" in row and start < row["end_frame"] <= end]
    return float(np.mean(values)) if values else None


def measure(name: str, config: RunConfig, domains: list[str], segment: int, probes: dict[str, Any],
            window: int) -> dict[str, Any]:
    """One learner's run and its per-domain forgetting."""
    from stream.local import run_local

    started = time.perf_counter()
    summary = run_local(config, progress=False)
    print(f"{name}: {summary['frames']} frames in {time.perf_counter() - started:.0f} s; stream mIoU "
          f"{summary['student_miou']:.4f}, teacher rate {summary['teacher_rate']:.3f}", flush=True)
    students = checkpoint_students(config)
    half = len(domains) // 2
    windows = [json.loads(line) for line in (Path(config.run.out) / "metrics.jsonl").read_text().splitlines()]
    per_domain = {}
    for i, domain in enumerate(domains[:half]):
        first_end, return_start = (i + 1) * segment, (i + half) * segment
        if first_end not in students or return_start not in students:
            raise RuntimeError(f"{config.run.out}: no checkpoint at frame {first_end} or {return_start}")
        first = probe_miou(students[first_end], probes[domain], config.evaluator.num_classes)
        before = probe_miou(students[return_start], probes[domain], config.evaluator.num_classes)
        per_domain[domain] = {
            "first": first, "before_return": before, "forgetting": first - before,
            "stream_end_of_first_visit": window_miou(windows, first_end - window, first_end),
            "stream_start_of_return": window_miou(windows, return_start, return_start + window),
        }
    worst = max(row["forgetting"] for row in per_domain.values())
    return {"per_domain": per_domain, "max_forgetting": worst, "stream_miou": summary["student_miou"],
            "teacher_rate": summary["teacher_rate"], "teacher_calls": summary["teacher_calls"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segment", type=int, default=300, help="frames per domain visit")
    parser.add_argument("--probe", type=int, default=16, help="probe frames per domain")
    parser.add_argument("--window", type=int, default=100, help="frames of the stream figure each side")
    parser.add_argument("--learners", default="replay,no_replay,ema")
    parser.add_argument("--ema", type=float, default=0.99, help="online.ema of the ema learner")
    parser.add_argument("--seed", type=int, default=FORGETTING_BENCH[0], help="the stream's world")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override for every run")
    parser.add_argument("--out", default="runs/bench-forgetting")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names = [n.strip() for n in args.learners.split(",") if n.strip()]
    unknown = sorted(set(names) - set(LEARNERS))
    if unknown:
        parser.error(f"--learners: unknown learner(s) {unknown} (choose from {', '.join(LEARNERS)})")
    if args.segment < 2 * args.window or args.segment % 100:
        parser.error(f"--segment must be a multiple of 100 and at least 2 x --window, got {args.segment}")
    if training_use(args.seed) is not None:
        print(f"WARNING: world {args.seed} is in {training_use(args.seed)} (sim.seeds): not held out", flush=True)
    domains = twice_over()
    frames = args.segment * len(domains)
    base = [f"run.seed={args.seed}", f"run.frames={frames}", f"run.source=sim:{','.join(domains)}",
            f"learner.checkpoint_every={args.segment}", f"learner.keep_checkpoints={len(domains) + 1}", *args.set]
    probes = probe_sets(load_config(None, base), domains, args.probe, FORGETTING_PROBES[0])
    result: dict[str, Any] = {"settings": {"segment": args.segment, "probe_frames": args.probe, "seed": args.seed,
                                           "probe_seed": FORGETTING_PROBES[0], "ema": args.ema, "set": args.set}}
    verdicts = {}
    for name in names:
        extra = LEARNERS[name] + ([f"online.ema={args.ema}"] if name == "ema" else [])
        config = load_config(None, base + extra + [f"run.out={Path(args.out) / name}"])
        row = measure(name, config, domains, args.segment, probes, args.window)
        result[name] = row
        verdicts[name] = row["max_forgetting"] <= FORGETTING_TARGET
        for domain, figures in row["per_domain"].items():
            print(f"  {domain:>14}: probe {figures['first']:.4f} at the end of the first visit, "
                  f"{figures['before_return']:.4f} before the return (forgot {100 * figures['forgetting']:+.2f} points); "
                  f"stream {figures['stream_end_of_first_visit']} -> {figures['stream_start_of_return']}", flush=True)
        print(f"  {name}: worst forgetting {100 * row['max_forgetting']:+.2f} points (target <= "
              f"{100 * FORGETTING_TARGET:.0f}): {'holds' if verdicts[name] else 'does NOT hold'}", flush=True)
    result["targets"] = {f"forgetting_at_most_1_point_{name}": held for name, held in verdicts.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
