"""Concept-drift detectors in River's shape: :class:`PageHinkley` and :class:`ADWIN`.

Both follow the same contract: ``update(x)`` with one float, then read ``drift_detected``
(read-only; True only right after the update that detected a change, back to False on the
next update), ``n_detections`` and ``reset()``. ``state()`` is a plain-JSON snapshot and
``load_state(state)`` restores it into a detector of the same config, which then continues
exactly as the original would. ``update_many(xs)`` feeds a whole array through
the same numba kernel and returns the indices (into ``xs``) where a drift was flagged, so
``update_many`` and a loop of ``update`` give identical results.

The arithmetic lives in ``@njit`` kernels on small preallocated float64 / int64 arrays, so
a detector costs well under a microsecond per value inside ``update_many``.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> stream = np.concatenate([rng.normal(0.2, 0.05, 500), rng.normal(0.6, 0.05, 500)])
    >>> ph = PageHinkley(PageHinkleyConfig(delta=0.01, threshold=5.0, mode="up"))
    >>> hits = ph.update_many(stream)
    >>> bool(500 <= hits[0] < 520)
    True
    >>> ad = ADWIN(ADWINConfig())
    >>> hits = ad.update_many(stream)
    >>> bool(500 <= hits[0] < 600)
    True
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numba import njit

logger = logging.getLogger(__name__)

_MODES = {"up": 1, "down": 2, "both": 3}  # bit 1 = report increases, bit 2 = decreases


def _check_values(name: str, xs: np.ndarray) -> np.ndarray:
    try:
        xs = np.asarray(xs, dtype=np.float64)  # (N,)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D sequence of real numbers") from None
    if xs.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {xs.shape}")
    if not np.isfinite(xs).all():
        bad = int(np.flatnonzero(~np.isfinite(xs))[0])
        raise ValueError(f"{name} must be finite, got {xs[bad]} at index {bad}")
    return xs


def _check_value(name: str, x: float) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {x!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_state(owner: str, config: Any, state: Any, keys: tuple[str, ...]) -> None:
    """Raise ValueError unless ``state`` is a dict with ``keys`` saved under the same config.

    Shared by the detectors' ``load_state`` (a restored detector must continue exactly as the
    one that saved it, which a different config would not).
    """
    if not isinstance(state, dict):
        raise ValueError(f"{owner}.load_state: state must be a dict from {owner}.state(), got {type(state).__name__}")
    missing = [key for key in ("config", *keys) if key not in state]
    if missing:
        raise ValueError(f"{owner}.load_state: state lacks {', '.join(missing)}")
    if state["config"] != asdict(config):
        raise ValueError(f"{owner}.load_state: state saved with config {state['config']}, this detector has {asdict(config)}")


# --------------------------------------------------------------------------- Page-Hinkley

# state slots of the Page-Hinkley kernel
_PH_N, _PH_MEAN, _PH_UP, _PH_UP_MIN, _PH_DOWN, _PH_DOWN_MAX, _PH_FLAG = range(7)
_PH_SIZE = 7


@dataclass(frozen=True)
class PageHinkleyConfig:
    """Configuration of :class:`PageHinkley` (defaults as in River)."""

    min_instances: int = 30  # values seen since the last reset before a drift may be flagged
    delta: float = 0.005  # tolerated drift of the mean per value (the test's slack)
    threshold: float = 50.0  # lambda: flag when the cumulative deviation exceeds this
    # forgetting factor of the cumulative sums, in (0, 1]. With alpha < 1 the sums settle near
    # -/+ delta / (1 - alpha) on a long stationary stream and then fluctuate with std about
    # sigma / sqrt(1 - alpha**2), so a small threshold raises false alarms; use alpha = 1.0
    # with a small threshold on long streams.
    alpha: float = 1.0 - 1e-4
    mode: str = "both"  # "up": only increases of the mean, "down": only decreases, or "both"

    def __post_init__(self) -> None:
        if not isinstance(self.min_instances, int) or self.min_instances < 1:
            raise ValueError(f"PageHinkleyConfig.min_instances must be an int >= 1, got {self.min_instances!r}")
        if not (isinstance(self.delta, (int, float)) and math.isfinite(self.delta) and self.delta >= 0):
            raise ValueError(f"PageHinkleyConfig.delta must be a finite number >= 0, got {self.delta!r}")
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"PageHinkleyConfig.threshold must be a finite number > 0, got {self.threshold!r}")
        if not (isinstance(self.alpha, (int, float)) and 0.0 < self.alpha <= 1.0):
            raise ValueError(f"PageHinkleyConfig.alpha must be in (0, 1], got {self.alpha!r}")
        if self.mode not in _MODES:
            raise ValueError(f"PageHinkleyConfig.mode must be one of {tuple(_MODES)}, got {self.mode!r}")


@njit(cache=True, nogil=True)
def _ph_step(state: np.ndarray, x: float, min_instances: int, delta: float, threshold: float, alpha: float, mode: int) -> bool:
    """One Page-Hinkley update of ``state`` (7,) float64; True when a drift is flagged."""
    if state[_PH_FLAG] != 0.0:  # the previous update flagged: start over on the new regime
        for k in range(_PH_SIZE):
            state[k] = 0.0
    n = state[_PH_N] + 1.0
    mean = state[_PH_MEAN] + (x - state[_PH_MEAN]) / n
    deviation = x - mean
    up = alpha * state[_PH_UP] + deviation - delta
    down = alpha * state[_PH_DOWN] + deviation + delta
    up_min = min(state[_PH_UP_MIN], up)
    down_max = max(state[_PH_DOWN_MAX], down)
    state[_PH_N] = n
    state[_PH_MEAN] = mean
    state[_PH_UP] = up
    state[_PH_DOWN] = down
    state[_PH_UP_MIN] = up_min
    state[_PH_DOWN_MAX] = down_max
    detected = False
    if n >= min_instances:
        if (mode & 1) != 0 and up - up_min > threshold:
            detected = True
        if (mode & 2) != 0 and down_max - down > threshold:
            detected = True
    state[_PH_FLAG] = 1.0 if detected else 0.0
    return detected


@njit(cache=True, nogil=True)
def _ph_run(state: np.ndarray, xs: np.ndarray, min_instances: int, delta: float, threshold: float, alpha: float, mode: int) -> np.ndarray:
    """Feed ``xs`` (N,) through :func:`_ph_step`; returns the flagged indices (D,) int64."""
    hits = np.empty(xs.shape[0], np.int64)  # (N,)
    count = 0
    for i in range(xs.shape[0]):
        if _ph_step(state, xs[i], min_instances, delta, threshold, alpha, mode):
            hits[count] = i
            count += 1
    return hits[:count].copy()


class PageHinkley:
    """Page-Hinkley test for a change in the mean of a stream.

    Keeps the running mean since the last reset and the cumulative deviations
    ``m_t = alpha * m_{t-1} + (x_t - mean_t) -/+ delta``; flags an increase when
    ``m_t - min(m)`` exceeds ``threshold`` (a decrease symmetrically). After a detection all
    statistics restart on the next value.

    Example:
        >>> ph = PageHinkley(PageHinkleyConfig(min_instances=5, delta=0.0, threshold=3.0, mode="up"))
        >>> flags = []
        >>> for x in [0.0] * 10 + [1.0] * 10:
        ...     ph.update(x)
        ...     flags.append(ph.drift_detected)
        >>> flags.index(True), ph.n_detections
        (13, 1)
        >>> twin = PageHinkley(ph.config)
        >>> twin.load_state(ph.state())  # a checkpoint: the twin goes on exactly as ph does
        >>> ph.update(5.0); twin.update(5.0); twin.state() == ph.state()
        True
    """

    def __init__(self, config: PageHinkleyConfig = PageHinkleyConfig()) -> None:
        if not isinstance(config, PageHinkleyConfig):
            raise ValueError(f"config must be a PageHinkleyConfig, got {type(config).__name__}")
        self.config = config
        self._args = (config.min_instances, float(config.delta), float(config.threshold), float(config.alpha), _MODES[config.mode])
        self.reset()

    def reset(self) -> None:
        """Forget everything (statistics, flag and detection count)."""
        self._state = np.zeros(_PH_SIZE, np.float64)  # (7,)
        self.n_detections = 0
        self.n_seen = 0

    @property
    def drift_detected(self) -> bool:
        """True right after the update that flagged a change."""
        return bool(self._state[_PH_FLAG] != 0.0)

    @property
    def estimation(self) -> float:
        """Mean of the values since the last reset (0.0 before any)."""
        return float(self._state[_PH_MEAN])

    def state(self) -> dict[str, Any]:
        """A plain-JSON snapshot (config, kernel statistics, counters) for :meth:`load_state`."""
        return {
            "config": asdict(self.config), "kernel": self._state.tolist(),
            "n_detections": self.n_detections, "n_seen": self.n_seen,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state` snapshot of a PageHinkley with the same config."""
        check_state("PageHinkley", self.config, state, ("kernel", "n_detections", "n_seen"))
        kernel = np.asarray(state["kernel"], np.float64)  # (7,)
        if kernel.shape != (_PH_SIZE,):
            raise ValueError(f"PageHinkley.load_state: kernel must hold {_PH_SIZE} values, got shape {kernel.shape}")
        self._state = kernel.copy()
        self.n_detections = int(state["n_detections"])
        self.n_seen = int(state["n_seen"])

    def update(self, x: float) -> None:
        """Feed one value."""
        value = _check_value("x", x)
        if _ph_step(self._state, value, *self._args):
            self.n_detections += 1
            logger.debug("page-hinkley: drift at value %d", self.n_seen)
        self.n_seen += 1

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        """Feed a sequence; returns the indices into ``xs`` where a drift was flagged.

        Shape:
            xs (N,) float -> (D,) int64
        """
        values = _check_values("xs", xs)  # (N,)
        hits = _ph_run(self._state, values, *self._args)  # (D,)
        self.n_detections += int(hits.shape[0])
        self.n_seen += int(values.shape[0])
        return hits


