"""odistill export from a run's checkpoint and from a weights file; bad input named."""
from __future__ import annotations

import json

import pytest

from stream.cli import main
from stream.config import load_config
from stream.local import run_local

SMALL = ["sim.width=64", "sim.height=32"]


def test_export_from_a_runs_checkpoint_checks_parity_on_its_replay_frames(tmp_path, capsys):
    pytest.importorskip("onnx")
    run = tmp_path / "run"
    run_local(load_config(None, [*SMALL, "run.frames=20", "learner.checkpoint_every=20", "evaluator.robust_every=0",
                                 f"run.out={run}"]), progress=False)
    checkpoint = next((run / "checkpoints").glob("learner_*.safetensors"))
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--model-size", "64x32"] + [
        f"--set={s}" for s in SMALL]) == 0
    printed = capsys.readouterr().out
    assert "onnx" in printed and "argmax agreement 1.00000" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["student"]["frames_trained_on"] == 20 and manifest["input"]["shape"] == [1, 32, 64, 3]
    assert set(manifest["models"]) == {"onnx", "torchscript", "weights"} and (out / "student.onnx").is_file()
    assert manifest["parity"]["onnx"]["frames"] >= 1


def test_export_bad_input_is_named(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "o")]) == 2
    assert "no such learner checkpoint" in capsys.readouterr().err
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    assert main(["export", "--checkpoint", str(junk), "--out", str(tmp_path / "o")]) == 2
    assert "not a readable learner checkpoint" in capsys.readouterr().err
    assert main(["export", "--weights", "default", "--out", str(tmp_path / "o"), "--model-size", "big"]) == 2
    assert "--model-size must be WIDTHxHEIGHT" in capsys.readouterr().err
    assert main(["export", "--weights", "default", "--out", str(tmp_path / "o"), "--formats", "tflite"]) == 2
    assert "formats must be among onnx, torchscript" in capsys.readouterr().err
