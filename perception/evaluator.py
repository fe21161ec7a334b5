"""Streaming segmentation evaluation: numba confusion kernels and :class:`StreamingEvaluator`.

The kernels count (ground truth, prediction) pixel pairs into an int64 confusion matrix of
shape (C, C + 1): rows = ground-truth class, columns = predicted class, last column =
prediction outside 0..C-1 (255 = "no prediction"). Pixels whose target is >= C or equals
``ignore_index`` are skipped. They read label maps through two 256-entry lookup tables
(value -> row offset, value -> column) and count into four interleaved local histograms,
so runs of equal labels do not serialise on one counter. Contiguous maps are read eight
pixels at a time (64-bit words); a word pair whose eight targets are equal and whose eight
predictions are equal (about 90 % of the words of a segmentation map, since labels come in
regions) is counted with a single add. The speed therefore depends on the data: on
1024 x 512 maps (bench/evaluator.py, 2 shared cores) scene-like and real CamVid label maps
run about 15x faster than the usual ``np.bincount`` confusion matrix, maps of uniform random
noise (no regions, the worst case) about 5x.
``perception.metrics.confusion_matrix_numpy`` is the plain numpy reference.

Example:
    >>> import numpy as np
    >>> cm = np.zeros((2, 3), np.int64)
    >>> confusion_update(cm, np.array([[0, 1, 255]], np.uint8), np.array([[0, 255, 1]], np.uint8))
    >>> cm.tolist()
    [[1, 0, 0], [0, 0, 1]]
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

from perception.labels import IGNORE_INDEX, NUM_CLASSES
from perception.metrics import iou_per_class, mean_iou, pixel_accuracy

logger = logging.getLogger(__name__)

_LANES = 4  # interleaved local histograms (breaks the store-to-load chain on equal labels)


@njit(cache=True, nogil=True)
def _lookup_tables(num_classes: int, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Value -> flat row offset (skipped targets -> the spare row C) and value -> column."""
    stride = num_classes + 1
    row = np.empty(256, np.int64)  # (256,)
    col = np.empty(256, np.int64)  # (256,)
    for v in range(256):
        inside = v < num_classes and v != ignore_index
        row[v] = v * stride if inside else num_classes * stride
        col[v] = v if inside else num_classes
    return row, col


@njit(cache=True, nogil=True)
def _count_rows(hist: np.ndarray, row: np.ndarray, col: np.ndarray, target: np.ndarray, pred: np.ndarray) -> None:
    """Count the pixel pairs of two equally shaped 2-D maps into ``hist`` (LANES, (C+1)**2)."""
    height, width = target.shape
    for i in range(height):
        t = target[i]  # (W,)
        p = pred[i]  # (W,)
        j = 0
        while j + 4 <= width:
            hist[0, row[t[j]] + col[p[j]]] += 1
            hist[1, row[t[j + 1]] + col[p[j + 1]]] += 1
            hist[2, row[t[j + 2]] + col[p[j + 2]]] += 1
            hist[3, row[t[j + 3]] + col[p[j + 3]]] += 1
            j += 4
        while j < width:
            hist[0, row[t[j]] + col[p[j]]] += 1
            j += 1


_BYTE = np.uint64(0xFF)
_ONES = np.uint64(0x0101010101010101)  # times a byte: that byte in all eight lanes of a word


@njit(cache=True, nogil=True)
def _count_flat(hist: np.ndarray, row: np.ndarray, col: np.ndarray, target: np.ndarray, pred: np.ndarray) -> None:
    """Count two equally long contiguous 1-D byte arrays, eight pixels per 64-bit read.

    A word pair whose eight targets are all equal and whose eight predictions are all equal
    (most words of a segmentation map: labels come in regions) is counted with one add;
    any other word pair is counted byte by byte.
    """
    n = target.shape[0]
    n8 = n // 8
    words_t = target[: n8 * 8].view(np.uint64)  # (N / 8,)
    words_p = pred[: n8 * 8].view(np.uint64)  # (N / 8,)
    for w in range(n8):
        a = words_t[w]
        b = words_p[w]
        a0 = a & _BYTE
        b0 = b & _BYTE
        if a == a0 * _ONES and b == b0 * _ONES:
            hist[0, row[a0] + col[b0]] += 8
        else:
            hist[0, row[a0] + col[b0]] += 1
            hist[1, row[(a >> np.uint64(8)) & _BYTE] + col[(b >> np.uint64(8)) & _BYTE]] += 1
            hist[2, row[(a >> np.uint64(16)) & _BYTE] + col[(b >> np.uint64(16)) & _BYTE]] += 1
            hist[3, row[(a >> np.uint64(24)) & _BYTE] + col[(b >> np.uint64(24)) & _BYTE]] += 1
            hist[0, row[(a >> np.uint64(32)) & _BYTE] + col[(b >> np.uint64(32)) & _BYTE]] += 1
            hist[1, row[(a >> np.uint64(40)) & _BYTE] + col[(b >> np.uint64(40)) & _BYTE]] += 1
            hist[2, row[(a >> np.uint64(48)) & _BYTE] + col[(b >> np.uint64(48)) & _BYTE]] += 1
            hist[3, row[a >> np.uint64(56)] + col[b >> np.uint64(56)]] += 1
    for j in range(n8 * 8, n):
        hist[0, row[target[j]] + col[pred[j]]] += 1


