"""Benchmark: teacher budget. Our scheduler against fixed-rate schedules and a JITNet-style policy.

Every policy runs the same stream through the same pipeline (:func:`stream.local.run_local`,
the driver and :class:`learners.stream_learner.StreamLearner`); only the ``[scheduler]``
section differs:

- ``fixed k``: a teacher call on every k-th frame (rate 1/k, pinned: drift changes nothing);
- ``jitnet t``: JITNet's policy (Mullapudi et al. 2019) as ``scheduler.mode = "jitnet"``: the
  stride between teacher frames in [8, 64], doubled when the student's pixel agreement with a
  teacher frame reaches ``t`` after its updates and halved otherwise, up to 8 updates on each
  teacher frame, stopping once the agreement reaches ``t``. Like ours it is given the
  pipeline's drift detection (a drift resets its stride to 8): a stronger baseline than the
  paper's;
- ``gain g``: ours, ``scheduler.mode = "gain"``: the rate follows the learning gain of a call
  (agreement after learning minus before), settling where a call buys ``g``;
- ``agreement``: the previous default (the rate steers towards pixel agreement 0.9).

For each policy: the student's prequential mIoU against the ground truth on every frame and
the teacher rate (calls per frame). Each family's points make a curve (mIoU against rate); the
figures at equal teacher calls interpolate the curves linearly in the rate, and the calls ours
needs for a given mIoU come from its efficient frontier (the best mIoU at or below each rate).

Headline (the issue's target: at equal teacher calls at least 2 mIoU points above the
JITNet-style policy, or its mIoU with at most half its calls), judged at the JITNet point of its
default threshold (``SchedulerConfig.jitnet_threshold``):

- ``jitnet_miou``: that point's mIoU; ``ours_miou``: our curve at the same teacher rate;
- ``calls_ratio_at_equal_miou``: the calls our curve needs for JITNet's mIoU / JITNet's calls.

Streams: the sim tour (``sim:tour``, all six weather-town segments, shortened to ``--frames``)
of the held-out world ``sim.seeds.TEACHER_BUDGET_BENCH``; with ``--clip`` also the 15 Hz
CamVid clip of ``bench/real_log.py`` (3 passes, ``configs/camvid.toml``, ESPNetv2 teacher,
its answers cached per frame, scored against the hand labels in CamVid's 11 classes).

    .venv/bin/python bench/teacher_budget.py [--frames 600] [--workers 2] [--clip] [--out runs/bench-budget]

Writes ``teacher_budget.png`` (one panel per stream) into ``--out``; the last line printed is
one JSON object.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from learners.scheduler import SchedulerConfig  # noqa: E402
from sim.seeds import TEACHER_BUDGET_BENCH, training_use  # noqa: E402

MIOU_MARGIN = 0.02  # at equal calls, ours at least this much above JITNet's mIoU ...
CALLS_RATIO = 0.5  # ... or JITNet's mIoU with at most this fraction of its calls
FIXED_K = (4, 8, 16, 32)
JITNET_THRESHOLDS = (0.85, 0.9, 0.95)
GAIN_TARGETS = ((0.03, 0.5), (0.05, 0.5), (0.08, 0.5), (0.12, 0.25), (0.2, 0.25), (0.2, 0.12),
                (0.2, 0.08))  # (gain_target, max_rate): a drift sends the rate to max_rate, so the low
# rates of JITNet's range (1/64 .. 1/8) need a low max_rate as well as a high gain_target
GAIN_MIN_RATE = 0.02  # ours may go as low as JITNet's (1/64 .. 1/8)
CLIP_FIXED_K = (3, 6, 12)
CLIP_JITNET_THRESHOLDS = (0.85, 0.9)
CLIP_GAIN_TARGETS = (0.02, 0.05)


@dataclass(frozen=True)
class Policy:
    family: str  # fixed | jitnet | gain | agreement
    label: str
    overrides: tuple[str, ...] = field(default_factory=tuple)


def fixed(k: int) -> Policy:
    rate = 1.0 / k
    return Policy("fixed", f"fixed k={k}", ("scheduler.mode=agreement", f"scheduler.min_rate={rate}",
                                            f"scheduler.max_rate={rate}", f"scheduler.initial_rate={rate}"))


def jitnet(threshold: float) -> Policy:
    return Policy("jitnet", f"jitnet t={threshold:g}", ("scheduler.mode=jitnet", f"scheduler.jitnet_threshold={threshold}"))


def gain(target: float, min_rate: float = GAIN_MIN_RATE, initial: float = 0.12, max_rate: float = 0.5) -> Policy:
    initial = min(initial, max_rate)
    label = f"gain g={target:g}" + ("" if max_rate == 0.5 else f" max={max_rate:g}")
    return Policy("gain", label, ("scheduler.mode=gain", f"scheduler.gain_target={target}",
                                                  f"scheduler.min_rate={min_rate}", f"scheduler.initial_rate={initial}",
                                                  f"scheduler.max_rate={max_rate}"))


def sim_policies(args: argparse.Namespace) -> list[Policy]:
    return ([fixed(k) for k in args.fixed] + [jitnet(t) for t in args.jitnet] + [gain(g, max_rate=m) for g, m in args.gain]
            + ([Policy("agreement", "agreement (old default)", ("scheduler.mode=agreement",))] if args.agreement else []))


# -- curves ------------------------------------------------------------------------------------
def curve(points: list[dict[str, Any]], family: str) -> list[tuple[float, float]]:
    """(rate, mIoU) of one family's points, by rate."""
    return sorted((p["teacher_rate"], p["student_miou"]) for p in points if p["family"] == family and p["student_miou"] is not None)


