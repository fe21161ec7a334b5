"""The simulator as a stream source: :class:`SimSource` renders frames as the world ticks.

The source drives :class:`sim.world.World` through its CARLA-shaped API (three cameras on
the ego -- rgb, semantic segmentation, depth -- one render per tick), switching weather and
town as the :class:`sim.schedule.Schedule` says. Each tick's three images are matched by the
frame number ``tick()`` returns (as CARLA's ``synchronous_mode.py`` does: a camera's queue is
read until its image of that frame). Every frame carries its ground-truth label
and depth and ``meta = {"domain", "weather", "town", "sim_frame"}`` (and ``"stopped"``, whether the
ego stands still, when ``sim.stop_every`` makes it stop as at red lights); ``true_shifts`` are
the schedule's domain changes. Different seeds give different worlds, so training seeds
and evaluation seeds never share a street.

Closed loop (``closed_loop=LaneKeeperConfig()``): the ego's autopilot is off, and
:meth:`SimSource.steer` turns the student's prediction of the frame just read into the steering
the next tick obeys (:mod:`sim.control`); ``stats()["driving"]`` then holds the lane
departures, seconds off the road and the closest gap to another car, and each departure is an
event.

Example:
    >>> from sim.world import SimConfig
    >>> src = SimSource(SimConfig(width=32, height=16), seed=0, frames=4, schedule="fog@oldtown,night@newtown")
    >>> [(f.index, f.meta["domain"]) for f in src]
    [(0, 'fog@oldtown'), (1, 'fog@oldtown'), (2, 'night@newtown'), (3, 'night@newtown')]
    >>> src.true_shifts, src.stats()["frames_read"], src.source_id
    ([2], 4, 'sim:fog@oldtown,night@newtown')
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any, Iterator

from collections import deque

from sim.control import LaneKeeper, LaneKeeperConfig
from sim.schedule import Schedule
from sim.world import CameraImage, SimConfig, World
from stream.frame import Frame
from stream.sources.base import IterateOnce, SourceError

log = logging.getLogger(__name__)


class SimSource(IterateOnce):
    """Frames from the built-in simulator along a schedule of weathers and towns.

    Args:
        config: the world's settings (image size, camera, traffic, ...).
        seed: fixes the whole run (towns' layouts, traffic, weather particles).
        frames: total frames; a named schedule splits them evenly over its segments.
        schedule: ``"tour"``, ``"clear"``, ``"all"``, a spec ``"fog@oldtown,night@newtown"``,
            or a :class:`~sim.schedule.Schedule` (then ``frames`` must match it).

    Example:
        >>> src = SimSource(SimConfig(width=16, height=8), seed=1, frames=2, schedule="clear")
        >>> f = next(iter(src)); f.image.shape, f.label.shape, f.depth.dtype.name, f.image.flags.writeable
        ((8, 16, 3), (8, 16), 'float32', False)
        >>> src.close(); src.close()
    """

    def __init__(self, config: SimConfig | None = None, seed: int = 0, frames: int = 600,
                 schedule: str | Schedule = "tour", closed_loop: LaneKeeperConfig | None = None) -> None:
        if config is None:
            config = SimConfig()
        if not isinstance(config, SimConfig):
            raise SourceError(f"SimSource config must be a sim.world.SimConfig, got {type(config).__name__}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise SourceError(f"SimSource seed must be a non-negative int, got {seed!r}")
        if not isinstance(frames, int) or isinstance(frames, bool) or frames <= 0:
            raise SourceError(f"SimSource frames must be a positive int, got {frames!r}")
        if isinstance(schedule, Schedule):
            if schedule.n_frames != frames:
                raise SourceError(f"SimSource frames={frames} does not match the schedule's {schedule.n_frames} frames")
            sched = schedule
        else:
            try:
                sched = Schedule.named(schedule, frames)
            except ValueError as err:
                raise SourceError(f"SimSource schedule: {err}") from err
        self.config = config
        self.seed = seed
        self.schedule = sched
        self.source_id = f"sim:{sched.name}"
        self.events: list[dict[str, Any]] = []
        self._frames_read = 0
        self._towns_loaded = 0
        self._started = False
        self._closed = False
        self._world: World | None = None
        self.closed_loop = closed_loop
        self._keeper: LaneKeeper | None = None
        self._last_index = -1  # the last frame handed out
        self._steered = -1  # the last frame whose prediction steered the ego
        self._unsteered = 0  # frames rendered before the previous frame's steering arrived

    @property
    def true_shifts(self) -> list[int]:
        return self.schedule.true_shifts

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "frames_read": self._frames_read,
            "frames_skipped": 0,
            "domain_changes": sum(1 for e in self.events if e["kind"] == "domain_change"),
            "towns_loaded": self._towns_loaded,
        }
        if self.closed_loop is not None and self._world is not None:
            keeper = self._keeper
            stats["driving"] = {**self._world.driving.as_dict(), "steered_frames": keeper.frames if keeper else 0,
                                "blind_frames": keeper.blind_frames if keeper else 0, "unsteered_frames": self._unsteered}
        return stats

    def steer(self, index: int, labels: Any) -> float:
        """Closed loop: steer the ego by the prediction ``labels`` ((H, W) uint8 canonical
        trainIds) of frame ``index``, the frame read last; returns the steering command."""
        if self.closed_loop is None or self._world is None or self._keeper is None:
            raise SourceError(f"{self.source_id}: steer() needs a closed-loop source that has started "
                              f"(SimSource(closed_loop=LaneKeeperConfig()), then iterate)")
        if index != self._last_index:
            raise SourceError(f"{self.source_id}: steering by frame {index}'s prediction, but the frame read last is "
                              f"{self._last_index}: a closed loop steers by each frame before the next is rendered")
        if index == self._steered:
            raise SourceError(f"{self.source_id}: frame {index} has steered the ego already")
        world = self._world
        velocity = world.ego.get_velocity()
        control = self._keeper.control(labels, world.lane_guide(), math.hypot(velocity.x, velocity.y))
        world.ego.apply_control(control)
        self._steered = index
        return control.steer

    def close(self) -> None:
        self._closed = True

    def _note_departures(self, index: int) -> None:
        """A lane departure that began on this tick becomes an event (closed loop)."""
        departures = self._world.driving.lane_departures if self._world is not None else 0
        seen = sum(1 for e in self.events if e["kind"] == "lane_departure")
        if departures > seen:
            self.events.append({"kind": "lane_departure", "index": index, "count": departures})
            log.info("%s: frame %d: the ego left its lane (%d so far)", self.source_id, index, departures)

    def _frames(self) -> Iterator[Frame]:
        sched = self.schedule
        first = sched.segments[0]
        world = World(replace(self.config, town=first.town, weather=first.weather), self.seed)
        self._world = world
        self._towns_loaded = 1
        if self.closed_loop is not None:
            world.ego.set_autopilot(False)
            cfg = world.config
            self._keeper = LaneKeeper(self.closed_loop, cfg.fov, cfg.camera_height, cfg.width, cfg.height, cfg.camera_forward)
        library = world.get_blueprint_library()
        queues: dict[str, deque[CameraImage]] = {}
        cameras = []
        for bp_id in ("sensor.camera.rgb", "sensor.camera.semantic_segmentation", "sensor.camera.depth"):
            cam = world.spawn_actor(library.find(bp_id), attach_to=world.ego)
            queue: deque[CameraImage] = deque()
            queues[bp_id] = queue
            cam.listen(queue.append)
            cameras.append(cam)
        starts = set(sched.starts)
        stops = self.config.stop_every > 0
        previous = first
        ramp_end = -1  # last frame whose weather a ramp sets
        for index in range(sched.n_frames):
            if self._closed:
                return
            seg = sched.segment_at(index)
            if index in starts and index > 0:
                if seg.town != world.town:
                    world.load_town(seg.town)
                    self._towns_loaded += 1
                if seg.ramp:
                    ramp_end = index + seg.ramp
                elif seg.weather != previous.weather:
                    world.set_weather(seg.weather)
                if seg.domain != previous.domain:
                    self.events.append({"kind": "domain_change", "index": index, "domain": seg.domain,
                                        "previous": previous.domain})
                    log.info("%s: frame %d enters %s", self.source_id, index, seg.domain)
                previous = seg
            if index <= ramp_end:  # a gradual shift: blended weather, then the preset on the ramp's end
                world.set_weather(sched.weather_at(index))
            if self._keeper is not None and index > 0 and self._steered != index - 1:
                self._unsteered += 1  # the previous frame's prediction did not come back in time: steering held
            tick = world.tick()
            got = {key: _image_of(queue, tick, key) for key, queue in queues.items()}
            rgb = got["sensor.camera.rgb"]
            meta = {"domain": seg.domain, "weather": seg.weather, "town": seg.town, "sim_frame": rgb.frame}
            if stops:
                meta["stopped"] = world.ego_stopped  # the ego stands still (sim.stop_every): its camera is static
            frame = Frame(
                image=rgb.array,
                timestamp=rgb.timestamp,
                source_id=self.source_id,
                index=index,
                label=got["sensor.camera.semantic_segmentation"].array,
                depth=got["sensor.camera.depth"].array,
                meta=meta,
            )
            self._frames_read += 1
            self._last_index = index
            if self._keeper is not None:
                self._note_departures(index)
            yield frame
        for cam in cameras:
            cam.destroy()


def _image_of(queue: deque[CameraImage], frame: int, sensor: str) -> CameraImage:
    """The image of tick ``frame`` from a camera's queue; older images are dropped."""
    while queue:
        image = queue.popleft()
        if image.frame == frame:
            return image
    raise SourceError(f"sim: camera {sensor} delivered no image for tick {frame}")


def render_frames(config: SimConfig | None = None, seed: int = 0, frames: int = 600,
                  schedule: str | Schedule = "tour") -> Iterator[Frame]:
    """Convenience: iterate a fresh :class:`SimSource`.

    Example:
        >>> len(list(render_frames(SimConfig(width=16, height=8), frames=3, schedule="clear")))
        3
    """
    source = SimSource(config, seed, frames, schedule)
    try:
        yield from source
    finally:
        source.close()
