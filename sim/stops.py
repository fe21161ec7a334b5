"""Stops of the ego, as at red lights: when it brakes, and how long it then stands still.

A :class:`StopPlan` is drawn from the world seed: braking begins about every ``every``
seconds (each gap drawn in [0.75, 1.25] x ``every``, and never sooner than two seconds
after the last stop ended); the ego then brakes to a standstill (the world's usual
deceleration) and *rests* for ``seconds``, its camera pose frozen, while the rest of the
world (traffic, pedestrians, rain) goes on. The same seed always gives the same stops.

Example:
    >>> plan = StopPlan(every=10.0, seconds=3.0, seed=1)
    >>> braking_at = next(t / 10 for t in range(400) if plan.stopping(t / 10))
    >>> 7.5 <= braking_at <= 12.5
    True
    >>> plan.came_to_rest(braking_at + 2.0); plan.resting(braking_at + 4.9), plan.resting(braking_at + 5.0)
    (True, False)
    >>> StopPlan(every=10.0, seconds=3.0, seed=1).next_start == StopPlan(every=10.0, seconds=3.0, seed=1).next_start
    True
"""
from __future__ import annotations

import numpy as np

STOP_STREAM = 0x5709  # mixed into the world seed: the stops draw from their own stream
MIN_DRIVE = 2.0  # seconds the ego drives, at least, between the end of a rest and the next braking
EPS = 1e-6  # seconds: a clock summed from fixed steps drifts by rounding; a rest of 2 s is 20 steps of 0.1 s


class StopPlan:
    """The seeded plan of the ego's stops (module docstring); times are world seconds."""

    def __init__(self, every: float, seconds: float, seed: int) -> None:
        if not 0.0 < seconds < every:
            raise ValueError(f"StopPlan needs 0 < seconds < every, got seconds={seconds!r}, every={every!r}")
        self.every = float(every)
        self.seconds = float(seconds)
        self._rng = np.random.default_rng(np.random.SeedSequence([int(seed), STOP_STREAM]))
        self.started = self._gap()  # when the current (or next) stop's braking began
        self.next_start = self.started
        self.rest_until: float | None = None  # the end of the rest under way, None while driving or braking
        self.stops = 0  # rests begun so far

    def _gap(self) -> float:
        return self.every * float(self._rng.uniform(0.75, 1.25))

    def stopping(self, now: float) -> bool:
        """Whether the ego must brake or stand still at ``now``; a rest that is over ends here,
        and the next stop is drawn."""
        if self.rest_until is not None and now >= self.rest_until - EPS:
            self.next_start = max(self.started + self._gap(), self.rest_until + MIN_DRIVE)
            self.started = self.next_start
            self.rest_until = None
        return self.rest_until is not None or now >= self.next_start

    def came_to_rest(self, now: float) -> None:
        """The ego's speed reached zero while stopping at ``now``: the rest runs ``seconds`` from here."""
        if self.rest_until is None:
            self.rest_until = now + self.seconds
            self.stops += 1

    def resting(self, now: float) -> bool:
        """Whether the ego stands still at ``now`` (a rest began and has not run out)."""
        return self.rest_until is not None and now < self.rest_until - EPS
