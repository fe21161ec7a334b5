"""Tests for perception.attacks: honest-attack checks on a trained toy segmentation net, exact
answers on linear models, the balls, the settings' errors, and the model's state.

The toy task: 16x24 images of three classes (grey background, reddish and bluish rectangles,
colours 0.06 apart) with per-pixel noise; a three-layer conv net (3x3, 3x3, 1x1, with a
BatchNorm) learns it in 300 Adam steps to about 99.9% clean pixel accuracy, and PGD at 16/255
breaks most of it.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from perception.attacks import AttackConfig, attack, parse_eps, predicted_labels
from perception.metrics import confusion_matrix_numpy, mean_iou

H, W, K = 16, 24, 3
SEP = 0.06  # how far the class colours are apart
PROTOTYPES = torch.tensor([[0.45, 0.45, 0.45], [0.45 + SEP, 0.45 - SEP / 3, 0.45 - SEP / 2],
                           [0.45 - SEP / 2, 0.45 - SEP / 4, 0.45 + SEP]])  # (K, 3)


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape: -> images (n, 3, H, W) float in [0, 1], labels (n, H, W) int64."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, H, W, dtype=torch.int64)  # (n, H, W)
    for i in range(n):
        for _ in range(3):
            h, w = (int(v) for v in torch.randint(4, 10, (2,), generator=g))
            top, left = int(torch.randint(0, H - h + 1, (1,), generator=g)), int(torch.randint(0, W - w + 1, (1,), generator=g))
            labels[i, top:top + h, left:left + w] = int(torch.randint(1, K, (1,), generator=g))
    colours = PROTOTYPES[labels].permute(0, 3, 1, 2)  # (n, 3, H, W)
    brightness = 1 + 0.06 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)  # (n, 1, 1, 1)
    images = (colours * brightness + 0.012 * torch.randn(n, 3, H, W, generator=g)).clamp(0, 1)  # (n, 3, H, W)
    return images, labels


class ToyNet(nn.Module):
    """Normalisation inside; (B, 3, H, W) in [0, 1] -> logits (B, K, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, 0.45, 0.45]).view(1, 3, 1, 1))
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, K, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / 0.1)  # (B, K, H, W)


