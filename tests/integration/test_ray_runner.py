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
    # resumed from the frame-40 checkpoint and replayed deterministically: nothing lost, nothing counted twice
    assert crashed["student_miou"] == clean["student_miou"]
    assert crashed["per_domain"] == clean["per_domain"]


def test_ingest_ring_gives_the_same_frames_and_reuses_its_slots(tmp_path, ray_session):
    import cv2
    import numpy as np
    import ray

    from stream.actors import IngestActor, PackReader
    from stream.framering import RingFrame, ring_folders, ring_name

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 16))
    for i in range(40):
        writer.write(np.full((16, 32, 3), (5 * i, 100, 200 - 4 * i), np.uint8))
    writer.release()
    name = ring_name()

    def ring_exists() -> bool:
        return any((folder / name).exists() for folder in ring_folders())

    # 8 slots for 40 frames: the decoder waits for the reader's releases and reuses slots
    cfg = load_config(None, [f"run.source=video:{path}", "run.frames=1000", "run.max_in_flight=2", "run.ring_slots=8"])
    frames: dict[str, list] = {}
    for transport in ("ring", "object_store"):
        actor = IngestActor.remote(cfg, transport=transport, ring=name)
        packs, got = PackReader(), []
        while items := ray.get(actor.read.remote(4)):
            for ref, slot, index, domain, shape in items:
                frame = packs.frame(ref, slot)
                assert (frame.index, frame.shape) == (index, shape)
                assert isinstance(packs.record(ref, slot), RingFrame) == (transport == "ring")
                got.append(frame.image.copy())
            packs.release(items[-1][0], items[-1][1])
        frames[transport] = got
        if transport == "ring":
            assert ring_exists()
        ray.get(actor.close.remote())
        assert not ring_exists()  # closing the actor deletes its ring
        ray.kill(actor)
    assert len(frames["ring"]) == 40
    assert all(np.array_equal(a, b) for a, b in zip(frames["ring"], frames["object_store"]))


def test_reread_and_close_run_while_a_read_waits_for_free_slots(tmp_path, ray_session):
    import cv2
    import numpy as np
    import ray

    from stream.actors import IngestActor, PackReader

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 16))
    for i in range(30):
        writer.write(np.full((16, 32, 3), 8 * i, np.uint8))
    writer.release()
    cfg = load_config(None, [f"run.source=video:{path}", "run.frames=1000", "run.max_in_flight=2", "run.ring_slots=8"])
    actor = IngestActor.remote(cfg, transport="ring")
    first = ray.get(actor.read.remote(8))  # every slot taken, none given back (a learner that died)
    stuck = actor.read.remote(4)
    ready, _ = ray.wait([stuck], timeout=1.0)
    assert not ready  # the read waits for free slots
    again = ray.get(actor.reread.remote(2, 5, 2), timeout=60)  # a restarted learner's frames, meanwhile
    packs = PackReader()
    assert [index for _, _, index, _, _ in again] == [2, 3, 4, 5]
    for (ref, slot, *_), (old_ref, old_slot, *_) in zip(again, first[2:6]):
        assert np.array_equal(packs.frame(ref, slot).image, PackReader().frame(old_ref, old_slot).image)
    ray.get(actor.close.remote(), timeout=60)  # also while the read waits
    with pytest.raises(Exception):
        ray.get(stuck, timeout=60)  # the waiting read ends with the ring's "closed" error
    ray.kill(actor)


def test_ingest_and_evaluator_actors_never_load_torch(tmp_path, ray_session):
    """After real work, the two helper actors' processes hold no torch (see stream.actors)."""
    import ray

    from learners.records import EvalRecord
    from stream.actors import EvaluatorActor, IngestActor

    cfg = config(tmp_path, "probe", "run.frames=8")
    ingest, evaluator = IngestActor.remote(cfg), EvaluatorActor.remote(cfg)
    try:
        assert len(ray.get(ingest.read.remote(4))) == 4
        labels = np.zeros((8, 8), np.uint8)
        ray.get(evaluator.update.remote([EvalRecord(0, "clear", labels, labels, None)]))
        probe = eval("lambda actor: 'torch' in __import__('sys').modules")  # pickled by value, no test module
        assert ray.get([ingest.__ray_call__.remote(probe), evaluator.__ray_call__.remote(probe)]) == [False, False]
    finally:
        ray.get(ingest.close.remote())
        for actor in (ingest, evaluator):
            ray.kill(actor)
