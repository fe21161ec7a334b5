"""Image folders as a source (``images:DIR``), and :class:`RecordedSource`, the machinery
every recorded-log source shares (counters, events, timestamp and size checks, resizing).

A folder of frames is replayed in natural name order (``f2.png`` before ``f10.png``). Its
timestamps come from a timestamps file (one float of seconds a line, in frame order, or
``name seconds`` lines) or, without one, from ``index / fps``. Labels come from a folder of
single-channel images matched by file stem; by default the sibling ``labels/`` folder when
DIR is a ``frames/`` folder (the layout of ``shared/data/logs/camvid_0016E5_15hz``).

Labels, two modes:
    - ``label_map=None`` (default): the label files' values are kept as they are, so a CamVid
      folder yields CamVid ids 0..11 (11 = void). Pass ``label_map="camvid-raw"`` to keep
      CamVid ids with void turned into 255 (what evaluation in CamVid's label set wants).
    - ``label_map="camvid"`` (or any name in :data:`perception.labels.LABEL_MAPS`, or a
      :class:`~perception.labels.LabelMap`): labels are mapped into the canonical space
      (Cityscapes trainIds, 255 = ignore).

Example:
    >>> import tempfile, cv2, numpy as np
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("f10.png", "f2.png", "f1.png"):
    ...     _ = cv2.imwrite(str(folder / name), np.zeros((4, 6, 3), np.uint8))
    >>> with open_images(folder, fps=5) as source:
    ...     [(f.meta["file"], f.timestamp) for f in source]
    [('f1.png', 0.0), ('f2.png', 0.2), ('f10.png', 0.4)]
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import cv2
import numpy as np

from perception.labels import LabelMap
from stream.frame import Frame
from stream.sources.base import IterateOnce, SourceError
from stream.sources.labelmaps import get_label_map

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
BACKWARDS_POLICIES = ("error", "clamp", "skip")
DEFAULT_TIMESTAMPS_FILE = "timestamps.txt"


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders digit runs by value: ``f2`` before ``f10``.

    Example:
        >>> sorted(["f10.png", "f2.png", "F1.png"], key=natural_key)
        ['F1.png', 'f2.png', 'f10.png']
    """
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), p) if p.isdigit() else (1, p.lower(), p) for p in parts if p)


def parse_size(value: Any, what: str) -> tuple[int, int] | None:
    """Read a ``(width, height)`` option: a pair, ``"640x480"``, ``"640,480"`` or None.

    Example:
        >>> parse_size("640x480", "resize"), parse_size((32, 16), "resize"), parse_size(None, "resize")
        ((640, 480), (32, 16), None)
    """
    if value is None:
        return None
    parts: Sequence[Any] = re.split(r"[x,]", value.strip().lower()) if isinstance(value, str) else value
    try:
        width, height = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise SourceError(f"{what} must be (width, height) or 'WIDTHxHEIGHT', got {value!r}") from None
    if width <= 0 or height <= 0:
        raise SourceError(f"{what} must be positive, got {width}x{height}")
    return width, height


def check_backwards_policy(policy: str) -> None:
    """Raise :class:`SourceError` unless ``policy`` is one of :data:`BACKWARDS_POLICIES`."""
    if policy not in BACKWARDS_POLICIES:
        raise SourceError(f"on_backwards must be one of {BACKWARDS_POLICIES}, got {policy!r}")


def build_config(config_type: type, opts: Mapping[str, Any], where: str) -> Any:
    """Build a frozen config dataclass from keyword options, naming unknown ones clearly."""
    known = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise SourceError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return config_type(**opts)


