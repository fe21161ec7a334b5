"""``odistill export``: a student from a run (or a weights file) into ONNX and TorchScript, with
its manifest, checked for parity on the run's own frames.

From a learner checkpoint (``runs/X/checkpoints/learner_N.safetensors``) the student is the
predictor the run was using (its EMA weights where it kept them), and the parity frames are
the images in the checkpoint's replay buffer: frames from the run. From a weights file, the
parity frames are read from ``--source``. The folder gets ``student.onnx``, ``student.pt``,
``student.safetensors`` (the PyTorch weights: the promotion gate attacks them) and ``manifest.json`` (:func:`perception.export.export_manifest` plus where the student came from:
the net, the teacher, the frames it was trained on, the checkpoint's state).

Example:
    >>> from stream.config import load_config
    >>> import tempfile
    >>> out = export_from_weights(load_config(None, ["sim.width=64", "sim.height=32"]), "default", tempfile.mkdtemp(),
    ...                           frames=2, export=ExportConfig(formats=("torchscript",), model_size=(64, 32)))
    >>> manifest = json.loads((out / "manifest.json").read_text())
    >>> manifest["models"], manifest["input"]["shape"], manifest["student"]["net"]
    ({'torchscript': 'student.pt', 'weights': 'student.safetensors'}, [1, 32, 64, 3], 'default')
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from perception.export import ExportConfig, ExportError, export_manifest, export_student
from stream.config import RunConfig

log = logging.getLogger(__name__)


def _write(out: Path, report: Any, student: dict[str, Any], config: RunConfig, model: Any) -> Path:
    from perception.weights import save_weights

    save_weights(model, out / "student.safetensors")  # the training side's gate attacks it (gradients)
    manifest = export_manifest(report, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), student=student,
                               teacher=config.teacher.spec)
    manifest["models"]["weights"] = "student.safetensors"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def export_from_checkpoint(config: RunConfig, checkpoint: str | Path, out_dir: str | Path,
                           export: ExportConfig = ExportConfig()) -> Path:
    """Export the predictor of a learner checkpoint, parity-checked on its replay frames."""
    from safetensors import safe_open

    from stream.builders import checkpoint_state, student_from_checkpoint

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ExportError(f"{checkpoint}: no such learner checkpoint")
    try:
        with safe_open(str(checkpoint), framework="np") as handle:
            if "replay.images" not in handle.keys():
                raise ExportError(f"{checkpoint}: the checkpoint holds no replay frames to check parity on; export its "
                                  f"weights with --weights and --source")
            frames = handle.get_tensor("replay.images")  # (N, H, W, 3) uint8
    except ExportError:
        raise
    except Exception as error:  # not a safetensors file
        raise ExportError(f"{checkpoint}: not a readable learner checkpoint ({error})") from None
    model = student_from_checkpoint(config, checkpoint)
    if model.__class__.__name__ == "ExpertRouter":
        raise ExportError(f"{checkpoint}: the run routes between domain experts; export one expert's weights instead")
    state = checkpoint_state(checkpoint)
    report = export_student(model.eval(), out_dir, frames, export)
    student = {"net": config.student.net, "checkpoint": str(checkpoint), "frames_trained_on": state.get("next_index"),
               "optimizer_steps": state.get("optimizer_steps"), "teacher_calls": state.get("teacher_calls")}
    return _write(Path(out_dir), report, student, config, model)


def export_from_weights(config: RunConfig, weights: str, out_dir: str | Path, frames: int = 32,
                        export: ExportConfig = ExportConfig()) -> Path:
    """Export a student weights file (or ``default``: the shipped one), parity-checked on the
    first ``frames`` frames of ``run.source``."""
    from stream.builders import build_student
    from stream.sources import open_source

    config = replace(config, student=replace(config.student, weights=weights))
    model = build_student(config).eval()
    source = open_source(config.run.source, config)
    images = []
    try:
        for frame in source:
            images.append(frame.image)
            if len(images) >= frames:
                break
    finally:
        source.close()
    if not images:
        raise ExportError(f"{config.run.source}: gave no frame to check parity on")
    report = export_student(model, out_dir, np.stack(images), export)
    student = {"net": config.student.net, "weights": weights, "frames_trained_on": None}
    return _write(Path(out_dir), report, student, config, model)
