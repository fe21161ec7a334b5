"""The registry of simulator world seeds: which worlds each user renders, in one place.

A world seed fixes a whole simulated world (the towns' layouts, the traffic, the weather
particles), so a figure measured on a world a model was trained on, or a threshold was tuned
on, says nothing about new streets. Every user of the simulator takes its world seeds from
here, and the ranges below never overlap (tests/sim/test_seeds.py).

Fitted on (a model or a threshold saw these worlds; :func:`training_use` names them):

================  ====================  ==========================================================
range             seeds                 used by
================  ====================  ==========================================================
TEACHER_TRAINING  0 .. 9 999            ``odistill train-teacher``: the first ``teacher_training.worlds``
                                        of them (the shipped teacher: 0 .. 127)
STUDENT_TRAINING  20 000 .. 29 999      ``odistill train-student --source sim:...``: a block of
                                        ``STUDENT_BLOCK`` worlds per training ``--seed``
                                        (:func:`student_training_worlds`; the shipped student: 20 000 .. 20 023;
                                        ``bench/ceiling.py``'s starting students of the other nets: the
                                        same worlds; its ceiling students: block ``CEILING_BLOCK``, 22 000 ..)
DRIFT_TUNING      30 000 .. 30 999      ``bench/drift.py --tune``: the grid search of the drift thresholds
                                        (tours: 30 000 ..; the long drift streams' detectors: 30 100 ..,
                                        ``DRIFT_STREAM_TUNING``)
ROBUST_TUNING     31 000 .. 31 999      ``bench/robustness.py --tune``: the robust distillation settings
                                        were chosen on these worlds
STATIC_TUNING     32 000 .. 32 999      the temporally correlated streams (stops at lights) the
                                        anti-collapse settings were chosen on
================  ====================  ==========================================================

Held out (never fitted on; scores are measured here):

===================  ====================  =======================================================
name                 seeds                 used by
===================  ====================  =======================================================
TEACHER_EVALUATION   10 000 .. 19 999      ``odistill eval-teacher`` (default: its first seed) and
                                           the held-out score at the end of ``train-teacher``
HELD_OUT             100 000 .. 199 999    runs and benchmarks; the named seeds below lie in it
DEFAULT_RUN_SEED     100 000               ``run.seed``'s default (``odistill run``): the world
                                           one looks at while developing
TOUR_BENCH           100 101 .. 100 103    ``bench/tour.py``: the default tour re-measured
DRIFT_REPORT         100 201 .. 100 206    ``bench/drift.py``'s report of the shipped drift thresholds
RENDER_BENCH         100 301               ``bench/sim_render.py``'s frames-per-second world
ROBUSTNESS_BENCH     100 401               ``bench/robustness.py``: plain vs robust online distillation
DRIFT_STREAMS        100 501 .. 100 512    ``bench/drift.py --streams``: the long drift streams every
                                           detector and signal (ours and River's) is reported on
                                           (100 501 .. 100 505 were looked at while the detectors
                                           were built; the report is on 100 506 .. 100 509, and
                                           100 510 .. 100 512 are kept unseen for a later one)
TEACHER_BUDGET_BENCH 100 601               ``bench/teacher_budget.py``: the schedulers against fixed rates
                                           and the JITNet-style policy
FORGETTING_BENCH     100 701               ``bench/forgetting.py``: the tour twice over
FORGETTING_PROBES    100 711               ``bench/forgetting.py``: each domain's fixed probe frames
CEILING_BENCH        100 801               ``bench/ceiling.py``: the online students against their offline
                                           ceilings and the teacher (the sizing table's mIoU)
MULTITASK_BENCH      100 901               ``bench/multitask.py``: segmentation + depth against
                                           segmentation alone
FEATURE_BENCH        100 921               ``bench/feature_distill.py``: feature distillation against
                                           logits only
CONFIDENCE_BENCH     100 951               ``bench/teacher_confidence.py``: confidence-weighted and
                                           test-time-averaged teacher labels on the hard domains
STATIC_BENCH         100 981 .. 100 983    ``bench/static.py``: temporally correlated streams (stops at
                                           lights), the online student against a frozen copy
CLOSED_LOOP_BENCH    100 991 .. 100 992    ``bench/closed_loop.py``: the lane keeper on ground truth, the
                                           shipped student (online, frozen) and a random student
GATE_SET             100 971 .. 100 972    ``odistill registry gate``: the promotion gate's frames (kept aside
                                           from every training run; candidates and the deployed version
                                           are scored on them)
SCENARIO_WORLDS      101 000 .. 101 999    the scenario suites (``scenarios/*.toml``, ``odistill sim-test``):
                                           a scenario's ``seeds`` must lie here (or elsewhere in HELD_OUT)
===================  ====================  =======================================================

The default run's world is not a benchmark world: a setting chosen by looking at the default
run is then still reported on worlds it was not chosen on.

Example:
    >>> teacher_training_worlds(3), student_training_worlds(seed=1, count=2)
    ([0, 1, 2], [21000, 21001])
    >>> training_use(5), training_use(30_002), training_use(DEFAULT_RUN_SEED)
    ('TEACHER_TRAINING', 'DRIFT_TUNING', None)
    >>> teacher_training_worlds(20_000)
    Traceback (most recent call last):
    ...
    ValueError: teacher_training.worlds must be <= 10000 (the TEACHER_TRAINING world seeds of sim.seeds), got 20000
"""
from __future__ import annotations

