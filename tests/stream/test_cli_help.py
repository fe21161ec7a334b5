"""``odistill run --help`` names every registered source kind and teacher kind."""
from __future__ import annotations

import re

import pytest

from perception import teachers
from perception.teachers import TEACHER_KINDS
from stream import sources
from stream.cli import main
from stream.sources import SOURCE_KINDS
from stream.sources.labelmaps import LABEL_MAPS


def _run_help(capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: join them


def _option_help(text: str, option: str) -> str:
    """The help text of one option (up to the next option)."""
    match = re.search(rf"{option} [A-Z_]+ (.*?)(?= --[a-z])", text)
    assert match, f"{option} not in the help"
    return match.group(1)


def test_run_help_names_every_source_and_teacher_kind(capsys):
    text = _run_help(capsys)
    source_help, teacher_help = _option_help(text, "--source"), _option_help(text, "--teacher")
    for kind in SOURCE_KINDS:
        assert re.search(rf"(^|\| ){kind}:", source_help), f"source kind {kind} missing from --source help: {source_help}"
    for kind in TEACHER_KINDS:
        assert re.search(rf"(^|\| ){kind}(:PATH)?( |$)", teacher_help), f"teacher kind {kind} missing: {teacher_help}"
    for name in LABEL_MAPS:
        assert name in source_help
    assert "logs:" in source_help and "torchscript:PATH" in teacher_help and "onnx:PATH" in teacher_help


def test_the_help_follows_the_registries(capsys, monkeypatch):
    def _carla(arg, options, config):
        """carla:HOST:PORT"""

    monkeypatch.setitem(sources.SOURCE_KINDS, "carla", _carla)
    monkeypatch.setitem(teachers.TEACHER_KINDS, "tensorrt", lambda arg, device, stride: None)
    text = _run_help(capsys)
    assert "carla:HOST:PORT" in _option_help(text, "--source")
    assert "tensorrt:PATH" in _option_help(text, "--teacher")
