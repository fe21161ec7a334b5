"""The built-in procedural driving world, in CARLA's shapes so a CARLA server can replace it.

Use it as one uses CARLA in synchronous mode::

    world = World(SimConfig(), seed=0)
    bp = world.get_blueprint_library().find("sensor.camera.rgb")
    bp.set_attribute("image_size_x", "256")
    camera = world.spawn_actor(bp, Transform(Location(x=1.0, z=1.4)), attach_to=world.ego)
    camera.listen(callback)           # callback(image): image.frame, .timestamp, .raw_data, .array
    world.set_weather(WeatherParameters.ClearNight)   # or world.set_weather("night")
    world.load_town("newtown")
    frame = world.tick()              # advances fixed_delta_seconds, then calls every listener

All cameras with the same size, field of view and mount are served by ONE render per tick,
so the RGB, semantic and depth images of a tick are the same pass of the rasteriser.
Coordinates: our world is right-handed (x east, y north, z up, yaw counter-clockwise from
+x, degrees in the CARLA-like records). A camera's mount relative to the ego uses CARLA's
convention (x forward, y right, z up; yaw positive to the right).

Example:
    >>> world = World(SimConfig(width=64, height=32), seed=0)
    >>> bp = world.get_blueprint_library().find("sensor.camera.semantic_segmentation")
    >>> cam = world.spawn_actor(bp, attach_to=world.ego)
    >>> got = []
    >>> cam.listen(got.append)
    >>> world.tick(), got[0].frame, got[0].array.shape, got[0].array.dtype.name
    (1, 1, (32, 64), 'uint8')
"""
from __future__ import annotations

import fnmatch
import logging
import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from sim import actors as A
from sim import render as R
from sim.actors import Traffic
from sim.control import MAX_STEER_DEG, WHEELBASE_M, LaneGuide, VehicleControl
from sim.route import Route
from sim.scene import CHUNK_LENGTH, Chunk, SceneGenerator
from sim.stops import StopPlan
from sim.towns import TOWN_NAMES, TownStyle, get_town, srgb_to_linear
from sim.weather import WEATHER_NAMES, WeatherParameters, environment, get_weather, lights_on, tone_lut

log = logging.getLogger(__name__)

CAMERA_BLUEPRINTS = ("sensor.camera.rgb", "sensor.camera.semantic_segmentation", "sensor.camera.depth")


class SimError(ValueError):
    """Bad input to the simulator; the message names the input and what is wrong."""