# --------------------------------------------------------------------------- ADWIN

_ROWS = 64  # exponential-histogram rows: row r holds buckets of 2**r values
# int state slots
_AD_WIDTH, _AD_ROWS_USED, _AD_TICK, _AD_FLAG = range(4)
# float state slots
_AD_TOTAL, _AD_M2 = range(2)


@dataclass(frozen=True)
class ADWINConfig:
    """Configuration of :class:`ADWIN` (defaults as in River / MOA)."""

    delta: float = 0.002  # confidence of the cut test, in (0, 1); smaller = fewer alarms
    clock: int = 32  # test for a cut every `clock` updates
    max_buckets: int = 5  # buckets per exponential-histogram row before two merge
    min_window_length: int = 5  # both sub-windows need at least this many values
    grace_period: int = 10  # no test before the window holds this many values
    mode: str = "both"  # report cuts where the newer mean is higher ("up"), lower or either

    def __post_init__(self) -> None:
        if not (isinstance(self.delta, (int, float)) and 0.0 < self.delta < 1.0):
            raise ValueError(f"ADWINConfig.delta must be in (0, 1), got {self.delta!r}")
        if not isinstance(self.clock, int) or self.clock < 1:
            raise ValueError(f"ADWINConfig.clock must be an int >= 1, got {self.clock!r}")
        if not isinstance(self.max_buckets, int) or self.max_buckets < 2:
            raise ValueError(f"ADWINConfig.max_buckets must be an int >= 2, got {self.max_buckets!r}")
        if not isinstance(self.min_window_length, int) or self.min_window_length < 1:
            raise ValueError(f"ADWINConfig.min_window_length must be an int >= 1, got {self.min_window_length!r}")
        if not isinstance(self.grace_period, int) or self.grace_period < 1:
            raise ValueError(f"ADWINConfig.grace_period must be an int >= 1, got {self.grace_period!r}")
        if self.mode not in _MODES:
            raise ValueError(f"ADWINConfig.mode must be one of {tuple(_MODES)}, got {self.mode!r}")


