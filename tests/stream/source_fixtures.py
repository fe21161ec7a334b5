"""Builders of tiny recorded logs for the source tests (videos, image folders with labels,
KITTI drives, ROS 2 bags written with rosbags' Writer). Plain functions on ``tmp_path``;
imported by the per-source tests and by test_source_conformance.py."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore

# --------------------------------------------------------------------------------- video

def write_avi(path: Path, count: int = 4, size: tuple[int, int] = (32, 16), fps: float = 10.0) -> Path:
    """An MJPG .avi of ``count`` (width, height) frames whose red channel rises frame by frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(count):
        bgr = np.zeros((size[1], size[0], 3), np.uint8)
        bgr[..., 2] = 40 * i + 20  # red rises frame by frame
        writer.write(bgr)
    writer.release()
    return path


# --------------------------------------------------------------------------------- image folders

def write_label_folder(folder: Path, stems: list[str], size: tuple[int, int] = (8, 6), classes: int = 12) -> Path:
    """Single-channel label pngs ``STEM.png`` of class ids 0..classes-1 (CamVid-like: 11 = void)."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    for i, stem in enumerate(stems):
        label = ((np.arange(height * width).reshape(height, width) + i) % classes).astype(np.uint8)  # (H, W)
        assert cv2.imwrite(str(folder / f"{stem}.png"), label)
    return folder


def write_image_log(root: Path, count: int = 4, size: tuple[int, int] = (8, 6), labels: bool = True) -> Path:
    """``root/frames/000.png ...`` (each a flat colour) with a sibling ``labels/`` folder; returns frames/."""
    frames = root / "frames"
    frames.mkdir(parents=True)
    width, height = size
    for i in range(count):
        assert cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((height, width, 3), 20 * i + 10, np.uint8))
    if labels:
        write_label_folder(root / "labels", [f"{i:03d}" for i in range(count)], size)
    return frames


# --------------------------------------------------------------------------------- KITTI

KITTI_STAMPS = [
    "2011-09-26 13:02:59.900000000",
    "2011-09-26 13:03:00.003670112",  # across a minute boundary
    "2011-09-26 13:03:00.107000001",
]


def make_drive(root: Path, stamps: list[str] = KITTI_STAMPS, frames: int = 3, camera: str = "image_02") -> Path:
    """A KITTI raw drive ``root/2011_09_26_drive_0001_sync/CAMERA/{data/*.png, timestamps.txt}``."""
    drive = root / "2011_09_26_drive_0001_sync"
    data = drive / camera / "data"
    data.mkdir(parents=True)
    for i in range(frames):
        assert cv2.imwrite(str(data / f"{i:010d}.png"), np.full((4, 6, 3), 10 * i, np.uint8))
    (drive / camera / "timestamps.txt").write_text("\n".join(stamps) + "\n")
    return drive


# --------------------------------------------------------------------------------- ROS 2 bags

STORE = get_typestore(Stores.ROS2_HUMBLE)
Image = STORE.types["sensor_msgs/msg/Image"]
CompressedImage = STORE.types["sensor_msgs/msg/CompressedImage"]
Header = STORE.types["std_msgs/msg/Header"]
Time = STORE.types["builtin_interfaces/msg/Time"]
String = STORE.types["std_msgs/msg/String"]

H, W = 4, 6  # size of the bag images
BASE_NS = 1_700_000_000 * 1_000_000_000


def rgb_pattern(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)  # (H, W, 3)


def raw_message(rgb: np.ndarray, encoding: str, stamp_ns: int, pad: int = 0) -> object:
    """An Image message holding ``rgb`` in ``encoding`` with ``pad`` bytes of row padding."""
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[..., ::-1]
    elif encoding == "mono8":
        pixels = rgb[..., :1]
    elif encoding == "rgba8":
        pixels = np.dstack([rgb, np.full((H, W), 9, np.uint8)])
    elif encoding == "bgra8":
        pixels = np.dstack([rgb[..., ::-1], np.full((H, W), 9, np.uint8)])
    else:
        pixels = np.dstack([rgb, rgb])  # 6 bytes a pixel, an encoding the source does not know
    rows = np.ascontiguousarray(pixels).reshape(H, -1)
    rows = np.hstack([rows, np.zeros((H, pad), np.uint8)])  # (H, step)
    stamp = Time(stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
    return Image(Header(stamp, "cam"), H, W, encoding, 0, rows.shape[1], rows.reshape(-1).copy())


def compressed_message(rgb: np.ndarray, fmt: str, stamp_ns: int) -> object:
    ok, data = cv2.imencode(f".{fmt}", rgb[..., ::-1])
    assert ok
    stamp = Time(stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
    return CompressedImage(Header(stamp, "cam"), fmt, data.reshape(-1))


def write_bag(path: Path, messages: dict[str, list[tuple[int, object]]]) -> Path:
    """A ROS 2 bag at ``path``: for each topic, (bag time ns, message) pairs."""
    with Writer(path, version=9) as writer:
        for topic, items in messages.items():
            conn = writer.add_connection(topic, items[0][1].__msgtype__, typestore=STORE)
            for bag_time, msg in items:
                writer.write(conn, bag_time, STORE.serialize_cdr(msg, msg.__msgtype__))
    return path
