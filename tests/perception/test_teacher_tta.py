"""teacher.tta: any teacher averaged over flip and scale views of each frame."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perception.labels import IGNORE_INDEX
from perception.teacher import TeacherOutput
from perception.teachers import TeacherSpecError, open_teacher, tta_views
from perception.teachers.sim import SegNetTeacher
from perception.teachers.tta import TTATeacher, view_size
from stream.config import ConfigError, RunConfig, apply_overrides


class PixelTeacher:
    """A teacher whose logits are a fixed linear map of each pixel's colour: flip-equivariant
    (mirroring the frame mirrors its answer). Pixels of red above 250 are labelled 255."""

    name, device, params = "pixel", "cpu", 57

    def __init__(self, logits_stride: int = 1, ignore_left: bool = False) -> None:
        self.ignore_left = ignore_left  # also ignore the left half of whatever image it is given
        self.weight = torch.randn(19, 3, generator=torch.Generator().manual_seed(3)) * 4  # (K, 3)
        self.logits_stride = logits_stride
        self.calls: list[tuple[int, int]] = []

    def logits(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0  # (B, H, W, 3)
        return torch.einsum("bhwc,kc->bkhw", x, self.weight)  # (B, K, H, W)

    def label(self, images: np.ndarray) -> TeacherOutput:
        self.calls.append(tuple(images.shape[1:3]))
        logits = self.logits(images)  # (B, K, H, W)
        labels = logits.argmax(1).to(torch.uint8).numpy()  # (B, H, W)
        labels[images[..., 0] > 250] = IGNORE_INDEX
        if self.ignore_left:
            labels[:, :, : images.shape[2] // 2] = IGNORE_INDEX
        s = self.logits_stride
        return TeacherOutput(labels, (F.avg_pool2d(logits, s) if s > 1 else logits).numpy())

    def macs(self, height: int, width: int) -> int:
        return 57 * height * width


def _frames(height: int = 32, width: int = 48, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 250, (batch, height, width, 3), dtype=np.uint8)


def test_flip_of_a_flip_equivariant_teacher_is_the_plain_teacher():
    frames = _frames()
    frames[0, 5:9, 7:11, 0] = 255  # some ignored pixels
    plain = PixelTeacher(logits_stride=4).label(frames)
    for average in ("probs", "logits"):
        tta = TTATeacher(PixelTeacher(), tta_views("flip"), logits_stride=4, average=average)
        out = tta.label(frames)
        assert np.array_equal(out.labels, plain.labels)
        assert out.logits.shape == plain.logits.shape == (2, 19, 8, 12)
        want, got = torch.softmax(torch.from_numpy(plain.logits), 1), torch.softmax(torch.from_numpy(out.logits), 1)
        assert torch.allclose(got, want, atol=1e-5)


def test_the_plain_view_of_the_sim_teacher_is_the_sim_teacher():
    torch.manual_seed(0)
    plain = SegNetTeacher(weights=None, device="cpu")
    dense = SegNetTeacher(weights=None, device="cpu", logits_stride=1)
    dense.model.load_state_dict(plain.model.state_dict())
    frames = _frames(64, 96)
    want = plain.label(frames)
    got = TTATeacher(dense, tta_views("scales", (1.0,)), logits_stride=4).label(frames)
    assert np.array_equal(got.labels, want.labels)
    assert torch.allclose(torch.softmax(torch.from_numpy(got.logits), 1), torch.softmax(torch.from_numpy(want.logits), 1),
                          atol=1e-5)


def test_a_mirrored_view_changes_an_asymmetric_teacher():
    """Not a no-op: a teacher that is not flip-equivariant answers otherwise with its mirror image averaged in."""
    torch.manual_seed(1)
    dense = SegNetTeacher(weights=None, device="cpu", logits_stride=1)
    frames = _frames(32, 64)
    plain = TTATeacher(dense, tta_views("none")).label(frames)
    flipped = TTATeacher(dense, tta_views("flip")).label(frames)
    assert not np.allclose(plain.logits, flipped.logits)


@pytest.mark.parametrize("height, width", [(37, 61), (33, 50), (64, 96), (5, 7)])
def test_shapes_at_odd_sizes(height, width):
    teacher = TTATeacher(PixelTeacher(), tta_views("flip+scales", (0.75, 1.0, 1.25)), logits_stride=4)
    out = teacher.label(_frames(height, width))
    stride = next(s for s in (4, 3, 2, 1) if height % s == 0 and width % s == 0)
    assert out.labels.shape == (2, height, width) and out.labels.dtype == np.uint8
    assert out.logits.shape == (2, 19, height // stride, width // stride) and out.logits.dtype == np.float32
    assert len(teacher.teacher.calls) == 6
    assert sorted(set(teacher.teacher.calls)) == sorted({view_size(height, width, s) for s in (0.75, 1.0, 1.25)})


def test_views_follow_the_input_size_and_the_networks_multiple():
    teacher = TTATeacher(PixelTeacher(), tta_views("scales", (0.5, 1.0)), input_size=(48, 64), multiple=16)
    teacher.label(_frames(30, 40))
    assert teacher.teacher.calls == [(32, 32), (48, 64)]
    assert teacher.macs(30, 40) == 57 * (32 * 32 + 48 * 64)


def test_most_views_saying_ignore_make_an_ignored_pixel():
    frames = _frames()  # the plain view ignores the frame's left half, the mirrored view its right half
    out = TTATeacher(PixelTeacher(ignore_left=True), tta_views("flip")).label(frames)  # 1 of 2 views: no majority
    assert not (out.labels == IGNORE_INDEX).any()
    out = TTATeacher(PixelTeacher(ignore_left=True), tta_views("scales", (0.5, 1.0, 1.5))).label(frames)  # every view
    assert (out.labels[:, :, :24] == IGNORE_INDEX).all() and not (out.labels[:, :, 25:] == IGNORE_INDEX).any()


def test_open_teacher_wraps_every_kind_only_when_asked():
    assert not isinstance(open_teacher("sim", device="cpu"), TTATeacher)
    teacher = open_teacher("sim", device="cpu", tta="flip+scales", tta_scales=(0.5, 1.0), input_size="64x32")
    assert isinstance(teacher, TTATeacher) and teacher.teacher.logits_stride == 1
    assert teacher.view_sizes(128, 256) == [(16, 32), (16, 32), (32, 64), (32, 64)]
    out = teacher.label(_frames(128, 256, batch=1))
    assert out.labels.shape == (1, 128, 256) and out.logits.shape == (1, 19, 32, 64)
    with pytest.raises(TeacherSpecError, match="teacher.tta: unknown test-time augmentation 'mirror'"):
        open_teacher("sim", device="cpu", tta="mirror")


def test_espnetv2_under_tta(tmp_path):
    from safetensors.torch import save_file

    from perception.teachers.espnetv2 import ESPNetv2Segmentation

    path = tmp_path / "random_s0.5.safetensors"
    torch.manual_seed(0)
    save_file(ESPNetv2Segmentation(width=0.5).state_dict(), str(path))
    teacher = open_teacher(f"espnetv2:{path}", device="cpu", tta="flip+scales", tta_scales=(0.75, 1.0))
    assert teacher.multiple == 16 and teacher.view_sizes(60, 80) == [(48, 64), (48, 64), (64, 80), (64, 80)]
    out = teacher.label(_frames(60, 80, batch=1))
    assert out.labels.shape == (1, 60, 80) and out.logits.shape == (1, 19, 15, 20)


def test_build_teacher_and_gradients_reach_the_tta_teacher():
    from perception.teachers.gradients import gradient_model
    from stream.builders import build_teacher

    config = apply_overrides(RunConfig(), ["teacher.tta=flip", "teacher.device=cpu", "teacher.input_size=64x32"])
    teacher = build_teacher(config)
    assert isinstance(teacher.teacher, TTATeacher) and teacher.name == "sim+tta2"
    assert gradient_model(teacher)(torch.rand(1, 3, 40, 80)).shape == (1, 19, 32, 64)


@pytest.mark.parametrize("override, match", [
    ("teacher.tta=mirror", r"teacher\.tta: unknown test-time augmentation 'mirror' \(choose none, flip, scales, flip\+scales\)"),
    ("teacher.tta_average=median", r"teacher\.tta_average: expected one of probs, logits"),
])
def test_config_errors_name_the_setting(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(RunConfig(), [override])


def test_bad_scales_are_refused_naming_the_setting():
    with pytest.raises(ConfigError, match=r"teacher\.tta_scales"):
        apply_overrides(RunConfig(), ["teacher.tta=scales", "teacher.tta_scales=0.75,0"])
    config = apply_overrides(RunConfig(), ["teacher.tta=flip+scales", "teacher.tta_scales=0.5,1,1.5"])
    assert config.teacher.tta_scales == (0.5, 1.0, 1.5)
