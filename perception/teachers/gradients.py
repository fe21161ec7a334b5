"""A teacher as a differentiable function of the frame, for attacks aimed at the teacher.

``adversarial.target=teacher`` makes the gradient views against the teacher instead of the
student. :func:`gradient_model` opens the network behind a teacher object (through the
:class:`~perception.teachers.grid.GridAlignedTeacher` and
:class:`~perception.teachers.grid.ResizedTeacher` adapters; a
:class:`~perception.teachers.tta.TTATeacher` gives its plain view's network) as a module that takes the frame
at its own size, (B, 3, H, W) RGB in [0, 1], and gives logits whose argmax is the teacher's
labels. A teacher with no gradients (an ONNX graph; a TorchScript module whose outputs do not
require grad) raises :class:`TeacherGradientError`, which names the teacher.

Example:
    >>> import torch
    >>> from perception.teachers.sim import SegNetTeacher
    >>> from perception.teachers.grid import GridAlignedTeacher, ResizedTeacher
    >>> teacher = GridAlignedTeacher(ResizedTeacher(SegNetTeacher(weights=None, device="cpu"), (32, 48)), stride=4)
    >>> gradient_model(teacher)(torch.rand(1, 3, 40, 64)).shape  # resized to 32x48 inside
    torch.Size([1, 19, 32, 48])
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class TeacherGradientError(ValueError):
    """The teacher cannot give gradients with respect to its input."""


class _Resized(nn.Module):
    """``inner`` run on the frame resized (bilinear, differentiable) to a fixed size."""

    def __init__(self, inner: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        self.inner = inner
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, K, h, w)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)  # (B, 3, h_in, w_in)
        return self.inner(x)


class _ESPNetv2Logits(nn.Module):
    """ESPNetv2 as its teacher runs it: the frame resized to the inference size, logits at stride 2."""

    def __init__(self, teacher: Any) -> None:
        super().__init__()
        self.net = teacher.model
        self.teacher = teacher

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 20, h/2, w/2)
        size = self.teacher.inference_size(*x.shape[-2:])
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # (B, 3, h, w)
        return self.net.decode(x.to(next(self.net.parameters()).dtype)).float()


def _torchscript_has_gradients(module: Any, device: str) -> bool:
    probe = torch.rand(1, 3, 32, 32, device=device, requires_grad=True)  # (1, 3, 32, 32)
    try:
        with torch.enable_grad():
            out = module(probe)
        return isinstance(out, torch.Tensor) and out.requires_grad
    except Exception:
        return False


def gradient_model(teacher: Any) -> nn.Module:
    """The teacher's network as a differentiable module of the frame (module docstring).

    Raises:
        TeacherGradientError: the teacher (named) has no gradients.
    """
    from perception.teachers.espnetv2 import ESPNetv2Teacher
    from perception.teachers.exported import OnnxTeacher, TorchScriptTeacher
    from perception.teachers.grid import GridAlignedTeacher, ResizedTeacher
    from perception.teachers.sim import SegNetTeacher
    from perception.teachers.tta import TTATeacher

    if isinstance(teacher, GridAlignedTeacher):
        return gradient_model(teacher.teacher)
    if isinstance(teacher, TTATeacher):  # attacks aim at its plain view (the frame at the input size)
        inner = gradient_model(teacher.teacher)
        return inner if teacher.input_size is None else _Resized(inner, teacher.input_size)
    if isinstance(teacher, ResizedTeacher):
        return _Resized(gradient_model(teacher.teacher), teacher.input_size)
    if isinstance(teacher, SegNetTeacher):
        return teacher.model
    if isinstance(teacher, ESPNetv2Teacher):
        return _ESPNetv2Logits(teacher)
    if isinstance(teacher, TorchScriptTeacher) and _torchscript_has_gradients(teacher.model, teacher.device):
        return teacher.model
    name = getattr(teacher, "name", type(teacher).__name__)
    if isinstance(teacher, OnnxTeacher):
        why = "an ONNX graph run by onnxruntime gives no gradients"
    elif isinstance(teacher, TorchScriptTeacher):
        why = "its TorchScript module's outputs do not require grad (exported without autograd)"
    else:
        why = f"odistill cannot differentiate a {type(teacher).__name__}"
    raise TeacherGradientError(f"teacher {name} has no gradients with respect to its input: {why}")
