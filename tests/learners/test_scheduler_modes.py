"""The scheduler's gain and jitnet modes: rates, strides, early stop, bad settings, checkpoints."""
import json

import numpy as np
import pytest
import torch

from learners.online import OnlineConfig, OnlineLearner
from learners.scheduler import SchedulerConfig, TeacherScheduler
from learners.stream_learner import LocalTeacherClient, StreamLearner, StreamLearnerConfig
from perception.nets import STUDENT_CONFIG, SegNet
from perception.teacher import TeacherOutput
from stream.config import ConfigError, RunConfig, apply_overrides
from stream.frame import Frame

GAIN = SchedulerConfig(mode="gain", min_rate=0.05, max_rate=0.5, initial_rate=0.1, gain_target=0.04, gain_tolerance=0.01)


def feed(s: TeacherScheduler, before: float, after: float, times: int) -> list[float]:
    rates = []
    for _ in range(times):
        s.on_agreement(before)
        rates.append(s.on_learned(after))
    return rates


def test_gain_rises_while_calls_buy_improvement_and_decays_on_a_flat_stream():
    s = TeacherScheduler(GAIN)
    rates = feed(s, 0.60, 0.75, 10)  # each call buys 0.15 of agreement
    assert rates[0] > 0.1 and rates == sorted(rates) and rates[-1] == pytest.approx(0.5)
    # a student stuck at 0.83 (below the agreement mode's 0.9 target) that learns nothing more per call
    rates = feed(s, 0.83, 0.835, 40)
    assert rates == sorted(rates, reverse=True) and rates[-1] == pytest.approx(0.05)
    assert s.gain == pytest.approx(0.005, abs=1e-3)
    # the agreement mode on the same stream keeps asking at its maximum
    a = TeacherScheduler(SchedulerConfig(min_rate=0.05, max_rate=0.5, initial_rate=0.1))
    assert feed(a, 0.83, 0.835, 40)[-1] == pytest.approx(0.5)


def test_gain_holds_in_its_dead_band_and_goes_to_max_on_drift():
    s = TeacherScheduler(GAIN)
    assert feed(s, 0.7, 0.74, 5) == [pytest.approx(0.1)] * 5
    assert s.on_drift() == pytest.approx(0.5)
    assert s.gain is None and s.trailing
    assert s.should_ask()  # the next frame goes to the teacher
    # after the drift the student learns a lot from each call: the rate stays up
    assert feed(s, 0.3, 0.6, 3)[-1] == pytest.approx(0.5)
    # a call without the before-learning agreement is ignored (nothing to compare)
    assert s.on_learned(0.1) == pytest.approx(0.5)


def test_gain_frame_picking_is_deterministic_and_follows_the_rate():
    def run() -> list[bool]:
        s = TeacherScheduler(GAIN)
        asks = []
        for i in range(400):
            asks.append(s.should_ask())
            if asks[-1]:
                s.on_agreement(0.8)
                s.on_learned(0.9 if i < 200 else 0.8)
        return asks

    first, second = run(), run()
    assert first == second
    assert sum(first[:200]) > 2 * sum(first[200:])  # ask often while calls buy a lot, rarely after


def test_jitnet_stride_doubles_above_threshold_halves_below_within_bounds():
    s = TeacherScheduler(SchedulerConfig(mode="jitnet", min_stride=8, max_stride=64, jitnet_threshold=0.9))
    asks = [s.should_ask() for _ in range(17)]
    assert [i for i, a in enumerate(asks) if a] == [0, 8, 16]
    strides = []
    for after in (0.95, 0.91, 0.99, 0.99, 0.99, 0.5, 0.2, 0.2, 0.2):
        s.on_learned(after)
        strides.append(s.stride)
    assert strides == [16, 32, 64, 64, 64, 32, 16, 8, 8]
    assert s.rate == pytest.approx(1 / 8)
    s.on_learned(0.95)
    s.on_learned(0.95)
    assert s.stride == 32
    since = s.since
    s.on_drift()
    assert s.stride == 8 and s.should_ask() and since >= 0


def test_jitnet_asks_every_stride_frames():
    s = TeacherScheduler(SchedulerConfig(mode="jitnet", min_stride=4, max_stride=16, jitnet_threshold=0.5))
    asked = []
    for i in range(60):
        if s.should_ask():
            asked.append(i)
            s.on_learned(0.9)  # answered at once, always above: 4 -> 8 -> 16 -> 16 -> 16
    assert asked == [0, 8, 24, 40, 56]


@pytest.mark.parametrize("settings, name", [
    ({"mode": "jitnet", "min_stride": 0}, "min_stride"),
    ({"mode": "jitnet", "min_stride": 16, "max_stride": 8}, "min_stride"),
    ({"max_stride": 0}, "max_stride"),
    ({"max_stride": 2.5}, "max_stride"),
    ({"max_updates": 0}, "max_updates"),
    ({"mode": "budget"}, "mode"),
    ({"jitnet_threshold": 1.5}, "jitnet_threshold"),
    ({"gain_tolerance": -0.1}, "gain_tolerance"),
    ({"smoothing": 0.0}, "smoothing"),
])
def test_bad_settings_are_refused_naming_the_setting(settings, name):
    with pytest.raises(ValueError, match=name):
        SchedulerConfig(**settings)


