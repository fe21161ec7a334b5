"""The input-change gate (``static.*``): a repeated frame is learned once, a changing one every time it is picked."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from learners.configs import StaticGateConfig
from learners.online import OnlineConfig
from learners.records import Observation
from learners.scheduler import SchedulerConfig
from learners.static_gate import StaticGate, thumbnail
from learners.stream_learner import LocalTeacherClient, StreamLearner
from perception.nets import STUDENT_CONFIG, SegNet
from perception.teacher import TeacherOutput
from stream.config import ConfigError, RunConfig, apply_overrides


class CountingTeacher:
    """Labels bright pixels 10, dark ones 0; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def label(self, images: np.ndarray) -> TeacherOutput:
        self.calls += 1
        labels = np.where(images.mean(-1) > 100, 10, 0).astype(np.uint8)  # (B, H, W)
        return TeacherOutput(labels, np.zeros((len(images), 19, 8, 16), np.float32))


def scene(shift: int, noise_seed: int | None = None) -> np.ndarray:
    """A bright band above a dark road; ``shift`` moves the horizon (a moving camera),
    ``noise_seed`` adds +-2 levels of sensor noise (a static camera)."""
    image = np.full((32, 64, 3), 30, np.uint8)
    image[: 8 + shift % 16] = 200
    image[:, (4 * shift) % 64 : (4 * shift) % 64 + 6] = 120  # a pole sliding past
    if noise_seed is not None:
        noise = np.random.default_rng(noise_seed).integers(-2, 3, image.shape)
        image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return image


def run(images: list[np.ndarray], gate: StaticGateConfig) -> tuple[CountingTeacher, StreamLearner]:
    torch.manual_seed(0)
    teacher = CountingTeacher()
    learner = StreamLearner(SegNet(STUDENT_CONFIG), LocalTeacherClient(teacher), seed=0,
                            online=OnlineConfig(batch_size=2, steps_per_label=1),
                            scheduler=SchedulerConfig(min_rate=0.5, initial_rate=0.5, max_rate=0.5), static=gate)
    for index, image in enumerate(images):
        learner.step(Observation(image, index, index * 0.1, "toy"))
    learner.flush()
    return teacher, learner


GATE = StaticGateConfig(enabled=True, threshold=3.0, cells=4)


def test_a_repeated_frame_is_sent_to_the_teacher_once_and_learned_once():
    still = [scene(0, noise_seed=i) for i in range(40)]  # the same view, sensor noise only
    gated, learner = run(still, GATE)
    plain, plain_learner = run(still, StaticGateConfig())
    assert plain.calls == 20  # every second frame at rate 0.5
    assert gated.calls == 1
    assert learner.gate.skipped_total == 19
    assert len(learner.learner.replay) == 1 and len(plain_learner.learner.replay) == 20
    assert learner.learner.steps == 1 < plain_learner.learner.steps


def test_a_moving_view_is_never_gated():
    moving = [scene(i) for i in range(40)]
    gated, _ = run(moving, GATE)
    plain, _ = run(moving, StaticGateConfig())
    assert gated.calls == plain.calls == 20


def test_a_stop_then_driving_on_asks_again():
    images = [scene(0, noise_seed=i) for i in range(20)] + [scene(i) for i in range(1, 21)]
    gated, learner = run(images, GATE)
    assert gated.calls == 1 + 10  # the stop's first pick, then every pick while moving
    assert learner.gate.skipped_total == 9


def test_max_skip_asks_anyway_after_that_many_skipped_picks():
    still = [scene(0, noise_seed=i) for i in range(40)]
    gated, _ = run(still, StaticGateConfig(enabled=True, threshold=3.0, cells=4, max_skip=4))
    assert gated.calls == 4  # pick 1 asked, 4 skipped, pick 6 asked, ... of 20 picks


def test_off_by_default_and_bit_identical():
    images = [scene(i % 3, noise_seed=i) for i in range(24)]
    _, a = run(images, StaticGateConfig())
    _, b = run(images, StaticGateConfig(enabled=False, threshold=100.0))
    assert a.gate is None and b.gate is None
    for x, y in zip(a.learner.model.state_dict().values(), b.learner.model.state_dict().values()):
        assert torch.equal(x, y)


def test_gate_state_round_trips():
    gate = StaticGate(GATE)
    gate.admit(scene(0))
    gate.admit(scene(0))
    other = StaticGate(GATE)
    other.load_state(gate.state())
    assert np.array_equal(other.reference, gate.reference) and other.skipped_total == 1
    assert other.admit(scene(0)) is False


def test_thumbnail_refuses_cells_larger_than_the_frame():
    with pytest.raises(ValueError, match="static.cells=64"):
        thumbnail(np.zeros((32, 48, 3), np.uint8), 64)


@pytest.mark.parametrize("override, message", [
    ("static.threshold=-1", "static.threshold must be >= 0"),
    ("static.threshold=300", "static.threshold must be <= 255"),
    ("static.cells=0", "static.cells must be an int in"),
    ("static.max_skip=-3", "static.max_skip must be an int >= 0"),
    ("static.enabled=perhaps", "static.enabled: expected bool"),
    ("static.gate=true", "unknown config key static.gate"),
])
def test_bad_gate_settings_name_the_setting(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RunConfig(), [override])


def test_gate_settings_reach_the_run_config():
    config = apply_overrides(RunConfig(), ["static.enabled=true", "static.threshold=2.5", "static.max_skip=50"])
    assert config.static == StaticGateConfig(enabled=True, threshold=2.5, max_skip=50)
    assert RunConfig().static.enabled is False
