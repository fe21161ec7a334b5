"""Paced replay with a fake clock: waits, drop policies, block, log boundaries."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest

from stream.frame import Frame
from stream.sources.base import Source, SourceError
from stream.sources.images import RecordedSource
from stream.sources.multi import open_many
from stream.sources.pacing import Paced, pace


class Log(RecordedSource):
    """``count`` frames every ``step`` seconds (exact binary fractions keep the clock exact)."""

    def __init__(self, name: str, count: int, step: float = 0.125, start: float = 0.0, bad: int | None = None):
        super().__init__(f"demo:{name}")
        self._times = [start + i * step for i in range(count)]
        self._bad = bad

    def _frames(self) -> Iterator[Frame]:
        for i, t in enumerate(self._times):
            if i == self._bad:
                self._skip("broken", file=f"{i}.png")
                continue
            frame = self._make_frame(np.zeros((2, 2, 3), np.uint8), t, where=str(i))
            if frame is not None:
                yield frame


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        self.now += seconds


def consume(paced: Paced, clock: FakeClock, work: float) -> list[int]:
    seen = []
    for frame in paced:
        seen.append(frame.index)
        clock.now += work
    return seen


@pytest.mark.parametrize("speed, total", [(1.0, 0.875), (2.0, 0.4375), (0.5, 1.75)])
def test_fast_consumer_gets_every_frame_on_schedule(speed, total):
    clock = FakeClock()
    paced = Paced(Log("a", 8), speed=speed, clock=clock, sleep=clock.sleep)
    assert consume(paced, clock, 0.0) == list(range(8))
    assert sum(clock.slept) == pytest.approx(total) and clock.now == pytest.approx(total)
    assert paced.stats()["frames_dropped"] == 0 and paced.events == []


def test_consumer_at_the_frame_rate_drops_nothing():
    clock = FakeClock()
    paced = Paced(Log("a", 8), clock=clock, sleep=clock.sleep)
    assert consume(paced, clock, 0.125) == list(range(8))
    assert paced.stats()["frames_dropped"] == 0


@pytest.mark.parametrize(
    "policy, seen, dropped",
    [
        ("drop-oldest", [0, 3, 6, 7], [1, 2, 4, 5]),  # the freshest frame wins
        ("drop-newest", [0, 1, 4, 7], [2, 3, 5, 6]),  # the first frame waiting wins
    ],
)
def test_slow_consumer_drops_by_policy(policy, seen, dropped):
    clock = FakeClock()
    paced = Paced(Log("a", 8), policy=policy, clock=clock, sleep=clock.sleep)
    assert consume(paced, clock, 0.375) == seen
    assert paced.stats()["frames_dropped"] == len(dropped)
    assert [e["index"] for e in paced.events] == dropped
    assert all(e["kind"] == "dropped" and e["policy"] == policy and e["late_s"] >= 0 for e in paced.events)
    assert paced.stats()["frames_read"] == 8


def test_block_delivers_everything_late_and_shifts_the_schedule():
    clock = FakeClock()
    paced = Paced(Log("a", 8), policy="block", clock=clock, sleep=clock.sleep)
    assert consume(paced, clock, 0.375) == list(range(8))
    stats = paced.stats()
    assert stats["frames_dropped"] == 0 and stats["frames_late"] == 7 and clock.slept == []
    assert clock.now == pytest.approx(8 * 0.375)


def test_block_resumes_real_time_after_a_slow_step():
    clock = FakeClock()
    paced = Paced(Log("a", 4), policy="block", clock=clock, sleep=clock.sleep)
    frames = iter(paced)
    next(frames)
    clock.now += 1.0  # one slow step
    next(frames)  # late: delivered at once at t = 1.0
    next(frames)  # on time again: due 0.125 s after the late one
    assert clock.slept == [pytest.approx(0.125)] and clock.now == pytest.approx(1.125)


def test_log_boundary_in_a_multi_run_does_not_wait_for_the_old_clock():
    clock = FakeClock()
    run = open_many([Log("a", 3, start=100.0), Log("b", 3, start=0.0)])
    paced = Paced(run, clock=clock, sleep=clock.sleep)
    assert consume(paced, clock, 0.0) == list(range(6))
    assert clock.now == pytest.approx(0.25 + 0.25)  # b starts right after a's last frame
    assert paced.true_shifts == [3]


def test_inner_events_and_stats_are_relayed():
    clock = FakeClock()
    paced = Paced(Log("a", 4, bad=2), clock=clock, sleep=clock.sleep)
    assert consume(paced, clock, 0.0) == [0, 1, 2]
    assert [e["kind"] for e in paced.events] == ["frame_skipped"] and paced.stats()["frames_skipped"] == 1


def test_bad_options_iterate_once_and_pace_helper():
    with pytest.raises(SourceError, match="pacing speed must be positive"):
        Paced(Log("a", 1), speed=0)
    with pytest.raises(SourceError, match="pacing policy must be one of"):
        Paced(Log("a", 1), policy="drop-all")
    log = Log("a", 2)
    assert pace(log) is log
    paced = pace(log, realtime=True, speed=4.0)
    assert isinstance(paced, Paced) and isinstance(paced, Source) and paced.config.speed == 4.0
    iter(paced)
    with pytest.raises(SourceError, match="only once"):
        iter(paced)
    paced.close()
    paced.close()
