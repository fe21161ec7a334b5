"""Running a network without leaving a trace on it.

Attacks, worst-of-k searches, the robustness probe and the learner's view refinement all run
forward passes through a student that is about to be used again, sometimes in training mode
(a student that normalises by each frame's own statistics, or the learner mid-step), where a
forward pass folds the batch into the batch-norm running statistics. :func:`frozen_buffers`
puts every buffer back as it was when the block ends, whatever happened inside.

Example:
    >>> import torch
    >>> from torch import nn
    >>> bn = nn.BatchNorm1d(2).train()
    >>> with frozen_buffers(bn):
    ...     _ = bn(torch.randn(4, 2) + 3.0)
    >>> bn.running_mean.tolist(), int(bn.num_batches_tracked)
    ([0.0, 0.0], 0)
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn


def owning_module(model: Any) -> nn.Module | None:
    """The module behind a network callable: the module itself, or the module of a bound
    method (``net.coarse_logits``); None for anything else."""
    if isinstance(model, nn.Module):
        return model
    owner = getattr(model, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


@contextlib.contextmanager
def frozen_buffers(model: Any) -> Iterator[None]:
    """Run the block, then restore every buffer of ``model`` (a module, or a module's bound
    method: batch-norm running statistics and their counters), even when the block raises."""
    module = owning_module(model)
    with torch.no_grad():
        saved = [(buffer, buffer.detach().clone()) for buffer in module.buffers()] if module is not None else []
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
