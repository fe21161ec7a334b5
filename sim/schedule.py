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
the tag changes (never 0). A segment may *ramp* in: its weather is blended from the previous
segment's over its first ``ramp`` frames (:func:`sim.weather.blend_weather`; same town), a
gradual shift whose span ``shift_spans`` gives. :func:`drift_schedule` draws a long seeded
schedule of abrupt and gradual shifts (the drift benchmark's streams).

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

import numpy as np

from sim.towns import TOWN_NAMES
from sim.weather import WEATHER_NAMES, WeatherParameters, blend_weather, get_weather

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
    """A run of frames in one weather and town; with ``ramp > 0`` its weather fades in from
    the previous segment's over its first ``ramp`` frames (a gradual shift).

    Example:
        >>> Segment("fog", "newtown", 10).domain
        'fog@newtown'
        >>> Segment("fog", "newtown", 10, ramp=20)
        Traceback (most recent call last):
        ...
        ValueError: Segment.ramp must be an int in [0, n_frames=10], got 20
    """

    weather: str
    town: str
    n_frames: int
    ramp: int = 0  # frames over which the weather blends in from the previous segment's

    def __post_init__(self) -> None:
        if self.weather not in WEATHER_NAMES:
            raise ValueError(f"unknown weather {self.weather!r}; valid weathers: {', '.join(WEATHER_NAMES)}")
        if self.town not in TOWN_NAMES:
            raise ValueError(f"unknown town {self.town!r}; valid towns: {', '.join(TOWN_NAMES)}")
        if not isinstance(self.n_frames, int) or isinstance(self.n_frames, bool) or self.n_frames < 0:
            raise ValueError(f"Segment.n_frames must be an int >= 0, got {self.n_frames!r}")
        if not isinstance(self.ramp, int) or isinstance(self.ramp, bool) or not 0 <= self.ramp <= self.n_frames:
            raise ValueError(f"Segment.ramp must be an int in [0, n_frames={self.n_frames}], got {self.ramp!r}")

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
        if segments[0].ramp:
            raise ValueError(f"schedule {name!r}: the first segment cannot ramp in (nothing to blend from)")
        for before, seg in zip(segments, segments[1:]):
            if seg.ramp and (seg.town != before.town or seg.weather == before.weather):
                raise ValueError(f"schedule {name!r}: segment {seg.domain} ramps in from {before.domain}; a ramp "
                                 f"needs the same town and a different weather")
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

    def weather_at(self, frame: int) -> WeatherParameters:
        """The weather of frame ``frame``: its segment's preset, blended from the previous
        segment's during a ramp (``t = (k + 1) / (ramp + 1)`` on the ramp's k-th frame)."""
        i = self._index(frame)
        seg = self.segments[i]
        k = frame - self._starts[i]
        if k >= seg.ramp:
            return get_weather(seg.weather)
        return blend_weather(get_weather(self.segments[i - 1].weather), get_weather(seg.weather), (k + 1) / (seg.ramp + 1))

    @property
    def shift_spans(self) -> list[tuple[int, int]]:
        """``(start, end)`` of every domain change: ``end = start`` for an abrupt shift,
        ``start + ramp`` (the first frame fully in the new weather) for a gradual one."""
        spans = []
        for i in range(1, len(self.segments)):
            if self.segments[i].domain != self.segments[i - 1].domain:
                spans.append((self._starts[i], self._starts[i] + self.segments[i].ramp))
        return spans

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
        body = ", ".join(f"{s.domain}:{s.n_frames}" + (f"~{s.ramp}" if s.ramp else "") for s in self.segments)
        return f"Schedule({self.name!r}: {body})"


def drift_schedule(seed: int, frames: int = 20_000, abrupt: int = 24, gradual: int = 6,
                   ramp: tuple[int, int] = (100, 300), min_segment: int = 400) -> Schedule:
    """A seeded long schedule of ``abrupt`` sudden and ``gradual`` ramped domain changes.

    Segment lengths are drawn (at least ``min_segment`` frames each, the rest spread at
    random); each abrupt shift changes the weather, the town or both, each gradual one fades
    to a new weather in the same town over ``ramp[0] .. ramp[1]`` frames. The kinds come in a
    random order; the same arguments always give the same schedule.

    Example:
        >>> s = drift_schedule(seed=7, frames=20_000)
        >>> s.n_frames, len(s.true_shifts), sum(1 for a, b in s.shift_spans if b > a)
        (20000, 30, 6)
        >>> all(100 <= seg.ramp <= 300 for seg in s.segments if seg.ramp)
        True
        >>> repr(drift_schedule(seed=7, frames=20_000)) == repr(s)
        True
        >>> drift_schedule(seed=7, frames=1000)
        Traceback (most recent call last):
        ...
        ValueError: drift_schedule: frames=1000 cannot hold 31 segments of min_segment=400 frames
    """
    for name, value in (("seed", seed), ("frames", frames), ("abrupt", abrupt), ("gradual", gradual), ("min_segment", min_segment)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"drift_schedule: {name} must be an int >= 0, got {value!r}")
    lo, hi = ramp
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
        raise ValueError(f"drift_schedule: ramp must be two ints 1 <= low <= high, got {ramp!r}")
    if gradual and min_segment <= hi:
        raise ValueError(f"drift_schedule: min_segment={min_segment} must exceed the longest ramp {hi}")
    count = abrupt + gradual + 1
    if frames < count * min_segment:
        raise ValueError(f"drift_schedule: frames={frames} cannot hold {count} segments of min_segment={min_segment} frames")
    rng = np.random.default_rng(seed)
    spare = rng.dirichlet(np.full(count, 2.0)) * (frames - count * min_segment)  # (count,)
    lengths = np.full(count, min_segment) + np.floor(spare).astype(int)  # (count,)
    lengths[-1] += frames - int(lengths.sum())
    kinds = ["abrupt"] * abrupt + ["gradual"] * gradual
    rng.shuffle(kinds)
    weather = str(rng.choice(WEATHER_NAMES))
    town = str(rng.choice(TOWN_NAMES))
    segments = [Segment(weather, town, int(lengths[0]))]
    for kind, length in zip(kinds, lengths[1:]):
        if kind == "gradual":
            weather = str(rng.choice([w for w in WEATHER_NAMES if w != weather]))
            segments.append(Segment(weather, town, int(length), ramp=int(rng.integers(lo, hi + 1))))
            continue
        change = rng.integers(3)  # 0: weather, 1: town, 2: both
        if change != 1:
            weather = str(rng.choice([w for w in WEATHER_NAMES if w != weather]))
        if change != 0:
            town = str(rng.choice([t for t in TOWN_NAMES if t != town]))
        segments.append(Segment(weather, town, int(length)))
    return Schedule(segments, name=f"drift:{seed}")
