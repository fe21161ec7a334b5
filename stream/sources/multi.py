"""Several recorded logs in one run, one after the other: :func:`open_many`.

Each frame keeps its own log's ``source_id``; ``index`` is renumbered to be monotonic over the
run and the log's own index is kept in ``meta["log_index"]``; ``meta["domain"]`` is the log's
name (unique within the run), so per-domain metrics become per-log metrics. ``true_shifts``
are the run indices where a log begins (after the first one), filled in as the run reaches
them. The logs' events are relayed into ``events`` with the run index in ``"index"`` and the
log's own in ``"log_index"``; ``{"kind": "log_start", ...}`` marks each log's first frame.

A folder of logs is read in natural name order: a video file is a ``video`` log; a folder
with a ``frames/`` folder (labels in a sibling ``labels/``) an ``images`` log; a KITTI drive
a ``kitti`` log; a ROS 2 bag folder (``metadata.yaml``) or a ``.bag`` file a ``rosbag`` log
(its only image topic); a folder of images an ``images`` log.

Example:
    >>> import numpy as np
    >>> from stream.sources.images import RecordedSource
    >>> class Log(RecordedSource):
    ...     def _frames(self):
    ...         for i in range(2):
    ...             yield self._make_frame(np.zeros((2, 2, 3), np.uint8), i * 0.1, where=str(i))
    >>> with open_many([Log("demo:a"), Log("demo:b")]) as run:
    ...     [(f.index, f.source_id, f.meta["log_index"], f.domain) for f in run], run.true_shifts
    ([(0, 'demo:a', 0, 'a'), (1, 'demo:a', 1, 'a'), (2, 'demo:b', 0, 'b'), (3, 'demo:b', 1, 'b')], [2])
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from stream.frame import Frame
from stream.sources.base import IterateOnce, Source, SourceError
from stream.sources.images import IMAGE_EXTENSIONS, ImageFolderConfig, natural_key
from stream.sources.kitti import KittiConfig
from stream.sources.rosbag import RosbagConfig
from stream.sources.video import VideoConfig

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".wmv")


def detect_log(path: str | Path) -> tuple[str, Path] | None:
    """The kind of log at ``path`` and the path to open it with; None when it is not a log.

    Example:
        >>> detect_log("drive.MP4")
        ('video', PosixPath('drive.MP4'))
    """
    path = Path(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS and not path.is_dir():
        return "video", path
    if path.suffix.lower() == ".bag" and path.is_file():
        return "rosbag", path
    if not path.is_dir():
        return None
    if (path / "frames").is_dir():
        return "images", path / "frames"
    if any((path / camera / "data").is_dir() for camera in ("image_02", "image_03", "image_00", "image_01")):
        return "kitti", path
    if (path / "metadata.yaml").is_file():
        return "rosbag", path
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir() if p.is_file()):
        return "images", path
    return None


def discover_logs(folder: str | Path) -> list[tuple[str, Path]]:
    """The logs in ``folder`` (each a video file or a log folder), natural name order.

    Raises:
        SourceError: the folder does not exist or holds no log.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"logs:{folder}: the folder does not exist" if not folder.exists() else f"logs:{folder}: not a folder")
    logs = []
    for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        found = detect_log(entry)
        if found is not None:
            logs.append(found)
        else:
            logger.info("logs:%s: %s is not a log, left out", folder, entry.name)
    if not logs:
        raise SourceError(
            f"logs:{folder}: no logs in the folder (video files, image folders, KITTI drives or ROS bags)"
        )
    return logs


def open_log(kind: str, path: Path, **opts: Any) -> Source:
    """Open one log of a known kind, passing only the options that kind accepts."""
    from stream.sources.images import open_images
    from stream.sources.kitti import open_kitti
    from stream.sources.rosbag import open_rosbag
    from stream.sources.video import open_video

    openers: dict[str, tuple[Callable[..., Source], type]] = {
        "video": (open_video, VideoConfig),
        "images": (open_images, ImageFolderConfig),
        "kitti": (open_kitti, KittiConfig),
        "rosbag": (open_rosbag, RosbagConfig),
    }
    opener, config_type = openers[kind]
    accepted = set(config_type.__dataclass_fields__)
    return opener(path, **{k: v for k, v in opts.items() if k in accepted})


def check_log_options(where: str, opts: dict[str, Any]) -> None:
    """Raise :class:`SourceError` naming every option no log kind takes (and ``name``, which
    cannot name several logs); each log later takes the options its kind accepts."""
    known: set[str] = set()
    for config_type in (VideoConfig, ImageFolderConfig, KittiConfig, RosbagConfig):
        known |= set(config_type.__dataclass_fields__)
    unknown = sorted(set(opts) - known - {"name"})
    if unknown or "name" in opts:
        bad = unknown or ["name"]
        raise SourceError(f"{where}: option(s) {', '.join(bad)} cannot apply to a run of several logs; "
                          f"known: {', '.join(sorted(known - {'name'}))}")


