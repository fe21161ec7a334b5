"""sim-test: criteria judged on measured figures, errors isolated per scenario, the table, JUnit XML, exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.cli import main
from stream.scenarios import load_scenario
from stream.simtest import ScenarioResult, forgetting, judge, measure, results_table, run_scenario, write_junit

FROZEN = """description = "a frozen student, day into fog: fast (no teacher, no learning)"
frames = {frames}
seeds = [101901]

[student]
weights = "{weights}"
learn = false

[world]
width = 64
height = 32

[[schedule]]
at = 0
weather = "clear"
town = "oldtown"
[[schedule]]
at = {half}
weather = "fog"

[criteria]
min_miou = {{ all = {low} }}
max_teacher_rate = 0.0

[config]
"evaluator.robust_every" = 0
"""


def scenario_file(folder: Path, name: str, frames: int = 24, weights: str = "default", low: float = 0.0) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(FROZEN.format(frames=frames, half=frames // 2, weights=weights, low=low))
    return path


def test_judge_names_each_broken_criterion_with_measured_and_required():
    criteria = {"min_miou": {"all": 0.5, "fog@oldtown": 0.4}, "max_drift_delay": 30, "max_teacher_rate": 0.2,
                "min_robust_miou": 0.1, "max_seconds_off_road": 0.0, "min_car_clearance_m": 0.5}
    measured = {"min_miou": {"all": 0.55, "fog@oldtown": 0.35}, "max_drift_delay": "missed", "max_teacher_rate": 0.25,
                "min_robust_miou": None, "max_seconds_off_road": 1.5, "min_car_clearance_m": None}
    messages = [f.message for f in judge(criteria, measured, seed=7)]
    assert messages == [
        "seed 7: min_miou[fog@oldtown]: measured 0.350, required >= 0.400",
        "seed 7: max_drift_delay: measured a domain change was never detected, required <= 30",
        "seed 7: max_teacher_rate: measured 0.250, required <= 0.2",
        "seed 7: min_robust_miou: measured not measured, required >= 0.1",
        "seed 7: max_seconds_off_road: measured 1.500, required <= 0",
    ]  # no car within 50 m is no breach of the clearance
    assert judge(criteria | {"max_drift_delay": 30}, measured | {"max_drift_delay": 30, "max_teacher_rate": 0.2,
                 "min_robust_miou": 0.1, "max_seconds_off_road": 0.0, "min_miou": {"all": 0.5, "fog@oldtown": 0.4}}) == []


def test_forgetting_compares_a_return_with_the_end_of_the_first_visit():
    visits = [{"domain": "a", "tail_miou": 0.9, "head_miou": 0.2}, {"domain": "b", "tail_miou": 0.5, "head_miou": 0.3},
              {"domain": "a", "tail_miou": 0.8, "head_miou": 0.85}, {"domain": "b", "tail_miou": 0.6, "head_miou": 0.2}]
    assert forgetting(visits) == pytest.approx(0.3)  # b: 0.5 at the end of its first visit, 0.2 when it came back
    assert forgetting(visits[:2]) is None


def test_measure_reads_the_summary_the_driver_writes(tmp_path):
    scenario = load_scenario(scenario_file(tmp_path, "m"))
    summary = {"student_miou": 0.6, "per_domain": {"clear@oldtown": {"student_miou": 0.7}}, "teacher_rate": 0.1,
               "drift": {"delays": {"12": 4, "40": 9}, "missed": []}, "student_robust_miou": {"2/255": 0.4, "8/255": 0.1},
               "visits": [], "driving": {"lane_departures": 2, "seconds_off_road": 0.5, "min_car_clearance_m": 1.0}}
    measured = measure(summary, scenario)
    assert measured["min_miou"] == {"all": 0.6, "clear@oldtown": 0.7} and measured["max_drift_delay"] == 9
    assert measured["min_robust_miou"] == 0.1 and measured["max_lane_departures"] == 2
    assert measure(summary | {"drift": {"delays": {"12": 4}, "missed": [40]}}, scenario)["max_drift_delay"] == "missed"


def test_a_scenario_runs_end_to_end_and_writes_its_run_folder(tmp_path):
    scenario = load_scenario(scenario_file(tmp_path, "tiny"))
    result = run_scenario(scenario, tmp_path / "out")
    assert result.status == "passed", result
    summary = json.loads((tmp_path / "out" / "tiny" / "seed-101901" / "summary.json").read_text())
    assert summary["frames"] == 24 and summary["teacher_calls"] == 0  # frozen: the teacher is never asked
    assert [v["domain"] for v in summary["visits"]] == ["clear@oldtown", "fog@oldtown"]
    assert result.measured["101901"]["min_miou"]["all"] == summary["student_miou"]


def test_a_student_file_with_wrong_shapes_is_an_error_and_the_suite_goes_on(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    save_file({"conv.weight": torch.zeros(3, 3)}, str(tmp_path / "wrong.safetensors"))
    scenario_file(tmp_path, "a_broken", weights="wrong.safetensors")
    scenario_file(tmp_path, "b_fine")
    (tmp_path / "c_unreadable.toml").write_text("frames = 10\nseeds = [101902]\ncolour = 'red'\n")
    junit = tmp_path / "junit.xml"
    code = main(["sim-test", str(tmp_path), "--junit", str(junit), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1
    assert "3 scenarios: 1 passed, 0 failed, 2 errors" in out
    broken = f"{tmp_path / 'a_broken.toml'}:6: student.weights:"
    assert f"ERROR  a_broken: {broken}" in out and "wrong.safetensors" in out
    assert f"ERROR  c_unreadable: {tmp_path / 'c_unreadable.toml'}:3: unknown key 'colour'" in out
    from junitparser import Error, JUnitXml

    cases = {case.name: case for suite in JUnitXml.fromfile(str(junit)) for case in suite}
    assert set(cases) == {"a_broken", "b_fine", "c_unreadable"}
    assert cases["b_fine"].is_passed
    assert isinstance(cases["a_broken"].result[0], Error) and broken in cases["a_broken"].result[0].message
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [s["status"] for s in results["scenarios"]] == ["error", "passed", "error"]


def test_a_failed_criterion_fails_the_command_and_reads_as_a_junit_failure(tmp_path, capsys):
    scenario_file(tmp_path, "strict", low=0.99)
    junit = tmp_path / "junit.xml"
    assert main(["sim-test", str(tmp_path / "strict.toml"), "--junit", str(junit), "--out", str(tmp_path / "o")]) == 1
    out = capsys.readouterr().out
    assert "FAILED strict: seed 101901: min_miou[all]: measured" in out and "required >= 0.990" in out
    from junitparser import Failure, JUnitXml

    case = next(iter(next(iter(JUnitXml.fromfile(str(junit))))))
    assert [type(r) for r in case.result] == [Failure] and "required >= 0.990" in case.result[0].message
    assert main(["sim-test", str(tmp_path / "strict.toml"), "--out", str(tmp_path / "o2"), "--set",
                 "learner.frozen=true", "--short"]) == 2  # --short leaves nothing to run


def test_the_table_and_junit_cover_every_status(tmp_path):
    results = [ScenarioResult("ok", "s/ok.toml", "passed", seeds=[1], measured={"1": {"min_miou": {"all": 0.7},
               "max_teacher_rate": 0.1, "max_drift_delay": 3}}, wall_s=2.0, frames=10),
               ScenarioResult("bad", "s/bad.toml", "failed", seeds=[1], failures=["seed 1: x: measured 2, required <= 1"],
                              measured={"1": {"min_miou": {"all": 0.2}, "max_drift_delay": "missed"}}),
               ScenarioResult("err", "s/err.toml", "error", error="s/err.toml:3: unknown key")]
    table = results_table(results, wall_s=5.0)
    assert "3 scenarios: 1 passed, 1 failed, 1 errors in 5 s" in table and "missed" in table
    from junitparser import JUnitXml

    suite = next(iter(JUnitXml.fromfile(str(write_junit(results, tmp_path / "j.xml")))))
    assert (suite.tests, suite.failures, suite.errors) == (3, 1, 1)
