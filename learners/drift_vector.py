"""A multivariate drift detector on the frame-statistics vector: :class:`VectorCUSUM` (``"mcusum"``).

The single ``input`` novelty score (:class:`~learners.input_stats.InputStatsTracker`) folds the
21 frame statistics into one number, so a scene change inside one domain (a row of tall
buildings hiding the sky, an intersection's grey road) moves it as much as a change of weather
or town does. :class:`VectorCUSUM` keeps the vector:

1. each feature ``j`` is *self-standardised* like :class:`~learners.drift_combined.StepCUSUM`:
   an exponentially weighted reference level ``mean_j`` and typical deviation ``scale_j``
   (mean absolute deviation from it) follow it slowly (rate ``alpha``), and each value is scored
   ``r_j = clip((x_j - mean_j) / scale_j, -clip, clip)``;
2. each feature runs a two-sided CUSUM, ``up_j = max(0, up_j + r_j - k)``,
   ``down_j = max(0, down_j - r_j - k)``, with evidence ``g_j = max(up_j, down_j)``;
3. the features fall into ``groups`` contiguous groups (the frame statistics' three image
   bands: sky, buildings, road; seven statistics each) with evidence
   ``G_b = sqrt(sum_{j in b} g_j^2)``;
4. the statistic is the sum of the group evidences *without the* ``drop_top`` *largest*; a
   drift is flagged when it passes ``threshold``.

Step 4 is the point: weather (fog, night, rain, snow, dusk) and town changes move every band of
the picture, while most scene changes inside a domain move one band (the sky, or the road), so
requiring evidence outside the most-moved band removes most of those false alarms at almost no
cost in delay (``bench/drift.py --streams``). The per-feature clip bounds what a single odd
frame adds; after a detection everything restarts and ``warmup`` values rebuild the reference.

The state and the parameters live in one float64 array, so :meth:`VectorCUSUM.update` is one
numba call (infinities checked inside the kernel) and costs well under a microsecond.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> frames = 0.5 + 0.01 * rng.normal(size=(600, 6))  # (600, 6): 3 groups of 2 features
    >>> frames[400:, :] += 0.15           # a change of every group at frame 400: a drift
    >>> frames[200:260, :2] += 0.3        # one group only (a scene change): ignored
    >>> det = VectorCUSUM(VectorCUSUMConfig(dim=6, groups=3, threshold=20.0))
    >>> [int(h) for h in det.update_many(frames)]
    [406]
    >>> VectorCUSUMConfig(dim=21, groups=4)
    Traceback (most recent call last):
    ...
    ValueError: VectorCUSUMConfig.groups must divide dim=21 into equal groups, got 4
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numba import njit

from learners.drift import check_state
from learners.input_stats import NUM_FEATURES

logger = logging.getLogger(__name__)

# header of the kernel's array: parameters, then counters; then mean, scale, up, down (dim each)
# and one scratch slot per group
_V_ALPHA, _V_K, _V_H, _V_WARMUP, _V_CLIP, _V_MIN_SCALE, _V_GROUPS, _V_DROP, _V_N, _V_FLAG = range(10)
_V_HEAD = 10


@dataclass(frozen=True)
class VectorCUSUMConfig:
    """Configuration of :class:`VectorCUSUM` (units of each feature's own scale; module docstring).

    The defaults were chosen on the ``DRIFT_STREAM_TUNING`` worlds only
    (``bench/drift.py --streams``)."""

    dim: int = NUM_FEATURES  # features per value (the 21 frame statistics)
    groups: int = 3  # contiguous equal groups (the frame statistics' three image bands)
    drop_top: int = 1  # the largest group evidences left out of the statistic (0: all groups count)
    alpha: float = 0.01  # rate of each feature's reference level and scale (time constant 1 / alpha)
    k: float = 2.0  # slack: standardised deviation tolerated per value and feature
    threshold: float = 25.0  # the statistic that flags a drift: bench/drift.py --streams' rule (best tuning F1 at
    # <= 0.5 false alarms per 10k) on DRIFT_STREAM_TUNING worlds 30100-30109 (20 gave 1.0 there)
    warmup: int = 30  # values that build the reference after a (re)start; no test meanwhile
    clip: float = 4.0  # a feature adds at most clip - k of evidence per value
    min_scale: float = 0.03  # floor of each feature's scale: the frame statistics lie in [0, 1], and
    # a wander of a few hundredths is a scene's, not a new domain's

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> int:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"VectorCUSUMConfig.{name} must be an int >= {low}, got {value!r}")
            return value

        dim, groups = integer("dim", 1), integer("groups", 1)
        if dim % groups:
            raise ValueError(f"VectorCUSUMConfig.groups must divide dim={dim} into equal groups, got {groups}")
        if integer("drop_top", 0) >= groups:
            raise ValueError(f"VectorCUSUMConfig.drop_top must be < groups={groups}, got {self.drop_top}")
        integer("warmup", 2)
        for name in ("alpha", "threshold", "clip", "min_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
                raise ValueError(f"VectorCUSUMConfig.{name} must be a finite number > 0, got {value!r}")
        if self.alpha > 1.0:
            raise ValueError(f"VectorCUSUMConfig.alpha must be <= 1, got {self.alpha!r}")
        if not (isinstance(self.k, (int, float)) and math.isfinite(self.k) and 0 <= self.k < self.clip):
            raise ValueError(f"VectorCUSUMConfig.k must be a number in [0, clip={self.clip}), got {self.k!r}")

    def initial(self) -> np.ndarray:
        """A fresh kernel array (10 + 4 dim + groups,) float64: parameters set, state zero."""
        out = np.zeros(_V_HEAD + 4 * self.dim + self.groups, np.float64)
        out[:_V_N] = (self.alpha, self.k, self.threshold, self.warmup, self.clip, self.min_scale, self.groups, self.drop_top)
        return out


@njit(cache=True, nogil=True)
def _vc_step(s: np.ndarray, x: np.ndarray) -> int:
    """One update of the kernel array ``s`` with the vector ``x`` (dim,): -1 (nothing done) if
    ``x`` holds a NaN or an infinity, 1 when a drift is flagged, else 0."""
    dim = x.shape[0]
    for j in range(dim):
        if not math.isfinite(x[j]):
            return -1
    mean0 = _V_HEAD
    scale0 = mean0 + dim
    up0 = scale0 + dim
    down0 = up0 + dim
    group0 = down0 + dim
    groups = int(s[_V_GROUPS])
    if s[_V_FLAG] != 0.0:  # the previous update flagged: start over on the new regime
        for j in range(_V_N, group0 + groups):
            s[j] = 0.0
    n = s[_V_N] + 1.0
    s[_V_N] = n
    if n <= s[_V_WARMUP]:  # plain running mean, and mean absolute deviation from it
        for j in range(dim):
            d = x[j] - s[mean0 + j]
            s[mean0 + j] += d / n
            if n > 1.0:
                s[scale0 + j] += (abs(d) - s[scale0 + j]) / (n - 1.0)
        return 0
    alpha = s[_V_ALPHA]
    k = s[_V_K]
    bound = s[_V_CLIP]
    floor = s[_V_MIN_SCALE]
    size = dim // groups
    for b in range(groups):
        s[group0 + b] = 0.0
    for j in range(dim):
        scale = max(s[scale0 + j], floor)
        r = min(max((x[j] - s[mean0 + j]) / scale, -bound), bound)
        up = max(0.0, s[up0 + j] + r - k)
        down = max(0.0, s[down0 + j] - r - k)
        s[up0 + j] = up
        s[down0 + j] = down
        g = max(up, down)
        s[group0 + j // size] += g * g
        d = r * scale  # the winsorised deviation moves the reference
        s[mean0 + j] += alpha * d
        s[scale0 + j] += alpha * (abs(d) - s[scale0 + j])
    total = 0.0
    for b in range(groups):
        s[group0 + b] = math.sqrt(s[group0 + b])
        total += s[group0 + b]
    for _ in range(int(s[_V_DROP])):  # leave out the largest group evidences
        top = 0
        for b in range(1, groups):
            if s[group0 + b] > s[group0 + top]:
                top = b
        total -= s[group0 + top]
        s[group0 + top] = -1.0
    flagged = total > s[_V_H]
    s[_V_FLAG] = 1.0 if flagged else 0.0
    return 1 if flagged else 0


@njit(cache=True, nogil=True)
def _vc_run(s: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Feed the rows of ``xs`` (N, dim) through :func:`_vc_step` (checked finite by the caller);
    returns the flagged indices (D,) int64."""
    hits = np.empty(xs.shape[0], np.int64)  # (N,)
    count = 0
    for i in range(xs.shape[0]):
        if _vc_step(s, xs[i]) == 1:
            hits[count] = i
            count += 1
    return hits[:count].copy()


class VectorCUSUM:
    """Per-feature CUSUMs on a self-standardised vector, judged by their breadth across groups
    (module docstring). Follows :mod:`learners.drift`'s contract: ``update``, ``drift_detected``,
    ``update_many``, ``n_detections``, ``reset``, ``state`` / ``load_state``.

    Example:
        >>> import numpy as np
        >>> det = VectorCUSUM(VectorCUSUMConfig(dim=3, groups=3, warmup=5, threshold=4.0, min_scale=0.01))
        >>> flags = []
        >>> for i in range(12):
        ...     det.update(np.array([1.0, 2.0, 3.0]) + (0.01 if i % 2 else -0.01) + (0.5 if i >= 8 else 0.0))
        ...     flags.append(det.drift_detected)
        >>> flags.index(True), det.n_detections
        (9, 1)
        >>> det.update([1.0, 2.0])
        Traceback (most recent call last):
        ...
        ValueError: x must be a vector of 3 finite numbers, got shape (2,)
    """

    def __init__(self, config: VectorCUSUMConfig = VectorCUSUMConfig()) -> None:
        if not isinstance(config, VectorCUSUMConfig):
            raise ValueError(f"config must be a VectorCUSUMConfig, got {type(config).__name__}")
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget the references, the sums, the flag and the detection count."""
        self._state = self.config.initial()  # (10 + 4 dim + groups,)
        self._shape = (self.config.dim,)
        self.n_detections = 0

    @property
    def drift_detected(self) -> bool:
        """True right after the update that flagged a change."""
        return bool(self._state[_V_FLAG] != 0.0)

    @property
    def statistic_groups(self) -> np.ndarray:
        """Each group's evidence after the last update (-1 for the groups left out). Shape: (groups,)"""
        return self._state[_V_HEAD + 4 * self.config.dim:].copy()

    def state(self) -> dict[str, Any]:
        """A plain-JSON snapshot for :meth:`load_state`."""
        return {"config": asdict(self.config), "kernel": self._state.tolist(), "n_detections": self.n_detections}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state` snapshot of a VectorCUSUM with the same config."""
        check_state("VectorCUSUM", self.config, state, ("kernel", "n_detections"))
        kernel = np.asarray(state["kernel"], np.float64)
        if kernel.shape != self._state.shape:
            raise ValueError(f"VectorCUSUM.load_state: kernel must have shape {self._state.shape}, got {kernel.shape}")
        self._state = kernel.copy()
        self.n_detections = int(state["n_detections"])

    def update(self, x: Any) -> None:
        """Feed one vector (e.g. one frame's :func:`~learners.input_stats.frame_statistics`).

        Shape:
            x (dim,) float
        """
        if not (type(x) is np.ndarray and x.dtype == np.float64 and x.shape == self._shape):
            x = self._vector(x)  # (dim,) the slow path: convert and check
        flagged = _vc_step(self._state, x)
        if flagged < 0:
            raise ValueError(f"x must be a vector of {self.config.dim} finite numbers, got a NaN or an infinity")
        if flagged:
            self.n_detections += 1
            logger.debug("mcusum: drift (%d so far)", self.n_detections)

    def _vector(self, x: Any) -> np.ndarray:
        try:
            vector = np.asarray(x, np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"x must be a vector of {self.config.dim} finite numbers") from None
        if vector.shape != self._shape:
            raise ValueError(f"x must be a vector of {self.config.dim} finite numbers, got shape {vector.shape}")
        return np.ascontiguousarray(vector)

    def update_many(self, xs: Any) -> np.ndarray:
        """Feed rows; returns the indices into ``xs`` where a drift was flagged (the same as a
        loop of :meth:`update`).

        Shape:
            xs (N, dim) float -> (D,) int64
        """
        try:
            rows = np.ascontiguousarray(xs, np.float64)  # (N, dim)
        except (TypeError, ValueError):
            raise ValueError(f"xs must be (N, {self.config.dim}) real numbers") from None
        if rows.ndim != 2 or rows.shape[1] != self.config.dim:
            raise ValueError(f"xs must be (N, {self.config.dim}) real numbers, got shape {rows.shape}")
        if not np.isfinite(rows).all():
            bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
            raise ValueError(f"xs must be finite, got a NaN or an infinity in row {bad}")
        hits = _vc_run(self._state, rows)  # (D,)
        self.n_detections += int(hits.shape[0])
        return hits
