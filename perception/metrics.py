"""Segmentation metrics from a confusion matrix, and its plain numpy reference.

A confusion matrix here is int64 of shape (C, C + 1): rows are ground-truth classes, columns
predicted classes, and the last column counts pixels whose prediction is outside 0..C-1
("no prediction", e.g. 255 in a teacher's labels). A plain (C, C) matrix is accepted too.

Evaluating in another label set (e.g. CamVid's 11 classes) works two ways, both exact:

* map the label maps first (``perception.labels.LabelMap``) and count in the new space
  with ``num_classes`` set to its size, or
* count in the canonical space and fold the matrix with :func:`remap_confusion` afterwards,
  which gives the same matrix as mapping both label maps first with the same table (for
  target values inside 0..C-1; other targets are skipped either way when the table sends
  them to ignore).

Example:
    >>> import numpy as np
    >>> target = np.array([[0, 0, 1, 255]], np.uint8)
    >>> pred = np.array([[0, 1, 1, 0]], np.uint8)
    >>> cm = confusion_matrix_numpy(target, pred, num_classes=2)
    >>> cm.tolist()
    [[1, 1, 0], [0, 1, 0]]
    >>> iou_per_class(cm).tolist(), mean_iou(cm), pixel_accuracy(cm)
    ([0.5, 0.5], 0.5, 0.6666666666666666)
"""
from __future__ import annotations

import numpy as np

from perception.labels import IGNORE_INDEX, NUM_CLASSES


def confusion_matrix_numpy(
    target: np.ndarray,
    pred: np.ndarray,
    num_classes: int = NUM_CLASSES,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Reference confusion matrix with ``np.bincount`` (same semantics as the numba kernel).

    Pixels whose target is >= ``num_classes`` or equals ``ignore_index`` are skipped; a
    prediction outside 0..C-1 (or equal to ``ignore_index``) is counted in the last column.

    Shape:
        target (H, W) uint8, pred (H, W) uint8 -> (C, C + 1) int64
    """
    c = int(num_classes)
    target = np.asarray(target)
    pred = np.asarray(pred)
    if target.shape != pred.shape:
        raise ValueError(f"target shape {target.shape} does not match pred shape {pred.shape}")
    valid = (target < c) & (target != ignore_index)  # (H, W) bool
    t = target[valid].astype(np.int64)  # (N,)
    p = pred[valid].astype(np.int64)  # (N,)
    p = np.where((p < c) & (p != ignore_index), p, c)  # (N,)
    counts = np.bincount(t * (c + 1) + p, minlength=c * (c + 1))  # (C * (C + 1),)
    return counts.reshape(c, c + 1)


def _check_cm(cm: np.ndarray) -> tuple[np.ndarray, int]:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[1] not in (cm.shape[0], cm.shape[0] + 1) or cm.shape[0] == 0:
        raise ValueError(f"cm must be a (C, C + 1) or (C, C) confusion matrix, got shape {cm.shape}")
    return cm, cm.shape[0]


def class_support(cm: np.ndarray) -> np.ndarray:
    """Ground-truth pixels per class (row sums, including the no-prediction column).

    Shape:
        cm (C, C + 1) -> (C,) int64
    """
    cm, _ = _check_cm(cm)
    return cm.sum(axis=1).astype(np.int64)  # (C,)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """Intersection over union per class; NaN where the union is empty.

    union = row sum (incl. the no-prediction column) + column sum - true positives.

    Shape:
        cm (C, C + 1) -> (C,) float64
    """
    cm, c = _check_cm(cm)
    cm = cm.astype(np.float64)
    tp = np.diagonal(cm[:, :c])  # (C,)
    union = cm.sum(axis=1) + cm[:, :c].sum(axis=0) - tp  # (C,)
    iou = np.full(c, np.nan)  # (C,)
    present = union > 0
    iou[present] = tp[present] / union[present]
    return iou


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes whose union is non-empty (NaN if there is none).

    Shape:
        cm (C, C + 1) -> float
    """
    iou = iou_per_class(cm)  # (C,)
    present = ~np.isnan(iou)
    return float(iou[present].mean()) if present.any() else float("nan")


def pixel_accuracy(cm: np.ndarray) -> float:
    """Correct pixels / counted pixels (no-prediction pixels count as wrong; NaN if empty).

    Shape:
        cm (C, C + 1) -> float
    """
    cm, c = _check_cm(cm)
    total = int(cm.sum())
    return float(np.trace(cm[:, :c]) / total) if total > 0 else float("nan")


def remap_confusion(cm: np.ndarray, table: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Fold a confusion matrix into another label set.

    ``table[c]`` is the new class of old class ``c``; a value >= ``num_classes`` (e.g. 255)
    means "not in the new set": such ground-truth rows are dropped and such predictions go
    to the new no-prediction column. ``num_classes`` defaults to the largest mapped value + 1.
    The result equals counting after mapping both label maps with the same table.

    Shape:
        cm (C, C + 1) or (C, C), table (C,) or (256,) ints -> (C', C' + 1) int64

    Example:
        >>> cm = np.array([[5, 1, 0], [2, 3, 1]])
        >>> remap_confusion(cm, np.array([0, 0])).tolist()
        [[11, 1]]
    """
    cm, c = _check_cm(cm)
    table = np.asarray(table)
    if table.ndim != 1 or table.shape[0] < c:
        raise ValueError(f"table must be 1-D with at least {c} entries, got shape {table.shape}")
    if not np.issubdtype(table.dtype, np.integer) or (table[:c] < 0).any():
        raise ValueError(f"table must hold non-negative integers, got dtype {table.dtype}")
    table = table[:c].astype(np.int64)  # (C,)
    if num_classes is None:
        mapped = table[table < IGNORE_INDEX]
        if mapped.size == 0:
            raise ValueError("table maps no class below 255; pass num_classes")
        num_classes = int(mapped.max()) + 1
    n = int(num_classes)
    if n <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    row = np.where(table < n, table, -1)  # (C,) -1 = dropped
    col = np.where(table < n, table, n)  # (C,)
    out = np.zeros((n, n + 1), np.int64)  # (C', C' + 1)
    keep = row >= 0
    block = cm[keep][:, :c].astype(np.int64)  # (R, C)
    np.add.at(out, (row[keep][:, None], col[None, :]), block)
    if cm.shape[1] == c + 1:
        np.add.at(out[:, n], row[keep], cm[keep, c].astype(np.int64))
    return out
