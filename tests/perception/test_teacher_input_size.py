"""teacher.input_size: every teacher kind runs at a set size and answers at the frame's size."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from perception.teachers import GridAlignedTeacher, ResizedTeacher, TeacherSpecError, open_teacher, parse_input_size
from stream.config import ConfigError, load_config

LOG = "camvid_0016E5_15hz"


class Stripes(torch.nn.Module):
    """Logits that say class 0 left of the image's middle column and class 1 right of it."""

    def forward(self, x):
        b, _, h, w = x.shape
        logits = torch.zeros(b, 19, h, w)
        logits[:, 0, :, : w // 2] = 1.0
        logits[:, 1, :, w // 2 :] = 1.0
        return logits + 0.0 * x.mean()


def _frames(height=72, width=96):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (2, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("value, want", [("480x352", (352, 480)), (" 960 x 704 ", (704, 960)), ("64,48", (48, 64)),
                                         ("", None), ("native", None), ("NATIVE", None), (None, None)])
def test_input_sizes_are_read_as_width_by_height(value, want):
    assert parse_input_size(value) == want


@pytest.mark.parametrize("value, match", [("480", "expected WIDTHxHEIGHT"), ("0x352", "positive"), ("big", "WIDTHxHEIGHT"),
                                          ("480x-2", "WIDTHxHEIGHT")])
def test_bad_input_sizes_are_refused_naming_the_setting(value, match):
    with pytest.raises(ConfigError, match=f"teacher.input_size.*{match}"):
        load_config(None, [f"teacher.input_size={value}"])


def test_espnetv2_sizes_must_be_multiples_of_16_at_config_time():
    with pytest.raises(ConfigError, match="teacher.input_size=480x360: an espnetv2 teacher needs .* 480x352 or 480x368"):
        load_config(None, ["teacher.spec=espnetv2:w.safetensors", "teacher.input_size=480x360"])
    assert load_config(None, ["teacher.spec=espnetv2:w.safetensors", "teacher.input_size=480x352"]).teacher.input_size == "480x352"
    assert load_config(None, ["teacher.input_size=480x360"]).teacher.input_size == "480x360"  # the sim teacher takes any


def test_the_sim_teacher_runs_at_the_input_size_and_answers_at_the_frame_size():
    native = open_teacher("sim", device="cpu")
    teacher = open_teacher("sim", device="cpu", input_size="64x48")
    assert isinstance(teacher, ResizedTeacher) and teacher.input_size == (48, 64) and teacher.name == "sim"
    frames = _frames()
    out = teacher.label(frames)
    assert out.labels.shape == (2, 72, 96)
    # the mechanism: resize the frame, label it, labels back by nearest neighbour
    small = np.stack([cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA) for f in frames])
    expected = native.label(small).labels
    np.testing.assert_array_equal(out.labels, np.stack([cv2.resize(l, (96, 72), interpolation=cv2.INTER_NEAREST) for l in expected]))
    assert teacher.macs(72, 96) == native.macs(48, 64) < native.macs(72, 96)
    aligned = GridAlignedTeacher(teacher, stride=4).label(frames)
    assert aligned.logits.shape == (2, 19, 12, 16)  # 48x64 / 4 is a whole-pixel grid of 72x96 (stride 6): kept
    odd = GridAlignedTeacher(open_teacher("sim", device="cpu", input_size="40x28"), stride=4).label(frames)
    assert odd.logits.shape == (2, 19, 18, 24)  # 7x10 is not: resampled onto the frame's grid, as the learner crops it


def test_torchscript_teacher_at_an_input_size(tmp_path):
    path = tmp_path / "stripes.pt"
    torch.jit.script(Stripes()).save(str(path))
    teacher = open_teacher(f"torchscript:{path}", device="cpu", logits_stride=2, input_size="32x24")
    out = teacher.label(_frames())
    assert out.labels.shape == (2, 72, 96) and out.logits.shape == (2, 19, 12, 16)  # logits on the 32x24 input's grid
    assert (out.labels[:, :, :48] == 0).all() and (out.labels[:, :, 48:] == 1).all()
    assert GridAlignedTeacher(teacher, stride=2).label(_frames()).logits.shape == (2, 19, 12, 16)  # stride 6: kept
    odd = open_teacher(f"torchscript:{path}", device="cpu", logits_stride=2, input_size="30x22")
    assert GridAlignedTeacher(odd, stride=2).label(_frames()).logits.shape == (2, 19, 36, 48)  # 11x15: resampled


def test_onnx_teacher_at_an_input_size(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = tmp_path / "stripes.onnx"
    torch.onnx.export(Stripes(), torch.zeros(1, 3, 24, 32), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}}, dynamo=False)
    teacher = open_teacher(f"onnx:{path}", device="cpu", input_size="40x30")
    out = teacher.label(_frames())
    assert out.labels.shape == (2, 72, 96)
    assert (out.labels[:, :, :48] == 0).all() and (out.labels[:, :, 48:] == 1).all()


@pytest.mark.shared_data
def test_an_espnetv2_size_that_is_not_a_multiple_of_16_is_a_spec_error(shared_data):
    weights = shared_data / "teachers" / "espnetv2_s0.5_cityscapes.safetensors"
    with pytest.raises(TeacherSpecError, match="teacher.input_size=100x100"):
        open_teacher(f"espnetv2:{weights}", device="cpu", input_size="100x100")


@pytest.mark.shared_data
def test_espnetv2_at_480x352_on_a_camvid_frame_matches_the_bench(shared_data):
    from perception.teachers.espnetv2 import ESPNetv2Config, ESPNetv2Teacher

    torch.set_num_threads(1)
    weights = shared_data / "teachers" / "espnetv2_s2.0_cityscapes.safetensors"
    frame = cv2.cvtColor(cv2.imread(str(sorted((shared_data / "logs" / LOG / "frames").glob("*.png"))[0])), cv2.COLOR_BGR2RGB)
    images = frame[None]  # (1, 360, 480, 3)
    teacher = open_teacher(f"espnetv2:{weights}", device="cpu", input_size="480x352")
    out = teacher.label(images)
    assert out.labels.shape == (1, 360, 480)
    assert teacher.inference_size(360, 480) == (352, 480)
    # bench/espnetv2_camvid.py's way: the network at (352, 480), argmax of the logits upsampled to the frame
    bench = ESPNetv2Teacher(ESPNetv2Config(weights=str(weights), inference_size=(352, 480), device="cpu", batch_size=1))
    np.testing.assert_array_equal(out.labels, bench.label(images).labels)
    big = open_teacher(f"espnetv2:{weights}", device="cpu", input_size="960x704")
    assert big.macs(360, 480) > 3 * teacher.macs(360, 480)  # the setting reaches the network
    grid = GridAlignedTeacher(teacher, stride=4).label(images)
    assert grid.logits.shape == (1, 19, 90, 120)


def test_build_teacher_passes_the_input_size():
    from stream.builders import build_teacher

    teacher = build_teacher(load_config(None, ["teacher.input_size=64x48", "teacher.device=cpu"]))
    assert isinstance(teacher, GridAlignedTeacher) and teacher.teacher.input_size == (48, 64)
    assert teacher.label(_frames()).labels.shape == (2, 72, 96)
