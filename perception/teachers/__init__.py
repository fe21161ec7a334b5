"""Teacher plug-ins, chosen by a spec string (``--teacher``).

``sim`` — the shipped simulator teacher; ``segnet:PATH`` (or ``sim:PATH``) — any SegNet teacher
checkpoint (the sim teacher's network with other weights);
``espnetv2:PATH`` — our ESPNetv2 on the pretrained Cityscapes weights; ``torchscript:PATH`` and
``onnx:PATH`` — exported models (see :mod:`perception.teachers.exported` for their contract).

Any of them can be asked to average its answers over test-time views of each frame
(``teacher.tta``: a horizontal flip and rescalings, :mod:`perception.teachers.tta`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

__all__ = ["FEATURE_KINDS", "TEACHER_KINDS", "TTA_MODES", "TeacherSpecError", "GridAlignedTeacher", "ResizedTeacher",
           "TTATeacher", "at_input_size", "open_teacher", "parse_input_size", "resolve_teacher_spec", "teacher_usage",
           "tta_views"]

INPUT_MULTIPLES: dict[str, int] = {"espnetv2": 16}  # kinds whose network needs input sides of a multiple of this
TTA_MODES = ("none", "flip", "scales", "flip+scales")  # teacher.tta
TTA_AVERAGES = ("probs", "logits")  # teacher.tta_average
DEFAULT_TTA_SCALES = (0.75, 1.0, 1.25)  # teacher.tta_scales
DENSE_LOGITS_SIDE = 1 << 14  # ESPNetv2's logits_max_side when its logits are wanted at the frame's full size


class TeacherSpecError(ValueError):
    """The ``--teacher`` spec names an unknown kind or a path that is not there."""


# Each kind's builder: (PATH, device, logits_stride, dense=False) -> a teacher; ``dense`` asks for
# logits at the frame's full size (the test-time augmentation averages them there).
def _sim(arg: str, device: str, logits_stride: int, dense: bool = False) -> Any:
    from perception.teachers.sim import SIM_TEACHER_WEIGHTS, SegNetTeacher

    return SegNetTeacher(arg or SIM_TEACHER_WEIGHTS, device=device, logits_stride=1 if dense else logits_stride, name="sim")


def _espnetv2(arg: str, device: str, logits_stride: int, dense: bool = False) -> Any:
    from perception.teachers.espnetv2 import ESPNetv2Config, ESPNetv2Teacher

    if dense:
        return ESPNetv2Teacher(ESPNetv2Config(weights=arg, device=device, logits_max_side=DENSE_LOGITS_SIDE))
    return ESPNetv2Teacher(ESPNetv2Config(weights=arg, device=device))


def _torchscript(arg: str, device: str, logits_stride: int, dense: bool = False) -> Any:
    from perception.teachers.exported import TorchScriptTeacher

    return TorchScriptTeacher(arg, device=device, logits_stride=1 if dense else logits_stride)


def _onnx(arg: str, device: str, logits_stride: int, dense: bool = False) -> Any:
    from perception.teachers.exported import OnnxTeacher

    return OnnxTeacher(arg, device=device, logits_stride=1 if dense else logits_stride)


TEACHER_KINDS: dict[str, Callable[..., Any]] = {
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


def tta_views(mode: str, scales: tuple[float, ...] = DEFAULT_TTA_SCALES) -> tuple[tuple[float, bool], ...]:
    """The (scale, flipped) views ``teacher.tta`` names: ``"none"`` (the frame alone), ``"flip"``
    (and its mirror image), ``"scales"`` (the frame at each of ``scales``, ``teacher.tta_scales``)
    or ``"flip+scales"`` (every scale, plain and mirrored).

    Example:
        >>> tta_views("flip"), tta_views("flip+scales", (0.75, 1.0))
        (((1.0, False), (1.0, True)), ((0.75, False), (0.75, True), (1.0, False), (1.0, True)))
        >>> tta_views("mirror")
        Traceback (most recent call last):
        ...
        ValueError: teacher.tta: unknown test-time augmentation 'mirror' (choose none, flip, scales, flip+scales)

    Raises:
        ValueError: an unknown mode, or no / non-positive scales (the message names the setting).
    """
    if mode not in TTA_MODES:
        raise ValueError(f"teacher.tta: unknown test-time augmentation {mode!r} (choose {', '.join(TTA_MODES)})")
    if mode in ("scales", "flip+scales"):
        if not scales or any(not (isinstance(s, (int, float)) and 0.1 <= s <= 4.0) for s in scales):
            raise ValueError(f"teacher.tta_scales: expected one or more scales in [0.1, 4], got {tuple(scales)!r}")
        chosen = tuple(float(s) for s in scales)
    else:
        chosen = (1.0,)
    flips = (False, True) if mode in ("flip", "flip+scales") else (False,)
    return tuple((scale, flipped) for scale in chosen for flipped in flips)


def open_teacher(spec: str, device: str = "auto", logits_stride: int = 4,
                 input_size: str | tuple[int, int] | None = None, tta: str = "none",
                 tta_scales: tuple[float, ...] = DEFAULT_TTA_SCALES, tta_average: str = "probs") -> Any:
    """Build the teacher a spec names, e.g. ``"sim"`` or ``"espnetv2:../shared/data/teachers/x.safetensors"``.

    ``input_size`` (``teacher.input_size``: ``"WxH"``, a (height, width) tuple, or None /
    ``"native"`` for the frame size) makes the teacher run at that size on every frame and
    answer at the frame's size, whatever its kind (:func:`perception.teachers.grid.at_input_size`).

    ``tta`` other than ``"none"`` (``teacher.tta``, views from :func:`tta_views`) wraps the
    teacher, opened with full-resolution logits, in a
    :class:`~perception.teachers.tta.TTATeacher` that averages its answers over the views
    (``tta_average``: softmax ``"probs"`` or ``"logits"``); the views are made at the input
    size times their scale. With ``"none"`` the teacher is exactly the one without TTA.
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
        views = tta_views(tta, tuple(tta_scales))
    except ValueError as error:
        raise TeacherSpecError(str(error)) from None
    if tta_average not in TTA_AVERAGES:
        raise TeacherSpecError(f"teacher.tta_average: expected one of {', '.join(TTA_AVERAGES)}, got {tta_average!r}")
    if tta != "none":
        from perception.teachers.tta import TTATeacher

        return TTATeacher(TEACHER_KINDS[kind](arg, device, logits_stride, dense=True), views, input_size=size,
                          multiple=INPUT_MULTIPLES.get(kind, 1), logits_stride=logits_stride, average=tta_average)
    from perception.teachers.grid import at_input_size

    return at_input_size(TEACHER_KINDS[kind](arg, device, logits_stride), size)


def __getattr__(name: str) -> Any:
    """The adapters (they import torch) load on first use: ``import perception.teachers`` stays light."""
    if name in ("GridAlignedTeacher", "ResizedTeacher", "at_input_size"):
        from perception.teachers import grid

        return getattr(grid, name)
    if name == "TTATeacher":
        from perception.teachers.tta import TTATeacher

        return TTATeacher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
