"""ROS 2 bag source on small bags written with rosbags' Writer."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore

from stream.sources.base import Source, SourceError
from stream.sources.rosbag import open_rosbag, split_spec

STORE = get_typestore(Stores.ROS2_HUMBLE)
Image = STORE.types["sensor_msgs/msg/Image"]
CompressedImage = STORE.types["sensor_msgs/msg/CompressedImage"]
Header = STORE.types["std_msgs/msg/Header"]
Time = STORE.types["builtin_interfaces/msg/Time"]
String = STORE.types["std_msgs/msg/String"]

H, W = 4, 6
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
    with Writer(path, version=9) as writer:
        for topic, items in messages.items():
            conn = writer.add_connection(topic, items[0][1].__msgtype__, typestore=STORE)
            for bag_time, msg in items:
                writer.write(conn, bag_time, STORE.serialize_cdr(msg, msg.__msgtype__))
    return path


@pytest.fixture
def bag(tmp_path) -> Path:
    encodings = ["rgb8", "bgr8", "mono8", "bgra8", "rgba8"]
    raw = [
        (BASE_NS + 5 + i, raw_message(rgb_pattern(i), enc, BASE_NS + i * 100_000_000, pad=3 * (i % 2)))
        for i, enc in enumerate(encodings)
    ]
    broken = CompressedImage(Header(Time(0, 0), "cam"), "jpeg", np.frombuffer(b"not a jpeg", np.uint8).copy())
    compressed = [
        (BASE_NS + 1, compressed_message(rgb_pattern(10), "png", BASE_NS)),
        (BASE_NS + 2, broken),
        (BASE_NS + 3 * 10**8, compressed_message(rgb_pattern(11), "jpeg", 0)),  # no stamp: bag time
    ]
    other = [(BASE_NS, String("hello"))]
    return write_bag(tmp_path / "drive_bag", {"/cam/raw": raw, "/cam/compressed": compressed, "/chatter": other})


def test_raw_images_in_every_encoding(bag):
    with open_rosbag(bag, "/cam/raw") as source:
        assert len(source) == 5 and isinstance(source, Source)
        got = list(source)
    assert [f.index for f in got] == [0, 1, 2, 3, 4]
    assert [f.timestamp for f in got] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert got[0].source_id == "rosbag:drive_bag#/cam/raw" and got[0].domain == "drive_bag#/cam/raw"
    assert got[2].meta["stamp_ns"] == BASE_NS + 200_000_000 and got[2].meta["topic"] == "/cam/raw"
    for i, frame in enumerate(got):
        expected = rgb_pattern(i)
        if i == 2:  # mono8: the grey channel repeated
            expected = np.repeat(expected[..., :1], 3, axis=2)
        np.testing.assert_array_equal(frame.image, expected, err_msg=f"message {i}")


def test_compressed_images_corrupt_one_skipped_and_bag_time_fallback(bag):
    source = open_rosbag(bag, "/cam/compressed")
    got = list(source)
    assert len(got) == 2
    np.testing.assert_array_equal(got[0].image, rgb_pattern(10))  # png is lossless
    assert np.abs(got[1].image.astype(int) - rgb_pattern(11)).mean() < 60  # jpeg is close
    assert got[1].timestamp == pytest.approx(0.3)  # bag time, the header stamp being zero
    stats = source.stats()
    assert stats["frames_skipped"] == 1 and stats["frames_read"] == 2 and stats["stamps_from_bag_time"] == 1
    (event,) = source.events
    assert event["kind"] == "frame_skipped" and event["position"] == 1 and event["index"] == 1
    header_only = list(open_rosbag(bag, "/cam/compressed", use_header_stamp="false"))
    assert header_only[1].timestamp == pytest.approx((3 * 10**8 - 1) / 1e9)


def test_unknown_topic_lists_the_image_topics(bag):
    with pytest.raises(SourceError, match=r"no topic '/cam/rgb'; image topics in the bag: "
                       r"/cam/compressed \(sensor_msgs/msg/CompressedImage\), /cam/raw \(sensor_msgs/msg/Image\)"):
        open_rosbag(bag, "/cam/rgb")
    with pytest.raises(SourceError, match=r"topic '/chatter' has type std_msgs/msg/String; image topics"):
        open_rosbag(bag, "/chatter")
    with pytest.raises(SourceError, match=r"name the image topic"):
        open_rosbag(bag)


def test_single_image_topic_needs_no_name_and_bad_bags_fail_clearly(tmp_path):
    only = write_bag(tmp_path / "one", {"/cam": [(1, raw_message(rgb_pattern(0), "rgb8", BASE_NS))]})
    assert len(list(open_rosbag(only))) == 1
    with pytest.raises(SourceError, match=r"rosbag:.*nobag: the bag does not exist"):
        open_rosbag(tmp_path / "nobag", "/cam")
    (tmp_path / "notabag").mkdir()
    with pytest.raises(SourceError, match=r"rosbag:.*notabag: cannot open the bag"):
        open_rosbag(tmp_path / "notabag", "/cam")


def test_unsupported_encoding_and_backwards_stamps(tmp_path):
    odd = write_bag(tmp_path / "odd", {"/cam": [(1, raw_message(rgb_pattern(0), "16UC3", BASE_NS))]})
    with pytest.raises(SourceError, match=r"message 0: image encoding '16UC3' is not supported; supported: rgb8"):
        list(open_rosbag(odd, "/cam"))
    back = write_bag(tmp_path / "back", {"/cam": [
        (1, raw_message(rgb_pattern(0), "rgb8", BASE_NS + 10**9)),
        (2, raw_message(rgb_pattern(1), "rgb8", BASE_NS)),
    ]})
    with pytest.raises(SourceError, match=r"backwards at frame index 1 \(message 1\): -1.000000 s after 0.000000 s"):
        list(open_rosbag(back, "/cam"))


def test_split_spec():
    assert split_spec("/data/bag#/cam/image") == ("/data/bag", "/cam/image")
    assert split_spec("/data/bag") == ("/data/bag", None)
