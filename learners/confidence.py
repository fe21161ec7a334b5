"""Teacher-free student signals: how unsure the student is of a frame.

:func:`softmax_confidence` turns a batch of segmentation logits into two per-frame numbers,
the mean per-pixel entropy of the softmax (divided by ``ln K``, so in [0, 1]) and the mean
per-pixel top-class probability. Both need only the student's own forward pass, so a drift
detector can watch them on every frame, between teacher calls; a new weather or town the
student has not learned usually raises the entropy and lowers the confidence.

The student nets' ``coarse_logits`` (their 1/2- or 1/4-resolution grid) give nearly the same
numbers as the upsampled logits at a fraction of the cost.

Example:
    >>> import torch
    >>> sure = torch.zeros(1, 3, 2, 2); sure[:, 0] = 20.0
    >>> unsure = torch.zeros(1, 3, 2, 2)
    >>> entropy, top = softmax_confidence(torch.cat([sure, unsure]))
    >>> [round(v, 4) for v in entropy.tolist()], [round(v, 4) for v in top.tolist()]
    ([0.0, 1.0], [1.0, 0.3333])
"""
from __future__ import annotations

import math

import torch

SIGNALS: tuple[str, ...] = ("entropy", "confidence")


@torch.no_grad()
def softmax_confidence(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame mean normalised entropy and mean top-class probability of ``logits``.

    Shape:
        logits (B, K, H, W) -> entropy (B,), confidence (B,) float32
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4 or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a (B, K, H, W) tensor with K >= 2 classes, got {shape}")
    log_p = torch.log_softmax(logits.float(), dim=1)  # (B, K, H, W)
    p = log_p.exp()  # (B, K, H, W)
    entropy = -(p * log_p).sum(dim=1) / math.log(logits.shape[1])  # (B, H, W)
    top = p.amax(dim=1)  # (B, H, W)
    return entropy.mean(dim=(1, 2)), top.mean(dim=(1, 2))