class RecordedSource(IterateOnce):
    """Base of the recorded-log sources: counters, events, checks, and the Source contract.

    A subclass implements ``_frames()`` (a generator) and turns each decoded image into a
    frame with :meth:`_make_frame`, which numbers frames, checks that timestamps do not go
    backwards (``on_backwards``: ``"error"`` raises, ``"clamp"`` raises the timestamp to the
    previous one, ``"skip"`` drops the frame; both recorded in ``events``), checks label and
    frame sizes, resizes when a fixed ``resize=(width, height)`` was asked for, and converts
    BGR to RGB. ``frames_read`` counts frames delivered, ``frames_skipped`` unusable ones.
    A source can be iterated once; ``close()`` is idempotent; it is a context manager.

    Example:
        >>> class Two(RecordedSource):
        ...     def _frames(self):
        ...         for t in (0.0, 0.1):
        ...             frame = self._make_frame(np.zeros((2, 3, 3), np.uint8), t, where=f"t={t}")
        ...             if frame is not None:
        ...                 yield frame
        >>> with Two("demo:two") as source:
        ...     [f.index for f in source], source.stats()["frames_read"], source.true_shifts
        ([0, 1], 2, [])
    """

    def __init__(
        self,
        source_id: str,
        *,
        resize: tuple[int, int] | None = None,
        on_backwards: str = "error",
        domain: str | None = None,
    ) -> None:
        check_backwards_policy(on_backwards)
        self.source_id = source_id
        self.domain = domain if domain is not None else source_id.split(":", 1)[-1]
        self.events: list[dict[str, Any]] = []
        self._resize = parse_size(resize, f"{source_id}: resize")
        self._on_backwards = on_backwards
        self._counts: dict[str, int] = {
            "frames_read": 0, "frames_skipped": 0, "frames_dropped": 0, "labels_missing": 0,
        }
        self._next_index = 0
        self._last_timestamp: float | None = None
        self._size: tuple[int, int] | None = None  # (width, height) of the first frame
        self._size_where = ""
        self._started = False
        self._closed = False

    # --- the Source contract -------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counters: frames_read, frames_skipped, frames_dropped, labels_missing, ..."""
        return dict(self._counts)

    @property
    def true_shifts(self) -> list[int]:
        """A recorded log knows of no domain shift inside itself."""
        return []

    def close(self) -> None:
        """Release files and handles; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._release()

    # --- for subclasses -------------------------------------------------------------------
    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def _release(self) -> None:
        """Free what the subclass holds (called once by :meth:`close`)."""

    def _count(self, key: str, amount: int = 1) -> None:
        self._counts[key] = self._counts.get(key, 0) + amount

    def _event(self, kind: str, **fields: Any) -> None:
        self.events.append({"kind": kind, "index": self._next_index, "source_id": self.source_id, **fields})

    def _skip(self, reason: str, **fields: Any) -> None:
        """Count a frame that cannot be used and record why (the stream goes on)."""
        self._count("frames_skipped")
        self._event("frame_skipped", reason=reason, **fields)
        logger.warning("%s: skipped a frame before index %d: %s %s", self.source_id, self._next_index, reason, fields)

    def _make_frame(
        self,
        image: np.ndarray,  # (H, W, 3) uint8, BGR when color == "bgr"
        timestamp: float,
        *,
        where: str,
        label: np.ndarray | None = None,  # (H, W) uint8
        label_where: str = "",
        color: str = "rgb",
        meta: Mapping[str, Any] | None = None,
    ) -> Frame | None:
        """Check, resize and wrap one decoded image; None when the frame is skipped.

        Shape:
            image (H, W, 3) uint8, label (H, W) uint8 -> Frame of (h, w) = resize or (H, W)
        """
        timestamp = float(timestamp)
        if not math.isfinite(timestamp):
            raise SourceError(f"{self.source_id}: frame {self._next_index} ({where}) has timestamp {timestamp}")
        last = self._last_timestamp
        if last is not None and timestamp < last:
            if self._on_backwards == "error":
                raise SourceError(
                    f"{self.source_id}: timestamp goes backwards at frame index {self._next_index} ({where}): "
                    f"{timestamp:.6f} s after {last:.6f} s (on_backwards='clamp' or 'skip' repairs it)"
                )
            if self._on_backwards == "skip":
                self._skip("timestamp goes backwards", where=where, timestamp=timestamp, previous=last)
                return None
            self._count("timestamps_repaired")
            self._event("timestamp_clamped", where=where, timestamp=timestamp, clamped_to=last)
            timestamp = last
        height, width = image.shape[:2]
        if label is not None and label.shape[:2] != (height, width):
            raise SourceError(
                f"{self.source_id}: label {label_where or where} has size {label.shape[1]}x{label.shape[0]} "
                f"(WxH) but its frame {where} has size {width}x{height}"
            )
        if self._resize is None:
            if self._size is None:
                self._size, self._size_where = (width, height), where
            elif self._size != (width, height):
                raise SourceError(
                    f"{self.source_id}: frame {where} has size {width}x{height} (WxH) but the first frame "
                    f"{self._size_where} has size {self._size[0]}x{self._size[1]}; pass resize=(width, height) "
                    f"to resize every frame"
                )
        elif self._resize != (width, height):
            out_w, out_h = self._resize
            shrink = out_w <= width and out_h <= height
            image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            if label is not None:
                label = cv2.resize(label, (out_w, out_h), interpolation=cv2.INTER_NEAREST)  # (h, w)
        out = self.image_sink(image.shape[0], image.shape[1]) if self.image_sink is not None else None
        if out is not None:  # straight into the buffer the sink gave (a frame ring's slot)
            if color == "bgr":
                cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=out)  # (h, w, 3)
            else:
                np.copyto(out, image)
            image = out.view()
            image.setflags(write=False)  # read-only already: Frame keeps it without a copy
        elif color == "bgr":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # (h, w, 3)
        frame = Frame(
            image, timestamp=timestamp, source_id=self.source_id, index=self._next_index, label=label,
            meta={"domain": self.domain, **(meta or {})},
        )
        self._next_index += 1
        self._last_timestamp = timestamp
        self._count("frames_read")
        return frame


# --- image folders ------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageFolderConfig:
    """Options of an image-folder source (every field is also a keyword of :func:`open_images`).

    Example:
        >>> ImageFolderConfig(resize="64x32").resize
        (64, 32)
    """

    fps: float = 10.0  # timestamps = index / fps when there is no timestamps file
    timestamps: str | None = None  # timestamps file; None: DIR/timestamps.txt when it exists
    labels: str | bool | None = None  # label folder (by stem); None: sibling labels/ of a frames/ DIR; False: none
    label_map: str | LabelMap | None = None  # None: keep label values; a name in perception.labels.LABEL_MAPS
    resize: tuple[int, int] | None = None  # (width, height) for every frame; None: sizes must agree
    on_backwards: str = "error"  # timestamps going backwards: "error" | "clamp" | "skip"
    name: str | None = None  # the log's name (source_id, meta["domain"]); None: from the path

    def __post_init__(self) -> None:
        try:
            fps = float(self.fps)
        except (TypeError, ValueError):
            raise SourceError(f"fps must be a number, got {self.fps!r}") from None
        if not fps > 0 or not math.isfinite(fps):
            raise SourceError(f"fps must be positive, got {self.fps!r}")
        object.__setattr__(self, "fps", fps)
        object.__setattr__(self, "resize", parse_size(self.resize, "resize"))
        check_backwards_policy(self.on_backwards)


def list_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` (png, jpg, jpeg, bmp; hidden files left out), natural order."""
    files = [
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def read_timestamps_file(path: Path, names: Sequence[str]) -> list[float]:
    """Timestamps (s) for the image ``names`` (in order) from a timestamps file.

    Two formats: one float a line, in frame order (as many lines as frames), or
    ``name seconds`` lines matched by file name or stem. Blank lines and ``#`` comments are
    ignored.

    Example:
        >>> import tempfile
        >>> file = Path(tempfile.mkdtemp()) / "t.txt"
        >>> _ = file.write_text("b.png 0.5\\na 0.25\\n")
        >>> read_timestamps_file(file, ["a.png", "b.png"])
        [0.25, 0.5]
    """
    rows: list[tuple[int, list[str]]] = []
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            rows.append((lineno, line.split()))
    widths = {len(tokens) for _, tokens in rows}
    if not rows:
        raise SourceError(f"timestamps file {path} is empty")
    if not widths <= {1, 2} or len(widths) != 1:
        lineno, tokens = next((n, t) for n, t in rows if len(t) != len(rows[0][1]) or len(t) > 2)
        raise SourceError(
            f"timestamps file {path}, line {lineno}: expected 'seconds' or 'name seconds' on every line, "
            f"got {' '.join(tokens)!r}"
        )

    def number(lineno: int, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise SourceError(f"timestamps file {path}, line {lineno}: cannot read seconds from {text!r}") from None
        if not math.isfinite(value):
            raise SourceError(f"timestamps file {path}, line {lineno}: timestamp {text!r} is not finite")
        return value

    if widths == {1}:
        values = [number(lineno, tokens[0]) for lineno, tokens in rows]
        if len(values) != len(names):
            raise SourceError(f"timestamps file {path} has {len(values)} timestamps but there are {len(names)} frames")
        return values
    by_name: dict[str, float] = {}
    for lineno, (name, seconds) in rows:
        by_name[name] = number(lineno, seconds)
    out = []
    for name in names:
        value = by_name.get(name, by_name.get(Path(name).stem))
        if value is None:
            raise SourceError(f"timestamps file {path} has no timestamp for frame {name}")
        out.append(value)
    return out


def read_label(path: Path) -> np.ndarray | None:
    """A label image as (H, W) uint8 class ids; None when it cannot be decoded.

    Shape:
        -> (H, W) uint8

    Raises:
        SourceError: the file decodes but is not a single-channel image of ids below 256.
    """
    try:
        label = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
    except (OSError, cv2.error):
        return None
    if label is None:
        return None
    if label.ndim == 3 and label.shape[2] == 1:
        label = label[:, :, 0]
    if label.ndim != 2:
        raise SourceError(
            f"label {path} must be a single-channel image of class ids, got shape {label.shape} "
            f"(colour-coded labels need converting to ids first)"
        )
    if label.dtype != np.uint8:
        if np.issubdtype(label.dtype, np.integer) and label.size and 0 <= label.min() and label.max() <= 255:
            label = label.astype(np.uint8)
        else:
            raise SourceError(f"label {path} must hold class ids 0..255 (uint8), got dtype {label.dtype}")
    return label


def _read_image(path: Path) -> np.ndarray | None:
    """Decode an image file as (H, W, 3) uint8 BGR; None when it cannot be read or decoded."""
    try:
        return cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)  # (H, W, 3)
    except (OSError, cv2.error):
        return None


class ImageFolderSource(RecordedSource):
    """Replays a folder of frames in natural name order, with optional timestamps and labels.

    Corrupt images are skipped (``frames_skipped``, an event naming the file); frames with no
    label file get ``label=None`` (``labels_missing``); a label whose size differs from its
    frame, or frames of mixed sizes without ``resize``, raise :class:`SourceError`.

    Example:
        >>> import tempfile, cv2
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "frames").mkdir(); (root / "labels").mkdir()
        >>> _ = cv2.imwrite(str(root / "frames" / "a.png"), np.zeros((4, 6, 3), np.uint8))
        >>> _ = cv2.imwrite(str(root / "labels" / "a.png"), np.full((4, 6), 3, np.uint8))
        >>> source = ImageFolderSource(root / "frames", ImageFolderConfig(label_map="camvid"))
        >>> frame = next(iter(source))
        >>> source.source_id == "images:" + root.name, int(frame.label[0, 0]), frame.domain == root.name
        (True, 0, True)
        >>> source.close()
    """

    def __init__(
        self,
        path: str | Path,
        config: ImageFolderConfig = ImageFolderConfig(),
        *,
        timestamps: Sequence[float] | None = None,
        kind: str = "images",
    ) -> None:
        folder = Path(path)
        where = f"{kind}:{folder}"
        if not folder.exists():
            raise SourceError(f"{where}: the folder does not exist")
        if not folder.is_dir():
            raise SourceError(f"{where}: not a folder")
        files = list_images(folder)
        if not files:
            raise SourceError(f"{where}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the folder")
        name = config.name or (folder.parent.name if folder.name in ("frames", "images") else folder.name)
        super().__init__(f"{kind}:{name}", resize=config.resize, on_backwards=config.on_backwards)
        self.path = folder
        self.config = config
        self._files = files
        self._label_map = get_label_map(config.label_map)
        names = [p.name for p in files]
        if timestamps is not None:
            if len(timestamps) != len(files):
                raise SourceError(f"{where}: {len(timestamps)} timestamps for {len(files)} frames")
            self._timestamps = [float(t) for t in timestamps]
        elif config.timestamps is not None:
            ts_file = Path(config.timestamps)
            if not ts_file.is_file():
                raise SourceError(f"{where}: timestamps file {ts_file} does not exist")
            self._timestamps = read_timestamps_file(ts_file, names)
        elif (folder / DEFAULT_TIMESTAMPS_FILE).is_file():
            self._timestamps = read_timestamps_file(folder / DEFAULT_TIMESTAMPS_FILE, names)
        else:
            self._timestamps = [i / config.fps for i in range(len(files))]
        self.labels_dir = self._find_labels(folder, config.labels, where)
        self._labels: dict[str, Path] = {}
        if self.labels_dir is not None:
            for label_file in reversed(list_images(self.labels_dir)):  # a .png wins over a .jpg
                self._labels[label_file.stem] = label_file
            if not self._labels:
                logger.warning("%s: the label folder %s holds no label images", where, self.labels_dir)

    @staticmethod
    def _find_labels(folder: Path, labels: str | bool | None, where: str) -> Path | None:
        if labels is False:
            return None
        if labels is None or labels is True:
            sibling = folder.parent / "labels"
            if folder.name == "frames" and sibling.is_dir():
                return sibling
            if labels is True:
                raise SourceError(f"{where}: labels=True but there is no sibling labels/ folder of a frames/ folder")
            return None
        label_dir = Path(labels)
        if not label_dir.is_dir():
            raise SourceError(f"{where}: the label folder {label_dir} does not exist")
        return label_dir

    def __len__(self) -> int:
        """Frames in the folder (corrupt ones included)."""
        return len(self._files)

    def _frames(self) -> Iterator[Frame]:
        for position, file in enumerate(self._files):
            if self._closed:
                return
            image = _read_image(file)
            if image is None:
                self._skip("cannot decode image", file=file.name, position=position)
                continue
            label, label_name = None, ""
            if self.labels_dir is not None:
                label_file = self._labels.get(file.stem)
                if label_file is not None:
                    label_name = str(label_file)
                    label = read_label(label_file)
                    if label is None:
                        self._event("label_unreadable", file=label_file.name)
                if label is None:
                    self._count("labels_missing")
                elif self._label_map is not None:
                    label = self._label_map(label)  # (H, W) uint8
            frame = self._make_frame(
                image, self._timestamps[position], where=file.name, label=label, label_where=label_name,
                color="bgr", meta={"file": file.name},
            )
            if frame is not None:
                yield frame


def open_images(
    path: str | Path,
    labels: str | bool | None = None,
    timestamps: str | None = None,
    label_map: str | LabelMap | None = None,
    **opts: Any,
) -> ImageFolderSource:
    """Open a folder of frames (``images:DIR``), natural name order, png/jpg/jpeg/bmp.

    Args:
        path: the folder of frames.
        labels: label folder matched by stem; None: the sibling ``labels/`` of a ``frames/``
            folder when there is one; False: no labels.
        timestamps: timestamps file (floats a line, or ``name seconds`` lines); None:
            ``DIR/timestamps.txt`` when present, else ``index / fps``.
        label_map: None keeps the label files' values; a name (``"camvid"``, ``"camvid-raw"``,
            ``"cityscapes-ids"``, ``"identity"``) or a LabelMap maps them.
        **opts: ``fps`` (default 10), ``resize`` (width, height), ``on_backwards``
            (``"error"`` | ``"clamp"`` | ``"skip"``), ``name``.
    """
    config = build_config(
        ImageFolderConfig, {"labels": labels, "timestamps": timestamps, "label_map": label_map, **opts}, f"images:{path}"
    )
    return ImageFolderSource(path, config)
