"""Video files OpenCV can read (mp4, avi, mkv, ...) as a source: ``video:PATH``.

Frames are decoded with ``cv2.VideoCapture`` and converted from BGR to RGB; timestamps are the
decoder's positions (``CAP_PROP_POS_MSEC``), or ``index / fps`` where the container gives
none. A file from which nothing decodes fails at open with a :class:`SourceError` naming the
path. A file that ends early (its frame count says more frames than decode) stops cleanly
after the last frame that decodes, with a ``{"kind": "truncated", ...}`` event and
``stats()["truncated"] == 1``.

Example:
    >>> import tempfile, cv2, numpy as np
    >>> path = str(Path(tempfile.mkdtemp()) / "demo.avi")
    >>> writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 16))
    >>> for value in (0, 80, 160):
    ...     _ = writer.write(np.full((16, 32, 3), value, np.uint8))
    >>> writer.release()
    >>> with open_video(path, resize=(16, 8)) as source:
    ...     [(f.index, round(f.timestamp, 3), f.shape) for f in source]
    [(0, 0.0, (8, 16)), (1, 0.1, (8, 16)), (2, 0.2, (8, 16))]
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from stream.frame import Frame
from stream.machine import usable_cores
from stream.sources.base import SourceError
from stream.sources.images import RecordedSource, build_config, check_backwards_policy, list_images, parse_size, read_label
from stream.sources.labelmaps import get_label_map

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoConfig:
    """Options of a video source (every field is also a keyword of :func:`open_video`).

    Example:
        >>> VideoConfig(resize=(640, 360)).resize
        (640, 360)
    """

    resize: tuple[int, int] | None = None  # (width, height) for every frame; None: the video's size
    fps: float | None = None  # frame rate for index / fps timestamps; None: the container's
    on_backwards: str = "error"  # timestamps going backwards: "error" | "clamp" | "skip"
    name: str | None = None  # the log's name (source_id, meta["domain"]); None: the file name
    labels: str | None = None  # a folder of label images: the i-th (natural order) labels the i-th frame
    label_map: str | None = None  # None keeps label values; a name in perception.labels.LABEL_MAPS maps them
    threads: int = -1  # decoder threads: -1 = one per core plus one (the decoder keeps working while
    # the reading thread converts colours: ~8% more frames/s than OpenCV's default on 2 cores), 0 = OpenCV's default

    def __post_init__(self) -> None:
        object.__setattr__(self, "resize", parse_size(self.resize, "resize"))
        try:
            threads = int(self.threads)
        except (TypeError, ValueError):
            raise SourceError(f"threads must be an integer, got {self.threads!r}") from None
        if threads < -1:
            raise SourceError(f"threads must be -1 (cores + 1), 0 (OpenCV's default) or a count, got {threads}")
        object.__setattr__(self, "threads", threads)
        if self.fps is not None:
            try:
                fps = float(self.fps)
            except (TypeError, ValueError):
                raise SourceError(f"fps must be a number, got {self.fps!r}") from None
            if not fps > 0 or not math.isfinite(fps):
                raise SourceError(f"fps must be positive, got {self.fps!r}")
            object.__setattr__(self, "fps", fps)
        check_backwards_policy(self.on_backwards)


def default_decoder_threads() -> int:
    """Decoder threads of ``threads=-1`` (the default): one per usable core plus one."""
    return usable_cores() + 1


class VideoSource(RecordedSource):
    """Decodes a video file frame by frame into RGB :class:`~stream.frame.Frame`.

    ``frame_count`` is the container's count (None when it gives none) and ``fps`` its rate.
    ``meta`` of each frame: ``domain`` (the log's name) and ``position`` (frames decoded
    before it).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "empty.mp4"
        >>> _ = path.write_bytes(b"not a video")
        >>> VideoSource(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stream.sources.base.SourceError: video:...empty.mp4: OpenCV cannot open it (not a video, an unknown format, or a damaged header)
    """

    def __init__(self, path: str | Path, config: VideoConfig = VideoConfig()) -> None:
        file = Path(path)
        where = f"video:{file}"
        if not file.exists():
            raise SourceError(f"{where}: the file does not exist")
        if not file.is_file():
            raise SourceError(f"{where}: not a file")
        name = config.name or file.name
        super().__init__(f"video:{name}", resize=config.resize, on_backwards=config.on_backwards)
        self.path = file
        self.config = config
        self._capture: cv2.VideoCapture | None = None
        threads = config.threads if config.threads >= 0 else default_decoder_threads()
        capture = cv2.VideoCapture(str(file), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, threads]) if threads else cv2.VideoCapture(str(file))
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"{where}: OpenCV cannot open it (not a video, an unknown format, or a damaged header)")
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            raise SourceError(f"{where}: no frame could be decoded (the file is empty, corrupt or truncated)")
        self._capture = capture
        self._first: tuple[np.ndarray, float] | None = (first, capture.get(cv2.CAP_PROP_POS_MSEC))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count: int | None = count if count > 0 else None
        container_fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = config.fps or (container_fps if container_fps > 0 else None)
        self._label_files: list[Path] = []
        self._label_map = get_label_map(config.label_map)
        if config.labels is not None:
            label_dir = Path(config.labels)
            if not label_dir.is_dir():
                capture.release()
                self._capture = None
                raise SourceError(f"{where}: the label folder {label_dir} does not exist")
            self._label_files = list_images(label_dir)
            if self.frame_count is not None and len(self._label_files) != self.frame_count:
                logger.warning("%s: %d label files for %d frames; frames past the last label get none",
                               where, len(self._label_files), self.frame_count)

    def __len__(self) -> int:
        """The container's frame count (0 when it gives none)."""
        return self.frame_count or 0

    def _timestamp(self, position: int, pos_msec: float) -> float:
        # The decoder's position is the frame's presentation time; a backend that gives none
        # answers NaN, a negative value, or 0 for every frame.
        if math.isfinite(pos_msec) and pos_msec >= 0 and not (position > 0 and pos_msec == 0):
            return pos_msec / 1000.0
        if self.fps is None:
            raise SourceError(
                f"video:{self.path}: the container gives neither frame times nor a frame rate; pass fps="
            )
        return position / self.fps

    def _frames(self) -> Iterator[Frame]:
        capture, first = self._capture, self._first
        self._first = None
        if capture is None or first is None:
            return
        buffer, pos_msec = first
        position = 0
        while True:
            label, label_where = self._label(position)
            frame = self._make_frame(
                buffer, self._timestamp(position, pos_msec), where=f"frame {position}", color="bgr",
                meta={"position": position}, label=label, label_where=label_where,
            )
            if frame is not None:
                yield frame
            position += 1
            if self._closed:
                return
            ok, buffer = capture.read(buffer)  # reuses the BGR buffer; the RGB copy is the frame's
            if not ok or buffer is None:
                break
            pos_msec = capture.get(cv2.CAP_PROP_POS_MSEC)
        if self.frame_count is not None and position < self.frame_count:
            self._count("truncated")
            self._event(
                "truncated", path=str(self.path), expected_frames=self.frame_count, decoded_frames=position,
            )
            logger.warning(
                "%s: the file ends early: %d of %d frames decoded", self.source_id, position, self.frame_count
            )
        self.close()

    def _label(self, position: int) -> tuple[np.ndarray | None, str]:
        """The label of frame ``position`` (None, counted, when there is none or it is unreadable)."""
        if not self._label_files:
            return None, ""
        if position >= len(self._label_files):
            self._count("labels_missing")
            return None, ""
        file = self._label_files[position]
        label = read_label(file)
        if label is None:
            self._event("label_unreadable", file=file.name)
            self._count("labels_missing")
            return None, ""
        if self._label_map is not None:
            label = self._label_map(label)  # (H, W) uint8
        return label, str(file)

    def stats(self) -> dict[str, int]:
        """Counters: frames_read, frames_skipped, frames_dropped, labels_missing, truncated."""
        counts = super().stats()
        counts.setdefault("truncated", 0)
        return counts

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._first = None


def open_video(path: str | Path, **opts: Any) -> VideoSource:
    """Open a video file OpenCV can read (``video:PATH``): RGB frames, decoder timestamps.

    Options: ``resize`` (width, height), ``fps`` (for ``index / fps`` timestamps where the
    container gives none), ``on_backwards`` (``"error"`` | ``"clamp"`` | ``"skip"``),
    ``name`` (the log's name; default the file name), ``labels`` (a folder whose i-th label
    image, in natural order, labels the i-th frame), ``label_map`` (as for image folders) and
    ``threads`` (decoder threads; default one per core plus one, 0 for OpenCV's own). Raises :class:`SourceError` when the
    file is missing or nothing decodes.
    """
    return VideoSource(path, build_config(VideoConfig, opts, f"video:{path}"))
