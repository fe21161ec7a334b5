"""Schedules: even splits, domain tags, true shifts, and clear errors for bad names."""
from __future__ import annotations

import pytest

from sim.schedule import SCHEDULES, Schedule, Segment
from sim.towns import TOWN_NAMES
from sim.weather import WEATHER_NAMES


def test_tour_splits_evenly_and_visits_every_domain():
    s = Schedule.named("tour", 600)
    assert [seg.n_frames for seg in s.segments] == [100] * 6
    assert [seg.domain for seg in s.segments] == [
        "clear@oldtown", "fog@oldtown", "night@oldtown", "rain@newtown", "snow@newtown", "clear@newtown"]
    assert s.true_shifts == [100, 200, 300, 400, 500]
    assert s.domain_at(0) == "clear@oldtown" and s.domain_at(99) == "clear@oldtown"
    assert s.domain_at(100) == "fog@oldtown" and s.domain_at(599) == "clear@newtown"
    towns = [seg.town for seg in s.segments]
    assert len(set(towns)) == 2 and towns[0] != towns[-1]


def test_uneven_totals_keep_every_frame():
    s = Schedule.named("tour", 605)
    assert s.n_frames == 605
    assert [seg.n_frames for seg in s.segments] == [101] * 5 + [100]
    assert s.true_shifts == [101, 202, 303, 404, 505]
    tiny = Schedule.named("tour", 3)  # fewer frames than segments: the first segments get them
    assert tiny.n_frames == 3 and [seg.domain for seg in tiny.segments] == ["clear@oldtown", "fog@oldtown", "night@oldtown"]


def test_clear_and_all_schedules():
    clear = Schedule.named("clear", 50)
    assert clear.domains == ["clear@oldtown"] and clear.true_shifts == []
    every = Schedule.named("all", 120)
    assert len(every.segments) == len(WEATHER_NAMES) * len(TOWN_NAMES) == 12
    assert {seg.weather for seg in every.segments} == set(WEATHER_NAMES)
    assert "dusk@oldtown" in every.domains and "dusk@newtown" in every.domains
    assert len(every.true_shifts) == 11
    assert set(SCHEDULES) >= {"tour", "clear", "all"}


def test_spec_strings_and_custom_schedules():
    s = Schedule.named("night@newtown, fog@oldtown", 10)
    assert s.domains == ["night@newtown", "fog@oldtown"] and s.true_shifts == [5]
    same = Schedule([Segment("fog", "oldtown", 3), Segment("fog", "oldtown", 2), Segment("rain", "oldtown", 1)])
    assert same.true_shifts == [5]  # a repeated domain is not a shift
    with pytest.raises(IndexError, match="frame 6 outside"):
        same.domain_at(6)


@pytest.mark.parametrize(
    "name, message",
    [
        ("tuor", "unknown schedule 'tuor'; valid schedules: all, clear, tour"),
        ("hail@oldtown", "unknown weather 'hail' in schedule 'hail@oldtown'; valid weathers: clear, dusk, night"),
        ("fog@atlantis", "unknown town 'atlantis' in schedule 'fog@atlantis'; valid towns: newtown, oldtown"),
        ("fog@oldtown,fog", "unknown schedule|bad schedule segment 'fog'"),
    ],
)
def test_bad_names_raise_value_errors_naming_the_value_and_choices(name, message):
    with pytest.raises(ValueError, match=message):
        Schedule.named(name, 10)


def test_bad_frame_counts_and_segments():
    with pytest.raises(ValueError, match="total_frames must be a positive int, got 0"):
        Schedule.named("tour", 0)
    with pytest.raises(ValueError, match="unknown town 'mars'"):
        Segment("clear", "mars", 3)
    with pytest.raises(ValueError, match="n_frames must be an int >= 0"):
        Segment("clear", "oldtown", -1)
    with pytest.raises(ValueError, match="has no frames"):
        Schedule([Segment("clear", "oldtown", 0)])


# ---- long drift schedules with gradual shifts (bench/drift.py --streams)

def test_drift_schedule_counts_ramps_and_determinism():
    from sim.schedule import drift_schedule

    s = drift_schedule(seed=100_501)
    spans = s.shift_spans
    assert s.n_frames == 20_000 and len(s.true_shifts) == 30 and [a for a, _ in spans] == s.true_shifts
    gradual = [(a, b) for a, b in spans if b > a]
    assert len(gradual) == 6 and all(100 <= b - a <= 300 for a, b in gradual)
    assert all(seg.n_frames >= 400 for seg in s.segments)
    for before, seg in zip(s.segments, s.segments[1:]):
        assert seg.domain != before.domain
        if seg.ramp:
            assert seg.town == before.town and seg.weather != before.weather
    assert repr(drift_schedule(seed=100_501)) == repr(s) and repr(drift_schedule(seed=100_502)) != repr(s)
    small = drift_schedule(seed=3, frames=9000, abrupt=10, gradual=3, ramp=(50, 60), min_segment=200)
    assert len(small.true_shifts) == 13 and sum(1 for a, b in small.shift_spans if b > a) == 3


def test_drift_schedule_bad_arguments_name_the_setting():
    from sim.schedule import drift_schedule

    with pytest.raises(ValueError, match=r"drift_schedule: frames=1000 cannot hold 31 segments"):
        drift_schedule(seed=0, frames=1000)
    with pytest.raises(ValueError, match=r"drift_schedule: min_segment=200 must exceed the longest ramp 300"):
        drift_schedule(seed=0, min_segment=200)
    with pytest.raises(ValueError, match=r"drift_schedule: ramp must be two ints"):
        drift_schedule(seed=0, ramp=(300, 100))


def test_ramped_segment_blends_the_weather_and_is_checked():
    from sim.schedule import Schedule, Segment
    from sim.weather import WEATHER_PRESETS

    s = Schedule([Segment("clear", "oldtown", 5), Segment("fog", "oldtown", 6, ramp=3)])
    fog = [s.weather_at(i).fog_density for i in range(11)]
    assert fog[:5] == [0.0] * 5 and fog[5] < fog[6] < fog[7] < fog[8] == WEATHER_PRESETS["fog"].fog_density == fog[10]
    assert s.shift_spans == [(5, 8)] and s.true_shifts == [5]
    with pytest.raises(ValueError, match="a ramp needs the same town and a different weather"):
        Schedule([Segment("clear", "oldtown", 5), Segment("fog", "newtown", 5, ramp=3)])
    with pytest.raises(ValueError, match="the first segment cannot ramp in"):
        Schedule([Segment("clear", "oldtown", 5, ramp=2)])


def test_sim_source_renders_a_ramp_gradually():
    from sim.schedule import Schedule, Segment
    from sim.world import SimConfig
    from stream.sources.sim import SimSource

    s = Schedule([Segment("clear", "oldtown", 3), Segment("night", "oldtown", 6, ramp=4)])
    src = SimSource(SimConfig(width=32, height=16), seed=0, frames=s.n_frames, schedule=s)
    sun = []
    for _ in src:
        sun.append(src._world.get_weather().sun_altitude_angle)
    night = -35.0
    assert sun[:3] == [55.0] * 3 and sun[3] > sun[4] > sun[5] > sun[6] > sun[7] == night == sun[8]
    assert src.true_shifts == [3]
