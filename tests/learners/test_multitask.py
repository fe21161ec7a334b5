"""Multi-task distillation: the student's depth head, the depth loss, the teacher's depth in the
replay buffer and checkpoints, and the settings' errors."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from learners.configs import DistillationConfig, OnlineConfig, RobustDistillConfig
from learners.online import OnlineLearner
from learners.replay import ReplayBuffer, ReplayConfig
from perception.depth import DepthHead, attach_depth_head, coarse_outputs, has_depth, log_depth_l1
from perception.nets import STUDENT_CONFIG, SegNet
from perception.student_nets import build_student_net
from stream.config import ConfigError, RunConfig, apply_overrides


@pytest.mark.parametrize("net, grid", [("default", (16, 32)), ("fast", (8, 16)), ("tiny", (16, 32))])
def test_depth_head_shapes_per_student_net(net: str, grid: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = attach_depth_head(build_student_net(net)).eval()
    x = torch.rand(2, 3, 32, 64)
    with torch.no_grad():
        logits, log_depth = coarse_outputs(model, x)
        torch.testing.assert_close(logits, model.coarse_logits(x))  # one trunk pass, the same logits
    assert tuple(logits.shape) == (2, 19, *grid)
    assert log_depth is not None and tuple(log_depth.shape) == (2, *grid)


def test_head_leaves_segmentation_and_state_alone() -> None:
    torch.manual_seed(0)
    plain = SegNet(STUDENT_CONFIG).eval()
    keys = set(plain.state_dict())
    with_head = attach_depth_head(SegNet(STUDENT_CONFIG)).eval()
    with_head.load_state_dict({**with_head.state_dict(), **plain.state_dict()})
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(with_head(x), plain(x))
        torch.testing.assert_close(coarse_outputs(with_head, x)[0], plain.coarse_logits(x))
    assert not has_depth(plain) and has_depth(with_head)
    extra = set(with_head.state_dict()) - keys
    assert extra and all(k.startswith("depth_head.") for k in extra)
    assert coarse_outputs(plain, x)[1] is None


def test_head_starts_at_fifteen_metres_and_clamps() -> None:
    head = DepthHead(8)
    out = head(torch.rand(1, 8, 4, 4))
    torch.testing.assert_close(out.exp(), torch.full((1, 4, 4), 15.0))


def test_log_depth_l1_by_hand() -> None:
    pred = torch.log(torch.tensor([[[1.0, 2.0], [4.0, 8.0]]]))  # (1, 2, 2)
    target = torch.tensor([[[2.0, 2.0], [0.0, 1.0]]])  # 0 = no depth: skipped
    expected = (math.log(2.0) + 0.0 + math.log(8.0)) / 3
    assert float(log_depth_l1(pred, target)) == pytest.approx(expected, rel=1e-6)
    # a finer prediction is pooled (in log space) to the target's grid: mean log of 1, 2, 4, 8 = log 2.828...
    assert float(log_depth_l1(pred, torch.tensor([[[4.0]]]))) == pytest.approx(abs(math.log(8.0) / 2 - math.log(4.0)))
    assert float(log_depth_l1(pred, torch.zeros(1, 2, 2))) == 0.0  # no depth at all: zero, and differentiable
    pred.requires_grad_(True)
    log_depth_l1(pred, target).backward()
    assert pred.grad is not None and float(pred.grad[0, 1, 0]) == 0.0


def test_depth_weight_setting_errors() -> None:
    with pytest.raises(ValueError, match="depth_weight must be in"):
        DistillationConfig(depth_weight=-1.0)
    with pytest.raises(ValueError, match="depth_weight must be in"):
        DistillationConfig(depth_weight=float("nan"))
    with pytest.raises(ConfigError, match=r"distill\.depth_weight must be in"):
        apply_overrides(RunConfig(), ["distill.depth_weight=-0.5"])
    with pytest.raises(ConfigError, match=r"distill\.depth_weight: expected float"):
        apply_overrides(RunConfig(), ["distill.depth_weight=lots"])
    with pytest.raises(ConfigError, match=r"distill\.depth_weight=1 needs a teacher with depth"):
        apply_overrides(RunConfig(), ["distill.depth_weight=1", "teacher.spec=onnx:x.onnx"]).check()
    with pytest.raises(ConfigError, match=r"robust\.loss=trades"):
        apply_overrides(RunConfig(), ["distill.depth_weight=1", "robust.loss=trades"]).check()
    assert apply_overrides(RunConfig(), ["distill.depth_weight=0.5"]).distill.depth_weight == 0.5
    with pytest.raises(ValueError, match="needs a student with a depth head"):
        OnlineLearner(OnlineConfig(), SegNet(STUDENT_CONFIG), seed=0, distill=DistillationConfig(depth_weight=1.0))
    with pytest.raises(ValueError, match="not combined with robust.loss"):
        OnlineLearner(OnlineConfig(), attach_depth_head(SegNet(STUDENT_CONFIG)), seed=0,
                      distill=DistillationConfig(depth_weight=1.0), robust=RobustDistillConfig(loss="ard"))


def _frame(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, 19, (32, 64)).astype(np.uint8)
    logits = rng.normal(size=(19, 8, 16)).astype(np.float32)
    depth = np.linspace(3.0, 60.0, 8 * 16, dtype=np.float32).reshape(8, 16)
    depth[:2] = 0.0  # the teacher's sky: no depth
    return image, labels, logits, depth


def _learner(weight: float, crop: tuple[int, int] = (16, 32)) -> OnlineLearner:
    torch.manual_seed(0)
    model = attach_depth_head(SegNet(STUDENT_CONFIG)) if weight > 0 else SegNet(STUDENT_CONFIG)
    return OnlineLearner(OnlineConfig(batch_size=3, steps_per_label=2, crop=crop), model, seed=0,
                         distill=DistillationConfig(depth_weight=weight), replay=ReplayConfig(capacity=8))


def test_learner_learns_depth_and_stores_it() -> None:
    learner = _learner(1.0)
    image, labels, logits, depth = _frame(0)
    out = learner.learn(image, labels, logits, regime=0, depth=depth)
    assert set(out) == {"loss", "replay_size", "steps", "depth_loss"} and out["depth_loss"] > 0
    stored = learner.replay.samples[0].depth
    assert stored is not None and stored.dtype == np.float16 and stored.shape == (8, 16)
    learner.predict(image)
    assert learner.last_depth is not None and learner.last_depth.shape == (16, 32)
    before = out["depth_loss"]
    for i in range(15):
        out = learner.learn(image, labels, logits, regime=0, depth=depth)
    assert out["depth_loss"] < before  # the head learns the teacher's depth
    with pytest.raises(ValueError, match="logits' grid"):
        learner.learn(image, labels, logits, regime=0, depth=depth[:4])


def test_learner_without_depth_ignores_teacher_depth() -> None:
    plain, given = _learner(0.0), _learner(0.0)
    image, labels, logits, depth = _frame(1)
    a = plain.learn(image, labels, logits, regime=0)
    b = given.learn(image, labels, logits, regime=0, depth=depth)
    assert a == b and "depth_loss" not in a
    assert given.replay.samples[0].depth is None
    given.predict(image)
    assert given.last_depth is None


def test_replay_round_trip_with_depth() -> None:
    buffer = ReplayBuffer(ReplayConfig(capacity=4), seed=0)
    image, labels, logits, depth = _frame(2)
    buffer.add(image, labels, logits.astype(np.float16), 0, depth=depth.astype(np.float16))
    buffer.add(image, labels, logits.astype(np.float16), 1)  # a frame without depth
    arrays = buffer.state_arrays()
    assert arrays["replay.depth"].shape == (1, 8, 16) and arrays["replay.depth_present"].tolist() == [1, 0]
    again = ReplayBuffer(ReplayConfig(capacity=4), seed=0)
    again.load_state_arrays(arrays)
    np.testing.assert_array_equal(again.samples[0].depth, depth.astype(np.float16))
    assert again.samples[1].depth is None
    without = ReplayBuffer(ReplayConfig(capacity=4), seed=0)
    without.add(image, labels, None, 0)
    assert not any(k.startswith("replay.depth") for k in without.state_arrays())


def test_checkpoint_round_trip_keeps_head_and_depth() -> None:
    learner = _learner(0.5)
    image, labels, logits, depth = _frame(3)
    learner.learn(image, labels, logits, regime=0, depth=depth)
    tensors = learner.state_tensors()
    assert any(k.startswith("model.depth_head.") for k in tensors) and "replay.depth" in tensors
    other = _learner(0.5)
    other.load_state_tensors(tensors)
    learner.predict(image)
    other.predict(image)
    np.testing.assert_array_equal(learner.last_depth, other.last_depth)
    np.testing.assert_array_equal(other.replay.samples[0].depth, depth.astype(np.float16))


def test_build_student_attaches_head_only_when_asked() -> None:
    from stream.builders import build_student

    config = apply_overrides(RunConfig(), ["student.weights=default"])
    assert not has_depth(build_student(config))
    multitask = build_student(dataclasses.replace(config, distill=DistillationConfig(depth_weight=1.0)))
    assert has_depth(multitask)  # the shipped weights loaded, the head fresh beside them


def test_depth_and_feature_distillation_together_are_refused_naming_both():
    from stream.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"distill\.depth_weight=0\.5 and feature_weight=1\.0"):
        load_config(None, ["distill.depth_weight=0.5", "distill.feature_weight=1"])
