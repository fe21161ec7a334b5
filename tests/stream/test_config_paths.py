"""Relative paths in a config file are relative to the file; overrides to the working folder;
values a config file sets are traced to it (the CLI prints a frame limit from a file)."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from stream.cli import _file_limits, _resolve
from stream.config import COMMAND_LINE, ConfigError, load_config, load_config_with_origins
from stream.sources import parse_spec

REPO = Path(__file__).resolve().parents[2]
CAMVID = REPO / "configs" / "camvid.toml"


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.toml"
    path.write_text(text)
    return path


def test_path_settings_in_a_file_resolve_against_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg_dir = tmp_path / "cfgs" / "deep"
    path = _write(cfg_dir, '[run]\nsource = "images:../logs/a/frames?labels=../logs/a/labels&timestamps=t.txt&label_map=camvid"\n'
                           'out = "runs/x"\n[teacher]\nspec = "torchscript:../models/t.pt"\n'
                           '[student]\nweights = "w/student.safetensors"\n')
    config = load_config(f"cfgs/deep/{path.name}")  # the file named relative to the working folder
    kind, arg, options = parse_spec(config.run.source)
    assert (kind, arg) == ("images", str(tmp_path / "cfgs" / "logs" / "a" / "frames"))
    assert options == {"labels": str(tmp_path / "cfgs" / "logs" / "a" / "labels"), "timestamps": str(cfg_dir / "t.txt"),
                       "label_map": "camvid"}
    assert config.run.out == str(cfg_dir / "runs" / "x")
    assert config.teacher.spec == f"torchscript:{tmp_path / 'cfgs' / 'models' / 't.pt'}"
    assert config.student.weights == str(cfg_dir / "w" / "student.safetensors")


@pytest.mark.parametrize("section, key, value", [
    ("run", "source", "sim:tour"), ("run", "source", "sim:"), ("run", "source", "video:/data/clip.mp4?labels=/data/l"),
    ("run", "out", "/tmp/runs/a"), ("teacher", "spec", "sim"), ("teacher", "spec", "espnetv2:/w/t.safetensors"),
    ("student", "weights", "default"), ("student", "weights", "none"), ("student", "weights", "/w/s.safetensors"),
    ("run", "source", "images:/data/frames?labels=true"),
])
def test_absolute_paths_and_words_are_kept(tmp_path, section, key, value):
    config = load_config(_write(tmp_path / "c", f'[{section}]\n{key} = "{value}"\n'))
    assert getattr(getattr(config, section), key) == value


def test_specs_of_every_source_kind_resolve(tmp_path):
    base = tmp_path / "c"
    for spec, want in [
        ("video:clip.mp4?resize=480x352", f"video:{base / 'clip.mp4'}?resize=480x352"),
        ("rosbag:bags/b1#/cam/image_raw", f"rosbag:{base / 'bags' / 'b1'}#/cam/image_raw"),
        ("logs:a,/abs/b", f"logs:{base / 'a'},/abs/b"),
        ("kitti:drive", f"kitti:{base / 'drive'}"),
        ("images:f?labels=l%20x", f"images:{base / 'f'}?labels={base / 'l'}%20x"),
    ]:
        assert load_config(_write(base, f'[run]\nsource = "{spec}"\n')).run.source == want


def test_overrides_stay_relative_to_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "c", '[student]\nweights = "s.safetensors"\n')
    config = load_config(path, ["student.weights=mine.safetensors", "run.source=video:clip.mp4"])
    assert config.student.weights == "mine.safetensors" and config.run.source == "video:clip.mp4"


def test_origins_name_the_file_and_the_command_line(tmp_path):
    path = _write(tmp_path / "c", "[run]\nframes = 101\nseed = 4\n")
    config, origins = load_config_with_origins(path, ["run.seed=5"])
    assert config.run.frames == 101 and config.run.seed == 5
    assert origins == {"run.frames": str(path), "run.seed": COMMAND_LINE}
    assert "origins" not in config.to_json()  # kept beside the config, not written into config.json


def test_the_cli_prints_a_frame_limit_from_a_file(tmp_path):
    path = _write(tmp_path / "c", "[run]\nframes = 101\n")
    args = argparse.Namespace(config=str(path), set=[], source=None, frames=None, seed=None, runner=None, out=None,
                              teacher=None, label_map=None, realtime=False)
    config, origins = _resolve(args)
    assert _file_limits(config, origins) == [f"run.frames=101 from {path} (a longer source is cut there; --frames N to change)"]
    args.frames = 20  # the command line wins: nothing to point out
    assert _file_limits(*_resolve(args)) == []
    args.config, args.frames = None, None
    assert _file_limits(*_resolve(args)) == []


def test_camvid_config_cuts_no_source_short():
    config, origins = load_config_with_origins(CAMVID)
    assert "run.frames" not in origins and config.run.frames == load_config().run.frames


@pytest.mark.shared_data
def test_camvid_config_works_from_another_folder(shared_data, tmp_path, monkeypatch):
    from stream.builders import build_student
    from stream.sources import open_source

    monkeypatch.chdir(tmp_path)
    config = load_config(CAMVID, [f"run.out={tmp_path / 'run'}"])
    _, teacher_path = config.teacher.spec.split(":", 1)
    assert Path(teacher_path).is_file() and Path(config.student.weights).is_file()
    build_student(config)  # the Udacity student's weights load
    with open_source(config.run.source, config) as source:
        frame = next(iter(source))
    assert frame.shape == (360, 480) and frame.label is not None and int(frame.label.max()) <= 255


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
