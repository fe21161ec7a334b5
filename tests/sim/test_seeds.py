"""The world-seed registry (sim.seeds): fitted and held-out worlds never meet, every user takes
its worlds from it, and the shipped weights were fitted on the worlds it says."""
from __future__ import annotations

import ast
import inspect
import importlib.util
import itertools
import logging
from pathlib import Path

import pytest
from safetensors import safe_open

from sim import seeds
from stream.config import ConfigError, RunConfig, apply_overrides, load_config
from stream.sources import open_source, sim_world_fitted
from stream.training import EVAL_SEED, StudentTrainingConfig, TeacherTrainingConfig, evaluate_on_sim, teacher_training_config

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "perception" / "weights"
NAMED_HELD_OUT = {"DEFAULT_RUN_SEED": (seeds.DEFAULT_RUN_SEED,), "TOUR_BENCH": seeds.TOUR_BENCH,
                  "DRIFT_REPORT": seeds.DRIFT_REPORT, "RENDER_BENCH": seeds.RENDER_BENCH,
                  "ROBUSTNESS_BENCH": seeds.ROBUSTNESS_BENCH, "DRIFT_STREAMS": seeds.DRIFT_STREAMS,
                  "TEACHER_BUDGET_BENCH": seeds.TEACHER_BUDGET_BENCH,
                  "FORGETTING_BENCH": seeds.FORGETTING_BENCH, "FORGETTING_PROBES": seeds.FORGETTING_PROBES,
                  "CEILING_BENCH": seeds.CEILING_BENCH, "MULTITASK_BENCH": seeds.MULTITASK_BENCH,
                  "FEATURE_BENCH": seeds.FEATURE_BENCH, "CONFIDENCE_BENCH": seeds.CONFIDENCE_BENCH,
                  "STATIC_BENCH": seeds.STATIC_BENCH}


def _overlap(a, b) -> set[int]:
    if isinstance(a, range) and isinstance(b, range):
        lo, hi = max(a.start, b.start), min(a.stop, b.stop)
        return set(range(lo, hi)) if lo < hi else set()
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return {s for s in small if s in large}


@pytest.mark.parametrize("first, second", itertools.combinations(seeds.FITTED, 2))
def test_fitted_ranges_are_pairwise_disjoint(first, second):
    assert not _overlap(seeds.FITTED[first], seeds.FITTED[second]), (first, second)


@pytest.mark.parametrize("fitted", list(seeds.FITTED))
@pytest.mark.parametrize("evaluated", list(seeds.EVALUATION))
def test_no_fitted_world_is_an_evaluation_world(fitted, evaluated):
    assert not _overlap(seeds.FITTED[fitted], seeds.EVALUATION[evaluated]), (fitted, evaluated)


def test_named_held_out_seeds_are_distinct_and_in_the_held_out_range():
    everything = [s for group in NAMED_HELD_OUT.values() for s in group]
    assert len(everything) == len(set(everything))
    assert all(s in seeds.HELD_OUT for s in everything)
    assert not _overlap(seeds.HELD_OUT, seeds.TEACHER_EVALUATION)
    assert all(seeds.training_use(s) is None for s in everything)


def test_training_use_names_the_range_or_none():
    assert [seeds.training_use(s) for s in (0, 9_999, 20_000, 29_999, 30_000, 30_999, 31_000, 31_999)] == [
        "TEACHER_TRAINING", "TEACHER_TRAINING", "STUDENT_TRAINING", "STUDENT_TRAINING", "DRIFT_TUNING", "DRIFT_TUNING",
        "ROBUST_TUNING", "ROBUST_TUNING"]
    assert [seeds.training_use(s) for s in (10_000, 19_999, 33_000, 100_000)] == [None] * 4
    assert seeds.training_use(32_000) == "STATIC_TUNING"


def test_the_default_run_streams_a_held_out_world():
    assert RunConfig().run.seed == seeds.DEFAULT_RUN_SEED
    assert load_config(ROOT / "configs" / "default.toml", []).run.seed == seeds.DEFAULT_RUN_SEED
    assert sim_world_fitted(RunConfig()) is None


