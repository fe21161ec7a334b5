"""KSWIN: a Kolmogorov-Smirnov windowed drift test, in River's shape (like learners.drift).

The detector keeps the last ``window_size`` values in a ring buffer. Once it is full, every
update compares the window's oldest ``stat_size`` values with its newest ``stat_size`` values
by the two-sample Kolmogorov-Smirnov statistic ``D = max_v |F_old(v) - F_new(v)|`` and flags a
drift when ``D`` exceeds the asymptotic critical value of level ``alpha`` for two samples of
``m = stat_size`` values, ``sqrt(-ln(alpha / 2) / m)`` (and River's floor ``D > 0.1``). After a
detection the window keeps only its newest ``stat_size`` values, so the next test waits until
it has refilled. (River's KSWIN draws its old sample at random from the older part of the
window; here it is the oldest ``stat_size`` values, so the test is deterministic.)

``update(x)``, ``drift_detected``, ``n_detections``, ``reset()``, ``state()`` /
``load_state()`` and ``update_many(xs)`` (the indices flagged) behave as in
:mod:`learners.drift`; the arithmetic is one ``@njit`` kernel.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 400), rng.normal(2.0, 1.0, 200)])
    >>> hits = KSWIN(KSWINConfig(alpha=0.001)).update_many(stream)
    >>> bool(400 <= hits[0] < 430), bool((hits < 400).sum() == 0)
    (True, True)
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numba import njit

from learners.drift import _check_value, _check_values, check_state

logger = logging.getLogger(__name__)

# int state slots
_KS_COUNT, _KS_POS, _KS_FLAG = range(3)


@dataclass(frozen=True)
class KSWINConfig:
    """Configuration of :class:`KSWIN` (defaults as in River)."""

    alpha: float = 0.005  # level of the KS test, in (0, 1); smaller = fewer alarms
    window_size: int = 100  # values in the sliding window
    stat_size: int = 30  # values in each of the two compared samples (oldest and newest)

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, (int, float)) and 0.0 < self.alpha < 1.0):
            raise ValueError(f"KSWINConfig.alpha must be in (0, 1), got {self.alpha!r}")
        if not isinstance(self.stat_size, int) or isinstance(self.stat_size, bool) or self.stat_size < 2:
            raise ValueError(f"KSWINConfig.stat_size must be an int >= 2, got {self.stat_size!r}")
        if not isinstance(self.window_size, int) or isinstance(self.window_size, bool) or self.window_size < 2 * self.stat_size:
            raise ValueError(f"KSWINConfig.window_size must be an int >= 2 * stat_size = {2 * self.stat_size}, "
                             f"got {self.window_size!r}")

    @property
    def critical(self) -> float:
        """The KS statistic above which the two samples differ at level ``alpha``."""
        return max(0.1, math.sqrt(-math.log(self.alpha / 2.0) / self.stat_size))


@njit(cache=True, nogil=True)
def _ks_sorted_copy(buf: np.ndarray, first: int, m: int, out: np.ndarray) -> None:
    """``m`` ring-buffer values from slot ``first`` on into ``out``, insertion-sorted."""
    size = buf.shape[0]
    for k in range(m):
        v = buf[(first + k) % size]
        j = k - 1
        while j >= 0 and out[j] > v:
            out[j + 1] = out[j]
            j -= 1
        out[j + 1] = v


@njit(cache=True, nogil=True)
def _ks_statistic_count(a: np.ndarray, b: np.ndarray) -> int:
    """``m * D`` for two sorted samples of ``m`` values: the largest gap of their counts."""
    m = a.shape[0]
    i = 0
    j = 0
    best = 0
    while i < m and j < m:
        v = min(a[i], b[j])
        while i < m and a[i] == v:
            i += 1
        while j < m and b[j] == v:
            j += 1
        gap = abs(i - j)
        if gap > best:
            best = gap
    return best


@njit(cache=True, nogil=True)
def _ks_step(buf: np.ndarray, ist: np.ndarray, old: np.ndarray, new: np.ndarray, x: float, m: int, critical: float) -> bool:
    """One KSWIN update of the ring ``buf`` (W,); True when a drift is flagged."""
    size = buf.shape[0]
    buf[ist[_KS_POS]] = x
    ist[_KS_POS] = (ist[_KS_POS] + 1) % size
    if ist[_KS_COUNT] < size:
        ist[_KS_COUNT] += 1
    detected = False
    if ist[_KS_COUNT] == size:
        pos = ist[_KS_POS]  # the oldest slot (the window is full)
        _ks_sorted_copy(buf, pos, m, old)
        _ks_sorted_copy(buf, (pos + size - m) % size, m, new)
        if _ks_statistic_count(old, new) / m > critical:
            detected = True
            ist[_KS_COUNT] = m  # keep the newest m values
    ist[_KS_FLAG] = 1 if detected else 0
    return detected


@njit(cache=True, nogil=True)
def _ks_run(buf: np.ndarray, ist: np.ndarray, old: np.ndarray, new: np.ndarray, xs: np.ndarray, m: int, critical: float) -> np.ndarray:
    """Feed ``xs`` (N,) through :func:`_ks_step`; returns the flagged indices (D,) int64."""
    hits = np.empty(xs.shape[0], np.int64)  # (N,)
    count = 0
    for i in range(xs.shape[0]):
        if _ks_step(buf, ist, old, new, xs[i], m, critical):
            hits[count] = i
            count += 1
    return hits[:count].copy()


class KSWIN:
    """Kolmogorov-Smirnov windowed drift test (module docstring).

    Example:
        >>> ks = KSWIN(KSWINConfig(alpha=0.05, window_size=20, stat_size=5))
        >>> flags = []
        >>> for x in [0.0, 0.1, 0.2, 0.3] * 5 + [5.0] * 10:
        ...     ks.update(x)
        ...     flags.append(ks.drift_detected)
        >>> flags.index(True), ks.n_detections
        (24, 1)
        >>> twin = KSWIN(ks.config)
        >>> twin.load_state(ks.state())
        >>> ks.update(1.0); twin.update(1.0); twin.state() == ks.state()
        True
    """

    def __init__(self, config: KSWINConfig = KSWINConfig()) -> None:
        if not isinstance(config, KSWINConfig):
            raise ValueError(f"config must be a KSWINConfig, got {type(config).__name__}")
        self.config = config
        self._args = (config.stat_size, float(config.critical))
        self.reset()

    def reset(self) -> None:
        """Empty the window and forget the flag and detection count."""
        self._buf = np.zeros(self.config.window_size, np.float64)  # (W,) ring buffer
        self._ist = np.zeros(3, np.int64)  # (3,) count, next slot, flag
        self._old = np.zeros(self.config.stat_size, np.float64)  # (m,) scratch: the oldest values, sorted
        self._new = np.zeros(self.config.stat_size, np.float64)  # (m,) scratch: the newest values, sorted
        self.n_detections = 0

    @property
    def drift_detected(self) -> bool:
        """True right after the update that flagged a change."""
        return bool(self._ist[_KS_FLAG])

    @property
    def width(self) -> int:
        """Values in the window."""
        return int(self._ist[_KS_COUNT])

    def state(self) -> dict[str, Any]:
        """A plain-JSON snapshot (config, ring buffer, counters) for :meth:`load_state`."""
        return {"config": asdict(self.config), "buffer": self._buf.tolist(), "ints": self._ist.tolist(),
                "n_detections": self.n_detections}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state` snapshot of a KSWIN with the same config."""
        check_state("KSWIN", self.config, state, ("buffer", "ints", "n_detections"))
        buf = np.asarray(state["buffer"], np.float64)  # (W,)
        ints = np.asarray(state["ints"], np.int64)  # (3,)
        if buf.shape != (self.config.window_size,) or ints.shape != (3,):
            raise ValueError(f"KSWIN.load_state: buffer must hold {self.config.window_size} values and ints 3, "
                             f"got shapes {buf.shape} and {ints.shape}")
        self._buf, self._ist = buf.copy(), ints.copy()
        self.n_detections = int(state["n_detections"])

    def update(self, x: float) -> None:
        """Feed one value."""
        if _ks_step(self._buf, self._ist, self._old, self._new, _check_value("x", x), *self._args):
            self.n_detections += 1
            logger.debug("kswin: drift after %d detections", self.n_detections)

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        """Feed a sequence; returns the indices into ``xs`` where a drift was flagged.

        Shape:
            xs (N,) float -> (D,) int64
        """
        values = _check_values("xs", xs)  # (N,)
        hits = _ks_run(self._buf, self._ist, self._old, self._new, values, *self._args)  # (D,)
        self.n_detections += int(hits.shape[0])
        return hits
