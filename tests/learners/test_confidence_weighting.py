"""distill.confidence_weighting: per-pixel weights from the teacher's confidence in its soft logits."""
from __future__ import annotations

import math

import pytest
import torch

from learners.configs import DistillationConfig
from learners.losses import (DistillationLoss, confidence_weights, hard_label_loss, normalised_weights, soft_label_loss,
                             weights_on_grid)
from perception.labels import IGNORE_INDEX
from stream.config import ConfigError, RunConfig, apply_overrides


def _batch(seed: int = 0, size: tuple[int, int] = (16, 24), grid: tuple[int, int] = (4, 6)):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, 19, *size, generator=g)  # (B, K, H, W)
    teacher = torch.randn(2, 19, *grid, generator=g) * 4  # (B, K, h, w)
    labels = torch.randint(0, 19, (2, *size), generator=g)  # (B, H, W)
    labels[0, :3] = IGNORE_INDEX
    return student, labels, teacher


@pytest.mark.parametrize("mode", ["maxprob", "entropy"])
def test_weights_lie_in_zero_one_and_follow_the_teachers_confidence(mode):
    logits = torch.randn(3, 19, 5, 7) * torch.linspace(0.1, 10, 7)  # (B, K, h, w): sharper to the right
    weights = confidence_weights(logits, mode)  # (B, h, w)
    assert weights.shape == (3, 5, 7)
    assert float(weights.min()) >= 0.0 and float(weights.max()) <= 1.0 + 1e-6
    columns = weights.mean(dim=(0, 1))  # (w,)
    assert float(columns[-1]) > float(columns[0]) + 0.3  # sure pixels weigh more
    uniform = confidence_weights(torch.zeros(1, 19, 1, 1), mode)
    assert float(uniform) == pytest.approx(1 / 19 if mode == "maxprob" else 0.0, abs=1e-6)


def test_floor_and_power_shape_the_weights():
    logits = torch.zeros(1, 4, 1, 2)  # (B, K, h, w)
    logits[0, 0, 0, 0] = 2.0  # one fairly sure pixel, one uniform pixel
    plain = confidence_weights(logits, "entropy")
    floored = confidence_weights(logits, "entropy", floor=0.3)
    sharper = confidence_weights(logits, "entropy", power=2.0)
    assert float(floored[0, 0, 1]) == pytest.approx(0.3)
    assert float(floored[0, 0, 0]) == pytest.approx(0.3 + 0.7 * float(plain[0, 0, 0]))
    assert float(sharper[0, 0, 0]) == pytest.approx(float(plain[0, 0, 0]) ** 2)


