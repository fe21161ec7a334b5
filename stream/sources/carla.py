"""A CARLA server as a stream source: ``carla:HOST[:PORT]?town=...&weather=...``.

:class:`CarlaSource` is :class:`~stream.sources.sim.SimSource` over a real CARLA server: it
connects with the ``carla`` client package (the optional extra ``pip install 'odistill[carla]'``,
whose version must match the server's), puts the world in synchronous mode with
``fixed_delta_seconds = 1 / fps`` (the traffic manager too), spawns an ego vehicle on autopilot
and mounts three cameras on it with one transform, size and field of view -- RGB, semantic
segmentation and depth -- each listening into its own queue. Every ``world.tick()`` returns a
frame number, and each camera's queue is read until an image of that very frame comes (older
images are dropped and counted as ``stale_images``; a camera with none within ``timeout`` is
an error naming it). On close, and when anything fails, the cameras and the ego are destroyed
and the server's settings are put back as they were found.

The conversions are small pure functions on CARLA's raw buffers (BGRA bytes, 4 a pixel):
:func:`bgra_to_rgb` (the RGB camera), :func:`tags_to_canonical` (the semantic camera's tag in
the R channel, mapped into the canonical label space by :data:`CARLA_TO_CANONICAL`) and
:func:`decode_carla_depth` (``(R + 256 G + 65536 B) / (256**3 - 1)`` of :data:`CARLA_FAR_PLANE`
metres). :func:`resolve_weather` reads a weather given as a CARLA preset (``HardRainNight``)
or one of our weather domains (``rain``), and says which of our domains it is; a frame's
``meta["domain"]`` is ``"<our weather>@<CARLA town>"``, as the built-in world's are.

``import carla`` happens only when a source connects: this module imports without it. Tests
pass ``client_module=`` (any object shaped like the ``carla`` module) to run the whole live
path without a server.

Example:
    >>> raw = bytes([30, 20, 10, 255,  0, 0, 24, 255])  # two BGRA pixels: colour (10, 20, 30); tag 24 in R
    >>> bgra_to_rgb(raw, 2, 1).tolist()
    [[[10, 20, 30], [24, 0, 0]]]
    >>> tags_to_canonical(raw, 2, 1).tolist()  # read as tags: 10 terrain, 24 road line (-> road)
    [[9, 0]]
    >>> decode_carla_depth(bytes([0, 0, 0, 0,  255, 255, 255, 255]), 2, 1).tolist()  # 0 m, the far plane
    [[0.0, 1000.0]]
    >>> resolve_weather("HardRainNight"), resolve_weather("rain"), resolve_weather("fog")
    (('night', 'HardRainNight'), ('rain', 'HardRainNoon'), ('fog', None))
    >>> parse_address("localhost"), parse_address("10.0.0.5:3000")
    (('localhost', 2000), ('10.0.0.5', 3000))
"""
from __future__ import annotations

import logging
import math
import queue
import random
import time
from dataclasses import dataclass, fields
from typing import Any, Iterator

import numpy as np

from perception.labels import CLASS_ID, IGNORE_INDEX
from stream.frame import Frame
from stream.sources.base import IterateOnce, SourceError

log = logging.getLogger(__name__)

DEFAULT_PORT = 2000  # CarlaUE4's default RPC port
CLIENT_VERSION = "0.9.16"  # the client the extra installs; the server must be this version
CARLA_FAR_PLANE = 1000.0  # metres: CARLA's depth camera encodes [0, 1] of this distance

