"""KITTI raw drives as a source: ``kitti:DIR``.

A KITTI raw drive folder (``2011_09_26_drive_0001_sync``) holds one folder a camera;
``image_02`` (left colour) has ``data/0000000000.png, ...`` and ``timestamps.txt`` with one
``2011-09-26 13:02:25.964389445`` line a frame. Frame timestamps are seconds since the first
line (nanoseconds kept exactly until the final subtraction). DIR may be the drive folder, the
camera folder, or its ``data`` folder.

Example:
    >>> import tempfile, cv2, numpy as np
    >>> drive = Path(tempfile.mkdtemp()) / "2011_09_26_drive_0001_sync"
    >>> (drive / "image_02" / "data").mkdir(parents=True)
    >>> for i in range(2):
    ...     _ = cv2.imwrite(str(drive / "image_02" / "data" / f"{i:010d}.png"), np.zeros((4, 6, 3), np.uint8))
    >>> _ = (drive / "image_02" / "timestamps.txt").write_text(
    ...     "2011-09-26 13:02:25.964389445\\n2011-09-26 13:02:26.067000000\\n")
    >>> with open_kitti(drive) as source:
    ...     [(f.source_id, round(f.timestamp, 9)) for f in source]
    [('kitti:2011_09_26_drive_0001_sync', 0.0), ('kitti:2011_09_26_drive_0001_sync', 0.102610555)]
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.sources.base import SourceError
from stream.sources.images import (
    ImageFolderConfig,
    ImageFolderSource,
    build_config,
    check_backwards_policy,
    list_images,
    parse_size,
)

_STAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")


@dataclass(frozen=True)
class KittiConfig:
    """Options of a KITTI source (every field is also a keyword of :func:`open_kitti`).

    Example:
        >>> KittiConfig().camera
        'image_02'
    """

    camera: str = "image_02"  # camera folder: image_02 left colour, image_03 right colour
    resize: tuple[int, int] | None = None  # (width, height) for every frame; None: sizes must agree
    on_backwards: str = "error"  # timestamps going backwards: "error" | "clamp" | "skip"
    name: str | None = None  # the log's name (source_id, meta["domain"]); None: the drive folder's

    def __post_init__(self) -> None:
        object.__setattr__(self, "resize", parse_size(self.resize, "resize"))
        check_backwards_policy(self.on_backwards)


def parse_kitti_stamp(text: str) -> int:
    """A KITTI timestamp line as integer nanoseconds since the Unix epoch (UTC-naive).

    Example:
        >>> parse_kitti_stamp("1970-01-01 00:00:01.5")
        1500000000
    """
    match = _STAMP.match(text.strip())
    if match is None:
        raise ValueError(f"not a 'YYYY-MM-DD HH:MM:SS.fffffffff' timestamp: {text.strip()!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = (match.group(7) or "").ljust(9, "0")
    whole = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    return whole * 1_000_000_000 + int(fraction or 0)


def read_kitti_timestamps(path: Path) -> list[float]:
    """Seconds since the first line of a KITTI ``timestamps.txt`` (blank lines ignored)."""
    stamps: list[int] = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            stamps.append(parse_kitti_stamp(line))
        except ValueError as exc:
            raise SourceError(f"timestamps file {path}, line {lineno}: {exc}") from None
    if not stamps:
        raise SourceError(f"timestamps file {path} is empty")
    return [(stamp - stamps[0]) / 1e9 for stamp in stamps]


def find_camera_folder(path: Path, camera: str) -> Path:
    """The camera folder (holding ``data/`` and ``timestamps.txt``) for a drive, camera or data DIR."""
    where = f"kitti:{path}"
    if not path.exists():
        raise SourceError(f"{where}: the folder does not exist")
    if not path.is_dir():
        raise SourceError(f"{where}: not a folder")
    for candidate in (path / camera, path, path.parent):
        if (candidate / "data").is_dir() and candidate.name.startswith("image_"):
            return candidate
    raise SourceError(f"{where}: not a KITTI raw drive: no {camera}/data folder (nor image_XX/data)")


class KittiSource(ImageFolderSource):
    """A KITTI raw drive's camera frames with their recorded timestamps.

    Example:
        >>> KittiSource("/no/such/drive")
        Traceback (most recent call last):
        ...
        stream.sources.base.SourceError: kitti:/no/such/drive: the folder does not exist
    """

    def __init__(self, path: str | Path, config: KittiConfig = KittiConfig()) -> None:
        camera_dir = find_camera_folder(Path(path), config.camera)
        stamps_file = camera_dir / "timestamps.txt"
        if not stamps_file.is_file():
            raise SourceError(f"kitti:{path}: {stamps_file} does not exist")
        drive = camera_dir.parent.name
        folder_config = ImageFolderConfig(
            labels=False, resize=config.resize, on_backwards=config.on_backwards, name=config.name or drive,
        )
        timestamps = read_kitti_timestamps(stamps_file)
        frames = camera_dir / "data"
        super().__init__(frames, folder_config, timestamps=_match_count(timestamps, frames, stamps_file), kind="kitti")
        self.camera_dir = camera_dir


def _match_count(timestamps: list[float], frames: Path, stamps_file: Path) -> list[float]:
    count = len(list_images(frames))
    if count and len(timestamps) != count:
        raise SourceError(f"kitti:{frames.parent}: {stamps_file.name} has {len(timestamps)} lines for {count} frames")
    return timestamps


def open_kitti(path: str | Path, **opts: Any) -> KittiSource:
    """Open a KITTI raw drive (``kitti:DIR``; the drive, ``image_02`` or ``image_02/data`` folder).

    Options: ``camera`` (default ``"image_02"``), ``resize`` (width, height),
    ``on_backwards`` (``"error"`` | ``"clamp"`` | ``"skip"``), ``name``.
    """
    return KittiSource(path, build_config(KittiConfig, opts, f"kitti:{path}"))
