"""Benchmark: feature distillation against logits-only distillation (issue 12).

The same stream, starting student, teacher and seed for every arm: the default tour
(``sim:tour``, clear -> fog -> night -> rain -> snow -> clear, shortened to ``--frames``) of the
held-out world ``sim.seeds.FEATURE_BENCH``, through the whole pipeline
(:func:`stream.local.run_local`). The arms differ in one setting:

- ``logits``: the default learner, logits-only distillation (``distill.feature_weight = 0``);
- ``features_wW``: the same plus feature distillation at weight W (``--weights``): the sim
  teacher ships its ``--layer`` map pooled to stride ``--stride`` (float16), and the student's
  map of the same layer, through the learner's 1x1-conv adapter, is matched to it
  (:mod:`learners.features`).

For each arm: the student's prequential mIoU against the ground truth overall and per domain,
the student/teacher ratio (on the frames the teacher labelled), and the difference to
``logits`` (mIoU points; positive = features help). The cost: each arm's wall time, and the
milliseconds per learning step of each learner measured side by side in this process (the same
frames, the same teacher answers, alternating arms so that a busy machine slows both alike;
median over ``--cost-frames`` frames), the teacher's extra milliseconds per frame to ship
features, and the replay bytes a stored frame's features take beside its logits. With
``--workers`` > 1 the arms run at once in separate processes (their wall times then share
the machine; the per-step timing is still side by side).

    .venv/bin/python bench/feature_distill.py [--frames 1800] [--weights 1] [--layer decoder] [--stride 8]
                                              [--cost-frames 8] [--workers 1] [--out runs/bench-feature-distill]

On a machine shared with other jobs pass ``--set run.torch_threads=1``: two training threads
per process on an oversubscribed CPU ran about ten times slower here (threads waiting on
descheduled peers), one thread each did not.

The last line printed is one JSON object: per arm its figures, ``cost``, and ``headline`` (the
first feature weight against logits-only).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sim.seeds import FEATURE_BENCH, training_use  # noqa: E402
from stream.config import RunConfig, load_config  # noqa: E402

log = logging.getLogger("bench.feature_distill")


def arms(weights: list[float], layer: str, stride: int) -> dict[str, list[str]]:
    """The arms' overrides by name: logits-only first, then one per feature weight.

    Example:
        >>> arms([2.0], "decoder", 8)
        {'logits': [], 'features_w2': ['distill.feature_weight=2.0', 'distill.feature_layer=decoder', 'distill.feature_stride=8']}
    """
    out: dict[str, list[str]] = {"logits": []}
    for weight in weights:
        out[f"features_w{weight:g}"] = [f"distill.feature_weight={weight}", f"distill.feature_layer={layer}",
                                         f"distill.feature_stride={stride}"]
    return out


def figures(summary: dict[str, Any]) -> dict[str, Any]:
    """An arm's figures from its run summary: mIoU and student/teacher ratio, overall and per domain."""
    return {
        "frames": summary["frames"],
        "interrupted": summary["interrupted"],  # a run stopped early (Ctrl-C) scores the frames it did
        "student_miou": summary["student_miou"],
        "student_teacher_ratio": summary["student_teacher_ratio"],
        "teacher_miou": summary["teacher_miou_on_teacher_frames"],
        "teacher_rate": summary["teacher_rate"],
        "teacher_calls": summary["teacher_calls"],
        "wall_s": summary["wall_s"],
        "per_domain": {domain: {"student_miou": row["student_miou"], "student_teacher_ratio": row["student_teacher_ratio"],
                                "frames": row["frames"]}
                       for domain, row in summary["per_domain"].items()},
    }


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def compare(arm: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``arm`` minus ``base`` (logits-only): mIoU and ratio, overall and per domain.

    Example:
        >>> base = {"student_miou": 0.5, "student_teacher_ratio": 0.8, "per_domain": {"fog": {"student_miou": 0.4, "student_teacher_ratio": 0.7}}}
        >>> arm = {"student_miou": 0.52, "student_teacher_ratio": 0.83, "per_domain": {"fog": {"student_miou": 0.41, "student_teacher_ratio": 0.7}}}
        >>> diff = compare(arm, base)
        >>> round(diff["miou"], 4), round(diff["per_domain"]["fog"]["miou"], 4), round(diff["min_domain_miou"], 4)
        (0.02, 0.01, 0.01)
    """
    per_domain = {}
    for domain, row in arm["per_domain"].items():
        other = base["per_domain"].get(domain)
        if other is None:
            continue
        per_domain[domain] = {"miou": _difference(row["student_miou"], other["student_miou"]),
                              "ratio": _difference(row["student_teacher_ratio"], other["student_teacher_ratio"])}
    domain_deltas = [row["miou"] for row in per_domain.values() if row["miou"] is not None]
    return {"miou": _difference(arm["student_miou"], base["student_miou"]),
            "ratio": _difference(arm["student_teacher_ratio"], base["student_teacher_ratio"]),
            "min_domain_miou": min(domain_deltas) if domain_deltas else None,
            "max_domain_miou": max(domain_deltas) if domain_deltas else None,
            "per_domain": per_domain}


def step_cost(base: RunConfig, featured: RunConfig, frames: int) -> dict[str, Any]:
    """Milliseconds per learning step of the logits-only and the feature learner, side by side.

    Both learners start from the same student; each frame of the stream's start is labelled
    once by the teacher asked for features (its logits are the same as without) and learnt by
    both, in alternating order. Also the teacher's milliseconds per frame with and without
    features, and the bytes a replayed frame's features and logits take.
    """
    import numpy as np
    import torch

    from learners.online import OnlineLearner
    from stream.builders import ask_teacher_features, build_student, build_teacher
    from stream.sources.sim import SimSource

    torch.set_num_threads(base.run.inference_threads())
    plain_teacher = build_teacher(base)
    teacher = build_teacher(featured)
    ask_teacher_features(featured, teacher)
    learners = {}
    for name, config in (("logits", base), ("features", featured)):
        learners[name] = OnlineLearner(config.online, build_student(config), seed=config.run.seed,
                                       distill=config.distill, replay=config.replay, device=config.student.device)
        learners[name].train_threads = config.run.train_threads()  # as the runners train
    per_step: dict[str, list[float]] = {"logits": [], "features": []}
    teacher_ms: dict[str, list[float]] = {"logits": [], "features": []}
    source = SimSource(base.sim, seed=base.run.seed, frames=frames, schedule="tour")
    nbytes = {"logits": 0, "features": 0}
    try:
        for index, frame in enumerate(source):
            image = frame.image
            order = ("logits", "features") if index % 2 == 0 else ("features", "logits")
            for name in order:
                started = time.perf_counter()
                out = (teacher if name == "features" else plain_teacher).label(image[None])
                teacher_ms[name].append((time.perf_counter() - started) * 1000.0)
                if name == "features":
                    answer = out
            nbytes = {"logits": int(answer.logits[0].astype(np.float16).nbytes), "features": int(answer.features[0].nbytes)}
            for name in order:
                started = time.perf_counter()
                result = learners[name].learn(image, answer.labels[0], answer.logits[0], regime=0,
                                              features=answer.features[0] if name == "features" else None)
                per_step[name].append((time.perf_counter() - started) * 1000.0 / max(1.0, result["steps"]))
    finally:
        source.close()
    logits_ms, features_ms = statistics.median(per_step["logits"]), statistics.median(per_step["features"])
    return {
        "frames": len(per_step["logits"]),
        "steps_per_frame": base.online.steps_per_label,
        "logits_ms_per_step": logits_ms,
        "features_ms_per_step": features_ms,
        "step_cost_ratio": features_ms / logits_ms if logits_ms else None,
        "teacher_ms_per_frame_logits": statistics.median(teacher_ms["logits"]),
        "teacher_ms_per_frame_features": statistics.median(teacher_ms["features"]),
        "replay_bytes_per_frame_logits": nbytes["logits"],
        "replay_bytes_per_frame_features": nbytes["features"],
        "train_threads": base.run.train_threads(),
    }


def run_arm(config: RunConfig) -> dict[str, Any]:
    """One arm's run through the whole pipeline (in a worker process with ``--workers`` > 1)."""
    from stream.local import run_local

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_local(config, progress=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1800, help="frames of the tour (all six domains)")
    parser.add_argument("--weights", default="1", help="feature weights, comma-separated (an arm each)")
    parser.add_argument("--layer", default="decoder", help="distill.feature_layer of the feature arms")
    parser.add_argument("--stride", type=int, default=8, help="distill.feature_stride of the feature arms")
    parser.add_argument("--cost-frames", type=int, default=8, help="frames of the side-by-side step timing (0 = skip)")
    parser.add_argument("--seed", type=int, default=FEATURE_BENCH[0], help="the stream's world")
    parser.add_argument("--workers", type=int, default=1, help="arms run at once, each in its own process")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override for every arm")
    parser.add_argument("--out", default="runs/bench-feature-distill")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        weights = [float(w) for w in args.weights.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--weights: expected numbers separated by commas, got {args.weights!r}")
    if not weights or any(w <= 0 for w in weights):
        parser.error(f"--weights: give at least one weight > 0 (the logits-only arm is always run), got {args.weights!r}")
    if training_use(args.seed) is not None:
        print(f"WARNING: world {args.seed} is in {training_use(args.seed)} (sim.seeds): not held out", flush=True)
    base = [f"run.seed={args.seed}", f"run.frames={args.frames}", "run.source=sim:tour", *args.set]
    result: dict[str, Any] = {"settings": {"frames": args.frames, "seed": args.seed, "weights": weights, "layer": args.layer,
                                           "stride": args.stride, "set": args.set, "workers": args.workers}}
    configs = {name: load_config(None, base + extra + [f"run.out={Path(args.out) / name}"])
               for name, extra in arms(weights, args.layer, args.stride).items()}
    if args.workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
            summaries = dict(zip(configs, pool.map(run_arm, configs.values())))
    else:
        summaries = {name: run_arm(config) for name, config in configs.items()}
    for name, summary in summaries.items():
        row = figures(summary)
        result[name] = row
        print(f"{name}: {summary['frames']} frames in {row['wall_s']:.0f} s; student mIoU "
              f"{row['student_miou']:.4f}, student/teacher {row['student_teacher_ratio']:.4f} (teacher "
              f"{row['teacher_miou']:.4f}), teacher rate {row['teacher_rate']:.3f}", flush=True)
    logits = result["logits"]
    for name in list(result):
        if not name.startswith("features_w"):
            continue
        diff = result[name]["vs_logits"] = compare(result[name], logits)
        print(f"{name} vs logits: mIoU {100 * diff['miou']:+.2f} points, ratio {diff['ratio']:+.4f}; per domain:", flush=True)
        for domain, row in diff["per_domain"].items():
            ours, theirs = result[name]["per_domain"][domain], logits["per_domain"][domain]
            print(f"  {domain:>14}: {theirs['student_miou']:.4f} -> {ours['student_miou']:.4f} "
                  f"({100 * row['miou']:+.2f} points), ratio {theirs['student_teacher_ratio']} -> "
                  f"{ours['student_teacher_ratio']}", flush=True)
    first = f"features_w{weights[0]:g}"
    if args.cost_frames > 0:
        cost = step_cost(configs["logits"], configs[first], args.cost_frames)
        result["cost"] = cost
        print(f"cost: {cost['logits_ms_per_step']:.1f} ms per learning step logits-only, {cost['features_ms_per_step']:.1f} ms "
              f"with features ({cost['step_cost_ratio']:.2f}x, median of {cost['frames']} frames x "
              f"{cost['steps_per_frame']} steps, {cost['train_threads']} threads); teacher "
              f"{cost['teacher_ms_per_frame_logits']:.1f} -> {cost['teacher_ms_per_frame_features']:.1f} ms per frame; "
              f"replay {cost['replay_bytes_per_frame_features']} B of features beside "
              f"{cost['replay_bytes_per_frame_logits']} B of logits per frame", flush=True)
    result["headline"] = {
        "arm": first,
        "logits_miou": logits["student_miou"], "features_miou": result[first]["student_miou"],
        "miou_difference": result[first]["vs_logits"]["miou"],
        "logits_ratio": logits["student_teacher_ratio"], "features_ratio": result[first]["student_teacher_ratio"],
        "ratio_difference": result[first]["vs_logits"]["ratio"],
        "logits_wall_s": logits["wall_s"], "features_wall_s": result[first]["wall_s"],
        "step_cost_ratio": result.get("cost", {}).get("step_cost_ratio"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
