"""Teacher plug-ins, chosen by a spec string (``--teacher``).

``sim`` — the shipped simulator teacher; ``segnet:PATH`` (or ``sim:PATH``) — any SegNet teacher
checkpoint (the sim teacher's network with other weights);
``espnetv2:PATH`` — our ESPNetv2 on the pretrained Cityscapes weights; ``torchscript:PATH`` and
``onnx:PATH`` — exported models (see :mod:`perception.teachers.exported` for their contract).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

__all__ = ["FEATURE_KINDS", "TEACHER_KINDS", "TeacherSpecError", "GridAlignedTeacher", "ResizedTeacher", "at_input_size", "open_teacher",
           "parse_input_size", "resolve_teacher_spec", "teacher_usage"]

INPUT_MULTIPLES: dict[str, int] = {"espnetv2": 16}  # kinds whose network needs input sides of a multiple of this


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
FEATURE_KINDS = frozenset({"sim", "segnet"})  # kinds that can ship an intermediate feature map (feature distillation)


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


def parse_input_size(value: str | tuple[int, int] | None, kind: str = "") -> tuple[int, int] | None:
    """``teacher.input_size``: ``"WIDTHxHEIGHT"`` (e.g. ``"480x352"``) -> (height, width); ``""``,
    ``"native"`` or None -> None (the frame's own size). A (height, width) tuple is taken as it is.
    ``kind`` (a teacher kind) adds its own rule (ESPNetv2: multiples of 16).

    Example:
        >>> parse_input_size("480x352"), parse_input_size("native"), parse_input_size((352, 480))
        ((352, 480), None, (352, 480))
        >>> parse_input_size("480x360", "espnetv2")
        Traceback (most recent call last):
        ...
        ValueError: teacher.input_size=480x360: an espnetv2 teacher needs sides that are multiples of 16 (e.g. 480x352 or 480x368)

    Raises:
        ValueError: a malformed or non-positive size (the message names ``teacher.input_size``).
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "native"):
            return None
        match = re.fullmatch(r"(\d+)\s*[x,]\s*(\d+)", text)
        if match is None:
            raise ValueError(f"teacher.input_size={value!r}: expected WIDTHxHEIGHT (e.g. 480x352), or native for the frame size")
        width, height = int(match.group(1)), int(match.group(2))
    else:
        try:
            height, width = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"teacher.input_size={value!r}: expected (height, width)") from None
    if width < 1 or height < 1:
        raise ValueError(f"teacher.input_size={width}x{height}: both sides must be positive")
    multiple = INPUT_MULTIPLES.get(kind)
    if multiple and (width % multiple or height % multiple):
        def near(n: int) -> list[int]:
            low = max(multiple, n // multiple * multiple)
            return [n] if n % multiple == 0 else sorted({low, low + multiple})

        options = " or ".join(f"{w}x{h}" for w in near(width) for h in near(height))
        raise ValueError(f"teacher.input_size={width}x{height}: an {kind} teacher needs sides that are multiples of {multiple} "
                         f"(e.g. {options})")
    return height, width


def open_teacher(spec: str, device: str = "auto", logits_stride: int = 4,
                 input_size: str | tuple[int, int] | None = None) -> Any:
    """Build the teacher a spec names, e.g. ``"sim"`` or ``"espnetv2:../shared/data/teachers/x.safetensors"``.

    ``input_size`` (``teacher.input_size``: ``"WxH"``, a (height, width) tuple, or None /
    ``"native"`` for the frame size) makes the teacher run at that size on every frame and
    answer at the frame's size, whatever its kind (:func:`perception.teachers.grid.at_input_size`).
    """
    kind, _, arg = spec.partition(":")
    if kind not in TEACHER_KINDS:
        raise TeacherSpecError(f"unknown teacher {spec!r} (kinds: {', '.join(sorted(TEACHER_KINDS))})")
    if kind not in PATH_OPTIONAL and not arg:
        raise TeacherSpecError(f"teacher {spec!r}: give a path, e.g. {kind}:PATH")
    if arg and not Path(arg).is_file():
        raise TeacherSpecError(f"teacher {spec!r}: file {arg} not found")
    try:
        size = parse_input_size(input_size, kind)
    except ValueError as error:
        raise TeacherSpecError(str(error)) from None
    from perception.teachers.grid import at_input_size

    return at_input_size(TEACHER_KINDS[kind](arg, device, logits_stride), size)


def __getattr__(name: str) -> Any:
    """The adapters (they import torch) load on first use: ``import perception.teachers`` stays light."""
    if name in ("GridAlignedTeacher", "ResizedTeacher", "at_input_size"):
        from perception.teachers import grid

        return getattr(grid, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
