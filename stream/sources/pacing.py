"""Replay a recorded source at its recorded pace (or ``speed`` times it): :class:`Paced`.

By default a log is replayed as fast as the consumer pulls (no wrapper). ``Paced`` turns it
into a live camera: frame ``i`` becomes due at ``start + (t_i - t_0) / speed`` on the injected
``clock``; a frame that is not yet due is waited for with the injected ``sleep``. When the
consumer is slow, several frames may have come due while it was busy; the policy says which
one it gets, as a camera with a one-frame buffer would:

- ``"drop-oldest"`` (default): the buffer keeps the newest frame. The consumer gets the last
  frame that came due; every earlier one that came due meanwhile is dropped. Lowest latency,
  what a live vehicle sees.
- ``"drop-newest"``: the buffer refuses newcomers while full. The consumer gets the first
  frame that came due (the oldest waiting); the ones after it that came due are dropped.
- ``"block"``: nothing is dropped; the replay waits for the consumer (a blocking queue). A late
  frame is delivered at once and the schedule of the following frames shifts by the delay
  (``frames_late`` counts them), so the run lasts longer than the recording.

Every drop is counted in ``stats()["frames_dropped"]`` and recorded in ``events`` as
``{"kind": "dropped", "index", "source_id", "timestamp", "policy", "late_s"}``. At a change of
``source_id`` (the next log of a multi-log run) or a timestamp that goes backwards, the next
frame is due right after the previous one. Frames keep their source's ``index`` (dropped
ones leave gaps).

Example:
    >>> import numpy as np
    >>> from stream.sources.images import RecordedSource
    >>> class Log(RecordedSource):  # 8 frames at 8 Hz
    ...     def _frames(self):
    ...         for i in range(8):
    ...             yield self._make_frame(np.zeros((2, 2, 3), np.uint8), i * 0.125, where=str(i))
    >>> now = [0.0]
    >>> def sleep(seconds): now[0] += seconds
    >>> paced = Paced(Log("demo:log"), clock=lambda: now[0], sleep=sleep)
    >>> seen = []
    >>> for frame in paced:
    ...     seen.append(frame.index)
    ...     now[0] += 0.375  # a consumer that needs 3 frame intervals a frame
    >>> seen, paced.stats()["frames_dropped"]
    ([0, 3, 6, 7], 4)
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from stream.frame import Frame
from stream.sources.base import IterateOnce, Source, SourceError

logger = logging.getLogger(__name__)

POLICIES = ("drop-oldest", "drop-newest", "block")


@dataclass(frozen=True)
class PacingConfig:
    """How a source is paced (see the module docstring for the policies).

    Example:
        >>> PacingConfig(speed=2).speed
        2.0
    """

    speed: float = 1.0  # replay speed: 2.0 plays twice as fast as recorded
    policy: str = "drop-oldest"  # a slow consumer loses: "drop-oldest" | "drop-newest" | "block"

    def __post_init__(self) -> None:
        try:
            speed = float(self.speed)
        except (TypeError, ValueError):
            raise SourceError(f"pacing speed must be a number, got {self.speed!r}") from None
        if not speed > 0 or not math.isfinite(speed):
            raise SourceError(f"pacing speed must be positive and finite, got {self.speed!r}")
        object.__setattr__(self, "speed", speed)
        if self.policy not in POLICIES:
            raise SourceError(f"pacing policy must be one of {POLICIES}, got {self.policy!r}")


class Paced(IterateOnce):
    """A source replayed in (scaled) real time with a stated drop policy.

    Example:
        >>> Paced(iter([]), policy="newest")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stream.sources.base.SourceError: pacing policy must be one of ('drop-oldest', 'drop-newest', 'block'), got 'newest'
    """

    def __init__(
        self,
        source: Source,
        speed: float = 1.0,
        policy: str = "drop-oldest",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = PacingConfig(speed=speed, policy=policy)
        self.source = source
        self.source_id = getattr(source, "source_id", "paced")
        self.events: list[dict[str, Any]] = []
        self._clock = clock
        self._sleep = sleep
        self._dropped = 0
        self._late = 0
        self._seen_events = 0
        self._prev: tuple[float, float, str] | None = None  # (timestamp, deadline, source_id)
        self._started = False
        self._closed = False

    def _relay(self) -> None:
        inner = self.source.events
        if len(inner) > self._seen_events:
            self.events.extend(inner[self._seen_events:])
            self._seen_events = len(inner)

    def _pull(self, frames: Iterator[Frame]) -> tuple[Frame, float] | None:
        """The next frame and its deadline on the clock, or None at the end."""
        frame = next(frames, None)
        self._relay()
        if frame is None:
            return None
        prev = self._prev
        if prev is None:
            deadline = self._clock()
        else:
            prev_ts, prev_deadline, prev_id = prev
            same_log = frame.source_id == prev_id and frame.timestamp >= prev_ts
            gap = (frame.timestamp - prev_ts) / self.config.speed if same_log else 0.0
            deadline = prev_deadline + gap
        self._prev = (frame.timestamp, deadline, frame.source_id)
        return frame, deadline

    def _drop(self, frame: Frame, deadline: float, now: float) -> None:
        self._dropped += 1
        self.events.append({
            "kind": "dropped", "index": frame.index, "source_id": frame.source_id, "timestamp": frame.timestamp,
            "policy": self.config.policy, "late_s": now - deadline,
        })
        logger.debug("%s: dropped frame %d (%.3f s late)", self.source_id, frame.index, now - deadline)

    def _frames(self) -> Iterator[Frame]:
        frames = iter(self.source)
        policy = self.config.policy
        pending = self._pull(frames)
        while pending is not None and not self._closed:
            frame, deadline = pending
            now = self._clock()
            if deadline > now:
                self._sleep(deadline - now)
                yield frame
                pending = self._pull(frames)
                continue
            if policy == "block":
                if now > deadline:
                    self._late += 1
                    # the replay waited for the consumer: later frames keep their spacing from
                    # now (in this policy the last frame pulled is always the one delivered)
                    self._prev = (frame.timestamp, now, frame.source_id)
                yield frame
                pending = self._pull(frames)
                continue
            chosen, chosen_deadline = frame, deadline
            while True:
                pending = self._pull(frames)
                if pending is None or pending[1] > self._clock():
                    break
                if policy == "drop-oldest":
                    self._drop(chosen, chosen_deadline, now)
                    chosen, chosen_deadline = pending
                else:  # drop-newest
                    self._drop(pending[0], pending[1], now)
            yield chosen

    def _inner_sources(self) -> list[Any]:
        return [self.source]

    def stats(self) -> dict[str, int]:
        """The source's counters with this wrapper's drops added (and ``frames_late``)."""
        counts = dict(self.source.stats())
        counts["frames_dropped"] = counts.get("frames_dropped", 0) + self._dropped
        counts["frames_late"] = counts.get("frames_late", 0) + self._late
        return counts

    @property
    def true_shifts(self) -> list[int]:
        """The wrapped source's shifts."""
        return list(self.source.true_shifts)

    def close(self) -> None:
        """Close the wrapped source; safe to call twice."""
        if not self._closed:
            self._closed = True
            self.source.close()

    def __enter__(self) -> "Paced":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pace(
    source: Source,
    realtime: bool = False,
    speed: float = 1.0,
    policy: str = "drop-oldest",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Source:
    """``source`` as fast as possible (``realtime=False``, the default) or :class:`Paced`."""
    if not realtime:
        return source
    return Paced(source, speed=speed, policy=policy, clock=clock, sleep=sleep)
