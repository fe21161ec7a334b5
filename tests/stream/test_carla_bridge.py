"""The CARLA bridge (``carla:HOST:PORT``): conversions on CARLA-format buffers, the weather
and tag maps, and the whole live path over :class:`FakeCarla`, a stand-in for the ``carla``
module whose server lives in-process. The live test against a real server runs only where
``import carla`` works and a server answers at ``CARLA_HOST`` (default localhost:2000).

:class:`FakeCarla` is also what tests/stream/test_source_conformance.py runs the bridge on.
"""
from __future__ import annotations

import fnmatch
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from perception.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from sim.world import CameraImage, Transform as SimTransform
from stream.config import RunConfig, RunSection
from stream.frame import Frame
from stream.sources import SourceError, open_source
from stream.sources.carla import (
    CARLA_TAG_NAMES,
    CARLA_TO_CANONICAL,
    CARLA_WEATHER_DOMAINS,
    DOMAIN_PRESETS,
    CarlaConfig,
    CarlaSource,
    bgra_to_rgb,
    decode_carla_depth,
    open_carla,
    resolve_weather,
    tags_to_canonical,
    weather_parameters,
)

REPO = Path(__file__).resolve().parents[2]
FAR = 1000.0


# ------------------------------------------------------------------------------ CARLA-format buffers

def encode_depth(metres: np.ndarray) -> np.ndarray:
    """Metres -> (H, W, 4) BGRA as CARLA's depth camera writes them (24-bit code, R lowest byte)."""
    code = np.round(np.clip(metres / FAR, 0.0, 1.0) * (256**3 - 1)).astype(np.uint32)  # (H, W)
    bgra = np.full(metres.shape + (4,), 255, np.uint8)  # (H, W, 4)
    bgra[..., 2] = code & 255
    bgra[..., 1] = (code >> 8) & 255
    bgra[..., 0] = (code >> 16) & 255
    return bgra


def tag_image(tags: np.ndarray) -> np.ndarray:
    """(H, W) CARLA tags -> (H, W, 4) BGRA as the semantic camera writes them (tag in R)."""
    bgra = np.zeros(tags.shape + (4,), np.uint8)  # (H, W, 4)
    bgra[..., 2] = tags
    bgra[..., 3] = 255
    return bgra


