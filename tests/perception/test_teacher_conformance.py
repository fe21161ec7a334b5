"""Conformance of every teacher to :class:`perception.teacher.Teacher`: label space, shapes,
determinism, read-only input, and batches of one and two that agree.

Each entry of :data:`TEACHERS` builds one teacher (small models where the real one is
large; the shared ESPNetv2 checkpoint where ``../shared/data`` is present, skipped
otherwise). A new teacher is one line here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from perception.labels import NUM_CLASSES
from perception.teacher import Teacher, TeacherOutput
from perception.teachers import open_teacher
from perception.teachers.espnetv2 import ESPNetv2Config, ESPNetv2Segmentation, ESPNetv2Teacher

H, W = 32, 48  # frame size: a multiple of 16 for the networks that need one


class HalfResolution(torch.nn.Module):
    """An exported teacher's shape: (B, 3, H, W) in [0, 1] -> (B, C, H/2, W/2) logits."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        torch.manual_seed(channels)
        self.conv = torch.nn.Conv2d(3, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)[:, :, ::2, ::2]  # (B, C, H/2, W/2)


def sim_teacher(tmp: Path) -> Any:
    return open_teacher("sim", device="cpu")


def espnetv2_random(tmp: Path) -> Any:
    torch.manual_seed(0)
    path = tmp / "random_s0.5.safetensors"
    save_file(ESPNetv2Segmentation(width=0.5).state_dict(), str(path))
    return ESPNetv2Teacher(ESPNetv2Config(weights=str(path), device="cpu", batch_size=1))


def espnetv2_shared(tmp: Path, data: Path) -> Any:
    path = data / "teachers" / "espnetv2_s0.5_cityscapes.safetensors"
    if not path.is_file():
        pytest.skip(f"shared data absent: {path}")
    return open_teacher(f"espnetv2:{path}", device="cpu")


def torchscript(channels: int) -> Callable[[Path], Any]:
    def make(tmp: Path) -> Any:
        path = tmp / f"teacher{channels}.pt"
        torch.jit.script(HalfResolution(channels).eval()).save(str(path))
        return open_teacher(f"torchscript:{path}", device="cpu", logits_stride=2)
    return make


def onnx(fixed: bool, batch: int = 1) -> Callable[[Path], Any]:
    """An ONNX teacher of fixed (batch, 3, 16, 24) input (frames resized, batches chunked) or dynamic input."""
    def make(tmp: Path) -> Any:
        pytest.importorskip("onnx")
        path = tmp / f"teacher_{'fixed' if fixed else 'dynamic'}_{batch}.onnx"
        axes = None if fixed else {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
        size = (batch, 3, 16, 24) if fixed else (batch, 3, H, W)
        torch.onnx.export(HalfResolution(20).eval(), torch.zeros(size), str(path), input_names=["image"],
                          output_names=["logits"], dynamic_axes=axes, dynamo=False)
        return open_teacher(f"onnx:{path}", device="cpu")
    return make


@dataclass(frozen=True)
class TeacherCase:
    name: str
    make: Callable[..., Any]  # make(tmp) or, with shared, make(tmp, shared_data)
    shared: bool = False  # needs ../shared/data


TEACHERS = [
    TeacherCase("sim", sim_teacher),
    TeacherCase("espnetv2_random", espnetv2_random),
    TeacherCase("espnetv2_cityscapes", espnetv2_shared, shared=True),
    TeacherCase("torchscript_19", torchscript(19)),
    TeacherCase("torchscript_20", torchscript(20)),
    TeacherCase("onnx_fixed_size", onnx(fixed=True)),
    TeacherCase("onnx_fixed_batch_of_2", onnx(fixed=True, batch=2)),
    TeacherCase("onnx_dynamic_size", onnx(fixed=False)),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Any]:
    return {}  # one teacher per case for the whole module


@pytest.fixture(params=[pytest.param(c, id=c.name, marks=[pytest.mark.shared_data] if c.shared else []) for c in TEACHERS])
def teacher(request, built, tmp_path_factory) -> Any:
    case: TeacherCase = request.param
    if case.name not in built:
        tmp = tmp_path_factory.mktemp(case.name)
        built[case.name] = case.make(tmp, request.getfixturevalue("shared_data")) if case.shared else case.make(tmp)
    return built[case.name]


def frames(batch: int = 2, seed: int = 0) -> np.ndarray:
    """Smooth random street-like frames: (B, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (batch, H // 8, W // 8, 3)).astype(np.float64)
    images = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)  # (B, H, W, 3)
    images += rng.normal(0, 12, images.shape)
    return np.clip(images, 0, 255).astype(np.uint8)


def check(out: TeacherOutput, batch: int) -> None:
    assert isinstance(out, TeacherOutput)
    labels, logits = out.labels, out.logits
    assert labels.shape == (batch, H, W) and labels.dtype == np.uint8
    assert logits.ndim == 4 and logits.shape[:2] == (batch, NUM_CLASSES)
    assert 1 <= logits.shape[2] <= H and 1 <= logits.shape[3] <= W
    assert logits.dtype == np.float32 and np.isfinite(logits).all()


def test_protocol_label_space_and_shapes(teacher):
    assert isinstance(teacher, Teacher)
    assert isinstance(teacher.name, str) and teacher.name and isinstance(teacher.device, str)
    images = frames()
    out = teacher.label(images)
    check(out, 2)
    assert set(np.unique(out.labels).tolist()) <= set(range(NUM_CLASSES)) | {255}


def test_deterministic(teacher):
    images = frames(seed=1)
    a, b = teacher.label(images), teacher.label(images)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.logits, b.logits)


def test_read_only_input_is_accepted_and_left_alone(teacher):
    images = frames(seed=2)
    expected = teacher.label(images.copy())
    frozen = images.copy()
    frozen.setflags(write=False)  # frames are read-only, as Ray hands them out
    out = teacher.label(frozen)
    np.testing.assert_array_equal(frozen, images)
    np.testing.assert_array_equal(out.labels, expected.labels)
    np.testing.assert_array_equal(out.logits, expected.logits)


def test_batches_of_one_and_two_agree(teacher):
    images = frames(seed=3)
    both = teacher.label(images)
    for i in range(2):
        one = teacher.label(images[i : i + 1])
        check(one, 1)
        np.testing.assert_allclose(one.logits[0], both.logits[i], rtol=1e-4, atol=1e-4)
        agree = float((one.labels[0] == both.labels[i]).mean())
        assert agree >= 0.999, f"frame {i}: the batch of one and of two agree on {agree:.4%} of pixels"
