"""The teacher scheduler: how often the student asks the teacher for labels.

Three policies (``mode``), all within the same pipeline and all deterministic (no randomness:
the same stream gives the same teacher calls in every runner):

``agreement``
    The rate steers towards an absolute agreement level: it rises when the smoothed
    student-teacher agreement is below ``target_agreement - tolerance`` and decays above
    ``target_agreement + tolerance``. A stream on which the student can never reach the target
    (a real 1 Hz log tops out near 0.83) keeps the rate at ``max_rate`` for good.
``gain``
    The rate follows what a teacher call still buys: the *learning gain* of a labelled frame,
    the student's agreement with the teacher's labels right after learning from them minus its
    prequential agreement before (:meth:`TeacherScheduler.on_learned`). Measured on one frame,
    before and after, so the scene's own difficulty cancels out; what is left is what the
    student did not yet know. The smoothed gain above ``gain_target + gain_tolerance`` (new
    content, a drift, a student still improving) raises the rate, below
    ``gain_target - gain_tolerance`` (nothing left to learn, or a student at its capacity,
    whatever its absolute agreement) lowers it. The rate settles where the marginal call buys
    ``gain_target`` of agreement: asking more often makes each call buy less.
``jitnet``
    JITNet's policy (Mullapudi et al., "Online Model Distillation for Efficient Video
    Inference", ICCV 2019): a teacher frame every ``stride`` frames, the stride doubled (up to
    ``max_stride``) when the student's agreement with the teacher frame's labels, after the
    learning updates on it, reaches ``jitnet_threshold``, halved (down to ``min_stride``)
    otherwise. The learner takes up to ``max_updates`` updates on each teacher frame and
    stops as soon as its agreement reaches the threshold (:attr:`TeacherScheduler.stop_at`).

Rate modes pick frames by an accumulator (the rate is added to a credit every frame; a frame is
asked when the credit reaches one); ``jitnet`` counts frames since its last teacher frame.

Example:
    >>> s = TeacherScheduler(SchedulerConfig(initial_rate=0.25))
    >>> [s.should_ask() for _ in range(8)]
    [True, False, False, False, True, False, False, False]
    >>> _ = s.on_drift(); s.rate
    0.5
    >>> g = TeacherScheduler(SchedulerConfig(mode="gain", initial_rate=0.2))
    >>> _ = g.on_agreement(0.6); round(g.on_learned(0.9), 3)  # a call that bought 0.3 of agreement
    0.3
    >>> j = TeacherScheduler(SchedulerConfig(mode="jitnet", min_stride=2, max_stride=8))
    >>> [j.should_ask() for _ in range(5)], j.on_learned(0.95), j.stride
    ([True, False, True, False, True], 0.25, 4)
"""
from __future__ import annotations

from dataclasses import dataclass

SCHEDULER_MODES = ("agreement", "gain", "jitnet")


