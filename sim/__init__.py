"""The built-in procedural driving simulator (CARLA-shaped) and its schedules.

Example:
    >>> from sim import World, SimConfig, WEATHER_PRESETS, Schedule
    >>> sorted(WEATHER_PRESETS)
    ['clear', 'dusk', 'fog', 'night', 'rain', 'snow']
    >>> Schedule.named("tour", 60).true_shifts
    [10, 20, 30, 40, 50]
"""
from sim.schedule import SCHEDULES, Schedule, Segment
from sim.towns import TOWN_NAMES, TOWNS, TownStyle, get_town
from sim.weather import WEATHER_NAMES, WEATHER_PRESETS, WeatherParameters, get_weather
from sim.world import (
    ActorBlueprint, BlueprintLibrary, CameraImage, Client, Location, Rotation, SimConfig, SimError, Transform, World,
    WorldSettings, decode_depth,
)

__all__ = [
    "ActorBlueprint", "BlueprintLibrary", "CameraImage", "Client", "Location", "Rotation", "SCHEDULES", "Schedule",
    "Segment", "SimConfig", "SimError", "TOWNS", "TOWN_NAMES", "TownStyle", "Transform", "WEATHER_NAMES",
    "WEATHER_PRESETS", "WeatherParameters", "World", "WorldSettings", "decode_depth", "get_town", "get_weather",
]
