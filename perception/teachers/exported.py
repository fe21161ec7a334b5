"""Teachers from exported models: TorchScript (``torchscript:PATH``) and ONNX (``onnx:PATH``).

The contract of an exported teacher: input (B, 3, H, W) float32 RGB in [0, 1] (normalisation
inside the model), output (B, C, h, w) logits with C = 19 canonical trainIds, or 20 where the
last channel is a "background" class that becomes ignore (255). Logits at a lower resolution
are resized bilinearly to the frame.

Example:
    >>> import torch, tempfile, numpy as np
    >>> net = torch.jit.script(torch.nn.Conv2d(3, 19, 1))
    >>> path = tempfile.mktemp(suffix=".pt"); net.save(path)
    >>> t = TorchScriptTeacher(path, device="cpu")
    >>> t.label(np.zeros((2, 8, 16, 3), np.uint8)).labels.shape
    (2, 8, 16)
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from perception.device import DeviceError, resolve_device
from perception.labels import IGNORE_INDEX, NUM_CLASSES
from perception.teacher import TeacherOutput

log = logging.getLogger(__name__)


class ExportedTeacherError(ValueError):
    """An exported teacher does not load, or does not fit the teacher contract."""


def logits_to_output(logits: torch.Tensor, height: int, width: int, logits_stride: int, source: str) -> TeacherOutput:
    """Canonical labels at the frame size and (down-sampled) canonical logits.

    Shape:
        logits (B, 19 or 20, h, w) -> labels (B, height, width), logits (B, 19, height/s, width/s)
    """
    if logits.ndim != 4 or logits.shape[1] not in (NUM_CLASSES, NUM_CLASSES + 1):
        raise ExportedTeacherError(f"{source}: output must be (B, 19 or 20, h, w) logits, got {tuple(logits.shape)}")
    if logits.shape[-2:] != (height, width):
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)  # (B, C, H, W)
    labels = logits.argmax(1)  # (B, H, W)
    labels[labels == NUM_CLASSES] = IGNORE_INDEX  # a background channel means "no label"
    canonical = logits[:, :NUM_CLASSES]  # (B, 19, H, W)
    if logits_stride > 1:
        canonical = F.avg_pool2d(canonical, logits_stride)  # (B, 19, H/s, W/s)
    return TeacherOutput(labels.to(torch.uint8).cpu().numpy(), canonical.float().cpu().numpy())


def _images_to_input(images: np.ndarray) -> np.ndarray:
    """Shape: (B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1]."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ExportedTeacherError(f"teacher input must be (B, H, W, 3) uint8, got {images.shape} {images.dtype}")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


class TorchScriptTeacher:
    """A TorchScript module as a teacher (loaded with ``torch.jit.load``, no pickle)."""

    def __init__(self, path: str | Path, device: str = "auto", logits_stride: int = 4):
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportedTeacherError(f"{self.path}: TorchScript file not found")
        self.device = str(resolve_device(device, setting="teacher.device"))
        try:
            self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as error:
            raise ExportedTeacherError(f"{self.path}: not a loadable TorchScript module ({error.__class__.__name__})") from None
        self.name = f"torchscript:{self.path.name}"
        self.params = sum(p.numel() for p in self.model.parameters())
        self.logits_stride = logits_stride

    def macs(self, height: int, width: int) -> int:
        """Not counted (-1): a TorchScript module takes no forward hooks, which the counter needs."""
        return -1

    @torch.inference_mode()
    def label(self, images: np.ndarray) -> TeacherOutput:
        """Shape: images (B, H, W, 3) uint8 -> TeacherOutput."""
        x = torch.from_numpy(_images_to_input(images)).to(self.device)  # (B, 3, H, W)
        return logits_to_output(self.model(x), images.shape[1], images.shape[2], self.logits_stride, str(self.path))


class OnnxTeacher:
    """An ONNX model run by onnxruntime (CUDA provider when available)."""

    def __init__(self, path: str | Path, device: str = "auto", logits_stride: int = 4):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ExportedTeacherError(f"{self.path}: ONNX file not found")
        if device not in ("auto", "cpu", "cuda"):
            raise DeviceError(f"teacher.device: an ONNX teacher runs on auto, cpu or cuda, got {device!r}")
        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device == "cuda" and not has_cuda:
            raise DeviceError("teacher.device: 'cuda' asked for, but onnxruntime has no CUDA provider here (use auto or cpu)")
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and has_cuda:
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers)
        except Exception as error:
            raise ExportedTeacherError(f"{self.path}: not a loadable ONNX model ({error})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ExportedTeacherError(f"{self.path}: expected one input, the model has {len(inputs)}")
        self.input = inputs[0]
        shape = self.input.shape
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ExportedTeacherError(f"{self.path}: input {self.input.name!r} must be (B, 3, H, W), the model declares {shape}")
        self.fixed_size = tuple(s if isinstance(s, int) else None for s in shape[2:])
        # a model exported with a fixed batch (often 1) is run on chunks of that many frames
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.device = "cuda" if providers[0].startswith("CUDA") else "cpu"
        self.name = f"onnx:{self.path.name}"
        self.params = -1
        self.logits_stride = logits_stride

    def macs(self, height: int, width: int) -> int:
        return -1  # not counted for opaque graphs

    def label(self, images: np.ndarray) -> TeacherOutput:
        """Shape: images (B, H, W, 3) uint8 -> TeacherOutput (frames resized to a fixed input size, and run in
        chunks of a fixed batch size, where the model declares one)."""
        height, width = images.shape[1:3]
        x = _images_to_input(images)  # (B, 3, H, W)
        want_h, want_w = self.fixed_size
        if (want_h is not None and want_h != height) or (want_w is not None and want_w != width):
            x = F.interpolate(torch.from_numpy(x), size=(want_h or height, want_w or width), mode="bilinear",
                              align_corners=False).numpy()
        step = self.fixed_batch or x.shape[0]
        parts = []
        for first in range(0, x.shape[0], step):
            chunk = x[first : first + step]  # (b, 3, h, w)
            short = step - chunk.shape[0]
            if short:  # the last chunk of a fixed-batch model: padded with its last frame, then cut
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])  # (step, 3, h, w)
            try:
                (logits,) = self.session.run(None, {self.input.name: chunk})[:1]  # (step, C, h', w')
            except Exception as error:
                raise ExportedTeacherError(f"{self.path}: inference failed on input {chunk.shape} ({error})") from None
            parts.append(logits[: step - short])
        logits = np.concatenate(parts)  # (B, C, h', w')
        return logits_to_output(torch.from_numpy(logits), height, width, self.logits_stride, str(self.path))
