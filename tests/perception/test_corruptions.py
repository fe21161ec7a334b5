"""perception.corruptions: every preset seeded, replayable and in range; shake moves labels as
cv2 would; worst_of_k keeps the most hurtful view and leaves the model and the RNG alone."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from perception.corruptions import (
    DIFFERENTIABLE, GEOMETRIC, PRESETS, Recipe, _KNOBS, _score, check_presets, corrupt, replay, view_seed, worst_of_k,
)

H, W = 48, 64


@pytest.fixture(scope="module")
def frames() -> tuple[torch.Tensor, torch.Tensor]:
    """Two smooth, road-like frames (sky above, road below, noise) and labels with an ignored strip."""
    gen = torch.Generator().manual_seed(0)
    rows = torch.linspace(0, 1, H).view(1, 1, H, 1)
    images = (0.25 + 0.5 * rows + 0.15 * torch.rand(2, 3, H, W, generator=gen)).clamp(0, 1)  # (2, 3, H, W)
    labels = torch.randint(0, 11, (2, H, W), generator=gen)  # (2, H, W)
    labels[:, :3] = 255
    return images, labels


def test_preset_names():
    assert PRESETS[0] == "rain" and PRESETS[-1] == "shake" and len(PRESETS) == 13
    assert GEOMETRIC == {"shake"}
    assert {"brightness", "contrast", "gamma"} <= DIFFERENTIABLE <= set(PRESETS) - GEOMETRIC


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_view(preset, frames):
    images, labels = frames
    before = images.clone()
    view = corrupt(preset, images, labels, seed=5)
    assert torch.equal(images, before), "the input was modified"
    assert view.images.shape == images.shape and view.images.dtype == images.dtype
    assert float(view.images.min()) >= 0.0 and float(view.images.max()) <= 1.0
    assert float((view.images - images).abs().mean()) > 1e-3, "the preset left the frame (nearly) as it was"
    assert view.recipe.preset == preset and view.recipe.seed == 5 and view.recipe.params

    again = corrupt(preset, images, labels, seed=5)
    assert torch.equal(again.images, view.images) and again.recipe == view.recipe
    other = corrupt(preset, images, labels, seed=6)
    assert not torch.equal(other.images, view.images) and other.recipe.params != view.recipe.params

    text = json.dumps(view.recipe.to_json())
    recipe = Recipe.from_json(json.loads(text))
    assert recipe == view.recipe
    replayed = replay(recipe, images, labels)
    assert torch.equal(replayed.images, view.images), "replay is not bit-identical"
    assert replayed.recipe == view.recipe
    if preset in GEOMETRIC:
        assert torch.equal(replayed.labels, view.labels) and torch.equal(replayed.transform, view.transform)
    else:
        assert view.labels is labels and view.transform is None
        assert corrupt(preset, images, seed=5).labels is None


@pytest.mark.parametrize("preset", sorted(DIFFERENTIABLE))
def test_changing_the_recipe_changes_the_view(preset, frames):
    """The recipe's parameters are the ones applied (not just a note beside a reseeded draw)."""
    images, _ = frames
    view = corrupt(preset, images, seed=2)
    key = _KNOBS[preset].key
    params = dict(view.recipe.params)
    params[key] = [v * 0.8 for v in params[key]]
    edited = replay(Recipe(preset, 2, params), images)
    assert not torch.equal(edited.images, view.images)
    assert edited.recipe.params[key] == pytest.approx(params[key])