@njit(cache=True, nogil=True)
def _ad_append(totals: np.ndarray, m2s: np.ndarray, counts: np.ndarray, ist: np.ndarray, row: int, total: float, m2: float) -> None:
    """Append a bucket as the newest of ``row``."""
    k = counts[row]
    totals[row, k] = total
    m2s[row, k] = m2
    counts[row] = k + 1
    if row + 1 > ist[_AD_ROWS_USED]:
        ist[_AD_ROWS_USED] = row + 1


@njit(cache=True, nogil=True)
def _ad_pop_oldest(totals: np.ndarray, m2s: np.ndarray, counts: np.ndarray, row: int, n: int) -> None:
    """Remove the ``n`` oldest buckets of ``row`` (shift the rest down)."""
    k = counts[row]
    for j in range(k - n):
        totals[row, j] = totals[row, j + n]
        m2s[row, j] = m2s[row, j + n]
    counts[row] = k - n


@njit(cache=True, nogil=True)
def _ad_insert(totals: np.ndarray, m2s: np.ndarray, counts: np.ndarray, ist: np.ndarray, fst: np.ndarray, x: float, max_buckets: int) -> None:
    """Add one value: window sums, a new bucket in row 0, then merge overfull rows upwards."""
    width = ist[_AD_WIDTH]
    if width > 0:
        d = x - fst[_AD_TOTAL] / width
        fst[_AD_M2] += width * d * d / (width + 1)
    fst[_AD_TOTAL] += x
    ist[_AD_WIDTH] = width + 1
    _ad_append(totals, m2s, counts, ist, 0, x, 0.0)
    row = 0
    while counts[row] > max_buckets and row + 1 < totals.shape[0]:
        size = 2.0**row
        d = totals[row, 0] / size - totals[row, 1] / size
        merged_total = totals[row, 0] + totals[row, 1]
        merged_m2 = m2s[row, 0] + m2s[row, 1] + size * d * d / 2.0
        _ad_pop_oldest(totals, m2s, counts, row, 2)
        _ad_append(totals, m2s, counts, ist, row + 1, merged_total, merged_m2)
        row += 1