# CARLA's semantic tags (0.9.14 and later; LibCarla's CityObjectLabel) -> canonical trainIds.
# Tags 1..19 are the Cityscapes classes in Cityscapes' order, one to one. Of CARLA's own tags,
# road lines are labelled road (Cityscapes paints lane markings as road); the others are
# classes Cityscapes also has and leaves out of its 19 (static, dynamic, ground, bridge, rail
# track, guard rail: "void" or ignored there) or has no class for (unlabeled, other, water),
# so they are ignored (255): a prediction there is neither right nor wrong.
CARLA_TAG_NAMES: tuple[str, ...] = (
    "unlabeled", "road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign",
    "vegetation", "terrain", "sky", "pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle", "static", "dynamic", "other", "water", "road_line", "ground", "bridge", "rail_track", "guard_rail",
)
CARLA_TAG_TO_CLASS: dict[str, str | None] = {
    "unlabeled": None, "road": "road", "sidewalk": "sidewalk", "building": "building", "wall": "wall",
    "fence": "fence", "pole": "pole", "traffic_light": "traffic_light", "traffic_sign": "traffic_sign",
    "vegetation": "vegetation", "terrain": "terrain", "sky": "sky", "pedestrian": "person", "rider": "rider",
    "car": "car", "truck": "truck", "bus": "bus", "train": "train", "motorcycle": "motorcycle", "bicycle": "bicycle",
    "static": None,  # Cityscapes "static": void
    "dynamic": None,  # Cityscapes "dynamic": void
    "other": None,  # anything CARLA did not classify
    "water": None,  # no canonical class
    "road_line": "road",  # lane markings are road in Cityscapes
    "ground": None,  # Cityscapes "ground": void
    "bridge": None,  # Cityscapes "bridge": ignored
    "rail_track": None,  # Cityscapes "rail track": ignored
    "guard_rail": None,  # Cityscapes "guard rail": ignored
}


def _tag_table() -> np.ndarray:
    table = np.full(256, IGNORE_INDEX, np.uint8)  # (256,) tags past 28 (none yet) are ignored too
    for tag, name in enumerate(CARLA_TAG_NAMES):
        target = CARLA_TAG_TO_CLASS[name]
        if target is not None:
            table[tag] = CLASS_ID[target]
    return table


CARLA_TO_CANONICAL = _tag_table()  # (256,) uint8: CARLA tag -> canonical trainId or 255

# CARLA's weather presets (0.9.16; ``Default``, the map's own weather, is left out: its domain
# is unknown) -> our weather domain. The light decides first: every *Night preset is night,
# rain or not (the scene is lit by lamps either way). By day and at sunset falling rain
# (Soft/Mid/HardRain) makes rain; puddles alone (Wet*) and clouds do not, so those are
# clear by day and dusk at sunset. A dust storm hides the distance as fog does: fog.
CARLA_WEATHER_DOMAINS: dict[str, str] = {
    "ClearNoon": "clear", "CloudyNoon": "clear", "WetNoon": "clear", "WetCloudyNoon": "clear",
    "SoftRainNoon": "rain", "MidRainyNoon": "rain", "HardRainNoon": "rain",
    "ClearSunset": "dusk", "CloudySunset": "dusk", "WetSunset": "dusk", "WetCloudySunset": "dusk",
    "SoftRainSunset": "rain", "MidRainSunset": "rain", "HardRainSunset": "rain",
    "ClearNight": "night", "CloudyNight": "night", "WetNight": "night", "WetCloudyNight": "night",
    "SoftRainNight": "night", "MidRainyNight": "night", "HardRainNight": "night",
    "DustStorm": "fog",
}
# Our weather domains -> the CARLA preset that stands for each. CARLA has no fog preset, so
# ``fog`` is :data:`FOG_PARAMETERS` set on the server (None here); it has no snow at all.
DOMAIN_PRESETS: dict[str, str | None] = {
    "clear": "ClearNoon", "dusk": "ClearSunset", "night": "ClearNight", "rain": "HardRainNoon", "fog": None,
}
# ``weather=fog``: overcast day with dense ground fog, close to the built-in world's fog preset
# (sim.weather: density 70, from 2 m). Chosen by those numbers, not tuned on CARLA's renderer.
FOG_PARAMETERS: dict[str, float] = {
    "cloudiness": 90.0, "precipitation": 0.0, "precipitation_deposits": 0.0, "wind_intensity": 10.0,
    "sun_azimuth_angle": 0.0, "sun_altitude_angle": 40.0, "fog_density": 70.0, "fog_distance": 2.0,
    "fog_falloff": 1.0, "wetness": 10.0,
}

CAMERAS: tuple[tuple[str, str], ...] = (  # (our name, CARLA blueprint), one of each on the ego
    ("rgb", "sensor.camera.rgb"),
    ("semantic", "sensor.camera.semantic_segmentation"),
    ("depth", "sensor.camera.depth"),
)


# ---------------------------------------------------------------------------------------- conversions