def at_rate(points: list[tuple[float, float]], rate: float) -> float | None:
    """A curve's mIoU at ``rate``, linear between its points; None outside their range.

    Example:
        >>> at_rate([(0.1, 0.5), (0.3, 0.7)], 0.2), at_rate([(0.1, 0.5), (0.3, 0.7)], 0.4)
        (0.6, None)
    """
    if not points or rate < points[0][0] - 1e-12 or rate > points[-1][0] + 1e-12:
        return None
    for (r0, m0), (r1, m1) in zip(points, points[1:]):
        if r0 <= rate <= r1:
            return m0 if r1 == r0 else m0 + (m1 - m0) * (rate - r0) / (r1 - r0)
    return points[0][1]


def rate_for(points: list[tuple[float, float]], miou: float) -> float | None:
    """The lowest rate at which a curve's efficient frontier (the best mIoU at or below each
    rate) reaches ``miou``, linear between points; None when it never does.

    Example:
        >>> rate_for([(0.1, 0.5), (0.2, 0.45), (0.3, 0.7)], 0.6)
        0.25
        >>> rate_for([(0.1, 0.5)], 0.4), rate_for([(0.1, 0.5)], 0.6)
        (0.1, None)
    """
    best, frontier = -1.0, []
    for rate, value in points:
        best = max(best, value)
        frontier.append((rate, best))
    for i, (rate, value) in enumerate(frontier):
        if value >= miou:
            if i == 0:
                return rate
            r0, m0 = frontier[i - 1]
            return round(r0 + (rate - r0) * (miou - m0) / (value - m0), 12)
    return None


