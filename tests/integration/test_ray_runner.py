"""The Ray runner: same metrics as the in-process runner, and a crashed learner comes back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from stream.config import load_config
from stream.local import run_local

pytestmark = pytest.mark.ray


def config(tmp_path, name, *extra):
    return load_config(None, ["run.frames=120", f"run.out={tmp_path / name}", "evaluator.window=30",
                              "learner.checkpoint_every=40", *extra])


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The in-process run every Ray run here must reproduce (made once for the module)."""
    return run_local(config(tmp_path_factory.mktemp("local"), "local"), progress=False)


@pytest.mark.parametrize("transport", ["ring", "object_store"])
def test_ray_runner_matches_in_process_runner(tmp_path, ray_session, transport, local):
    from stream.actors import run_ray

    remote = run_ray(config(tmp_path, "ray", "run.runner=ray", f"run.transport={transport}"), progress=False)
    for key in ("frames", "teacher_calls", "student_miou", "teacher_miou_on_teacher_frames",
                "student_miou_on_teacher_frames", "student_vs_teacher_miou", "drift_events", "true_shifts"):
        assert remote[key] == local[key], key
    assert remote["per_domain"] == local["per_domain"]
    assert set(remote["peak_rss_mb_by_process"]) == {"driver", "ingest", "teacher", "learner", "evaluator"}


@pytest.mark.parametrize("transport", ["ring", "object_store"])
def test_crashed_learner_resumes_from_checkpoint(tmp_path, ray_session, transport, local):
    from stream.actors import run_ray

    clean = local
    # ring: the frames since the checkpoint are read again from the source (their slots were reused)
    crashed = run_ray(config(tmp_path, "crash", "run.runner=ray", f"run.transport={transport}"), progress=False,
                      crash_learner_at=70)
    events = [json.loads(line) for line in (tmp_path / "crash" / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "actor_restart" for e in events)
    assert crashed["frames"] == 120
    assert crashed["teacher_calls"] == clean["teacher_calls"]  # re-sent frames are not counted twice
    # resumed from the frame-40 checkpoint and replayed deterministically: nothing lost, nothing counted twice
    assert crashed["student_miou"] == clean["student_miou"]
    assert crashed["per_domain"] == clean["per_domain"]


def test_the_ray_module_wraps_the_plain_parts_and_nothing_else():
    """Each actor is ray.remote(PlainClass): no pipeline logic lives in the Ray module."""
    from stream import actors
    from stream.evaluation import FrameEvaluator
    from stream.ingest import Ingest
    from stream.parts import LearnerPart, TeacherPart

    for actor, part in ((actors.IngestActor, Ingest), (actors.TeacherActor, TeacherPart),
                        (actors.LearnerActor, LearnerPart), (actors.EvaluatorActor, FrameEvaluator)):
        assert issubclass(actor.__ray_metadata__.modified_class, part)


def test_ingest_and_evaluator_actors_never_load_torch(tmp_path, ray_session):
    """After real work, the two helper actors' processes hold no torch (see stream.actors)."""
    import ray

    from learners.records import LearnerOutput
    from stream.actors import EvaluatorActor, IngestActor

    cfg = config(tmp_path, "probe", "run.frames=8")
    ingest, evaluator = IngestActor.remote(cfg), EvaluatorActor.remote(cfg.evaluator)
    try:
        pack, truths, manifest = ingest.read.options(num_returns=3).remote(4)
        assert len(ray.get(manifest).frames) == 4
        labels = ray.get(truths)[0].label
        ray.get(evaluator.update.remote(truths, [LearnerOutput(0, labels, None)]))
        probe = eval("lambda actor: 'torch' in __import__('sys').modules")  # pickled by value, no test module
        assert ray.get([ingest.__ray_call__.remote(probe), evaluator.__ray_call__.remote(probe)]) == [False, False]
    finally:
        ray.get(ingest.close.remote())
        for actor in (ingest, evaluator):
            ray.kill(actor)