@njit(cache=True, nogil=True)
def _ad_delete_oldest(totals: np.ndarray, m2s: np.ndarray, counts: np.ndarray, ist: np.ndarray, fst: np.ndarray) -> None:
    """Drop the oldest bucket (first bucket of the highest used row) from the window."""
    row = ist[_AD_ROWS_USED] - 1
    size = 2**row
    bucket_total = totals[row, 0]
    width = ist[_AD_WIDTH]
    rest = width - size
    if rest > 0:
        d = bucket_total / size - (fst[_AD_TOTAL] - bucket_total) / rest
        fst[_AD_M2] -= m2s[row, 0] + size * rest * d * d / width
        if fst[_AD_M2] < 0.0:
            fst[_AD_M2] = 0.0
        fst[_AD_TOTAL] -= bucket_total
    else:
        fst[_AD_M2] = 0.0
        fst[_AD_TOTAL] = 0.0
    ist[_AD_WIDTH] = rest
    _ad_pop_oldest(totals, m2s, counts, row, 1)
    while ist[_AD_ROWS_USED] > 0 and counts[ist[_AD_ROWS_USED] - 1] == 0:
        ist[_AD_ROWS_USED] -= 1


@njit(cache=True, nogil=True)
def _ad_cut(n0: int, n1: int, diff: float, width: int, variance: float, delta: float) -> bool:
    """Hoeffding/Bernstein-style cut test of Bifet & Gavalda (2007) with delta' = delta / ln(n)."""
    log_term = math.log(2.0 * math.log(width) / delta)
    m_recip = 1.0 / n0 + 1.0 / n1
    epsilon = math.sqrt(2.0 * m_recip * variance * log_term) + 2.0 / 3.0 * m_recip * log_term
    return abs(diff) > epsilon


