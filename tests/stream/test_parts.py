"""The teacher and learner parts without Ray: packs of observations or ring records, slots
released in frame order, outputs without ground truth."""
from __future__ import annotations

import numpy as np
import pytest

from learners.records import LearnerOutput, Observation
from learners.stream_learner import LocalTeacherClient
from stream.config import load_config
from stream.framering import FrameRing, RingFrame
from stream.parts import LearnerPart, TeacherPart

from flat_teacher import FlatTeacher


CONFIG = ["sim.width=64", "sim.height=32", "learner.teacher_latency=2", "scheduler.initial_rate=1.0",
          "scheduler.min_rate=1.0", "scheduler.max_rate=1.0", "online.steps_per_label=1", "online.batch_size=2"]


def observations(n: int) -> list[Observation]:
    return [Observation(np.full((32, 64, 3), i, np.uint8), i, i / 10, "cam") for i in range(n)]


def test_the_teacher_part_labels_a_slot_of_a_pack_or_of_a_ring():
    teacher = TeacherPart(load_config(None, CONFIG), teacher=FlatTeacher())
    pack = observations(3)
    assert teacher.label(pack, 2).labels.shape == (1, 32, 64) and teacher.teacher.seen == [2]
    ring = FrameRing.create(slots=2, slot_bytes=32 * 64 * 3)
    try:
        record = RingFrame.put(pack[1], ring)
        teacher.label([record], 0)
        assert teacher.teacher.seen == [2, 1]  # read from the ring slot
        assert teacher.describe(32, 64) == {"params": 1, "macs": 0, "name": "flat", "device": "cpu", "views": None}
    finally:
        ring.close()


def test_the_learner_part_steps_through_packs_and_gives_outputs_without_ground_truth():
    config = load_config(None, CONFIG)
    teacher = FlatTeacher()
    learner = LearnerPart(config, LocalTeacherClient(teacher))
    seen = observations(6)
    outputs: list[LearnerOutput] = []
    for start in (0, 3):
        results, done = learner.step([seen[start:start + 3]], [0, 1, 2])
        assert [r.index for r in results] == [start, start + 1, start + 2]
        assert all(r.outputs == [] for r in results)  # outputs travel apart, to the evaluator
        outputs += done
    outputs += learner.flush()[1]
    assert [o.index for o in outputs] == list(range(6))
    assert all(set(vars(o)) == {"index", "student", "teacher", "robust", "student_depth", "teacher_depth"} for o in outputs)
    assert all(o.student_depth is None and o.teacher_depth is None for o in outputs)  # depth only in a multi-task run
    assert teacher.seen == list(range(6)) and learner.position() == 6


def test_the_learner_part_releases_ring_slots_in_order_once_answers_are_applied():
    config = load_config(None, CONFIG)
    ring = FrameRing.create(slots=8, slot_bytes=32 * 64 * 3)
    try:
        learner = LearnerPart(config, LocalTeacherClient(FlatTeacher()))
        pack = [RingFrame.put(seen, ring) for seen in observations(4)]
        learner.step([pack], [0, 1, 2, 3])
        # teacher latency 2: the answers of frames 2 and 3 are pending, so their slots are held
        assert ring.released == 2
        learner.flush()
        assert ring.released == 4
    finally:
        ring.close()


def test_the_learner_part_refuses_frames_out_of_order():
    learner = LearnerPart(load_config(None, CONFIG), LocalTeacherClient(FlatTeacher()))
    with pytest.raises(ValueError, match="expected frame 0"):
        learner.step([observations(3)], [1])
