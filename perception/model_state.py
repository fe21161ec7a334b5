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


@contextlib.contextmanager
def running_statistics_paused(model: Any) -> Iterator[None]:
    """Run the block with every batch-norm layer of ``model`` leaving its running statistics
    as they are, while the block's own graph stays differentiable.

    For passes whose loss is back-propagated after the block (the learner's adversarial and
    Kornia views): a training-mode pass still normalises by its own batch, but the running
    statistics, which the predictor uses on clean frames, learn from clean crops only. Each
    layer's ``momentum`` is set to 0 inside the block (the kernel's update then keeps the
    running mean and variance exactly), and its batch counter is put back afterwards.
    Unlike :func:`frozen_buffers`, nothing is written into a tensor that a pending backward
    pass may need.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> bn = nn.BatchNorm1d(2).train()
        >>> x = (torch.randn(4, 2) + 3.0).requires_grad_(True)
        >>> with running_statistics_paused(bn):
        ...     loss = bn(x).pow(2).sum()
        >>> loss.backward()
        >>> bn.running_mean.tolist(), int(bn.num_batches_tracked), x.grad.shape
        ([0.0, 0.0], 0, torch.Size([4, 2]))
    """
    module = owning_module(model)
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if module is not None else []
    saved = [(layer, layer.momentum, None if layer.num_batches_tracked is None else int(layer.num_batches_tracked))
             for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        yield
    finally:
        for layer, momentum, tracked in saved:
            layer.momentum = momentum
            if tracked is not None:
                with torch.no_grad():
                    layer.num_batches_tracked.fill_(tracked)
