"""The offline-training commands: their config sections, error messages and a tiny real run."""
import json

import pytest
import torch

from perception.device import DeviceError
from stream import cli
from stream.config import ConfigError
from stream.training import (
    StudentTrainingConfig,
    TeacherTrainingConfig,
    evaluate_on_sim,
    student_training_config,
    teacher_training_config,
    train_student,
    train_teacher,
)


def test_training_sections_take_dotted_and_short_overrides_and_toml(tmp_path):
    assert student_training_config(None, ["student_training.steps=10", "frames=20"]) == StudentTrainingConfig(steps=10, frames=20)
    path = tmp_path / "t.toml"
    path.write_text("[teacher_training]\nsteps = 7\nschedule = 'clear'\n")
    assert teacher_training_config(path, ["worlds=3"]) == TeacherTrainingConfig(steps=7, schedule="clear", worlds=3)


@pytest.mark.parametrize("override", ["student_training.alpha=2", "alpha=2"])
def test_both_override_forms_fail_with_the_same_message(override):
    with pytest.raises(ConfigError, match=r"^student_training\.alpha must be in \[0, 1\], got 2\.0$"):
        student_training_config(None, [override])


def test_training_config_errors_name_section_and_key():
    with pytest.raises(ConfigError, match=r"student_training\.steps: expected int, got 'lots'"):
        student_training_config(None, ["steps=lots"])
    with pytest.raises(ConfigError, match=r"unknown config key teacher_training\.colour \(keys: batch_size, "):
        teacher_training_config(None, ["colour=red"])
    with pytest.raises(ConfigError, match="unknown config section 'student_training' \\(sections: teacher_training\\)"):
        teacher_training_config(None, ["student_training.steps=3"])
    with pytest.raises(ConfigError, match=r"student_training\.net: unknown student net 'huge'"):
        student_training_config(None, ["net=huge"])
    with pytest.raises(ConfigError, match=r"teacher_training\.steps must be >= 1, got 0"):
        teacher_training_config(None, ["steps=0"])


def test_cli_reports_training_config_and_device_errors(capsys):
    assert cli.main(["train-student", "--set", "student_training.temperature=0"]) == 2
    assert "odistill: error: student_training.temperature must be > 0, got 0.0" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli.main(["train-teacher", "--steps", "1", "--device", "cuda"]) == 2
        assert "--device: 'cuda' asked for, but no CUDA GPU is available" in capsys.readouterr().err
    with pytest.raises(DeviceError, match="--device: unknown device 'gpu'"):
        train_teacher(TeacherTrainingConfig(steps=1), device="gpu")


def test_a_tiny_teacher_and_student_train_write_weights_and_score(tmp_path, capsys):
    torch.set_num_threads(1)
    teacher_cfg = teacher_training_config(None, ["steps=2", "batch_size=2", "worlds=1", "frames_per_world=2", "workers=1",
                                                 "eval_frames=2", "schedule=clear"])
    teacher = train_teacher(teacher_cfg, out=tmp_path / "teacher.safetensors", device="cpu")
    assert (tmp_path / "teacher.safetensors").is_file() and teacher["params"] > 0 and teacher["macs"] > 0
    assert teacher["eval"]["per_domain"] and 0.0 <= teacher["eval"]["miou"] <= 1.0
    student_cfg = StudentTrainingConfig(steps=2, batch_size=2, frames=2, worlds=1, workers=1)
    student = train_student(student_cfg, out=tmp_path / "student.safetensors", teacher=f"segnet:{tmp_path / 'teacher.safetensors'}",
                            device="cpu")
    assert (tmp_path / "student.safetensors").is_file() and student["frames"] == 2
    from safetensors import safe_open

    for name, worlds in (("teacher", "0..0"), ("student", "20000..20000")):  # sim.seeds: TEACHER_ / STUDENT_TRAINING
        with safe_open(str(tmp_path / f"{name}.safetensors"), "pt") as handle:
            assert handle.metadata()["world_seeds"] == worlds
    assert student["macs"] * 10 <= teacher["macs"]
    # the CLI path: the same command through --steps and --set
    assert cli.main(["train-student", "--out", str(tmp_path / "s2.safetensors"), "--teacher", f"segnet:{tmp_path / 'teacher.safetensors'}",
                     "--device", "cpu", "--steps", "1", "--set", "batch_size=2", "--set", "student_training.frames=2",
                     "--set", "worlds=1", "--set", "workers=1"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 2
    scored = evaluate_on_sim(f"segnet:{tmp_path / 'teacher.safetensors'}", frames=2, schedule="clear", device="cpu")
    assert scored["seed"] == 10_000 and sum(d["frames"] for d in scored["per_domain"].values()) == 2
