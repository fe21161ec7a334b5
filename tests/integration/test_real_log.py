"""The real-log path of issue 3: the CamVid clip through the pipeline, scored in CamVid's classes.

A 20-frame online run with the small s0.5 ESPNetv2 teacher and the Udacity-distilled fast
student (``configs/camvid.toml``), the bench's multi-pass source and teacher cache, and the
``student.net`` option's errors. Tests that need ``../shared/data`` skip cleanly without it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.labels import CAMVID_CLASS_NAMES
from perception.student_nets import FastSegNet, build_student_net
from perception.teacher import TeacherOutput
from perception.weights import load_weights
from stream.config import ConfigError, load_config
from stream.builders import build_student
from stream.local import run_local

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "camvid.toml"
UDACITY_STUDENT = REPO / "perception" / "weights" / "student_udacity.safetensors"
S05 = "espnetv2:../shared/data/teachers/espnetv2_s0.5_cityscapes.safetensors"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture()
def at_repo(monkeypatch):
    """configs/camvid.toml names its paths relative to the repository root."""
    monkeypatch.chdir(REPO)
    return REPO


@pytest.mark.shared_data
def test_twenty_frames_of_the_clip_are_scored_in_camvid_classes(shared_data, at_repo, tmp_path):
    config = load_config(CONFIG, [f"teacher.spec={S05}", "teacher.device=cpu", "run.frames=20",
                                  f"run.out={tmp_path / 'run'}", "evaluator.window=10", "learner.checkpoint_every=0"])
    assert config.student.net == "fast" and config.run.label_map == "camvid"
    summary = run_local(config, progress=False)
    assert summary["frames"] == 20 and summary["teacher_calls"] >= 2
    assert len(summary["student_class_iou"]) == len(CAMVID_CLASS_NAMES)  # CamVid's 11 classes, not the 19
    assert list(summary["per_domain"]) == ["clip.mp4"]
    assert summary["teacher_name"] == "espnetv2_s0.5" and summary["frame_size"] == [360, 480]
    # the s0.5 teacher is a real segmenter on CamVid, and the student is scored in the same space
    assert 0.3 < summary["teacher_miou_on_teacher_frames"] <= 1.0 and 0.6 < summary["teacher_pixel_acc_on_teacher_frames"] <= 1.0
    assert 0.0 < summary["student_miou"] <= 1.0
    assert summary["per_domain"]["clip.mp4"]["teacher_frames"] == summary["teacher_calls"]
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["frames"] == 20


@pytest.mark.shared_data
def test_the_bench_plays_the_clip_once_per_pass_with_labels(shared_data):
    from bench.real_log import open_passes

    with open_passes(2, limit=3) as source:
        frames = list(source)
        shifts = source.true_shifts
    assert [f.index for f in frames] == list(range(6)) and shifts == [3]
    assert [f.domain for f in frames] == ["pass1"] * 3 + ["pass2"] * 3
    assert np.array_equal(frames[0].image, frames[3].image)  # the same clip again
    for frame in frames:
        values = set(np.unique(frame.label).tolist())
        assert values <= set(range(len(CAMVID_CLASS_NAMES))) | {255}  # CamVid ids, void -> 255


@pytest.mark.parametrize("drive", ["0001TP", "0006R0", "0016E5"])
def test_each_1hz_drive_plays_on_its_own_once_per_pass_with_labels(shared_data, drive):
    from bench.real_log import DRIVES_1HZ, open_drive_passes

    if not (DRIVES_1HZ / drive / "frames").is_dir():
        pytest.skip(f"{DRIVES_1HZ / drive} is absent")
    with open_drive_passes(drive, 2, limit=2) as source:
        frames = list(source)
        shifts = source.true_shifts
    assert [f.index for f in frames] == list(range(4)) and shifts == [2]
    assert [f.domain for f in frames] == ["pass1"] * 2 + ["pass2"] * 2
    assert [f.timestamp - frames[0].timestamp for f in frames[:2]] == [0.0, 1.0]  # 1 Hz
    assert np.array_equal(frames[1].image, frames[3].image) and not np.array_equal(frames[0].image, frames[1].image)
    assert frames[0].image.shape == (360, 480, 3)
    for frame in frames:
        values = set(np.unique(frame.label).tolist())
        assert values <= set(range(len(CAMVID_CLASS_NAMES))) | {255} and len(values) > 2  # CamVid ids, void -> 255


class _CountingTeacher:
    name, params, device = "counting", 1, "cpu"

    def __init__(self) -> None:
        self.calls = 0

    def macs(self, height: int, width: int) -> int:
        return height * width

    def label(self, images: np.ndarray) -> TeacherOutput:
        self.calls += len(images)
        labels = images[..., 0].copy()  # (B, H, W)
        return TeacherOutput(labels=labels, logits=np.zeros((len(images), 19, 2, 2), np.float32))


def test_cached_teacher_answers_the_same_bytes_once():
    from bench.real_log import CachedTeacher

    inner = _CountingTeacher()
    teacher = CachedTeacher(inner)
    a = np.zeros((4, 6, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 7
    first = teacher.label(np.stack([a, b]))
    again = teacher.label(np.stack([b.copy(), a.copy()]))
    assert inner.calls == 2 and (teacher.hits, teacher.misses) == (2, 2)
    assert np.array_equal(again.labels[0], first.labels[1]) and again.labels[0][0, 0] == 7
    assert teacher.macs(2, 3) == 6 and teacher.name == "counting"


def test_student_net_names_are_checked(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="student.net: unknown student net 'huge'"):
        load_config(None, ["student.net=huge"])
    config = load_config(None, ["student.net=fast"])  # weights stay "default": the net's shipped starting student
    monkeypatch.setattr("stream.builders.WEIGHTS_DIR", tmp_path)  # a net nothing was shipped for
    with pytest.raises(ConfigError, match="no shipped starting student for student.net=fast"):
        build_student(config)
    assert isinstance(build_student(load_config(None, ["student.net=fast", "student.weights=none"])), FastSegNet)


def test_the_sim_defaults_are_unchanged():
    config = load_config(None, [])
    assert config.student.net == "default" and config.student.weights == "default"
    assert type(build_student(config)).__name__ == "SegNet"


def test_shipped_udacity_student_loads_into_the_fast_net_and_records_its_command():
    net = load_weights(build_student_net("fast"), UDACITY_STUDENT)
    record = json.loads(UDACITY_STUDENT.with_suffix(".json").read_text())
    assert "train-student" in record["command"] and "udacity_solidWhiteRight.mp4" in record["command"]
    assert "camvid" not in record["command"].lower()  # never distilled on CamVid frames
    with torch.inference_mode():
        logits = net.eval()(torch.rand(1, 3, 64, 96))  # (1, 19, 64, 96)
    assert logits.shape == (1, 19, 64, 96) and torch.isfinite(logits).all()


class _OddGridTeacher:
    """Logits on a grid that does not divide the frame, as ESPNetv2 ships them (192x256 for 360x480)."""

    name, params, device = "odd-grid", 1, "cpu"

    def label(self, images: np.ndarray) -> TeacherOutput:
        batch, height, width = images.shape[:3]
        logits = np.zeros((batch, 19, 192, 256), np.float32)
        logits[:, 0] = 5.0  # everything is road
        return TeacherOutput(labels=np.zeros((batch, height, width), np.uint8), logits=logits)


def test_logits_off_the_frame_grid_are_resampled_so_crops_line_up():
    from learners.online import OnlineConfig, OnlineLearner
    from perception.teachers.grid import GridAlignedTeacher

    teacher = GridAlignedTeacher(_OddGridTeacher(), stride=4)
    image = np.zeros((360, 480, 3), np.uint8)
    out = teacher.label(image[None])
    assert out.logits.shape == (1, 19, 90, 120) and np.allclose(out.logits[:, 0], 5.0)
    learner = OnlineLearner(OnlineConfig(batch_size=2, steps_per_label=2, crop=(192, 256)), build_student_net("fast"), seed=0)
    for _ in range(2):  # the second step crops a replayed frame too
        metrics = learner.learn(image, out.labels[0], out.logits[0], regime=0)
    assert np.isfinite(metrics["loss"])
    with pytest.raises(ValueError, match="stride must be >= 1"):
        GridAlignedTeacher(_OddGridTeacher(), stride=0)
