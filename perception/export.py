"""Exporting a student for the vehicle: ONNX and TorchScript graphs that take the camera's bytes.

The exported graph is :class:`DeployableStudent`: it takes one camera frame as the car has it,
``(1, H, W, 3)`` uint8 RGB at the camera's size, scales it to [0, 1], resizes it (bilinear) to
the size the student runs at, runs the network and gives back the logits at that size and the
labels (argmax) brought back to the camera's size (nearest). Everything a vehicle needs to call
it (the input spec, the label space, the output names) goes into the manifest
(:func:`export_manifest`), so the runtime needs neither torch nor our code.

An export is only kept when it agrees with the PyTorch student on frames from the run
(:func:`check_parity`): argmax agreement at least ``min_agreement`` (99.9 %) and the largest
logit difference at most ``max_logit_diff`` (1e-4); otherwise :class:`ExportError` says which
format missed by how much, and the file is removed.

Example:
    >>> import numpy as np, tempfile, torch
    >>> from perception.student_nets import build_student_net
    >>> net = build_student_net("default").eval()
    >>> frames = np.random.default_rng(0).integers(0, 255, (2, 32, 64, 3), dtype=np.uint8)
    >>> report = export_student(net, tempfile.mkdtemp(), frames, ExportConfig(formats=("torchscript",), model_size=(64, 32)))
    >>> report.files["torchscript"].endswith("student.pt"), report.parity["torchscript"]["agreement"] == 1.0
    (True, True)
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception.labels import CLASS_NAMES

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
FILE_NAMES = {"onnx": "student.onnx", "torchscript": "student.pt"}


class ExportError(ValueError):
    """An export that cannot be made or does not match the PyTorch student."""


@dataclass(frozen=True)
class ExportConfig:
    """Settings of :func:`export_student`.

    ``camera_size`` and ``model_size`` are (width, height); a camera size of None takes the
    parity frames' size.

    Example:
        >>> ExportConfig(formats=("tflite",))
        Traceback (most recent call last):
        ...
        perception.export.ExportError: export formats must be among onnx, torchscript, got ('tflite',)
    """

    formats: tuple[str, ...] = FORMATS
    model_size: tuple[int, int] = (256, 128)  # (width, height) the network runs at inside the graph
    camera_size: tuple[int, int] | None = None  # (width, height) of the frames the graph takes; None: the frames'
    opset: int = 17
    min_agreement: float = 0.999  # argmax agreement with the PyTorch student, at least
    max_logit_diff: float = 1e-4  # the largest absolute logit difference, at most
    parity_frames: int = 32  # frames the parity check runs on, at most

    def __post_init__(self) -> None:
        if not self.formats or any(f not in FORMATS for f in self.formats):
            raise ExportError(f"export formats must be among {', '.join(FORMATS)}, got {self.formats!r}")
        for name in ("model_size", "camera_size"):
            size = getattr(self, name)
            if size is None and name == "camera_size":
                continue
            if len(size) != 2 or any(not isinstance(v, int) or v < 8 for v in size):
                raise ExportError(f"export {name} must be (width, height), each an int >= 8, got {size!r}")
        if not 0.0 < self.min_agreement <= 1.0 or not self.max_logit_diff >= 0.0:
            raise ExportError(f"export parity bounds must be 0 < min_agreement <= 1 and max_logit_diff >= 0, got "
                              f"{self.min_agreement}, {self.max_logit_diff}")


class DeployableStudent(nn.Module):
    """The student as the vehicle runs it: camera bytes in, logits and labels out.

    Shape:
        image (1, H, W, 3) uint8 -> logits (1, C, h, w) float32, labels (1, H, W) uint8
    """

    def __init__(self, net: nn.Module, model_size: tuple[int, int], camera_size: tuple[int, int]) -> None:
        super().__init__()
        self.net = net
        self.model_width, self.model_height = int(model_size[0]), int(model_size[1])
        self.camera_width, self.camera_height = int(camera_size[0]), int(camera_size[1])
        self.resize = (self.model_width, self.model_height) != (self.camera_width, self.camera_height)
        # the resizes as constant matrices and indices: every runtime computes them alike (a Resize
        # operator's rounding differs between torch and onnxruntime by more than the parity bound)
        self.register_buffer("rows_in", bilinear_matrix(self.camera_height, self.model_height))  # (h, H)
        self.register_buffer("cols_in", bilinear_matrix(self.camera_width, self.model_width).T.contiguous())  # (W, w)
        self.register_buffer("rows_out", nearest_indices(self.model_height, self.camera_height))  # (H,)
        self.register_buffer("cols_out", nearest_indices(self.model_width, self.camera_width))  # (W,)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0  # (1, 3, H, W) in [0, 1]
        if self.resize:
            x = torch.matmul(torch.matmul(self.rows_in, x), self.cols_in)  # (1, 3, h, w), bilinear
        logits = self.net(x)  # (1, C, h, w)
        labels = logits.argmax(dim=1)  # (1, h, w)
        if self.resize:
            labels = labels.index_select(1, self.rows_out).index_select(2, self.cols_out)  # (1, H, W), nearest
        return logits, labels.to(torch.uint8)


def bilinear_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """The (size_out, size_in) matrix of a 1-D bilinear resize (half-pixel centres, edges
    clamped: ``F.interpolate(mode="bilinear", align_corners=False)``'s weights).

    Example:
        >>> bilinear_matrix(4, 2).tolist()
        [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]
    """
    matrix = torch.zeros(size_out, size_in, dtype=torch.float32)
    scale = size_in / size_out
    for i in range(size_out):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        low = min(int(src), size_in - 1)
        high = min(low + 1, size_in - 1)
        weight = src - low
        matrix[i, low] += 1.0 - weight
        matrix[i, high] += weight
    return matrix


def nearest_indices(size_in: int, size_out: int) -> torch.Tensor:
    """The source index of each output index of a 1-D nearest resize (``mode="nearest"``).

    Example:
        >>> nearest_indices(2, 4).tolist()
        [0, 0, 1, 1]
    """
    scale = size_in / size_out
    return torch.tensor([min(int(i * scale), size_in - 1) for i in range(size_out)], dtype=torch.int64)


@dataclass
class ExportReport:
    """What an export wrote and how closely each format matches the PyTorch student."""

    files: dict[str, str] = field(default_factory=dict)  # format -> path
    parity: dict[str, dict[str, float]] = field(default_factory=dict)  # format -> agreement, max_logit_diff, frames
    camera_size: tuple[int, int] = (0, 0)
    model_size: tuple[int, int] = (0, 0)
    export_s: float = 0.0


def _run_torchscript(path: Path, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    module = torch.jit.load(str(path)).eval()
    with torch.inference_mode():
        return [tuple(t.numpy() for t in module(torch.from_numpy(np.ascontiguousarray(f[None])))) for f in frames]


def _run_onnx(path: Path, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [tuple(session.run(["logits", "labels"], {"image": np.ascontiguousarray(f[None])})) for f in frames]


def check_parity(reference: list[tuple[np.ndarray, np.ndarray]], exported: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Argmax agreement (over the camera-size labels) and the largest absolute logit
    difference between two runs of the same frames.

    Example:
        >>> a = [(np.zeros((1, 2, 2, 2), np.float32), np.zeros((1, 2, 2), np.uint8))]
        >>> b = [(np.full((1, 2, 2, 2), 1e-5, np.float32), np.array([[[0, 0], [0, 1]]], np.uint8))]
        >>> p = check_parity(a, b); p["agreement"], round(p["max_logit_diff"], 8), p["frames"]
        (0.75, 1e-05, 1)
    """
    same = total = 0
    worst = 0.0
    for (ref_logits, ref_labels), (logits, labels) in zip(reference, exported):
        if ref_logits.shape != logits.shape or ref_labels.shape != labels.shape:
            raise ExportError(f"exported outputs have shapes {logits.shape}, {labels.shape}; the student's are "
                              f"{ref_logits.shape}, {ref_labels.shape}")
        same += int((ref_labels == labels).sum())
        total += ref_labels.size
        worst = max(worst, float(np.abs(ref_logits.astype(np.float64) - logits).max()))
    return {"agreement": same / max(1, total), "max_logit_diff": worst, "frames": len(reference)}


def export_student(net: nn.Module, out_dir: str | Path, frames: np.ndarray, config: ExportConfig = ExportConfig()) -> ExportReport:
    """Export ``net`` (its running batch-norm statistics: eval mode) in ``config.formats`` into
    ``out_dir``, and keep each file only if it matches the PyTorch student on ``frames``
    ((N, H, W, 3) uint8, the run's frames; resized to the camera size when it differs).

    Raises :class:`ExportError` naming the format and the figure that missed.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ExportError(f"parity frames must be (N, H, W, 3) uint8 with N >= 1, got {frames.shape} {frames.dtype}")
    camera = config.camera_size or (int(frames.shape[2]), int(frames.shape[1]))
    if (frames.shape[2], frames.shape[1]) != camera:
        import cv2

        frames = np.stack([cv2.resize(f, camera, interpolation=cv2.INTER_AREA) for f in frames])  # (N, H, W, 3)
    frames = frames[: config.parity_frames]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = DeployableStudent(net, config.model_size, camera).eval()
    example = torch.from_numpy(np.ascontiguousarray(frames[:1]))  # (1, H, W, 3) uint8
    with torch.inference_mode():
        reference = [tuple(t.numpy() for t in model(torch.from_numpy(np.ascontiguousarray(f[None])))) for f in frames]
    for i, (logits, _) in enumerate(reference):
        if not np.isfinite(logits).all():
            raise ExportError(f"the student gives non-finite logits (NaN or inf) on parity frame {i}: not exported")
    report = ExportReport(camera_size=camera, model_size=tuple(config.model_size))
    for fmt in config.formats:
        path = out_dir / FILE_NAMES[fmt]
        with torch.no_grad():
            if fmt == "torchscript":
                torch.jit.trace(model, example, check_trace=False).save(str(path))
                outputs = _run_torchscript(path, frames)
            else:
                torch.onnx.export(model, (example,), str(path), input_names=["image"], output_names=["logits", "labels"],
                                  opset_version=config.opset, dynamo=False)
                outputs = _run_onnx(path, frames)
        parity = check_parity(reference, outputs)
        report.parity[fmt] = parity
        if parity["agreement"] < config.min_agreement or parity["max_logit_diff"] > config.max_logit_diff:
            path.unlink(missing_ok=True)
            raise ExportError(f"{fmt} export does not match the PyTorch student on {parity['frames']} frames: argmax "
                              f"agreement {parity['agreement']:.5f} (needs >= {config.min_agreement}), max logit "
                              f"difference {parity['max_logit_diff']:.2e} (needs <= {config.max_logit_diff:.0e}); "
                              f"{path.name} removed")
        report.files[fmt] = str(path)
        log.info("%s export %s: agreement %.5f, max logit diff %.2e", fmt, path, parity["agreement"], parity["max_logit_diff"])
    report.export_s = time.perf_counter() - started
    return report


def export_manifest(report: ExportReport, **extra: Any) -> dict[str, Any]:
    """The part of a bundle's manifest that says how to call the exported graphs.

    Example:
        >>> m = export_manifest(ExportReport(files={"onnx": "/x/student.onnx"}, camera_size=(64, 32), model_size=(64, 32)))
        >>> m["input"]["shape"], m["models"], m["label_space"]["classes"][0]
        ([1, 32, 64, 3], {'onnx': 'student.onnx'}, 'road')
    """
    width, height = report.camera_size
    return {
        "models": {fmt: Path(path).name for fmt, path in report.files.items()},
        "input": {"name": "image", "shape": [1, height, width, 3], "dtype": "uint8", "layout": "NHWC", "colour": "RGB",
                  "range": [0, 255]},
        "outputs": {"logits": {"shape": [1, len(CLASS_NAMES), report.model_size[1], report.model_size[0]], "dtype": "float32"},
                    "labels": {"shape": [1, height, width], "dtype": "uint8"}},
        "model_size": list(report.model_size),
        "label_space": {"name": "cityscapes-19", "classes": list(CLASS_NAMES), "ignore_index": 255},
        "parity": report.parity,
        **extra,
    }
