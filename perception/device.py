"""One resolver from a device name (a config value or a ``--device`` flag) to a torch device.

``"auto"`` is a CUDA GPU when one is present, else the CPU; ``"cpu"``, ``"cuda"``,
``"cuda:N"`` and ``"mps"`` are taken as they are, but only where that device exists here. Any
other name, or a GPU asked for on a machine without one, is a :class:`DeviceError` that
names the setting and the value.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto").type in ("cpu", "cuda")
    True
    >>> resolve_device("tpu", setting="teacher.device")
    Traceback (most recent call last):
    ...
    perception.device.DeviceError: teacher.device: unknown device 'tpu' (choose auto, cpu, cuda, cuda:N or mps)
"""
from __future__ import annotations

import torch

_KINDS = ("cpu", "cuda", "mps")


class DeviceError(ValueError):
    """A device name is unknown, or names a device this machine does not have."""


def resolve_device(name: str | torch.device, setting: str = "device") -> torch.device:
    """The torch device ``name`` stands for; ``setting`` is the option it came from (for errors)."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise DeviceError(f"{setting}: expected a device name, got {type(name).__name__}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in _KINDS or (device.type == "cpu" and device.index not in (None, 0)):
        raise DeviceError(f"{setting}: unknown device {name!r} (choose auto, cpu, cuda, cuda:N or mps)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{setting}: {name!r} asked for, but no CUDA GPU is available here (use auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{setting}: {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{setting}: {name!r} asked for, but MPS is not available here (use auto or cpu)")
    return device
