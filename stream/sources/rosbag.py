"""ROS bags as a source: ``rosbag:PATH#/topic``, read with the ``rosbags`` package (no ROS).

One image topic of a ROS 2 bag (or a ROS 1 ``.bag``) is replayed: ``sensor_msgs/msg/Image``
with encodings rgb8, bgr8, mono8, bgra8, rgba8 (row padding in ``step`` honoured), and
``sensor_msgs/msg/CompressedImage`` (jpeg, png; decoded with ``cv2.imdecode``). Timestamps
are seconds since the first frame, from each message's header stamp, or the bag's receive
time where the stamp is zero; the absolute stamp is kept in ``meta["stamp_ns"]``. A message
that cannot be decoded is skipped (``frames_skipped`` and an event); an unknown topic is a
:class:`SourceError` that lists the bag's image topics.

Example:
    >>> import tempfile
    >>> from rosbags.rosbag2 import Writer
    >>> from rosbags.typesys import Stores, get_typestore
    >>> store = get_typestore(Stores.ROS2_HUMBLE)
    >>> Image, Header, Time = (store.types[t] for t in (
    ...     "sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    >>> bag = Path(tempfile.mkdtemp()) / "demo_bag"
    >>> with Writer(bag, version=8) as writer:
    ...     conn = writer.add_connection("/cam", Image.__msgtype__, typestore=store)
    ...     for i in range(2):
    ...         msg = Image(Header(Time(100, i * 50_000_000), "cam"), 2, 3, "mono8", 0, 3,
    ...                     np.full(6, 7 * i, np.uint8))
    ...         writer.write(conn, i, store.serialize_cdr(msg, Image.__msgtype__))
    >>> with open_rosbag(bag, "/cam") as source:
    ...     [(f.source_id, f.timestamp, f.shape, int(f.image[0, 0, 0])) for f in source]
    [('rosbag:demo_bag#/cam', 0.0, (2, 3), 0), ('rosbag:demo_bag#/cam', 0.05, (2, 3), 7)]
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from stream.frame import Frame
from stream.sources.base import SourceError
from stream.sources.images import RecordedSource, build_config, check_backwards_policy, parse_size

logger = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)
# encoding -> (channels, cv2 conversion to RGB or None when already RGB, "bgr" when BGR)
ENCODINGS: dict[str, tuple[int, int | None | str]] = {
    "rgb8": (3, None),
    "bgr8": (3, "bgr"),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
}


@dataclass(frozen=True)
class RosbagConfig:
    """Options of a rosbag source (every field is also a keyword of :func:`open_rosbag`).

    Example:
        >>> RosbagConfig().use_header_stamp
        True
    """

    use_header_stamp: bool = True  # False: the bag's receive time for every frame
    resize: tuple[int, int] | None = None  # (width, height) for every frame; None: sizes must agree
    on_backwards: str = "error"  # timestamps going backwards: "error" | "clamp" | "skip"
    name: str | None = None  # the log's name (source_id, meta["domain"]); None: "bagname#/topic"

    def __post_init__(self) -> None:
        if isinstance(self.use_header_stamp, str):
            text = self.use_header_stamp.strip().lower()
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise SourceError(f"use_header_stamp must be true or false, got {self.use_header_stamp!r}")
            object.__setattr__(self, "use_header_stamp", text in ("true", "1", "yes"))
        object.__setattr__(self, "resize", parse_size(self.resize, "resize"))
        check_backwards_policy(self.on_backwards)


class UnsupportedEncoding(SourceError):
    """An Image message's encoding is not one this source decodes."""


def decode_image_message(msg: Any, msgtype: str) -> tuple[np.ndarray | None, str]:
    """Pixels of a deserialized Image / CompressedImage message and their channel order.

    Returns ``(image, "rgb" | "bgr")``, image None when the message cannot be decoded.

    Shape:
        -> (H, W, 3) uint8

    Raises:
        UnsupportedEncoding: an Image encoding outside :data:`ENCODINGS`.
    """
    data = np.asarray(msg.data, dtype=np.uint8)
    if msgtype == COMPRESSED:
        if data.size == 0:
            return None, "bgr"
        try:
            return cv2.imdecode(data, cv2.IMREAD_COLOR), "bgr"  # (H, W, 3)
        except cv2.error:
            return None, "bgr"
    encoding = str(msg.encoding).lower()
    if encoding not in ENCODINGS:
        raise UnsupportedEncoding(
            f"image encoding {msg.encoding!r} is not supported; supported: {', '.join(ENCODINGS)} "
            f"and CompressedImage (jpeg, png)"
        )
    channels, conversion = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0 or step < width * channels or data.size < height * step:
        return None, "rgb"
    rows = data[: height * step].reshape(height, step)[:, : width * channels]  # (H, W * C)
    image = rows.reshape(height, width, channels)  # (H, W, C)
    if conversion is None:
        return image, "rgb"
    if conversion == "bgr":
        return image, "bgr"
    if channels == 1:
        image = image[:, :, 0]  # (H, W)
    return cv2.cvtColor(np.ascontiguousarray(image), conversion), "rgb"  # (H, W, 3)


