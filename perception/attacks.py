"""Gradient attacks on segmentation networks: FGSM and PGD (L-inf or L2; cross-entropy or SegPGD).

A model is any callable mapping (B, 3, H, W) float RGB in [0, 1] to logits (B, K, h, w), with its
normalisation inside; (h, w) may be coarser than (H, W) (e.g. a student net's ``coarse_logits``),
and the labels are then sampled on the logits' grid (nearest), as
``learners.losses.hard_label_loss`` does. Labels are (B, H, W) int64 with 255 = ignore; the
label-free target is the model's own clean prediction (:func:`predicted_labels`).

What makes a robustness number from these attacks honest:

* PGD keeps, per image, the worst iterate seen (lowest pixel accuracy of the model's prediction
  against ``labels`` on the logits' grid, ties broken by the higher per-image cross-entropy),
  over every iterate (the start included) of every restart.
* The step size is fixed (``eps / 4`` unless set), not derived from ``steps``, and restart ``r``
  starts from a ``torch.Generator`` seeded from ``(seed, r)``. So PGD-50's first 10 iterates are
  PGD-10's and restart 0 of three restarts is the single restart's: more steps and more restarts
  never help the model, by construction (the cross-entropy loss; SegPGD's weight schedule
  depends on ``steps``, as in the paper, so there it holds for restarts only).
* The attack leaves the model as it found it: training mode, parameters' ``.grad`` (gradients
  are taken with ``torch.autograd.grad`` w.r.t. the input only), buffers (BatchNorm momentum is
  0 during the attack, and every buffer is restored afterwards), and the global RNG state (a
  model with dropout in training mode draws from a forked global RNG seeded from ``seed``, so
  the same seed gives the same output there too).

The L2 radius is in the same units as the L-inf one: ``eps`` is the root-mean-square change per
pixel value, so the ball's radius is ``eps * sqrt(3 * H * W)`` per image (and the step's length
is ``step_size * sqrt(3 * H * W)``).

Example:
    >>> import torch
    >>> net = torch.nn.Conv2d(3, 2, 1)
    >>> images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))  # (B, 3, H, W)
    >>> labels = predicted_labels(net, images)  # (B, H, W)
    >>> adv = attack(net, images, labels, AttackConfig(kind="pgd", eps=parse_eps("8/255"), steps=5))
    >>> bool((adv - images).abs().max() <= 8 / 255 + 1e-6), bool(adv.min() >= 0), bool(adv.max() <= 1)
    (True, True, True)
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception.labels import IGNORE_INDEX
from perception.model_state import frozen_buffers, owning_module
from perception.views import ATTACK_KINDS, ATTACK_LOSSES, ATTACK_NORMS

log = logging.getLogger(__name__)

KINDS, NORMS, LOSSES = ATTACK_KINDS, ATTACK_NORMS, ATTACK_LOSSES
SCHEDULES = ("constant", "cosine")

Model = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AttackConfig:
    """Settings of one gradient attack.

    Attributes:
        kind: ``"fgsm"`` (one step of size ``eps``, no random start; ``steps``, ``step_size``,
            ``restarts`` and ``random_start`` are not used) or ``"pgd"``.
        norm: ``"linf"`` or ``"l2"``.
        eps: the radius, in [0, 1]. For L2 it is the root-mean-square change per pixel value,
            i.e. the L2 ball's radius is ``eps * sqrt(3 * H * W)`` per image.
        steps: PGD iterations.
        step_size: PGD step, in the units of ``eps``; 0 means ``eps / 4``. Fixed, independent of
            ``steps``, so PGD-50's first 10 iterates are PGD-10's.
        restarts: random restarts; per image the worst (for the model) iterate is kept.
        random_start: PGD starts from a uniform point of the ball (L-inf: uniform per pixel value;
            L2: uniform direction, radius uniform in [0, radius]); else from the image.
        loss: ``"ce"`` (cross-entropy over labelled pixels) or ``"segpgd"`` (SegPGD, Gu et al.
            2022: correctly classified pixels weighted ``1 - lam``, wrong ones ``lam``, with
            ``lam = t / (2 * steps)`` at iteration t = 0 .. steps - 1).

    Example:
        >>> AttackConfig(eps=4 / 255).effective_step_size == 1 / 255
        True
        >>> AttackConfig(eps=1.5)
        Traceback (most recent call last):
        ...
        ValueError: AttackConfig.eps must be in [0, 1], got 1.5
    """

    kind: str = "pgd"
    norm: str = "linf"
    eps: float = 4 / 255
    steps: int = 10
    step_size: float = 0.0
    restarts: int = 1
    random_start: bool = True
    loss: str = "ce"
    schedule: str = "constant"  # PGD step size over the iterations: constant, or cosine from 2 x step_size down to 0
    momentum: float = 0.0  # PGD steps along a running average of normalised gradients (0 = plain PGD; 0.75 helps
    # a 10-step attack reach what 50 steps reach on a robust student, whose loss surface is flat near the frame)

    def __post_init__(self) -> None:
        for name, value, choices in (("kind", self.kind, KINDS), ("norm", self.norm, NORMS),
                                     ("loss", self.loss, LOSSES)):
            if value not in choices:
                raise ValueError(f"AttackConfig.{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        if not (isinstance(self.eps, (int, float)) and 0.0 <= self.eps <= 1.0):
            raise ValueError(f"AttackConfig.eps must be in [0, 1], got {self.eps!r}")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"AttackConfig.steps must be an integer >= 1, got {self.steps!r}")
        if not (isinstance(self.restarts, int) and self.restarts >= 1):
            raise ValueError(f"AttackConfig.restarts must be an integer >= 1, got {self.restarts!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"AttackConfig.schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {self.schedule!r}")
        if not (isinstance(self.momentum, (int, float)) and 0.0 <= self.momentum < 1.0):
            raise ValueError(f"AttackConfig.momentum must be in [0, 1), got {self.momentum!r}")
        if not (isinstance(self.step_size, (int, float)) and math.isfinite(self.step_size) and self.step_size >= 0):
            raise ValueError(f"AttackConfig.step_size must be a finite number >= 0 (0 = eps / 4), got {self.step_size!r}")

    @property
    def effective_step_size(self) -> float:
        """The PGD step in the units of ``eps`` (``step_size``, or ``eps / 4`` when that is 0)."""
        return self.step_size if self.step_size > 0 else self.eps / 4


_EPS_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*)?$")


def parse_eps(text: str) -> float:
    """An attack radius from text: a fraction ``"4/255"`` or a number ``"0.03"``, in [0, 1].

    Example:
        >>> round(parse_eps("4/255"), 5), parse_eps("0.03")
        (0.01569, 0.03)
        >>> parse_eps("3/0")
        Traceback (most recent call last):
        ...
        ValueError: attack eps '3/0': division by zero
    """
    match = _EPS_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"attack eps {text!r} is not a number or a fraction such as '4/255' or '0.03'")
    numerator, denominator = float(match.group(1)), match.group(2)
    if denominator is not None and float(denominator) == 0.0:
        raise ValueError(f"attack eps {text!r}: division by zero")
    value = numerator / float(denominator) if denominator is not None else numerator
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"attack eps {text!r} = {value:g} is outside [0, 1] (pixel values are in [0, 1])")
    return value


def predicted_labels(model: Model, images: torch.Tensor) -> torch.Tensor:
    """The model's own labels at the input size: the label-free attack target.

    Coarser logits are upsampled bilinearly (``align_corners=False``) before the argmax, as the
    student nets' ``forward`` does.

    Shape:
        images (B, 3, H, W) float in [0, 1] -> (B, H, W) int64

    Example:
        >>> import torch
        >>> net = torch.nn.Conv2d(3, 4, 1)
        >>> predicted_labels(net, torch.zeros(1, 3, 5, 7)).shape
        torch.Size([1, 5, 7])
    """
    _check_images(images)
    with torch.no_grad():
        logits = model(images)  # (B, K, h, w)
        if logits.shape[-2:] != images.shape[-2:]:
            logits = F.interpolate(logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)  # (B, K, H, W)
        return logits.argmax(dim=1).long()  # (B, H, W)


def attack(model: Model, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig, seed: int = 0) -> torch.Tensor:
    """Adversarial images within ``config.eps`` of ``images`` (and in [0, 1]) against ``model``.

    The model runs in the mode it is in (a model in training mode is attacked with its batch
    statistics, and its running statistics are left as they were). Grad mode is turned on
    inside, so a ``torch.no_grad()`` caller is fine; an inference-mode caller is not.

    Args:
        model: an ``nn.Module`` or a bound method of one (e.g. ``net.coarse_logits``), or any
            callable (only a module's state is saved and restored).
        images: (B, 3, H, W) float in [0, 1], on the device the attack runs on.
        labels: (B, H, W) int64, 255 = ignore (e.g. :func:`predicted_labels`).
        config: the attack.
        seed: seeds restart r's random start from ``(seed, r)``; the same seed gives the same output.

    Shape:
        images (B, 3, H, W), labels (B, H, W) -> (B, 3, H, W) float in [0, 1]

    Example:
        >>> import torch
        >>> net = torch.nn.Conv2d(3, 2, 1)
        >>> x = torch.full((1, 3, 4, 4), 0.5)  # (B, 3, H, W)
        >>> adv = attack(net, x, predicted_labels(net, x), AttackConfig(kind="fgsm", eps=0.1))
        >>> torch.allclose((adv - x).abs(), torch.full_like(x, 0.1))
        True
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError("perception.attacks.attack needs gradients w.r.t. the input: call it outside "
                           "torch.inference_mode() (torch.no_grad() is fine)")
    if not isinstance(config, AttackConfig):
        raise TypeError(f"attack config must be an AttackConfig, got {type(config).__name__}")
    if not (isinstance(seed, int) and seed >= 0):
        raise ValueError(f"attack seed must be an integer >= 0, got {seed!r}")
    _check_images(images)
    if labels.shape != (images.shape[0], *images.shape[-2:]) or labels.dtype != torch.int64:
        raise ValueError(f"attack labels must be (B, H, W) = {(images.shape[0], *images.shape[-2:])} int64 "
                         f"(255 = ignore), got {tuple(labels.shape)} {labels.dtype}")
    if labels.device != images.device:
        raise ValueError(f"attack labels are on {labels.device}, images on {images.device}")
    if images.shape[0] == 0 or config.eps == 0:
        return images.detach().clone()

    module = owning_module(model)
    with _model_untouched(module, images.device, seed), torch.enable_grad():
        clean = images.detach().clone()  # (B, 3, H, W); a plain tensor even when images came from inference mode
        if config.kind == "fgsm":
            return _fgsm(model, clean, labels, config)
        return _pgd(model, clean, labels, config, seed)


# --- the attacks -----------------------------------------------------------------------------


def _fgsm(model: Model, clean: torch.Tensor, labels: torch.Tensor, config: AttackConfig) -> torch.Tensor:
    """One step of length eps along the gradient's sign (L-inf) or its normalised direction (L2)."""
    grad, _, _ = _loss_grad(model, clean, labels, config.loss, lam=0.0)  # (B, 3, H, W)
    with torch.no_grad():
        adv = clean + _step(grad, config.norm, config.eps)  # (B, 3, H, W)
        return _project(adv, clean, config.norm, config.eps)


def _pgd(model: Model, clean: torch.Tensor, labels: torch.Tensor, config: AttackConfig, seed: int) -> torch.Tensor:
    """PGD with restarts; per image the worst iterate seen (start included) is returned."""
    batch = clean.shape[0]
    best = clean.clone()  # (B, 3, H, W)
    best_correct = torch.full((batch,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=clean.device)  # (B,)
    best_loss = torch.full((batch,), -math.inf, dtype=torch.float32, device=clean.device)  # (B,)
    alpha = config.effective_step_size
    for restart in range(config.restarts):
        adv = clean
        velocity = torch.zeros_like(clean)  # (B, 3, H, W) running direction (config.momentum)
        if config.random_start:
            generator = torch.Generator(device=clean.device)
            generator.manual_seed(_restart_seed(seed, restart))
            adv = _project(clean + _random_start(clean, config.norm, config.eps, generator), clean, config.norm, config.eps)
        for t in range(config.steps + 1):
            lam = t / (2 * config.steps)
            if t < config.steps:
                grad, correct, ce = _loss_grad(model, adv, labels, config.loss, lam)  # (B, 3, H, W), (B,), (B,)
            else:  # the last iterate: scored, not stepped from
                with torch.no_grad():
                    correct, ce = _per_image_terms(model(adv), labels)  # (B,), (B,)
            with torch.no_grad():
                worse = (correct < best_correct) | ((correct == best_correct) & (ce > best_loss))  # (B,)
                best = torch.where(worse[:, None, None, None], adv, best)  # (B, 3, H, W)
                best_correct = torch.where(worse, correct, best_correct)  # (B,)
                best_loss = torch.where(worse, ce, best_loss)  # (B,)
                if t < config.steps:
                    if config.momentum > 0:  # normalised per image, so every step weighs the same in the average
                        scale = grad.abs().flatten(1).mean(1).clamp_min(1e-12)[:, None, None, None]  # (B, 1, 1, 1)
                        velocity = config.momentum * velocity + grad / scale  # (B, 3, H, W)
                        grad = velocity
                    size = alpha if config.schedule == "constant" else alpha * (1.0 + math.cos(math.pi * t / config.steps))
                    adv = _project(adv + _step(grad, config.norm, size), clean, config.norm, config.eps)  # (B, 3, H, W)
    return best.detach()


def _loss_grad(model: Model, x: torch.Tensor, labels: torch.Tensor, loss: str,
               lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The attack loss's gradient w.r.t. ``x``, with the per-image correct-pixel count and CE at ``x``.

    Shape:
        x (B, 3, H, W), labels (B, H, W) -> grad (B, 3, H, W), correct (B,) int64, ce (B,) float32
    """
    x = x.detach().requires_grad_(True)  # (B, 3, H, W)
    logits = model(x)  # (B, K, h, w)
    pixel_ce, correct_map, valid, count = _pixel_terms(logits, labels)  # (B, h, w) x3, (B,)
    if loss == "segpgd":
        weight = torch.where(correct_map, 1.0 - lam, lam) * valid  # (B, h, w)
    else:
        weight = valid.to(pixel_ce.dtype)  # (B, h, w)
    objective = ((pixel_ce * weight).sum(dim=(1, 2)) / count).sum()  # scalar: per-image means, summed
    (grad,) = torch.autograd.grad(objective, x)  # (B, 3, H, W); parameters' .grad untouched
    with torch.no_grad():
        correct = correct_map.sum(dim=(1, 2))  # (B,)
        ce = ((pixel_ce * valid).sum(dim=(1, 2)) / count).float()  # (B,)
    return grad, correct, ce


def _per_image_terms(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the correct-pixel count (B,) int64 and the mean CE over labelled pixels (B,) float32."""
    pixel_ce, correct_map, valid, count = _pixel_terms(logits, labels)  # (B, h, w) x3, (B,)
    return correct_map.sum(dim=(1, 2)), ((pixel_ce * valid).sum(dim=(1, 2)) / count).float()


def _pixel_terms(logits: torch.Tensor, labels: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel CE, correct mask, labelled mask on the logits' grid; labelled count per image.

    Shape:
        logits (B, K, h, w), labels (B, H, W) -> (B, h, w) float, (B, h, w) bool, (B, h, w) bool, (B,) float
    """
    if logits.dim() != 4 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"attack model must give logits (B={labels.shape[0]}, K, h, w), got {tuple(logits.shape)}")
    if labels.shape[-2:] != logits.shape[-2:]:
        labels = F.interpolate(labels[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()  # (B, h, w)
    valid = labels != IGNORE_INDEX  # (B, h, w)
    target = torch.where(valid, labels, 0)  # (B, h, w)
    pixel_ce = F.cross_entropy(logits.float(), target, reduction="none")  # (B, h, w)
    correct_map = (logits.argmax(dim=1) == target) & valid  # (B, h, w)
    count = valid.sum(dim=(1, 2)).clamp_min(1).to(pixel_ce.dtype)  # (B,)
    return pixel_ce, correct_map, valid, count


# --- geometry of the balls -------------------------------------------------------------------


def _radius(x: torch.Tensor, eps: float) -> float:
    """The L2 length of an RMS change of ``eps`` per pixel value of one image of ``x``."""
    return eps * math.sqrt(x[0].numel())


def _l2_norms(v: torch.Tensor) -> torch.Tensor:
    """Shape: (B, 3, H, W) -> (B, 1, 1, 1) per-image L2 norms."""
    return v.flatten(1).norm(dim=1)[:, None, None, None]  # (B, 1, 1, 1)


def _step(grad: torch.Tensor, norm: str, size: float) -> torch.Tensor:
    """A step of ``size`` (units of eps) up the gradient: its sign (L-inf) or its direction (L2).

    A zero gradient (e.g. an image with no labelled pixel) gives no step.
    """
    if norm == "linf":
        return size * grad.sign()  # (B, 3, H, W)
    return _radius(grad, size) * grad / _l2_norms(grad).clamp_min(1e-30)  # (B, 3, H, W)


def _project(adv: torch.Tensor, clean: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Onto the eps ball around ``clean`` (per image), then into [0, 1] (which keeps it in the ball)."""
    delta = adv - clean  # (B, 3, H, W)
    if norm == "linf":
        delta = delta.clamp(-eps, eps)  # (B, 3, H, W)
    else:
        scale = (_radius(delta, eps) / _l2_norms(delta).clamp_min(1e-30)).clamp(max=1.0)  # (B, 1, 1, 1)
        delta = delta * scale  # (B, 3, H, W)
    return (clean + delta).clamp(0.0, 1.0)  # (B, 3, H, W)


def _random_start(clean: torch.Tensor, norm: str, eps: float, generator: torch.Generator) -> torch.Tensor:
    """A random offset in the ball: uniform per value (L-inf); uniform direction, radius uniform (L2)."""
    shape, device = clean.shape, clean.device
    if norm == "linf":
        return (torch.rand(shape, generator=generator, device=device, dtype=clean.dtype) * 2 - 1) * eps  # (B, 3, H, W)
    direction = torch.randn(shape, generator=generator, device=device, dtype=clean.dtype)  # (B, 3, H, W)
    direction = direction / _l2_norms(direction).clamp_min(1e-30)  # (B, 3, H, W)
    radius = torch.rand((shape[0], 1, 1, 1), generator=generator, device=device, dtype=clean.dtype)  # (B, 1, 1, 1)
    return direction * radius * _radius(clean, eps)  # (B, 3, H, W)


_GLOBAL_RNG_KEY = 2**31 - 1  # the key of the global RNG's seed (restart keys are 0, 1, ...)


def _restart_seed(seed: int, restart: int) -> int:
    """A 63-bit seed for restart ``restart`` of an attack seeded ``seed`` (stable across runs)."""
    return int(np.random.SeedSequence([seed, restart]).generate_state(1, np.uint64)[0] >> np.uint64(1))


# --- inputs and model state -----------------------------------------------------------------


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"attack images must be (B, 3, H, W) float RGB in [0, 1], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"attack images must be float RGB in [0, 1], got {images.dtype}")


@contextmanager
def _model_untouched(module: nn.Module | None, device: torch.device, seed: int) -> Iterator[None]:
    """Run the attack with BatchNorm momentum 0 and a forked, seeded global RNG; restore every
    buffer, the momenta and the training mode afterwards."""
    norms: list[tuple[nn.modules.batchnorm._NormBase, float | None]] = []
    training: list[tuple[nn.Module, bool]] = []
    if module is not None:
        training = [(m, m.training) for m in module.modules()]
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase):
                norms.append((m, m.momentum))
                m.momentum = 0.0
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with frozen_buffers(module), torch.random.fork_rng(devices=rng_devices,
                                                          device_type=device.type if device.type != "cpu" else "cuda"):
            torch.default_generator.manual_seed(_restart_seed(seed, _GLOBAL_RNG_KEY))  # dropout in training mode
            if device.type == "cuda":
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(_restart_seed(seed, _GLOBAL_RNG_KEY))
            yield
    finally:
        for m, momentum in norms:
            m.momentum = momentum
        for m, mode in training:
            m.training = mode
