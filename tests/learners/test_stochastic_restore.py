"""Stochastic restore (online.restore_prob): after every step each weight goes back to its starting
value with a small probability, seeded, and kept across checkpoints."""
import numpy as np
import pytest
import torch

from learners.configs import OnlineConfig
from learners.online import OnlineLearner
from perception.nets import STUDENT_CONFIG, SegNet
from stream.config import ConfigError, load_config


def learner(prob, seed=0):
    torch.manual_seed(0)
    return OnlineLearner(OnlineConfig(batch_size=2, steps_per_label=3, crop=(0, 0), restore_prob=prob, lr=1e-2),
                         SegNet(STUDENT_CONFIG), seed=seed)


def teach(online, frames=3):
    rng = np.random.default_rng(1)
    for _ in range(frames):
        image = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
        labels = np.where(image.mean(-1) > 127, 10, 0).astype(np.uint8)
        online.learn(image, labels, None, regime=0)


def share_at_start(online, start):
    same = total = 0
    for name, param in online.model.named_parameters():
        same += int((param == start[name]).sum())
        total += param.numel()
    return same / total


def test_restored_share_follows_the_probability():
    start = {n: p.detach().clone() for n, p in learner(0.0).model.named_parameters()}
    plain, some, most = learner(0.0), learner(0.2), learner(0.95)
    for online in (plain, some, most):
        teach(online)
    assert share_at_start(plain, start) < 0.05  # Adam moves (nearly) every weight
    assert 0.15 < share_at_start(some, start) < 0.35  # about 0.2 restored after the last step
    assert share_at_start(most, start) > 0.9


def test_restore_draws_are_seeded():
    a, b, c = learner(0.3, seed=0), learner(0.3, seed=0), learner(0.3, seed=1)
    for online in (a, b, c):
        teach(online, frames=2)
    weights = [torch.cat([p.flatten() for p in o.model.parameters()]) for o in (a, b, c)]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_a_resumed_learner_restores_towards_the_run_start_and_draws_on(tmp_path):
    first = learner(0.3)
    teach(first, frames=2)
    tensors = first.state_tensors()
    resumed = learner(0.3)
    teach(resumed, frames=1)  # the resumed process's own history must not matter
    resumed.load_state_tensors(tensors)
    resumed.replay.rng.bit_generator.state = first.replay.rng.bit_generator.state  # kept by the stream learner
    start = learner(0.3).source
    assert all(torch.equal(resumed.source[k], start[k]) for k in start)
    teach(first, frames=1)
    teach(resumed, frames=1)
    for (name, p), q in zip(first.model.named_parameters(), resumed.model.parameters()):
        assert torch.allclose(p, q), name


def test_bad_restore_prob_names_the_setting():
    with pytest.raises(ConfigError, match="restore_prob"):
        load_config(None, ["online.restore_prob=1.0"])