@dataclass(frozen=True)
class SimConfig:
    """Settings of the built-in world.

    Example:
        >>> SimConfig().fixed_delta_seconds
        0.1
        >>> SimConfig(width=0)
        Traceback (most recent call last):
        ...
        sim.world.SimError: SimConfig.width must be a positive int, got 0
    """

    width: int = 256  # camera image width (pixels)
    height: int = 128  # camera image height (pixels)
    fov: float = 90.0  # horizontal field of view (degrees)
    camera_height: float = 1.4  # camera above the road (metres)
    camera_forward: float = 1.0  # camera ahead of the car's centre (metres)
    fps: float = 10.0  # simulation steps per second (fixed_delta_seconds = 1 / fps)
    ego_speed: float = 12.0  # ego's cruising speed (m/s), about 43 km/h
    ego_speed_variation: float = 1.5  # slow wander of the cruising speed (+- m/s)
    traffic_density: float = 1.0  # multiplies the town's moving cars per 100 m
    pedestrian_density: float = 1.0  # multiplies the town's pedestrians per 100 m
    draw_distance: float = 150.0  # the world is generated and drawn this far ahead (m)
    town: str = "oldtown"  # town loaded at start
    weather: str = "clear"  # weather preset at start
    stop_every: float = 0.0  # the ego stops (as at a red light) about every this many seconds (0 = never)
    stop_seconds: float = 0.0  # ... and stands still this long at each stop, camera static (seconds)

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise SimError(f"SimConfig.{name} must be a positive int, got {value!r}")
        checks = {
            "fov": (1.0, 170.0), "camera_height": (0.2, 20.0), "camera_forward": (-5.0, 5.0), "fps": (0.5, 1000.0),
            "ego_speed": (0.0, 40.0), "ego_speed_variation": (0.0, 20.0), "traffic_density": (0.0, 10.0),
            "pedestrian_density": (0.0, 10.0), "draw_distance": (20.0, 1000.0),
        }
        for name, (lo, hi) in checks.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
                raise SimError(f"SimConfig.{name} must be a number in [{lo}, {hi}], got {value!r}")
        for name in ("stop_every", "stop_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 86_400.0:
                raise SimError(f"SimConfig.{name} must be a number of seconds in [0, 86400], got {value!r}")
        if (self.stop_every > 0) != (self.stop_seconds > 0):
            raise SimError(f"SimConfig.stop_every and SimConfig.stop_seconds must both be > 0 (stops) or both 0 "
                           f"(no stops), got stop_every={self.stop_every!r}, stop_seconds={self.stop_seconds!r}")
        if self.stop_every > 0 and self.stop_seconds >= self.stop_every:
            raise SimError(f"SimConfig.stop_seconds must be shorter than SimConfig.stop_every (the ego must drive "
                           f"between stops), got stop_seconds={self.stop_seconds!r}, stop_every={self.stop_every!r}")
        if self.town not in TOWN_NAMES:
            raise SimError(f"SimConfig.town: unknown town {self.town!r}; valid towns: {', '.join(TOWN_NAMES)}")
        if self.weather not in WEATHER_NAMES:
            raise SimError(f"SimConfig.weather: unknown weather {self.weather!r}; valid weathers: {', '.join(WEATHER_NAMES)}")

    @property
    def fixed_delta_seconds(self) -> float:
        return 1.0 / self.fps


# ---- CARLA-like small records -------------------------------------------------------------


@dataclass
class Location:
    """A point in metres (CARLA's record; relative mounts use CARLA's axes).

    Example:
        >>> Transform(Location(x=1.0, z=1.4)).location.z
        1.4
    """

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@dataclass
class Rotation:
    """Angles in degrees (CARLA's record)."""

    pitch: float = 0.0  # degrees, positive up
    yaw: float = 0.0  # degrees
    roll: float = 0.0  # degrees (ignored by the renderer)


@dataclass
class Transform:
    """A location and a rotation (CARLA's record)."""

    location: Location = field(default_factory=Location)
    rotation: Rotation = field(default_factory=Rotation)


@dataclass
class Vector3D:
    """A velocity in m/s in world axes."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@dataclass
class WorldSettings:
    """CARLA's settings record (mutable, as in CARLA): get, change, apply.

    Example:
        >>> s = WorldSettings(); s.synchronous_mode, s.fixed_delta_seconds
        (True, 0.1)
    """

    synchronous_mode: bool = True
    fixed_delta_seconds: float | None = 0.1
    no_rendering_mode: bool = False


@dataclass(frozen=True)
class Timestamp:
    """When a snapshot was taken (simulation seconds)."""

    frame: int
    elapsed_seconds: float
    delta_seconds: float


@dataclass(frozen=True)
class WorldSnapshot:
    """The frame number and time of the world now.

    Example:
        >>> World(SimConfig(width=8, height=4)).get_snapshot().frame
        0
    """

    frame: int
    timestamp: Timestamp


@dataclass(frozen=True)
class Map:
    """The current town (CARLA's ``world.get_map().name``)."""

    name: str


EGO_LENGTH_M = 4.5  # the ego's footprint, for the clearance to other cars
EGO_WIDTH_M = 1.8


@dataclass
class DrivingRecord:
    """How the ego drove while something else steered it (closed loop; all zero open loop).

    Lane departure: the car's centre leaves its lane (counted once per excursion). Off the
    road: a wheel is past the kerb, or on the median. Clearance: the smallest gap between the
    ego's footprint and another car's, both taken as aligned with the ego (metres; None until
    a car came within 50 m).

    Example:
        >>> DrivingRecord().as_dict()["lane_departures"]
        0
    """

    controlled_frames: int = 0
    lane_departures: int = 0
    seconds_off_road: float = 0.0
    seconds_out_of_lane: float = 0.0
    min_car_clearance_m: float | None = None
    max_lane_offset_m: float = 0.0  # the largest distance of the car's centre from its lane's centre
    in_lane: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"controlled_frames": self.controlled_frames, "lane_departures": self.lane_departures,
                "seconds_off_road": round(self.seconds_off_road, 6), "seconds_out_of_lane": round(self.seconds_out_of_lane, 6),
                "min_car_clearance_m": self.min_car_clearance_m, "max_lane_offset_m": round(self.max_lane_offset_m, 6)}


class ActorAttribute:
    """One blueprint attribute (a string, as in CARLA, with typed readers).

    Example:
        >>> ActorAttribute("image_size_x", "256").as_int()
        256
    """

    def __init__(self, name: str, value: str) -> None:
        self.id = name
        self.value = value

    def as_int(self) -> int:
        return int(float(self.value))

    def as_float(self) -> float:
        return float(self.value)

    def as_str(self) -> str:
        return self.value

    def __str__(self) -> str:
        return self.value


class ActorBlueprint:
    """A spawnable thing (here: the three cameras) with string attributes.

    Example:
        >>> bp = BlueprintLibrary(SimConfig()).find("sensor.camera.depth")
        >>> bp.set_attribute("fov", "60"); bp.get_attribute("fov").as_float()
        60.0
        >>> bp.set_attribute("colour", "red")
        Traceback (most recent call last):
        ...
        sim.world.SimError: sensor.camera.depth has no attribute 'colour'; valid: fov, image_size_x, image_size_y, role_name, sensor_tick
    """

    def __init__(self, blueprint_id: str, attributes: dict[str, str]) -> None:
        self.id = blueprint_id
        self.tags = blueprint_id.split(".")
        self._attributes = dict(attributes)

    def has_attribute(self, name: str) -> bool:
        return name in self._attributes

    def get_attribute(self, name: str) -> ActorAttribute:
        self._check(name)
        return ActorAttribute(name, self._attributes[name])

    def set_attribute(self, name: str, value: Any) -> None:
        self._check(name)
        text = str(value)
        if name in ("image_size_x", "image_size_y"):
            try:
                ok = float(text) == int(float(text)) and 1 <= int(float(text)) <= 8192
            except ValueError:
                ok = False
            if not ok:
                raise SimError(f"{self.id}.{name} must be an integer in [1, 8192], got {value!r}")
        if name == "fov":
            try:
                ok = 1.0 <= float(text) <= 170.0
            except ValueError:
                ok = False
            if not ok:
                raise SimError(f"{self.id}.fov must be a number of degrees in [1, 170], got {value!r}")
        self._attributes[name] = text

    def _check(self, name: str) -> None:
        if name not in self._attributes:
            raise SimError(f"{self.id} has no attribute {name!r}; valid: {', '.join(sorted(self._attributes))}")

    def __iter__(self):
        return (ActorAttribute(k, v) for k, v in self._attributes.items())

    def __repr__(self) -> str:
        return f"ActorBlueprint(id={self.id!r})"


class BlueprintLibrary:
    """The camera blueprints, ``find`` and ``filter`` as in CARLA.

    Example:
        >>> [bp.id for bp in BlueprintLibrary(SimConfig()).filter("*depth")]
        ['sensor.camera.depth']
    """

    def __init__(self, config: SimConfig) -> None:
        self._defaults = {
            "image_size_x": str(config.width), "image_size_y": str(config.height), "fov": str(float(config.fov)),
            "sensor_tick": "0.0", "role_name": "front",
        }

    def find(self, blueprint_id: str) -> ActorBlueprint:
        if blueprint_id not in CAMERA_BLUEPRINTS:
            raise SimError(f"unknown blueprint {blueprint_id!r}; valid: {', '.join(CAMERA_BLUEPRINTS)}")
        return ActorBlueprint(blueprint_id, self._defaults)

    def filter(self, pattern: str) -> list[ActorBlueprint]:
        return [self.find(b) for b in CAMERA_BLUEPRINTS if fnmatch.fnmatch(b, pattern)]

    def __iter__(self):
        return iter(self.filter("*"))

    def __len__(self) -> int:
        return len(CAMERA_BLUEPRINTS)


class CameraImage:
    """One sensor reading, as CARLA's ``carla.Image`` plus ``.array`` in our conventions.

    ``raw_data`` is BGRA bytes as CARLA sends them: colour for ``rgb``; the trainId in the R
    channel for ``semantic_segmentation``; for ``depth`` the CARLA encoding
    ``(R + G * 256 + B * 65536) / (256**3 - 1) * 1000`` metres. ``array`` gives (H, W, 3)
    uint8 RGB, (H, W) uint8 trainIds, or (H, W) float32 metres, read-only.

    Example:
        >>> im = CameraImage("sensor.camera.depth", 1, 0.1, 90.0, Transform(), np.full((2, 3), 1000.0, np.float32))
        >>> decode_depth(im.raw_data, 3, 2).tolist()
        [[1000.0, 1000.0, 1000.0], [1000.0, 1000.0, 1000.0]]
    """

    def __init__(self, kind: str, frame: int, timestamp: float, fov: float, transform: Transform,
                 array: np.ndarray) -> None:
        self.kind = kind
        self.frame = frame
        self.timestamp = timestamp
        self.height, self.width = array.shape[:2]
        self.fov = fov
        self.transform = transform
        self._array = array
        self._raw: bytes | None = None

    @property
    def array(self) -> np.ndarray:
        return self._array

    @property
    def raw_data(self) -> bytes:
        if self._raw is None:
            a = self._array
            bgra = np.empty((self.height, self.width, 4), np.uint8)  # (H, W, 4)
            bgra[..., 3] = 255
            if self.kind == "sensor.camera.rgb":
                bgra[..., 0] = a[..., 2]
                bgra[..., 1] = a[..., 1]
                bgra[..., 2] = a[..., 0]
            elif self.kind == "sensor.camera.semantic_segmentation":
                bgra[..., :3] = 0
                bgra[..., 2] = a
            else:
                code = np.round(np.clip(a / R.SKY_DEPTH, 0.0, 1.0) * (256**3 - 1)).astype(np.uint32)  # (H, W)
                bgra[..., 2] = code & 255
                bgra[..., 1] = (code >> 8) & 255
                bgra[..., 0] = (code >> 16) & 255
            self._raw = bgra.tobytes()
        return self._raw

    def __repr__(self) -> str:
        return f"CameraImage({self.kind}, frame={self.frame}, {self.width}x{self.height})"


def decode_depth(raw: bytes, width: int, height: int) -> np.ndarray:
    """Decode a CARLA depth image's BGRA bytes to metres.

    Shape:
        -> (height, width) float32
    """
    bgra = np.frombuffer(raw, np.uint8).reshape(height, width, 4).astype(np.float64)
    code = bgra[..., 2] + bgra[..., 1] * 256.0 + bgra[..., 0] * 65536.0
    return (code / (256**3 - 1) * R.SKY_DEPTH).astype(np.float32)


class Actor:
    """Base of the ego and the sensors (ids count per world).

    Example:
        >>> w = World(SimConfig(width=8, height=4)); w.ego.id, w.ego.is_alive
        (1, True)
    """

    def __init__(self, world: "World", type_id: str) -> None:
        self.id = world._new_actor_id()
        self.type_id = type_id
        self._world = world
        self.is_alive = True

    def destroy(self) -> bool:
        self.is_alive = False
        return True


class Vehicle(Actor):
    """The ego car. With its autopilot on (the default) the world drives it along its lane;
    with the autopilot off, :meth:`apply_control` steers it (closed loop: a kinematic bicycle
    model moves it across the road, and it can leave its lane or the road).

    Example:
        >>> w = World(SimConfig(width=8, height=4)); w.ego.get_velocity().y > 0  # heading roughly north
        True
        >>> w.ego.apply_control(VehicleControl(steer=0.1))
        Traceback (most recent call last):
        ...
        sim.world.SimError: apply_control: the ego's autopilot drives it; call ego.set_autopilot(False) first
        >>> w.ego.set_autopilot(False); w.ego.apply_control(VehicleControl(steer=0.1)); w.ego.get_control().steer
        0.1
    """

    def set_autopilot(self, enabled: bool = True) -> None:
        """On: the world keeps the ego in its lane. Off: :meth:`apply_control` steers it."""
        self._world._set_autopilot(bool(enabled))

    def apply_control(self, control: VehicleControl) -> None:
        """Steer the ego from the next tick on (its speed stays the world's)."""
        if not isinstance(control, VehicleControl):
            raise SimError(f"apply_control needs a sim.control.VehicleControl, got {type(control).__name__}")
        if self._world._autopilot:
            raise SimError("apply_control: the ego's autopilot drives it; call ego.set_autopilot(False) first")
        self._world._control = control

    def get_control(self) -> VehicleControl:
        return self._world._control

    def get_transform(self) -> Transform:
        x, y, h = self._world._ego_pose()
        return Transform(Location(x, y, 0.0), Rotation(yaw=math.degrees(h)))

    def get_location(self) -> Location:
        return self.get_transform().location

    def get_velocity(self) -> Vector3D:
        _, _, h = self._world._ego_pose()
        v = self._world._ego_speed
        return Vector3D(v * math.cos(h), v * math.sin(h), 0.0)


class Sensor(Actor):
    """A camera; ``listen(callback)`` gets a :class:`CameraImage` each tick.

    Example:
        >>> w = World(SimConfig(width=8, height=4))
        >>> cam = w.spawn_actor(w.get_blueprint_library().find("sensor.camera.depth"), attach_to=w.ego)
        >>> cam.listen(lambda image: None); cam.is_listening
        True
    """

    def __init__(self, world: "World", blueprint: ActorBlueprint, transform: Transform, parent: Actor | None) -> None:
        super().__init__(world, blueprint.id)
        self.attributes = {a.id: a.value for a in blueprint}
        self.width = int(float(self.attributes["image_size_x"]))
        self.height = int(float(self.attributes["image_size_y"]))
        self.fov = float(self.attributes["fov"])
        self.transform = transform
        self.parent = parent
        self._callback: Callable[[CameraImage], None] | None = None

    def listen(self, callback: Callable[[CameraImage], None]) -> None:
        if not callable(callback):
            raise SimError(f"Sensor.listen needs a callable, got {type(callback).__name__}")
        self._callback = callback

    def stop(self) -> None:
        self._callback = None

    @property
    def is_listening(self) -> bool:
        return self._callback is not None

    def destroy(self) -> bool:
        self.stop()
        self._world._remove_sensor(self)
        return super().destroy()

    def _key(self) -> tuple:
        loc, rot = self.transform.location, self.transform.rotation
        return (self.width, self.height, self.fov, self.parent is not None, loc.x, loc.y, loc.z, rot.pitch, rot.yaw)


# ---- the world ---------------------------------------------------------------------------------


class World:
    """The simulated world: a town, the ego on its route, traffic, weather and cameras.

    Example:
        >>> w = World(SimConfig(width=32, height=16), seed=1)
        >>> w.get_map().name, w.get_settings().synchronous_mode
        ('oldtown', True)
        >>> w.set_weather("fog"); w.get_weather().fog_density
        70.0
        >>> w.load_town("newtown").town
        'newtown'
    """

    def __init__(self, config: SimConfig | None = None, seed: int = 0) -> None:
        if config is None:
            config = SimConfig()
        if not isinstance(config, SimConfig):
            raise SimError(f"World config must be a SimConfig, got {type(config).__name__}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise SimError(f"World seed must be a non-negative int, got {seed!r}")
        self.config = config
        self.seed = int(seed)
        self._settings = WorldSettings(synchronous_mode=True, fixed_delta_seconds=config.fixed_delta_seconds)
        self._frame = 0
        self._elapsed = 0.0
        self._ego_clock = 0.0  # the ego's own time (its sway, wobble, speed wander): stands still when it rests
        self._stops = StopPlan(config.stop_every, config.stop_seconds, self.seed) if config.stop_every > 0 else None
        self._resting = False  # the ego stands still at a stop (its camera pose frozen)
        self._autopilot = True  # the world keeps the ego in its lane; off: apply_control steers (closed loop)
        self._control = VehicleControl()
        self._lat = 0.0  # closed loop: the ego's lateral position (m, left of the centreline)
        self._psi = 0.0  # closed loop: its heading relative to the route's (radians, counter-clockwise)
        self.driving = DrivingRecord()
        self._sensors: list[Sensor] = []
        self._loads = 0
        self._actor_ids = 0
        self.ego = Vehicle(self, "vehicle.odistill.ego")
        self._default_camera = Sensor(self, BlueprintLibrary(config).find("sensor.camera.rgb"),
                                      Transform(Location(x=config.camera_forward, z=config.camera_height)), self.ego)
        self._weather = get_weather(config.weather)
        self._apply_weather()
        self.town = ""
        self.load_town(config.town)

    def _new_actor_id(self) -> int:
        self._actor_ids += 1
        return self._actor_ids

    # ---- CARLA-style API ------------------------------------------------------------
    def get_settings(self) -> WorldSettings:
        return replace(self._settings)

    def apply_settings(self, settings: WorldSettings) -> int:
        if not isinstance(settings, WorldSettings):
            raise SimError(f"apply_settings needs a WorldSettings, got {type(settings).__name__}")
        dt = settings.fixed_delta_seconds
        if dt is not None and (not isinstance(dt, (int, float)) or isinstance(dt, bool) or not 0.0 < dt <= 1.0):
            raise SimError(f"WorldSettings.fixed_delta_seconds must be in (0, 1] seconds or None, got {dt!r}")
        if not settings.synchronous_mode:
            log.warning("the built-in world has no clock of its own: tick() still advances one fixed step")
        self._settings = replace(settings)
        return self._frame

    def get_weather(self) -> WeatherParameters:
        return self._weather

    def set_weather(self, weather: WeatherParameters | str) -> None:
        """Set the weather: a :class:`WeatherParameters` or a preset name (``'fog'``, ...)."""
        if isinstance(weather, str):
            weather = get_weather(weather)
        if not isinstance(weather, WeatherParameters):
            raise SimError(f"set_weather needs WeatherParameters or a preset name, got {type(weather).__name__}")
        self._weather = weather
        self._apply_weather()

    def get_map(self) -> Map:
        return Map(self.town)

    def get_blueprint_library(self) -> BlueprintLibrary:
        return BlueprintLibrary(self.config)

    def get_snapshot(self) -> WorldSnapshot:
        return WorldSnapshot(self._frame, Timestamp(self._frame, self._elapsed, self._dt()))

    def get_actors(self) -> list[Actor]:
        return [self.ego, *self._sensors]

    def spawn_actor(self, blueprint: ActorBlueprint, transform: Transform | None = None,
                    attach_to: Actor | None = None) -> Sensor:
        """Spawn a camera. ``attach_to=world.ego`` mounts it on the ego (``transform`` relative,
        CARLA axes); ``attach_to=None`` places it fixed in the world (our axes)."""
        if not isinstance(blueprint, ActorBlueprint) or blueprint.id not in CAMERA_BLUEPRINTS:
            raise SimError(f"spawn_actor: only camera blueprints can be spawned ({', '.join(CAMERA_BLUEPRINTS)}), "
                           f"got {blueprint!r}")
        if attach_to is not None and attach_to is not self.ego:
            raise SimError(f"spawn_actor: sensors can only be attached to the ego (world.ego), got {attach_to!r}")
        if transform is None:
            transform = Transform(Location(x=self.config.camera_forward, z=self.config.camera_height))
        if not isinstance(transform, Transform):
            raise SimError(f"spawn_actor: transform must be a Transform, got {type(transform).__name__}")
        sensor = Sensor(self, blueprint, transform, attach_to)
        self._sensors.append(sensor)
        return sensor

    def load_town(self, name: str) -> "World":
        """Load a fresh world of town ``name`` (new layout for each load; same seed, same worlds)."""
        style = get_town(name)
        ss = np.random.SeedSequence([self.seed, TOWN_NAMES.index(name), self._loads])
        self._loads += 1
        route_seed, scene_seed, ego_seed = ss.spawn(3)
        self.town = name
        self.style: TownStyle = style
        self.route = Route(style, route_seed)
        self.scene = SceneGenerator(self.route, style, scene_seed, self.config.traffic_density,
                                    self.config.pedestrian_density, self.config.ego_speed)
        self.traffic = Traffic()
        rng = np.random.default_rng(ego_seed)
        lane = int(rng.integers(style.lanes_per_side))
        self._ego_lane = -(style.median_width / 2 + (lane + 0.5) * style.lane_width)
        self._lat, self._psi = self._ego_lane, 0.0  # a new town: the car starts on its lane's centre
        self.driving.in_lane = True
        self._ego_s = 30.0
        self._ego_speed = 0.0 if self._resting else self.config.ego_speed  # a rest goes on in the new town
        self._ego_phase = rng.uniform(0.0, 2 * math.pi, 4)
        self._chunks: deque[Chunk] = deque()
        self._next_chunk = 0
        self._static: tuple[np.ndarray, ...] | None = None
        self._palette = np.zeros(R.PALETTE_SIZE)
        self._palette[R.P_GRASS_A : R.P_GRASS_A + 3] = srgb_to_linear(style.grass[0])
        self._palette[R.P_GRASS_B : R.P_GRASS_B + 3] = srgb_to_linear(style.grass[1])
        self._palette[R.P_ASPHALT : R.P_ASPHALT + 3] = srgb_to_linear(style.asphalt)
        self._palette[R.P_ROOF : R.P_ROOF + 3] = srgb_to_linear(style.roof_colour)
        self._update_chunks(initial=True)
        log.debug("loaded %s (load %d, seed %d)", name, self._loads, self.seed)
        return self

    def tick(self, seconds: float = 10.0) -> int:
        """Advance one fixed step, render for the listening cameras, return the frame number.

        ``seconds`` is CARLA's network timeout, accepted and unused here.
        """
        dt = self._dt()
        self._step(dt)
        self._frame += 1
        self._elapsed += dt
        if not self._resting:
            self._ego_clock += dt
        self._render_sensors()
        return self._frame

    @property
    def frame(self) -> int:
        return self._frame

    @property
    def elapsed_seconds(self) -> float:
        return self._elapsed

    @property
    def ego_stopped(self) -> bool:
        """True while the ego stands still at a stop (``SimConfig.stop_every``): the camera's
        pose is the same every frame; traffic, pedestrians and weather still move."""
        return self._resting

    @property
    def stops_made(self) -> int:
        """Stops (rests) begun so far (``SimConfig.stop_every``; 0 without stops)."""
        return 0 if self._stops is None else self._stops.stops

    # ---- simulation --------------------------------------------------------------------
    def _dt(self) -> float:
        dt = self._settings.fixed_delta_seconds
        return float(dt) if dt else self.config.fixed_delta_seconds

    def _apply_weather(self) -> None:
        self._env = environment(self._weather)
        self._lut = tone_lut(self._weather)
        self._lights = lights_on(self._weather) > 0.0

    def _ego_lat(self) -> float:
        if not self._autopilot:
            return self._lat
        return self._ego_lane + 0.15 * math.sin(self._ego_clock * 0.7 + self._ego_phase[0])

    def _ego_pose(self) -> tuple[float, float, float]:
        x, y, h = self.route.point(np.array([self._ego_s]), self._ego_lat())
        return float(x[0]), float(y[0]), float(h[0]) + (0.0 if self._autopilot else self._psi)

    def _set_autopilot(self, enabled: bool) -> None:
        if not enabled and self._autopilot:  # take over where the autopilot has the car now
            self._lat, self._psi = self._ego_lat(), 0.0
        self._autopilot = enabled
        self._control = VehicleControl()

    def lane_guide(self) -> LaneGuide:
        """Where the ego's lane lies across its drivable span (the whole road, or its own
        carriageway where a median splits the road): the map's knowledge a lane keeper
        steers by (see :mod:`sim.control`).

        Example:
            >>> g = World(SimConfig(width=8, height=4, town="oldtown")).lane_guide()
            >>> g.target_offset_m, g.span_width_m
            (-1.55, 10.6)
        """
        style = self.style
        if style.median_width > 0:  # the car's own carriageway, right of the median
            centre = -(style.median_width / 2 + style.road_half_width) / 2
            span = style.road_half_width - style.median_width / 2
        else:
            centre, span = 0.0, 2 * style.road_half_width
        return LaneGuide(round(self._ego_lane - centre, 6), round(span, 6), style.lane_width)

    def _steer_step(self, dt: float) -> None:
        """Closed loop: move the car across the road by a kinematic bicycle model, and keep
        the driving record (lane departures, off the road, clearance to other cars)."""
        v = self._ego_speed
        wheel = -math.radians(MAX_STEER_DEG) * self._control.steer  # CARLA's steer > 0 turns right (clockwise)
        self._psi += v * (math.tan(wheel) / WHEELBASE_M - self.route.curvature(self._ego_s)) * dt
        self._psi = (self._psi + math.pi) % (2 * math.pi) - math.pi
        self._lat += v * math.sin(self._psi) * dt
        style = self.style
        wall = style.road_half_width + 4.0  # past the sidewalk: the car stops against the kerb stones
        if abs(self._lat) > wall:
            self._lat = math.copysign(wall, self._lat)
            self._psi = 0.0
        record = self.driving
        record.controlled_frames += 1
        half_width = EGO_WIDTH_M / 2
        off_road = abs(self._lat) + half_width > style.road_half_width or (
            style.median_width > 0 and abs(self._lat) - half_width < style.median_width / 2)
        if off_road:
            record.seconds_off_road += dt
        offset = abs(self._lat - self._ego_lane)
        record.max_lane_offset_m = max(record.max_lane_offset_m, offset)
        in_lane = offset <= style.lane_width / 2
        if not in_lane:
            record.seconds_out_of_lane += dt
            if record.in_lane:
                record.lane_departures += 1
        record.in_lane = in_lane
        clearance = self._car_clearance()
        if clearance is not None:
            record.min_car_clearance_m = clearance if record.min_car_clearance_m is None else min(record.min_car_clearance_m, clearance)

    def _car_clearance(self) -> float | None:
        """The gap between the ego's footprint and the nearest other car's (metres), both
        taken as aligned with the ego; None when no car is within 50 m."""
        cars = self.traffic.cars
        if not len(cars):
            return None
        x, y, _ = self.traffic.world_cars(self.route)
        ex, ey, eh = self._ego_pose()
        dx, dy = x - ex, y - ey
        near = dx * dx + dy * dy < 50.0 ** 2
        if not near.any():
            return None
        forward = np.abs(dx[near] * math.cos(eh) + dy[near] * math.sin(eh))  # (N,)
        side = np.abs(-dx[near] * math.sin(eh) + dy[near] * math.cos(eh))  # (N,)
        gap_long = forward - 0.5 * (EGO_LENGTH_M + cars[near, A.C_LEN])
        gap_side = side - 0.5 * (EGO_WIDTH_M + cars[near, A.C_WID])
        return float(max(0.0, np.maximum(gap_long, gap_side).min()))

    def _step(self, dt: float) -> None:
        cfg = self.config
        t = self._ego_clock
        ph = self._ego_phase
        stopping = self._stops is not None and self._stops.stopping(self._elapsed)
        v_des = cfg.ego_speed + cfg.ego_speed_variation * (0.7 * math.sin(t * 0.17 + ph[1]) + 0.3 * math.sin(t * 0.5 + ph[2]))
        v_des *= 1.0 - min(0.3, 5.0 * abs(self.route.curvature(self._ego_s)))
        limit = self.traffic.ego_limit(self._ego_s, self._ego_lat(), self.style.road_half_width)
        target = 0.0 if stopping else min(v_des, limit)
        self._ego_speed = float(np.clip(target, self._ego_speed - 6.0 * dt, self._ego_speed + 2.0 * dt))
        self._ego_speed = max(0.0, self._ego_speed)
        if stopping and self._ego_speed == 0.0:
            self._stops.came_to_rest(self._elapsed)
        self._resting = self._stops is not None and self._stops.resting(self._elapsed)
        if self._autopilot:
            self._ego_s += self._ego_speed * dt
        else:
            self._steer_step(dt)
            self._ego_s += self._ego_speed * math.cos(self._psi) * dt
        self.traffic.step(dt, self._ego_s, self._ego_lat(), self.style.road_half_width, self.style.lane_width)
        self._update_chunks()

    def _update_chunks(self, initial: bool = False) -> None:
        changed = False
        while self._next_chunk * CHUNK_LENGTH < self._ego_s + self.config.draw_distance:
            chunk = self.scene.generate(self._next_chunk)
            self._next_chunk += 1
            cars, peds = chunk.cars, chunk.peds
            if initial and len(cars):  # no car spawned on top of the ego
                far = (cars[:, A.C_KIND] != 0) | (np.abs(cars[:, A.C_POS] - self._ego_s) > 15.0)
                cars = cars[far]
            self.traffic.add(cars, peds)
            self._chunks.append(chunk)
            changed = True
        while self._chunks and self._chunks[0].s1 < self._ego_s - 30.0:
            self._chunks.popleft()
            changed = True
        if changed:
            self._static = None
            self.traffic.prune(self._ego_s, self.config.draw_distance + 150.0)

    def _static_tables(self) -> tuple[np.ndarray, ...]:
        if self._static is None:
            chunks = list(self._chunks)
            dv = np.concatenate([c.decal_verts for c in chunks])
            da = np.concatenate([c.decal_attr for c in chunks])
            order = np.argsort(da[:, R.D_LAYER], kind="stable")
            self._static = (
                np.ascontiguousarray(dv[order]), np.ascontiguousarray(da[order]),
                np.concatenate([c.boxes for c in chunks]), np.ascontiguousarray(np.concatenate([c.spheres for c in chunks])),
                np.ascontiguousarray(np.concatenate([c.lamps for c in chunks])),
            )
        return self._static

    # ---- rendering -----------------------------------------------------------------------
    def camera_pose(self, sensor: Sensor) -> tuple[tuple[float, float, float], float, float]:
        """World position, yaw and pitch (radians) of a camera now."""
        loc, rot = sensor.transform.location, sensor.transform.rotation
        if sensor.parent is None:
            return (loc.x, loc.y, loc.z), math.radians(rot.yaw), math.radians(rot.pitch)
        x, y, h = self._ego_pose()
        t = self._ego_clock
        ph = self._ego_phase
        c, s = math.cos(h), math.sin(h)
        px = x + c * loc.x + s * loc.y  # CARLA y is to the right
        py = y + s * loc.x - c * loc.y
        yaw = h - math.radians(rot.yaw) + 0.008 * math.sin(t * 0.9 + ph[3])
        pitch = math.radians(rot.pitch) + 0.003 * math.sin(t * 7.0 + ph[0]) * min(1.0, self._ego_speed / 5.0)
        return (px, py, loc.z), yaw, pitch

    def render(self, sensor: Sensor | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render the current state for a camera (default: a config-sized camera on the ego).

        Returns read-only (image (H, W, 3) uint8 RGB, label (H, W) uint8, depth (H, W) float32).
        """
        if sensor is None:
            sensor = self._default_camera
        pos, yaw, pitch = self.camera_pose(sensor)
        cam = R.camera_array(pos, yaw, pitch, sensor.width, sensor.height, sensor.fov,
                             far=self.config.draw_distance * 1.6)
        dv, da, static_boxes, spheres, lamps = self._static_tables()
        dyn = self.traffic.boxes(self.route, self._lights)
        boxes = np.concatenate([static_boxes, dyn]) if len(dyn) else static_boxes
        ex, ey, eh = self._ego_pose()
        tilt = math.radians(-3.0)
        head = np.array([ex + 2.2 * math.cos(eh), ey + 2.2 * math.sin(eh), 0.7,
                         math.cos(tilt) * math.cos(eh), math.cos(tilt) * math.sin(eh), math.sin(tilt)])
        h, w = sensor.height, sensor.width
        zbuf = np.empty((h, w), np.float32)
        ids = np.empty((h, w), np.int32)
        rgb = np.empty((h, w, 3), np.uint8)
        label = np.empty((h, w), np.uint8)
        depth = np.empty((h, w), np.float32)
        R.rasterize(cam, dv, da, boxes, spheres, zbuf, ids)
        frame_seed = (self.seed * 1000003 + self._frame * 7919 + 17) & 0x3FFFFFFF
        R.shade(cam, self._env, self._palette, self._lut, ids, zbuf, da, boxes, spheres, lamps, head, self._elapsed,
                frame_seed, rgb, label, depth)
        for a in (rgb, label, depth):
            a.setflags(write=False)
        return rgb, label, depth

    def _render_sensors(self) -> None:
        groups: dict[tuple, list[Sensor]] = {}
        for s in self._sensors:
            if s.is_listening:
                groups.setdefault(s._key(), []).append(s)
        for members in groups.values():
            rgb, label, depth = self.render(members[0])
            pos, yaw, pitch = self.camera_pose(members[0])
            transform = Transform(Location(*pos), Rotation(pitch=math.degrees(pitch), yaw=math.degrees(yaw)))
            for s in members:
                arr = rgb if s.type_id == "sensor.camera.rgb" else label if s.type_id.endswith("segmentation") else depth
                image = CameraImage(s.type_id, self._frame, self._elapsed, s.fov, transform, arr)
                if s._callback is not None:
                    s._callback(image)

    def _remove_sensor(self, sensor: Sensor) -> None:
        if sensor in self._sensors:
            self._sensors.remove(sensor)


class Client:
    """CARLA's ``Client`` shape for the built-in world: ``get_world``, ``load_world``.

    Example:
        >>> c = Client(SimConfig(width=32, height=16), seed=0)
        >>> c.load_world("newtown").get_map().name, c.get_available_maps()
        ('newtown', ['newtown', 'oldtown'])
    """

    def __init__(self, config: SimConfig | None = None, seed: int = 0) -> None:
        self._world = World(config, seed)

    def get_world(self) -> World:
        return self._world

    def load_world(self, name: str) -> World:
        return self._world.load_town(name)

    def get_available_maps(self) -> list[str]:
        return list(TOWN_NAMES)

    def set_timeout(self, seconds: float) -> None:
        """Accepted for compatibility; nothing here can time out."""


__all__ = [
    "ActorBlueprint", "BlueprintLibrary", "CameraImage", "Client", "Location", "Rotation", "SimConfig", "SimError",
    "Transform", "World", "WorldSettings", "decode_depth",
]
