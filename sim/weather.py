"""Weather as physical parameters (CARLA's ``WeatherParameters`` shape) and what they light.

:class:`WeatherParameters` carries CARLA's fields (percentages 0..100, angles in degrees)
plus our ``snow`` amount. :func:`environment` turns it into the renderer's lighting array:
sun direction and colour from the sun altitude, sky colours, ambient light, fog extinction
``beta`` (``fog_density`` 100 -> 0.04 / m, i.e. a visibility of 75 m; the fog preset gives
about 0.03 / m, roughly 100 m), wet ground from ``wetness`` and ``precipitation_deposits``,
rain or snow particles from ``precipitation``, and artificial light (headlights, street
lights, lit windows, car lamps) when the sun is down. :func:`tone_lut` is the camera: an
exposure that adapts to the scene's light level, a filmic shoulder and the sRGB gamma.

The six domains are presets: ``WEATHER_PRESETS['clear' | 'dusk' | 'night' | 'fog' | 'rain'
| 'snow']``, also reachable as CARLA-style class attributes (``WeatherParameters.ClearNoon``,
``ClearSunset``, ``ClearNight``, ``FogNoon``, ``HardRainNoon``, ``SnowNoon``).

Example:
    >>> w = WEATHER_PRESETS["fog"]
    >>> round(fog_beta(w), 4)  # visibility (5 % contrast) 3 / beta = 105 m
    0.0286
    >>> WeatherParameters(fog_density=150)
    Traceback (most recent call last):
    ...
    ValueError: WeatherParameters.fog_density must be in [0, 100], got 150
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from sim import render as R

_PERCENT = ("cloudiness", "precipitation", "precipitation_deposits", "wind_intensity", "fog_density", "wetness", "snow")


@dataclass(frozen=True)
class WeatherParameters:
    """CARLA's weather fields (plus ``snow``); frozen: derive variants with ``dataclasses.replace``.

    Example:
        >>> WeatherParameters.ClearNight.sun_altitude_angle < 0
        True
    """

    cloudiness: float = 10.0  # 0..100 cloud cover; dims direct sun, greys the sky
    precipitation: float = 0.0  # 0..100 falling rain (or snow when snow > 0)
    precipitation_deposits: float = 0.0  # 0..100 puddles on the road
    wind_intensity: float = 10.0  # 0..100 slants the rain streaks
    sun_azimuth_angle: float = 120.0  # degrees, counter-clockwise from world +x (east)
    sun_altitude_angle: float = 60.0  # -90..90 degrees; below 0 is night
    fog_density: float = 0.0  # 0..100 -> extinction beta = 0.0004 * density per metre
    fog_distance: float = 0.0  # metres before fog starts
    wetness: float = 0.0  # 0..100 darkens and glosses the ground
    snow: float = 0.0  # 0..100 our addition: snow on the ground, flakes when precipitating

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"WeatherParameters.{f.name} must be a finite number, got {value!r}")
        for name in _PERCENT:
            value = getattr(self, name)
            if not 0.0 <= value <= 100.0:
                raise ValueError(f"WeatherParameters.{name} must be in [0, 100], got {value}")
        if not -90.0 <= self.sun_altitude_angle <= 90.0:
            raise ValueError(f"WeatherParameters.sun_altitude_angle must be in [-90, 90], got {self.sun_altitude_angle}")
        if self.fog_distance < 0.0:
            raise ValueError(f"WeatherParameters.fog_distance must be >= 0, got {self.fog_distance}")


WEATHER_PRESETS: dict[str, WeatherParameters] = {
    "clear": WeatherParameters(cloudiness=15.0, sun_altitude_angle=55.0, sun_azimuth_angle=130.0),
    "dusk": WeatherParameters(cloudiness=25.0, sun_altitude_angle=4.0, sun_azimuth_angle=125.0),
    "night": WeatherParameters(cloudiness=20.0, sun_altitude_angle=-35.0),
    "fog": WeatherParameters(cloudiness=90.0, sun_altitude_angle=40.0, fog_density=70.0, fog_distance=2.0, wetness=10.0),
    "rain": WeatherParameters(
        cloudiness=95.0, precipitation=75.0, precipitation_deposits=60.0, wind_intensity=35.0,
        sun_altitude_angle=40.0, wetness=85.0,
    ),
    "snow": WeatherParameters(cloudiness=90.0, precipitation=55.0, wind_intensity=20.0, sun_altitude_angle=35.0, snow=85.0),
}
WEATHER_NAMES: tuple[str, ...] = tuple(WEATHER_PRESETS)

# CARLA-style class attributes (set after the class so they are not dataclass fields)
WeatherParameters.ClearNoon = WEATHER_PRESETS["clear"]  # type: ignore[attr-defined]
WeatherParameters.ClearSunset = WEATHER_PRESETS["dusk"]
WeatherParameters.ClearNight = WEATHER_PRESETS["night"]
WeatherParameters.FogNoon = WEATHER_PRESETS["fog"]
WeatherParameters.HardRainNoon = WEATHER_PRESETS["rain"]
WeatherParameters.SnowNoon = WEATHER_PRESETS["snow"]


def get_weather(name: str) -> WeatherParameters:
    """The preset for a domain name; unknown names raise ValueError listing the valid ones."""
    if not isinstance(name, str) or name not in WEATHER_PRESETS:
        raise ValueError(f"unknown weather {name!r}; valid weathers: {', '.join(WEATHER_NAMES)}")
    return WEATHER_PRESETS[name]


def blend_weather(start: WeatherParameters, end: WeatherParameters, t: float) -> WeatherParameters:
    """Weather a fraction ``t`` of the way from ``start`` to ``end`` (every field linearly):
    a gradual change, e.g. fog rolling in over a few hundred frames.

    Example:
        >>> half = blend_weather(WEATHER_PRESETS["clear"], WEATHER_PRESETS["fog"], 0.5)
        >>> half.fog_density, half.cloudiness
        (35.0, 52.5)
        >>> blend_weather(WEATHER_PRESETS["clear"], WEATHER_PRESETS["fog"], 1.5)
        Traceback (most recent call last):
        ...
        ValueError: blend_weather: t must be in [0, 1], got 1.5
    """
    if not isinstance(start, WeatherParameters) or not isinstance(end, WeatherParameters):
        raise ValueError(f"blend_weather: start and end must be WeatherParameters, got {type(start).__name__} "
                         f"and {type(end).__name__}")
    if not (isinstance(t, (int, float)) and 0.0 <= t <= 1.0):
        raise ValueError(f"blend_weather: t must be in [0, 1], got {t!r}")
    values = {f.name: getattr(start, f.name) * (1.0 - t) + getattr(end, f.name) * t for f in fields(WeatherParameters)}
    return WeatherParameters(**values)


def fog_beta(weather: WeatherParameters) -> float:
    """Extinction coefficient (1/m): fog plus a little airlight from rain, snow and haze."""
    beta = 0.0004 * weather.fog_density
    if weather.snow > 0.0:
        beta += 0.00012 * weather.precipitation + 0.00003 * weather.snow
    else:
        beta += 0.00008 * weather.precipitation
    return beta + 0.0006  # clear-air haze, so distance always fades a little


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return a * (1.0 - t) + b * t


def _smooth(e0: float, e1: float, x: float) -> float:
    t = min(1.0, max(0.0, (x - e0) / (e1 - e0)))
    return t * t * (3.0 - 2.0 * t)


def lights_on(weather: WeatherParameters) -> float:
    """How much artificial light is on (0 by day, 1 at night; partly at dusk)."""
    return _smooth(12.0, -6.0, weather.sun_altitude_angle)


def environment(weather: WeatherParameters) -> np.ndarray:
    """The renderer's lighting and weather array for these parameters.

    Shape:
        -> (render.ENV_SIZE,) float64
    """
    env = np.zeros(R.ENV_SIZE, np.float64)
    alt = math.radians(weather.sun_altitude_angle)
    az = math.radians(weather.sun_azimuth_angle)
    env[R.E_SUN_DIR : R.E_SUN_DIR + 3] = (math.cos(alt) * math.cos(az), math.cos(alt) * math.sin(az), math.sin(alt))
    cloud = weather.cloudiness / 100.0
    overcast = _smooth(0.5, 1.0, cloud)
    snow = weather.snow / 100.0
    day = _smooth(-8.0, 3.0, weather.sun_altitude_angle)  # 0 night .. 1 day (civil twilight between)
    low = _smooth(25.0, 0.0, weather.sun_altitude_angle)  # 0 high sun .. 1 sun on the horizon (warm)
    sun_white = np.array([1.0, 0.96, 0.88])
    sun_warm = np.array([1.0, 0.52, 0.22])
    sun_i = 2.6 * _smooth(-2.0, 8.0, weather.sun_altitude_angle) * (1.0 - 0.9 * overcast)
    env[R.E_SUN_COL : R.E_SUN_COL + 3] = _mix(sun_white, sun_warm, low) * sun_i
    # ambient (sky) light: bluish by clear day, grey and softer-but-brighter under cloud
    amb_clear = np.array([0.36, 0.42, 0.54])
    amb_cloud = np.array([0.62, 0.64, 0.68])
    amb_day = _mix(amb_clear, amb_cloud, overcast)
    amb_dusk = np.array([0.2, 0.15, 0.17])
    amb_night = np.array([0.018, 0.022, 0.035])
    amb = _mix(amb_day, amb_dusk, low)
    amb = _mix(amb_night, amb, day)
    if snow > 0.0:
        amb = amb * (1.0 + 0.25 * snow)  # snow-covered ground bounces light back up
    env[R.E_AMB : R.E_AMB + 3] = amb
    # sky colours
    zen_clear, hor_clear = np.array([0.12, 0.3, 0.75]), np.array([0.55, 0.7, 0.92])
    zen_cloud, hor_cloud = np.array([0.5, 0.52, 0.56]), np.array([0.66, 0.68, 0.71])
    zen_dusk, hor_dusk = np.array([0.08, 0.09, 0.24]), np.array([0.95, 0.42, 0.16])
    zen_night, hor_night = np.array([0.003, 0.004, 0.012]), np.array([0.018, 0.016, 0.024])
    zen = _mix(_mix(zen_clear, zen_cloud, overcast), zen_dusk, low)
    hor = _mix(_mix(hor_clear, hor_cloud, overcast), hor_dusk, low * (1.0 - 0.7 * overcast))
    zen = _mix(zen_night, zen, day)
    hor = _mix(hor_night, hor, day)
    if snow > 0.0:
        bright = np.array([0.8, 0.81, 0.84])
        zen = _mix(zen, bright * 0.95, snow)
        hor = _mix(hor, bright, snow)
    env[R.E_ZENITH : R.E_ZENITH + 3] = zen
    env[R.E_HORIZON : R.E_HORIZON + 3] = hor
    env[R.E_GLOW : R.E_GLOW + 3] = _mix(np.array([0.25, 0.22, 0.18]), np.array([1.4, 0.55, 0.18]), low) * day * (1.0 - overcast)
    env[R.E_GLOW_POW] = 6.0 + 10.0 * (1.0 - low)
    env[R.E_SUN_DISC] = 6.0 * day * (1.0 - overcast)
    env[R.E_CLOUD] = cloud * (0.9 if overcast < 0.99 else 1.0)
    cloud_col = _mix(np.array([0.02, 0.022, 0.03]), _mix(np.array([0.85, 0.85, 0.86]), np.array([0.95, 0.55, 0.4]), low), day)
    env[R.E_CLOUD_COL : R.E_CLOUD_COL + 3] = _mix(cloud_col, hor, overcast * 0.7)
    # fog
    env[R.E_BETA] = fog_beta(weather)
    env[R.E_FOG_START] = weather.fog_distance
    env[R.E_AIR : R.E_AIR + 3] = hor if weather.fog_density < 1.0 else _mix(hor, amb * 1.15, 0.5)
    # artificial light
    env[R.E_LIGHTS] = lights_on(weather)
    env[R.E_HEAD_I] = 2.6  # ego headlights: reach ~40 m
    env[R.E_HEAD_COS_IN] = math.cos(math.radians(14.0))
    env[R.E_HEAD_COS_OUT] = math.cos(math.radians(34.0))
    env[R.E_HEAD_D0] = 14.0
    env[R.E_LAMP_D0] = 6.0
    # wet ground, snow, precipitation
    env[R.E_WET] = weather.wetness / 100.0 if snow == 0.0 else 0.0
    env[R.E_PUDDLE] = weather.precipitation_deposits / 100.0 if snow == 0.0 else 0.0
    env[R.E_SNOW] = snow
    env[R.E_PRECIP] = weather.precipitation / 100.0
    env[R.E_PRECIP_KIND] = 1.0 if snow > 0.0 else 0.0
    env[R.E_WIND] = 0.05 + 0.5 * weather.wind_intensity / 100.0
    return env


def exposure(weather: WeatherParameters) -> float:
    """Camera exposure: auto-exposure opens up as the scene's light falls."""
    env = environment(weather)
    level = float(env[R.E_AMB : R.E_AMB + 3].mean() + 0.35 * env[R.E_SUN_COL : R.E_SUN_COL + 3].mean())
    return float(np.clip((1.1 / max(level, 1e-3)) ** 0.35, 0.9, 1.5))


def tone_lut(weather: WeatherParameters) -> np.ndarray:
    """Linear radiance -> display uint8: exposure, filmic shoulder, sRGB gamma.

    Shape:
        -> (render.LUT_SIZE,) uint8
    """
    e = exposure(weather)
    radiance = np.arange(R.LUT_SIZE, dtype=np.float64) / R.LUT_SCALE  # (LUT_SIZE,)
    mapped = 1.0 - np.exp(-e * radiance)
    display = np.where(mapped <= 0.0031308, 12.92 * mapped, 1.055 * mapped ** (1.0 / 2.4) - 0.055)
    return np.clip(np.round(display * 255.0), 0, 255).astype(np.uint8)