@pytest.mark.parametrize("override, name", [
    ("scheduler.min_stride=0", "scheduler.min_stride"),
    ("scheduler.max_stride=4", "scheduler.min_stride"),
    ("scheduler.mode=fixed", "scheduler.mode"),
])
def test_bad_settings_in_a_run_config_name_section_and_key(override, name):
    with pytest.raises(ConfigError, match=name):
        apply_overrides(RunConfig(), [override])
    assert apply_overrides(RunConfig(), ["scheduler.mode=jitnet", "scheduler.min_stride=4"]).scheduler.min_stride == 4


@pytest.mark.parametrize("config", [GAIN, SchedulerConfig(mode="jitnet", min_stride=2, max_stride=16)])
def test_state_round_trip_through_json(config):
    a = TeacherScheduler(config)
    for i in range(53):
        if a.should_ask():
            a.on_agreement(0.7 + 0.01 * (i % 5))
            if i % 3:  # some frames still wait for their after-learning agreement at the checkpoint
                a.on_learned(0.72 + 0.02 * (i % 7))
    b = TeacherScheduler(config)
    b.load_state(json.loads(json.dumps(a.state())))
    assert b.state() == a.state()
    script = [(0.6, 0.8), (0.9, 0.9), (0.5, 0.95), (0.8, 0.81)] * 10
    for before, after in script:
        for s in (a, b):
            s.on_agreement(before)
            s.on_learned(after)
    assert [a.should_ask() for _ in range(80)] == [b.should_ask() for _ in range(80)]


def test_online_learner_stops_when_told_and_counts_its_steps():
    torch.manual_seed(0)
    learner = OnlineLearner(OnlineConfig(batch_size=2, steps_per_label=5), SegNet(STUDENT_CONFIG), seed=0)
    image, labels = np.zeros((32, 64, 3), np.uint8), np.zeros((32, 64), np.uint8)
    checks = []

    def stop() -> bool:
        checks.append(learner.steps)
        return len(checks) == 3

    out = learner.learn(image, labels, None, regime=0, steps=8, stop=stop)
    assert out["steps"] == 2 and learner.steps == 2 and checks == [0, 1, 2]
    assert learner.learn(image, labels, None, regime=0, stop=lambda: True)["steps"] == 0 and learner.steps == 2
    assert learner.learn(image, labels, None, regime=0)["steps"] == 5  # steps_per_label


class NoiseTeacher:
    """Labels every pixel at random: no student reaches a high agreement with it."""

    name, device, params = "noise", "cpu", 0

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def label(self, images):
        labels = self.rng.integers(0, 19, size=images.shape[:3]).astype(np.uint8)  # (B, H, W)
        return TeacherOutput(labels, np.zeros((len(images), 19, 4, 8), np.float32))

    def macs(self, h, w):
        return 0


class SkyTeacher(NoiseTeacher):
    """Labels every pixel sky (10)."""

    def label(self, images):
        return TeacherOutput(np.full(images.shape[:3], 10, np.uint8), np.zeros((len(images), 19, 4, 8), np.float32))


def stream(n: int):
    for i in range(n):
        image = np.full((32, 64, 3), 40 + (i % 7) * 20, np.uint8)
        yield Frame(image, i * 0.1, "toy", i).observation()


def jitnet_learner(teacher, threshold: float) -> StreamLearner:
    torch.manual_seed(0)
    return StreamLearner(SegNet(STUDENT_CONFIG), LocalTeacherClient(teacher), seed=0,
                         config=StreamLearnerConfig(teacher_latency=1),
                         online=OnlineConfig(batch_size=2, steps_per_label=1),
                         scheduler=SchedulerConfig(mode="jitnet", min_stride=2, max_stride=8, jitnet_threshold=threshold,
                                                   max_updates=3))


def test_jitnet_in_the_stream_learner_takes_up_to_max_updates_and_adapts_its_stride():
    hard = jitnet_learner(NoiseTeacher(), threshold=0.99)
    for frame in stream(20):
        hard.step(frame)
    hard.flush()
    assert hard.teacher_calls == 10  # every min_stride frames: the random labels are never matched
    assert hard.learner.steps == 3 * hard.teacher_calls and hard.scheduler.stride == 2

    easy = jitnet_learner(SkyTeacher(), threshold=0.05)  # one constant label: soon matched
    for frame in stream(40):
        easy.step(frame)
    easy.flush()
    assert easy.learner.steps < 3 * easy.teacher_calls  # stopped early on at least one teacher frame
    assert easy.teacher_calls < 20 and easy.scheduler.stride > 2


def test_gain_mode_in_the_stream_learner_measures_after_learning():
    torch.manual_seed(0)
    learner = StreamLearner(SegNet(STUDENT_CONFIG), LocalTeacherClient(SkyTeacher()), seed=0,
                            config=StreamLearnerConfig(teacher_latency=1),
                            online=OnlineConfig(batch_size=2, steps_per_label=4, lr=5e-3),
                            scheduler=SchedulerConfig(mode="gain", min_rate=0.1, max_rate=0.5, initial_rate=0.5))
    gains = []
    for frame in stream(30):
        learner.step(frame)
        if learner.scheduler.gain is not None:
            gains.append(learner.scheduler.gain)
    learner.flush()
    assert max(gains) > 0.3  # the first labelled frames teach the fresh student a lot
    assert learner.scheduler.gain < 0.05 < max(gains)  # ... later ones nothing: one constant label, learnt