def test_shake_moves_labels_like_cv2(frames):
    images, labels = frames
    for seed in range(4):
        view = corrupt("shake", images, labels, seed=seed)
        assert view.labels.dtype == torch.int64 and view.labels.shape == labels.shape
        assert view.transform.shape == (2, 3, 3)
        values = set(view.labels.unique().tolist())
        assert values <= set(range(11)) | {255}
        # pixels that no frame pixel maps to are ignored, not class 0
        outside = []
        for b in range(2):
            matrix = view.transform[b].double().numpy()
            warped = cv2.warpPerspective(labels[b].numpy().astype(np.uint8), matrix, (W, H), flags=cv2.INTER_NEAREST,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=255)
            agree = float((warped == view.labels[b].numpy()).mean())
            assert agree >= 0.99, f"seed {seed} image {b}: cv2 and kornia labels agree on {agree:.4f}"
            inverse = np.linalg.inv(matrix)
            ys, xs = np.mgrid[0:H, 0:W]
            src = inverse @ np.stack([xs.ravel(), ys.ravel(), np.ones(H * W)])
            src = src[:2] / src[2]
            outside.append(((src[0] < -0.5) | (src[0] > W - 0.5) | (src[1] < -0.5) | (src[1] > H - 0.5)).reshape(H, W))
        outside = torch.from_numpy(np.stack(outside))
        if outside.any():
            assert float((view.labels[outside] == 255).float().mean()) >= 0.9


def test_shake_without_labels(frames):
    images, labels = frames
    with_labels = corrupt("shake", images, labels, seed=1)
    without = corrupt("shake", images, seed=1)
    assert without.labels is None and torch.equal(without.images, with_labels.images)
    assert torch.equal(without.transform, with_labels.transform)


def test_global_rng_untouched(frames):
    images, labels = frames
    model = _tiny_model(train=True)
    model.append(torch.nn.Dropout2d(0.5))  # the model's own randomness is kept off the caller's RNG too
    model_labels = _model_labels(model, images)
    model.train()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for preset in PRESETS:
        corrupt(preset, images, labels, seed=1)
    worst_of_k(model, images, model_labels, "all", k=3, seed=0, param_steps=1)
    assert torch.equal(torch.get_rng_state(), state)


def test_check_presets():
    assert check_presets("all") == PRESETS
    assert check_presets("") == () and check_presets([]) == () and check_presets(None) == ()
    assert check_presets(" rain , snow,rain ") == ("rain", "snow")
    assert check_presets(("shake", "gamma")) == ("shake", "gamma")
    with pytest.raises(ValueError, match=r"^robust\.presets: unknown preset 'fog' \(choose from: rain, snow, plasma_shadow, "):
        check_presets("rain,fog", setting="robust.presets")
    with pytest.raises(ValueError, match="presets: unknown preset 'all'"):
        check_presets(["all", "rain"])
    with pytest.raises(ValueError, match="presets: unknown preset 3"):
        check_presets([3])


def test_bad_inputs(frames):
    images, labels = frames
    with pytest.raises(ValueError, match="preset: unknown preset 'fog'"):
        corrupt("fog", images)
    with pytest.raises(ValueError, match="images: expected a"):
        corrupt("rain", images[0])
    with pytest.raises(ValueError, match="labels: expected"):
        corrupt("rain", images, labels[:, :5])
    recipe = corrupt("jpeg", images, seed=1).recipe
    with pytest.raises(ValueError, match=r"recipe.params\['jpeg_quality'\]: shape"):
        replay(recipe, images[:1])
    with pytest.raises(ValueError, match="has no parameter 'nope'"):
        replay(Recipe("jpeg", 1, {"nope": [1.0, 2.0]}), images)


def _tiny_model(stride: int = 1, train: bool = False) -> torch.nn.Module:
    torch.manual_seed(11)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=stride, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 5, 1),
    )
    # a few training batches so the BN statistics are not the defaults
    for _ in range(3):
        model(torch.rand(2, 3, H, W))
    return model.train(train)


