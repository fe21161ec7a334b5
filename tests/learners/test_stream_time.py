"""Stream time in the learner: teacher latency in seconds and replay steps between frames.

A 1 Hz log leaves a whole second between frames: a 0.2 s teacher has answered by the next frame,
and the learner's hardware has time for replay steps (``online.idle_steps_per_second``)."""
import numpy as np
import pytest
import torch

from learners.configs import OnlineConfig, StreamLearnerConfig
from learners.monitor import DriftConfig
from learners.online import OnlineLearner
from learners.stream_learner import LocalTeacherClient, StreamLearner
from perception.nets import STUDENT_CONFIG, SegNet
from stream.config import ConfigError, load_config
from stream.frame import Frame
from toy_teachers import BrightnessTeacher


def frames(n, seconds_apart, restart_at=None):
    """``n`` toy frames ``seconds_apart`` apart; the clock starts again at frame ``restart_at``
    (a log played a second time)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.full((32, 64, 3), 30, np.uint8)
        img[: 10 + int(rng.integers(0, 6))] = 200
        t = (i if restart_at is None or i < restart_at else i - restart_at) * seconds_apart
        yield Frame(img, t, "toy", i).observation()


def make(tmp=None, online=None, **cfg):
    torch.manual_seed(0)
    return StreamLearner(SegNet(STUDENT_CONFIG), LocalTeacherClient(BrightnessTeacher()), seed=0,
                         config=StreamLearnerConfig(checkpoint_every=0, **cfg),
                         online=online or OnlineConfig(batch_size=2, steps_per_label=1, crop=(0, 0)),
                         drift=DriftConfig(input=False, disagreement=False), checkpoint_dir=tmp)


def applied_at(learner, stream):
    """{frame index whose answer was learned: index of the step that learned it}."""
    when = {}
    for f in stream:
        for out in learner.step(f).outputs:
            when[out.index] = f.index
    return when


def test_on_a_1hz_log_a_fast_teacher_has_answered_by_the_next_frame():
    learner = make(teacher_latency=3, teacher_latency_s=0.2)
    when = applied_at(learner, frames(8, 1.0))
    assert when[0] == 1 and all(when[i] == i + 1 for i in range(7))


def test_the_answer_is_learned_before_the_next_frame_is_predicted():
    learner = make(teacher_latency=3, teacher_latency_s=0.2)
    stream = list(frames(3, 1.0))
    learner.step(stream[0])
    steps_before = learner.learner.steps
    original = learner.learner.predict
    seen_steps = []

    def spy(image, *args, **kwargs):
        seen_steps.append(learner.learner.steps)
        return original(image, *args, **kwargs)

    learner.learner.predict = spy
    learner.step(stream[1])
    assert seen_steps[0] > steps_before  # frame 0's answer was learned, then frame 1 predicted


def test_at_10hz_two_tenths_of_a_second_are_two_frames():
    """The same step as teacher_latency=2 learns it in (there after that frame's prediction,
    here before it)."""
    by_time = applied_at(make(teacher_latency=10, teacher_latency_s=0.2), frames(12, 0.1))
    by_frames = applied_at(make(teacher_latency=2), frames(12, 0.1))
    assert by_time == {i: i + 2 for i in range(10)}
    assert {i: w for i, w in by_frames.items() if i < 10} == by_time


def test_a_clock_that_starts_again_still_gets_its_answers_after_teacher_latency_frames():
    when = applied_at(make(teacher_latency=2, teacher_latency_s=5.0), frames(10, 1.0, restart_at=4))
    assert when[2] == 4  # asked at t=2 s, the clock restarts at frame 4 (t=0): two frames bound it
    assert when[5] == 7


def test_idle_steps_follow_stream_time_once_replay_holds_frames():
    online = OnlineConfig(batch_size=2, steps_per_label=1, crop=(0, 0), idle_steps_per_second=1.5)
    learner = make(teacher_latency=0, online=online)
    for f in frames(5, 1.0):
        learner.step(f)
    # frame 0 is learned at its own step (latency 0), so the gaps 0-1 .. 3-4 (4 s) give 6 steps
    assert learner.idle_steps == 6
    assert learner.learner.steps == learner.teacher_calls * 1 + 6


def test_a_long_gap_counts_only_idle_max_seconds():
    online = OnlineConfig(batch_size=2, steps_per_label=1, crop=(0, 0), idle_steps_per_second=2.0, idle_max_seconds=1.5)
    learner = make(teacher_latency=0, online=online)
    for f in frames(2, 60.0):
        learner.step(f)
    assert learner.idle_steps == 3


def test_no_idle_steps_without_the_setting_or_before_anything_is_stored():
    learner = make(teacher_latency=0)
    for f in frames(4, 1.0):
        learner.step(f)
    assert learner.idle_steps == 0 and learner.learner.steps == learner.teacher_calls
    empty = OnlineLearner(OnlineConfig(batch_size=2, crop=(0, 0)), SegNet(STUDENT_CONFIG), seed=0)
    assert empty.rehearse(5, regime=0)["steps"] == 0.0 and empty.steps == 0


def test_rehearsal_batches_leave_out_the_anchor_frame():
    learner = OnlineLearner(OnlineConfig(batch_size=3, crop=(0, 0)), SegNet(STUDENT_CONFIG), seed=0)
    labels = np.zeros((32, 64), np.uint8)
    for value in (10, 120, 240):
        learner.replay.add(np.full((32, 64, 3), value, np.uint8), labels, None, 0)
    seen = []
    original = learner._training_logits

    def spy(x):
        seen.append(sorted(round(float(v), 3) for v in x.mean((1, 2, 3))))
        return original(x)

    learner._training_logits = spy
    assert learner.rehearse(4, regime=0)["steps"] == 4.0
    assert all(len(set(batch)) == 3 for batch in seen)  # three distinct stored frames per step


def test_idle_state_survives_a_checkpoint(tmp_path):
    online = OnlineConfig(batch_size=2, steps_per_label=1, crop=(0, 0), idle_steps_per_second=0.5)
    first = make(tmp_path, online=online, teacher_latency=0)
    for f in frames(4, 1.0):
        first.step(f)
    first.save_checkpoint()
    resumed = make(tmp_path, online=online, teacher_latency=0)
    assert (resumed.idle_credit, resumed.idle_steps, resumed.last_timestamp) == (first.idle_credit, first.idle_steps, 3.0)


@pytest.mark.parametrize("override, names", [
    ("online.idle_steps_per_second=-1", "idle_steps_per_second"),
    ("online.idle_max_seconds=0", "idle_max_seconds"),
    ("learner.teacher_latency_s=-0.1", "teacher_latency_s"),
])
def test_bad_stream_time_settings_name_the_setting(override, names):
    with pytest.raises(ConfigError, match=names):
        load_config(None, [override])


@pytest.mark.parametrize("threshold", [0.0, 0.6, 0.99])
def test_settled_frames_are_stored_but_not_stepped_on(threshold):
    learner = make(teacher_latency=0, settled_agreement=threshold)
    records = []
    for f in frames(40, 0.1):
        records += learner.step(f).outputs
    taught = [r for r in records if r.teacher is not None]
    agreement = [float((r.student == r.teacher).mean()) for r in taught]
    settled = sum(a >= threshold for a in agreement) if threshold > 0 else 0
    assert learner.settled_frames == settled
    assert learner.learner.steps == len(taught) - settled  # steps_per_label 1
    assert len(learner.learner.replay) == len(taught)  # every teacher frame is stored
    if threshold == 0.6:
        assert 0 < settled < len(taught)  # some frames of the toy stream are settled, some not
