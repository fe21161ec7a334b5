"""Benchmark: no forgetting, no collapse on a temporally correlated stream (issue 12).

The stream is what a car sees in town: long stretches of one scene and weather
(``--schedule``, split evenly over ``--frames``) and stops as at red lights
(``sim.stop_every`` / ``sim.stop_seconds``: the ego brakes, then stands still for
``--stop-seconds``, its camera static while traffic and weather go on). It runs on the
held-out worlds ``sim.seeds.STATIC_BENCH`` with the shipped teacher and starting student.

Two students see the same frames:

- ``online``: the run's student, learning from the teacher through the whole pipeline
  (:func:`stream.local.run_local`'s driver and parts), predicting each frame before it learns
  from it (prequential);
- ``frozen``: a copy of the same starting student that never learns (the same weights, the
  same batch-norm mode), predicting the same frames (rendered again: the world is seeded).

Both are scored against the simulator's ground truth (evaluator side only: the learner sees
images) per *segment*: every stop (the frames the ego stands still) is a segment of its own,
and the driving between stops is cut at domain changes and into ``--segment``-frame pieces.
Per learner (``--learners``: ``plain`` = the default learner, ``gated`` = with the input-change
gate :mod:`learners.static_gate`, ``static.enabled=true``; ``frozen_bn`` = batch norm at its
running statistics in the learning steps, ``online.train_bn=frozen``; ``anchored`` = that plus
``online.lr`` 5e-4 and stochastic restore ``online.restore_prob`` 0.01) the bench reports each segment's
``online - frozen`` mIoU in points, the worst one, how many segments fall more than 1 point
below the frozen copy, and the overall mIoU of both (confusion matrices pooled over every
frame of every world).

Target (issue 12): on every segment the online student is at most 1 mIoU point below the
frozen copy (``segments_below_1pt == 0``).

    .venv/bin/python bench/static.py [--frames 1200] [--stop-every 40] [--stop-seconds 20]
                                     [--segment 200] [--learners plain,gated] [--out runs/bench-static]
    .venv/bin/python bench/static.py --tune    # the gate's threshold, from sim.seeds.STATIC_TUNING worlds

``--tune`` renders the same kind of stream on ``STATIC_TUNING`` worlds (never the bench's),
takes a pick every ``--tune-stride`` frames (the scheduler's lowest rate) and prints the
gate's change measure (:func:`learners.static_gate.thumbnail` difference to the previous
pick) on picks inside stops against picks while driving, and the threshold: the driving
picks' 1st percentile, rounded down to half a grey level (at most 1 % of the picks while
driving would be skipped), with the share of the stops' picks it skips.

Output: ``segments-LEARNER-WORLD.json`` as each run ends, a per-segment table, ``static.png`` (per world: each learner's and the frozen copy's
mIoU per segment, stops shaded) and, last, one JSON line: ``worst_segment_gap_points``,
``segments_below_1pt``, ``online_miou``, ``frozen_miou``, ``segments`` (of the plain learner,
the default), the same under ``learners`` for every learner, and ``settings``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sim.seeds import STATIC_BENCH, STATIC_TUNING, training_use  # noqa: E402
from stream.config import RunConfig, load_config  # noqa: E402
from stream.evaluation import FrameEvaluator  # noqa: E402
from stream.local import LocalPlacement  # noqa: E402

GAP_TARGET_POINTS = 1.0  # the online student at most this many mIoU points below the frozen copy, on every segment
LEARNERS = {"plain": [], "gated": ["static.enabled=true"],
            # batch norm kept at the starting student's running statistics in the learning steps (online.train_bn)
            "frozen_bn": ["online.train_bn=frozen"],
            # and smaller steps that go back to the starting weights now and then (online.lr, online.restore_prob)
            "anchored": ["online.train_bn=frozen", "online.lr=5e-4", "online.restore_prob=0.01"]}

log = logging.getLogger("bench.static")


# ---- segments ---------------------------------------------------------------------------------


def segments(stopped: list[bool], domains: list[str], length: int) -> list[tuple[int, int, str]]:
    """Cut a stream into (start, end, kind) segments: each run of stopped frames is one
    ``"stop"``; the driving between is cut at domain changes and into ``length``-frame
    ``"drive"`` pieces, a last piece shorter than half ``length`` joining the one before.

    Example:
        >>> segments([False] * 5 + [True] * 3 + [False] * 7, ["a"] * 12 + ["b"] * 3, length=4)
        [(0, 5, 'drive'), (5, 8, 'stop'), (8, 12, 'drive'), (12, 15, 'drive')]
        >>> segments([False] * 9, ["a"] * 9, length=4)
        [(0, 4, 'drive'), (4, 9, 'drive')]
    """
    if len(stopped) != len(domains):
        raise ValueError(f"segments: {len(stopped)} stop flags but {len(domains)} domains")
    runs: list[tuple[int, int, str]] = []
    start = 0
    for i in range(1, len(stopped) + 1):
        if i == len(stopped) or stopped[i] != stopped[start] or (not stopped[i] and domains[i] != domains[start]):
            runs.append((start, i, "stop" if stopped[start] else "drive"))
            start = i
    out: list[tuple[int, int, str]] = []
    for begin, end, kind in runs:
        if kind == "stop":
            out.append((begin, end, kind))
            continue
        pieces = list(range(begin, end, length)) + [end]
        if len(pieces) > 2 and pieces[-1] - pieces[-2] < length / 2:
            del pieces[-2]
        out.extend((a, b, "drive") for a, b in zip(pieces, pieces[1:]))
    return out


def segment_miou(matrices: np.ndarray, start: int, end: int) -> float:
    """mIoU of frames [start, end) from their per-frame confusion matrices (pooled).

    Shape:
        matrices (N, C, C + 1) int64 -> float
    """
    from perception.metrics import mean_iou

    return float(mean_iou(matrices[start:end].sum(axis=0)))


# ---- the two students' per-frame confusion matrices ------------------------------------------------


class RecordingEvaluator(FrameEvaluator):
    """The run's evaluator, also keeping each frame's confusion matrix of the student."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frame_matrices: dict[int, np.ndarray] = {}
        self._labels: dict[int, np.ndarray] = {}

    def update(self, truths: Iterable[Any], outputs: Iterable[Any]) -> list[dict[str, Any]]:
        from perception.evaluator import confusion_update

        truths, outputs = list(truths), list(outputs)
        for truth in truths:
            if truth.label is not None:
                self._labels[truth.index] = truth.label
        config = self.mapper.config
        for output in outputs:
            label = self._labels.pop(output.index, None)
            if label is not None and output.index not in self.frame_matrices:
                matrix = np.zeros((config.num_classes, config.num_classes + 1), np.int64)  # (C, C + 1)
                confusion_update(matrix, label, self.mapper(output.student), config.ignore_index)
                self.frame_matrices[output.index] = matrix
        return super().update(truths, outputs)


