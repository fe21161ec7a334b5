"""Schedules: which weather and town each frame of a simulated stream is in.

A :class:`Schedule` is a list of segments (weather preset, town, frame count). Named
schedules split a total frame count evenly over their segments, so a short run still visits
every domain:

- ``tour``: clear -> fog -> night in oldtown, then rain -> snow -> clear in newtown (the
  default stream, with a town change in the middle);
- ``clear``: clear@oldtown only (the student's offline training data);
- ``all``: every weather in both towns (teacher training and evaluation; includes dusk);
- a spec ``"night@newtown,fog@oldtown"``: those segments in that order.

A frame's domain tag is ``"<weather>@<town>"``; ``true_shifts`` are the frame indices where
the tag changes (never 0).

Example:
    >>> s = Schedule.named("tour", 600)
    >>> s.n_frames, s.true_shifts
    (600, [100, 200, 300, 400, 500])
    >>> s.domain_at(250), s.segment_at(450).town
    ('night@oldtown', 'newtown')
    >>> Schedule.named("tuor", 10)
    Traceback (most recent call last):
    ...
    ValueError: unknown schedule 'tuor'; valid schedules: all, clear, tour, or a spec like 'fog@oldtown,night@newtown'
"""
from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass

from sim.towns import TOWN_NAMES
from sim.weather import WEATHER_NAMES

log = logging.getLogger(__name__)

SCHEDULES: dict[str, tuple[tuple[str, str], ...]] = {
    "tour": (
        ("clear", "oldtown"), ("fog", "oldtown"), ("night", "oldtown"),
        ("rain", "newtown"), ("snow", "newtown"), ("clear", "newtown"),
    ),
    "clear": (("clear", "oldtown"),),
    "all": tuple((w, t) for t in ("oldtown", "newtown") for w in WEATHER_NAMES),
}


@dataclass(frozen=True)
class Segment:
    """A run of frames in one weather and town.

    Example:
        >>> Segment("fog", "newtown", 10).domain
        'fog@newtown'
    """

    weather: str
    town: str
    n_frames: int

    def __post_init__(self) -> None:
        if self.weather not in WEATHER_NAMES:
            raise ValueError(f"unknown weather {self.weather!r}; valid weathers: {', '.join(WEATHER_NAMES)}")
        if self.town not in TOWN_NAMES:
            raise ValueError(f"unknown town {self.town!r}; valid towns: {', '.join(TOWN_NAMES)}")
        if not isinstance(self.n_frames, int) or isinstance(self.n_frames, bool) or self.n_frames < 0:
            raise ValueError(f"Segment.n_frames must be an int >= 0, got {self.n_frames!r}")

    @property
    def domain(self) -> str:
        return f"{self.weather}@{self.town}"


class Schedule:
    """Segments in order; answers which segment (and domain) a frame index is in.

    Example:
        >>> s = Schedule([Segment("clear", "oldtown", 3), Segment("fog", "newtown", 2)], name="demo")
        >>> [s.domain_at(i) for i in range(5)]
        ['clear@oldtown', 'clear@oldtown', 'clear@oldtown', 'fog@newtown', 'fog@newtown']
        >>> s.true_shifts
        [3]
    """

    def __init__(self, segments: list[Segment] | tuple[Segment, ...], name: str = "custom") -> None:
        segments = tuple(s for s in segments if s.n_frames > 0)
        if not segments:
            raise ValueError(f"schedule {name!r} has no frames")
        self.name = name
        self.segments = segments
        self._starts: list[int] = []
        start = 0
        for seg in segments:
            self._starts.append(start)
            start += seg.n_frames
        self.n_frames = start

    @classmethod
    def named(cls, name: str, total_frames: int) -> "Schedule":
        """A named schedule (or a comma-separated spec of ``weather@town``) over ``total_frames``."""
        if not isinstance(total_frames, int) or isinstance(total_frames, bool) or total_frames <= 0:
            raise ValueError(f"total_frames must be a positive int, got {total_frames!r}")
        pairs = SCHEDULES.get(name) if isinstance(name, str) else None
        if pairs is None:
            pairs = cls._parse(name)
        k = len(pairs)
        if total_frames < k:
            log.warning("schedule %r has %d segments but only %d frames: the last segments are skipped",
                        name, k, total_frames)
        base, extra = divmod(total_frames, k)
        segments = [Segment(w, t, base + (1 if i < extra else 0)) for i, (w, t) in enumerate(pairs)]
        return cls(segments, name=name)

    @staticmethod
    def _parse(spec: object) -> tuple[tuple[str, str], ...]:
        valid = f"valid schedules: {', '.join(sorted(SCHEDULES))}, or a spec like 'fog@oldtown,night@newtown'"
        if not isinstance(spec, str) or "@" not in spec:
            raise ValueError(f"unknown schedule {spec!r}; {valid}")
        pairs = []
        for part in spec.split(","):
            part = part.strip()
            if part.count("@") != 1:
                raise ValueError(f"bad schedule segment {part!r} in {spec!r}: expected 'weather@town'; {valid}")
            weather, town = part.split("@")
            if weather not in WEATHER_NAMES:
                raise ValueError(f"unknown weather {weather!r} in schedule {spec!r}; valid weathers: {', '.join(WEATHER_NAMES)}")
            if town not in TOWN_NAMES:
                raise ValueError(f"unknown town {town!r} in schedule {spec!r}; valid towns: {', '.join(TOWN_NAMES)}")
            pairs.append((weather, town))
        return tuple(pairs)

    def _index(self, frame: int) -> int:
        if not 0 <= frame < self.n_frames:
            raise IndexError(f"frame {frame} outside schedule {self.name!r} of {self.n_frames} frames")
        return bisect.bisect_right(self._starts, frame) - 1

    def segment_at(self, frame: int) -> Segment:
        """The segment frame ``frame`` belongs to."""
        return self.segments[self._index(frame)]

    def domain_at(self, frame: int) -> str:
        """The domain tag ``"<weather>@<town>"`` of frame ``frame``."""
        return self.segment_at(frame).domain

    @property
    def starts(self) -> list[int]:
        """First frame of every segment."""
        return list(self._starts)

    @property
    def true_shifts(self) -> list[int]:
        """Frame indices where the domain changes (excluding 0)."""
        shifts = []
        for i in range(1, len(self.segments)):
            if self.segments[i].domain != self.segments[i - 1].domain:
                shifts.append(self._starts[i])
        return shifts

    @property
    def domains(self) -> list[str]:
        """The distinct domain tags in order of first appearance."""
        seen: list[str] = []
        for seg in self.segments:
            if seg.domain not in seen:
                seen.append(seg.domain)
        return seen

    def __len__(self) -> int:
        return self.n_frames

    def __repr__(self) -> str:
        body = ", ".join(f"{s.domain}:{s.n_frames}" for s in self.segments)
        return f"Schedule({self.name!r}: {body})"
