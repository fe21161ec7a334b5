"""Feature distillation: taps, the adapter and its loss, the learner's steps, replay, checkpoints,
the teacher side, the config and its errors, and the default path left as it was."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from learners.configs import DistillationConfig
from learners.features import FeatureAdapter, FeatureDistiller
from learners.losses import feature_distance, feature_loss
from learners.online import OnlineConfig, OnlineLearner
from learners.replay import ReplayBuffer, ReplayConfig
from perception.nets import STUDENT_CONFIG, TEACHER_CONFIG, SegNet
from perception.student_nets import build_student_net
from perception.taps import TAP_STRIDES
from perception.teacher import TeacherFeatureError, TeacherOutput, request_features
from perception.teachers.grid import GridAlignedTeacher, ResizedTeacher
from perception.teachers.sim import SegNetTeacher
from stream.config import ConfigError, RunConfig, apply_overrides

FEATURES = DistillationConfig(feature_weight=1.0, feature_layer="decoder", feature_stride=8)


def _frame(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 32x64 frame, its labels, teacher logits at stride 4 and teacher features (96 ch) at stride 8."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, 19, (32, 64), dtype=np.uint8)
    logits = rng.standard_normal((19, 8, 16)).astype(np.float32)
    features = rng.random((96, 4, 8)).astype(np.float16)
    return image, labels, logits, features


def _learner(distill: DistillationConfig = FEATURES, **online) -> OnlineLearner:
    torch.manual_seed(0)
    settings = {"batch_size": 2, "crop": (16, 32), "steps_per_label": 2, **online}
    return OnlineLearner(OnlineConfig(**settings), SegNet(STUDENT_CONFIG), seed=0, distill=distill)


# -- taps and the adapter ------------------------------------------------------------------
@pytest.mark.parametrize("net", ["default", "fast", "tiny", "deep"])
def test_every_student_net_taps_every_layer_beside_its_own_logits(net):
    torch.manual_seed(0)
    model = build_student_net(net).eval()
    x = torch.rand(1, 3, 64, 128)
    for layer in TAP_STRIDES:
        logits, feature = model.tap(x, layer)
        assert torch.equal(logits, model.coarse_logits(x))
        assert feature.shape[1] == model.tap_channels(layer)
        if layer != "decoder":
            assert feature.shape[-2:] == (64 // TAP_STRIDES[layer], 128 // TAP_STRIDES[layer])
    with pytest.raises(ValueError, match="unknown feature layer 'stage5'"):
        model.tap(x, "stage5")


def test_adapter_maps_student_channels_to_teacher_channels_and_the_loss_reaches_both():
    student = SegNet(STUDENT_CONFIG)
    distiller = FeatureDistiller(student, "decoder", teacher_channels=96)
    assert isinstance(distiller.adapter, FeatureAdapter)
    _, feature = student.tap(torch.rand(2, 3, 32, 64), "decoder")  # (2, 24, 16, 32)
    assert feature.shape == (2, 24, 16, 32)
    assert distiller.adapter(feature).shape == (2, 96, 16, 32)
    loss = distiller.loss(feature, torch.rand(2, 96, 4, 8))
    assert loss.ndim == 0 and float(loss.detach()) > 0
    loss.backward()
    assert distiller.adapter[0].weight.grad.abs().sum() > 0
    student_grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert student_grads and sum(float(g.abs().sum()) for g in student_grads) > 0
    assert student.head[1].weight.grad is None  # the classifier is past the tapped layer


def test_adapter_is_seeded():
    a = FeatureDistiller(SegNet(STUDENT_CONFIG), "stage2", 96, seed=3).adapter[0].weight
    torch.rand(5)
    b = FeatureDistiller(SegNet(STUDENT_CONFIG), "stage2", 96, seed=3).adapter[0].weight
    assert torch.equal(a, b)


def test_feature_distance_is_zero_for_the_same_direction_and_scales_feature_loss():
    x = torch.rand(2, 8, 3, 3) + 0.1
    assert float(feature_distance(x, 5 * x)) == pytest.approx(0.0, abs=1e-6)
    y = torch.rand(2, 8, 3, 3)
    assert float(feature_distance(x, y)) == pytest.approx(8 * float(feature_loss(x, y)), rel=1e-6)


def test_a_student_without_taps_is_refused_by_name():
    with pytest.raises(ValueError, match="distill.feature_weight=1.0 needs a student net with feature taps"):
        OnlineLearner(OnlineConfig(), torch.nn.Conv2d(3, 19, 1), seed=0, distill=FEATURES)


# -- the learner ---------------------------------------------------------------------------
def test_learning_with_features_trains_student_and_adapter_and_reports_the_term():
    learner = _learner()
    assert learner.features is None
    image, labels, logits, features = _frame(0)
    before = [p.detach().clone() for p in learner.model.parameters()]
    metrics = learner.learn(image, labels, logits, regime=0, features=features)
    assert metrics["feature_loss"] > 0 and metrics["steps"] == 2
    assert learner.features is not None
    adapter = learner.features.adapter
    assert adapter[0].weight.shape == (96, 24, 1, 1)
    assert any(p is q for group in learner.optimizer.param_groups for p in group["params"] for q in adapter.parameters())
    adapter_before = adapter[0].weight.detach().clone()
    learner.learn(*_frame(1)[:3], regime=0, features=_frame(1)[3])
    assert not torch.equal(adapter_before, adapter[0].weight)
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.model.parameters()))


def test_the_feature_term_changes_the_step():
    with_features, without = _learner(), _learner()
    image, labels, logits, features = _frame(0)
    with_features.learn(image, labels, logits, regime=0, features=features)
    without.learn(image, labels, logits, regime=0)
    assert without.features is None
    assert any(not torch.equal(a, b) for a, b in zip(with_features.model.parameters(), without.model.parameters()))


def test_crops_cut_the_feature_map_where_they_cut_the_frame():
    learner = _learner()
    images = np.zeros((3, 32, 64, 3), np.uint8)
    targets = np.zeros((3, 32, 64), np.uint8)
    logits = np.zeros((3, 19, 8, 16), np.float32)
    grid = np.arange(4 * 8, dtype=np.float32).reshape(1, 1, 4, 8)  # each feature cell holds its own index
    features = np.broadcast_to(grid, (3, 2, 4, 8)).copy()
    for _ in range(5):
        _, _, soft, _, windows, maps = learner._crop(images, targets, logits, features=features)
        assert soft.shape == (3, 19, 4, 8) and maps.shape == (3, 2, 2, 4)
        for b, (top, left, height, width) in enumerate(windows):
            assert top % 8 == 0 and left % 8 == 0  # on both grids: stride 4 (logits) and 8 (features)
            assert maps[b, 0, 0, 0] == grid[0, 0, top // 8, left // 8]


def test_features_are_ignored_when_feature_distillation_is_off():
    learner = _learner(DistillationConfig())
    image, labels, logits, features = _frame(0)
    metrics = learner.learn(image, labels, logits, regime=0, features=features)
    assert "feature_loss" not in metrics and learner.features is None
    assert learner.replay.samples[0].features is None


def test_default_path_is_bit_identical_whatever_features_are_sent():
    """feature_weight 0: features sent or not, the same weights, replay and predictions."""
    a, b = _learner(DistillationConfig()), _learner(DistillationConfig())
    for i in range(3):
        image, labels, logits, features = _frame(i)
        a.learn(image, labels, logits, regime=0)
        b.learn(image, labels, logits, regime=0, features=features)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)
    assert sorted(a.state_tensors()) == sorted(b.state_tensors())
    assert np.array_equal(a.predict(_frame(9)[0]), b.predict(_frame(9)[0]))


# -- replay and checkpoints ----------------------------------------------------------------
def test_replay_round_trip_keeps_features_with_a_presence_mask():
    buf = ReplayBuffer(ReplayConfig(capacity=8), seed=0)
    image, labels, logits, features = _frame(0)
    buf.add(image, labels, logits.astype(np.float16), 0, features=features)
    buf.add(image, labels, logits.astype(np.float16), 0)  # a frame labelled before features were asked for
    arrays = buf.state_arrays()
    assert arrays["replay.features"].shape == (1, 96, 4, 8)
    assert list(arrays["replay.features_present"]) == [1, 0]
    restored = ReplayBuffer(ReplayConfig(capacity=8), seed=0)
    restored.load_state_arrays(arrays)
    assert np.array_equal(restored.samples[0].features, features) and restored.samples[1].features is None
    assert "replay.features" not in ReplayBuffer(ReplayConfig(), seed=0).state_arrays()


def test_replay_copies_features_it_does_not_own():
    buf = ReplayBuffer(ReplayConfig(capacity=2), seed=0)
    image, labels, _, features = _frame(0)
    pack = np.stack([features, features])
    buf.add(image, labels, None, 0, features=pack[0])
    pack[0] = 0
    assert buf.samples[0].features.any()


def test_checkpoint_saves_and_restores_the_adapter_its_moments_and_replayed_features():
    learner = _learner()
    for i in range(2):
        image, labels, logits, features = _frame(i)
        learner.learn(image, labels, logits, regime=0, features=features)
    tensors = learner.state_tensors()
    assert any(k.startswith("adapter.") for k in tensors) and "replay.features" in tensors
    restored = _learner()
    restored.load_state_tensors(tensors)
    assert restored.features is not None
    for x, y in zip(learner.features.adapter.state_dict().values(), restored.features.adapter.state_dict().values()):
        assert torch.equal(x, y)
    assert all(s.features is not None for s in restored.replay.samples)
    image, labels, logits, features = _frame(5)
    for each in (learner, restored):  # the same draws for both (checkpoints keep the generator's state elsewhere)
        each.rng = each.replay.rng = np.random.default_rng(1)
    one = learner.learn(image, labels, logits, regime=0, features=features)
    two = restored.learn(image, labels, logits, regime=0, features=features)
    assert one["loss"] == pytest.approx(two["loss"], rel=1e-5)  # the optimiser's moments came back too
    for x, y in zip(learner.features.adapter.parameters(), restored.features.adapter.parameters()):
        assert torch.allclose(x, y, atol=1e-6)


def test_the_deployed_student_excludes_the_adapter(tmp_path):
    from safetensors.torch import save_file

    from stream.builders import student_from_checkpoint

    learner = _learner()
    learner.learn(*_frame(0)[:3], regime=0, features=_frame(0)[3])
    path = tmp_path / "learner_00000001.safetensors"
    save_file(learner.state_tensors(), str(path))
    config = apply_overrides(RunConfig(), ["distill.feature_weight=1", "student.weights=none"])
    student = student_from_checkpoint(config, path)
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in learner.model.parameters())


# -- the teacher side ----------------------------------------------------------------------
def test_sim_teacher_ships_features_only_when_asked_and_its_logits_stay_the_same():
    torch.manual_seed(0)
    teacher = SegNetTeacher(weights=None, device="cpu")
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 64, 3), dtype=np.uint8)
    plain = teacher.label(images)
    assert plain.features is None
    teacher.request_features("decoder", 8)
    asked = teacher.label(images)
    assert asked.features.shape == (2, TEACHER_CONFIG.decoder, 4, 8) and asked.features.dtype == np.float16
    assert np.array_equal(plain.logits, asked.logits) and np.array_equal(plain.labels, asked.labels)
    teacher.request_features("stage3", 16)
    assert teacher.label(images).features.shape == (2, TEACHER_CONFIG.widths[2], 2, 4)
    assert asked[1].features.shape == (1, 96, 4, 8)


def test_grid_adapters_pass_the_request_on_and_put_features_on_the_frame_grid():
    torch.manual_seed(0)
    teacher = GridAlignedTeacher(ResizedTeacher(SegNetTeacher(weights=None, device="cpu"), (32, 64)), stride=4)
    request_features(teacher, "decoder", 8)
    out = teacher.label(np.zeros((1, 48, 80, 3), np.uint8))  # runs at 64x32, answers at 80x48
    assert out.logits.shape == (1, 19, 12, 20)
    assert out.features.shape == (1, 96, 6, 10) and out.features.dtype == np.float16


class _NoFeatures:
    name, device, params = "plain", "cpu", 1

    def label(self, images):
        b, h, w = images.shape[:3]
        return TeacherOutput(np.zeros((b, h, w), np.uint8), np.zeros((b, 19, h // 4, w // 4), np.float32))

    def macs(self, height, width):
        return 1


def test_a_teacher_without_features_asked_for_them_is_refused_by_name():
    with pytest.raises(TeacherFeatureError, match=r"distill.feature_weight > 0 .* teacher 'plain'"):
        request_features(GridAlignedTeacher(_NoFeatures(), 4), "decoder", 8)
    from stream.parts import TeacherPart

    config = apply_overrides(RunConfig(), ["distill.feature_weight=1", "sim.width=64", "sim.height=32"])
    with pytest.raises(ConfigError, match="distill.feature_weight=0"):
        TeacherPart(config, teacher=GridAlignedTeacher(_NoFeatures(), 4))
    TeacherPart(apply_overrides(RunConfig(), ["sim.width=64", "sim.height=32"]), teacher=_NoFeatures())  # off: fine


def test_espnetv2_teacher_cannot_give_features():
    from perception.teachers.espnetv2 import ESPNetv2Teacher

    assert not hasattr(ESPNetv2Teacher, "request_features")
    with pytest.raises(ConfigError, match=r"teacher.spec='espnetv2:.*' cannot give them"):
        apply_overrides(RunConfig(), ["teacher.spec=espnetv2:/nowhere.safetensors", "distill.feature_weight=0.5"])


def test_the_teacher_part_ships_features_when_the_learner_asks():
    from learners.records import Observation
    from stream.parts import TeacherPart

    config = apply_overrides(RunConfig(), ["distill.feature_weight=1", "distill.feature_layer=stage2",
                                           "distill.feature_stride=16", "sim.width=64", "sim.height=32"])
    torch.manual_seed(0)
    part = TeacherPart(config, teacher=SegNetTeacher(weights=None, device="cpu"))
    out = part.label_frame(Observation(np.zeros((32, 64, 3), np.uint8), 0, 0.0, "cam"))
    assert out.features.shape == (1, TEACHER_CONFIG.widths[1], 2, 4)


# -- the config ----------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    (["distill.feature_weight=-0.5"], "distill.feature_weight must be >= 0"),
    (["distill.feature_weight=nan"], "distill.feature_weight must be >= 0"),
    (["distill.feature_layer=stage5"], "distill.feature_layer: unknown layer 'stage5'"),
    (["distill.feature_layer=stage4", "distill.feature_stride=8"], "distill.feature_stride=8 is finer than"),
    (["distill.feature_stride=12"], "distill.feature_stride must be a power of two"),
    (["distill.feature_stride=many"], "distill.feature_stride: expected int"),
    (["distill.feature_weights=1"], "unknown config key distill.feature_weights"),
])
def test_bad_feature_settings_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RunConfig(), overrides)


def test_feature_settings_come_from_toml_and_overrides(tmp_path):
    from stream.config import load_config

    file = tmp_path / "f.toml"
    file.write_text("[distill]\nfeature_weight = 2.5\nfeature_layer = \"stage2\"\nfeature_stride = 16\n")
    config = load_config(file, ["distill.feature_stride=8"])
    assert (config.distill.feature_weight, config.distill.feature_layer, config.distill.feature_stride) == (2.5, "stage2", 8)
    assert config.distill.features and not RunConfig().distill.features


def test_robust_distillation_takes_the_feature_term_on_clean_crops():
    from learners.configs import RobustDistillConfig

    torch.manual_seed(0)
    learner = OnlineLearner(OnlineConfig(batch_size=2, crop=(16, 32), steps_per_label=2), SegNet(STUDENT_CONFIG), seed=0,
                            distill=FEATURES, robust=RobustDistillConfig(loss="trades", refine_steps=1))
    for i in range(2):
        image, labels, logits, features = _frame(i)
        metrics = learner.learn(image, labels, logits, regime=0, features=features)
    assert metrics["feature_loss"] > 0 and {"clean_loss", "robust_loss"} <= set(metrics)
    assert learner.features is not None and learner.replay.samples[0].features is not None