@dataclass(frozen=True)
class SchedulerConfig:
    mode: str = "agreement"  # agreement | gain | jitnet (module docstring)
    min_rate: float = 0.12  # never ask less often than this (tuned on the sim tour of tuning world 30000:
    # 0.05 / 0.10 / 0.12 gave student/teacher on the teacher's frames 0.811 / 0.844 / 0.851 at rates 0.069 / 0.114 / 0.131)
    max_rate: float = 0.5  # never more often than this
    initial_rate: float = 0.12
    target_agreement: float = 0.9  # agreement: pixel agreement the rate steers towards
    tolerance: float = 0.03  # agreement: dead band around the target
    up: float = 1.5  # rate multiplier when a call buys more than wanted (agreement below the band, gain above it)
    down: float = 0.85  # rate multiplier when a call buys less (agreement above the band, gain below it)
    smoothing: float = 0.5  # EWMA weight of the newest agreement (and gain) sample
    gain_target: float = 0.04  # gain: the agreement a call should buy (after learning minus before)
    gain_tolerance: float = 0.01  # gain: dead band around gain_target
    min_stride: int = 8  # jitnet: frames between teacher frames, at least (JITNet's 8)
    max_stride: int = 64  # jitnet: at most (JITNet's 64)
    jitnet_threshold: float = 0.9  # jitnet: agreement that stops the updates and doubles the stride
    max_updates: int = 8  # jitnet: learning updates on one teacher frame, at most (JITNet's 8)

    def __post_init__(self) -> None:
        if self.mode not in SCHEDULER_MODES:
            raise ValueError(f"mode: unknown scheduler mode {self.mode!r} (choose {', '.join(SCHEDULER_MODES)})")
        if not 0.0 < self.min_rate <= self.initial_rate <= self.max_rate <= 1.0:
            raise ValueError(
                "min_rate, initial_rate and max_rate need 0 < min_rate <= initial_rate <= max_rate <= 1, got "
                f"{self.min_rate}, {self.initial_rate}, {self.max_rate}"
            )
        if self.up < 1.0:
            raise ValueError(f"up must be >= 1, got {self.up}")
        if not 0.0 < self.down <= 1.0:
            raise ValueError(f"down must be in (0, 1], got {self.down}")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")
        if self.gain_tolerance < 0:
            raise ValueError(f"gain_tolerance must be >= 0, got {self.gain_tolerance}")
        if not -1.0 < self.gain_target < 1.0:
            raise ValueError(f"gain_target must be in (-1, 1) (an agreement difference), got {self.gain_target}")
        if isinstance(self.min_stride, bool) or not isinstance(self.min_stride, int) or self.min_stride < 1:
            raise ValueError(f"min_stride must be an int >= 1 (frames), got {self.min_stride!r}")
        if isinstance(self.max_stride, bool) or not isinstance(self.max_stride, int) or self.max_stride < 1:
            raise ValueError(f"max_stride must be an int >= 1 (frames), got {self.max_stride!r}")
        if self.min_stride > self.max_stride:
            raise ValueError(f"min_stride must be <= max_stride, got {self.min_stride} > {self.max_stride}")
        if not 0.0 < self.jitnet_threshold <= 1.0:
            raise ValueError(f"jitnet_threshold must be in (0, 1], got {self.jitnet_threshold}")
        if isinstance(self.max_updates, bool) or not isinstance(self.max_updates, int) or self.max_updates < 1:
            raise ValueError(f"max_updates must be an int >= 1, got {self.max_updates!r}")


