"""The online learner on its own: crops, the moving-average predictor, checkpoint tensors."""
import numpy as np
import pytest
import torch

from learners.online import OnlineConfig, OnlineLearner
from perception.nets import STUDENT_CONFIG, SegNet


def _learner(**kwargs) -> OnlineLearner:
    torch.manual_seed(0)
    return OnlineLearner(OnlineConfig(batch_size=2, crop=(16, 32), **kwargs), SegNet(STUDENT_CONFIG), seed=0)


def _frame(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (32, 64, 3), dtype=np.uint8), rng.integers(0, 19, (32, 64), dtype=np.uint8)


def test_moving_average_predictor_trails_the_trained_weights():
    learner = _learner(ema=0.9)
    assert learner.predictor is learner.average
    before = [p.clone() for p in learner.average.parameters()]
    for i in range(3):
        learner.learn(*_frame(i), None, regime=0)
    avg = list(learner.average.parameters())
    new = [p.detach() for p in learner.model.parameters()]
    moved = sum(float((a - b).abs().sum()) for a, b in zip(avg, before))
    gap = sum(float((a - m).abs().sum()) for a, m in zip(avg, new))
    assert moved > 0 and gap > 0  # it moved towards the model, but not all the way
    assert not any(p.requires_grad for p in learner.average.parameters())
    plain = _learner()
    assert plain.average is None and plain.predictor is plain.model


def test_moving_average_survives_a_checkpoint():
    learner = _learner(ema=0.8)
    for i in range(2):
        learner.learn(*_frame(i), None, regime=0)
    tensors = learner.state_tensors()
    assert any(k.startswith("average.") for k in tensors)
    restored = _learner(ema=0.8)
    restored.load_state_tensors(tensors)
    image, _ = _frame(5)
    assert np.array_equal(restored.predict(image), learner.predict(image))
    for a, b in zip(restored.average.state_dict().values(), learner.average.state_dict().values()):
        assert torch.equal(a, b)


def test_ema_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"ema must be in \[0, 1\)"):
        OnlineConfig(ema=1.0)


def test_hard_loss_on_a_coarse_grid_scores_the_labels_sampled_there():
    from learners.losses import hard_label_loss

    labels = torch.randint(0, 19, (2, 8, 16))
    labels[0, :2] = 255
    coarse = torch.randn(2, 19, 4, 8)
    expected = torch.nn.functional.cross_entropy(coarse, labels[:, ::2, ::2], ignore_index=255)
    assert torch.allclose(hard_label_loss(coarse, labels), expected)


@pytest.mark.parametrize("grid", ["net", "frame"])
def test_both_loss_grids_train(grid):
    learner = _learner(loss_grid=grid)
    image, labels = _frame(0)
    logits = np.random.default_rng(0).normal(size=(19, 8, 16)).astype(np.float32)  # the teacher at stride 4
    first = learner.learn(image, labels, logits, regime=0)["loss"]
    for _ in range(5):
        last = learner.learn(image, labels, logits, regime=0)["loss"]
    assert np.isfinite(first) and last < first


def test_unknown_loss_grid_is_refused():
    with pytest.raises(ValueError, match="loss_grid must be"):
        OnlineConfig(loss_grid="half")


def test_soft_loss_with_teacher_logits_on_the_student_grid_and_a_full_size_mask():
    from learners.losses import DistillationConfig, DistillationLoss

    coarse = torch.randn(2, 19, 8, 16, requires_grad=True)  # the student's own grid (stride 2)
    teacher = torch.randn(2, 19, 8, 16)  # the teacher on the same grid
    labels = torch.randint(0, 19, (2, 16, 32))  # the frame size
    loss = DistillationLoss(DistillationConfig(alpha=0.5))(coarse, labels, teacher)
    loss.backward()
    assert torch.isfinite(loss) and coarse.grad is not None


def test_train_threads_apply_to_gradient_steps_only():
    seen = []
    learner = _learner()
    original = learner._learn

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    learner._learn = spy
    before = torch.get_num_threads()
    learner.train_threads = before + 1
    metrics = learner.learn(*_frame(0), None, regime=0)
    assert seen == [before + 1] and torch.get_num_threads() == before  # restored after the steps
    assert np.isfinite(metrics["loss"])
    learner.train_threads = 0  # 0 leaves torch's setting alone
    learner.learn(*_frame(1), None, regime=0)
    assert seen[-1] == before


@pytest.mark.parametrize("train_bn, stays", [("batch", False), ("frozen", True)])
def test_frozen_batch_norm_keeps_its_running_statistics_while_the_weights_learn(train_bn, stays):
    learner = _learner(train_bn=train_bn)
    norms = [m for m in learner.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.weight.detach().clone()) for m in norms]
    for i in range(2):
        learner.learn(*_frame(i), None, regime=0)
    assert all(torch.equal(m.running_mean, mean) for m, (mean, _) in zip(norms, before)) == stays
    assert not all(torch.equal(m.weight, weight) for m, (_, weight) in zip(norms, before))  # scale and shift learn


def test_an_unknown_train_bn_names_the_setting():
    with pytest.raises(ValueError, match="train_bn"):
        OnlineConfig(train_bn="running")