class RecordingPlacement(LocalPlacement):
    """The in-process runner with a :class:`RecordingEvaluator`."""

    def start(self, config: RunConfig, checkpoint_dir: str) -> None:
        super().start(config, checkpoint_dir)
        self.recorder = RecordingEvaluator(config.evaluator, config.run.label_map, config.run.source)
        self.parts["evaluator"] = self.recorder


def online_run(config: RunConfig) -> tuple[dict[str, Any], np.ndarray]:
    """Run the pipeline; its summary and the online student's per-frame confusion matrices (N, C, C + 1)."""
    from stream.driver import Driver

    placement = RecordingPlacement()
    summary = Driver(config, placement, progress=False).run()
    frames = placement.recorder.frame_matrices
    return summary, np.stack([frames[i] for i in range(len(frames))])


def frozen_pass(config: RunConfig) -> tuple[np.ndarray, list[bool], list[str]]:
    """The frozen starting student on the same frames: per-frame confusion matrices, stop
    flags and domains (the simulator renders the same world again)."""
    import torch

    from perception.argmax import net_labels
    from perception.evaluator import confusion_update
    from perception.teachers.common import images_to_tensor
    from stream.builders import build_student
    from stream.sources import open_source

    model = build_student(config).train(config.online.predict_bn == "frame")
    classes = config.evaluator.num_classes
    matrices, stopped, domains = [], [], []
    source = open_source(config.run.source, config)
    try:
        with torch.inference_mode():
            for frame in source:
                matrix = np.zeros((classes, classes + 1), np.int64)  # (C, C + 1)
                confusion_update(matrix, frame.label, net_labels(model, images_to_tensor(frame.image[None])),
                                 config.evaluator.ignore_index)
                matrices.append(matrix)
                stopped.append(bool(frame.meta.get("stopped", False)))
                domains.append(str(frame.meta.get("domain", "unknown")))
                if len(matrices) >= config.run.frames:
                    break
    finally:
        source.close()
    return np.stack(matrices), stopped, domains


