"""Named, seeded, replayable Kornia corruptions of road frames, and the worst of k of them.

Each preset is one Kornia augmentation that always applies (``p=1``) with a range a driver
could meet, moderate to strong. ``corrupt(preset, images, labels, seed)`` samples its
parameters from a private torch RNG seeded with ``seed`` (the caller's global RNG is left
as it was), applies them, and returns a :class:`CorruptionView` whose :class:`Recipe`
(preset, seed, sampled parameters; JSON-safe) :func:`replay` turns back into the same view,
bit for bit. :func:`worst_of_k` draws k views, keeps the one that hurts a model most, and
can step a differentiable preset's parameter up the model's loss within its range.

Presets and ranges (H x W is the frame's size):

======================  ==========================================================
preset                  what and range
======================  ==========================================================
rain                    RandomRain: 0.8-1.6 % of the pixels start a drop; drops
                        H/32-H/10 px long, slanted up to W/100 px; drop colour 200/255
snow                    RandomSnow: lightness below 0.3-0.5 brightened x1.5-2.5
plasma_shadow           RandomPlasmaShadow: fractal shadows (roughness 0.1-0.7) over
                        30-60 % of the frame, darkening by 0.3-0.6
motion_blur             RandomMotionBlur: kernel 5-11 px (one per batch), angle
                        +-45 deg, direction -1..1
gaussian_noise          RandomGaussianNoise: sensor noise, std 0.04-0.12 (per image),
                        clipped to [0, 1]
jpeg                    RandomJPEG: quality 15-40
brightness              RandomBrightness: under-exposure, factor 0.5-0.8 (adds -0.5..-0.2)
contrast                RandomContrast: haze / glare, factor 0.35-0.65
gamma                   RandomGamma: over-exposure, gamma 0.35-0.6 (gain 1)
planckian_jitter        RandomPlanckianJitter (blackbody): warm street light (table
                        rows 1-5) or cold shade (rows 18-24)
linear_illumination     RandomLinearIllumination: a ramp of gain 0.25-0.45 from an
                        edge, brightening or darkening
gaussian_illumination   RandomGaussianIllumination: a spot (sigma 0.2-0.5 of the side,
                        centre 0.1-0.9) of gain 0.25-0.45, brightening or darkening
shake                   RandomAffine (geometric, camera shake): rotation +-4 deg,
                        shift up to 4 % of each side, zoom 0.95-1.08; bilinear image,
                        nearest labels, 255 where the frame has no pixel
======================  ==========================================================

Milliseconds per ``corrupt`` call on one frame (with its labels; best of 3 x 5 calls, one
CPU thread on the 2-core development machine, shared; ``worst_of_k`` adds a model forward
per view, and two per parameter step)::

    preset                 128x256   360x480
    rain                      0.7       1.4
    snow                      2.4      11.4
    plasma_shadow             1.9      11.2
    motion_blur               1.1       3.9
    gaussian_noise            0.5       1.8
    jpeg                      3.0       7.8
    brightness                0.3       0.5
    contrast                  0.3       0.4
    gamma                     0.5       1.4
    planckian_jitter          0.4       0.6
    linear_illumination       0.5       1.3
    gaussian_illumination     0.9       2.2
    shake                     1.8       4.7

Replay: the recipe keeps every parameter Kornia samples that has a few numbers per image
(drop counts and sizes, blur kernel and angle, JPEG quality, factors, the affine's angle,
shift, scale and centre, ...). Per-pixel random fields (rain drop positions, the plasma map,
the noise, the illumination pattern's shape) are not written out: :func:`replay` draws them
again from the recipe's seed, which gives the same field for the same frame size. Noise and
illumination keep their strength in the recipe (``sigma``, signed ``gain``) and scale the
redrawn unit field by it, so a stepped strength replays too.

Parameters worst_of_k can step (:data:`DIFFERENTIABLE`): ``brightness_factor``,
``contrast_factor``, ``gamma_factor`` (through :func:`kornia.enhance.adjust_brightness`,
``adjust_contrast``, ``adjust_gamma``), the noise's ``sigma`` and the illuminations' signed
``gain`` (its magnitude kept in range, its sign as drawn).

Devices: every parameter is drawn on the CPU (Kornia's generators' default), so a seed gives
the same parameters for CPU and CUDA frames; Kornia moves them to the frame's device to apply
them. A replay is bit-identical on the device the view was made on.

Example:
    >>> import torch
    >>> images = torch.rand(2, 3, 32, 48)  # (B, 3, H, W)
    >>> labels = torch.randint(0, 11, (2, 32, 48))  # (B, H, W)
    >>> view = corrupt("shake", images, labels, seed=3)
    >>> view.images.shape, view.labels.shape, view.transform.shape
    (torch.Size([2, 3, 32, 48]), torch.Size([2, 32, 48]), torch.Size([2, 3, 3]))
    >>> again = replay(Recipe.from_json(view.recipe.to_json()), images, labels)
    >>> torch.equal(again.images, view.images), torch.equal(again.labels, view.labels)
    (True, True)
    >>> check_presets("rain, jpeg")
    ('rain', 'jpeg')
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import kornia.augmentation as K
import kornia.enhance as KE
import numpy as np
import torch
import torch.nn.functional as F
from kornia.augmentation.container.params import ParamItem

from perception.labels import IGNORE_INDEX
from perception.model_state import frozen_buffers
from perception.views import GEOMETRIC, PRESETS, check_presets  # the names live torch-free, beside the configs

logger = logging.getLogger(__name__)

# Ranges (documented in the module docstring).
NOISE_STD = (0.04, 0.12)
BRIGHTNESS = (0.5, 0.8)
CONTRAST = (0.35, 0.65)
GAMMA = (0.35, 0.6)
ILLUMINATION_GAIN = (0.25, 0.45)
PLANCKIAN_ROWS = [1, 2, 3, 4, 5, 18, 19, 20, 21, 22, 23, 24]
SHAKE_DEGREES, SHAKE_TRANSLATE, SHAKE_SCALE = 4.0, (0.04, 0.04), (0.95, 1.08)
STEP_FRACTION = 0.25  # a worst_of_k parameter step, as a fraction of the preset's range


def _rain(height: int, width: int) -> torch.nn.Module:
    area = height * width
    drops = (max(1, round(0.008 * area)), max(2, round(0.016 * area)))
    length = (max(2, height // 32), max(3, height // 10))
    slant = max(1, width // 100)
    return K.RandomRain(number_of_drops=drops, drop_height=length, drop_width=(-slant, slant), p=1.0)


_BUILDERS: dict[str, Callable[[int, int], torch.nn.Module]] = {
    "rain": _rain,
    "snow": lambda h, w: K.RandomSnow(snow_coefficient=(0.3, 0.5), brightness=(1.5, 2.5), p=1.0),
    "plasma_shadow": lambda h, w: K.RandomPlasmaShadow(roughness=(0.1, 0.7), shade_intensity=(-0.6, -0.3),
                                                       shade_quantity=(0.3, 0.6), p=1.0),
    "motion_blur": lambda h, w: K.RandomMotionBlur(kernel_size=(5, 11), angle=(-45.0, 45.0), direction=(-1.0, 1.0), p=1.0),
    "gaussian_noise": lambda h, w: K.RandomGaussianNoise(mean=0.0, std=1.0, p=1.0),  # unit noise, scaled by sigma
    "jpeg": lambda h, w: K.RandomJPEG(jpeg_quality=(15.0, 40.0), p=1.0),
    "brightness": lambda h, w: K.RandomBrightness(brightness=BRIGHTNESS, p=1.0),
    "contrast": lambda h, w: K.RandomContrast(contrast=CONTRAST, p=1.0),
    "gamma": lambda h, w: K.RandomGamma(gamma=GAMMA, gain=(1.0, 1.0), p=1.0),
    "planckian_jitter": lambda h, w: K.RandomPlanckianJitter(mode="blackbody", select_from=PLANCKIAN_ROWS, p=1.0),
    "linear_illumination": lambda h, w: K.RandomLinearIllumination(gain=ILLUMINATION_GAIN, sign=(-1.0, 1.0), p=1.0),
    "gaussian_illumination": lambda h, w: K.RandomGaussianIllumination(gain=ILLUMINATION_GAIN, center=(0.1, 0.9),
                                                                       sigma=(0.2, 0.5), sign=(-1.0, 1.0), p=1.0),
    "shake": lambda h, w: K.RandomAffine(degrees=SHAKE_DEGREES, translate=SHAKE_TRANSLATE, scale=SHAKE_SCALE,
                                         resample="bilinear", padding_mode="zeros", p=1.0),
}

# Per-pixel fields drawn again from the seed on replay instead of being written to the recipe;
# bookkeeping keys Kornia adds are dropped too.
_REDRAWN = frozenset({"coordinates_factor", "plasma", "gaussian_noise", "gradient"})
_DROPPED = frozenset({"batch_prob", "forward_input_shape"})
# Presets whose per-pixel field is a unit pattern scaled by a per-image strength kept in the
# recipe: preset -> (Kornia's field key, the strength's recipe key).
_SCALED = {"gaussian_noise": ("gaussian_noise", "sigma"),
           "linear_illumination": ("gradient", "gain"),
           "gaussian_illumination": ("gradient", "gain")}


@dataclass(frozen=True)
class _Knob:
    """A preset parameter worst_of_k can step: its recipe key, its range, and whether it keeps
    a sign (the range then bounds its magnitude)."""

    key: str
    low: float
    high: float
    signed: bool = False

    def clip(self, value: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        """Shape: value (B,), sign (B,) -> (B,) inside the range (magnitude inside it, sign kept)."""
        if self.signed:
            return value.abs().clamp(self.low, self.high) * sign
        return value.clamp(self.low, self.high)


_KNOBS: dict[str, _Knob] = {
    "brightness": _Knob("brightness_factor", *BRIGHTNESS),
    "contrast": _Knob("contrast_factor", *CONTRAST),
    "gamma": _Knob("gamma_factor", *GAMMA),
    "gaussian_noise": _Knob("sigma", *NOISE_STD),
    "linear_illumination": _Knob("gain", *ILLUMINATION_GAIN, signed=True),
    "gaussian_illumination": _Knob("gain", *ILLUMINATION_GAIN, signed=True),
}
DIFFERENTIABLE: frozenset[str] = frozenset(_KNOBS)


@dataclass(frozen=True)
class Recipe:
    """How a view was made: preset, seed and the sampled parameters (nested lists of floats or
    ints, one entry per image). JSON-safe; :func:`replay` makes the same view from it.

    Example:
        >>> r = Recipe("jpeg", 7, {"jpeg_quality": [21.5]})
        >>> Recipe.from_json(r.to_json()) == r
        True
    """

    preset: str
    seed: int
    params: dict[str, list] = field(default_factory=dict)

    def to_json(self) -> dict:
        """A plain dict (str, int and lists only)."""
        return {"preset": self.preset, "seed": int(self.seed), "params": {k: list(v) for k, v in self.params.items()}}

    @staticmethod
    def from_json(d: dict) -> "Recipe":
        """The recipe :meth:`to_json` wrote (checks the preset's name)."""
        try:
            preset, seed, params = d["preset"], d["seed"], d.get("params", {})
        except (KeyError, TypeError) as err:
            raise ValueError(f"recipe: expected a dict with 'preset', 'seed' and 'params', got {d!r:.200}") from err
        check_presets([preset], "recipe.preset")
        return Recipe(str(preset), int(seed), {str(k): list(v) for k, v in params.items()})


@dataclass
class CorruptionView:
    """A corrupted batch and how to make it again.

    Attributes:
        images: (B, 3, H, W) float in [0, 1].
        labels: (B, H, W) int64, moved with a geometric preset (255 where no frame pixel lands),
            the given labels for a photometric one; None if none were given.
        recipe: the :class:`Recipe` that :func:`replay` turns back into this view.
        transform: (B, 3, 3) float, the pixel map source -> view of a geometric preset (what
            ``cv2.warpPerspective`` takes), else None.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    recipe: Recipe
    transform: torch.Tensor | None = None


def _check_inputs(images: torch.Tensor, labels: torch.Tensor | None) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images: expected a (B, 3, H, W) float tensor in [0, 1], got {shape}")
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0], *images.shape[-2:]):
            shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"labels: expected (B, H, W) = {(images.shape[0], *images.shape[-2:])}, got {shape}")


def _fork_devices(images: torch.Tensor) -> list[int]:
    return [images.device.index if images.device.index is not None else torch.cuda.current_device()] \
        if images.device.type == "cuda" else []


def _sample(preset: str, aug: torch.nn.Module, images: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Kornia's parameters for ``preset`` drawn from a private RNG seeded with ``seed``, plus the
    strength (and unit field) of a scaled preset. The caller's RNG state is left untouched."""
    batch = images.shape[0]
    with torch.random.fork_rng(devices=_fork_devices(images)):
        torch.manual_seed(int(seed))
        params = dict(aug.forward_parameters(images.shape))
        if preset == "gaussian_noise":
            low, high = NOISE_STD
            params["sigma"] = low + (high - low) * torch.rand(batch)  # (B,)
    if preset in ("linear_illumination", "gaussian_illumination"):
        gradient = params["gradient"]  # (B, C, H, W) = sign * gain * pattern in [0, 1]
        flat = gradient.flatten(1)
        peak = flat.gather(1, flat.abs().argmax(1, keepdim=True))[:, 0]  # (B,) signed gain
        params["_unit"] = gradient / peak.view(-1, 1, 1, 1)  # (B, C, H, W)
        params["gain"] = peak
    elif preset == "gaussian_noise":
        params["_unit"] = params["gaussian_noise"]  # (B, 3, H, W) standard normal
    return params


def _recorded(params: dict[str, torch.Tensor]) -> dict[str, list]:
    return {k: v.tolist() for k, v in params.items()
            if k not in _REDRAWN and k not in _DROPPED and not k.startswith("_")}


def _override(preset: str, params: dict[str, torch.Tensor], recipe_params: dict[str, list]) -> None:
    for key, value in recipe_params.items():
        if key not in params or key in _REDRAWN or key in _DROPPED:
            raise ValueError(f"recipe.params: {preset!r} has no parameter {key!r} (has: {', '.join(sorted(_recorded(params)))})")
        drawn = params[key]
        given = torch.tensor(value, dtype=drawn.dtype, device=drawn.device)
        if given.shape != drawn.shape:
            raise ValueError(f"recipe.params[{key!r}]: shape {tuple(given.shape)} does not fit this batch "
                             f"(expected {tuple(drawn.shape)})")
        params[key] = given


def _render(recipe: Recipe, images: torch.Tensor, labels: torch.Tensor | None,
            use_recipe_params: bool) -> CorruptionView:
    """The one path every view takes: draw the preset's parameters from the seed, put the
    recipe's in their place (for a replay), apply."""
    _check_inputs(images, labels)
    preset = recipe.preset
    if preset not in PRESETS:
        check_presets([preset], "preset")
    height, width = images.shape[-2:]
    aug = _BUILDERS[preset](height, width)
    params = _sample(preset, aug, images, recipe.seed)
    if use_recipe_params:
        _override(preset, params, recipe.params)
    if preset in _SCALED:
        field_key, scale_key = _SCALED[preset]
        params[field_key] = params["_unit"] * params[scale_key].view(-1, 1, 1, 1)  # (B, C, H, W)
    kornia_params = {k: v for k, v in params.items() if not k.startswith("_") and k not in ("sigma", "gain")}
    recipe_out = Recipe(preset, int(recipe.seed), _recorded(params))
    if preset in GEOMETRIC:
        seq = K.AugmentationSequential(aug, data_keys=["input", "mask"] if labels is not None else ["input"])
        item = [ParamItem(next(iter(seq.named_children()))[0], kornia_params)]
        if labels is None:
            out = seq(images, params=item)  # (B, 3, H, W)
            moved = None
        else:
            masks = (labels + 1).to(images.dtype)[:, None]  # (B, 1, H, W): 0 is "outside the frame"
            out, masks_out = seq(images, masks, params=item)
            shifted = masks_out[:, 0].round().long()  # (B, H, W)
            moved = torch.where(shifted == 0, torch.full_like(shifted, IGNORE_INDEX), shifted - 1)
        transform = aug.transform_matrix.to(images.device)  # (B, 3, 3)
        return CorruptionView(out.clamp(0, 1), moved, recipe_out, transform)
    out = aug(images, params=kornia_params).clamp(0, 1)  # (B, 3, H, W)
    return CorruptionView(out, labels, recipe_out, None)


def corrupt(preset: str, images: torch.Tensor, labels: torch.Tensor | None = None, seed: int = 0) -> CorruptionView:
    """``images`` under ``preset`` with parameters drawn from ``seed`` (the same for the same
    preset, seed and batch shape; the caller's RNG is untouched).

    Shape:
        images (B, 3, H, W) float in [0, 1], labels (B, H, W) int64 or None -> CorruptionView

    Example:
        >>> x = torch.full((1, 3, 8, 8), 0.5)
        >>> v = corrupt("brightness", x, seed=1)
        >>> bool((v.images < x).all()), v.recipe.preset, sorted(v.recipe.params)
        (True, 'brightness', ['brightness_factor'])
    """
    check_presets([preset], "preset")
    view = _render(Recipe(preset, int(seed), {}), images, labels, use_recipe_params=False)
    logger.debug("corrupt %s seed=%d params=%s", preset, seed, view.recipe.params)
    return view


def replay(recipe: Recipe, images: torch.Tensor, labels: torch.Tensor | None = None) -> CorruptionView:
    """The view ``recipe`` describes, bit-identical to the one it came from (same frames).

    Example:
        >>> x = torch.rand(1, 3, 16, 16)
        >>> v = corrupt("motion_blur", x, seed=4)
        >>> torch.equal(replay(v.recipe, x).images, v.images)
        True
    """
    return _render(recipe, images, labels, use_recipe_params=True)


def _surrogate(preset: str, images: torch.Tensor, value: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The preset applied with a differentiable strength ``value`` (B,) (what its Kornia
    augmentation computes). Shape: images (B, 3, H, W) -> (B, 3, H, W)."""
    x = images.clamp(0, 1)
    if preset == "brightness":
        return KE.adjust_brightness(x, value - 1, clip_output=True)
    if preset == "contrast":
        return KE.adjust_contrast(x, value, clip_output=True)
    if preset == "gamma":
        return KE.adjust_gamma(x, value, params["gain_factor"].to(x))
    unit = params["_unit"].to(x)  # (B, C, H, W)
    return (x + unit * value.view(-1, 1, 1, 1)).clamp(0, 1)


def _labels_at(labels: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if labels.shape[-2:] == size:
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()  # (B, h, w)


def _score(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(pixel accuracy, cross-entropy) of ``logits`` (B, K, h, w) against ``labels`` (B, H, W);
    no labelled pixel scores (1.0, 0.0), a view with nothing to hurt."""
    labels = _labels_at(labels, logits.shape[-2:])  # (B, h, w)
    valid = labels != IGNORE_INDEX
    count = int(valid.sum())
    if count == 0:
        return 1.0, 0.0
    top = int(labels[valid].max())
    if top >= logits.shape[1]:
        raise ValueError(f"labels: class {top} is not among the model's {logits.shape[1]} classes (255 = ignore)")
    correct = int(((logits.argmax(1) == labels) & valid).sum())
    ce = float(F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX))
    return correct / count, ce


def _hurt(score: tuple[float, float]) -> tuple[float, float]:
    """Sort key: larger hurts more (lower accuracy, then higher cross-entropy)."""
    return -score[0], score[1]


def view_seed(seed: int, j: int) -> int:
    """The seed of worst_of_k's view ``j`` under ``seed`` (a 31-bit int).

    Example:
        >>> view_seed(0, 1) == view_seed(0, 1) != view_seed(0, 2)
        True
    """
    return int(np.random.SeedSequence([int(seed), int(j)]).generate_state(1, dtype=np.uint32)[0] >> 1)


def worst_of_k(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, presets: str | Sequence[str],
               k: int, seed: int, param_steps: int = 0) -> CorruptionView:
    """Of ``k`` views (preset ``j`` drawn uniformly from ``presets`` by a numpy Generator seeded
    with ``seed``; view ``j`` seeded with :func:`view_seed` ``(seed, j)``), the one on which
    ``model`` has the lowest pixel accuracy against ``labels`` (moved labels for a geometric
    view; ties go to the higher cross-entropy). If ``param_steps > 0`` and the kept preset is
    in :data:`DIFFERENTIABLE`, its strength then takes up to ``param_steps`` signed-gradient
    ascent steps on the cross-entropy (each ``STEP_FRACTION`` of the range, clipped to it); a
    step is kept only if it hurts at least as much, and the recipe records the result.

    The model's mode, parameters, grads and BN statistics are left as they were.

    Shape:
        images (B, 3, H, W) in [0, 1], labels (B, H, W) int64 (255 = ignore); the model maps
        (B, 3, H, W) -> logits (B, K, h, w) -> CorruptionView

    Example:
        >>> net = torch.nn.Conv2d(3, 4, 1)
        >>> x, y = torch.rand(1, 3, 16, 16), torch.randint(0, 4, (1, 16, 16))
        >>> v = worst_of_k(net, x, y, "brightness,shake", k=3, seed=0, param_steps=2)
        >>> v.recipe.preset in ("brightness", "shake"), v.images.shape
        (True, torch.Size([1, 3, 16, 16]))
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an int >= 1 views to choose from, got {k!r}")
    if not isinstance(param_steps, int) or param_steps < 0:
        raise ValueError(f"param_steps: expected an int >= 0, got {param_steps!r}")
    names = check_presets(presets, "presets")
    if not names:
        raise ValueError("presets: no preset to draw views from (empty)")
    _check_inputs(images, labels)
    if labels is None:
        raise ValueError("labels: worst_of_k needs (B, H, W) labels to score the views")
    rng = np.random.default_rng(int(seed))
    drawn = [names[int(i)] for i in rng.integers(0, len(names), size=k)]
    # The model's own randomness (dropout in train mode) draws from a private RNG as well.
    with torch.random.fork_rng(devices=_fork_devices(images)), frozen_buffers(model):
        net = model
        torch.manual_seed(int(seed))
        best: CorruptionView | None = None
        best_score = (0.0, 0.0)
        for j, preset in enumerate(drawn):
            view = corrupt(preset, images, labels, seed=view_seed(seed, j))
            with torch.no_grad():
                score = _score(net(view.images), view.labels)
            logger.debug("worst_of_k view %d %s: accuracy %.4f ce %.4f", j, preset, *score)
            if best is None or _hurt(score) > _hurt(best_score):
                best, best_score = view, score
        assert best is not None
        if param_steps > 0 and best.recipe.preset in DIFFERENTIABLE:
            best, best_score = _step(net, best, best_score, images, labels, param_steps)
    logger.debug("worst_of_k kept %s seed=%d: accuracy %.4f", best.recipe.preset, best.recipe.seed, best_score[0])
    return best


def _step(net: torch.nn.Module, view: CorruptionView, score: tuple[float, float], images: torch.Tensor,
          labels: torch.Tensor, steps: int) -> tuple[CorruptionView, tuple[float, float]]:
    """Signed-gradient ascent of the cross-entropy on the kept preset's strength."""
    preset = view.recipe.preset
    knob = _KNOBS[preset]
    height, width = images.shape[-2:]
    params = _sample(preset, _BUILDERS[preset](height, width), images, view.recipe.seed)
    _override(preset, params, view.recipe.params)
    value = params[knob.key].to(images.device, images.dtype)  # (B,)
    sign = torch.where(value < 0, -1.0, 1.0).to(value)  # (B,)
    step = STEP_FRACTION * (knob.high - knob.low)
    for _ in range(steps):
        factor = value.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = net(_surrogate(preset, images, factor, params))  # (B, K, h, w)
            loss = F.cross_entropy(logits.float(), _labels_at(labels, logits.shape[-2:]), ignore_index=IGNORE_INDEX)
            (grad,) = torch.autograd.grad(loss, [factor], allow_unused=True)
        if grad is None or not torch.isfinite(loss):
            break
        value = knob.clip(value + step * grad.sign(), sign).detach()  # (B,)
        stepped = dict(view.recipe.params)
        stepped[knob.key] = value.to(params[knob.key].dtype).cpu().tolist()
        candidate = replay(Recipe(preset, view.recipe.seed, stepped), images, labels)
        with torch.no_grad():
            candidate_score = _score(net(candidate.images), candidate.labels)
        logger.debug("worst_of_k step %s=%s: accuracy %.4f ce %.4f", knob.key, stepped[knob.key], *candidate_score)
        if _hurt(candidate_score) >= _hurt(score):
            view, score = candidate, candidate_score
    return view, score
