"""The Ray runner: same metrics as the in-process runner, and a crashed learner comes back."""
from __future__ import annotations

import json

import pytest

from stream.config import load_config
from stream.pipeline import run_local

pytestmark = pytest.mark.ray


def config(tmp_path, name, *extra):
    return load_config(None, ["run.frames=120", f"run.out={tmp_path / name}", "evaluator.window=30", "run.torch_threads=1",
                              "learner.checkpoint_every=40", *extra])


def test_ray_runner_matches_in_process_runner(tmp_path, ray_session):
    from stream.actors import run_ray

    local = run_local(config(tmp_path, "local"), progress=False)
    remote = run_ray(config(tmp_path, "ray", "run.runner=ray"), progress=False)
    for key in ("frames", "teacher_calls", "student_miou", "teacher_miou", "student_vs_teacher_miou", "drift_events", "true_shifts"):
        assert remote[key] == local[key], key
    assert remote["per_domain"] == local["per_domain"]
    assert set(remote["peak_rss_mb_by_process"]) == {"driver", "ingest", "teacher", "learner", "evaluator"}


def test_crashed_learner_resumes_from_checkpoint(tmp_path, ray_session):
    from stream.actors import run_ray

    clean = run_local(config(tmp_path, "clean"), progress=False)
    crashed = run_ray(config(tmp_path, "crash", "run.runner=ray"), progress=False, crash_learner_at=70)
    events = [json.loads(line) for line in (tmp_path / "crash" / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "actor_restart" for e in events)
    assert crashed["frames"] == 120
    # resumed from the frame-40 checkpoint and replayed deterministically: nothing lost, nothing counted twice
    assert crashed["student_miou"] == clean["student_miou"]
    assert crashed["per_domain"] == clean["per_domain"]
