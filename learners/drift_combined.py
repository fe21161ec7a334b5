"""The project's own drift detectors and the registry that names every detector and signal.

:class:`StepCUSUM` (``"cusum"``) is a two-sided CUSUM on a *self-standardised* signal: an
exponentially weighted reference level ``mean`` and typical deviation ``scale`` (the mean
absolute deviation from it) follow the signal slowly, each value is scored as
``r = clip((x - mean) / scale, -clip, clip)``, and the sums ``g+ = max(0, g+ + r - k)``,
``g- = max(0, g- - r - k)`` flag a drift when one passes ``threshold``. Because the scale
is measured on the signal itself (frame-to-frame wander included, which the
independence-assuming tests of ADWIN, Page-Hinkley and KSWIN ignore), one threshold suits
signals of any unit and autocorrelation; the clip bounds the evidence a single odd frame can
add; the slowly moving reference lets a gradual change build up evidence at a constant rate
``slope / (alpha * scale)``. After a detection everything restarts (a ``warmup`` of values
rebuilds the reference on the new regime).

:class:`CombinedDetector` (``"combined"``) runs one StepCUSUM per signal (several signals at
once, e.g. the input statistics, the student's entropy and the teacher disagreement, which
arrives only on labelled frames: NaN means "no value this frame"), declares a drift when ``votes`` of them
have flagged within ``window`` values (1 vote: any of them; 2: a change that moves two signals
at once, which scene-to-scene wander in one signal rarely does), folds detections within ``cooldown`` values of the last one into it, and
restarts every member after a declared drift.

Both follow :mod:`learners.drift`'s contract (``update``, ``drift_detected``, ``update_many``,
``n_detections``, ``reset``, ``state`` / ``load_state``), with numba kernels.

:func:`make_detector` builds any detector by name (:data:`DETECTORS`), :func:`check_signals`
checks signal names (:data:`SIGNALS`); unknown names raise an error naming the setting.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> wander = np.convolve(rng.normal(0, 1, 3000), np.ones(10) / 10, mode="same")  # autocorrelated
    >>> stream = 5.0 + wander; stream[2000:] += 1.5
    >>> hits = StepCUSUM(StepCUSUMConfig(k=1.5, threshold=25.0)).update_many(stream)
    >>> [int(h) for h in hits]
    [2015]
    >>> make_detector("cusm")
    Traceback (most recent call last):
    ...
    ValueError: drift.detector: unknown detector 'cusm'; choose one of page_hinkley, adwin, kswin, cusum, combined, mcusum
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numba import njit

from learners.drift import _MODES, ADWIN, ADWINConfig, PageHinkley, PageHinkleyConfig, _check_value, _check_values, check_state
from learners.drift_vector import VectorCUSUM, VectorCUSUMConfig
from learners.kswin import KSWIN, KSWINConfig

logger = logging.getLogger(__name__)

SCALAR_SIGNALS: tuple[str, ...] = ("input", "entropy", "confidence", "disagreement")  # one number per frame
VECTOR_SIGNALS: tuple[str, ...] = ("stats",)  # the 21 frame statistics (learners.input_stats.frame_statistics)
SIGNALS: tuple[str, ...] = SCALAR_SIGNALS + VECTOR_SIGNALS
DETECTORS: tuple[str, ...] = ("page_hinkley", "adwin", "kswin", "cusum", "combined", "mcusum")

# state slots of the CUSUM kernel
_CU_N, _CU_MEAN, _CU_SCALE, _CU_UP, _CU_DOWN, _CU_FLAG = range(6)
_CU_SIZE = 6
# parameter slots (one row per member in the combined kernel)
_P_ALPHA, _P_K, _P_H, _P_WARMUP, _P_CLIP, _P_MIN_SCALE, _P_MODE = range(7)
_P_SIZE = 7


def _positive(owner: str, name: str, value: Any, upper: float | None = None) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ValueError(f"{owner}.{name} must be a finite number > 0, got {value!r}")
    if upper is not None and value > upper:
        raise ValueError(f"{owner}.{name} must be <= {upper}, got {value!r}")


@dataclass(frozen=True)
class StepCUSUMConfig:
    """Configuration of :class:`StepCUSUM` (units of the signal's own scale; module docstring)."""

    alpha: float = 0.02  # rate of the reference level and scale (time constant 1 / alpha values)
    k: float = 1.0  # slack: standardised deviation tolerated per value
    threshold: float = 25.0  # evidence (sum of standardised deviations beyond k) that flags a drift
    warmup: int = 30  # values that build the reference after a (re)start; no test meanwhile
    clip: float = 5.0  # a value adds at most clip - k of evidence
    min_scale: float = 1e-6  # floor of the scale (a constant signal)
    mode: str = "both"  # "up": only rises, "down": only falls, or "both"

    def __post_init__(self) -> None:
        _positive("StepCUSUMConfig", "alpha", self.alpha, upper=1.0)
        _positive("StepCUSUMConfig", "threshold", self.threshold)
        _positive("StepCUSUMConfig", "clip", self.clip)
        _positive("StepCUSUMConfig", "min_scale", self.min_scale)
        if not (isinstance(self.k, (int, float)) and math.isfinite(self.k) and 0 <= self.k < self.clip):
            raise ValueError(f"StepCUSUMConfig.k must be a number in [0, clip={self.clip}), got {self.k!r}")
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 2:
            raise ValueError(f"StepCUSUMConfig.warmup must be an int >= 2, got {self.warmup!r}")
        if self.mode not in _MODES:
            raise ValueError(f"StepCUSUMConfig.mode must be one of {tuple(_MODES)}, got {self.mode!r}")

    def row(self) -> np.ndarray:
        """The kernel's parameter row (7,) float64."""
        return np.array([self.alpha, self.k, self.threshold, self.warmup, self.clip, self.min_scale, _MODES[self.mode]],
                        np.float64)


@njit(cache=True, nogil=True)
def _cu_step(state: np.ndarray, p: np.ndarray, x: float) -> bool:
    """One StepCUSUM update of ``state`` (6,) with parameters ``p`` (7,); True on a drift."""
    if state[_CU_FLAG] != 0.0:  # the previous update flagged: start over on the new regime
        for j in range(_CU_SIZE):
            state[j] = 0.0
    n = state[_CU_N] + 1.0
    state[_CU_N] = n
    mean = state[_CU_MEAN]
    if n <= p[_P_WARMUP]:
        d = x - mean
        state[_CU_MEAN] = mean + d / n
        state[_CU_SCALE] += (abs(d) - state[_CU_SCALE]) / n
        return False
    scale = max(state[_CU_SCALE], p[_P_MIN_SCALE])
    bound = p[_P_CLIP]
    r = min(max((x - mean) / scale, -bound), bound)
    up = max(0.0, state[_CU_UP] + r - p[_P_K])
    down = max(0.0, state[_CU_DOWN] - r - p[_P_K])
    state[_CU_UP] = up
    state[_CU_DOWN] = down
    mode = int(p[_P_MODE])
    detected = ((mode & 1) != 0 and up > p[_P_H]) or ((mode & 2) != 0 and down > p[_P_H])
    d = r * scale  # the winsorised deviation moves the reference
    state[_CU_MEAN] = mean + p[_P_ALPHA] * d
    state[_CU_SCALE] += p[_P_ALPHA] * (abs(d) - state[_CU_SCALE])
    state[_CU_FLAG] = 1.0 if detected else 0.0
    return detected


@njit(cache=True, nogil=True)
def _cu_run(state: np.ndarray, p: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Feed ``xs`` (N,) through :func:`_cu_step`; returns the flagged indices (D,) int64."""
    hits = np.empty(xs.shape[0], np.int64)  # (N,)
    count = 0
    for i in range(xs.shape[0]):
        if _cu_step(state, p, xs[i]):
            hits[count] = i
            count += 1
    return hits[:count].copy()


class StepCUSUM:
    """Two-sided CUSUM on a self-standardised signal (module docstring).

    Example:
        >>> cu = StepCUSUM(StepCUSUMConfig(warmup=5, threshold=4.0, mode="up"))
        >>> flags = []
        >>> for x in [1.0, 1.2, 0.8, 1.1, 0.9] * 4 + [3.0] * 5:
        ...     cu.update(x)
        ...     flags.append(cu.drift_detected)
        >>> flags.index(True), cu.n_detections
        (21, 1)
        >>> twin = StepCUSUM(cu.config)
        >>> twin.load_state(cu.state())
        >>> cu.update(2.0); twin.update(2.0); twin.state() == cu.state()
        True
    """

    def __init__(self, config: StepCUSUMConfig = StepCUSUMConfig()) -> None:
        if not isinstance(config, StepCUSUMConfig):
            raise ValueError(f"config must be a StepCUSUMConfig, got {type(config).__name__}")
        self.config = config
        self._params = config.row()  # (7,)
        self.reset()

    def reset(self) -> None:
        """Forget the reference, the sums, the flag and the detection count."""
        self._state = np.zeros(_CU_SIZE, np.float64)  # (6,)
        self.n_detections = 0

    @property
    def drift_detected(self) -> bool:
        """True right after the update that flagged a change."""
        return bool(self._state[_CU_FLAG] != 0.0)

    @property
    def estimation(self) -> float:
        """The reference level."""
        return float(self._state[_CU_MEAN])

    def state(self) -> dict[str, Any]:
        """A plain-JSON snapshot for :meth:`load_state`."""
        return {"config": asdict(self.config), "kernel": self._state.tolist(), "n_detections": self.n_detections}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state` snapshot of a StepCUSUM with the same config."""
        check_state("StepCUSUM", self.config, state, ("kernel", "n_detections"))
        kernel = np.asarray(state["kernel"], np.float64)  # (6,)
        if kernel.shape != (_CU_SIZE,):
            raise ValueError(f"StepCUSUM.load_state: kernel must hold {_CU_SIZE} values, got shape {kernel.shape}")
        self._state = kernel.copy()
        self.n_detections = int(state["n_detections"])

    def update(self, x: float) -> None:
        """Feed one value."""
        if _cu_step(self._state, self._params, _check_value("x", x)):
            self.n_detections += 1
            logger.debug("cusum: drift (%d so far)", self.n_detections)

    def update_many(self, xs: np.ndarray) -> np.ndarray:
        """Feed a sequence; returns the indices into ``xs`` where a drift was flagged.

        Shape:
            xs (N,) float -> (D,) int64
        """
        hits = _cu_run(self._state, self._params, _check_values("xs", xs))  # (D,)
        self.n_detections += int(hits.shape[0])
        return hits


# --------------------------------------------------------------------------- combination


def check_signals(signals: Any, setting: str = "drift.signals", detector: str | None = None) -> tuple[str, ...]:
    """The signal names as a tuple, or a ValueError naming ``setting`` and the valid names.

    With ``detector`` (a name of :data:`DETECTORS`) the signals must also suit it: ``mcusum``
    watches the vector ``stats`` alone, ``combined`` one or more of the scalar signals, every
    other detector exactly one scalar signal.

    Example:
        >>> check_signals("input+entropy")
        ('input', 'entropy')
        >>> check_signals(["input", "entropie"])
        Traceback (most recent call last):
        ...
        ValueError: drift.signals: unknown signal 'entropie'; choose from input, entropy, confidence, disagreement, stats
        >>> check_signals("input+entropy", detector="cusum")
        Traceback (most recent call last):
        ...
        ValueError: drift.signals: detector 'cusum' watches one scalar signal (input, entropy, confidence, disagreement), got input+entropy
    """
    names = tuple(signals.split("+")) if isinstance(signals, str) else tuple(signals) if isinstance(signals, (list, tuple)) else None
    if not names:
        raise ValueError(f"{setting}: expected one or more signal names (a list or 'a+b'), got {signals!r}")
    for name in names:
        if name not in SIGNALS:
            raise ValueError(f"{setting}: unknown signal {name!r}; choose from {', '.join(SIGNALS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{setting}: signals repeat in {signals!r}")
    if detector is None:
        return names
    listed = "+".join(names)
    if detector == "mcusum":
        if names != VECTOR_SIGNALS:
            raise ValueError(f"{setting}: detector 'mcusum' watches the frame-statistics vector: signals must be 'stats', got {listed}")
    elif detector == "combined":
        if any(name not in SCALAR_SIGNALS for name in names):
            raise ValueError(f"{setting}: detector 'combined' combines scalar signals ({', '.join(SCALAR_SIGNALS)}), got {listed}")
    elif len(names) != 1 or names[0] not in SCALAR_SIGNALS:
        raise ValueError(f"{setting}: detector {detector!r} watches one scalar signal ({', '.join(SCALAR_SIGNALS)}), got {listed}")
    return names


@dataclass(frozen=True)
class CombinedConfig:
    """Configuration of :class:`CombinedDetector`: one StepCUSUM per signal, and the cooldown."""

    signals: tuple[str, ...] = ("input", "entropy")
    members: tuple[StepCUSUMConfig, ...] = field(default_factory=lambda: (StepCUSUMConfig(), StepCUSUMConfig()))
    cooldown: int = 100  # values after a declared drift during which further detections fold into it
    votes: int = 1  # members that must have flagged within `window` values (1: any, an OR)
    window: int = 30  # values within which the votes must fall

    def __post_init__(self) -> None:
        object.__setattr__(self, "signals", check_signals(self.signals, "CombinedConfig.signals", "combined"))
        members = tuple(self.members)
        object.__setattr__(self, "members", members)
        if len(members) != len(self.signals) or not all(isinstance(m, StepCUSUMConfig) for m in members):
            raise ValueError(f"CombinedConfig.members must be one StepCUSUMConfig per signal ({len(self.signals)}), "
                             f"got {self.members!r}")
        if not isinstance(self.cooldown, int) or isinstance(self.cooldown, bool) or self.cooldown < 0:
            raise ValueError(f"CombinedConfig.cooldown must be an int >= 0, got {self.cooldown!r}")
        if not isinstance(self.votes, int) or isinstance(self.votes, bool) or not 1 <= self.votes <= len(self.signals):
            raise ValueError(f"CombinedConfig.votes must be an int in [1, {len(self.signals)}] (the signals), got {self.votes!r}")
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 0:
            raise ValueError(f"CombinedConfig.window must be an int >= 0, got {self.window!r}")


# int state of the combined kernel (then one "last flagged" tick per member)
_CB_TICK, _CB_LAST, _CB_FLAG = range(3)
_NEVER = -(10**12)


@njit(cache=True, nogil=True)
def _cb_step(states: np.ndarray, params: np.ndarray, ist: np.ndarray, xs: np.ndarray, cooldown: int, votes: int,
             window: int) -> bool:
    """One update of every member with a value (NaN = none); True when a drift is declared:
    ``votes`` members have flagged within the last ``window`` values, outside the cooldown.
    ``ist`` (3 + S,) holds the tick, the last declared tick, the flag and each member's last flag."""
    tick = ist[_CB_TICK]
    ist[_CB_TICK] = tick + 1
    fired = False
    for s in range(states.shape[0]):
        x = xs[s]
        if x == x:  # not NaN
            if _cu_step(states[s], params[s], x):
                ist[3 + s] = tick
                fired = True
    declared = False
    if fired and tick - ist[_CB_LAST] > cooldown:
        recent = 0
        for s in range(states.shape[0]):
            if tick - ist[3 + s] <= window:
                recent += 1
        declared = recent >= votes
    if declared:
        ist[_CB_LAST] = tick
        for s in range(states.shape[0]):  # every member restarts on the new regime
            ist[3 + s] = _NEVER
            for j in range(_CU_SIZE):
                states[s, j] = 0.0
    ist[_CB_FLAG] = 1 if declared else 0
    return declared


@njit(cache=True, nogil=True)
def _cb_checked_step(states: np.ndarray, params: np.ndarray, ist: np.ndarray, xs: np.ndarray, cooldown: int, votes: int,
                     window: int) -> int:
    """:func:`_cb_step` after checking ``xs`` (S,) for infinities: -1 (nothing done) if it has one,
    else 1 when a drift is declared and 0 otherwise (one call from python, for ``update``)."""
    for s in range(xs.shape[0]):
        if math.isinf(xs[s]):
            return -1
    return 1 if _cb_step(states, params, ist, xs, cooldown, votes, window) else 0


@njit(cache=True, nogil=True)
def _cb_run(states: np.ndarray, params: np.ndarray, ist: np.ndarray, xs: np.ndarray, cooldown: int, votes: int,
            window: int) -> np.ndarray:
    """Feed rows of ``xs`` (N, S) through :func:`_cb_step`; returns the declared indices (D,) int64."""
    hits = np.empty(xs.shape[0], np.int64)  # (N,)
    count = 0
    for i in range(xs.shape[0]):
        if _cb_step(states, params, ist, xs[i], cooldown, votes, window):
            hits[count] = i
            count += 1
    return hits[:count].copy()


class CombinedDetector:
    """Several signals, one StepCUSUM each, OR-ed with a cooldown (module docstring).

    ``update(values)`` takes one value per signal (in ``config.signals`` order; NaN for a
    signal without a value this frame, e.g. disagreement between teacher calls).

    Example:
        >>> import numpy as np
        >>> cfg = CombinedConfig(signals=("input", "disagreement"),
        ...                      members=(StepCUSUMConfig(warmup=5, threshold=4.0),) * 2, cooldown=10)
        >>> det = CombinedDetector(cfg)
        >>> rows = np.array([[1.0, np.nan], [1.1, 0.2], [0.9, np.nan], [1.0, 0.3]] * 5 + [[1.0, 0.9], [1.0, np.nan]] * 5)
        >>> [int(h) for h in det.update_many(rows)]  # the second high disagreement value
        [22]
        >>> det.update([1.0, float("nan")]); det.drift_detected
        False
    """

    def __init__(self, config: CombinedConfig = CombinedConfig()) -> None:
        if not isinstance(config, CombinedConfig):
            raise ValueError(f"config must be a CombinedConfig, got {type(config).__name__}")
        self.config = config
        self._params = np.stack([m.row() for m in config.members])  # (S, 7)
        self.reset()

    def reset(self) -> None:
        """Restart every member and forget the cooldown, flag and detection count."""
        self._states = np.zeros((len(self.config.signals), _CU_SIZE), np.float64)  # (S, 6)
        self._ist = np.full(3 + len(self.config.signals), _NEVER, np.int64)  # (3 + S,) tick, last declared, flag, last flags
        self._ist[_CB_TICK] = 0
        self._ist[_CB_FLAG] = 0
        self._args = (self.config.cooldown, self.config.votes, self.config.window)
        self.n_detections = 0

    @property
    def drift_detected(self) -> bool:
        """True right after the update that declared a drift."""
        return bool(self._ist[_CB_FLAG])

    def state(self) -> dict[str, Any]:
        """A plain-JSON snapshot for :meth:`load_state`."""
        return {"config": asdict(self.config), "kernel": self._states.tolist(), "ints": self._ist.tolist(),
                "n_detections": self.n_detections}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state` snapshot of a CombinedDetector with the same config."""
        check_state("CombinedDetector", self.config, state, ("kernel", "ints", "n_detections"))
        kernel = np.asarray(state["kernel"], np.float64)  # (S, 6)
        ints = np.asarray(state["ints"], np.int64)  # (3 + S,)
        if kernel.shape != self._states.shape or ints.shape != self._ist.shape:
            raise ValueError(f"CombinedDetector.load_state: kernel must have shape {self._states.shape} and ints {self._ist.shape}, "
                             f"got {kernel.shape} and {ints.shape}")
        self._states, self._ist = kernel.copy(), ints.copy()
        self.n_detections = int(state["n_detections"])

    def _rows(self, name: str, xs: Any) -> np.ndarray:
        try:
            rows = np.asarray(xs, np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold real numbers (NaN for a missing value)") from None
        width = len(self.config.signals)
        if rows.ndim == 1 and name == "values":
            rows = rows[None]
        if rows.ndim != 2 or rows.shape[1] != width:
            raise ValueError(f"{name} must have {width} values per frame ({', '.join(self.config.signals)}), got shape {rows.shape}")
        if np.isinf(rows).any():
            raise ValueError(f"{name} must be finite or NaN, got an infinity")
        return rows

    def update(self, values: Any) -> None:
        """Feed one frame's values (one per signal, NaN where a signal has none).

        Shape:
            values (S,) float
        """
        if type(values) is np.ndarray and values.dtype == np.float64 and values.shape == self._states.shape[:1]:
            row = values  # (S,) the fast path: no conversion
        else:
            row = self._rows("values", values)[0]  # (S,)
        declared = _cb_checked_step(self._states, self._params, self._ist, row, *self._args)
        if declared < 0:
            raise ValueError("values must be finite or NaN, got an infinity")
        if declared:
            self.n_detections += 1
            logger.debug("combined: drift at value %d", int(self._ist[_CB_TICK]) - 1)

    def update_many(self, xs: Any) -> np.ndarray:
        """Feed frames; returns the indices into ``xs`` where a drift was declared.

        Shape:
            xs (N, S) float -> (D,) int64
        """
        hits = _cb_run(self._states, self._params, self._ist, self._rows("xs", xs), *self._args)  # (D,)
        self.n_detections += int(hits.shape[0])
        return hits


_CONFIGS = {"page_hinkley": PageHinkleyConfig, "adwin": ADWINConfig, "kswin": KSWINConfig, "cusum": StepCUSUMConfig,
            "combined": CombinedConfig, "mcusum": VectorCUSUMConfig}
_CLASSES = {"page_hinkley": PageHinkley, "adwin": ADWIN, "kswin": KSWIN, "cusum": StepCUSUM, "combined": CombinedDetector,
            "mcusum": VectorCUSUM}


def check_detector(name: Any, setting: str = "drift.detector") -> str:
    """``name`` if it names a detector (:data:`DETECTORS`), else a ValueError naming ``setting``.

    Example:
        >>> check_detector("mcusum")
        'mcusum'
    """
    if not isinstance(name, str) or name not in _CLASSES:
        raise ValueError(f"{setting}: unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return name


def make_detector(name: str, config: Any = None, setting: str = "drift.detector") -> Any:
    """A detector by name (:data:`DETECTORS`) with ``config`` (its config dataclass, a dict of
    its fields, or None for the defaults); errors name ``setting``.

    Example:
        >>> make_detector("kswin", {"alpha": 0.01}).config.alpha
        0.01
        >>> make_detector("adwin", {"delt": 0.1})
        Traceback (most recent call last):
        ...
        ValueError: drift.detector=adwin: unknown setting 'delt'; ADWINConfig has delta, clock, max_buckets, min_window_length, grace_period, mode
    """
    check_detector(name, setting)
    kind = _CONFIGS[name]
    if config is None:
        config = kind()
    elif isinstance(config, dict):
        known = tuple(kind.__dataclass_fields__)
        for key in config:
            if key not in known:
                raise ValueError(f"{setting}={name}: unknown setting {key!r}; {kind.__name__} has {', '.join(known)}")
        try:
            config = kind(**config)
        except ValueError as error:
            raise ValueError(f"{setting}={name}: {error}") from None
    elif not isinstance(config, kind):
        raise ValueError(f"{setting}={name}: config must be a {kind.__name__} or a dict, got {type(config).__name__}")
    return _CLASSES[name](config)