@njit(cache=True, nogil=True)
def _ad_detect(totals: np.ndarray, m2s: np.ndarray, counts: np.ndarray, ist: np.ndarray, fst: np.ndarray, delta: float, min_len: int) -> int:
    """Scan every split (old | new) at bucket boundaries; while some split cuts, drop the
    oldest bucket and rescan. Returns bit 1 if a cut had a higher newer mean, bit 2 if lower."""
    directions = 0
    again = True
    while again:
        again = False
        width = ist[_AD_WIDTH]
        variance = fst[_AD_M2] / width if width > 0 else 0.0
        n0 = 0
        n1 = width
        u0 = 0.0
        u1 = fst[_AD_TOTAL]
        row = ist[_AD_ROWS_USED] - 1
        stop = False
        while row >= 0 and not stop:
            size = 2**row
            for k in range(counts[row]):
                n0 += size
                n1 -= size
                u0 += totals[row, k]
                u1 -= totals[row, k]
                if n1 <= 0:
                    stop = True
                    break
                if n0 >= min_len and n1 >= min_len:
                    diff = u1 / n1 - u0 / n0
                    if _ad_cut(n0, n1, diff, width, variance, delta):
                        directions |= 1 if diff > 0 else 2
                        _ad_delete_oldest(totals, m2s, counts, ist, fst)
                        again = ist[_AD_WIDTH] > 0
                        stop = True
                        break
            row -= 1
    return directions


@njit(cache=True, nogil=True)
def _ad_step(
    totals: np.ndarray, m2s: np.ndarray, counts: np.ndarray, ist: np.ndarray, fst: np.ndarray, x: float,
    delta: float, clock: int, max_buckets: int, min_len: int, grace: int, mode: int,
) -> bool:
    """One ADWIN update; True when a cut in the reported direction(s) happened."""
    _ad_insert(totals, m2s, counts, ist, fst, x, max_buckets)
    ist[_AD_TICK] += 1
    detected = False
    if ist[_AD_TICK] % clock == 0 and ist[_AD_WIDTH] >= grace:
        directions = _ad_detect(totals, m2s, counts, ist, fst, delta, min_len)
        detected = (directions & mode) != 0
    ist[_AD_FLAG] = 1 if detected else 0
    return detected


@njit(cache=True, nogil=True)
def _ad_run(
    totals: np.ndarray, m2s: np.ndarray, counts: np.ndarray, ist: np.ndarray, fst: np.ndarray, xs: np.ndarray,
    delta: float, clock: int, max_buckets: int, min_len: int, grace: int, mode: int,
) -> np.ndarray:
    """Feed ``xs`` (N,) through :func:`_ad_step`; returns the flagged indices (D,) int64."""
    hits = np.empty(xs.shape[0], np.int64)  # (N,)
    count = 0
    for i in range(xs.shape[0]):
        if _ad_step(totals, m2s, counts, ist, fst, xs[i], delta, clock, max_buckets, min_len, grace, mode):
            hits[count] = i
            count += 1
    return hits[:count].copy()


