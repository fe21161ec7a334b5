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
