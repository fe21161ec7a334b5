"""SimSource: read-only frames with ground truth and domain meta, shifts, events, errors."""
from __future__ import annotations

import numpy as np
import pytest

from sim.schedule import Schedule
from sim.world import SimConfig
from stream.frame import Frame
from stream.sources.base import Source, SourceError
from stream.sources.sim import SimSource, render_frames

CFG = SimConfig(width=64, height=32)


def test_frames_follow_the_schedule_with_ground_truth():
    src = SimSource(CFG, seed=0, frames=12, schedule="tour")
    assert isinstance(src, Source)
    frames = list(src)
    assert [f.index for f in frames] == list(range(12))
    assert src.source_id == "sim:tour" and all(f.source_id == "sim:tour" for f in frames)
    sched = Schedule.named("tour", 12)
    for f in frames:
        assert isinstance(f, Frame)
        assert f.meta["domain"] == sched.domain_at(f.index) == f.domain
        assert f.meta["domain"] == f"{f.meta['weather']}@{f.meta['town']}"
        assert f.image.shape == (32, 64, 3) and f.label.shape == (32, 64) and f.depth.shape == (32, 64)
        assert f.label.dtype == np.uint8 and f.depth.dtype == np.float32
        for a in (f.image, f.label, f.depth):
            assert not a.flags.writeable
            with pytest.raises(ValueError):
                a[0, 0] = 0
    times = [f.timestamp for f in frames]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert src.true_shifts == [2, 4, 6, 8, 10]
    changes = [e for e in src.events if e["kind"] == "domain_change"]
    assert [e["index"] for e in changes] == src.true_shifts
    assert changes[2]["domain"] == "rain@newtown" and changes[2]["previous"] == "night@oldtown"
    stats = src.stats()
    assert stats["frames_read"] == 12 and stats["frames_skipped"] == 0 and stats["towns_loaded"] == 2
    src.close()
    src.close()


def test_same_seed_same_stream_and_disjoint_seeds_differ():
    a = [f.image.tobytes() for f in render_frames(CFG, seed=7, frames=4, schedule="clear")]
    b = [f.image.tobytes() for f in render_frames(CFG, seed=7, frames=4, schedule="clear")]
    c = [f.image.tobytes() for f in render_frames(CFG, seed=8, frames=4, schedule="clear")]
    assert a == b and a != c


def test_single_use_and_close():
    src = SimSource(CFG, seed=0, frames=3, schedule="clear")
    it = iter(src)
    next(it)
    with pytest.raises(SourceError, match="iterated only once"):
        iter(src)
    src.close()
    assert list(it) == []  # a closed source stops
    closed = SimSource(CFG, seed=0, frames=3, schedule="clear")
    closed.close()
    with pytest.raises(SourceError, match="closed"):
        iter(closed)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"frames": 0}, "frames must be a positive int, got 0"),
        ({"seed": -3}, "seed must be a non-negative int, got -3"),
        ({"schedule": "grand-tour"}, "unknown schedule 'grand-tour'"),
        ({"schedule": "fog@gotham"}, "unknown town 'gotham'"),
        ({"config": "256x128"}, "config must be a sim.world.SimConfig"),
        ({"schedule": Schedule.named("clear", 5), "frames": 6}, "does not match the schedule's 5 frames"),
    ],
)
def test_bad_arguments_raise_source_errors(kwargs, message):
    args = {"config": CFG, "seed": 0, "frames": 4, "schedule": "tour"} | kwargs
    with pytest.raises(SourceError, match=message):
        SimSource(**args)
