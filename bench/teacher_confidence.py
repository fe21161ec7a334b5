"""Benchmark: where the teacher itself is unsure (night, fog), weigh its labels by its confidence
and average it over test-time views; teacher and student mIoU on the hard domains, with and without.

The stream is the default tour (clear -> fog -> night in oldtown, rain -> snow -> clear in
newtown), ``--frames`` frames, on the held-out world ``sim.seeds.CONFIDENCE_BENCH``, with the
shipped sim teacher and student. The hard domains are the tour's domains whose weather is one of
:data:`HARD_WEATHERS` (night, fog: checked against the sim's weather list), where the teacher is
least sure of itself.

(a) The teacher alone, plain and with test-time augmentation (``teacher.tta``, default
``flip+scales``: 0.75x, 1x and 1.25x, each plain and mirrored), on the same frames (every
``--teacher-every``-th frame of the stream), scored against the sim's ground truth on the
evaluator side: mIoU overall and per domain, and the teacher's milliseconds per frame (median of
one-frame calls, the way the online teacher part calls it).

(b) The online student, four learners on the same stream and pipeline
(:func:`stream.local.run_local`), differing only in:

- ``baseline``: the default learner and teacher;
- ``confidence``: ``distill.confidence_weighting`` (``--weighting``, default entropy): each
  pixel of the hard- and soft-label losses weighed by the teacher's confidence;
- ``tta``: the teacher averaged over the test-time views;
- ``both``: the two together.

Per learner: the student's prequential mIoU against the ground truth overall and per domain,
the student/teacher ratio (the summary's, on the frames its own teacher labelled), the student
over the plain teacher's mIoU of (a), the teacher rate, and the teacher's milliseconds per call
inside the run. ``*_miou_hard`` figures are the mean of the per-domain mIoUs over the hard
domains.

    .venv/bin/python bench/teacher_confidence.py [--frames 1800] [--teacher-every 4] [--tta flip+scales]
        [--scales 0.75,1,1.25] [--weighting entropy] [--runs baseline,confidence,tta,both] [--out runs/bench-confidence]

Writes ``teacher_confidence.png`` into ``--out``; the last line printed is one JSON object
(``teacher_miou_hard``, ``student_miou_hard``, ``teacher_ms_per_frame``, ``per_domain``, ...).
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from perception.teachers import TTA_MODES  # noqa: E402
from sim.seeds import CONFIDENCE_BENCH, training_use  # noqa: E402
from sim.weather import WEATHER_NAMES  # noqa: E402
from stream.config import RunConfig, load_config  # noqa: E402

HARD_WEATHERS = ("night", "fog")  # the sim's weathers where the teacher is least sure of itself
RUNS = ("baseline", "confidence", "tta", "both")
WEIGHTINGS = ("maxprob", "entropy")

log = logging.getLogger("bench.teacher_confidence")


def hard_domains(domains: list[str]) -> list[str]:
    """The domains (``weather@town``) whose weather is one of :data:`HARD_WEATHERS`, in order.

    Example:
        >>> hard_domains(["clear@oldtown", "fog@oldtown", "night@oldtown", "rain@newtown"])
        ['fog@oldtown', 'night@oldtown']
    """
    return [d for d in domains if d.partition("@")[0] in HARD_WEATHERS]


def mean_over(per_domain: dict[str, float | None], domains: list[str]) -> float | None:
    """The mean of the figures of ``domains`` that were measured (None when none was).

    Example:
        >>> mean_over({"a": 0.5, "b": 0.7, "c": None}, ["a", "b", "c"]), mean_over({}, ["a"])
        (0.6, None)
    """
    values = [per_domain[d] for d in domains if per_domain.get(d) is not None]
    return float(np.mean(values)) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


class TimedTeacher:
    """A teacher whose ``label`` calls are timed (wall milliseconds per call); every other
    attribute is the wrapped teacher's."""

    def __init__(self, teacher: Any) -> None:
        self.teacher = teacher
        self.ms: list[float] = []

    def __getattr__(self, name: str) -> Any:
        if name == "teacher":
            raise AttributeError(name)
        return getattr(self.teacher, name)

    def label(self, images: np.ndarray) -> Any:
        started = time.perf_counter()
        out = self.teacher.label(images)
        self.ms.append((time.perf_counter() - started) * 1000.0 / max(1, len(images)))
        return out

    def median_ms(self) -> float | None:
        return float(statistics.median(self.ms)) if self.ms else None


