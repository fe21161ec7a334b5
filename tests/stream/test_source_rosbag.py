"""ROS 2 bag source on small bags written with rosbags' Writer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from source_fixtures import (
    BASE_NS,
    CompressedImage,
    Header,
    String,
    Time,
    compressed_message,
    raw_message,
    rgb_pattern,
    write_bag,
)
from stream.sources.base import Source, SourceError
from stream.sources.rosbag import open_rosbag, split_spec


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