class TeacherScheduler:
    """Decides, frame by frame, whether to ask the teacher (see module docstring).

    The learner calls :meth:`should_ask` once per frame, :meth:`on_agreement` with the
    prequential agreement of each teacher frame (before learning from it), and, when
    :attr:`wants_after` is true, :meth:`on_learned` with the agreement right after learning.
    """

    def __init__(self, config: SchedulerConfig):
        self.config = config
        self.rate = config.initial_rate
        self.credit = 1.0  # the first frame is always labelled
        self.agreement: float | None = None  # smoothed prequential agreement (None after a drift)
        self.before: float | None = None  # the newest prequential agreement (gain: awaiting on_learned)
        self.gain: float | None = None  # gain: smoothed learning gain per call (None after a drift)
        self.stride = config.min_stride  # jitnet: frames between teacher frames
        self.since = config.min_stride  # jitnet: frames since the last teacher frame (the first is asked)
        self.asked = 0
        self.seen = 0
        if config.mode == "jitnet":
            self.rate = 1.0 / self.stride

    @property
    def wants_after(self) -> bool:
        """Whether the learner must measure the agreement after learning (:meth:`on_learned`)."""
        return self.config.mode in ("gain", "jitnet")

    @property
    def stop_at(self) -> float | None:
        """jitnet: the agreement at which the learner stops its updates on a teacher frame
        (``max_updates`` at most); None for the other modes (the learner's own step count)."""
        return self.config.jitnet_threshold if self.config.mode == "jitnet" else None

    def should_ask(self) -> bool:
        """Call once per frame, in order."""
        self.seen += 1
        if self.config.mode == "jitnet":
            self.since += 1
            if self.since >= self.stride:
                self.since = 0
                self.asked += 1
                return True
            return False
        if self.credit >= 1.0:
            self.credit -= 1.0
            self.credit += self.rate
            self.asked += 1
            return True
        self.credit += self.rate
        return False

    def _clip(self, rate: float) -> float:
        return min(self.config.max_rate, max(self.config.min_rate, rate))

    def _smooth(self, old: float | None, new: float) -> float:
        return new if old is None else self.config.smoothing * new + (1 - self.config.smoothing) * old

    def on_agreement(self, agreement: float) -> float:
        """Feed the prequential agreement of a teacher-labelled frame; returns the rate."""
        c = self.config
        self.agreement = self._smooth(self.agreement, agreement)
        self.before = agreement
        if c.mode == "agreement":
            if self.agreement < c.target_agreement - c.tolerance:
                self.rate = self._clip(self.rate * c.up)
            elif self.agreement > c.target_agreement + c.tolerance:
                self.rate = self._clip(self.rate * c.down)
        return self.rate

    def on_learned(self, after: float) -> float:
        """Feed the agreement on the same teacher frame after the student learned from it
        (gain: the call's learning gain is ``after`` minus the agreement given to
        :meth:`on_agreement`; jitnet: ``after`` sets the stride); returns the rate."""
        c = self.config
        if c.mode == "jitnet":
            self.stride = min(c.max_stride, self.stride * 2) if after >= c.jitnet_threshold else max(c.min_stride, self.stride // 2)
            self.rate = 1.0 / self.stride
        elif c.mode == "gain" and self.before is not None:
            self.gain = self._smooth(self.gain, after - self.before)
            self.before = None
            if self.gain > c.gain_target + c.gain_tolerance:
                self.rate = self._clip(self.rate * c.up)
            elif self.gain < c.gain_target - c.gain_tolerance:
                self.rate = self._clip(self.rate * c.down)
        return self.rate

    @property
    def trailing(self) -> bool:
        """Whether the student trails the teacher: no agreement measured since the last drift,
        or (agreement) the smoothed agreement is below the target's dead band, (gain) the
        smoothed learning gain is above its dead band, (jitnet) the stride is at its minimum."""
        c = self.config
        if self.agreement is None:
            return True
        if c.mode == "gain":
            return self.gain is not None and self.gain > c.gain_target + c.gain_tolerance
        if c.mode == "jitnet":
            return self.stride == c.min_stride
        return self.agreement < c.target_agreement - c.tolerance

    def on_drift(self) -> float:
        """A drift was detected: ask at the highest rate (jitnet: the shortest stride) until
        the measure recovers."""
        if self.config.mode == "jitnet":
            self.stride = self.config.min_stride
            self.since = max(self.since, self.stride - 1)  # the next frame is a teacher frame
            self.rate = 1.0 / self.stride
        else:
            self.rate = self.config.max_rate
            self.credit = max(self.credit, 1.0)
        self.agreement = None
        self.gain = None
        self.before = None
        return self.rate

    def state(self) -> dict[str, float]:
        return {"rate": self.rate, "credit": self.credit, "agreement": -1.0 if self.agreement is None else self.agreement,
                "asked": self.asked, "seen": self.seen, "gain": self.gain, "before": self.before,
                "stride": self.stride, "since": self.since}

    def load_state(self, state: dict[str, float]) -> None:
        self.rate = float(state["rate"])
        self.credit = float(state["credit"])
        self.agreement = None if state["agreement"] < 0 else float(state["agreement"])
        self.asked = int(state["asked"])
        self.seen = int(state["seen"])
        gain, before = state.get("gain"), state.get("before")  # absent in checkpoints older than the modes
        self.gain = None if gain is None else float(gain)
        self.before = None if before is None else float(before)
        self.stride = int(state.get("stride", self.config.min_stride))
        self.since = int(state.get("since", self.config.min_stride))