# ---- figures ----------------------------------------------------------------------------------------


def learner_figures(rows: list[dict[str, Any]], online: np.ndarray, frozen: np.ndarray, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline figures of one learner over every world's segments (``rows``) and pooled matrices."""
    from perception.metrics import mean_iou

    gaps = [row["gap_points"] for row in rows]
    stops = [row["gap_points"] for row in rows if row["kind"] == "stop"]
    calls = sum(run["teacher_calls"] for run in runs)
    frames = sum(run["frames"] for run in runs)
    return {
        "worst_segment_gap_points": min(gaps),
        "segments_below_1pt": sum(gap < -GAP_TARGET_POINTS for gap in gaps),
        "worst_stop_gap_points": min(stops) if stops else None,
        "online_miou": float(mean_iou(online)), "frozen_miou": float(mean_iou(frozen)),
        "teacher_calls": calls, "teacher_rate": calls / max(1, frames), "frames": frames,
        "holds": min(gaps) >= -GAP_TARGET_POINTS, "segments": rows,
    }


def draw(path: Path, per_learner: dict[str, list[dict[str, Any]]], worlds: list[int], title: str) -> None:
    """Per world: each learner's online mIoU and the frozen copy's per segment, stops shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(worlds), 1, figsize=(11, 2.8 * len(worlds)), squeeze=False)
    for ax, world in zip(axes[:, 0], worlds):
        first = next(iter(per_learner.values()))
        rows = [r for r in first if r["world"] == world]
        for row in rows:
            if row["kind"] == "stop":
                ax.axvspan(row["start"], row["end"], color="0.85", lw=0)
        mids = [(r["start"] + r["end"]) / 2 for r in rows]
        ax.plot(mids, [r["frozen"] for r in rows], "k--", marker="s", ms=3, label="frozen copy")
        for name, all_rows in per_learner.items():
            mine = [r for r in all_rows if r["world"] == world]
            ax.plot([(r["start"] + r["end"]) / 2 for r in mine], [r["online"] for r in mine], marker="o", ms=3,
                    label=f"online ({name})")
        ax.set_ylabel("mIoU")
        ax.set_title(f"world {world}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="lower left")
    axes[-1, 0].set_xlabel("frame (grey: the ego stands still)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def base_overrides(args: argparse.Namespace, world: int) -> list[str]:
    return [f"run.seed={world}", f"run.frames={args.frames}", f"run.source=sim:{args.schedule}",
            f"sim.stop_every={args.stop_every}", f"sim.stop_seconds={args.stop_seconds}",
            "learner.checkpoint_every=0", *args.set]


# ---- tuning -------------------------------------------------------------------------------------------


def tune(args: argparse.Namespace) -> dict[str, Any]:
    """The gate's change measure on STATIC_TUNING worlds: picks inside stops against picks while driving."""
    from learners.static_gate import thumbnail
    from stream.sources import open_source

    cells = load_config(None, args.set).static.cells
    worlds = list(STATIC_TUNING[: args.tune_worlds])
    still, moving = [], []
    for world in worlds:
        config = load_config(None, base_overrides(args, world))
        source = open_source(config.run.source, config)
        previous: np.ndarray | None = None
        previous_stopped = False
        for frame in source:
            if frame.index % args.tune_stride:
                continue
            small = thumbnail(frame.image, cells)
            stopped = bool(frame.meta.get("stopped", False))
            if previous is not None:
                change = float(np.abs(small - previous).mean())
                if stopped and previous_stopped:
                    still.append(change)
                elif not stopped and not previous_stopped:
                    moving.append(change)
            previous, previous_stopped = small, stopped
        source.close()
    still_hi = float(np.percentile(still, 99)) if still else float("nan")
    moving_lo = float(np.percentile(moving, 1)) if moving else float("nan")
    threshold = math.floor(moving_lo * 2.0) / 2.0 if moving else float("nan")
    result = {
        "worlds": worlds, "cells": cells, "stride": args.tune_stride, "still_picks": len(still), "moving_picks": len(moving),
        "still_p50": float(np.median(still)) if still else None, "still_p99": still_hi, "still_max": max(still, default=None),
        "moving_p1": moving_lo, "moving_p50": float(np.median(moving)) if moving else None, "moving_min": min(moving, default=None),
        "threshold": threshold,
        "moving_below_threshold": sum(c < threshold for c in moving), "still_above_threshold": sum(c >= threshold for c in still),
    }
    print(f"tuning worlds {worlds[0]}..{worlds[-1]} ({len(worlds)}): change between picks {args.tune_stride} frames apart, "
          f"{cells}x{cells} blocks, grey levels")
    print(f"  inside stops ({len(still)} picks): median {result['still_p50']}, p99 {still_hi:.3f}, max {result['still_max']}")
    print(f"  while driving ({len(moving)} picks): p1 {moving_lo:.3f}, median {result['moving_p50']}, min {result['moving_min']}")
    print(f"  threshold (driving p1, rounded down) {threshold:.1f}: {result['moving_below_threshold']} driving picks "
          f"below (skipped), {result['still_above_threshold']} stop picks above (asked)")
    return result


# ---- main -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default=",".join(str(w) for w in STATIC_BENCH), help="world seeds (comma list)")
    parser.add_argument("--frames", type=int, default=1200, help="frames per world")
    parser.add_argument("--schedule", default="clear@oldtown,rain@newtown",
                        help="the long single-domain stretches (split evenly over --frames)")
    parser.add_argument("--stop-every", type=float, default=40.0, help="seconds between stops (sim.stop_every)")
    parser.add_argument("--stop-seconds", type=float, default=20.0, help="seconds standing still (sim.stop_seconds)")
    parser.add_argument("--segment", type=int, default=200, help="frames per driving segment")
    parser.add_argument("--learners", default="plain,gated")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override for every run")
    parser.add_argument("--tune", action="store_true", help="measure the gate's threshold on STATIC_TUNING worlds")
    parser.add_argument("--tune-worlds", type=int, default=3)
    parser.add_argument("--tune-stride", type=int, default=8, help="frames between picks when tuning")
    parser.add_argument("--out", default="runs/bench-static")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.learners.split(",") if n.strip()]
    unknown = sorted(set(names) - set(LEARNERS))
    if unknown or not names:
        parser.error(f"--learners: unknown or no learner(s) {unknown} (choose from {', '.join(LEARNERS)})")
    args.names = names
    try:
        args.world_list = [int(w) for w in args.worlds.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--worlds: expected a comma list of ints, got {args.worlds!r}")
    if args.segment < 2 or args.frames < 2:
        parser.error("--segment and --frames must be >= 2")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tune:
        result = {"tuning": tune(args), "settings": {"stop_every": args.stop_every, "stop_seconds": args.stop_seconds,
                                                     "schedule": args.schedule, "frames": args.frames, "set": args.set}}
        print(json.dumps(result))
        return result
    for world in args.world_list:
        if training_use(world) is not None:
            print(f"WARNING: world {world} is in {training_use(world)} (sim.seeds): not held out", flush=True)
    per_learner: dict[str, list[dict[str, Any]]] = {name: [] for name in args.names}
    pooled: dict[str, np.ndarray] = {}
    frozen_pooled: np.ndarray | None = None
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.names}
    started = time.perf_counter()
    for world in args.world_list:
        base = base_overrides(args, world)
        frozen, stopped, domains = frozen_pass(load_config(None, base))
        cuts = segments(stopped, domains, args.segment)
        frozen_pooled = frozen.sum(axis=0) if frozen_pooled is None else frozen_pooled + frozen.sum(axis=0)
        for name in args.names:
            config = load_config(None, base + LEARNERS[name] + [f"run.out={out / name / str(world)}"])
            summary, online = online_run(config)
            if len(online) != len(frozen):
                raise RuntimeError(f"world {world}: the online run scored {len(online)} frames, the frozen pass {len(frozen)}")
            if not np.array_equal(online[0], frozen[0]):  # frame 0 is predicted before any learning
                raise RuntimeError(f"world {world}: the online and the frozen student disagree on frame 0, before any "
                                   f"learning: they are not the same starting student, or not the same frames")
            runs[name].append({"world": world, "teacher_calls": summary["teacher_calls"], "frames": summary["frames"]})
            pooled[name] = online.sum(axis=0) + pooled.get(name, 0)
            for start, end, kind in cuts:
                row = {"world": world, "start": start, "end": end, "kind": kind, "domain": domains[start],
                       "online": segment_miou(online, start, end), "frozen": segment_miou(frozen, start, end)}
                row["gap_points"] = 100.0 * (row["online"] - row["frozen"])
                per_learner[name].append(row)
            mine = [row for row in per_learner[name] if row["world"] == world]
            (out / f"segments-{name}-{world}.json").write_text(json.dumps(  # kept as each run ends: a long bench
                {"world": world, "learner": name, "teacher_calls": summary["teacher_calls"], "segments": mine}, indent=1))
            print(f"world {world} {name}: {summary['frames']} frames, {sum(stopped)} stopped, teacher rate "
                  f"{summary['teacher_rate']:.3f}, online mIoU {summary['student_miou']:.4f} "
                  f"({time.perf_counter() - started:.0f} s so far)", flush=True)
    assert frozen_pooled is not None
    figures = {name: learner_figures(per_learner[name], pooled[name], frozen_pooled, runs[name]) for name in args.names}
    print(f"\n{'world':>7} {'frames':>11} {'kind':>5} {'domain':>14} {'frozen':>7} "
          + " ".join(f"{name + ' (gap)':>17}" for name in args.names))
    first = args.names[0]
    for i, row in enumerate(per_learner[first]):
        cells = " ".join(f"{per_learner[n][i]['online']:.4f} ({per_learner[n][i]['gap_points']:+5.2f})" for n in args.names)
        print(f"{row['world']:>7} {row['start']:>5}-{row['end']:<5} {row['kind']:>5} {row['domain']:>14} "
              f"{row['frozen']:.4f}  {cells}")
    for name, fig in figures.items():
        print(f"{name}: worst segment {fig['worst_segment_gap_points']:+.2f} points (worst stop "
              f"{fig['worst_stop_gap_points']}), {fig['segments_below_1pt']} of {len(fig['segments'])} segments more than "
              f"1 point below the frozen copy; overall online {fig['online_miou']:.4f} vs frozen {fig['frozen_miou']:.4f}; "
              f"teacher rate {fig['teacher_rate']:.3f}: target {'holds' if fig['holds'] else 'does NOT hold'}")
    title = (f"sim:{args.schedule}, stops every ~{args.stop_every:g} s for {args.stop_seconds:g} s, "
             f"{args.frames} frames x worlds {args.worlds}")
    try:
        draw(out / "static.png", per_learner, args.world_list, title)
    except Exception as error:  # a broken plot must not lose the figures
        log.error("static.png not drawn: %s", error)
    head = figures[first]
    result = {
        "worst_segment_gap_points": head["worst_segment_gap_points"], "segments_below_1pt": head["segments_below_1pt"],
        "online_miou": head["online_miou"], "frozen_miou": head["frozen_miou"], "segments": len(head["segments"]),
        "learner": first, "holds": head["holds"],
        "learners": figures,
        "settings": {"worlds": args.world_list, "frames": args.frames, "schedule": args.schedule,
                     "stop_every": args.stop_every, "stop_seconds": args.stop_seconds, "segment": args.segment,
                     "set": args.set, "wall_s": time.perf_counter() - started},
    }
    (out / "static.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