@njit(cache=True, nogil=True)
def _count_map(hist: np.ndarray, row: np.ndarray, col: np.ndarray, target: np.ndarray, pred: np.ndarray) -> None:
    """Count one map pair: as flat words when both are C- (or both F-) contiguous, else by rows
    along the axis with the smaller strides."""
    if target.flags.c_contiguous and pred.flags.c_contiguous:
        _count_flat(hist, row, col, np.ascontiguousarray(target).reshape(-1), np.ascontiguousarray(pred).reshape(-1))
    elif target.flags.f_contiguous and pred.flags.f_contiguous:
        _count_flat(hist, row, col, np.ascontiguousarray(target.T).reshape(-1), np.ascontiguousarray(pred.T).reshape(-1))
    elif target.strides[0] < target.strides[1] and pred.strides[0] < pred.strides[1]:
        _count_rows(hist, row, col, target.T, pred.T)
    else:
        _count_rows(hist, row, col, target, pred)


@njit(cache=True, nogil=True)
def _fold(cm: np.ndarray, hist: np.ndarray) -> None:
    """Add the lanes of ``hist`` into ``cm``, dropping the spare row of skipped targets."""
    num_classes = cm.shape[0]
    stride = num_classes + 1
    for t in range(num_classes):
        for p in range(stride):
            total = 0
            for lane in range(hist.shape[0]):
                total += hist[lane, t * stride + p]
            cm[t, p] += total


@njit(cache=True, nogil=True)
def _check_kernel_args(cm: np.ndarray, target: np.ndarray, pred: np.ndarray) -> None:
    if cm.shape[1] != cm.shape[0] + 1:
        raise ValueError("cm must have shape (C, C + 1)")
    if target.shape != pred.shape:
        raise ValueError("target and pred must have the same shape")
    if target.itemsize != 1 or pred.itemsize != 1:
        raise ValueError("target and pred must be uint8 label maps")


@njit(cache=True, nogil=True)
def confusion_update(cm: np.ndarray, target: np.ndarray, pred: np.ndarray, ignore_index: int = IGNORE_INDEX) -> None:
    """Add the pixel pairs of one label-map pair to ``cm`` in place.

    ``target`` rows >= C or == ``ignore_index`` are skipped; predictions outside 0..C-1 (or
    == ``ignore_index``) land in the last column. Any 2-D uint8 layout is accepted.

    Shape:
        cm (C, C + 1) int64, target (H, W) uint8, pred (H, W) uint8 -> None
    """
    _check_kernel_args(cm, target, pred)
    num_classes = cm.shape[0]
    row, col = _lookup_tables(num_classes, ignore_index)
    hist = np.zeros((_LANES, (num_classes + 1) * (num_classes + 1)), np.int64)  # (LANES, (C+1)**2)
    _count_map(hist, row, col, target, pred)
    _fold(cm, hist)


@njit(cache=True, nogil=True)
def confusion_update_batch(
    cm: np.ndarray, targets: np.ndarray, preds: np.ndarray, ignore_index: int = IGNORE_INDEX
) -> None:
    """Batched :func:`confusion_update`: all frames of a batch into one matrix.

    Shape:
        cm (C, C + 1) int64, targets (B, H, W) uint8, preds (B, H, W) uint8 -> None
    """
    _check_kernel_args(cm, targets, preds)
    num_classes = cm.shape[0]
    row, col = _lookup_tables(num_classes, ignore_index)
    hist = np.zeros((_LANES, (num_classes + 1) * (num_classes + 1)), np.int64)  # (LANES, (C+1)**2)
    for b in range(targets.shape[0]):
        _count_map(hist, row, col, targets[b], preds[b])
    _fold(cm, hist)


