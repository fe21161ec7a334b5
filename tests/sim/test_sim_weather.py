"""Weather presets and what they mean physically."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim import render as R
from sim.weather import WEATHER_NAMES, WEATHER_PRESETS, WeatherParameters, environment, fog_beta, get_weather, tone_lut


def test_six_presets_with_carla_names():
    assert WEATHER_NAMES == ("clear", "dusk", "night", "fog", "rain", "snow")
    assert WeatherParameters.ClearNoon is WEATHER_PRESETS["clear"]
    assert WeatherParameters.ClearSunset is WEATHER_PRESETS["dusk"]
    assert WeatherParameters.ClearNight is WEATHER_PRESETS["night"]
    assert WeatherParameters.HardRainNoon is WEATHER_PRESETS["rain"]
    assert "ClearNoon" not in {f.name for f in dataclasses.fields(WeatherParameters)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        WEATHER_PRESETS["clear"].fog_density = 50.0  # type: ignore[misc]


def test_fog_visibility_is_80_to_150_m():
    beta = fog_beta(get_weather("fog"))
    assert 0.02 <= beta <= 0.035
    assert 80.0 <= 3.0 / beta <= 150.0  # distance where contrast falls to 5 %
    assert fog_beta(get_weather("clear")) < 0.002
    assert fog_beta(get_weather("clear")) < fog_beta(get_weather("rain")) < beta


def test_environment_follows_the_sun_and_the_weather():
    env = {k: environment(w) for k, w in WEATHER_PRESETS.items()}
    assert env["night"][R.E_LIGHTS] == 1.0 and env["clear"][R.E_LIGHTS] == 0.0
    assert 0.0 < env["dusk"][R.E_LIGHTS] < 1.0
    assert env["night"][R.E_SUN_COL : R.E_SUN_COL + 3].max() == 0.0
    sun = env["dusk"][R.E_SUN_COL : R.E_SUN_COL + 3]
    assert sun[0] > 2 * sun[2]  # low sun is warm
    assert env["dusk"][R.E_AMB : R.E_AMB + 3].mean() < env["clear"][R.E_AMB : R.E_AMB + 3].mean()
    assert env["rain"][R.E_WET] > 0.5 and env["rain"][R.E_PRECIP_KIND] == 0.0
    assert env["snow"][R.E_SNOW] > 0.5 and env["snow"][R.E_PRECIP_KIND] == 1.0 and env["snow"][R.E_WET] == 0.0
    hor = env["snow"][R.E_HORIZON : R.E_HORIZON + 3]
    assert hor.min() > 0.6 and hor.max() - hor.min() < 0.1  # bright, low-contrast sky


def test_tone_lut_is_monotonic_and_night_exposes_longer():
    for w in WEATHER_PRESETS.values():
        lut = tone_lut(w)
        assert lut.shape == (R.LUT_SIZE,) and lut.dtype == np.uint8
        assert (np.diff(lut.astype(int)) >= 0).all() and lut[0] == 0 and lut[-1] > 240
    assert tone_lut(get_weather("night"))[40] > tone_lut(get_weather("clear"))[40]


@pytest.mark.parametrize("field, value", [("cloudiness", -1.0), ("sun_altitude_angle", 95.0), ("fog_distance", -2.0),
                                          ("snow", 120.0), ("wetness", float("nan")), ("precipitation", "lots")])
def test_out_of_range_parameters_are_rejected(field, value):
    with pytest.raises(ValueError, match=f"WeatherParameters.{field}"):
        WeatherParameters(**{field: value})