# -- (a) the teacher alone ----------------------------------------------------------------------
def score_teachers(config: RunConfig, tta: list[str], every: int) -> dict[str, dict[str, Any]]:
    """The plain and the TTA teacher on the same frames (every ``every``-th frame of the run's
    stream), scored against the ground truth: mIoU overall and per domain, median ms per frame."""
    import dataclasses

    import torch

    from perception.evaluator import StreamingEvaluator
    from stream.builders import build_teacher
    from stream.sources.sim import SimSource

    torch.set_num_threads(config.run.inference_threads())
    teachers = {"plain": TimedTeacher(build_teacher(config)),
                "tta": TimedTeacher(build_teacher(dataclasses.replace(config, teacher=load_config(None, tta).teacher)))}
    evaluators = {name: StreamingEvaluator(config.evaluator) for name in teachers}
    source = SimSource(config.sim, seed=config.run.seed, frames=config.run.frames, schedule="tour")
    try:
        for frame in source:
            if frame.index % every != every // 2 or frame.label is None:
                continue
            for name, teacher in teachers.items():
                labels = teacher.label(frame.image[None]).labels[0]  # (H, W)
                evaluators[name].update(frame.domain, labels, ground_truth=frame.label)
    finally:
        source.close()
    out = {}
    for name, evaluator in evaluators.items():
        summary = evaluator.summary()
        out[name] = {"miou": summary["student_miou"], "frames": summary["frames"],
                     "per_domain": {d: s["student_miou"] for d, s in summary["per_domain"].items()},
                     "ms_per_frame": teachers[name].median_ms(), "name": teachers[name].name}
    return out


# -- (b) the online student ---------------------------------------------------------------------
def online_run(name: str, config: RunConfig) -> dict[str, Any]:
    """One learner's run (its own teacher, timed); its per-domain figures."""
    from stream.builders import build_teacher
    from stream.local import run_local

    teacher = TimedTeacher(build_teacher(config))
    started = time.perf_counter()
    summary = run_local(config, progress=False, teacher=teacher)
    print(f"{name}: {summary['frames']} frames in {time.perf_counter() - started:.0f} s; student mIoU "
          f"{summary['student_miou']:.4f}, teacher rate {summary['teacher_rate']:.3f}, teacher "
          f"{teacher.median_ms() or 0.0:.1f} ms per call", flush=True)
    return {
        "student_miou": summary["student_miou"], "student_teacher_ratio": summary["student_teacher_ratio"],
        "teacher_rate": summary["teacher_rate"], "teacher_calls": summary["teacher_calls"],
        "teacher_ms_per_call": teacher.median_ms(), "wall_s": summary["wall_s"],
        "per_domain": {d: {"student_miou": s["student_miou"], "student_teacher_ratio": s["student_teacher_ratio"],
                           "frames": s["frames"]} for d, s in summary["per_domain"].items()},
    }


def run_overrides(name: str, tta: list[str], weighting: list[str]) -> list[str]:
    """The overrides that make learner ``name`` (one of :data:`RUNS`).

    Example:
        >>> run_overrides("both", ["teacher.tta=flip"], ["distill.confidence_weighting=entropy"])
        ['distill.confidence_weighting=entropy', 'teacher.tta=flip']
    """
    return {"baseline": [], "confidence": weighting, "tta": tta, "both": weighting + tta}[name]