TEACHER_TRAINING = range(0, 10_000)
TEACHER_EVALUATION = range(10_000, 20_000)
STUDENT_TRAINING = range(20_000, 30_000)
STUDENT_BLOCK = 1000  # worlds reserved for each train-student --seed inside STUDENT_TRAINING
DRIFT_TUNING = range(30_000, 31_000)
ROBUST_TUNING = range(31_000, 32_000)
STATIC_TUNING = range(32_000, 33_000)

HELD_OUT = range(100_000, 200_000)
DEFAULT_RUN_SEED = 100_000
TOUR_BENCH = (100_101, 100_102, 100_103)
DRIFT_REPORT = (100_201, 100_202, 100_203, 100_204, 100_205, 100_206)
RENDER_BENCH = (100_301,)
ROBUSTNESS_BENCH = (100_401,)
DRIFT_STREAMS = tuple(range(100_501, 100_513))
TEACHER_BUDGET_BENCH = (100_601,)
FORGETTING_BENCH = (100_701,)
FORGETTING_PROBES = (100_711,)
CEILING_BENCH = (100_801,)
MULTITASK_BENCH = (100_901,)
FEATURE_BENCH = (100_921,)
CONFIDENCE_BENCH = (100_951,)
STATIC_BENCH = (100_981, 100_982, 100_983)
CLOSED_LOOP_BENCH = (100_991, 100_992)
GATE_SET = (100_971, 100_972)
SCENARIO_WORLDS = range(101_000, 102_000)
CEILING_BLOCK = 2  # the STUDENT_TRAINING block (train-student --seed) bench/ceiling.py's ceiling students learn on
DRIFT_STREAM_TUNING = range(30_100, 30_200)  # inside DRIFT_TUNING: the long streams' detectors are tuned here

FITTED: dict[str, range] = {
    "TEACHER_TRAINING": TEACHER_TRAINING, "STUDENT_TRAINING": STUDENT_TRAINING, "DRIFT_TUNING": DRIFT_TUNING,
    "ROBUST_TUNING": ROBUST_TUNING, "STATIC_TUNING": STATIC_TUNING,
}  # the ranges some model or threshold was fitted on
EVALUATION: dict[str, range | tuple[int, ...]] = {
    "TEACHER_EVALUATION": TEACHER_EVALUATION, "HELD_OUT": HELD_OUT, "DEFAULT_RUN_SEED": (DEFAULT_RUN_SEED,),
    "TOUR_BENCH": TOUR_BENCH, "DRIFT_REPORT": DRIFT_REPORT, "RENDER_BENCH": RENDER_BENCH,
    "ROBUSTNESS_BENCH": ROBUSTNESS_BENCH, "DRIFT_STREAMS": DRIFT_STREAMS,
    "TEACHER_BUDGET_BENCH": TEACHER_BUDGET_BENCH, "FORGETTING_BENCH": FORGETTING_BENCH,
    "FORGETTING_PROBES": FORGETTING_PROBES, "CEILING_BENCH": CEILING_BENCH,
    "MULTITASK_BENCH": MULTITASK_BENCH, "FEATURE_BENCH": FEATURE_BENCH, "CONFIDENCE_BENCH": CONFIDENCE_BENCH,
    "STATIC_BENCH": STATIC_BENCH, "CLOSED_LOOP_BENCH": CLOSED_LOOP_BENCH, "GATE_SET": GATE_SET,
    "SCENARIO_WORLDS": SCENARIO_WORLDS,
}  # the seeds scores are measured on


def training_use(seed: int) -> str | None:
    """The name of the fitted range (:data:`FITTED`) world ``seed`` lies in, or None when it is held out."""
    for name, seeds in FITTED.items():
        if seed in seeds:
            return name
    return None


def teacher_training_worlds(count: int) -> list[int]:
    """The world seeds ``train-teacher`` renders for ``teacher_training.worlds = count``."""
    if count > len(TEACHER_TRAINING):
        raise ValueError(f"teacher_training.worlds must be <= {len(TEACHER_TRAINING)} "
                         f"(the TEACHER_TRAINING world seeds of sim.seeds), got {count}")
    return list(TEACHER_TRAINING[:count])


def student_training_worlds(seed: int, count: int) -> list[int]:
    """The world seeds ``train-student --seed seed`` renders from the simulator: ``count`` worlds
    of the ``seed``-th block of :data:`STUDENT_BLOCK` in :data:`STUDENT_TRAINING`."""
    blocks = len(STUDENT_TRAINING) // STUDENT_BLOCK
    if not 0 <= seed < blocks:
        raise ValueError(f"train-student --seed must be in [0, {blocks}) with a sim source "
                         f"(one block of STUDENT_TRAINING world seeds each, sim.seeds), got {seed}")
    if count > STUDENT_BLOCK:
        raise ValueError(f"student_training.worlds must be <= {STUDENT_BLOCK} with a sim source "
                         f"(a block of STUDENT_TRAINING world seeds, sim.seeds), got {count}")
    start = STUDENT_TRAINING.start + seed * STUDENT_BLOCK
    return list(range(start, start + count))


def take(seeds: range | tuple[int, ...], count: int, name: str) -> list[int]:
    """The first ``count`` seeds of a registry range, or an error naming it when it has fewer.

    Example:
        >>> take(DRIFT_REPORT, 2, "DRIFT_REPORT")
        [100201, 100202]
    """
    if not 0 < count <= len(seeds):
        raise ValueError(f"{name} has {len(seeds)} world seeds (sim.seeds), asked for {count}")
    return list(seeds[:count])