def compare(points: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """The headline figures against the JITNet point of ``threshold`` (module docstring), and
    the same against every JITNet point."""
    ours = curve(points, "gain")
    rows = []
    for p in sorted((p for p in points if p["family"] == "jitnet"), key=lambda p: p["teacher_rate"]):
        ours_miou = at_rate(ours, p["teacher_rate"])
        needed = rate_for(ours, p["student_miou"])
        rows.append({"label": p["label"], "threshold": p["threshold"], "jitnet_rate": p["teacher_rate"],
                     "jitnet_miou": p["student_miou"], "ours_miou": ours_miou,
                     "miou_gain": None if ours_miou is None else ours_miou - p["student_miou"],
                     "calls_ratio_at_equal_miou": None if needed is None else needed / p["teacher_rate"],
                     # our lowest-rate point already beats it: the ratio is an upper bound
                     "calls_ratio_upper_bound": bool(ours) and needed == ours[0][0] and ours[0][1] > p["student_miou"],
                     "fixed_miou": at_rate(curve(points, "fixed"), p["teacher_rate"])})
    head = next((r for r in rows if abs(r["threshold"] - threshold) < 1e-9), None)
    if head is None:
        return {"per_jitnet": rows, "ours_miou": None, "jitnet_miou": None, "calls_ratio_at_equal_miou": None,
                "holds": False, "why": f"no JITNet point at threshold {threshold}"}
    gain_ok = head["miou_gain"] is not None and head["miou_gain"] >= MIOU_MARGIN
    calls_ok = head["calls_ratio_at_equal_miou"] is not None and head["calls_ratio_at_equal_miou"] <= CALLS_RATIO
    return {"per_jitnet": rows, "ours_miou": head["ours_miou"], "jitnet_miou": head["jitnet_miou"],
            "jitnet_rate": head["jitnet_rate"], "miou_gain": head["miou_gain"],
            "calls_ratio_at_equal_miou": head["calls_ratio_at_equal_miou"], "fixed_miou_at_jitnet_rate": head["fixed_miou"],
            "calls_ratio_upper_bound": head["calls_ratio_upper_bound"],
            "holds": bool(gain_ok or calls_ok),
            "target": f"at JITNet's calls >= {MIOU_MARGIN} mIoU above it, or its mIoU with <= {CALLS_RATIO} of its calls"}


# -- runs --------------------------------------------------------------------------------------
def run_sim_policy(policy: Policy, seed: int, frames: int, out: str) -> dict[str, Any]:
    """One policy on the sim tour (in a worker process: one torch thread)."""
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    from stream.config import load_config
    from stream.local import run_local

    folder = Path(out) / "sim" / policy.label.replace(" ", "_").replace("=", "")
    config = load_config(None, [f"run.seed={seed}", f"run.frames={frames}", f"run.out={folder}", "run.runner=local",
                                "run.torch_threads=1", *policy.overrides])
    summary = run_local(config, progress=False)
    return point(policy, config, summary)


def point(policy: Policy, config: Any, summary: dict[str, Any], miou: float | None = None) -> dict[str, Any]:
    return {"family": policy.family, "label": policy.label, "overrides": list(policy.overrides),
            "threshold": config.scheduler.jitnet_threshold if policy.family == "jitnet" else None,
            "student_miou": summary["student_miou"] if miou is None else miou,
            "teacher_rate": summary["teacher_rate"], "teacher_calls": summary["teacher_calls"],
            "frames": summary["frames"], "student_teacher_ratio": summary.get("student_teacher_ratio"),
            "wall_s": summary["wall_s"]}


def run_clip(args: argparse.Namespace) -> dict[str, Any]:
    """The policies on the 15 Hz CamVid clip, 3 passes, one cached teacher (this process)."""
    import torch

    torch.set_num_threads(1)
    from bench.real_log import (CONFIG, LOGITS_MAX_SIDE, TEACHER_SIZE, TEACHER_WEIGHTS, CachedTeacher, load_run_config,
                                open_passes, teacher_on_clip)
    from perception.teachers.espnetv2 import ESPNetv2Config, ESPNetv2Teacher
    from stream.local import run_local

    if not TEACHER_WEIGHTS.exists():
        return {"skipped": f"missing {TEACHER_WEIGHTS}"}
    teacher = CachedTeacher(ESPNetv2Teacher(ESPNetv2Config(weights=str(TEACHER_WEIGHTS), inference_size=TEACHER_SIZE,
                                                           device="cpu", batch_size=1, logits_max_side=LOGITS_MAX_SIDE)))
    clip = teacher_on_clip(teacher)
    passes = 3
    policies = ([fixed(k) for k in args.clip_fixed] + [jitnet(t) for t in args.clip_jitnet]
                + [gain(g, min_rate=0.03, initial=0.45, max_rate=0.45) for g in args.clip_gain]
                + ([Policy("agreement", "agreement (old default)", ())] if args.agreement else []))
    points = []
    for policy in policies:
        folder = Path(args.out) / "clip" / policy.label.replace(" ", "_").replace("=", "")
        config = load_run_config(CONFIG, passes, clip["frames"], str(folder), 1, list(policy.overrides))
        summary = run_local(config, progress=False, source=open_passes(passes), teacher=teacher)
        per_pass = [summary["per_domain"].get(f"pass{i + 1}", {}).get("student_miou") for i in range(passes)]
        present = [v for v in per_pass if v is not None]
        row = point(policy, config, summary, miou=sum(present) / len(present) if present else None)
        row["per_pass_miou"] = per_pass
        row["per_pass_ratio"] = [None if v is None else v / clip["miou"] for v in per_pass]
        points.append(row)
        print(f"  clip {policy.label:<24} rate {row['teacher_rate']:.3f}  mean pass mIoU {row['student_miou']:.4f}  "
              f"passes {', '.join(f'{v:.4f}' for v in present)}  ({row['wall_s']:.0f} s)", flush=True)
    return {"teacher_miou": clip["miou"], "points": points}


# -- figure ------------------------------------------------------------------------------------
COLOURS = {"fixed": "tab:gray", "jitnet": "tab:red", "gain": "tab:blue", "agreement": "tab:green"}
NAMES = {"fixed": "fixed every k-th frame", "jitnet": "JITNet-style", "gain": "ours (gain)", "agreement": "agreement (old)"}


def draw(panels: list[tuple[str, list[dict[str, Any]]]], path: Path) -> None:
    """mIoU against teacher rate, one line per family, one panel per stream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, (title, points) in zip(axes[0], panels):
        for family in ("fixed", "jitnet", "gain", "agreement"):
            rows = sorted((p for p in points if p["family"] == family and p["student_miou"] is not None),
                          key=lambda p: p["teacher_rate"])
            if not rows:
                continue
            ax.plot([p["teacher_rate"] for p in rows], [p["student_miou"] for p in rows], "o-", color=COLOURS[family],
                    label=NAMES[family])
            for p in rows:
                ax.annotate(p["label"].split(" ", 1)[-1], (p["teacher_rate"], p["student_miou"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("teacher rate (calls per frame)")
        ax.set_ylabel("student mIoU (prequential, all frames)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _f(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def report(name: str, result: dict[str, Any]) -> None:
    print(f"{name}: JITNet-style at threshold {SchedulerConfig().jitnet_threshold} (the baseline): mIoU "
          f"{_f(result['jitnet_miou'])} at rate {_f(result.get('jitnet_rate'), 3)}; ours at the same rate "
          f"{_f(result['ours_miou'])} (difference {_f(result.get('miou_gain'))}, target >= {MIOU_MARGIN}); fixed-rate at "
          f"that rate {_f(result.get('fixed_miou_at_jitnet_rate'))}; calls ours needs for JITNet's mIoU / JITNet's "
          f"{_f(result['calls_ratio_at_equal_miou'], 3)} (target <= {CALLS_RATIO}): target "
          f"{'holds' if result['holds'] else 'does NOT hold'}")
    for row in result["per_jitnet"]:
        print(f"    vs {row['label']}: rate {row['jitnet_rate']:.3f} mIoU {row['jitnet_miou']:.4f}; ours there "
              f"{_f(row['ours_miou'])}; calls ratio {_f(row['calls_ratio_at_equal_miou'], 3)}; fixed there {_f(row['fixed_miou'])}")


def parse_floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def parse_gains(text: str) -> tuple[tuple[float, float], ...]:
    """``"0.05,0.12@0.25"`` -> ((0.05, 0.5), (0.12, 0.25)): gain targets, each with its max_rate."""
    try:
        out = []
        for part in (v.strip() for v in text.split(",") if v.strip()):
            target, _, top = part.partition("@")
            out.append((float(target), float(top) if top else 0.5))
        return tuple(out)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated gain targets (optionally @max_rate), got {text!r}") from None


def parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600, help="sim tour frames (shorter than the default run's 3600 "
                                                                 "to fit 16 runs on 2 CPU cores; every segment shortened alike)")
    parser.add_argument("--seed", type=int, default=TEACHER_BUDGET_BENCH[0], help="sim world (held out)")
    parser.add_argument("--fixed", type=parse_ints, default=FIXED_K, help="fixed schedules: every k-th frame")
    parser.add_argument("--jitnet", type=parse_floats, default=JITNET_THRESHOLDS, help="JITNet-style thresholds")
    parser.add_argument("--gain", type=parse_gains, default=GAIN_TARGETS,
                        help="our gain targets, each optionally @max_rate (e.g. 0.05,0.12@0.25)")
    parser.add_argument("--merge", default=None, metavar="LOG",
                        help="add the sim points of an earlier run of this bench (its output; same --seed and --frames)")
    parser.add_argument("--no-agreement", dest="agreement", action="store_false", help="leave out the old default")
    parser.add_argument("--clip", action="store_true", help="also the 15 Hz CamVid clip (3 passes)")
    parser.add_argument("--clip-only", action="store_true", help="the CamVid clip alone (no sim runs)")
    parser.add_argument("--clip-fixed", type=parse_ints, default=CLIP_FIXED_K, help="clip: fixed schedules")
    parser.add_argument("--clip-jitnet", type=parse_floats, default=CLIP_JITNET_THRESHOLDS, help="clip: JITNet thresholds")
    parser.add_argument("--clip-gain", type=parse_floats, default=CLIP_GAIN_TARGETS, help="clip: our gain targets")
    parser.add_argument("--workers", type=int, default=2, help="sim runs in parallel (one torch thread each)")
    parser.add_argument("--out", default="runs/bench-budget")
    args = parser.parse_args(argv)
    if args.frames < 6 or args.workers < 1:
        parser.error("--frames must be >= 6 and --workers >= 1")
    if any(k < 1 for k in args.fixed):
        parser.error(f"--fixed: every k must be >= 1, got {args.fixed}")
    logging.basicConfig(level=logging.WARNING)
    fitted = training_use(args.seed)
    if fitted is not None:
        print(f"WARNING: world {args.seed} is in {fitted} (sim.seeds): its figures are not held out", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    threshold = SchedulerConfig().jitnet_threshold
    started = time.perf_counter()
    policies = [] if args.clip_only else sim_policies(args)
    points: list[dict[str, Any]] = []
    panels = []
    if policies:
        print(f"sim tour, world {args.seed}, {args.frames} frames; {len(policies)} policies, {args.workers} worker(s)",
              flush=True)
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_sim_policy, p, args.seed, args.frames, args.out) for p in policies]
            for future in futures:
                row = future.result()
                points.append(row)
                print(f"  sim {row['label']:<24} rate {row['teacher_rate']:.3f} ({row['teacher_calls']} calls)  student mIoU "
                      f"{row['student_miou']:.4f}  student/teacher {_f(row['student_teacher_ratio'], 3)}  "
                      f"({row['wall_s']:.0f} s)", flush=True)
    if args.merge:
        earlier = json.loads(Path(args.merge).read_text().strip().splitlines()[-1])
        if (earlier["seed"], earlier["frames"]) != (args.seed, args.frames):
            parser.error(f"--merge {args.merge}: seed/frames {earlier['seed']}/{earlier['frames']} differ from this run's")
        have = {p["label"] for p in points}
        merged = [p for p in earlier["sim"]["points"] if p["label"] not in have]
        points += merged
        print(f"  merged {len(merged)} points of {args.merge}: {', '.join(p['label'] for p in merged)}")
    if points:
        panels.append((f"sim tour, world {args.seed}, {args.frames} frames", points))
    sim = compare(points, threshold)
    if points:
        report("sim", sim)
    clip: dict[str, Any] = {}
    if args.clip or args.clip_only:
        clip = run_clip(args)
        if "points" in clip:
            clip.update(compare(clip["points"], threshold))
            report("clip", clip)
            panels.append(("CamVid 15 Hz clip, 3 passes (mean of the passes' mIoU)", clip["points"]))
    figure = Path(args.out) / "teacher_budget.png"
    draw(panels, figure)
    print(f"figure {figure}; {time.perf_counter() - started:.0f} s")
    head = sim if points or "ours_miou" not in clip else clip  # the headline: the sim stream's, else the clip's
    print(json.dumps({"seed": args.seed, "frames": args.frames, "headline_stream": "sim" if head is sim else "clip",
                      "ours_miou": head["ours_miou"], "jitnet_miou": head["jitnet_miou"],
                      "calls_ratio_at_equal_miou": head["calls_ratio_at_equal_miou"], "target_holds": head["holds"],
                      "sim": {**sim, "points": points}, "clip": clip,
                      "figure": str(figure)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
