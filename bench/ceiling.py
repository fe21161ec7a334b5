"""Benchmark: how close the online student comes to its ceiling, and which student fits a budget.

For each student architecture (``--nets``, names in ``perception.student_nets.STUDENT_NETS``):

- **ceiling**: the same architecture trained *offline* with a generous budget
  (``--ceiling-steps`` steps of batch 16) on the sim teacher's labels of every domain: frames of
  every weather in both towns from the ``sim.seeds.CEILING_BLOCK`` block of STUDENT_TRAINING
  worlds (never the bench world). Its per-domain mIoU on the bench world's tour is what an
  online student of that size can reach.
- **online**: the online learner with that architecture on the default tour of the held-out
  world ``sim.seeds.CEILING_BENCH`` (``--frames`` frames, default settings), starting from that
  net's clear-day student (the shipped one for ``default``; for the others one trained by this
  bench on the shipped student's worlds and settings, ``--start-steps`` steps).
- **teacher**: the sim teacher on every frame of the same tour.
- **latency**: ms per frame at batch 1 (one torch thread, as the run predicts) at 256x128 and
  480x352, and MACs.

Printed: the sizing table, and for the default student the online mIoU as a fraction of its
ceiling (overall and per domain) and of the teacher. Targets (issue 12) on the default student:
at least 0.95x its ceiling overall and on every domain, and at least 0.92x the teacher at a
teacher rate of at most 0.10. ``student_vs_teacher`` is the run's own ``student_teacher_ratio``
(both scored on the frames the teacher labelled, as ``bench/tour.py`` reports it).

    .venv/bin/python bench/ceiling.py [--nets tiny,fast,default,deep] [--frames 3600]
                                      [--ceiling-steps 2000] [--out runs/bench-ceiling] [--reuse] [--ship]

``--reuse`` keeps trained students and finished runs found in ``--out``; ``--ship`` copies the
sizing table to ``perception/weights/student_sizing.json`` (what ``odistill size`` reads) and
the starting students to ``perception/weights/student_clear_oldtown_NET.safetensors`` (what
``student.weights=default`` loads for ``student.net=NET``). A PNG (``ceiling.png``) shows the
default student's per-domain online, ceiling and teacher mIoU, and mIoU against milliseconds
for every net. The last line is one JSON object: ``student_vs_ceiling``,
``student_vs_ceiling_min``, ``student_vs_teacher``, ``teacher_rate``, ``per_domain``, ``sizing``
and ``targets``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception import sizing  # noqa: E402
from perception.evaluator import StreamingEvaluator  # noqa: E402
from perception.nets import count_params  # noqa: E402
from perception.student_nets import STUDENT_NETS  # noqa: E402
from perception.weights import WEIGHTS_DIR, load_weights, save_weights  # noqa: E402
from sim.seeds import CEILING_BENCH, CEILING_BLOCK, student_training_worlds, training_use  # noqa: E402
from stream.builders import shipped_student_weights  # noqa: E402
from stream.config import load_config  # noqa: E402
from stream.training import StudentTrainingConfig, fit_student, in_batches, label_dataset, render_dataset  # noqa: E402

CEILING_TARGET = 0.95  # online / ceiling, overall and on every domain
TEACHER_TARGET = 0.92  # online / teacher
RATE_TARGET = 0.10  # teacher rate at most
WORLDS = 24  # worlds each offline training set is rendered from
log = logging.getLogger("bench.ceiling")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nets", default="tiny,fast,default,deep", help="student nets, comma-separated")
    parser.add_argument("--frames", type=int, default=3600, help="tour frames of the online runs and the scoring")
    parser.add_argument("--seed", type=int, default=CEILING_BENCH[0], help="the bench world (sim.seeds.CEILING_BENCH)")
    parser.add_argument("--ceiling-steps", type=int, default=2000, help="offline steps (batch 16) of each ceiling student")
    parser.add_argument("--ceiling-frames", type=int, default=4800, help="teacher-labelled frames of every domain")
    parser.add_argument("--start-steps", type=int, default=2000, help="offline steps of a starting student not shipped")
    parser.add_argument("--start-frames", type=int, default=4800, help="clear-day frames a starting student learns on")
    parser.add_argument("--out", default="runs/bench-ceiling")
    parser.add_argument("--reuse", action="store_true", help="keep trained students and finished runs found in --out")
    parser.add_argument("--ship", action="store_true", help="copy the sizing table and starting students into perception/weights")
    args = parser.parse_args(argv)
    args.nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    unknown = [n for n in args.nets if n not in STUDENT_NETS]
    if unknown or not args.nets:
        parser.error(f"--nets: unknown student net {unknown[0] if unknown else '(none)'!r} "
                     f"(choose from: {', '.join(sorted(STUDENT_NETS))})")
    for key in ("frames", "ceiling_steps", "ceiling_frames", "start_steps", "start_frames"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    return args


def labelled_set(kind: str, frames: int, out: Path, reuse: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The teacher-labelled training set ``kind`` ("all": every domain, the ceiling's; "clear": the
    shipped student's clear-day worlds), cached in ``out/data``."""
    cache = out / "data" / f"{kind}-{frames}.npz"
    if reuse and cache.is_file():
        data = np.load(cache)
        return data["images"], data["labels"], data["logits"]
    from perception.teachers import open_teacher

    block, schedule = (CEILING_BLOCK, "all") if kind == "all" else (0, "clear")
    worlds = student_training_worlds(block, WORLDS)
    t0 = time.perf_counter()
    images, _, _ = render_dataset(worlds, max(1, frames // WORLDS), schedule, workers=1)
    images, labels, logits = label_dataset(open_teacher("sim", device="cpu"), list(images))
    log.info("%s set: %d frames of worlds %d..%d rendered and labelled in %.0f s", kind, len(images), worlds[0],
             worlds[-1], time.perf_counter() - t0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, images=images, labels=labels, logits=logits)
    return images, labels, logits


def trained(net: str, role: str, steps: int, frames: int, out: Path, reuse: bool) -> Path:
    """The weights file of ``net``'s ``role`` student ("ceiling" or "start"), trained when missing."""
    path = out / "nets" / net / f"{role}-{steps}.safetensors"
    if reuse and path.is_file():
        return path
    images, labels, logits = labelled_set("all" if role == "ceiling" else "clear", frames, out, reuse=True)
    config = StudentTrainingConfig(steps=steps, net=net, frames=frames, worlds=WORLDS)
    t0 = time.perf_counter()
    model = fit_student(images, labels, logits, config, seed=0, device="cpu")
    log.info("%s %s student: %d steps in %.0f s", net, role, steps, time.perf_counter() - t0)
    block = CEILING_BLOCK if role == "ceiling" else 0
    save_weights(model, path, metadata={"net": net, "role": role, "steps": str(steps), "frames": str(len(images)),
                                        "worlds": f"block {block} of STUDENT_TRAINING", "teacher": "sim"})
    return path


def score_ceilings(weights: dict[str, Path], seed: int, frames: int, batch: int = 16) -> dict[str, dict[str, Any]]:
    """Per net (and ``"teacher"``): mIoU overall and per domain on every frame of the bench tour."""
    from perception.student_nets import build_student_net
    from perception.teachers import open_teacher
    from stream.sources.sim import SimSource

    models = {net: load_weights(build_student_net(net), path).eval() for net, path in weights.items()}
    teacher = open_teacher("sim", device="cpu")
    evaluators = {name: StreamingEvaluator() for name in [*models, "teacher"]}
    source = SimSource(load_config(None, []).sim, seed=seed, frames=frames, schedule="tour")
    for pack in in_batches(source, batch):
        images = np.stack([f.image for f in pack])  # (B, H, W, 3)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
        predictions = {"teacher": teacher.label(images).labels}
        with torch.inference_mode():
            for net, model in models.items():
                predictions[net] = model(x).argmax(1).to(torch.uint8).numpy()  # (B, H, W)
        for name, labels in predictions.items():
            for frame, label in zip(pack, labels):
                evaluators[name].update(frame.domain, label, ground_truth=frame.label)
    source.close()
    out = {}
    for name, evaluator in evaluators.items():
        summary = evaluator.summary()
        out[name] = {"miou": summary["student_miou"],
                     "per_domain": {d: s["student_miou"] for d, s in summary["per_domain"].items()}}
    return out


def online_run(net: str, start: Path, seed: int, frames: int, out: Path, reuse: bool) -> dict[str, Any]:
    """The default online learner with student ``net`` on the bench tour; its summary."""
    folder = out / "runs" / net
    summary_path = folder / "summary.json"
    if reuse and summary_path.is_file() and summary_path.stat().st_mtime > start.stat().st_mtime:
        summary = json.loads(summary_path.read_text())
        if summary.get("frames") == frames:
            return summary
    from stream.local import run_local

    config = load_config(None, [f"run.seed={seed}", f"run.frames={frames}", f"run.out={folder}", "run.runner=local",
                                f"student.net={net}", f"student.weights={start}"])
    return run_local(config, progress=False)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def net_figures(net: str, summary: dict[str, Any], ceiling: dict[str, Any], teacher: dict[str, Any]) -> dict[str, Any]:
    """The online student of ``net`` against its ceiling and the teacher, overall and per domain."""
    per_domain = {}
    for domain, row in summary["per_domain"].items():
        online = row["student_miou"]
        per_domain[domain] = {
            "online_miou": online, "ceiling_miou": ceiling["per_domain"].get(domain),
            "teacher_miou": teacher["per_domain"].get(domain),
            "online_vs_ceiling": ratio(online, ceiling["per_domain"].get(domain)),
            "online_vs_teacher_all_frames": ratio(online, teacher["per_domain"].get(domain)),
            "student_teacher_ratio": row.get("student_teacher_ratio"), "frames": row["frames"],
        }
    ceiling_ratios = [d["online_vs_ceiling"] for d in per_domain.values() if d["online_vs_ceiling"] is not None]
    return {
        "net": net, "online_miou": summary["student_miou"], "ceiling_miou": ceiling["miou"], "teacher_miou": teacher["miou"],
        "student_vs_ceiling": ratio(summary["student_miou"], ceiling["miou"]),
        "student_vs_ceiling_min": min(ceiling_ratios) if ceiling_ratios else None,
        "student_vs_teacher": summary["student_teacher_ratio"],
        "student_vs_teacher_all_frames": ratio(summary["student_miou"], teacher["miou"]),
        "teacher_rate": summary["teacher_rate"], "teacher_calls": summary["teacher_calls"],
        "wall_s": summary["wall_s"], "per_domain": per_domain,
    }


def targets(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    vs_ceiling = figures["student_vs_ceiling"] or 0.0
    vs_min = figures["student_vs_ceiling_min"] or 0.0
    vs_teacher = figures["student_vs_teacher"] or 0.0
    return {
        "vs_ceiling": {"target": f">= {CEILING_TARGET} overall and on every domain",
                       "holds": vs_ceiling >= CEILING_TARGET and vs_min >= CEILING_TARGET},
        "vs_teacher": {"target": f">= {TEACHER_TARGET} at teacher rate <= {RATE_TARGET}",
                       "holds": vs_teacher >= TEACHER_TARGET and figures["teacher_rate"] <= RATE_TARGET},
    }


def draw(figures: dict[str, Any], rows: list[sizing.SizingRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    domains = list(figures["per_domain"])
    x = np.arange(len(domains))
    for offset, key, label in ((-0.27, "online_miou", "online student"), (0.0, "ceiling_miou", "ceiling (offline)"),
                               (0.27, "teacher_miou", "teacher")):
        values = [figures["per_domain"][d][key] or 0.0 for d in domains]
        left.bar(x + offset, values, width=0.27, label=label)
    left.set_xticks(x, domains, rotation=20, fontsize=8)
    left.set_ylabel("mIoU (every frame of the tour)")
    left.set_title(f"{figures['net']} student: online vs ceiling vs teacher")
    left.legend(fontsize=8)
    for row in rows:
        for value, marker in ((row.ceiling_miou, "s"), (row.online_miou, "o")):
            if value is not None:
                right.scatter(row.ms[sizing.SIZES[0]], value, marker=marker)
        right.annotate(row.net, (row.ms[sizing.SIZES[0]], row.accuracy()), fontsize=8)
    right.set_xlabel(f"ms per frame at {sizing.SIZES[0]} (batch 1, one thread)")
    right.set_ylabel("mIoU (square: ceiling, circle: online)")
    right.set_title("sizing")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: float | None) -> str:
    """Three decimals, or "n/a" where a figure could not be measured (a domain the tour never showed)."""
    return "n/a" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("stream").setLevel(logging.WARNING)
    out = Path(args.out)
    fitted = training_use(args.seed)
    if fitted is not None:
        print(f"WARNING: world {args.seed} is in {fitted} (sim.seeds): its figures are not held out", flush=True)
    t0 = time.perf_counter()
    starts, ceilings = {}, {}
    for net in args.nets:
        shipped = shipped_student_weights(net)
        starts[net] = shipped if net == "default" else trained(net, "start", args.start_steps, args.start_frames, out, args.reuse)
        ceilings[net] = trained(net, "ceiling", args.ceiling_steps, args.ceiling_frames, out, args.reuse)
    scores = score_ceilings(ceilings, args.seed, args.frames)
    teacher = scores["teacher"]
    print(f"teacher on every frame of world {args.seed}'s tour: mIoU {teacher['miou']:.3f}", flush=True)
    rows, per_net = [], {}
    for net in args.nets:
        summary = online_run(net, starts[net], args.seed, args.frames, out, args.reuse)
        figures = net_figures(net, summary, scores[net], teacher)
        per_net[net] = figures
        ms = {size: round(sizing.measure_latency_ms(net, size), 3) for size in sizing.SIZES}
        macs = {size: float(sizing.macs(net, size)) for size in sizing.SIZES}
        from perception.student_nets import build_student_net

        rows.append(sizing.SizingRow(
            net=net, ms=ms, macs=macs, ceiling_miou=scores[net]["miou"], online_miou=summary["student_miou"],
            params=count_params(build_student_net(net)),
            extra={"online_vs_ceiling": figures["student_vs_ceiling"], "student_vs_teacher": figures["student_vs_teacher"],
                   "teacher_rate": figures["teacher_rate"]}))
        print(f"{net}: online {_fmt(figures['online_miou'])}, ceiling {_fmt(figures['ceiling_miou'])} "
              f"-> {_fmt(figures['student_vs_ceiling'])}x (worst domain {_fmt(figures['student_vs_ceiling_min'])}x); "
              f"student/teacher {_fmt(figures['student_vs_teacher'])} at teacher rate {_fmt(figures['teacher_rate'])}; "
              f"{ms[sizing.SIZES[0]]:.2f} / {ms[sizing.SIZES[1]]:.2f} ms", flush=True)
    provenance = {"bench": "bench/ceiling.py", "world": args.seed, "frames": args.frames,
                  "ceiling_steps": args.ceiling_steps, "ceiling_frames": args.ceiling_frames,
                  "start_steps": args.start_steps, "ms": "median of 30, batch 1, one torch thread, eval mode + argmax",
                  "machine_threads": torch.get_num_threads()}
    sizing.save_table(rows, out / "sizing.json", provenance)
    print()
    print(sizing.format_table(rows))
    main_net = "default" if "default" in per_net else args.nets[0]
    figures = per_net[main_net]
    print(f"\n{main_net} student per domain (online / ceiling / teacher, every frame):")
    for domain, d in figures["per_domain"].items():
        print(f"  {domain:<15} {_fmt(d['online_miou'])} / {_fmt(d['ceiling_miou'])} / {_fmt(d['teacher_miou'])} "
              f"-> {_fmt(d['online_vs_ceiling'])}x ceiling, student/teacher on teacher frames "
              f"{_fmt(d['student_teacher_ratio'])}")
    judged = targets(figures)
    for name, verdict in judged.items():
        print(f"  target {name} ({verdict['target']}): {'holds' if verdict['holds'] else 'does NOT hold'}")
    draw(figures, rows, out / "ceiling.png")
    if args.ship:
        shutil.copy(out / "sizing.json", sizing.SIZING_TABLE)
        for net, path in starts.items():
            if net != "default":
                shutil.copy(path, WEIGHTS_DIR / shipped_student_weights(net).name)
        print(f"shipped the sizing table and starting students to {WEIGHTS_DIR}")
    print(json.dumps({
        "net": main_net, "seed": args.seed, "frames": args.frames,
        **{k: figures[k] for k in ("student_vs_ceiling", "student_vs_ceiling_min", "student_vs_teacher",
                                   "student_vs_teacher_all_frames", "teacher_rate", "online_miou", "ceiling_miou",
                                   "teacher_miou")},
        "per_domain": figures["per_domain"], "targets": judged,
        "sizing": [dataclasses.asdict(r) for r in rows], "per_net": {n: {k: v for k, v in f.items() if k != "per_domain"}
                                                                     for n, f in per_net.items()},
        "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