def _bgra(raw: Any, width: int, height: int, sensor: str) -> np.ndarray:
    """A CARLA image buffer as an (H, W, 4) uint8 BGRA view, its size checked."""
    buffer = np.frombuffer(raw, np.uint8)  # (H * W * 4,) no copy
    expected = width * height * 4
    if buffer.size != expected:
        raise SourceError(f"carla {sensor} camera: the image buffer has {buffer.size} bytes, expected "
                          f"{expected} ({width}x{height} BGRA pixels of 4 bytes)")
    return buffer.reshape(height, width, 4)  # (H, W, 4)


def bgra_to_rgb(raw: Any, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
    """The RGB camera's BGRA bytes -> (height, width, 3) uint8 RGB (into ``out`` when given).

    Example:
        >>> bgra_to_rgb(bytes([1, 2, 3, 255]), 1, 1).tolist()
        [[[3, 2, 1]]]
        >>> bgra_to_rgb(bytes(12), 2, 2)
        Traceback (most recent call last):
        ...
        stream.sources.base.SourceError: carla rgb camera: the image buffer has 12 bytes, expected 16 (2x2 BGRA pixels of 4 bytes)
    """
    bgra = _bgra(raw, width, height, "rgb")  # (H, W, 4)
    if out is None:
        return np.ascontiguousarray(bgra[..., 2::-1])  # (H, W, 3) R, G, B
    np.copyto(out, bgra[..., 2::-1])
    return out


def tags_to_canonical(raw: Any, width: int, height: int) -> np.ndarray:
    """The semantic camera's BGRA bytes (CARLA's tag in R, byte 2 of each pixel) -> (height,
    width) uint8 canonical trainIds, 255 where the tag has no canonical class.

    Example:
        >>> tags_to_canonical(bytes([0, 0, 12, 255,  0, 0, 11, 255,  0, 0, 20, 255]), 3, 1).tolist()  # pedestrian, sky, static
        [[11, 10, 255]]
    """
    tags = _bgra(raw, width, height, "semantic segmentation")[..., 2]  # (H, W)
    return CARLA_TO_CANONICAL[tags]  # (H, W) uint8


def decode_carla_depth(raw: Any, width: int, height: int) -> np.ndarray:
    """The depth camera's BGRA bytes -> (height, width) float32 metres:
    ``(R + 256 G + 65536 B) / (256**3 - 1) * 1000``.

    Example:
        >>> depth = decode_carla_depth(bytes([0, 2, 1, 255]), 1, 1)  # R = 1, G = 2: 513 / 16777215 of 1000 m
        >>> depth.shape, depth.dtype.name, round(float(depth[0, 0]), 4)
        ((1, 1), 'float32', 0.0306)
    """
    bgra = _bgra(raw, width, height, "depth")  # (H, W, 4)
    code = bgra[..., 2].astype(np.uint32) | (bgra[..., 1].astype(np.uint32) << 8) | (bgra[..., 0].astype(np.uint32) << 16)  # (H, W)
    return (code * (CARLA_FAR_PLANE / (256**3 - 1))).astype(np.float32)  # (H, W) metres


def resolve_weather(name: str) -> tuple[str, str | None]:
    """A weather as a CARLA preset or one of our domains -> (our domain, CARLA preset to set;
    None for ``fog``, which is set as :data:`FOG_PARAMETERS`).

    Example:
        >>> resolve_weather("CloudySunset"), resolve_weather("night")
        (('dusk', 'CloudySunset'), ('night', 'ClearNight'))
        >>> resolve_weather("snow")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stream.sources.base.SourceError: weather 'snow': CARLA has no snow; valid weathers: clear, dusk, night, rain, fog, ClearNoon, ...
    """
    if name in CARLA_WEATHER_DOMAINS:
        return CARLA_WEATHER_DOMAINS[name], name
    if name in DOMAIN_PRESETS:
        return name, DOMAIN_PRESETS[name]
    valid = ", ".join([*DOMAIN_PRESETS, *CARLA_WEATHER_DOMAINS])
    why = "CARLA has no snow" if name == "snow" else "unknown weather"
    raise SourceError(f"weather {name!r}: {why}; valid weathers: {valid}")


def weather_parameters(module: Any, name: str) -> Any:
    """The ``carla.WeatherParameters`` to set for a weather name (see :func:`resolve_weather`)."""
    _, preset = resolve_weather(name)
    if preset is None:
        return module.WeatherParameters(**FOG_PARAMETERS)
    return getattr(module.WeatherParameters, preset)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); the port defaults to 2000.

    Example:
        >>> parse_address("[::1]:2001"), parse_address("sim-box:2000")
        (('::1', 2001), ('sim-box', 2000))
        >>> parse_address("localhost:abc")
        Traceback (most recent call last):
        ...
        stream.sources.base.SourceError: carla:localhost:abc: the port must be an integer in [1, 65535], got 'abc'
    """
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise SourceError(f"carla:{text}: give the server's address, e.g. carla:localhost:{DEFAULT_PORT}")
    if not port:
        return host, DEFAULT_PORT
    return host, _integer(port, "the port", 1, 65535, f"carla:{text}")


def _integer(value: Any, what: str, lo: int, hi: int, where: str) -> int:
    try:
        number = float(value)
        ok = number == int(number) and lo <= number <= hi and not isinstance(value, bool)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise SourceError(f"{where}: {what} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(number)


def _real(value: Any, what: str, lo: float, hi: float, where: str) -> float:
    try:
        number = float(value)
        ok = math.isfinite(number) and lo <= number <= hi and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SourceError(f"{where}: {what} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return number


# ---------------------------------------------------------------------------------------- the source

@dataclass(frozen=True)
class CarlaConfig:
    """Settings of a CARLA source; every field but ``host`` and ``port`` (the spec's address)
    is also a ``?option`` of the spec. Values may be strings, as options come.

    Example:
        >>> c = CarlaConfig(town="Town01", weather="WetNoon", width="64", fps="20")
        >>> c.width, c.fixed_delta_seconds, c.domain_weather, c.address
        (64, 0.05, 'clear', 'localhost:2000')
        >>> CarlaConfig(fov=0)
        Traceback (most recent call last):
        ...
        stream.sources.base.SourceError: carla:localhost:2000: fov must be a number in [1, 170], got 0
    """

    host: str = "localhost"
    port: int = DEFAULT_PORT
    town: str | None = None  # a map to load (Town10HD_Opt, ...) when another one is loaded; None: keep the server's
    weather: str = "ClearNoon"  # a CARLA preset or one of our domains (clear, dusk, night, rain, fog)
    width: int = 256  # camera image width (pixels)
    height: int = 128  # camera image height (pixels)
    fov: float = 90.0  # horizontal field of view (degrees)
    fps: float = 10.0  # simulation steps per second: fixed_delta_seconds = 1 / fps
    timeout: float = 10.0  # seconds: for the server to answer a call, and for each camera's image of a tick
    vehicle: str = "vehicle.*"  # blueprint pattern of the ego (a four-wheeled one, chosen by the seed)
    tm_port: int = 8000  # the traffic manager's port
    camera_forward: float = 1.5  # camera ahead of the car's centre (metres)
    camera_height: float = 1.6  # camera above the ground (metres)

    def __post_init__(self) -> None:
        where = f"carla:{self.host}:{self.port}"
        set_ = object.__setattr__
        set_(self, "port", _integer(self.port, "the port", 1, 65535, f"carla:{self.host}:{self.port}"))
        set_(self, "tm_port", _integer(self.tm_port, "tm_port", 1, 65535, where))
        set_(self, "width", _integer(self.width, "width", 1, 8192, where))
        set_(self, "height", _integer(self.height, "height", 1, 8192, where))
        set_(self, "fov", _real(self.fov, "fov", 1.0, 170.0, where))
        set_(self, "fps", _real(self.fps, "fps", 1.0, 1000.0, where))
        set_(self, "timeout", _real(self.timeout, "timeout", 0.01, 3600.0, where))
        set_(self, "camera_forward", _real(self.camera_forward, "camera_forward", -10.0, 10.0, where))
        set_(self, "camera_height", _real(self.camera_height, "camera_height", -5.0, 20.0, where))
        set_(self, "town", (self.town.strip() or None) if isinstance(self.town, str) else self.town)
        if not isinstance(self.vehicle, str) or not self.vehicle.strip():
            raise SourceError(f"{where}: vehicle must be a blueprint pattern such as vehicle.*, got {self.vehicle!r}")
        try:
            resolve_weather(self.weather)
        except SourceError as err:
            raise SourceError(f"{where}: {err}") from None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def fixed_delta_seconds(self) -> float:
        return 1.0 / self.fps

    @property
    def domain_weather(self) -> str:
        """The weather as one of our domains (``clear``, ``dusk``, ``night``, ``rain``, ``fog``)."""
        return resolve_weather(self.weather)[0]


def load_carla(where: str = "carla") -> Any:
    """The ``carla`` client module (imported here, never at module import); ``where`` names
    the source in the error when the package is missing."""
    try:
        import carla
    except ImportError as err:
        raise SourceError(f"{where}: the CARLA client package is not installed ({err}): pip install 'odistill[carla]' "
                          f"(carla=={CLIENT_VERSION}; its version must match the server's)") from None
    return carla


def _town_name(map_name: str) -> str:
    """``Carla/Maps/Town10HD_Opt`` (how newer servers name maps) -> ``Town10HD_Opt``."""
    return map_name.rstrip("/").rsplit("/", 1)[-1]


class CarlaSource(IterateOnce):
    """Frames from a CARLA server in synchronous mode: RGB, canonical label and depth a tick.

    Args:
        config: the server's address, town, weather, cameras and timeouts.
        frames: frames to deliver (one world tick each).
        seed: chooses the ego's blueprint and spawn point, and seeds the traffic manager.
        client_module: the ``carla`` module or anything shaped like it (tests); None imports ``carla``.

    Connecting happens here: an unreachable server raises :class:`SourceError` naming it.
    The world is put into synchronous mode and the ego spawned when iteration starts.
    ``meta`` of each frame: ``domain`` (``"<our weather>@<town>"``), ``weather`` (our domain),
    ``carla_weather`` (the weather as given), ``town`` and ``sim_frame`` (CARLA's frame
    number). ``true_shifts`` is empty: the weather and town stay as set for the whole run.

    Example:
        >>> CarlaSource(CarlaConfig(), frames=0)
        Traceback (most recent call last):
        ...
        stream.sources.base.SourceError: carla:localhost:2000: frames must be a positive int, got 0
    """

    def __init__(self, config: CarlaConfig | None = None, frames: int = 3600, seed: int = 0,
                 client_module: Any = None) -> None:
        config = CarlaConfig() if config is None else config
        if not isinstance(config, CarlaConfig):
            raise SourceError(f"CarlaSource config must be a CarlaConfig, got {type(config).__name__}")
        self.source_id = f"carla:{config.address}"
        if not isinstance(frames, int) or isinstance(frames, bool) or frames <= 0:
            raise SourceError(f"{self.source_id}: frames must be a positive int, got {frames!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise SourceError(f"{self.source_id}: seed must be a non-negative int, got {seed!r}")
        self.config = config
        self.frames = frames
        self.seed = seed
        self.weather, _ = resolve_weather(config.weather)
        self.events: list[dict[str, Any]] = []
        self._counts = {"frames_read": 0, "frames_skipped": 0, "stale_images": 0, "towns_loaded": 0}
        self._started = False
        self._closed = False
        self._sensors: list[Any] = []
        self._queues: dict[str, queue.Queue] = {}
        self._ego: Any = None
        self._traffic_manager: Any = None
        self._original_settings: Any = None  # the server's settings before we changed them
        self._world: Any = None
        self._carla = load_carla(self.source_id) if client_module is None else client_module
        self._client = self._connect()
        self.town = _town_name(self._call("read the map", lambda: self._world.get_map().name))

    # --- the Source contract ----------------------------------------------------------------
    @property
    def true_shifts(self) -> list[int]:
        return []

    def stats(self) -> dict[str, int]:
        """Counters: frames_read, frames_skipped, stale_images (images of an earlier tick
        dropped while matching frames), towns_loaded."""
        return dict(self._counts)

    def close(self) -> None:
        """Destroy the cameras and the ego, put the server's settings back; safe to call twice."""
        self._closed = True
        self._teardown()

    # --- the server -------------------------------------------------------------------------
    def _call(self, what: str, call: Any) -> Any:
        """Run one call to the server; its RuntimeError (time-out, lost connection) becomes a
        :class:`SourceError` naming the server and what was being done."""
        try:
            return call()
        except RuntimeError as err:
            raise SourceError(f"{self.source_id}: could not {what}: {err}") from None

    def _connect(self) -> Any:
        """The client, once the server has answered; sets ``_world`` (loading ``town`` if asked)."""
        cfg = self.config
        try:
            client = self._carla.Client(cfg.host, cfg.port)
            client.set_timeout(cfg.timeout)
            world = client.get_world()  # the first call that reaches the server
        except RuntimeError as err:
            raise SourceError(
                f"{self.source_id}: the CARLA server at {cfg.address} did not answer within {cfg.timeout:g} s ({err}); "
                f"is CarlaUE4 running there (its -carla-rpc-port), and reachable from here?"
            ) from None
        self._world = world
        server, ours = self._call("ask the server's version", client.get_server_version), client.get_client_version()
        if server != ours:
            log.warning("%s: the server is CARLA %s but the client package is %s: versions must match",
                        self.source_id, server, ours)
        if cfg.town is not None:
            current = _town_name(self._call("read the map", lambda: world.get_map().name))
            if current != cfg.town:
                towns = sorted(_town_name(m) for m in self._call("list the maps", client.get_available_maps))
                if cfg.town not in towns:
                    raise SourceError(f"{self.source_id}: unknown town {cfg.town!r}; the server has: {', '.join(towns)}")
                self._original_settings = self._call("read the settings", world.get_settings)
                log.info("%s: loading %s (was %s)", self.source_id, cfg.town, current)
                self._world = self._call(f"load {cfg.town}", lambda: client.load_world(cfg.town))
                self._counts["towns_loaded"] += 1
        return client

    def _start(self) -> None:
        """Synchronous mode, weather, the ego on autopilot, and its three cameras."""
        cfg, world = self.config, self._world
        rng = random.Random(self.seed)
        if self._original_settings is None:
            self._original_settings = self._call("read the settings", world.get_settings)
        settings = self._call("read the settings", world.get_settings)
        settings.synchronous_mode = True
        settings.fixed_delta_seconds = cfg.fixed_delta_seconds
        self._call("apply synchronous mode", lambda: world.apply_settings(settings))
        tm = self._call("start the traffic manager", lambda: self._client.get_trafficmanager(cfg.tm_port))
        self._traffic_manager = tm
        self._call("set the traffic manager's synchronous mode", lambda: tm.set_synchronous_mode(True))
        self._call("seed the traffic manager", lambda: tm.set_random_device_seed(self.seed))
        self._call("set the weather", lambda: world.set_weather(weather_parameters(self._carla, cfg.weather)))
        library = self._call("read the blueprint library", world.get_blueprint_library)
        self._ego = self._spawn_ego(world, library, rng)
        self._call("put the ego on autopilot", lambda: self._ego.set_autopilot(True, tm.get_port()))
        mount = self._carla.Transform(self._carla.Location(x=cfg.camera_forward, z=cfg.camera_height))
        for name, blueprint_id in CAMERAS:
            blueprint = library.find(blueprint_id)
            for key, value in (("image_size_x", cfg.width), ("image_size_y", cfg.height), ("fov", cfg.fov),
                               ("sensor_tick", 0.0)):
                blueprint.set_attribute(key, str(value))
            camera = self._call(f"spawn the {name} camera", lambda: world.spawn_actor(blueprint, mount, attach_to=self._ego))
            self._sensors.append(camera)
            images: queue.Queue = queue.Queue()
            self._call(f"listen to the {name} camera", lambda: camera.listen(images.put))
            self._queues[name] = images
        log.info("%s: %s in %s, %s, %dx%d at %g fps, ego %s", self.source_id, cfg.weather, self.town,
                 "synchronous", cfg.width, cfg.height, cfg.fps, self._ego.type_id)

    def _spawn_ego(self, world: Any, library: Any, rng: random.Random) -> Any:
        cfg = self.config

        def four_wheels(bp: Any) -> bool:
            return not bp.has_attribute("number_of_wheels") or bp.get_attribute("number_of_wheels").as_int() == 4

        blueprints = sorted((bp for bp in library.filter(cfg.vehicle) if four_wheels(bp)), key=lambda bp: bp.id)
        if not blueprints:
            raise SourceError(f"{self.source_id}: no four-wheeled vehicle blueprint matches vehicle={cfg.vehicle!r}")
        blueprint = rng.choice(blueprints)
        if blueprint.has_attribute("role_name"):
            blueprint.set_attribute("role_name", "hero")
        points = list(self._call("read the spawn points", lambda: world.get_map().get_spawn_points()))
        if not points:
            raise SourceError(f"{self.source_id}: the map {self.town} has no spawn points")
        for i in rng.sample(range(len(points)), len(points)):
            ego = self._call("spawn the ego", lambda: world.try_spawn_actor(blueprint, points[i]))
            if ego is not None:
                return ego
        raise SourceError(f"{self.source_id}: every spawn point of {self.town} is taken; no room for the ego")

    def _image(self, name: str, frame: int) -> Any:
        """The ``name`` camera's image of tick ``frame`` (CARLA's synchronous_mode pattern:
        images of earlier ticks in its queue are dropped)."""
        images = self._queues[name]
        deadline = time.monotonic() + self.config.timeout
        while True:
            try:
                image = images.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise SourceError(f"{self.source_id}: the {name} camera sent no image of frame {frame} within "
                                  f"{self.config.timeout:g} s (timeout=): the server is too slow or the sensor stalled") from None
            if image.frame == frame:
                return image
            if image.frame > frame:
                raise SourceError(f"{self.source_id}: the {name} camera sent frame {image.frame} while frame {frame} "
                                  f"was awaited: is another client ticking this server?")
            self._counts["stale_images"] += 1

    def _frames(self) -> Iterator[Frame]:
        cfg = self.config
        try:
            self._start()
            for index in range(self.frames):
                if self._closed:
                    return
                frame = self._call("tick the world", lambda: self._world.tick(cfg.timeout))
                got = {name: self._image(name, frame) for name, _ in CAMERAS}
                rgb = got["rgb"]
                out = self.image_sink(cfg.height, cfg.width) if self.image_sink is not None else None
                image = bgra_to_rgb(rgb.raw_data, cfg.width, cfg.height, out)  # (H, W, 3)
                if out is not None:  # a ring slot: read-only view, so Frame keeps it without a copy
                    image = image.view()
                    image.setflags(write=False)
                meta = {"domain": f"{self.weather}@{self.town}", "weather": self.weather, "carla_weather": cfg.weather,
                        "town": self.town, "sim_frame": int(frame)}
                self._counts["frames_read"] += 1
                yield Frame(
                    image=image,
                    timestamp=float(rgb.timestamp),
                    source_id=self.source_id,
                    index=index,
                    label=tags_to_canonical(got["semantic"].raw_data, cfg.width, cfg.height),  # (H, W)
                    depth=decode_carla_depth(got["depth"].raw_data, cfg.width, cfg.height),  # (H, W)
                    meta=meta,
                )
        finally:
            self._teardown()

    def _teardown(self) -> None:
        """Stop and destroy the cameras and the ego, restore the settings (each step once;
        a failing step is logged and the others still run)."""
        sensors, self._sensors = self._sensors, []
        ego, self._ego = self._ego, None
        original, self._original_settings = self._original_settings, None
        tm, self._traffic_manager = self._traffic_manager, None
        steps: list[tuple[str, Any]] = [(f"stop the {s.type_id}", s.stop) for s in sensors]
        if original is not None and self._world is not None:
            steps.append(("restore the settings", lambda: self._world.apply_settings(original)))
        if tm is not None:
            steps.append(("turn the traffic manager's synchronous mode off", lambda: tm.set_synchronous_mode(False)))
        steps += [(f"destroy the {s.type_id}", s.destroy) for s in sensors]
        if ego is not None:
            steps.append(("destroy the ego", ego.destroy))
        for what, step in steps:
            try:
                step()
            except RuntimeError as err:
                log.warning("%s: could not %s: %s", self.source_id, what, err)
        self._queues = {}


def open_carla(address: str, frames: int = 3600, seed: int = 0, client_module: Any = None, **opts: Any) -> CarlaSource:
    """Connect to a CARLA server (``carla:HOST[:PORT]``, port 2000 by default).

    Options (:class:`CarlaConfig`): ``town``, ``weather`` (a CARLA preset or one of our
    domains), ``width``, ``height``, ``fov``, ``fps``, ``timeout``, ``vehicle``, ``tm_port``,
    ``camera_forward``, ``camera_height``. ``frames`` and ``seed`` are the run's.

    Example:
        >>> open_carla("localhost:2000", colour="red")
        Traceback (most recent call last):
        ...
        stream.sources.base.SourceError: carla:localhost:2000: unknown option(s) colour; known: camera_forward, camera_height, fov, fps, height, timeout, tm_port, town, vehicle, weather, width
    """
    host, port = parse_address(address)
    known = {f.name for f in fields(CarlaConfig)} - {"host", "port"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise SourceError(f"carla:{host}:{port}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return CarlaSource(CarlaConfig(host=host, port=port, **opts), frames=frames, seed=seed, client_module=client_module)
