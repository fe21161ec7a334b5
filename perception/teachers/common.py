"""Helpers shared by the pretrained teachers (and reusable for student checkpoints).

- Checkpoint loading that never unpickles (:func:`load_safetensors`) and a strict loader that
  names the first tensor that does not fit (:func:`load_state_strict`).
- Preprocessing: validate a (B, H, W, 3) uint8 batch, turn it into a (B, 3, H, W) float
  tensor in [0, 1], resize tensors, round sizes to what a network needs.
- Small policy helpers: torch dtype from config strings and the bounded size at which a
  teacher ships its logits (devices: :mod:`perception.device`; MACs:
  :func:`perception.nets.count_macs`).

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Conv2d(3, 4, 1)
    >>> state = {"weight": torch.zeros(5, 3, 1, 1), "bias": torch.zeros(4)}
    >>> try:
    ...     load_state_strict(net, state, "demo.safetensors")
    ... except CheckpointMismatchError as err:
    ...     print(err.tensor_name, err.expected_shape, err.got_shape)
    weight (4, 3, 1, 1) (5, 3, 1, 1)
    >>> round_to_multiple((360, 480), 16)
    (368, 480)
    >>> bounded_size((360, 480), 256)
    (192, 256)
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, inputs in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CheckpointFormatError(ValueError):
    """A weights file cannot be read as safetensors (we never fall back to unpickling)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit a module; names the first offending tensor.

    Attributes:
        source_name: where the tensors came from (a path or a label).
        tensor_name: the first tensor that does not fit (module order, then checkpoint order).
        expected_shape: its shape in the module, or None when the module has no such tensor.
        got_shape: its shape in the checkpoint, or None when the checkpoint lacks it.
        problems: how many tensors do not fit in all.
    """

    def __init__(
        self,
        source_name: str,
        module_name: str,
        tensor_name: str,
        expected_shape: tuple[int, ...] | None,
        got_shape: tuple[int, ...] | None,
        problems: int,
    ) -> None:
        self.source_name = source_name
        self.tensor_name = tensor_name
        self.expected_shape = expected_shape
        self.got_shape = got_shape
        self.problems = problems
        if got_shape is None:
            what = f"expected shape {expected_shape}, got nothing (missing from the checkpoint)"
        elif expected_shape is None:
            what = f"expected nothing (the model has no such tensor), got shape {got_shape}"
        else:
            what = f"expected shape {expected_shape}, got shape {got_shape}"
        more = f" ({problems} tensors do not fit in all)" if problems > 1 else ""
        super().__init__(
            f"checkpoint {source_name} does not fit {module_name}: tensor '{tensor_name}' {what}{more}"
        )


def load_safetensors(path: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """Read every tensor of a ``.safetensors`` file onto the CPU (never unpickles anything).

    Raises:
        FileNotFoundError: the path does not exist or is not a file (the message names it).
        CheckpointFormatError: the file is not valid safetensors (e.g. a pickled ``.pth``).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{what} file {str(path)!r} {reason}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        hint = ""
        if path.suffix in (".pt", ".pth", ".ckpt", ".pkl", ".bin"):
            hint = " (pickled checkpoints are never loaded; re-save the tensors with safetensors)"
        raise CheckpointFormatError(f"{what} file {str(path)!r} is not a readable safetensors file: {err}{hint}") from err


def load_state_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source_name: str) -> None:
    """Load ``state`` into ``module`` with ``strict=True`` after checking every key and shape.

    The first problem is reported in the module's own order (a missing or wrongly shaped
    tensor), then in the checkpoint's order (a tensor the module does not have).

    Raises:
        CheckpointMismatchError: a missing, unexpected or wrongly shaped tensor (named).
    """
    expected = module.state_dict()
    problems: list[tuple[str, tuple[int, ...] | None, tuple[int, ...] | None]] = []
    for name, tensor in expected.items():
        if name not in state:
            problems.append((name, tuple(tensor.shape), None))
            continue
        got = state[name]
        if not isinstance(got, torch.Tensor):
            raise CheckpointFormatError(f"checkpoint {source_name}: entry '{name}' is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != tuple(tensor.shape):
            problems.append((name, tuple(tensor.shape), tuple(got.shape)))
    for name, tensor in state.items():
        if name not in expected:
            problems.append((name, None, tuple(tensor.shape)))
    if problems:
        name, exp, got = problems[0]
        raise CheckpointMismatchError(source_name, type(module).__name__, name, exp, got, len(problems))
    module.load_state_dict(dict(state), strict=True)
    logger.debug("loaded %d tensors from %s into %s", len(state), source_name, type(module).__name__)


def check_images(images: np.ndarray, name: str = "images") -> None:
    """Raise ValueError naming ``name`` unless it is a non-empty (B, H, W, 3) uint8 array.

    Shape:
        images (B, H, W, 3) uint8
    """
    if not isinstance(images, np.ndarray):
        raise ValueError(f"{name} must be a numpy array (B, H, W, 3) uint8, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"{name} must be (B, H, W, 3) uint8 RGB, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 RGB, got dtype {images.dtype}")
    if min(images.shape[:3]) == 0:
        raise ValueError(f"{name} must not be empty, got shape {images.shape}")


def images_to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 RGB frames -> float32 tensor in [0, 1] on ``device``.

    Shape:
        images (B, H, W, 3) uint8 -> (B, 3, H, W) float32
    """
    check_images(images)
    if not images.flags.writeable:  # frames are read-only (and shared, under Ray); torch wants its own memory
        images = images.copy()
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)  # (B, H, W, 3) uint8
    return x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)


def resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of a (B, C, H, W) tensor; antialiased when shrinking, a no-op when equal.

    Shape:
        x (B, C, H, W) -> (B, C, size[0], size[1])
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners, antialias=shrink)


def round_to_multiple(size: tuple[float, float], multiple: int) -> tuple[int, int]:
    """Round (H, W) to the nearest multiples of ``multiple`` (at least one ``multiple``)."""
    return tuple(max(multiple, int(math.floor(s / multiple + 0.5)) * multiple) for s in size)  # type: ignore[return-value]


def bounded_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Scale (H, W) down (never up) so that the longer side is at most ``max_side``."""
    scale = min(1.0, max_side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resolve_dtype(dtype: str) -> torch.dtype:
    """``"float32"`` | ``"float16"`` | ``"bfloat16"`` -> the torch dtype."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]
