import numpy as np
import pytest
import torch

from learners.losses import DistillationConfig, DistillationLoss, feature_loss, hard_label_loss, soft_label_loss
from learners.replay import ReplayBuffer, ReplayConfig
from learners.scheduler import SchedulerConfig, TeacherScheduler


def test_hard_loss_ignores_ignored_pixels():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = 5.0
    labels = torch.tensor([[[1, 255], [255, 255]]])
    assert hard_label_loss(logits, labels) < 0.02
    labels_all_ignored = torch.full((1, 2, 2), 255)
    assert float(hard_label_loss(logits, labels_all_ignored)) == 0.0


def test_soft_loss_zero_when_student_equals_teacher_and_positive_otherwise():
    teacher = torch.randn(2, 5, 4, 4)
    assert float(soft_label_loss(teacher.clone(), teacher, temperature=3.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_label_loss(torch.zeros(2, 5, 4, 4), teacher, temperature=3.0)) > 0.01


def test_soft_loss_resizes_low_resolution_teacher():
    student = torch.randn(1, 4, 8, 8, requires_grad=True)
    loss = soft_label_loss(student, torch.randn(1, 4, 2, 2))
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_mix_follows_alpha():
    student = torch.randn(1, 4, 4, 4)
    teacher = torch.randn(1, 4, 4, 4)
    labels = teacher.argmax(1)
    hard = DistillationLoss(DistillationConfig(alpha=1.0))(student, labels, teacher)
    soft = DistillationLoss(DistillationConfig(alpha=0.0))(student, labels, teacher)
    mixed = DistillationLoss(DistillationConfig(alpha=0.25))(student, labels, teacher)
    assert float(mixed) == pytest.approx(0.25 * float(hard) + 0.75 * float(soft), rel=1e-5)


def test_feature_loss_scale_invariant():
    f = torch.randn(1, 8, 4, 4)
    assert float(feature_loss(f * 3.0, f)) == pytest.approx(0.0, abs=1e-6)


def test_distillation_config_rejects_bad_values():
    with pytest.raises(ValueError, match="alpha"):
        DistillationConfig(alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        DistillationConfig(temperature=0)


def test_scheduler_rate_follows_agreement_within_bounds():
    s = TeacherScheduler(SchedulerConfig(min_rate=0.05, max_rate=0.4, initial_rate=0.1))
    for _ in range(50):
        s.on_agreement(0.5)
    assert s.rate == pytest.approx(0.4)
    for _ in range(200):
        s.on_agreement(0.99)
    assert s.rate == pytest.approx(0.05)
    assert s.on_drift() == pytest.approx(0.4)


def test_scheduler_asks_at_its_rate():
    s = TeacherScheduler(SchedulerConfig(min_rate=0.05, initial_rate=0.1))
    asked = sum(s.should_ask() for _ in range(1000))
    assert asked in (100, 101)


def test_scheduler_state_round_trip():
    a = TeacherScheduler(SchedulerConfig())
    for i in range(37):
        a.should_ask()
        a.on_agreement(0.7 if i % 2 else 0.95)
    b = TeacherScheduler(SchedulerConfig())
    b.load_state(a.state())
    assert [a.should_ask() for _ in range(50)] == [b.should_ask() for _ in range(50)]


def test_scheduler_config_rejects_inverted_bounds():
    with pytest.raises(ValueError, match="min_rate"):
        SchedulerConfig(min_rate=0.5, max_rate=0.1, initial_rate=0.2)


def _sample(value: int):
    return np.full((2, 2, 3), value, np.uint8), np.full((2, 2), value, np.uint8)


def test_replay_keeps_old_regimes_alive():
    buf = ReplayBuffer(ReplayConfig(capacity=10), seed=0)
    for i in range(10):
        buf.add(*_sample(i), None, regime=0)
    for i in range(100):
        buf.add(*_sample(100), None, regime=1)
    counts = buf.regime_counts()
    assert counts == {0: 5, 1: 5}


def test_replay_sampling_favours_current_regime_and_is_seeded():
    def fill(seed):
        buf = ReplayBuffer(ReplayConfig(capacity=50, recent_fraction=1.0), seed=seed)
        for i in range(50):
            buf.add(*_sample(i), None, regime=i // 25)
        return buf

    batch = fill(0).sample(8, current_regime=1)
    assert all(s.regime == 1 for s in batch)
    assert [int(s.image[0, 0, 0]) for s in fill(3).sample(8, 0)] == [int(s.image[0, 0, 0]) for s in fill(3).sample(8, 0)]


def test_replay_state_round_trip():
    buf = ReplayBuffer(ReplayConfig(capacity=4), seed=0)
    for i in range(4):
        buf.add(*_sample(i), np.zeros((3, 1, 1), np.float16), regime=i)
    other = ReplayBuffer(ReplayConfig(capacity=4), seed=0)
    other.load_state_arrays(buf.state_arrays())
    assert [s.regime for s in other.samples] == [0, 1, 2, 3]
    assert other.samples[2].logits.shape == (3, 1, 1)
