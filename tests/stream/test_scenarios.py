"""Scenario files: what loads, and every mistake named with its file and line."""
from __future__ import annotations

from pathlib import Path

import pytest

from stream.scenarios import ScenarioError, find_scenarios, load_scenario, returning_domains

REPO = Path(__file__).resolve().parents[2]

GOOD = """description = "clear, then fog fading in, then clear again"
frames = 60
seeds = [101001, 101002]
short = true

[student]
weights = "default"
learn = false

[world]
traffic_density = 2.0

[[schedule]]
at = 0
weather = "clear"
town = "oldtown"
[[schedule]]
at = 20
weather = "fog"
fade = 10
[[schedule]]
at = 40
weather = "clear"

[criteria]
min_miou = { all = 0.5, "fog@oldtown" = 0.3 }
max_forgetting = 0.05
max_drift_delay = 30

[config]
"scheduler.max_rate" = 0.4
"""


def write(tmp_path: Path, text: str, name: str = "case.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_scenario_loads_into_a_schedule_and_run_settings(tmp_path):
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.name == "case" and scenario.seeds == (101001, 101002) and scenario.short
    schedule = scenario.schedule()
    assert [(s.domain, s.n_frames, s.ramp) for s in schedule.segments] == [
        ("clear@oldtown", 20, 0), ("fog@oldtown", 20, 10), ("clear@oldtown", 20, 0)]
    assert schedule.true_shifts == [20, 40] and scenario.domains == ["clear@oldtown", "fog@oldtown"]
    assert scenario.criteria["min_miou"] == {"all": 0.5, "fog@oldtown": 0.3}
    overrides = scenario.overrides()
    assert "learner.frozen=true" in overrides and "sim.traffic_density=2.0" in overrides
    assert "scheduler.max_rate=0.4" in overrides and "run.frames=60" in overrides


def test_a_single_number_min_miou_bounds_every_domain_and_the_whole_run(tmp_path):
    text = GOOD.replace('min_miou = { all = 0.5, "fog@oldtown" = 0.3 }', "min_miou = 0.4")
    assert load_scenario(write(tmp_path, text)).criteria["min_miou"] == {
        "all": 0.4, "clear@oldtown": 0.4, "fog@oldtown": 0.4}


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


@pytest.mark.parametrize("old, new, needle, message", [
    ("short = true", "short = true\ntrafic = 2", "trafic", "unknown key 'trafic'; valid keys: closed_loop"),
    ("traffic_density = 2.0", "trafic_density = 2.0", "trafic_density", "unknown key 'trafic_density' in [world]"),
    ("learn = false", "learn = false\nwieghts = 1", "wieghts", "unknown key 'wieghts' in [student]"),
    ("at = 40", "at = 15", "at = 15", "starts at 15, not after entry 2 (at = 20): entries overlap"),
    ("at = 20", "at = -5", "at = -5", "at = -5 is negative"),
    ("fade = 10", "fade = 30", "fade = 30", "its fade ends at frame 50, after the next change at 40: overlapping"),
    ("at = 40", "at = 60", "at = 60", "at = 60 is past the stream's end (frames = 60)"),
    ('weather = "fog"', 'weather = "smog"', '"smog"', "unknown weather 'smog'"),
    ('"fog@oldtown" = 0.3', '"fog@newtown" = 0.3', "min_miou", "names domain 'fog@newtown', which the schedule never visits"),
    ("max_drift_delay = 30", "max_drift_delay = 30\nmax_latency = 3", "max_latency", "unknown criterion 'max_latency'"),
    ("max_drift_delay = 30", "max_drift_delay = -1", "max_drift_delay", "max_drift_delay must be an int >= 0"),
    ("max_drift_delay = 30", "max_lane_departures = 0", "max_lane_departures", "measured in closed loop only"),
    ('"scheduler.max_rate" = 0.4', '"scheduler.max_rat" = 0.4', "max_rat", "[config] scheduler.max_rat"),
    ('"scheduler.max_rate" = 0.4', '"run.frames" = 10', "run.frames", "set by the scenario itself"),
    ("seeds = [101001, 101002]", "seeds = [5]", "seeds", "seed 5 is a world of TEACHER_TRAINING"),
    ('weights = "default"', 'weights = "missing.safetensors"', "weights", "student.weights: no such file"),
])
def test_each_mistake_names_the_file_and_the_line(tmp_path, old, new, needle, message):
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}:{line_of(text, needle)}: "), str(caught.value)
    assert message in str(caught.value)