def _log_name(source: Source) -> str:
    return str(source.source_id).split(":", 1)[-1]


class MultiSource(IterateOnce):
    """Plays several sources one after the other as one run (see the module docstring).

    ``stats()`` sums the logs' counters and adds ``logs``. Closing it closes every log; a
    log is closed as soon as it is exhausted.

    Example:
        >>> MultiSource([])
        Traceback (most recent call last):
        ...
        stream.sources.base.SourceError: open_many: no sources given
    """

    def __init__(self, sources: Sequence[Source], source_id: str = "logs") -> None:
        if not sources:
            raise SourceError("open_many: no sources given")
        self.source_id = source_id
        self.sources = list(sources)
        self.events: list[dict[str, Any]] = []
        self.domains = self._unique_names([_log_name(s) for s in self.sources])
        self._shifts: list[int] = []
        self._next_index = 0
        self._started = False
        self._closed = False

    @staticmethod
    def _unique_names(names: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        out = []
        for name in names:
            seen[name] = seen.get(name, 0) + 1
            out.append(name if seen[name] == 1 else f"{name}~{seen[name]}")
        return out

    def _relay(self, source: Source, seen: int) -> int:
        """Copy the log's events appended since ``seen`` into ours; return the new count."""
        new = source.events[seen:]
        for event in new:
            relayed = dict(event)
            relayed["log_index"] = event.get("index")
            relayed["index"] = self._next_index
            relayed.setdefault("source_id", source.source_id)
            self.events.append(relayed)
        return seen + len(new)

    def _frames(self) -> Iterator[Frame]:
        for log_number, (source, domain) in enumerate(zip(self.sources, self.domains)):
            seen = self._relay(source, 0)  # events from opening the log
            first = True
            try:
                for frame in source:
                    seen = self._relay(source, seen)
                    if first:
                        if self._next_index > 0:
                            self._shifts.append(self._next_index)
                        self.events.append({
                            "kind": "log_start", "index": self._next_index, "source_id": frame.source_id,
                            "domain": domain, "log": log_number,
                        })
                        first = False
                    meta = {**frame.meta, "log_index": frame.index, "domain": domain}
                    out = Frame(
                        frame.image, timestamp=frame.timestamp, source_id=frame.source_id, index=self._next_index,
                        label=frame.label, depth=frame.depth, meta=meta,
                    )
                    self._next_index += 1
                    yield out
                    if self._closed:
                        return
                self._relay(source, seen)
            finally:
                source.close()

    def _inner_sources(self) -> list[Any]:
        return list(self.sources)

    def stats(self) -> dict[str, int]:
        """The logs' counters summed, plus ``logs``."""
        total: dict[str, int] = {"frames_read": 0, "frames_skipped": 0, "frames_dropped": 0}
        for source in self.sources:
            for key, value in source.stats().items():
                if isinstance(value, int):
                    total[key] = total.get(key, 0) + value
        total["logs"] = len(self.sources)
        return total

    @property
    def true_shifts(self) -> list[int]:
        """Run indices where a new log begins (known once the run reaches them)."""
        return list(self._shifts)

    def close(self) -> None:
        """Close every log; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for source in self.sources:
            source.close()

    def __enter__(self) -> "MultiSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_many(sources: Sequence[Source] | str | Path, **opts: Any) -> MultiSource:
    """Play several logs one after the other: a list of open sources, or a folder of logs.

    For a folder, every log is opened at once (so a bad log fails before the run starts) and
    ``opts`` go to each log that accepts them (``resize``, ``on_backwards``, ``label_map``,
    ``fps``, ...). Frames keep their ``source_id``; ``index`` runs over the whole run, with
    ``meta["log_index"]`` the log's own and ``meta["domain"]`` the log's name;
    ``true_shifts`` are the boundaries between logs.
    """
    if isinstance(sources, (str, Path)):
        folder = Path(sources)
        check_log_options(f"logs:{folder}", opts)
        opened: list[Source] = []
        try:
            for kind, path in discover_logs(folder):
                opened.append(open_log(kind, path, **opts))
        except Exception:
            for source in opened:
                source.close()
            raise
        return MultiSource(opened, source_id=f"logs:{folder.name}")
    if opts:
        raise SourceError(f"open_many: options {sorted(opts)} apply only to a folder of logs")
    return MultiSource(list(sources))
