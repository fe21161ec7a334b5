"""The shipped scenario suite's short scenarios from the CLI; the closed loop tells a working
student from a broken one; the Ray scenario farm gives the sequential run's figures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.cli import main
from stream.scenarios import find_scenarios, load_scenario
from stream.simtest import run_scenario, run_suite

REPO = Path(__file__).resolve().parents[2]
CLOSED_LOOP = REPO / "scenarios" / "closed_loop_oldtown.toml"


@pytest.mark.slow
def test_the_short_scenarios_pass_from_the_cli_with_junit(tmp_path, capsys):
    junit = tmp_path / "junit.xml"
    code = main(["sim-test", str(REPO / "scenarios"), "--short", "--junit", str(junit), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    short = [load_scenario(p).name for p in find_scenarios([REPO / "scenarios"]) if load_scenario(p).short]
    assert code == 0, out
    assert f"{len(short)} scenarios: {len(short)} passed, 0 failed, 0 errors" in out
    from junitparser import JUnitXml

    cases = [case for suite in JUnitXml.fromfile(str(junit)) for case in suite]
    assert sorted(case.name for case in cases) == sorted(short) and all(case.is_passed for case in cases)
    summary = json.loads(next((tmp_path / "out" / "closed_loop_oldtown").glob("seed-*/summary.json")).read_text())
    assert summary["driving"]["controlled_frames"] == summary["frames"] == load_scenario(CLOSED_LOOP).frames


@pytest.mark.slow
def test_a_broken_student_fails_the_closed_loop_scenario_the_shipped_student_passes(tmp_path):
    """Random weights, frozen so that it cannot learn its way back: its road is noise, the
    lane keeper is blind, and the car leaves the road (the shipped student passes the same
    scenario in the short-suite test above)."""
    scenario = load_scenario(CLOSED_LOOP)
    result = run_scenario(scenario, tmp_path, overrides=["student.weights=none", "learner.frozen=true",
                                                         "evaluator.robust_every=0"])
    assert result.status == "failed"
    assert any("max_seconds_off_road" in message for message in result.failures), result.failures
    driving = json.loads(next(tmp_path.glob("closed_loop_oldtown/seed-*/summary.json")).read_text())["driving"]
    assert driving["seconds_off_road"] > 0 and driving["blind_frames"] > 0.9 * driving["steered_frames"]


TINY = """frames = 30
seeds = [{seed}]
closed_loop = {closed}

[student]
learn = {learn}

[world]
width = {width}
height = {height}

[[schedule]]
at = 0
weather = "clear"
town = "oldtown"
[[schedule]]
at = 15
weather = "rain"

[criteria]
min_miou = 0.1
"""


@pytest.mark.ray
def test_the_ray_farm_gives_the_sequential_figures(tmp_path, ray_session):
    files = []
    for name, seed, closed, learn, size in (("farm_a", 101951, "false", "true", (64, 32)),
                                             ("farm_b", 101952, "true", "false", (256, 128))):
        path = tmp_path / f"{name}.toml"
        path.write_text(TINY.format(seed=seed, closed=closed, learn=learn, width=size[0], height=size[1]))
        files.append(path)
    scenarios = [load_scenario(path) for path in files]
    settings = ["evaluator.robust_every=0"]
    sequential = run_suite(scenarios, tmp_path / "local", runner="local", overrides=settings)
    farmed = run_suite(scenarios, tmp_path / "ray", runner="ray", overrides=settings)
    assert [r.status for r in sequential] == [r.status for r in farmed] == ["passed", "passed"]
    assert [r.measured for r in farmed] == [r.measured for r in sequential]
    assert [r.name for r in farmed] == ["farm_a", "farm_b"]