@njit(cache=True, nogil=True, parallel=True)
def confusion_update_parallel(
    cm: np.ndarray, target: np.ndarray, pred: np.ndarray, ignore_index: int = IGNORE_INDEX, chunks: int = 16
) -> None:
    """Multi-threaded :func:`confusion_update` (numba threads over ``chunks`` row chunks).

    Same result as the serial kernel; worth it for large maps on idle cores. Contiguous
    C-order maps are split into word-aligned chunks of the flat buffer; any other layout
    into row chunks.

    Shape:
        cm (C, C + 1) int64, target (H, W) uint8, pred (H, W) uint8 -> None
    """
    _check_kernel_args(cm, target, pred)
    num_classes = cm.shape[0]
    row, col = _lookup_tables(num_classes, ignore_index)
    chunks = max(1, chunks)
    size = (num_classes + 1) * (num_classes + 1)
    hist = np.zeros((chunks, _LANES, size), np.int64)  # (chunks, LANES, (C+1)**2)
    if target.flags.c_contiguous and pred.flags.c_contiguous:
        flat_t = np.ascontiguousarray(target).reshape(-1)  # (H * W,)
        flat_p = np.ascontiguousarray(pred).reshape(-1)  # (H * W,)
        words = flat_t.shape[0] // 8
        for c in prange(chunks):
            lo = 8 * (c * words // chunks)
            hi = 8 * ((c + 1) * words // chunks) if c < chunks - 1 else flat_t.shape[0]
            _count_flat(hist[c], row, col, flat_t[lo:hi], flat_p[lo:hi])
    else:
        height = target.shape[0]
        for c in prange(chunks):
            lo = c * height // chunks
            hi = (c + 1) * height // chunks
            _count_rows(hist[c], row, col, target[lo:hi], pred[lo:hi])
    for c in range(chunks):
        _fold(cm, hist[c])


def _check_label(name: str, array: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) label map, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {array.dtype}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} shape {array.shape} does not match {shape}")
    return array


def confusion_matrix(
    target: np.ndarray,
    pred: np.ndarray,
    num_classes: int = NUM_CLASSES,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Checked entry to :func:`confusion_update`: a new (C, C + 1) matrix for one pair.

    Shape:
        target (H, W) uint8, pred (H, W) uint8 -> (C, C + 1) int64

    Example:
        >>> import numpy as np
        >>> confusion_matrix(np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8), 2).tolist()
        [[0, 4, 0], [0, 0, 0]]
    """
    if not 1 <= int(num_classes) <= 256:
        raise ValueError(f"num_classes must be in 1..256, got {num_classes}")
    target = _check_label("target", target)
    pred = _check_label("pred", pred, target.shape)
    cm = np.zeros((int(num_classes), int(num_classes) + 1), np.int64)  # (C, C + 1)
    confusion_update(cm, target, pred, int(ignore_index))
    return cm


@dataclass(frozen=True)
class EvaluatorConfig:
    """Configuration of :class:`StreamingEvaluator`."""

    num_classes: int = NUM_CLASSES  # classes of the label space (19 Cityscapes trainIds)
    ignore_index: int = IGNORE_INDEX  # target value that is skipped; as a prediction: "none"
    window: int = 100  # frames per window for window_metrics()
    # robustness on the stream (run by the learner on the current student, scored here):
    robust_every: int = 100  # every Nth frame (index % N == 0) is attacked before the student learns from it; 0 = off
    robust_eps: str = "2/255,4/255,8/255"  # PGD radii (L-inf), each a number or N/255
    robust_steps: int = 10  # PGD iterations of each radius
    robust_step: float = 1.0  # PGD step as a fraction of eps, the schedule's middle (a constant eps/4 left PGD-10 3.4
    # points of mIoU above PGD-50 on the shipped sim student; bench/robustness.py checks every robust student it makes)
    robust_schedule: str = "cosine"  # the step over the iterations: cosine (2 x step down to 0) | constant
    robust_momentum: float = 0.5  # PGD momentum
    robust_restarts: int = 1  # random restarts (the worst for the student is kept)
    robust_loss: str = "ce,segpgd"  # the attack's losses, comma-separated (ce, segpgd): per frame the worse is kept
    corruptions: str = "all"  # Kornia presets scored one by one (perception.corruptions.PRESETS), "" = none
    worst_k: int = 8  # Kornia views sampled per robust frame for the worst-of-k figure (0 = none)
    depth_max: float = 80.0  # metres: depth AbsRel counts ground truth in (0, depth_max] (the sim's sky reads 1000)
    visit_frames: int = 50  # the first and last frames of each visit of a domain scored apart (forgetting)

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or not 1 <= self.num_classes <= 256:
            raise ValueError(f"EvaluatorConfig.num_classes must be an int in 1..256, got {self.num_classes!r}")
        if not isinstance(self.ignore_index, int) or not 0 <= self.ignore_index <= 255:
            raise ValueError(f"EvaluatorConfig.ignore_index must be an int in 0..255, got {self.ignore_index!r}")
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"EvaluatorConfig.window must be a positive int, got {self.window!r}")
        from perception.views import check_presets, parse_eps_list

        if self.robust_every < 0:
            raise ValueError(f"robust_every must be >= 0, got {self.robust_every}")
        if not isinstance(self.visit_frames, int) or isinstance(self.visit_frames, bool) or self.visit_frames < 1:
            raise ValueError(f"visit_frames must be an int >= 1 (frames), got {self.visit_frames!r}")
        if not self.depth_max > 0:
            raise ValueError(f"depth_max must be > 0 (metres), got {self.depth_max}")
        parse_eps_list(self.robust_eps, "robust_eps")
        if self.robust_schedule not in ("cosine", "constant"):
            raise ValueError(f"robust_schedule: expected cosine or constant, got {self.robust_schedule!r}")
        if not 0.0 <= self.robust_momentum < 1.0:
            raise ValueError(f"robust_momentum must be in [0, 1), got {self.robust_momentum}")
        if not 0.0 < self.robust_step <= 1.0:
            raise ValueError(f"robust_step must be in (0, 1] (a fraction of eps), got {self.robust_step}")
        if self.robust_steps < 1 or self.robust_restarts < 1:
            raise ValueError(f"robust_steps and robust_restarts must be >= 1, got {self.robust_steps}, {self.robust_restarts}")
        losses = self.robust_losses()
        if not losses or any(loss not in ("ce", "segpgd") for loss in losses):
            raise ValueError(f"robust_loss: expected ce, segpgd or both (comma-separated), got {self.robust_loss!r}")
        if self.worst_k < 0:
            raise ValueError(f"worst_k must be >= 0, got {self.worst_k}")
        check_presets(self.corruptions, "corruptions")

    def robust_losses(self) -> list[str]:
        """The attack losses ``robust_loss`` names, in order.

        Example:
            >>> EvaluatorConfig(robust_loss="ce, segpgd").robust_losses()
            ['ce', 'segpgd']
        """
        return [item.strip() for item in self.robust_loss.split(",") if item.strip()]


# Prefix of each pair's keys. "student" covers every frame with ground truth; "teacher" and
# "student_on_teacher_frames" cover the frames the teacher labelled (and that have ground
# truth), so their ratio compares the two on the same frames.
PAIRS: tuple[str, ...] = ("student", "teacher", "student_vs_teacher", "student_on_teacher_frames")
_COUNTS: tuple[str, ...] = ("frames", "gt_frames", "teacher_frames")


class _Scope:
    """Confusion matrices of the pairs and frame counts for one scope."""

    def __init__(self, num_classes: int) -> None:
        self.cm = np.zeros((len(PAIRS), num_classes, num_classes + 1), np.int64)  # (P, C, C + 1)
        self.counts = np.zeros(len(_COUNTS), np.int64)  # (3,) frames, gt_frames, teacher_frames

    def add(self, cm: np.ndarray, counts: np.ndarray) -> None:
        self.cm += cm
        self.counts += counts

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: int(n) for name, n in zip(_COUNTS, self.counts)}
        for pair, cm in zip(PAIRS, self.cm):
            out[f"{pair}_miou"] = _finite(mean_iou(cm))
            out[f"{pair}_pixel_acc"] = _finite(pixel_accuracy(cm))
        return out


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class StreamingEvaluator:
    """Streaming confusion matrices of student-vs-gt, teacher-vs-gt and student-vs-teacher.

    Each pair is accumulated overall, per domain and in the current window. Ground truth and
    teacher labels are optional per frame; a pair is counted only on frames that have both
    sides (teacher-vs-gt needs both). Metrics are plain floats, NaN reported as ``None``.

    Example:
        >>> import numpy as np
        >>> ev = StreamingEvaluator(EvaluatorConfig(num_classes=3, window=2))
        >>> gt = np.array([[0, 1, 2, 255]], np.uint8)
        >>> ev.update("clear", gt, ground_truth=gt, teacher=None).tolist()  # this frame's student vs ground truth
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
        >>> ev.window_metrics() is None
        True
        >>> _ = ev.update("fog", np.array([[0, 1, 1, 1]], np.uint8), ground_truth=gt, teacher=gt)
        >>> m = ev.window_metrics()
        >>> m["frames"], m["teacher_frames"], round(m["student_miou"], 4), m["teacher_miou"]
        (2, 1, 0.7222, 1.0)
        >>> ev.summary()["per_domain"]["fog"]["student_pixel_acc"]
        0.6666666666666666
        >>> _ = ev.update("fog", gt, ground_truth=gt)  # a last window of 1 frame, closed at the end
        >>> ev.window_metrics() is None, ev.window_metrics(final=True)["frames"], ev.last_domain
        (True, 1, 'fog')
    """

    def __init__(self, config: EvaluatorConfig = EvaluatorConfig()) -> None:
        if not isinstance(config, EvaluatorConfig):
            raise ValueError(f"config must be an EvaluatorConfig, got {type(config).__name__}")
        self.config = config
        self._overall = _Scope(config.num_classes)
        self._window = _Scope(config.num_classes)
        self._domains: dict[str, _Scope] = {}
        self._last_domain: str | None = None

    @property
    def last_domain(self) -> str | None:
        """The domain of the last frame counted (None before the first)."""
        return self._last_domain

    @property
    def domains(self) -> list[str]:
        """Domains seen so far, in order of first appearance."""
        return list(self._domains)

    def update(
        self,
        domain: str,
        student: np.ndarray,
        ground_truth: np.ndarray | None = None,
        teacher: np.ndarray | None = None,
    ) -> np.ndarray:
        """Count one frame; returns its student-against-ground-truth confusion (zeros without
        ground truth), for a caller that keeps its own tallies.

        Shape:
            student (H, W) uint8; ground_truth, teacher (H, W) uint8 or None -> (C, C + 1) int64
        """
        if not isinstance(domain, str) or not domain:
            raise ValueError(f"domain must be a non-empty str, got {domain!r}")
        student = _check_label("student", student)
        shape = student.shape
        c = self.config.num_classes
        ignore = self.config.ignore_index
        cm = np.zeros((len(PAIRS), c, c + 1), np.int64)  # (P, C, C + 1)
        if ground_truth is not None:
            ground_truth = _check_label("ground_truth", ground_truth, shape)
            confusion_update(cm[0], ground_truth, student, ignore)
        if teacher is not None:
            teacher = _check_label("teacher", teacher, shape)
            if ground_truth is not None:
                confusion_update(cm[1], ground_truth, teacher, ignore)
                cm[3] = cm[0]  # the student on a frame the teacher labelled
            confusion_update(cm[2], teacher, student, ignore)
        counts = np.array([1, ground_truth is not None, teacher is not None], np.int64)  # (3,)
        self._overall.add(cm, counts)
        self._window.add(cm, counts)
        scope = self._domains.get(domain)
        if scope is None:
            scope = self._domains[domain] = _Scope(c)
            logger.debug("evaluator: new domain %r", domain)
        scope.add(cm, counts)
        self._last_domain = domain
        return cm[0]

    def frame_counts(self) -> dict[str, int]:
        """Overall ``frames``, ``gt_frames`` (with ground truth) and ``teacher_frames`` so far."""
        return {name: int(n) for name, n in zip(_COUNTS, self._overall.counts)}

    def window_metrics(self, final: bool = False) -> dict[str, Any] | None:
        """The current window's metrics once ``window`` frames were seen (then reset), else None.

        With ``final=True`` (at the end of a stream) a partial window of at least one frame is
        closed too, so a stream shorter than ``window``, and the last frames of any stream,
        are reported; its ``frames`` says how many frames it holds. None when the window is
        empty.

        Keys: ``frames``, ``gt_frames``, ``teacher_frames``, ``end_frame`` (overall frame count at
        the window's end) and ``<pair>_miou`` / ``<pair>_pixel_acc`` for each pair in PAIRS.
        """
        frames = self._window.counts[0]
        if frames < self.config.window and not (final and frames > 0):
            return None
        out = self._window.metrics()
        out["end_frame"] = int(self._overall.counts[0])
        self._window = _Scope(self.config.num_classes)
        return out

    def summary(self) -> dict[str, Any]:
        """Overall metrics, per-class student and teacher IoU, and ``per_domain`` with the same keys."""
        out = self._overall.metrics()
        for pair in ("student", "teacher"):
            iou = iou_per_class(self._overall.cm[PAIRS.index(pair)])  # (C,)
            out[f"{pair}_class_iou"] = [_finite(v) for v in iou]
        out["per_domain"] = {name: scope.metrics() for name, scope in self._domains.items()}
        return out

    def confusion(self, pair: str = "student", domain: str | None = None) -> np.ndarray:
        """A copy of one pair's confusion matrix, overall or for one domain.

        Shape:
            -> (C, C + 1) int64
        """
        if pair not in PAIRS:
            raise ValueError(f"pair must be one of {PAIRS}, got {pair!r}")
        if domain is not None and domain not in self._domains:
            raise ValueError(f"domain {domain!r} was never seen; known: {self.domains}")
        scope = self._overall if domain is None else self._domains[domain]
        return scope.cm[PAIRS.index(pair)].copy()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (safetensors-ready): config, overall, window and per-domain state."""
        cfg = self.config
        state = {"config": np.array([cfg.num_classes, cfg.ignore_index, cfg.window], np.int64)}
        for prefix, scope in [("overall", self._overall), ("window", self._window)] + [
            (f"domain/{name}", scope) for name, scope in self._domains.items()
        ]:
            state[f"{prefix}/cm"] = scope.cm.copy()
            state[f"{prefix}/counts"] = scope.counts.copy()
        for rank, name in enumerate(self._domains):
            state[f"domain/{name}/rank"] = np.array([rank], np.int64)  # first-seen order
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore from :meth:`state_dict` (same num_classes and ignore_index required)."""
        if "config" not in state:
            raise ValueError("state is missing 'config'")
        saved = np.asarray(state["config"]).tolist()
        cfg = self.config
        if saved[:2] != [cfg.num_classes, cfg.ignore_index]:
            raise ValueError(
                f"state config (num_classes, ignore_index) = {tuple(saved[:2])} does not match "
                f"{(cfg.num_classes, cfg.ignore_index)}"
            )
        prefixes = sorted({key[: -len("/cm")] for key in state if key.endswith("/cm")})
        for required in ("overall", "window"):
            if required not in prefixes:
                raise ValueError(f"state is missing '{required}/cm'")
        scopes: dict[str, _Scope] = {}
        for prefix in prefixes:
            scope = _Scope(cfg.num_classes)
            for key, target in ((f"{prefix}/cm", scope.cm), (f"{prefix}/counts", scope.counts)):
                if key not in state:
                    raise ValueError(f"state is missing '{key}'")
                value = np.asarray(state[key])
                if value.shape != target.shape:
                    raise ValueError(f"state '{key}' has shape {value.shape}, expected {target.shape}")
                target[...] = value
            scopes[prefix] = scope
        self._overall = scopes.pop("overall")
        self._window = scopes.pop("window")
        domains = {p[len("domain/"):]: s for p, s in scopes.items() if p.startswith("domain/")}
        rank = {name: int(np.asarray(state.get(f"domain/{name}/rank", [0])).ravel()[0]) for name in domains}
        self._domains = {name: domains[name] for name in sorted(domains, key=lambda n: (rank[n], n))}

    def merge(self, other: "StreamingEvaluator") -> None:
        """Add another evaluator's counts (overall, window and per domain) into this one."""
        if not isinstance(other, StreamingEvaluator):
            raise ValueError(f"other must be a StreamingEvaluator, got {type(other).__name__}")
        mine, theirs = self.config, other.config
        if (mine.num_classes, mine.ignore_index) != (theirs.num_classes, theirs.ignore_index):
            raise ValueError(
                f"other evaluator has (num_classes, ignore_index) = "
                f"{(theirs.num_classes, theirs.ignore_index)}, expected {(mine.num_classes, mine.ignore_index)}"
            )
        self._overall.add(other._overall.cm, other._overall.counts)
        self._window.add(other._window.cm, other._window.counts)
        for name, scope in other._domains.items():
            if name not in self._domains:
                self._domains[name] = _Scope(mine.num_classes)
            self._domains[name].add(scope.cm, scope.counts)

    def reset(self) -> None:
        """Forget everything (overall, window and per-domain counts)."""
        self._overall = _Scope(self.config.num_classes)
        self._window = _Scope(self.config.num_classes)
        self._domains = {}
        self._last_domain = None
