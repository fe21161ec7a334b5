"""Shipped weights (safetensors) and the strict loader every checkpoint goes through."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS_DIR = Path(__file__).resolve().parent


class CheckpointError(ValueError):
    """A weights file is missing, unreadable, or does not fit the architecture."""


def check_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming the first tensor that does not fit ``module``."""
    expected = module.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            raise CheckpointError(f"{source}: tensor {name!r} missing (expected shape {tuple(tensor.shape)})")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: tensor {name!r} has shape {tuple(state[name].shape)}, the architecture expects {tuple(tensor.shape)}"
            )
    extra = [name for name in state if name not in expected]
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor {extra[0]!r} (not in the architecture)")


def load_weights(module: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load a safetensors file into ``module`` strictly, with errors that name the tensor."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        state = load_file(str(path))
    except Exception as error:  # safetensors raises several types for a bad header
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    check_state(module, state, str(path))
    module.load_state_dict(state, strict=True)
    return module


def save_weights(module: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Save ``module``'s state dict as safetensors (contiguous CPU tensors)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata=metadata)
    return path
