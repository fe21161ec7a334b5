"""The ego's stops (``sim.stop_every``): static camera while it rests, seeded, off by default."""
from __future__ import annotations

import pytest

from sim.stops import StopPlan
from sim.world import SimConfig, SimError, World
from stream.sources.sim import SimSource

STOPPING = SimConfig(width=48, height=24, stop_every=6.0, stop_seconds=2.0)


def _drive(config: SimConfig, ticks: int, seed: int = 4) -> tuple[list, list[bool]]:
    world = World(config, seed)
    poses, stopped = [], []
    for _ in range(ticks):
        world.tick()
        poses.append(world.camera_pose(world._default_camera))
        stopped.append(world.ego_stopped)
    return poses, stopped


def test_the_camera_pose_is_identical_on_consecutive_stopped_frames_and_moves_otherwise():
    poses, stopped = _drive(STOPPING, 200)
    rests = [i for i in range(1, len(stopped)) if stopped[i] and stopped[i - 1]]
    assert sum(stopped) >= 2 * 20  # at least two stops of 2 s at 10 frames/s
    assert all(poses[i] == poses[i - 1] for i in rests)
    moving = [i for i in range(1, len(stopped)) if not stopped[i] and not stopped[i - 1]]
    assert sum(poses[i] != poses[i - 1] for i in moving) == len(moving)


def test_each_rest_lasts_stop_seconds():
    _, stopped = _drive(STOPPING, 200)
    runs, length = [], 0
    for flag in stopped + [False]:
        if flag:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    full = runs[:-1] if stopped[-1] else runs  # the last rest may run past the end
    assert full and all(run == 20 for run in full)


def test_stops_are_deterministic_from_the_world_seed():
    assert _drive(STOPPING, 150, seed=9) == _drive(STOPPING, 150, seed=9)
    assert _drive(STOPPING, 150, seed=9)[1] != _drive(STOPPING, 150, seed=10)[1]


def test_without_stops_the_ego_never_rests():
    _, stopped = _drive(SimConfig(width=48, height=24), 120)
    assert not any(stopped)


def test_the_sim_source_tags_stopped_frames_only_when_stops_are_on():
    frames = list(SimSource(STOPPING, seed=4, frames=120, schedule="clear@oldtown"))
    assert any(f.meta["stopped"] for f in frames) and not all(f.meta["stopped"] for f in frames)
    still = [f for f in frames if f.meta["stopped"]]
    plain = next(iter(SimSource(SimConfig(width=48, height=24), seed=4, frames=1, schedule="clear@oldtown")))
    assert "stopped" not in plain.meta
    assert len(still) >= 20


@pytest.mark.parametrize("kwargs, message", [
    ({"stop_every": 10.0}, "must both be > 0"),
    ({"stop_seconds": 5.0}, "must both be > 0"),
    ({"stop_every": 5.0, "stop_seconds": 5.0}, "stop_seconds must be shorter"),
    ({"stop_every": -1.0, "stop_seconds": 0.0}, "SimConfig.stop_every must be a number"),
])
def test_bad_stop_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(SimError, match=message):
        SimConfig(**kwargs)


def test_stop_plan_refuses_a_rest_longer_than_the_interval():
    with pytest.raises(ValueError, match="seconds < every"):
        StopPlan(every=3.0, seconds=4.0, seed=0)