def test_a_run_on_a_fitted_world_warns_naming_the_range(caplog):
    with caplog.at_level(logging.WARNING, logger="stream.sources"):
        open_source("sim:tour", RunConfig()).close()
        assert not caplog.records
        config = apply_overrides(RunConfig(), ["run.seed=30005"])
        assert sim_world_fitted(config) == "DRIFT_TUNING"
        open_source("sim:tour", config).close()
    assert len(caplog.records) == 1 and "run.seed=30005 is a world of DRIFT_TUNING" in caplog.text


def test_training_defaults_stay_inside_their_ranges():
    teacher = seeds.teacher_training_worlds(TeacherTrainingConfig().worlds)
    assert teacher and all(s in seeds.TEACHER_TRAINING for s in teacher)
    for seed in range(len(seeds.STUDENT_TRAINING) // seeds.STUDENT_BLOCK):
        worlds = seeds.student_training_worlds(seed, StudentTrainingConfig().worlds)
        assert len(worlds) == StudentTrainingConfig().worlds and all(s in seeds.STUDENT_TRAINING for s in worlds)
    assert EVAL_SEED in seeds.TEACHER_EVALUATION
    assert inspect.signature(evaluate_on_sim).parameters["seed"].default == EVAL_SEED


def test_training_outside_the_ranges_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"^teacher_training\.worlds must be <= 10000 \(the TEACHER_TRAINING"):
        teacher_training_config(None, ["worlds=10001"])
    with pytest.raises(ValueError, match=r"train-student --seed must be in \[0, 10\) with a sim source"):
        seeds.student_training_worlds(10, 24)
    with pytest.raises(ValueError, match=r"student_training\.worlds must be <= 1000"):
        seeds.student_training_worlds(0, 1001)
    with pytest.raises(ValueError, match=r"DRIFT_REPORT has 6 world seeds \(sim.seeds\), asked for 7"):
        seeds.take(seeds.DRIFT_REPORT, 7, "DRIFT_REPORT")


def _metadata(name: str) -> dict[str, str]:
    with safe_open(str(WEIGHTS / name), "pt") as handle:
        return handle.metadata() or {}


def _worlds(meta: dict[str, str]) -> list[int]:
    first, last = meta["world_seeds"].split("..")
    return list(range(int(first), int(last) + 1))


def test_the_shipped_teacher_was_trained_on_teacher_training_worlds():
    meta = _metadata("sim_teacher.safetensors")
    if "world_seeds" in meta:
        worlds = _worlds(meta)
    else:  # written before the registry: train-teacher then rendered worlds 0 .. worlds-1, its first worlds
        worlds = list(range(ast.literal_eval(meta["config"])["worlds"]))
    assert worlds and all(seeds.training_use(s) == "TEACHER_TRAINING" for s in worlds)
    assert worlds == seeds.teacher_training_worlds(len(worlds))


def test_the_shipped_students_were_distilled_on_student_training_worlds_or_a_log():
    for path in sorted(WEIGHTS.glob("student_*.safetensors")):
        meta = _metadata(path.name)
        if not meta["source"].startswith("sim"):
            assert "world_seeds" not in meta, path.name
            continue
        if "world_seeds" in meta:
            worlds = _worlds(meta)
        else:  # written before the registry (default worlds, seed blocks as they are now)
            worlds = seeds.student_training_worlds(int(meta["seed"]), StudentTrainingConfig().worlds)
        assert worlds and all(seeds.training_use(s) == "STUDENT_TRAINING" for s in worlds), path.name


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benches_take_their_worlds_from_the_registry():
    drift = _bench("drift")
    assert drift.TUNE_SEEDS and all(seeds.training_use(s) == "DRIFT_TUNING" for s in drift.TUNE_SEEDS)
    assert tuple(drift.REPORT_SEEDS) == seeds.DRIFT_REPORT
    assert tuple(_bench("tour").parse_args([]).seeds) == seeds.TOUR_BENCH