class ADWIN:
    """ADaptive WINdowing (Bifet & Gavalda, 2007) over an exponential histogram.

    The window keeps the most recent values compressed into buckets (row r holds at most
    ``max_buckets`` buckets of 2**r values, each with its sum and sum of squared deviations).
    Every ``clock`` updates every split of the window into an older and a newer part at
    bucket boundaries is tested; while a split's means differ by more than
    ``eps = sqrt(2 / m * var * ln(2 ln n / delta)) + 2 / (3 m) * ln(2 ln n / delta)``
    (``1 / m = 1 / n0 + 1 / n1``, ``var`` the window's variance) the oldest bucket is dropped.
    Cuts always shrink the window; ``mode`` only chooses which cuts set ``drift_detected``
    ("up": the newer part has the higher mean, e.g. a rising disagreement rate).

    Example:
        >>> ad = ADWIN(ADWINConfig(clock=1))
        >>> hits = ad.update_many([0.0] * 200 + [1.0] * 50)
        >>> int(hits[0]), ad.width, ad.n_detections
        (208, 58, 10)
    """

    def __init__(self, config: ADWINConfig = ADWINConfig()) -> None:
        if not isinstance(config, ADWINConfig):
            raise ValueError(f"config must be an ADWINConfig, got {type(config).__name__}")
        self.config = config
        self._args = (
            float(config.delta), config.clock, config.max_buckets, config.min_window_length,
            config.grace_period, _MODES[config.mode],
        )
        self.reset()

    def reset(self) -> None:
        """Empty the window and forget the flag and detection count."""
        cols = self.config.max_buckets + 1
        self._totals = np.zeros((_ROWS, cols), np.float64)  # (rows, buckets) bucket sums
        self._m2s = np.zeros((_ROWS, cols), np.float64)  # (rows, buckets) squared deviations
        self._counts = np.zeros(_ROWS, np.int64)  # (rows,) buckets in use per row
        self._ist = np.zeros(4, np.int64)  # (4,) width, rows used, tick, flag
        self._fst = np.zeros(2, np.float64)  # (2,) window sum, window squared deviations
        self.n_detections = 0

    @property
    def drift_detected(self) -> bool:
        """True right after the update that flagged a change."""
        return bool(self._ist[_AD_FLAG])

    @property
    def width(self) -> int:
        """Number of values in the window."""
        return int(self._ist[_AD_WIDTH])

    @property
    def estimation(self) -> float:
        """Mean of the window (0.0 when empty)."""
        width = self.width
        return float(self._fst[_AD_TOTAL] / width) if width else 0.0

    @property
    def variance(self) -> float:
        """Population variance of the window (0.0 when empty)."""
        width = self.width
        return float(self._fst[_AD_M2] / width) if width else 0.0

    @property
    def n_buckets(self) -> int:
        """Buckets in use (grows like max_buckets * log2(width))."""
        return int(self._counts.sum())

    def state(self) -> dict[str, Any]:
        """A plain-JSON snapshot (config, the live buckets of each row, counters) for :meth:`load_state`."""
        rows = int(self._ist[_AD_ROWS_USED])
        return {
            "config": asdict(self.config),
            "totals": [self._totals[r, : self._counts[r]].tolist() for r in range(rows)],
            "m2s": [self._m2s[r, : self._counts[r]].tolist() for r in range(rows)],
            "ints": self._ist.tolist(), "floats": self._fst.tolist(), "n_detections": self.n_detections,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state` snapshot of an ADWIN with the same config."""
        check_state("ADWIN", self.config, state, ("totals", "m2s", "ints", "floats", "n_detections"))
        ints = np.asarray(state["ints"], np.int64)  # (4,)
        floats = np.asarray(state["floats"], np.float64)  # (2,)
        totals, m2s = state["totals"], state["m2s"]
        cols = self.config.max_buckets + 1
        if ints.shape != (4,) or floats.shape != (2,):
            raise ValueError(f"ADWIN.load_state: ints must hold 4 values and floats 2, got {ints.shape} and {floats.shape}")
        if len(totals) != ints[_AD_ROWS_USED] or len(m2s) != len(totals) or len(totals) > _ROWS:
            raise ValueError(f"ADWIN.load_state: {len(totals)} rows of totals and {len(m2s)} of m2s for {ints[_AD_ROWS_USED]} rows used")
        self.reset()
        for r, (row_totals, row_m2s) in enumerate(zip(totals, m2s)):
            if len(row_totals) != len(row_m2s) or len(row_totals) > cols:
                raise ValueError(f"ADWIN.load_state: row {r} holds {len(row_totals)} totals and {len(row_m2s)} m2s (at most {cols})")
            self._totals[r, : len(row_totals)] = row_totals
            self._m2s[r, : len(row_m2s)] = row_m2s
            self._counts[r] = len(row_totals)
        self._ist = ints.copy()
        self._fst = floats.copy()
        self.n_detections = int(state["n_detections"])

    def update(self, x: float) -> None:
        """Feed one value."""
        value = _check_value("x", x)
        if _ad_step(self._totals, self._m2s, self._counts, self._ist, self._fst, value, *self._args):
            self.n_detections += 1
            logger.debug("adwin: drift, window now %d values", self.width)

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        """Feed a sequence; returns the indices into ``xs`` where a drift was flagged.

        Shape:
            xs (N,) float -> (D,) int64
        """
        values = _check_values("xs", xs)  # (N,)
        hits = _ad_run(self._totals, self._m2s, self._counts, self._ist, self._fst, values, *self._args)  # (D,)
        self.n_detections += int(hits.shape[0])
        return hits