# -- figures, table, plot -----------------------------------------------------------------------
def figures(teachers: dict[str, dict[str, Any]], runs: dict[str, dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """Everything the bench reports, from the teacher scores and the runs' figures."""
    domains = list(teachers["plain"]["per_domain"])
    for row in runs.values():
        domains += [d for d in row["per_domain"] if d not in domains]
    hard = hard_domains(domains)
    plain_teacher = teachers["plain"]["per_domain"]
    per_domain: dict[str, dict[str, Any]] = {}
    for domain in domains:
        entry: dict[str, Any] = {"hard": domain in hard,
                                 "teacher_plain": plain_teacher.get(domain),
                                 "teacher_tta": teachers["tta"]["per_domain"].get(domain)}
        for name, row in runs.items():
            scores = row["per_domain"].get(domain, {})
            entry[f"student_{name}"] = scores.get("student_miou")
            entry[f"ratio_{name}"] = scores.get("student_teacher_ratio")
            entry[f"vs_plain_teacher_{name}"] = ratio(scores.get("student_miou"), plain_teacher.get(domain))
        per_domain[domain] = entry
    student_hard = {name: mean_over({d: s["student_miou"] for d, s in row["per_domain"].items()}, hard)
                    for name, row in runs.items()}
    teacher_hard = {name: mean_over(t["per_domain"], hard) for name, t in teachers.items()}
    return {
        "settings": settings,
        "hard_domains": hard,
        "teacher_miou_hard": teacher_hard,
        "teacher_miou": {name: t["miou"] for name, t in teachers.items()},
        "teacher_ms_per_frame": {name: t["ms_per_frame"] for name, t in teachers.items()},
        "teacher_tta_cost": ratio(teachers["tta"]["ms_per_frame"], teachers["plain"]["ms_per_frame"]),
        "teacher_tta_gain_hard": (None if None in teacher_hard.values() else teacher_hard["tta"] - teacher_hard["plain"]),
        "student_miou_hard": student_hard,
        "student_miou": {name: row["student_miou"] for name, row in runs.items()},
        "student_gain_hard": {name: (None if v is None or student_hard.get("baseline") is None
                                     else v - student_hard["baseline"]) for name, v in student_hard.items()},
        "student_teacher_ratio_hard": {name: mean_over({d: s["student_teacher_ratio"] for d, s in row["per_domain"].items()}, hard)
                                       for name, row in runs.items()},
        "student_vs_plain_teacher_hard": {name: ratio(v, teacher_hard["plain"]) for name, v in student_hard.items()},
        "student_teacher_ratio": {name: row["student_teacher_ratio"] for name, row in runs.items()},
        "teacher_rate": {name: row["teacher_rate"] for name, row in runs.items()},
        "teacher_ms_per_call_online": {name: row["teacher_ms_per_call"] for name, row in runs.items()},
        "per_domain": per_domain,
        "runs": runs,
        "teachers": teachers,
    }


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def print_table(result: dict[str, Any]) -> None:
    runs = list(result["student_miou"])
    print(f"\nteacher on the same frames ({result['teachers']['plain']['frames']} frames): plain "
          f"{_fmt(result['teacher_ms_per_frame']['plain'], 1)} ms/frame, TTA {_fmt(result['teacher_ms_per_frame']['tta'], 1)} "
          f"ms/frame ({_fmt(result['teacher_tta_cost'], 2)}x)")
    header = f"{'domain':>14} {'hard':>4} {'T plain':>8} {'T tta':>8} " + " ".join(f"{'S ' + n:>12}" for n in runs)
    print(header)
    for domain, row in result["per_domain"].items():
        print(f"{domain:>14} {'*' if row['hard'] else '':>4} {_fmt(row['teacher_plain']):>8} {_fmt(row['teacher_tta']):>8} "
              + " ".join(f"{_fmt(row.get('student_' + n)):>12}" for n in runs))
    print(f"{'hard mean':>14} {'':>4} {_fmt(result['teacher_miou_hard']['plain']):>8} {_fmt(result['teacher_miou_hard']['tta']):>8} "
          + " ".join(f"{_fmt(result['student_miou_hard'][n]):>12}" for n in runs))
    print(f"{'all frames':>14} {'':>4} {_fmt(result['teacher_miou']['plain']):>8} {_fmt(result['teacher_miou']['tta']):>8} "
          + " ".join(f"{_fmt(result['student_miou'][n]):>12}" for n in runs))
    print(f"{'S/T hard':>14} {'':>4} {'':>8} {'':>8} " + " ".join(f"{_fmt(result['student_teacher_ratio_hard'][n], 3):>12}" for n in runs))
    print(f"{'T ms/call':>14} {'':>4} {'':>8} {'':>8} " + " ".join(f"{_fmt(result['teacher_ms_per_call_online'][n], 1):>12}" for n in runs))
    for name in runs:
        gain = result["student_gain_hard"][name]
        print(f"  {name}: student mIoU on the hard domains {_fmt(result['student_miou_hard'][name])} "
              f"({'n/a' if gain is None else f'{100 * gain:+.2f}'} points vs baseline), "
              f"student/teacher {_fmt(result['student_teacher_ratio_hard'][name], 3)} (own teacher), "
              f"{_fmt(result['student_vs_plain_teacher_hard'][name], 3)} (plain teacher)")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(result["per_domain"])
    runs = list(result["student_miou"])
    x = np.arange(len(domains))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    for i, (key, label) in enumerate((("teacher_plain", "plain"), ("teacher_tta", "TTA"))):
        left.bar(x + (i - 0.5) * 0.38, [result["per_domain"][d][key] or 0.0 for d in domains], 0.38, label=label)
    left.set_title(f"teacher mIoU per domain (TTA {result['teacher_tta_cost'] or 0:.1f}x the ms)")
    width = 0.8 / max(1, len(runs))
    for i, name in enumerate(runs):
        right.bar(x + (i - (len(runs) - 1) / 2) * width, [result["per_domain"][d].get(f"student_{name}") or 0.0 for d in domains],
                  width, label=name)
    right.set_title("online student mIoU per domain")
    for axis in (left, right):
        axis.set_xticks(x, [f"{d}{' *' if result['per_domain'][d]['hard'] else ''}" for d in domains], rotation=20, fontsize=8)
        axis.set_ylabel("mIoU vs ground truth")
        axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    fig.suptitle("hard domains (*): " + ", ".join(result["hard_domains"]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1800, help="frames of the tour (every domain gets a sixth)")
    parser.add_argument("--teacher-every", type=int, default=4, help="(a) scores the teachers on every N-th frame")
    parser.add_argument("--tta", default="flip+scales", choices=[m for m in TTA_MODES if m != "none"])
    parser.add_argument("--scales", default="0.75,1,1.25", help="teacher.tta_scales")
    parser.add_argument("--weighting", default="entropy", choices=WEIGHTINGS, help="distill.confidence_weighting")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"learners, from {', '.join(RUNS)}")
    parser.add_argument("--seed", type=int, default=CONFIDENCE_BENCH[0], help="the stream's world")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override for every run")
    parser.add_argument("--out", default="runs/bench-confidence")
    args = parser.parse_args(argv)
    args.runs = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = sorted(set(args.runs) - set(RUNS))
    if unknown or not args.runs:
        parser.error(f"--runs: unknown or no learners {unknown} (choose from {', '.join(RUNS)})")
    if args.frames < 6 or args.teacher_every < 1:
        parser.error("--frames must be >= 6 (one per domain) and --teacher-every >= 1")
    if not set(HARD_WEATHERS) <= set(WEATHER_NAMES):
        parser.error(f"HARD_WEATHERS {HARD_WEATHERS} are not all sim weathers ({', '.join(WEATHER_NAMES)})")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if training_use(args.seed) is not None:
        print(f"WARNING: world {args.seed} is in {training_use(args.seed)} (sim.seeds): not held out", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tta = [f"teacher.tta={args.tta}", f"teacher.tta_scales={args.scales}"]
    weighting = [f"distill.confidence_weighting={args.weighting}"]
    base = [f"run.seed={args.seed}", f"run.frames={args.frames}", "run.source=sim:tour", "run.runner=local", *args.set]
    config = load_config(None, base + [f"run.out={out / 'teachers'}"])
    started = time.perf_counter()
    teachers = score_teachers(config, base + tta, args.teacher_every)
    print(f"teachers scored on {teachers['plain']['frames']} frames in {time.perf_counter() - started:.0f} s: plain mIoU "
          f"{teachers['plain']['miou']:.4f} ({teachers['plain']['ms_per_frame']:.1f} ms/frame), TTA "
          f"{teachers['tta']['miou']:.4f} ({teachers['tta']['ms_per_frame']:.1f} ms/frame)", flush=True)
    runs = {}
    for name in args.runs:
        run_config = load_config(None, base + run_overrides(name, tta, weighting) + [f"run.out={out / name}"])
        runs[name] = online_run(name, run_config)
    settings = {"frames": args.frames, "seed": args.seed, "teacher_every": args.teacher_every, "tta": args.tta,
                "tta_scales": args.scales, "weighting": args.weighting, "set": args.set, "hard_weathers": list(HARD_WEATHERS)}
    result = figures(teachers, runs, settings)
    print_table(result)
    try:
        plot(result, out / "teacher_confidence.png")
        print(f"plot: {out / 'teacher_confidence.png'}")
    except Exception as error:  # a broken plot must not lose the figures
        log.error("teacher_confidence.png not written: %s", error)
    (out / "teacher_confidence.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
