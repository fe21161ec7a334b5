"""Domain experts: banked at a drift, restored when the regime's statistics come back, routed per
frame, checkpointed, and loaded as one router for probe scoring."""
import dataclasses

import numpy as np
import pytest
import torch

from learners.configs import ExpertConfig, OnlineConfig
from learners.experts import ExpertBank, ExpertRouter, Signature
from learners.input_stats import frame_statistics
from learners.monitor import DriftConfig
from learners.online import OnlineLearner
from learners.stream_learner import LocalTeacherClient, StreamLearner, StreamLearnerConfig
from perception.nets import STUDENT_CONFIG, SegNet
from stream.builders import student_from_checkpoint
from stream.config import ConfigError, load_config
from stream.frame import Frame
from toy_teachers import BrightnessTeacher

DAY, NIGHT = 190, 25  # sky brightness of the two toy regimes


def image(sky: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((32, 64, 3), 30, np.uint8)
    img[: 10 + int(rng.integers(0, 6))] = sky
    return np.clip(img.astype(int) + rng.integers(-4, 5, img.shape), 0, 255).astype(np.uint8)


def observations(skies: list[int]):
    for i, sky in enumerate(skies):
        yield Frame(image(sky, i), i * 0.1, "toy", i).observation()


def learner_with_experts(tmp=None, **experts) -> StreamLearner:
    torch.manual_seed(0)
    cfg = ExpertConfig(**{"enabled": True, "warmup": 3, "lookback": 0, "snapshot_every": 1, **experts})
    return StreamLearner(SegNet(STUDENT_CONFIG), LocalTeacherClient(BrightnessTeacher()), seed=0,
                         config=StreamLearnerConfig(teacher_latency=0, checkpoint_every=0),
                         online=OnlineConfig(batch_size=2, steps_per_label=1),
                         drift=DriftConfig(input=False, disagreement=False), experts=cfg, checkpoint_dir=tmp)


class Events:
    """Collects what a declared drift writes (StreamLearner._on_drift's result)."""

    def __init__(self):
        self.events = []


def feed(learner: StreamLearner, skies: list[int], drifts: set[int]) -> list[dict]:
    """Stream frames with these sky brightnesses, declaring a drift before each frame in ``drifts``;
    the ``expert`` events."""
    events = []
    for frame in observations(skies):
        if frame.index in drifts:
            learner._on_drift(frame.index, "test", Events())
        events += [e for e in learner.step(frame).events if e["kind"] == "expert"]
    return events


def test_a_returning_regime_gets_its_expert_back_with_the_weights_it_left_with():
    learner = learner_with_experts()
    events = feed(learner, [DAY] * 12 + [NIGHT] * 12 + [DAY] * 6, drifts={12, 24})
    assert [e["action"] for e in events] == ["new", "restore"]
    assert events[1]["expert"] == 0 and learner.experts.active_id == 0
    assert [e.expert_id for e in learner.experts.banked] == [1]  # night waits in the bank
    assert learner.experts.restores == 1 and learner.experts.created == 1


def test_restore_loads_the_banked_weights_into_the_learner():
    torch.manual_seed(0)
    online = OnlineLearner(OnlineConfig(batch_size=1), SegNet(STUDENT_CONFIG), seed=0)
    bank = ExpertBank(ExpertConfig(enabled=True, warmup=2, lookback=0), online)
    day = frame_statistics(image(DAY, 0))
    for i in range(5):
        bank.observe(i, day)
    before = {k: v.clone() for k, v in online.model.state_dict().items()}
    bank.on_drift(5)
    with torch.no_grad():
        for p in online.model.parameters():
            p.add_(1.0)  # the night regime changes the weights
    night = frame_statistics(image(NIGHT, 1))
    assert bank.observe(5, night) is None and bank.observe(6, night)["action"] == "new"
    bank.on_drift(7)
    bank.observe(7, day)
    event = bank.observe(8, day)
    assert event["action"] == "restore" and event["expert"] == 0
    after = online.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_frames_of_a_banked_regime_are_routed_to_it_before_any_drift_is_declared():
    learner = learner_with_experts()
    feed(learner, [DAY] * 12 + [NIGHT] * 12, drifts={12})
    bank = learner.experts
    assert bank.route(frame_statistics(image(DAY, 99))).expert_id == 0
    assert bank.route(frame_statistics(image(NIGHT, 99))) is None  # the learning student's own regime
    active_only = ExpertBank(dataclasses.replace(bank.config, route="active"), learner.learner)
    active_only.banked = bank.banked
    assert active_only.route(frame_statistics(image(DAY, 9))) is None


def test_the_oldest_banked_expert_leaves_a_full_bank():
    learner = learner_with_experts(max_experts=2)
    feed(learner, [DAY] * 8 + [NIGHT] * 8 + [110] * 8, drifts={8, 16})
    assert len(learner.experts.banked) == 1 and learner.experts.banked[0].expert_id == 1


def test_a_full_bank_evicts_the_least_recently_routed_expert_not_the_oldest_banked():
    learner = learner_with_experts(max_experts=3)
    feed(learner, [DAY] * 8 + [NIGHT] * 8 + [110] * 8, drifts={8, 16})
    bank = learner.experts
    assert [e.expert_id for e in bank.banked] == [0, 1]  # day banked at 8, night at 16
    assert bank.route(frame_statistics(image(DAY, 99)), index=30).expert_id == 0  # day predicted at frame 30
    bank.on_drift(31)  # the active expert joins a full bank: night, unused since 16, leaves
    assert sorted(e.expert_id for e in bank.banked) == [0, 2]


def test_lookback_banks_the_snapshot_from_before_the_detection():
    torch.manual_seed(0)
    online = OnlineLearner(OnlineConfig(batch_size=1), SegNet(STUDENT_CONFIG), seed=0)
    bank = ExpertBank(ExpertConfig(enabled=True, warmup=2, lookback=4, snapshot_every=2), online)
    day = frame_statistics(image(DAY, 0))
    for i in range(10):
        with torch.no_grad():
            next(online.model.parameters()).fill_(float(i))
        bank.observe(i, day)
    bank.on_drift(10)  # newest snapshot at or before frame 6: frame 6's weights
    first = next(iter(bank.banked[0].state.values()))
    assert float(first.flatten()[0]) == 6.0


def test_checkpoints_keep_the_bank_and_the_router_scores_probe_frames_with_it(tmp_path):
    learner = learner_with_experts(tmp_path)
    feed(learner, [DAY] * 12 + [NIGHT] * 12, drifts={12})
    learner.save_checkpoint()
    again = learner_with_experts(tmp_path)
    assert again.experts.active_id == learner.experts.active_id
    assert [e.expert_id for e in again.experts.banked] == [0]
    banked = again.experts.banked[0].state
    assert all(torch.equal(banked[k], v) for k, v in learner.experts.banked[0].state.items())
    config = load_config(None, ["experts.enabled=true", "experts.warmup=3"])
    path = sorted(tmp_path.glob("learner_*.safetensors"))[-1]
    router = student_from_checkpoint(config, path)
    assert isinstance(router, ExpertRouter) and len(router.nets) == 2
    x = torch.from_numpy(np.stack([image(DAY, 50), image(NIGHT, 51)])).permute(0, 3, 1, 2).float() / 255  # (2, 3, H, W)
    assert router.choose(x) == [1, 0]  # day -> the banked expert, night -> the learning student
    assert router(x).shape == (2, 19, 32, 64)
    single = student_from_checkpoint(load_config(None, ["experts.enabled=true", "experts.route=active"]), path)
    assert not isinstance(single, ExpertRouter)


def test_signature_scores_are_clipped_z_scores():
    s = Signature()
    for v in (0.0, 0.2, 0.4):
        s.add(np.full(21, v))
    assert s.score(np.full(21, 0.2), 0.01, 10.0) == pytest.approx(0.0)
    assert s.score(np.full(21, 0.4), 0.01, 10.0) == pytest.approx(1.0)
    assert s.score(np.full(21, 100.0), 0.01, 10.0) == pytest.approx(10.0)
    assert Signature().score(np.zeros(21), 0.01, 10.0) == float("inf")


@pytest.mark.parametrize("override, words", [
    ("experts.max_experts=1", "experts.max_experts"),
    ("experts.route=nearest", "experts.route"),
    ("experts.warmup=0", "experts.warmup"),
    ("experts.match=0", "experts.match"),
    ("experts.lookback=-1", "experts.lookback"),
    ("experts.banks=3", "experts.banks"),
])
def test_bad_expert_settings_are_refused_naming_them(override, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        load_config(None, [override])