def colour_image(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W, 4) BGRA as the RGB camera writes it."""
    bgra = np.full(rgb.shape[:2] + (4,), 255, np.uint8)  # (H, W, 4)
    bgra[..., :3] = rgb[..., ::-1]
    return bgra


# ------------------------------------------------------------------------------ a fake carla module

WEATHER_PRESETS = (
    "Default", "ClearNoon", "CloudyNoon", "WetNoon", "WetCloudyNoon", "SoftRainNoon", "MidRainyNoon", "HardRainNoon",
    "ClearSunset", "CloudySunset", "WetSunset", "WetCloudySunset", "SoftRainSunset", "MidRainSunset", "HardRainSunset",
    "ClearNight", "CloudyNight", "WetNight", "WetCloudyNight", "SoftRainNight", "MidRainyNight", "HardRainNight",
    "DustStorm",
)


class FakeWeatherParameters:
    """``carla.WeatherParameters``: keyword fields, and the presets as class attributes."""

    def __init__(self, **values: float) -> None:
        self.values = dict(values)
        self.preset: str | None = None

    @classmethod
    def named(cls, name: str) -> "FakeWeatherParameters":
        weather = cls()
        weather.preset = name
        return weather


for _name in WEATHER_PRESETS:
    setattr(FakeWeatherParameters, _name, FakeWeatherParameters.named(_name))


@dataclass
class FakeLocation:
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@dataclass
class FakeTransform:
    location: FakeLocation = field(default_factory=FakeLocation)
    rotation: Any = None


@dataclass
class FakeSettings:
    synchronous_mode: bool = False
    fixed_delta_seconds: float | None = None
    no_rendering_mode: bool = False


class FakeAttribute:
    def __init__(self, value: str) -> None:
        self.value = value

    def as_int(self) -> int:
        return int(self.value)

    def as_str(self) -> str:
        return self.value


class FakeBlueprint:
    def __init__(self, blueprint_id: str, **attributes: str) -> None:
        self.id = blueprint_id
        self.attributes = dict(attributes)

    def has_attribute(self, name: str) -> bool:
        return name in self.attributes

    def get_attribute(self, name: str) -> FakeAttribute:
        return FakeAttribute(self.attributes[name])

    def set_attribute(self, name: str, value: str) -> None:
        if name not in self.attributes:
            raise IndexError(f"{self.id} has no attribute {name}")
        assert isinstance(value, str), (name, value)  # CARLA takes strings
        self.attributes[name] = value


VEHICLES = {"vehicle.tesla.model3": "4", "vehicle.yamaha.yzf": "2", "vehicle.audi.tt": "4", "vehicle.mini.cooper": "4"}
CAMERA_IDS = ("sensor.camera.rgb", "sensor.camera.semantic_segmentation", "sensor.camera.depth")


class FakeLibrary:
    def __init__(self) -> None:
        camera = {"image_size_x": "800", "image_size_y": "600", "fov": "90", "sensor_tick": "0.0", "role_name": "front"}
        self.blueprints = [FakeBlueprint(v, number_of_wheels=w, role_name="autopilot") for v, w in VEHICLES.items()]
        self.blueprints += [FakeBlueprint(c, **camera) for c in CAMERA_IDS]

    def filter(self, pattern: str) -> list[FakeBlueprint]:
        return [bp for bp in self.blueprints if fnmatch.fnmatch(bp.id, pattern)]

    def find(self, blueprint_id: str) -> FakeBlueprint:
        for bp in self.blueprints:
            if bp.id == blueprint_id:
                return FakeBlueprint(bp.id, **bp.attributes)
        raise IndexError(blueprint_id)


class FakeActor:
    def __init__(self, server: "FakeServer", blueprint: FakeBlueprint, transform: Any, parent: Any = None) -> None:
        server.next_id += 1
        self.id = server.next_id
        self.type_id = blueprint.id
        self.attributes = dict(blueprint.attributes)
        self.transform = transform
        self.parent = parent
        self.is_alive = True
        self._server = server
        server.actors.append(self)

    def destroy(self) -> bool:
        self.is_alive = False
        self._server.destroyed.append(self.type_id)
        return True


class FakeVehicle(FakeActor):
    autopilot: tuple[bool, int] | None = None

    def set_autopilot(self, enabled: bool = True, tm_port: int = 8000) -> None:
        self.autopilot = (enabled, tm_port)


class FakeCamera(FakeActor):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.callback: Callable[[Any], None] | None = None

    @property
    def is_listening(self) -> bool:
        return self.callback is not None

    def listen(self, callback: Callable[[Any], None]) -> None:
        self.callback = callback

    def stop(self) -> None:
        self.callback = None


@dataclass
class FakeImage:
    """``carla.Image``: frame, timestamp, width, height, fov, raw_data (BGRA bytes)."""

    frame: int
    timestamp: float
    width: int
    height: int
    fov: float
    raw_data: bytes


class FakeMap:
    def __init__(self, name: str, points: int) -> None:
        self.name = name
        self.points = points

    def get_spawn_points(self) -> list[FakeTransform]:
        return [FakeTransform(FakeLocation(x=10.0 * i)) for i in range(self.points)]


class FakeTrafficManager:
    def __init__(self, port: int) -> None:
        self.port = port
        self.synchronous = False
        self.seed: int | None = None

    def get_port(self) -> int:
        return self.port

    def set_synchronous_mode(self, on: bool) -> None:
        self.synchronous = on

    def set_random_device_seed(self, seed: int) -> None:
        self.seed = seed


def scene(frame: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the fake server's cameras see at ``frame``: RGB (H, W, 3), tags (H, W), metres (H, W)."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = frame % 256  # red counts the frames
    rgb[..., 1] = np.arange(width, dtype=np.uint8)[None, :]
    rgb[..., 2] = 200
    tags = ((np.arange(height * width).reshape(height, width) + frame) % 29).astype(np.uint8)  # every CARLA tag
    metres = np.linspace(1.0, 800.0, height * width).reshape(height, width) + frame % 100  # under the 1000 m far plane
    return rgb, tags, metres


class FakeServer:
    """The state of the fake CARLA server one :class:`FakeCarla` talks to.

    Knobs: ``reachable`` (False: every client's first call times out), ``stale`` (camera
    kinds that send an image of the previous frame before each right one), ``silent`` (a
    camera kind that sends nothing), ``ahead`` (a camera kind that sends the next frame),
    ``late`` (seconds the images come after ``tick`` returns, from another thread),
    ``lost_after`` (ticks before the server stops answering), ``taken`` (spawn points occupied), ``wrong_size`` (a camera kind sending a smaller image).
    """

    def __init__(self, town: str = "Town10HD_Opt", maps: tuple[str, ...] = ("Town01", "Town02", "Town10HD_Opt"),
                 spawn_points: int = 6) -> None:
        self.reachable = True
        self.stale: set[str] = set()
        self.silent: str | None = None
        self.ahead: str | None = None
        self.wrong_size: str | None = None
        self.late = 0.0
        self.lost_after: int | None = None  # ticks answered before the server stops answering
        self.taken: set[int] = set()
        self.maps = maps
        self.map_name = f"Carla/Maps/{town}"
        self.spawn_points = spawn_points
        self.settings = FakeSettings()
        self.original = replace(self.settings)
        self.applied: list[FakeSettings] = []
        self.loads: list[str] = []
        self.weather: FakeWeatherParameters | None = None
        self.frame = 100  # a server that has run a while
        self.elapsed = 5.0
        self.actors: list[FakeActor] = []
        self.destroyed: list[str] = []
        self.next_id = 0
        self.traffic_manager = FakeTrafficManager(8000)
        self.timeouts: list[float] = []
        self.ticks = 0

    def alive(self) -> list[FakeActor]:
        return [a for a in self.actors if a.is_alive]

    def tick(self) -> int:
        if self.lost_after is not None and self.ticks >= self.lost_after:
            raise RuntimeError("time-out of 2000ms while waiting for the simulator, make sure the simulator is ready")
        self.ticks += 1
        self.frame += 1
        self.elapsed += self.settings.fixed_delta_seconds or 0.05
        frame, elapsed = self.frame, self.elapsed
        cameras = [a for a in self.actors if isinstance(a, FakeCamera) and a.is_listening]
        if self.late:
            threading.Timer(self.late, self._deliver, (cameras, frame, elapsed)).start()
        else:
            self._deliver(cameras, frame, elapsed)
        return frame

    def _deliver(self, cameras: list[FakeCamera], frame: int, elapsed: float) -> None:
        for camera in cameras:
            kind = camera.type_id.rsplit(".", 1)[-1]
            if kind == self.silent or camera.callback is None:
                continue
            if kind in self.stale:
                camera.callback(self._image(camera, kind, frame - 1, elapsed - 0.05))
            shown = frame + 1 if kind == self.ahead else frame
            camera.callback(self._image(camera, kind, shown, elapsed))

    def _image(self, camera: FakeCamera, kind: str, frame: int, elapsed: float) -> FakeImage:
        width, height = int(camera.attributes["image_size_x"]), int(camera.attributes["image_size_y"])
        if kind == self.wrong_size:
            height -= 1
        rgb, tags, metres = scene(frame, width, height)
        bgra = {"rgb": colour_image(rgb), "semantic_segmentation": tag_image(tags), "depth": encode_depth(metres)}[kind]
        return FakeImage(frame, elapsed, width, height, float(camera.attributes["fov"]), bgra.tobytes())


class FakeWorld:
    def __init__(self, server: FakeServer) -> None:
        self._server = server

    def get_settings(self) -> FakeSettings:
        return replace(self._server.settings)

    def apply_settings(self, settings: FakeSettings) -> int:
        self._server.settings = replace(settings)
        self._server.applied.append(replace(settings))
        return self._server.frame

    def get_map(self) -> FakeMap:
        return FakeMap(self._server.map_name, self._server.spawn_points)

    def get_blueprint_library(self) -> FakeLibrary:
        return FakeLibrary()

    def set_weather(self, weather: FakeWeatherParameters) -> None:
        assert isinstance(weather, FakeWeatherParameters)
        self._server.weather = weather

    def try_spawn_actor(self, blueprint: FakeBlueprint, transform: FakeTransform) -> FakeVehicle | None:
        index = int(transform.location.x // 10)
        if index in self._server.taken:
            return None
        self._server.taken.add(index)
        return FakeVehicle(self._server, blueprint, transform)

    def spawn_actor(self, blueprint: FakeBlueprint, transform: FakeTransform, attach_to: Any = None) -> FakeCamera:
        assert blueprint.id in CAMERA_IDS and isinstance(attach_to, FakeVehicle)
        return FakeCamera(self._server, blueprint, transform, attach_to)

    def tick(self, seconds: float = 0.0) -> int:
        assert self._server.settings.synchronous_mode, "tick() outside synchronous mode"
        return self._server.tick()


class FakeClient:
    def __init__(self, server: FakeServer, host: str, port: int) -> None:
        self._server = server
        self.host, self.port = host, port
        self.timeout = 5.0

    def set_timeout(self, seconds: float) -> None:
        self.timeout = seconds
        self._server.timeouts.append(seconds)

    def _answer(self) -> None:
        if not self._server.reachable:
            raise RuntimeError(f"time-out of {int(self.timeout * 1000)}ms while waiting for the simulator, make sure "
                               f"the simulator is ready and connected to {self.host}:{self.port}")

    def get_world(self) -> FakeWorld:
        self._answer()
        return FakeWorld(self._server)

    def get_server_version(self) -> str:
        self._answer()
        return "0.9.16"

    def get_client_version(self) -> str:
        return "0.9.16"

    def get_available_maps(self) -> list[str]:
        return [f"/Game/Carla/Maps/{m}" for m in self._server.maps]

    def load_world(self, name: str, reset_settings: bool = True) -> FakeWorld:
        self._server.loads.append(name)
        self._server.map_name = f"Carla/Maps/{name}"
        if reset_settings:
            self._server.settings = FakeSettings()
        return FakeWorld(self._server)

    def get_trafficmanager(self, port: int = 8000) -> FakeTrafficManager:
        self._server.traffic_manager.port = port
        return self._server.traffic_manager


class FakeCarla:
    """Shaped like the ``carla`` module, with one in-process server (``.server``)."""

    WeatherParameters = FakeWeatherParameters
    Location = FakeLocation
    Transform = FakeTransform

    def __init__(self, server: FakeServer | None = None) -> None:
        self.server = server or FakeServer()
        self.clients: list[FakeClient] = []

    def Client(self, host: str = "127.0.0.1", port: int = 2000) -> FakeClient:  # noqa: N802 - carla's name
        client = FakeClient(self.server, host, port)
        self.clients.append(client)
        return client


@pytest.fixture
def fake() -> FakeCarla:
    return FakeCarla()


def open_fake(fake: FakeCarla, frames: int = 4, seed: int = 0, address: str = "localhost:2000", **opts: Any) -> CarlaSource:
    opts.setdefault("width", 8)
    opts.setdefault("height", 4)
    return open_carla(address, frames=frames, seed=seed, client_module=fake, **opts)


def run_config(frames: int = 3) -> RunConfig:
    return RunConfig(run=RunSection(frames=frames, seed=0))


# ------------------------------------------------------------------------------ conversions

def test_bgra_to_rgb_swaps_the_channels_and_drops_alpha():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7  # (2, 3, 3)
    raw = colour_image(rgb).tobytes()
    got = bgra_to_rgb(raw, 3, 2)
    assert got.shape == (2, 3, 3) and got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, rgb)
    out = np.zeros((2, 3, 3), np.uint8)
    assert bgra_to_rgb(memoryview(raw), 3, 2, out) is out  # CARLA's raw_data is a buffer, not bytes
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("convert, sensor", [(bgra_to_rgb, "rgb"), (tags_to_canonical, "semantic segmentation"),
                                             (decode_carla_depth, "depth")])
def test_a_wrong_buffer_size_names_the_sensor_and_the_byte_counts(convert, sensor):
    with pytest.raises(SourceError, match=rf"carla {sensor} camera: the image buffer has 92 bytes, expected 96 \(4x6 BGRA"):
        convert(bytes(92), 4, 6)


def test_every_carla_tag_maps_as_documented():
    tags = np.arange(256, dtype=np.uint8).reshape(16, 16)  # (16, 16) every byte value a tag
    canonical = tags_to_canonical(tag_image(tags).tobytes(), 16, 16).ravel()
    assert canonical.dtype == np.uint8
    for tag in range(1, 20):  # the Cityscapes classes, in Cityscapes' order
        assert canonical[tag] == tag - 1, (tag, CARLA_TAG_NAMES[tag], CLASS_NAMES[tag - 1])
    assert canonical[CARLA_TAG_NAMES.index("road_line")] == CLASS_NAMES.index("road")
    ignored = ["unlabeled", "static", "dynamic", "other", "water", "ground", "bridge", "rail_track", "guard_rail"]
    assert all(canonical[CARLA_TAG_NAMES.index(name)] == IGNORE_INDEX for name in ignored)
    assert (canonical[29:] == IGNORE_INDEX).all()  # tags CARLA may add later
    assert set(canonical.tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}


def test_the_tag_is_read_from_the_red_channel_only():
    bgra = tag_image(np.array([[14, 12]], np.uint8))  # car, pedestrian
    bgra[..., 0] = 77  # instance ids in B and G (the instance camera) do not matter
    bgra[..., 1] = 3
    assert tags_to_canonical(bgra.tobytes(), 2, 1).tolist() == [[CLASS_NAMES.index("car"), CLASS_NAMES.index("person")]]


def test_depth_decodes_carlas_24_bit_code_to_metres():
    metres = np.array([[0.0, 0.5, 1.0, 12.345], [99.9, 500.0, 999.0, 1000.0]])  # (2, 4)
    got = decode_carla_depth(encode_depth(metres).tobytes(), 4, 2)
    assert got.shape == (2, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, metres, atol=FAR / (256**3 - 1))  # one code step: 0.06 mm
    hand = bytes([0x01, 0x00, 0x00, 255,  0x00, 0x01, 0x00, 255,  0x00, 0x00, 0x01, 255])  # B = 1; G = 1; R = 1
    np.testing.assert_allclose(decode_carla_depth(hand, 3, 1), [[65536 * 1000 / (256**3 - 1), 256 * 1000 / (256**3 - 1),
                                                                 1000 / (256**3 - 1)]], rtol=1e-6)


def test_depth_decodes_the_built_in_worlds_carla_encoding():
    metres = np.array([[2.0, 30.0, 1000.0]], np.float32)
    image = CameraImage("sensor.camera.depth", 1, 0.1, 90.0, SimTransform(), metres)
    np.testing.assert_allclose(decode_carla_depth(image.raw_data, 3, 1), metres, atol=1e-3)


# ------------------------------------------------------------------------------ weather

def test_every_carla_preset_is_one_of_our_domains():
    assert set(CARLA_WEATHER_DOMAINS) == set(WEATHER_PRESETS) - {"Default"}
    assert {d for d in CARLA_WEATHER_DOMAINS.values()} == {"clear", "dusk", "night", "rain", "fog"}
    assert [resolve_weather(n)[0] for n in ("WetCloudyNoon", "SoftRainSunset", "HardRainNight", "DustStorm")] == \
        ["clear", "rain", "night", "fog"]
    for ours, preset in DOMAIN_PRESETS.items():  # each of our domains stands for itself
        assert resolve_weather(ours) == (ours, preset)
        assert preset is None or CARLA_WEATHER_DOMAINS[preset] == ours


@pytest.mark.parametrize("name, why", [("snow", "CARLA has no snow"), ("sunny", "unknown weather"),
                                       ("Default", "unknown weather")])
def test_a_weather_carla_cannot_show_is_named_with_the_valid_ones(name, why):
    with pytest.raises(SourceError, match=why) as error:
        resolve_weather(name)
    assert repr(name) in str(error.value) and "ClearNoon" in str(error.value) and "fog" in str(error.value)


def test_fog_is_set_as_parameters_and_presets_as_presets():
    fog = weather_parameters(FakeCarla, "fog")
    assert fog.preset is None and fog.values["fog_density"] > 50 and fog.values["precipitation"] == 0
    assert weather_parameters(FakeCarla, "night").preset == "ClearNight"
    assert weather_parameters(FakeCarla, "MidRainSunset").preset == "MidRainSunset"


# ------------------------------------------------------------------------------ the real carla package

carla_names = {  # LibCarla's CityObjectLabel names -> ours
    "NONE": "unlabeled", "Roads": "road", "Sidewalks": "sidewalk", "Buildings": "building", "Walls": "wall",
    "Fences": "fence", "Poles": "pole", "TrafficLight": "traffic_light", "TrafficSigns": "traffic_sign",
    "Vegetation": "vegetation", "Terrain": "terrain", "Sky": "sky", "Pedestrians": "pedestrian", "Rider": "rider",
    "Car": "car", "Truck": "truck", "Bus": "bus", "Train": "train", "Motorcycle": "motorcycle", "Bicycle": "bicycle",
    "Static": "static", "Dynamic": "dynamic", "Other": "other", "Water": "water", "RoadLines": "road_line",
    "Ground": "ground", "Bridge": "bridge", "RailTrack": "rail_track", "GuardRail": "guard_rail",
}


def test_the_tag_list_and_presets_agree_with_the_installed_carla_package():
    carla = pytest.importorskip("carla", reason="the carla package is not installed (pip install 'odistill[carla]')")
    labels = {name: int(getattr(carla.CityObjectLabel, name)) for name in dir(carla.CityObjectLabel)
              if name[:1].isupper() and name != "Any"}
    assert {carla_names[name]: tag for name, tag in labels.items()} == {n: i for i, n in enumerate(CARLA_TAG_NAMES)}
    presets = {name for name in dir(carla.WeatherParameters) if name[:1].isupper()}
    assert presets - {"Default"} == set(CARLA_WEATHER_DOMAINS)
    fog = weather_parameters(carla, "fog")
    assert isinstance(fog, carla.WeatherParameters) and fog.fog_density == pytest.approx(70.0)
    assert weather_parameters(carla, "HardRainNight") == carla.WeatherParameters.HardRainNight
    for name in ("Client", "Transform", "Location"):
        assert hasattr(carla, name)
    for cls, names in ((carla.Client, ("set_timeout", "get_world", "load_world", "get_available_maps", "get_trafficmanager",
                                       "get_server_version", "get_client_version")),
                       (carla.World, ("get_settings", "apply_settings", "tick", "get_map", "get_blueprint_library",
                                      "set_weather", "try_spawn_actor", "spawn_actor")),
                       (carla.TrafficManager, ("set_synchronous_mode", "set_random_device_seed", "get_port")),
                       (carla.Sensor, ("listen", "stop", "destroy")), (carla.Vehicle, ("set_autopilot", "destroy")),
                       (carla.Image, ("frame", "timestamp", "width", "height", "raw_data")),
                       (carla.WorldSettings, ("synchronous_mode", "fixed_delta_seconds"))):
        assert all(hasattr(cls, n) for n in names), (cls, [n for n in names if not hasattr(cls, n)])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_real_client_on_a_closed_port_names_the_server():
    carla = pytest.importorskip("carla", reason="the carla package is not installed (pip install 'odistill[carla]')")
    port = free_port()
    with pytest.raises(SourceError, match=rf"carla:127.0.0.1:{port}: the CARLA server at 127.0.0.1:{port} did not "
                                          rf"answer within 0.3 s .*time-out.*is CarlaUE4 running"):
        open_carla(f"127.0.0.1:{port}", frames=2, timeout="0.3", client_module=carla)


def test_importing_the_bridge_needs_no_carla_package():
    code = ("import sys; sys.modules['carla'] = None; import stream.sources, stream.sources.carla; "
            "from stream.sources.carla import load_carla\n"
            "try:\n    load_carla('carla:h:1')\nexcept ValueError as e:\n    print(e)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "carla:h:1: the CARLA client package is not installed" in done.stdout and "odistill[carla]" in done.stdout


# ------------------------------------------------------------------------------ the live path, on the fake

def test_frames_come_matched_by_tick_with_label_depth_and_meta(fake):
    fake.server.stale = {"semantic_segmentation", "depth"}  # an image of the previous tick comes first
    with open_fake(fake, frames=3, weather="WetCloudySunset", fps=20) as source:
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.meta["sim_frame"] for f in frames] == [101, 102, 103]
    np.testing.assert_allclose([f.timestamp for f in frames], [5.05, 5.10, 5.15])
    for frame in frames:
        rgb, tags, metres = scene(frame.meta["sim_frame"], 8, 4)
        assert isinstance(frame, Frame) and frame.source_id == "carla:localhost:2000"
        np.testing.assert_array_equal(frame.image, rgb)  # (4, 8, 3): the same tick's images, none stale
        np.testing.assert_array_equal(frame.label, CARLA_TO_CANONICAL[tags])
        np.testing.assert_allclose(frame.depth, metres, atol=1e-3)
        assert frame.meta == {"domain": "dusk@Town10HD_Opt", "weather": "dusk", "carla_weather": "WetCloudySunset",
                              "town": "Town10HD_Opt", "sim_frame": frame.meta["sim_frame"]}
    stats = source.stats()
    assert stats == {"frames_read": 3, "frames_skipped": 0, "stale_images": 6, "towns_loaded": 0}
    assert source.true_shifts == [] and source.events == []


def test_the_world_runs_synchronous_while_streaming_and_is_restored_after(fake):
    server = fake.server
    source = open_fake(fake, frames=5, fps=20, seed=3, tm_port=8123, timeout=4)
    assert server.applied == [] and server.alive() == []  # connecting changes nothing
    frames = iter(source)
    next(frames)
    assert server.settings.synchronous_mode and server.settings.fixed_delta_seconds == pytest.approx(0.05)
    tm = server.traffic_manager
    assert tm.synchronous and tm.seed == 3 and tm.port == 8123
    ego = [a for a in server.alive() if isinstance(a, FakeVehicle)]
    assert len(ego) == 1 and ego[0].autopilot == (True, 8123) and ego[0].attributes["role_name"] == "hero"
    assert VEHICLES[ego[0].type_id] == "4"  # never the motorbike
    cameras = [a for a in server.alive() if isinstance(a, FakeCamera)]
    assert sorted(c.type_id for c in cameras) == sorted(CAMERA_IDS)
    assert all(c.parent is ego[0] and c.attributes["image_size_x"] == "8" and c.attributes["image_size_y"] == "4"
               for c in cameras)
    assert len({id(c.transform) for c in cameras}) == 1  # one mount for the three
    assert server.weather.preset == "ClearNoon" and server.timeouts == [4.0]
    source.close()
    assert list(frames) == [] and server.ticks == 1
    assert server.settings == server.original and tm.synchronous is False
    assert server.alive() == [] and sorted(server.destroyed) == sorted([*CAMERA_IDS, ego[0].type_id])
    assert all(not c.is_listening for c in cameras)
    source.close()  # twice: nothing left to do
    assert len(server.applied) == 2


def test_a_source_closed_unread_leaves_the_server_untouched(fake):
    source = open_fake(fake)
    source.close()
    source.close()
    assert fake.server.applied == [] and fake.server.actors == [] and source.stats()["frames_read"] == 0
    with pytest.raises(SourceError, match="closed"):
        iter(source)


def test_the_same_seed_spawns_the_same_ego_at_the_same_point():
    def ego(seed: int) -> tuple[str, float]:
        fake = FakeCarla(FakeServer(spawn_points=40))
        with open_fake(fake, frames=1, seed=seed) as source:
            list(source)
        vehicle = next(a for a in fake.server.actors if isinstance(a, FakeVehicle))
        return vehicle.type_id, vehicle.transform.location.x

    assert ego(5) == ego(5)
    assert len({ego(seed) for seed in range(6)}) > 1


def test_a_taken_spawn_point_is_passed_over_and_a_full_map_is_an_error():
    fake = FakeCarla(FakeServer(spawn_points=3))
    fake.server.taken = {0, 1}
    with open_fake(fake, frames=1) as source:
        assert len(list(source)) == 1
    full = FakeCarla(FakeServer(spawn_points=2))
    full.server.taken = {0, 1}
    with pytest.raises(SourceError, match="every spawn point of Town10HD_Opt is taken"):
        list(open_fake(full))
    assert full.server.settings == full.server.original and full.server.alive() == []


def test_a_town_is_loaded_when_another_is_running_and_settings_restored(fake):
    server = fake.server
    server.settings = FakeSettings(no_rendering_mode=True)  # what another user left
    server.original = replace(server.settings)
    with open_fake(fake, frames=2, town="Town01") as source:
        frames = list(source)
    assert server.loads == ["Town01"] and source.stats()["towns_loaded"] == 1
    assert {f.meta["domain"] for f in frames} == {"clear@Town01"}
    assert server.settings == server.original  # as before the load reset them
    with open_fake(fake, frames=1, town="Town01") as again:  # already loaded: no second load
        list(again)
    assert server.loads == ["Town01"]


def test_an_unknown_town_lists_the_servers_maps(fake):
    with pytest.raises(SourceError, match="unknown town 'Town99'; the server has: Town01, Town02, Town10HD_Opt"):
        open_fake(fake, town="Town99")
    assert fake.server.loads == []


def test_images_that_come_after_tick_returns_are_waited_for(fake):
    fake.server.late = 0.02  # sensors stream from the server's thread, a little after the tick
    fake.server.stale = {"rgb"}
    with open_fake(fake, frames=3) as source:
        frames = list(source)
    assert [f.meta["sim_frame"] for f in frames] == [101, 102, 103]
    assert [int(f.image[0, 0, 0]) for f in frames] == [101, 102, 103]


def test_a_camera_that_sends_nothing_is_named_and_the_server_restored(fake):
    fake.server.silent = "depth"
    source = open_fake(fake, timeout=0.2)
    with pytest.raises(SourceError, match=r"carla:localhost:2000: the depth camera sent no image of frame 101 within 0.2 s"):
        list(source)
    assert fake.server.settings == fake.server.original and fake.server.alive() == []
    assert fake.server.traffic_manager.synchronous is False


def test_a_server_lost_mid_run_is_named_and_the_actors_cleaned_up(fake):
    fake.server.lost_after = 2
    source = open_fake(fake, frames=5, timeout=2)
    got = []
    with pytest.raises(SourceError, match=r"carla:localhost:2000: could not tick the world: time-out of 2000ms"):
        for frame in source:
            got.append(frame)
    assert len(got) == 2 and source.stats()["frames_read"] == 2
    assert fake.server.settings == fake.server.original and fake.server.alive() == []


def test_a_camera_ahead_of_the_tick_is_an_error(fake):
    fake.server.ahead = "rgb"
    with pytest.raises(SourceError, match="the rgb camera sent frame 102 while frame 101 was awaited"):
        list(open_fake(fake))
    assert fake.server.alive() == []


def test_an_image_of_the_wrong_size_names_the_camera(fake):
    fake.server.wrong_size = "semantic_segmentation"
    with pytest.raises(SourceError, match=r"carla semantic segmentation camera: the image buffer has 96 bytes, expected 128"):
        list(open_fake(fake))
    assert fake.server.settings == fake.server.original


def test_an_unreachable_server_is_named_with_the_timeout(fake):
    fake.server.reachable = False
    with pytest.raises(SourceError) as error:
        open_fake(fake, address="sim-box", timeout=5)
    message = str(error.value)
    assert message.startswith("carla:sim-box:2000: the CARLA server at sim-box:2000 did not answer within 5 s")
    assert "time-out of 5000ms while waiting for the simulator" in message and "is CarlaUE4 running" in message


def test_the_image_sink_receives_the_pixels(fake):
    slots: list[np.ndarray] = []

    def sink(height: int, width: int) -> np.ndarray:
        slots.append(np.zeros((height, width, 3), np.uint8))
        return slots[-1]

    with open_fake(fake, frames=2) as source:
        source.decode_into(sink)
        frames = list(source)
    assert len(slots) == 2 and all(np.shares_memory(f.image, s) for f, s in zip(frames, slots))
    assert not frames[0].image.flags.writeable and int(slots[1][0, 0, 0]) == 102


# ------------------------------------------------------------------------------ the spec

def test_the_spec_opens_the_bridge_through_the_registry(fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "carla", fake)  # what `import carla` finds
    source = open_source("carla:sim-box:2001?town=Town02&weather=rain&width=6&height=2", run_config(frames=3))
    try:
        frames = list(source)
    finally:
        source.close()
    assert source.source_id == "carla:sim-box:2001" and fake.clients[0].port == 2001
    assert [f.image.shape for f in frames] == [(2, 6, 3)] * 3
    assert frames[0].meta["domain"] == "rain@Town02" and fake.server.weather.preset == "HardRainNoon"


@pytest.mark.parametrize("spec, message", [
    ("carla:localhost?colour=red", "unknown option(s) colour; known: camera_forward"),
    ("carla:localhost?host=other", "unknown option(s) host"),
    ("carla:localhost?width=0", "width must be an integer in [1, 8192], got '0'"),
    ("carla:localhost?fps=fast", "fps must be a number in [1, 1000], got 'fast'"),
    ("carla:localhost?timeout=-1", "timeout must be a number"),
    ("carla:localhost?weather=snow", "weather 'snow': CARLA has no snow; valid weathers: clear"),
    ("carla:localhost:http", "carla:localhost:http: the port must be an integer in [1, 65535], got 'http'"),
    ("carla:localhost:70000", "the port must be an integer in [1, 65535], got '70000'"),
    ("carla:", "give the server's address, e.g. carla:localhost:2000"),
    ("carla::2000", "give the server's address"),
])
def test_bad_spec_options_are_named(spec, message, fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "carla", fake)
    with pytest.raises(SourceError) as error:
        open_source(spec, run_config())
    assert message in str(error.value)
    assert fake.server.applied == []


def test_config_reads_option_strings():
    config = CarlaConfig(width="64", height="32", fov="75", fps="20", timeout="2.5", tm_port="8100", town="")
    assert (config.width, config.height, config.fov, config.fixed_delta_seconds, config.timeout, config.tm_port,
            config.town) == (64, 32, 75.0, 0.05, 2.5, 8100, None)


def test_a_missing_carla_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "carla", None)  # `import carla` fails
    with pytest.raises(SourceError, match=r"carla:localhost:2000: the CARLA client package is not installed .*odistill\[carla\]"):
        open_source("carla:localhost:2000", run_config())


# ------------------------------------------------------------------------------ a real server

def carla_server() -> tuple[Any, str]:
    """The carla module and a server's address, or skip saying why there is none."""
    carla = pytest.importorskip("carla", reason="the carla package is not installed (pip install 'odistill[carla]'): "
                                                "the live CARLA test needs it")
    address = os.environ.get("CARLA_HOST", "localhost:2000")
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "2000")
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except OSError as err:
        pytest.skip(f"no CARLA server answers at {address} ({err}): start CarlaUE4 there, or set CARLA_HOST=HOST:PORT")
    return carla, address


def test_a_live_carla_server_streams_frames():
    carla, address = carla_server()
    with open_carla(address, frames=5, seed=0, client_module=carla, width=64, height=32, timeout=20) as source:
        frames = list(source)
    assert [f.index for f in frames] == list(range(5))
    assert all(b.timestamp > a.timestamp for a, b in zip(frames, frames[1:]))
    for frame in frames:
        assert frame.image.shape == (32, 64, 3) and frame.label.shape == (32, 64) and frame.depth.dtype == np.float32
        assert set(np.unique(frame.label).tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}
        assert frame.meta["domain"].startswith("clear@")