class RosbagSource(RecordedSource):
    """Replays one image topic of a bag as RGB frames.

    Example:
        >>> RosbagSource("/no/such.bag", "/cam")
        Traceback (most recent call last):
        ...
        stream.sources.base.SourceError: rosbag:/no/such.bag: the bag does not exist
    """

    def __init__(self, path: str | Path, topic: str | None, config: RosbagConfig = RosbagConfig()) -> None:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        bag = Path(path)
        where = f"rosbag:{bag}"
        if not bag.exists():
            raise SourceError(f"{where}: the bag does not exist")
        try:
            reader = AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
            reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types for a bad bag
            raise SourceError(f"{where}: cannot open the bag: {exc}") from exc
        image_topics = sorted({(c.topic, c.msgtype) for c in reader.connections if c.msgtype in IMAGE_TYPES})
        listing = ", ".join(f"{t} ({m})" for t, m in image_topics) or "none"
        if topic is None or topic == "":
            if len(image_topics) != 1:
                reader.close()
                raise SourceError(f"{where}: name the image topic (PATH#/topic); image topics in the bag: {listing}")
            topic = image_topics[0][0]
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections or any(c.msgtype not in IMAGE_TYPES for c in connections):
            reader.close()
            found = f"topic {topic!r} has type {connections[0].msgtype}" if connections else f"no topic {topic!r}"
            raise SourceError(f"{where}: {found}; image topics in the bag: {listing}")
        self.message_count = sum(int(c.msgcount) for c in connections)
        if self.message_count == 0:
            reader.close()
            raise SourceError(f"{where}: topic {topic!r} has no messages")
        name = config.name or f"{bag.name}#{topic}"
        super().__init__(f"rosbag:{name}", resize=config.resize, on_backwards=config.on_backwards)
        self.path = bag
        self.topic = topic
        self.config = config
        self._reader: Any = reader
        self._connections = connections
        self._first_stamp: int | None = None

    def __len__(self) -> int:
        """Messages on the topic (undecodable ones included)."""
        return self.message_count

    def _stamp_ns(self, msg: Any, bag_time: int) -> int:
        if self.config.use_header_stamp:
            header = getattr(msg, "header", None)
            stamp = getattr(header, "stamp", None)
            if stamp is not None:
                ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
                if ns != 0:
                    return ns
            self._count("stamps_from_bag_time")
        return int(bag_time)

    def _frames(self) -> Iterator[Frame]:
        reader = self._reader
        if reader is None:
            return
        for position, (connection, bag_time, raw) in enumerate(reader.messages(connections=self._connections)):
            if self._closed:
                return
            try:
                msg = reader.deserialize(raw, connection.msgtype)
            except Exception as exc:  # noqa: BLE001 - a damaged message: skip it, go on
                self._skip("cannot deserialize message", position=position, error=str(exc))
                continue
            try:
                image, color = decode_image_message(msg, connection.msgtype)
            except UnsupportedEncoding as exc:
                raise SourceError(f"{self.source_id}: message {position}: {exc}") from None
            if image is None:
                self._skip("cannot decode image", position=position, bag_time_ns=int(bag_time))
                continue
            stamp = self._stamp_ns(msg, bag_time)
            if self._first_stamp is None:
                self._first_stamp = stamp
            frame = self._make_frame(
                image, (stamp - self._first_stamp) / 1e9, where=f"message {position}", color=color,
                meta={"stamp_ns": stamp, "topic": self.topic},
            )
            if frame is not None:
                yield frame
                if self._closed:  # closed while the consumer held the frame: the reader is gone
                    return
        self.close()

    def _release(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def split_spec(spec: str) -> tuple[str, str | None]:
    """Split ``PATH#/topic`` into (PATH, topic); topic None when there is no ``#``.

    Example:
        >>> split_spec("runs/bag#/camera/image_raw"), split_spec("runs/bag")
        (('runs/bag', '/camera/image_raw'), ('runs/bag', None))
    """
    path, sep, topic = spec.partition("#")
    return path, (topic if sep else None)


def open_rosbag(path: str | Path, topic: str | None = None, **opts: Any) -> RosbagSource:
    """Open one image topic of a ROS 2 (or ROS 1) bag (``rosbag:PATH#/topic``).

    ``topic`` may be None when the bag has exactly one image topic. Options:
    ``use_header_stamp`` (default True), ``resize`` (width, height), ``on_backwards``
    (``"error"`` | ``"clamp"`` | ``"skip"``), ``name``. An unknown topic raises
    :class:`SourceError` listing the bag's image topics.
    """
    return RosbagSource(path, topic, build_config(RosbagConfig, opts, f"rosbag:{path}"))