def test_criteria_that_the_schedule_cannot_exercise_are_refused(tmp_path):
    one_domain = GOOD.split("[[schedule]]\nat = 20")[0] + "[criteria]\nmax_forgetting = 0.1\n"
    with pytest.raises(ScenarioError, match="needs a domain the schedule returns to"):
        load_scenario(write(tmp_path, one_domain))
    with pytest.raises(ScenarioError, match="needs a domain change"):
        load_scenario(write(tmp_path, one_domain.replace("max_forgetting = 0.1", "max_drift_delay = 10")))


def test_broken_toml_and_missing_files_are_named(tmp_path):
    with pytest.raises(ScenarioError, match=r"bad\.toml:2: not valid TOML"):
        load_scenario(write(tmp_path, 'frames = 10\nseeds = [\n', "bad.toml"))
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "absent.toml")
    with pytest.raises(ScenarioError, match="no such scenario file or folder"):
        find_scenarios([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScenarioError, match="no \\*.toml scenario files"):
        find_scenarios([tmp_path / "empty"])


def test_returning_domains_are_those_seen_again_after_another():
    scenario_entries = load_scenario_entries("clear@oldtown fog@oldtown fog@oldtown clear@oldtown night@oldtown fog@oldtown")
    assert returning_domains(scenario_entries) == ["clear@oldtown", "fog@oldtown"]


def load_scenario_entries(tags: str):
    from stream.scenarios import ScheduleEntry

    return [ScheduleEntry(i * 10, *tag.split("@")) for i, tag in enumerate(tags.split())]


def test_the_shipped_suite_loads_and_covers_what_the_issue_asks():
    scenarios = [load_scenario(path) for path in find_scenarios([REPO / "scenarios"])]
    assert len(scenarios) >= 12
    domains = {d for s in scenarios for d in s.domains}
    weathers = {d.split("@")[0] for d in domains}
    towns = {d.split("@")[1] for d in domains}
    assert weathers == {"clear", "dusk", "night", "fog", "rain", "snow"} and towns == {"oldtown", "newtown"}
    assert any(s.closed_loop for s in scenarios) and any(s.short for s in scenarios)
    assert any(s.world.get("stop_every") for s in scenarios), "a stop at a light (a long static stretch)"
    assert any(s.world.get("traffic_density", 1.0) > 1.0 for s in scenarios), "dense traffic"
    assert any(s.world.get("traffic_density") == 0 and s.world.get("pedestrian_density") == 0 for s in scenarios)
    assert any(e.fade and e.weather != "night" and s.entries[0].weather == "night" for s in scenarios for e in s.entries)
    assert len({s.name for s in scenarios}) == len(scenarios)
    seeds = [seed for s in scenarios for seed in s.seeds]
    assert len(set(seeds)) == len(seeds), "each scenario its own worlds"


def test_a_bundle_folder_names_its_weights(tmp_path):
    import json

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "student.safetensors").write_bytes(b"x")
    (bundle / "manifest.json").write_text(json.dumps({"models": {"onnx": "student.onnx", "weights": "student.safetensors"}}))
    scenario = load_scenario(write(tmp_path, GOOD.replace('weights = "default"', 'weights = "bundle"')))
    assert scenario.weights == str(bundle / "student.safetensors")
    (bundle / "manifest.json").write_text(json.dumps({"models": {"onnx": "student.onnx"}}))
    with pytest.raises(ScenarioError, match="carries no PyTorch weights"):
        load_scenario(write(tmp_path, GOOD.replace('weights = "default"', 'weights = "bundle"')))
