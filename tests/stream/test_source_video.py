"""Video source: decoding, timestamps, resize, and unreadable or truncated files."""
from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from source_fixtures import write_avi
from stream.sources.base import Source, SourceError
from stream.sources.video import VideoSource, open_video

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
UDACITY = DATA / "logs" / "udacity_solidWhiteRight.mp4"


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared data absent: {path}")
    return path


def bare_decode(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return out


def test_small_video_rgb_timestamps_resize(tmp_path):
    path = write_avi(tmp_path / "clip.avi")
    with open_video(path) as source:
        assert isinstance(source, Source)
        got = list(source)
    assert [f.index for f in got] == [0, 1, 2, 3]
    assert [round(f.timestamp, 6) for f in got] == [0.0, 0.1, 0.2, 0.3]
    assert got[0].source_id == "video:clip.avi" and got[0].domain == "clip.avi"
    red = [int(f.image[8, 16, 0]) for f in got]
    assert red == sorted(red) and red[-1] > 100 and int(got[-1].image[8, 16, 2]) < 30  # R channel first
    assert source.stats() == {"frames_read": 4, "frames_skipped": 0, "frames_dropped": 0, "labels_missing": 0, "truncated": 0}
    assert source.events == []
    small = list(open_video(path, resize=(8, 4), name="renamed"))
    assert [f.shape for f in small] == [(4, 8)] * 4 and small[0].source_id == "video:renamed"


def test_fallback_timestamps_from_the_frame_rate(tmp_path):
    source = VideoSource(write_avi(tmp_path / "clip.avi"))
    assert source._timestamp(0, 0.0) == 0.0
    assert source._timestamp(3, 0.0) == pytest.approx(0.3)  # a backend giving 0 for every frame
    assert source._timestamp(3, float("nan")) == pytest.approx(0.3)
    assert source._timestamp(3, 250.0) == 0.25
    source.close()


def test_missing_directory_and_garbage_files(tmp_path):
    with pytest.raises(SourceError, match=r"video:.*none\.mp4: the file does not exist"):
        open_video(tmp_path / "none.mp4")
    with pytest.raises(SourceError, match="not a file"):
        open_video(tmp_path)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match=r"video:.*garbage\.mp4: OpenCV cannot open it"):
        open_video(garbage)
    with pytest.raises(SourceError, match=r"unknown option\(s\) colour"):
        open_video(write_avi(tmp_path / "ok.avi"), colour="bgr")


def test_close_mid_stream_and_iterate_once(tmp_path):
    source = open_video(write_avi(tmp_path / "clip.avi"))
    it = iter(source)
    next(it)
    with pytest.raises(SourceError, match="only once"):
        iter(source)
    source.close()
    source.close()
    assert list(it) == []


@pytest.mark.shared_data
def test_real_video_matches_a_bare_opencv_loop():
    path = need(UDACITY)
    expected = bare_decode(path)[:5]
    with open_video(path) as source:
        assert source.frame_count == 221 and source.fps == 25.0
        got = list(itertools.islice(source, 5))
    assert [f.shape for f in got] == [(540, 960)] * 5
    assert [f.timestamp for f in got] == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])
    for frame, rgb in zip(got, expected):
        np.testing.assert_array_equal(frame.image, rgb)


@pytest.mark.shared_data
def test_decoder_thread_count_changes_speed_not_frames():
    path = need(UDACITY)
    decoded = {}
    for threads in (0, 1, 3):  # OpenCV's default, one, and our default on two cores
        with open_video(path, threads=threads) as source:
            decoded[threads] = [f.image.copy() for f in source]
    assert len(decoded[0]) == 221
    for threads in (1, 3):
        assert all(np.array_equal(a, b) for a, b in zip(decoded[0], decoded[threads]))
    with pytest.raises(SourceError, match="threads must be an integer, got 'many'"):
        open_video(path, threads="many")
    with pytest.raises(SourceError, match="threads must be -1"):
        open_video(path, threads=-5)


@pytest.mark.shared_data
def test_file_cut_in_the_header_cannot_decode_anything(tmp_path):
    data = need(UDACITY).read_bytes()
    for size in (1000, 10_000):  # inside the header; after the header, before any whole frame
        cut = tmp_path / f"cut{size}.mp4"
        cut.write_bytes(data[:size])
        with pytest.raises(SourceError, match=rf"video:.*cut{size}\.mp4: (OpenCV cannot open|no frame could be decoded)"):
            open_video(cut)


@pytest.mark.shared_data
def test_truncated_file_stops_cleanly_with_an_event_and_loses_nothing(tmp_path):
    data = need(UDACITY).read_bytes()
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(data[: len(data) // 4])
    readable = bare_decode(cut)
    assert 0 < len(readable) < 221
    source = open_video(cut)
    got = list(source)
    assert len(got) == len(readable)
    np.testing.assert_array_equal(got[-1].image, readable[-1])
    (event,) = source.events
    assert event["kind"] == "truncated" and event["expected_frames"] == 221
    assert event["decoded_frames"] == len(readable) and event["index"] == len(readable)
    assert source.stats()["truncated"] == 1 and source.stats()["frames_read"] == len(readable)


def test_video_with_labels_folder_pairs_frames_in_order(shared_data):
    from stream.sources.video import open_video

    log = shared_data / "logs" / "camvid_0016E5_15hz"
    source = open_video(log / "clip.mp4", labels=str(log / "labels"), label_map="camvid-raw")
    frames = list(source)
    assert len(frames) == 101 and all(f.label is not None for f in frames)
    assert frames[0].label.max() <= 10 or 255 in frames[0].label  # CamVid ids, void -> 255
    assert source.stats()["labels_missing"] == 0


def test_video_labels_folder_missing_is_an_error(shared_data, tmp_path):
    from stream.sources.base import SourceError
    from stream.sources.video import open_video

    with pytest.raises(SourceError, match="label folder .* does not exist"):
        open_video(shared_data / "logs" / "camvid_0016E5_15hz" / "clip.mp4", labels=str(tmp_path / "nope"))
