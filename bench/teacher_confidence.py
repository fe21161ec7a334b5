"""Benchmark: where the teacher itself is unsure (night, fog), weigh its labels by its confidence
and average it over test-time views; teacher and student mIoU on the hard domains, with and without.

The stream is the default tour (clear -> fog -> night in oldtown, rain -> snow -> clear in
newtown), ``--frames`` frames, on the held-out world ``sim.seeds.CONFIDENCE_BENCH``, with the
shipped sim teacher and student. The hard domains are the tour's domains whose weather is one of
:data:`HARD_WEATHERS` (night, fog: checked against the sim's weather list), where the teacher is
least sure of itself.

(a) The teacher alone, plain and with each test-time augmentation of ``--teacher-tta``
(``teacher.tta``: ``flip``, and ``flip+scales``: 0.75x, 1x and 1.25x, each plain and
mirrored), on the same frames (every ``--teacher-every``-th frame of the stream), scored against
the sim's ground truth on the evaluator side: mIoU overall and per domain, and the teacher's
milliseconds per frame (median of one-frame calls, the way the online teacher part calls it).
``tta`` in the figures is the augmentation the students use (``--tta``, default ``flip``:
chosen on a TEACHER_EVALUATION world, 10 951, where the sim teacher, trained at one scale,
lost mIoU with the 0.75x and 1.25x views and gained with the mirror image).

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

    .venv/bin/python bench/teacher_confidence.py [--frames 1800] [--teacher-every 4] [--tta flip]
        [--teacher-tta flip,flip+scales] [--scales 0.75,1,1.25] [--weighting entropy]
        [--runs baseline,confidence,tta,both] [--reuse] [--out runs/bench-confidence]

``--reuse`` takes a learner's figures from an earlier run in ``--out`` whose resolved config is
the same (``config.json``), and the teachers' scores of (a) for the same frames and variants
(``teachers.json``), instead of measuring them again.

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
def score_teachers(config: RunConfig, variants: dict[str, list[str]], every: int) -> dict[str, dict[str, Any]]:
    """The plain teacher and each TTA variant (name -> ``teacher.*`` overrides) on the same frames
    (every ``every``-th frame of the run's stream), scored against the ground truth: mIoU overall
    and per domain, median ms per frame."""
    import dataclasses

    import torch

    from perception.evaluator import StreamingEvaluator
    from stream.builders import build_teacher
    from stream.sources.sim import SimSource

    torch.set_num_threads(config.run.inference_threads())
    teachers = {"plain": TimedTeacher(build_teacher(config))}
    for name, overrides in variants.items():
        teachers[name] = TimedTeacher(build_teacher(dataclasses.replace(config, teacher=load_config(None, overrides).teacher)))
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
def run_figures(summary: dict[str, Any], teacher_ms: float | None) -> dict[str, Any]:
    """A learner's figures from its run summary and its teacher's median ms per call."""
    return {
        "student_miou": summary["student_miou"], "student_teacher_ratio": summary["student_teacher_ratio"],
        "teacher_rate": summary["teacher_rate"], "teacher_calls": summary["teacher_calls"],
        "teacher_ms_per_call": teacher_ms, "wall_s": summary["wall_s"],
        "per_domain": {d: {"student_miou": s["student_miou"], "student_teacher_ratio": s["student_teacher_ratio"],
                           "frames": s["frames"]} for d, s in summary["per_domain"].items()},
    }


def reused_run(config: RunConfig) -> dict[str, Any] | None:
    """The figures of an earlier, finished run of exactly this config in its run folder
    (``bench_run.json``, or its ``summary.json`` without the teacher's ms), or None."""
    folder = Path(config.run.out)
    figures, summary, written = folder / "bench_run.json", folder / "summary.json", folder / "config.json"
    if not written.is_file() or json.loads(written.read_text()) != json.loads(config.to_json()):
        return None
    if figures.is_file():
        return json.loads(figures.read_text())
    if summary.is_file():
        finished = json.loads(summary.read_text())
        if finished.get("frames") == config.run.frames and not finished.get("interrupted"):
            return run_figures(finished, None)
    return None


def online_run(name: str, config: RunConfig, reuse: bool = False) -> dict[str, Any]:
    """One learner's run (its own teacher, timed); its per-domain figures (also written to the
    run folder's ``bench_run.json``)."""
    from stream.builders import build_teacher
    from stream.local import run_local

    if reuse:
        row = reused_run(config)
        if row is not None:
            print(f"{name}: reused {config.run.out} (student mIoU {row['student_miou']:.4f})", flush=True)
            return row
    teacher = TimedTeacher(build_teacher(config))
    started = time.perf_counter()
    summary = run_local(config, progress=False, teacher=teacher)
    print(f"{name}: {summary['frames']} frames in {time.perf_counter() - started:.0f} s; student mIoU "
          f"{summary['student_miou']:.4f}, teacher rate {summary['teacher_rate']:.3f}, teacher "
          f"{teacher.median_ms() or 0.0:.1f} ms per call", flush=True)
    row = run_figures(summary, teacher.median_ms())
    (Path(config.run.out) / "bench_run.json").write_text(json.dumps(row))
    return row


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
        entry: dict[str, Any] = {"hard": domain in hard}
        entry.update({f"teacher_{name}": t["per_domain"].get(domain) for name, t in teachers.items()})
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
    teachers = [n for n in result["teacher_miou"] if n != "tta"]  # "tta" repeats the students' variant
    print(f"\nteacher on the same frames ({result['teachers']['plain']['frames']} frames), ms per frame: "
          + ", ".join(f"{n} {_fmt(result['teacher_ms_per_frame'][n], 1)}" for n in teachers)
          + f"; the students' TTA ({result['settings'].get('tta')}) costs {_fmt(result['teacher_tta_cost'], 2)}x")
    blank = " ".join(f"{'':>11}" for _ in teachers)
    print(f"{'domain':>14} {'hard':>4} " + " ".join(f"{'T ' + n:>11}" for n in teachers) + " "
          + " ".join(f"{'S ' + n:>12}" for n in runs))
    for domain, row in result["per_domain"].items():
        print(f"{domain:>14} {'*' if row['hard'] else '':>4} " + " ".join(f"{_fmt(row.get('teacher_' + n)):>11}" for n in teachers)
              + " " + " ".join(f"{_fmt(row.get('student_' + n)):>12}" for n in runs))
    print(f"{'hard mean':>14} {'':>4} " + " ".join(f"{_fmt(result['teacher_miou_hard'][n]):>11}" for n in teachers) + " "
          + " ".join(f"{_fmt(result['student_miou_hard'][n]):>12}" for n in runs))
    print(f"{'all frames':>14} {'':>4} " + " ".join(f"{_fmt(result['teacher_miou'][n]):>11}" for n in teachers) + " "
          + " ".join(f"{_fmt(result['student_miou'][n]):>12}" for n in runs))
    print(f"{'S/T hard':>14} {'':>4} {blank} " + " ".join(f"{_fmt(result['student_teacher_ratio_hard'][n], 3):>12}" for n in runs))
    print(f"{'T ms/call':>14} {'':>4} {blank} " + " ".join(f"{_fmt(result['teacher_ms_per_call_online'][n], 1):>12}" for n in runs))
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
    teachers = [n for n in result["teacher_miou"] if n != "tta"]
    x = np.arange(len(domains))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    step = 0.8 / len(teachers)
    for i, name in enumerate(teachers):
        left.bar(x + (i - (len(teachers) - 1) / 2) * step, [result["per_domain"][d].get(f"teacher_{name}") or 0.0 for d in domains],
                 step, label=f"{name} ({_fmt(result['teacher_ms_per_frame'][name], 0)} ms)")
    left.set_title("teacher mIoU per domain (ms per frame)")
    lows = [v for d in domains for n in teachers if (v := result["per_domain"][d].get(f"teacher_{n}")) is not None]
    width = 0.8 / max(1, len(runs))
    for i, name in enumerate(runs):
        right.bar(x + (i - (len(runs) - 1) / 2) * width, [result["per_domain"][d].get(f"student_{name}") or 0.0 for d in domains],
                  width, label=name)
    right.set_title("online student mIoU per domain")
    lows += [v for d in domains for n in runs if (v := result["per_domain"][d].get(f"student_{n}")) is not None]
    for axis in (left, right):
        if lows:
            axis.set_ylim(max(0.0, min(lows) - 0.05), min(1.0, max(lows) + 0.03))
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
    parser.add_argument("--tta", default="flip", choices=[m for m in TTA_MODES if m != "none"],
                        help="teacher.tta of the tta and both learners")
    parser.add_argument("--teacher-tta", default="flip,flip+scales", help="(a) also scores the teacher with these")
    parser.add_argument("--reuse", action="store_true", help="reuse finished runs of the same config in --out")
    parser.add_argument("--scales", default="0.75,1,1.25", help="teacher.tta_scales")
    parser.add_argument("--weighting", default="entropy", choices=WEIGHTINGS, help="distill.confidence_weighting")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"learners, from {', '.join(RUNS)}")
    parser.add_argument("--seed", type=int, default=CONFIDENCE_BENCH[0], help="the stream's world")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override for every run")
    parser.add_argument("--out", default="runs/bench-confidence")
    args = parser.parse_args(argv)
    args.runs = [n.strip() for n in args.runs.split(",") if n.strip()]
    args.teacher_tta = [m.strip() for m in args.teacher_tta.split(",") if m.strip()]
    if set(args.teacher_tta) - set(TTA_MODES) - {"none"} or "none" in args.teacher_tta:
        parser.error(f"--teacher-tta: choose from {', '.join(m for m in TTA_MODES if m != 'none')}")
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
    def tta_overrides(mode: str) -> list[str]:
        return [f"teacher.tta={mode}", f"teacher.tta_scales={args.scales}"]

    tta = tta_overrides(args.tta)
    weighting = [f"distill.confidence_weighting={args.weighting}"]
    base = [f"run.seed={args.seed}", f"run.frames={args.frames}", "run.source=sim:tour", "run.runner=local", *args.set]
    config = load_config(None, base + [f"run.out={out / 'teachers'}"])
    started = time.perf_counter()
    modes = list(dict.fromkeys([args.tta, *args.teacher_tta]))
    variants = {mode: base + tta_overrides(mode) for mode in modes}
    cache = out / "teachers.json"  # (a)'s scores, reused (--reuse) for the same frames and variants
    key = {"config": json.loads(config.to_json()), "variants": variants, "every": args.teacher_every}
    cached = json.loads(cache.read_text()) if args.reuse and cache.is_file() else None
    if cached is not None and cached.get("key") == key:
        teachers = cached["teachers"]
        print(f"teachers: reused {cache}", flush=True)
    else:
        teachers = score_teachers(config, variants, args.teacher_every)
        cache.write_text(json.dumps({"key": key, "teachers": teachers}))
    teachers["tta"] = teachers[args.tta]  # the students' variant
    print(f"teachers scored on {teachers['plain']['frames']} frames in {time.perf_counter() - started:.0f} s: "
          + ", ".join(f"{name} mIoU {t['miou']:.4f} ({t['ms_per_frame']:.1f} ms/frame)" for name, t in teachers.items()
                      if name != "tta"), flush=True)
    runs = {}
    for name in args.runs:
        run_config = load_config(None, base + run_overrides(name, tta, weighting) + [f"run.out={out / name}"])
        runs[name] = online_run(name, run_config, reuse=args.reuse)
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