def train_toy(seed: int, steps: int = 300) -> ToyNet:
    torch.manual_seed(seed)  # the layers' initialisation (tests only)
    net = ToyNet()
    images, labels = make_data(256, seed=1000 + seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(images), (32,), generator=g)
        loss = F.cross_entropy(net(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def nets() -> tuple[ToyNet, ToyNet]:
    with torch.random.fork_rng():
        return train_toy(0), train_toy(1)


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    return make_data(32, seed=7)


def correct_counts(model, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Shape: -> (B,) int64 correctly labelled pixels per image."""
    pred = predicted_labels(model, images)  # (B, H, W)
    return ((pred == labels) & (labels != 255)).sum(dim=(1, 2))  # (B,)


def accuracy(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float(correct_counts(model, images, labels).sum()) / float((labels != 255).sum())


def miou(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    pred = predicted_labels(model, images).numpy().astype(np.uint8)  # (B, H, W)
    cm = sum(confusion_matrix_numpy(t, p, num_classes=K) for t, p in zip(labels.numpy().astype(np.uint8), pred))
    return mean_iou(cm)


# --- 1-4, 7: honest attacks on the trained toy net ------------------------------------------


def test_toy_net_learns_the_task(nets, test_set):
    images, labels = test_set
    for net in nets:
        assert accuracy(net, images, labels) > 0.95


@pytest.fixture(scope="module")
def pgd10_by_eps(nets, test_set) -> dict[int, torch.Tensor]:
    """PGD-10 (CE, step eps/4) on the first net at eps n/255: the adversarial images."""
    net, _ = nets
    images, labels = test_set
    return {n: attack(net, images, labels, AttackConfig(eps=n / 255, steps=10)) for n in (0, 2, 4, 8, 16)}


@pytest.mark.parametrize("smaller, larger", [
    (0, 2), (2, 4), (4, 8),
    pytest.param(8, 16, marks=pytest.mark.xfail(strict=True, reason=(
        "measured: at 16/255 (beyond the class colours' 0.06 spacing) PGD stalls on confidently "
        "classified pixels (their CE, and so their gradient, is ~0 in float32) and 3 of 32 images "
        "keep more pixels than at 8/255 (also with PGD-50 and SegPGD); the mean still falls"))),
])
def test_larger_eps_never_helps_the_model_per_image(nets, test_set, pgd10_by_eps, smaller, larger):
    net, _ = nets
    _, labels = test_set
    before = correct_counts(net, pgd10_by_eps[smaller], labels)  # (B,)
    after = correct_counts(net, pgd10_by_eps[larger], labels)  # (B,)
    assert torch.all(after <= before), f"{int((after > before).sum())} images gain pixels from {smaller}/255 to {larger}/255"


def test_larger_eps_never_helps_the_model_on_average(nets, test_set, pgd10_by_eps):
    net, _ = nets
    _, labels = test_set
    accs = [accuracy(net, adv, labels) for adv in pgd10_by_eps.values()]
    mious = [miou(net, adv, labels) for adv in pgd10_by_eps.values()]
    print(f"PGD-10 at eps 0, 2, 4, 8, 16 /255: accuracy {[round(a, 4) for a in accs]}, mIoU {[round(m, 4) for m in mious]}")
    assert all(b < a for a, b in zip(accs, accs[1:])), accs
    assert all(b < a for a, b in zip(mious, mious[1:])), mious
    assert accs[0] > 0.99 and accs[-1] < 0.5  # the attack does something


@pytest.fixture(scope="module")
def steps_and_restarts(nets, test_set) -> dict[str, torch.Tensor]:
    """Correct pixels per image at 4/255: clean, PGD-10, PGD-50, PGD-10 with 3 restarts."""
    net, _ = nets
    images, labels = test_set
    eps = 4 / 255
    configs = {"pgd10": AttackConfig(eps=eps, steps=10), "pgd50": AttackConfig(eps=eps, steps=50),
               "restarts3": AttackConfig(eps=eps, steps=10, restarts=3)}
    counts = {name: correct_counts(net, attack(net, images, labels, c), labels) for name, c in configs.items()}
    counts["clean"] = correct_counts(net, images, labels)
    n = labels.numel()
    print("eps 4/255 accuracy: " + ", ".join(f"{name} {float(c.sum()) / n:.4f}" for name, c in counts.items())
          + f"; PGD-10 - PGD-50 = {100 * float(counts['pgd10'].sum() - counts['pgd50'].sum()) / n:.2f} points")
    return counts


def test_more_steps_and_restarts_never_help_the_model(steps_and_restarts):
    counts = steps_and_restarts
    assert torch.all(counts["pgd50"] <= counts["pgd10"])
    assert torch.all(counts["restarts3"] <= counts["pgd10"])
    assert float(counts["pgd10"].sum()) < 0.8 * float(counts["clean"].sum())  # a budget where the attack bites


@pytest.mark.xfail(strict=True, reason=(
    "measured: PGD-10 (CE, step eps/4) 0.7267 vs PGD-50 0.6421 at 4/255 (8.5 points; 5 at 8/255); "
    "PGD-200 stops at 0.640 whatever the step, and SegPGD-50 reaches 0.583: PGD-10 has not converged "
    "on a net that uses spatial context"))
def test_pgd10_is_within_two_points_of_pgd50(steps_and_restarts):
    counts = steps_and_restarts
    gap = float(counts["pgd10"].sum() - counts["pgd50"].sum()) / (H * W * len(counts["pgd10"]))
    assert gap <= 0.02, f"PGD-10 is {100 * gap:.2f} points above PGD-50"


def test_transfer_attack_is_weaker_than_white_box(nets, test_set):
    target, source = nets
    images, labels = test_set
    clean = accuracy(target, images, labels)
    for eps in (2, 4):
        config = AttackConfig(eps=eps / 255, steps=10)
        white = accuracy(target, attack(target, images, labels, config), labels)
        transfer = accuracy(target, attack(source, images, labels, config), labels)
        print(f"eps {eps}/255: clean {clean:.4f}, transfer (made on another net) {transfer:.4f}, white-box {white:.4f}")
        assert white < transfer < clean


def test_segpgd_is_at_least_as_strong_as_ce_pgd(nets, test_set):
    net, _ = nets
    images, labels = test_set
    results = {}
    for eps in (2, 4, 8):
        for loss in ("ce", "segpgd"):
            adv = attack(net, images, labels, AttackConfig(eps=eps / 255, steps=10, loss=loss))
            results[eps, loss] = round(accuracy(net, adv, labels), 4)
    print(f"PGD-10 accuracy, CE vs SegPGD: {results}")
    for eps in (2, 4, 8):
        assert results[eps, "segpgd"] <= results[eps, "ce"]


def test_label_free_target_and_fgsm_bite(nets, test_set):
    net, _ = nets
    images, labels = test_set
    own = predicted_labels(net, images)  # (B, H, W)
    fgsm = accuracy(net, attack(net, images, own, AttackConfig(kind="fgsm", eps=8 / 255)), own)
    pgd = accuracy(net, attack(net, images, own, AttackConfig(eps=8 / 255)), own)
    assert pgd <= fgsm < 0.9


# --- 5: known answers on linear models ------------------------------------------------------


def linear_net(weights: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    net = nn.Conv2d(3, weights.shape[0], 1)
    with torch.no_grad():
        net.weight.copy_(weights[:, :, None, None])
        net.bias.copy_(bias)
    return net


@pytest.fixture
def linear_case() -> tuple[nn.Conv2d, torch.Tensor, torch.Tensor, torch.Tensor]:
    w = torch.tensor([[1.0, -2.0, 0.5], [-0.5, 1.0, 1.5]])  # (2, 3): w_1 - w_0 = (-1.5, 3, 1)
    net = linear_net(w, torch.tensor([0.1, -0.2]))
    g = torch.Generator().manual_seed(3)
    images = 0.2 + 0.6 * torch.rand(2, 3, 6, 8, generator=g)  # (B, 3, H, W), away from 0 and 1
    labels = torch.randint(0, 2, (2, 6, 8), generator=g)  # (B, H, W)
    labels[0, 0, :3] = 255
    return net, w, images, labels


def test_fgsm_linf_moves_each_value_by_eps_along_the_weight_difference(linear_case):
    net, w, images, labels = linear_case
    eps = 0.05
    adv = attack(net, images, labels, AttackConfig(kind="fgsm", eps=eps))
    direction = (w[1] - w[0]).sign()  # (3,) sign of w_wrong - w_right for label 0
    sign = torch.where(labels[:, None] == 0, direction[None, :, None, None], -direction[None, :, None, None])  # (B, 3, H, W)
    sign = torch.where(labels[:, None] == 255, 0.0, sign)  # ignored pixels have no gradient
    torch.testing.assert_close(adv - images, eps * sign, rtol=0, atol=1e-6)


def test_fgsm_clips_to_the_unit_box(linear_case):
    net, w, images, labels = linear_case
    images = images.clone()
    images[:, :, 1] = 0.0
    images[:, :, 2] = 1.0
    adv = attack(net, images, labels, AttackConfig(kind="fgsm", eps=0.05))
    direction = (w[1] - w[0]).sign()
    sign = torch.where(labels[:, None] == 0, direction[None, :, None, None], -direction[None, :, None, None])
    sign = torch.where(labels[:, None] == 255, 0.0, sign)
    torch.testing.assert_close(adv, (images + 0.05 * sign).clamp(0, 1), rtol=0, atol=1e-6)


def test_fgsm_l2_moves_along_the_normalised_gradient_by_the_full_radius(linear_case):
    net, w, images, labels = linear_case
    eps = 0.02
    adv = attack(net, images, labels, AttackConfig(kind="fgsm", norm="l2", eps=eps))
    with torch.no_grad():
        p = net(images).softmax(dim=1)  # (B, 2, H, W)
    valid = labels != 255  # (B, H, W)
    y = torch.where(valid, labels, 0)  # (B, H, W)
    p_right = p.gather(1, y[:, None])[:, 0]  # (B, H, W)
    wrong_minus_right = torch.where(y[:, None] == 0, (w[1] - w[0])[None, :, None, None],
                                    (w[0] - w[1])[None, :, None, None])  # (B, 3, H, W)
    grad = (1 - p_right)[:, None] * wrong_minus_right * valid[:, None] / valid.sum(dim=(1, 2))[:, None, None, None]
    unit = grad / grad.flatten(1).norm(dim=1)[:, None, None, None]  # (B, 3, H, W)
    expected = eps * math.sqrt(3 * 6 * 8) * unit
    torch.testing.assert_close(adv - images, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close((adv - images).flatten(1).norm(dim=1), torch.full((2,), eps * math.sqrt(3 * 6 * 8)))


def test_coarse_logits_are_scored_against_nearest_sampled_labels(linear_case):
    net, w, images, labels = linear_case
    labels = labels.clone()
    labels[labels == 255] = 0

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def coarse_logits(self, x: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(self.net(x), 2)  # (B, 2, H/2, W/2)

    model = Pooled()
    eps = 0.05
    adv = attack(model.coarse_logits, images, labels, AttackConfig(kind="fgsm", eps=eps))
    coarse = labels[:, ::2, ::2]  # nearest sampling at stride 2 takes each block's top-left label
    block = coarse.repeat_interleave(2, 1).repeat_interleave(2, 2)  # (B, H, W)
    direction = (w[1] - w[0]).sign()
    sign = torch.where(block[:, None] == 0, direction[None, :, None, None], -direction[None, :, None, None])
    torch.testing.assert_close(adv - images, eps * sign, rtol=0, atol=1e-6)


def test_pgd_on_a_linear_model_flips_every_pixel_it_can(linear_case):
    net, w, images, labels = linear_case
    labels = predicted_labels(net, images)  # (B, H, W)
    margin = (net(images)[:, 1] - net(images)[:, 0]).abs().detach()  # (B, H, W)
    eps = 0.05
    reachable = margin < eps * (w[1] - w[0]).abs().sum() - 1e-4  # the linf ball holds a flip
    adv = attack(net, images, labels, AttackConfig(eps=eps, steps=20, random_start=False))
    flipped = predicted_labels(net, adv) != labels
    assert reachable.any() and (~reachable).any()
    assert torch.equal(flipped, reachable)


# --- 6: the balls ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "segpgd"])
@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
def test_output_in_unit_box_and_eps_ball(nets, test_set, norm, loss, kind):
    net, _ = nets
    images, labels = test_set
    images = images[:8].clone()
    images[:, 0, :4] = 0.0  # saturated values: the box binds
    images[:, 1, -4:] = 1.0
    eps = 8 / 255
    adv = attack(net, images, labels[:8], AttackConfig(kind=kind, norm=norm, eps=eps, loss=loss, restarts=2))
    assert adv.shape == images.shape and adv.dtype == images.dtype
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    delta = adv - images  # (B, 3, H, W)
    if norm == "linf":
        assert float(delta.abs().max()) <= eps + 1e-6
    else:
        assert float(delta.flatten(1).norm(dim=1).max()) <= eps * math.sqrt(3 * H * W) * (1 + 1e-5)
    assert float(delta.abs().max()) > 0  # it moved


def test_same_seed_same_output_and_seeds_differ(nets, test_set):
    net, _ = nets
    images, labels = test_set
    config = AttackConfig(eps=8 / 255, steps=3, norm="l2")
    a = attack(net, images[:4], labels[:4], config, seed=5)
    b = attack(net, images[:4], labels[:4], config, seed=5)
    c = attack(net, images[:4], labels[:4], config, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_momentum_and_the_cosine_schedule_keep_the_ball_and_the_worst_iterate(nets, test_set):
    net, _ = nets
    images, labels = test_set
    plain = AttackConfig(eps=4 / 255, steps=10, step_size=4 / 255)
    tuned = AttackConfig(eps=4 / 255, steps=10, step_size=4 / 255, momentum=0.5, schedule="cosine")
    for config in (plain, tuned):
        adv = attack(net, images[:8], labels[:8], config, seed=1)
        assert float((adv - images[:8]).abs().max()) <= 4 / 255 + 1e-6 and 0.0 <= float(adv.min()) <= float(adv.max()) <= 1.0
    clean = correct_counts(net, images[:8], labels[:8])
    assert torch.all(correct_counts(net, attack(net, images[:8], labels[:8], tuned, seed=1), labels[:8]) <= clean)


# --- 8: settings --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, name", [
    ({"eps": 1.5}, "eps"), ({"eps": -0.1}, "eps"), ({"steps": 0}, "steps"), ({"restarts": 0}, "restarts"),
    ({"step_size": -0.01}, "step_size"), ({"kind": "cw"}, "kind"), ({"norm": "l1"}, "norm"), ({"loss": "dice"}, "loss"),
    ({"momentum": 1.0}, "momentum"), ({"schedule": "linear"}, "schedule"),
])
def test_bad_settings_name_the_setting(kwargs, name):
    value = next(iter(kwargs.values()))
    with pytest.raises(ValueError, match=rf"AttackConfig\.{name} .*{value}"):
        AttackConfig(**kwargs)


def test_eps_error_message_is_exact():
    with pytest.raises(ValueError, match=r"eps must be in \[0, 1\], got 1.5$"):
        AttackConfig(eps=1.5)


def test_parse_eps():
    assert parse_eps("2/255") == pytest.approx(2 / 255)
    assert parse_eps("0.5") == 0.5
    assert parse_eps(" 8 / 255 ") == pytest.approx(8 / 255)
    for bad in ("x", "3/0", "2", "", "-0.1", "1/2/3", "nan"):
        with pytest.raises(ValueError, match=repr(bad).replace("/", "/")):
            parse_eps(bad)


def test_bad_inputs_and_inference_mode(linear_case):
    net, _, images, labels = linear_case
    config = AttackConfig()
    with pytest.raises(ValueError, match="labels"):
        attack(net, images, labels[:, :-1], config)
    with pytest.raises(ValueError, match="labels"):
        attack(net, images, labels.int(), config)
    with pytest.raises(ValueError, match="images"):
        attack(net, images[:, :2], labels, config)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match="inference_mode"):
            attack(net, images, labels, config)
    with torch.no_grad():
        adv = attack(net, images, labels, AttackConfig(kind="fgsm", eps=0.05))
    assert float((adv - images).abs().max()) == pytest.approx(0.05)


# --- 9: the model's state -------------------------------------------------------------------


def test_model_state_untouched_in_train_mode():
    torch.manual_seed(0)
    net = ToyNet()
    net.body.append(nn.Dropout2d(0.2))
    net.train()
    net.body[0].eval()  # a mixed mode must come back as it was, module by module
    images, labels = make_data(4, seed=11)
    net(images).sum().backward()  # some existing gradients
    net.body[3].weight.grad = None  # and a missing one
    grads = {n: (p.grad.clone() if p.grad is not None else None) for n, p in net.named_parameters()}
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    modes = {n: m.training for n, m in net.named_modules()}
    momentum = net.body[1].momentum
    rng = torch.get_rng_state()

    for config in (AttackConfig(steps=3, restarts=2), AttackConfig(kind="fgsm", loss="segpgd"), AttackConfig(norm="l2", steps=2)):
        first = attack(net, images, labels, config, seed=2)
        second = attack(net, images, labels, config, seed=2)
        assert torch.equal(first, second)  # dropout too draws from a seeded, forked RNG

    for n, p in net.named_parameters():
        assert (p.grad is None) == (grads[n] is None), n
        if p.grad is not None:
            assert torch.equal(p.grad, grads[n]), n
    for n, b in net.named_buffers():
        assert torch.equal(b, buffers[n]), n
    assert {n: m.training for n, m in net.named_modules()} == modes
    assert net.body[1].momentum == momentum
    assert torch.equal(torch.get_rng_state(), rng)


def test_model_state_restored_after_a_failing_model():
    torch.manual_seed(0)
    net = ToyNet().train()
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    images, labels = make_data(2, seed=3)
    with pytest.raises(ArithmeticError, match="boom"):
        attack(_Failing(net), images, labels, AttackConfig(steps=1))
    for n, b in net.named_buffers():
        assert torch.equal(b, buffers[n]), n
    assert net.body[1].momentum == 0.1 and net.training


class _Failing(nn.Module):
    """Runs the net (which would move its BN statistics, were they not guarded), then fails."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.net(x)
        raise ArithmeticError("boom")
