"""Teacher plug-ins, chosen by a spec string (``--teacher``).

``sim`` — the shipped simulator teacher; ``segnet:PATH`` (or ``sim:PATH``) — any SegNet teacher
checkpoint (the sim teacher's network with other weights);
``espnetv2:PATH`` — our ESPNetv2 on the pretrained Cityscapes weights; ``torchscript:PATH`` and
``onnx:PATH`` — exported models (see :mod:`perception.teachers.exported` for their contract).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


class TeacherSpecError(ValueError):
    """The ``--teacher`` spec names an unknown kind or a path that is not there."""


def _sim(arg: str, device: str, logits_stride: int) -> Any:
    from perception.teachers.sim import SIM_TEACHER_WEIGHTS, SegNetTeacher

    return SegNetTeacher(arg or SIM_TEACHER_WEIGHTS, device=device, logits_stride=logits_stride, name="sim")


def _espnetv2(arg: str, device: str, logits_stride: int) -> Any:
    from perception.teachers.espnetv2 import ESPNetv2Config, ESPNetv2Teacher

    return ESPNetv2Teacher(ESPNetv2Config(weights=arg, device=device))


def _torchscript(arg: str, device: str, logits_stride: int) -> Any:
    from perception.teachers.exported import TorchScriptTeacher

    return TorchScriptTeacher(arg, device=device, logits_stride=logits_stride)


def _onnx(arg: str, device: str, logits_stride: int) -> Any:
    from perception.teachers.exported import OnnxTeacher

    return OnnxTeacher(arg, device=device, logits_stride=logits_stride)


TEACHER_KINDS: dict[str, Callable[[str, str, int], Any]] = {
    "sim": _sim, "segnet": _sim, "espnetv2": _espnetv2, "torchscript": _torchscript, "onnx": _onnx,
}
PATH_OPTIONAL = frozenset({"sim"})  # kinds that work without a path (every other one needs KIND:PATH)


def teacher_usage() -> str:
    """One line naming every kind in :data:`TEACHER_KINDS`, for ``--help`` (read from the
    registry, so a new kind shows up by itself).

    Example:
        >>> teacher_usage()
        'sim | segnet:PATH | espnetv2:PATH | torchscript:PATH | onnx:PATH'
    """
    return " | ".join(kind if kind in PATH_OPTIONAL else f"{kind}:PATH" for kind in TEACHER_KINDS)


def resolve_teacher_spec(spec: str, base: str | Path) -> str:
    """A teacher spec with a relative PATH resolved against ``base`` (a config file's folder);
    ``sim``, absolute paths and unknown kinds are kept as they are.

    Example:
        >>> resolve_teacher_spec("espnetv2:../data/t.safetensors", "/repo/configs"), resolve_teacher_spec("sim", "/x")
        ('espnetv2:/repo/data/t.safetensors', 'sim')
    """
    import os

    kind, sep, arg = spec.partition(":")
    if not sep or not arg or kind not in TEACHER_KINDS:
        return spec
    path = os.path.expanduser(arg)
    if not os.path.isabs(path):
        path = os.path.normpath(os.path.join(os.fspath(base), path))
    return f"{kind}:{path}"


def open_teacher(spec: str, device: str = "auto", logits_stride: int = 4) -> Any:
    """Build the teacher a spec names, e.g. ``"sim"`` or ``"espnetv2:../shared/data/teachers/x.safetensors"``."""
    kind, _, arg = spec.partition(":")
    if kind not in TEACHER_KINDS:
        raise TeacherSpecError(f"unknown teacher {spec!r} (kinds: {', '.join(sorted(TEACHER_KINDS))})")
    if kind not in PATH_OPTIONAL and not arg:
        raise TeacherSpecError(f"teacher {spec!r}: give a path, e.g. {kind}:PATH")
    if arg and not Path(arg).is_file():
        raise TeacherSpecError(f"teacher {spec!r}: file {arg} not found")
    return TEACHER_KINDS[kind](arg, device, logits_stride)