def test_normalisation_gives_mean_one_over_the_valid_pixels():
    weights = torch.rand(2, 9, 11) + 0.05  # (B, h, w)
    valid = torch.rand(2, 9, 11) > 0.3  # (B, h, w)
    out = normalised_weights(weights, valid)
    assert float(out[valid].mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(normalised_weights(weights, None).mean()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("size", [(5, 7), (13, 17), (20, 30)])
def test_weights_reach_any_grid(size):
    weights = torch.rand(2, 9, 11)  # (B, h, w)
    out = weights_on_grid(weights, size)
    assert tuple(out.shape) == (2, *size)
    assert float(out.min()) >= float(weights.min()) - 1e-6 and float(out.max()) <= float(weights.max()) + 1e-6


def test_none_is_bit_identical_to_the_plain_loss():
    student, labels, teacher = _batch()
    config = DistillationConfig()
    assert config.confidence_weighting == "none"
    want = (hard_label_loss(student, labels, class_balance=config.class_balance) * config.alpha
            + (1 - config.alpha) * soft_label_loss(student, teacher, config.temperature, labels != IGNORE_INDEX))
    got = DistillationLoss(config)(student, labels, teacher)
    assert torch.equal(got, want)


@pytest.mark.parametrize("class_balance", [0.0, 0.5])
def test_even_confidence_gives_the_plain_loss(class_balance):
    """Weights that are all equal normalise to 1: the weighted loss is the plain one."""
    student, labels, _ = _batch()
    teacher = torch.zeros(2, 19, 4, 6)  # (B, K, h, w): uniform everywhere
    teacher[:, 3] = 5.0  # equally sure of class 3 everywhere
    plain = DistillationLoss(DistillationConfig(class_balance=class_balance))(student, labels, teacher)
    for mode in ("maxprob", "entropy"):
        weighted = DistillationLoss(DistillationConfig(class_balance=class_balance, confidence_weighting=mode))(
            student, labels, teacher)
        assert float(weighted) == pytest.approx(float(plain), rel=1e-5)


def _left_right(config: DistillationConfig, teacher: torch.Tensor, labels: torch.Tensor) -> float:
    """The gradient the left half of the frame gets, over the right half's."""
    student = torch.zeros(1, 19, 4, 8, requires_grad=True)  # (B, K, H, W)
    DistillationLoss(config)(student, labels, teacher).backward()
    grad = student.grad.abs().sum(1)[0]  # (H, W)
    return float(grad[:, :4].sum()) / float(grad[:, 4:].sum())


@pytest.mark.parametrize("alpha", [1.0, 0.0, 0.5])
def test_confident_pixels_weigh_more_in_the_gradient(alpha):
    """The student's error on a pixel the teacher is sure of pulls harder than on an unsure one,
    in the hard term (alpha 1), the soft term (alpha 0) and their mix."""
    teacher = torch.zeros(1, 19, 1, 2)  # (B, K, h, w)
    teacher[0, 0, 0, 0] = 12.0  # left: sure of class 0
    teacher[0, 0, 0, 1] = 0.3  # right: nearly uniform
    labels = torch.zeros(1, 4, 8, dtype=torch.long)  # (B, H, W)
    plain = _left_right(DistillationConfig(alpha=alpha, class_balance=0.0), teacher, labels)
    if alpha == 1.0:
        assert plain == pytest.approx(1.0)  # the same label everywhere: an even pull
    for mode in ("maxprob", "entropy"):
        weighted = _left_right(DistillationConfig(alpha=alpha, class_balance=0.0, confidence_weighting=mode), teacher, labels)
        assert weighted > 2 * plain


@pytest.mark.parametrize("student_size", [(7, 13), (17, 25), (4, 6)])
@pytest.mark.parametrize("mode", ["maxprob", "entropy"])
def test_odd_sizes_and_grids(student_size, mode):
    """Student logits on the net's grid, labels at the crop, teacher logits at 1/4: any sizes."""
    g = torch.Generator().manual_seed(1)
    student = torch.randn(2, 19, *student_size, generator=g, requires_grad=True)
    labels = torch.randint(0, 19, (2, 17, 25), generator=g)
    labels[1, :, :5] = IGNORE_INDEX
    teacher = torch.randn(2, 19, 5, 7, generator=g) * 3
    loss = DistillationLoss(DistillationConfig(confidence_weighting=mode, confidence_floor=0.1))(student, labels, teacher)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and student.grad.shape == student.shape


def test_all_ignored_and_no_teacher_logits():
    student, labels, teacher = _batch()
    loss = DistillationLoss(DistillationConfig(confidence_weighting="entropy"))
    assert float(loss(student, torch.full_like(labels, IGNORE_INDEX), teacher)) == 0.0
    hard_only = DistillationLoss(DistillationConfig())(student, labels, None)
    assert torch.equal(loss(student, labels, None), hard_only)  # no logits: weighed evenly


def test_config_errors_name_the_setting_and_list_the_choices():
    with pytest.raises(ConfigError, match=r"distill\.confidence_weighting: unknown weighting 'margin' \(choose none, maxprob, entropy\)"):
        apply_overrides(RunConfig(), ["distill.confidence_weighting=margin"])
    with pytest.raises(ConfigError, match=r"distill\.confidence_floor must be in \[0, 1\)"):
        apply_overrides(RunConfig(), ["distill.confidence_floor=1.5"])
    with pytest.raises(ConfigError, match=r"distill\.confidence_power must be > 0"):
        apply_overrides(RunConfig(), ["distill.confidence_power=0"])
    config = apply_overrides(RunConfig(), ["distill.confidence_weighting=entropy", "distill.confidence_floor=0.2"])
    assert (config.distill.confidence_weighting, config.distill.confidence_floor) == ("entropy", 0.2)


def test_the_online_learner_trains_with_weighting():
    import numpy as np

    from learners.configs import OnlineConfig
    from learners.online import OnlineLearner
    from perception.student_nets import build_student_net

    torch.manual_seed(0)
    learner = OnlineLearner(OnlineConfig(steps_per_label=2, batch_size=2, crop=(32, 64)), build_student_net("default"),
                            seed=0, distill=DistillationConfig(confidence_weighting="maxprob"))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)
    labels = rng.integers(0, 19, (64, 128)).astype(np.uint8)
    logits = rng.normal(size=(19, 16, 32)).astype(np.float32)
    out = learner.learn(image, labels, logits, regime=0)
    assert out["steps"] == 2 and math.isfinite(out["loss"])
