"""Camera sources behind one protocol, chosen by a spec string (``--source``).

``KIND:PATH[?key=value&key=value]``:

- ``sim:SCHEDULE`` — the built-in simulator (``sim:tour`` by default);
- ``video:PATH`` — any file OpenCV decodes (options: resize, fps, labels, label_map, name, threads);
- ``images:DIR`` — a folder of frames, with optional timestamps file and labels folder
  (options: labels, timestamps, label_map, fps, resize, name);
- ``kitti:DIR`` — a KITTI raw drive (``image_02/data/*.png`` + ``timestamps.txt``);
- ``rosbag:PATH#/topic`` — a ROS 2 bag's ``sensor_msgs/Image`` or ``CompressedImage`` topic;
- ``logs:DIR`` — every log in a folder, one after the other (or ``logs:A,B,...``);
- ``carla:HOST[:PORT]`` — a CARLA server (port 2000 by default; the ``carla`` extra) in synchronous
  mode (options: town, weather, width, height, fov, fps, timeout, vehicle, tm_port, camera_forward,
  camera_height).

The simulators (:data:`LIVE_KINDS`: ``sim``, ``carla``) name no file, and are never paced by
``run.realtime``: they wait for the pipeline, tick by tick.

Example:
    >>> parse_spec("video:clip.mp4?resize=480x352&label_map=camvid-raw")
    ('video', 'clip.mp4', {'resize': '480x352', 'label_map': 'camvid-raw'})
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, quote

from stream.sources.base import Source, SourceError

__all__ = ["Source", "SourceError", "open_source", "parse_spec", "resolve_spec_paths", "sim_world_fitted", "source_usage",
           "SOURCE_KINDS"]

log = logging.getLogger(__name__)

LIVE_KINDS = frozenset({"sim", "carla"})  # simulators: the argument names no file; no pacing
PATH_OPTIONS = ("labels", "timestamps")  # ?options whose value is a file or folder
NOT_A_PATH = frozenset({"", "true", "false", "none", "yes", "no", "1", "0"})  # option words that name no file


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``KIND:PATH?k=v&k=v`` -> (kind, path, options)."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        rest = ""
    path, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    return kind, path, options


def resolve_path(path: str, base: str | Path) -> str:
    """``path`` as it is when absolute, else joined to ``base`` (normalised).

    Example:
        >>> resolve_path("../data/clip.mp4", "/repo/configs"), resolve_path("/abs/x", "/repo")
        ('/repo/data/clip.mp4', '/abs/x')
    """
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded):
        return expanded
    return os.path.normpath(os.path.join(os.fspath(base), expanded))


def resolve_spec_paths(spec: str, base: str | Path) -> str:
    """A source spec with its relative paths resolved against ``base`` (a config file's folder).

    The PATH of ``KIND:PATH`` (each of ``logs:A,B``; the bag of ``rosbag:PATH#TOPIC``) and the
    path-valued options (:data:`PATH_OPTIONS`: ``labels``, ``timestamps``) are resolved;
    absolute paths, ``sim:`` schedules, ``carla:`` addresses and option words such as
    ``labels=true`` are kept.

    Example:
        >>> resolve_spec_paths("video:../logs/clip.mp4?labels=../logs/labels&label_map=camvid-raw", "/repo/configs")
        'video:/repo/logs/clip.mp4?labels=/repo/logs/labels&label_map=camvid-raw'
        >>> resolve_spec_paths("rosbag:bags/run1#/camera/image", "/data"), resolve_spec_paths("sim:tour", "/data")
        ('rosbag:/data/bags/run1#/camera/image', 'sim:tour')
        >>> resolve_spec_paths("carla:sim-box:2000?town=Town01", "/data")
        'carla:sim-box:2000?town=Town01'
    """
    kind, sep, rest = spec.partition(":")
    if not sep or kind in LIVE_KINDS or kind not in SOURCE_KINDS:
        return spec
    arg, qsep, query = rest.partition("?")
    if kind == "rosbag":
        path, hsep, topic = arg.partition("#")
        arg = (resolve_path(path, base) if path else path) + hsep + topic
    elif arg:
        arg = ",".join(resolve_path(part, base) if part else part for part in arg.split(","))
    if query:
        items = []
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key in PATH_OPTIONS and value.strip().lower() not in NOT_A_PATH:
                value = resolve_path(value, base)
            items.append(f"{quote(key, safe='')}={quote(value, safe='/:,@-._~')}")
        query = "&".join(items)
    return f"{kind}:{arg}{qsep}{query}"


def sim_world_fitted(config: Any) -> str | None:
    """When the run streams the simulator on a world some model or threshold was fitted on, the
    name of that range of :mod:`sim.seeds` (``TEACHER_TRAINING``, ...); else None.

    Example:
        >>> from stream.config import RunConfig, apply_overrides
        >>> sim_world_fitted(RunConfig()), sim_world_fitted(apply_overrides(RunConfig(), ["run.seed=3"]))
        (None, 'TEACHER_TRAINING')
        >>> sim_world_fitted(apply_overrides(RunConfig(), ["run.seed=3", "run.source=video:clip.mp4"])) is None
        True
    """
    if parse_spec(config.run.source)[0] != "sim":
        return None
    from sim.seeds import training_use

    return training_use(config.run.seed)


def _sim(arg: str, options: dict[str, str], config: Any) -> Source:
    """sim:SCHEDULE"""
    from stream.sources.sim import SimSource

    if options:
        raise SourceError(f"sim:{arg}: the simulator takes no ?options, got {', '.join(sorted(options))} (use --set sim.KEY=VALUE)")
    fitted = sim_world_fitted(config)
    if fitted is not None:
        log.warning("run.seed=%d is a world of %s (sim.seeds): a model or threshold was fitted on it, so this run's "
                    "scores are not held out (the default run.seed is a held-out world)", config.run.seed, fitted)
    closed_loop = None
    if config.run.closed_loop:
        from sim.control import LaneKeeperConfig

        closed_loop = LaneKeeperConfig()
    return SimSource(config.sim, seed=config.run.seed, frames=config.run.frames, schedule=arg or "tour",
                     closed_loop=closed_loop)


def _video(arg: str, options: dict[str, str], config: Any) -> Source:
    """video:PATH"""
    from stream.sources.video import open_video

    return open_video(arg, **options)


def _images(arg: str, options: dict[str, str], config: Any) -> Source:
    """images:DIR"""
    from stream.sources.images import open_images

    return open_images(arg, **options)


def _kitti(arg: str, options: dict[str, str], config: Any) -> Source:
    """kitti:DIR"""
    from stream.sources.kitti import open_kitti

    return open_kitti(arg, **options)


def _rosbag(arg: str, options: dict[str, str], config: Any) -> Source:
    """rosbag:PATH#TOPIC"""
    from stream.sources.rosbag import open_rosbag, split_spec

    path, topic = split_spec(arg)
    return open_rosbag(path, topic, **options)


def _logs(arg: str, options: dict[str, str], config: Any) -> Source:
    """logs:DIR (or logs:A,B,...)"""
    from stream.sources.multi import check_log_options, detect_log, open_log, open_many

    if "," in arg:
        check_log_options(f"logs:{arg}", options)
        sources = []
        for part in arg.split(","):
            found = detect_log(part)
            if found is None:
                raise SourceError(f"logs:{arg}: {part} is not a log odistill can read (video, image folder, KITTI drive, ROS 2 bag)")
            sources.append(open_log(found[0], found[1], **options))
        return open_many(sources)
    return open_many(arg, **options)


def _carla(arg: str, options: dict[str, str], config: Any) -> Source:
    """carla:HOST[:PORT]"""
    from stream.sources.carla import open_carla

    return open_carla(arg, frames=config.run.frames, seed=config.run.seed, **options)


SOURCE_KINDS: dict[str, Callable[[str, dict[str, str], Any], Source]] = {
    "sim": _sim, "video": _video, "images": _images, "kitti": _kitti, "rosbag": _rosbag, "logs": _logs,
    "carla": _carla,
}


def source_usage() -> str:
    """One line naming every kind in :data:`SOURCE_KINDS` and its argument, for ``--help``
    (read from the registry, so a new kind shows up by itself).

    Example:
        >>> source_usage().split(" | ")[:2]
        ['sim:SCHEDULE', 'video:PATH']
    """
    return " | ".join(((build.__doc__ or "").strip().splitlines() or [f"{kind}:PATH"])[0] for kind, build in SOURCE_KINDS.items())


def open_source(spec: str, config: Any) -> Source:
    """Open the source a spec names; ``config`` is the :class:`~stream.config.RunConfig`.

    With ``run.realtime`` a recorded log is paced by its timestamps (frames dropped, and
    counted, when the pipeline falls behind); a simulator (:data:`LIVE_KINDS`) is not.
    """
    kind, arg, options = parse_spec(spec)
    if kind not in SOURCE_KINDS:
        raise SourceError(f"unknown source {spec!r} (kinds: {', '.join(k + ':...' for k in sorted(SOURCE_KINDS))})")
    if kind == "carla" and not arg:
        raise SourceError(f"source {spec!r}: give the server's address, e.g. carla:localhost:2000")
    if kind not in LIVE_KINDS and not arg:
        raise SourceError(f"source {spec!r}: give a path, e.g. {kind}:PATH")
    if kind not in LIVE_KINDS | {"rosbag"} and not Path(arg.split(",")[0]).exists():
        raise SourceError(f"source {spec!r}: {arg} does not exist")
    source = SOURCE_KINDS[kind](arg, options, config)
    if config.run.realtime and kind not in LIVE_KINDS:
        from stream.sources.pacing import pace

        source = pace(source, realtime=True)
    return source