def _model_labels(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's own clean prediction at frame size: clean accuracy 1, corruptions hurt it."""
    with torch.no_grad():
        logits = model.eval()(images)
    return torch.nn.functional.interpolate(logits, size=images.shape[-2:], mode="nearest").argmax(1)


@pytest.mark.parametrize("stride", [1, 2])
def test_worst_of_k_keeps_the_most_hurtful(frames, stride):
    images, _ = frames
    model = _tiny_model(stride)
    labels = _model_labels(model, images)
    k, seed = 6, 3
    view = worst_of_k(model, images, labels, "all", k=k, seed=seed)
    drawn = [PRESETS[int(i)] for i in np.random.default_rng(seed).integers(0, len(PRESETS), size=k)]
    scores = []
    for j, preset in enumerate(drawn):
        candidate = corrupt(preset, images, labels, seed=view_seed(seed, j))
        with torch.no_grad():
            scores.append(_score(model(candidate.images), candidate.labels))
    with torch.no_grad():
        kept = _score(model(view.images), view.labels)
    assert kept in scores and (view.recipe.preset, view.recipe.seed) in [(p, view_seed(seed, j)) for j, p in enumerate(drawn)]
    assert all(kept[0] <= acc for acc, _ in scores)
    assert all(kept[1] >= ce for acc, ce in scores if acc == kept[0])
    assert kept[0] < 1.0
    again = worst_of_k(model, images, labels, "all", k=k, seed=seed)
    assert again.recipe == view.recipe and torch.equal(again.images, view.images)


@pytest.mark.parametrize("preset", sorted(DIFFERENTIABLE))
def test_worst_of_k_param_steps(frames, preset):
    images, _ = frames
    model = _tiny_model()
    labels = _model_labels(model, images)
    plain = worst_of_k(model, images, labels, [preset], k=2, seed=1)
    stepped = worst_of_k(model, images, labels, [preset], k=2, seed=1, param_steps=3)
    assert (stepped.recipe.preset, stepped.recipe.seed) == (plain.recipe.preset, plain.recipe.seed)
    with torch.no_grad():
        before = _score(model(plain.images), plain.labels)
        after = _score(model(stepped.images), stepped.labels)
    assert (-after[0], after[1]) >= (-before[0], before[1]), f"stepping made it less hurtful: {before} -> {after}"
    knob = _KNOBS[preset]
    values = np.abs(stepped.recipe.params[knob.key]) if knob.signed else np.asarray(stepped.recipe.params[knob.key])
    assert ((values >= knob.low - 1e-6) & (values <= knob.high + 1e-6)).all()
    if knob.signed:
        assert np.array_equal(np.sign(stepped.recipe.params[knob.key]), np.sign(plain.recipe.params[knob.key]))
    replayed = replay(Recipe.from_json(json.loads(json.dumps(stepped.recipe.to_json()))), images, labels)
    assert torch.equal(replayed.images, stepped.images)


def test_param_steps_move_brightness(frames):
    """Darkening hurts the tiny model more: the steps push the factor away from where it was drawn."""
    images, _ = frames
    model = _tiny_model()
    labels = _model_labels(model, images)
    plain = worst_of_k(model, images, labels, ["brightness", "contrast", "gamma"], k=3, seed=0)
    stepped = worst_of_k(model, images, labels, ["brightness", "contrast", "gamma"], k=3, seed=0, param_steps=4)
    assert stepped.recipe.params != plain.recipe.params


def test_worst_of_k_leaves_the_model_alone(frames):
    images, _ = frames
    for train in (False, True):
        model = _tiny_model(train=train)
        labels = _model_labels(model, images)
        model.train(train)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        momentum = model[1].momentum
        worst_of_k(model, images, labels, sorted(DIFFERENTIABLE) + ["shake"], k=4, seed=2, param_steps=2)
        assert model.training is train and model[1].momentum == momentum
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert all(p.grad is None for p in model.parameters())


def test_worst_of_k_errors(frames):
    images, labels = frames
    model = _tiny_model()
    with pytest.raises(ValueError, match="labels: class 10 is not among the model's 5 classes"):
        worst_of_k(model, images, labels, "rain", k=1, seed=0)
    labels = _model_labels(model, images)
    with pytest.raises(ValueError, match="^k: "):
        worst_of_k(model, images, labels, "all", k=0, seed=0)
    with pytest.raises(ValueError, match="presets: no preset"):
        worst_of_k(model, images, labels, "", k=2, seed=0)
    with pytest.raises(ValueError, match="presets: unknown preset 'fog'"):
        worst_of_k(model, images, labels, "fog", k=2, seed=0)
