"""Image-folder source: order, timestamps, labels, label maps and every kind of bad input."""
from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.sources.base import Source, SourceError
from stream.sources.images import ImageFolderSource, natural_key, open_images, read_timestamps_file

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CAMVID = DATA / "logs" / "camvid_0016E5_15hz"


def write_frame(path: Path, value: int, size: tuple[int, int] = (6, 4)) -> None:
    """A BGR file whose RGB reading is (value, value + 1, value + 2)."""
    width, height = size
    bgr = np.empty((height, width, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = value + 2, value + 1, value
    assert cv2.imwrite(str(path), bgr)


def make_log(root: Path, names: list[str], labels: dict[str, np.ndarray] | None = None) -> Path:
    frames = root / "frames"
    frames.mkdir(parents=True)
    for i, name in enumerate(names):
        write_frame(frames / name, 10 * i)
    if labels is not None:
        (root / "labels").mkdir()
        for stem, label in labels.items():
            assert cv2.imwrite(str(root / "labels" / f"{stem}.png"), label)
    return frames


def test_natural_order_rgb_and_default_timestamps(tmp_path):
    frames = make_log(tmp_path / "drive", ["f10.png", "f2.jpg", "f1.bmp"])
    (frames / "notes.txt").write_text("not a frame")
    with open_images(frames, fps=4) as source:
        assert isinstance(source, Source)
        got = list(source)
    assert [f.meta["file"] for f in got] == ["f1.bmp", "f2.jpg", "f10.png"]
    assert [f.index for f in got] == [0, 1, 2]
    assert [f.timestamp for f in got] == [0.0, 0.25, 0.5]
    assert got[0].source_id == "images:drive" and got[0].domain == "drive"
    assert got[0].image[0, 0].tolist() == [20, 21, 22]  # RGB, not BGR (lossless bmp)
    assert got[2].image[0, 0].tolist() == [0, 1, 2]  # lossless png
    assert not got[0].image.flags.writeable
    assert source.stats()["frames_read"] == 3 and source.stats()["labels_missing"] == 0
    assert source.true_shifts == []


def test_natural_key_orders_numbers_by_value():
    assert sorted(["a100", "a20", "a3"], key=natural_key) == ["a3", "a20", "a100"]


def test_timestamps_file_in_the_folder_one_float_a_line(tmp_path):
    frames = make_log(tmp_path, ["a.png", "b.png", "c.png"])
    (frames / "timestamps.txt").write_text("# seconds\n1.5\n1.6\n\n1.75\n")
    assert [f.timestamp for f in open_images(frames)] == [1.5, 1.6, 1.75]


def test_timestamps_file_with_names(tmp_path):
    frames = make_log(tmp_path, ["a.png", "b.png"])
    stamps = tmp_path / "times.txt"
    stamps.write_text("b 2.0\na.png 1.0\n")
    assert [f.timestamp for f in open_images(frames, timestamps=str(stamps))] == [1.0, 2.0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("0.1\n0.2\n", "has 2 timestamps but there are 3 frames"),
        ("0.1\nzero\n0.3\n", "line 2: cannot read seconds from 'zero'"),
        ("a.png 0.1\nb.png 0.2\n", "no timestamp for frame c.png"),
        ("0.1\nb.png 0.2\n0.3\n", "line 2: expected 'seconds' or 'name seconds'"),
        ("0.1\nnan\n0.3\n", "line 2: timestamp 'nan' is not finite"),
    ],
)
def test_bad_timestamps_files_name_the_file_and_what_is_wrong(tmp_path, text, message):
    frames = make_log(tmp_path, ["a.png", "b.png", "c.png"])
    (frames / "timestamps.txt").write_text(text)
    with pytest.raises(SourceError, match=message) as info:
        open_images(frames)
    assert "timestamps.txt" in str(info.value)


def test_missing_path_not_a_folder_and_missing_timestamps_file(tmp_path):
    with pytest.raises(SourceError, match=r"images:.*nowhere: the folder does not exist"):
        open_images(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(SourceError, match="not a folder"):
        open_images(tmp_path / "file.png")
    frames = make_log(tmp_path / "log", ["a.png"])
    with pytest.raises(SourceError, match="timestamps file .*missing.txt does not exist"):
        open_images(frames, timestamps=str(tmp_path / "missing.txt"))


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError, match=r"empty: no image files \(.png, .jpg, .jpeg, .bmp\)"):
        open_images(tmp_path / "empty")


def test_corrupt_image_in_the_middle_is_skipped_counted_and_named(tmp_path):
    frames = make_log(tmp_path, ["f1.png", "f2.png", "f3.png"])
    (frames / "f2.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    source = open_images(frames)
    got = list(source)
    assert [f.meta["file"] for f in got] == ["f1.png", "f3.png"]
    assert [f.index for f in got] == [0, 1]
    assert [f.timestamp for f in got] == [0.0, 0.2]  # f3 keeps its own time slot
    assert source.stats()["frames_skipped"] == 1 and source.stats()["frames_read"] == 2
    (event,) = source.events
    assert event["kind"] == "frame_skipped" and event["file"] == "f2.png" and event["index"] == 1


def test_label_size_mismatch_names_the_file_and_both_sizes(tmp_path):
    frames = make_log(tmp_path, ["a.png"], labels={"a": np.zeros((3, 5), np.uint8)})
    with pytest.raises(SourceError, match=r"label .*a\.png has size 5x3 \(WxH\) but its frame a\.png has size 6x4"):
        list(open_images(frames))


def test_missing_labels_give_none_and_are_counted(tmp_path):
    label = np.full((4, 6), 3, np.uint8)
    frames = make_log(tmp_path, ["a.png", "b.png", "c.png"], labels={"a": label, "c": label})
    source = open_images(frames)
    got = list(source)
    assert [f.label is None for f in got] == [False, True, False]
    assert source.stats()["labels_missing"] == 1 and source.stats()["frames_skipped"] == 0


def test_label_maps_and_raw_mode(tmp_path):
    label = np.array([[0, 3, 8, 11, 10, 9]] * 4, np.uint8)  # CamVid ids
    frames = make_log(tmp_path, ["a.png"], labels={"a": label})
    raw = next(iter(open_images(frames)))
    assert raw.label[0].tolist() == [0, 3, 8, 11, 10, 9]  # the file's values, unchanged
    camvid = next(iter(open_images(frames, label_map="camvid")))
    assert camvid.label[0].tolist() == [10, 0, 13, 255, 18, 11]
    native = next(iter(open_images(frames, label_map="camvid-raw")))
    assert native.label[0].tolist() == [0, 3, 8, 255, 10, 9]
    assert not camvid.label.flags.writeable
    with pytest.raises(SourceError, match="unknown label map"):
        open_images(frames, label_map="nope")


def test_explicit_labels_folder_and_disabling_the_default(tmp_path):
    frames = make_log(tmp_path, ["a.png"], labels={"a": np.ones((4, 6), np.uint8)})
    assert next(iter(open_images(frames, labels=False))).label is None
    other = tmp_path / "gt"
    other.mkdir()
    assert cv2.imwrite(str(other / "a.png"), np.full((4, 6), 7, np.uint8))
    assert int(next(iter(open_images(frames, labels=str(other)))).label[0, 0]) == 7
    with pytest.raises(SourceError, match="the label folder .*nolabels does not exist"):
        open_images(frames, labels=str(tmp_path / "nolabels"))


def test_colour_label_is_a_clear_error(tmp_path):
    frames = make_log(tmp_path, ["a.png"])
    (tmp_path / "labels").mkdir()
    assert cv2.imwrite(str(tmp_path / "labels" / "a.png"), np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(SourceError, match=r"label .*a\.png must be a single-channel image"):
        list(open_images(frames))


def test_timestamps_going_backwards_error_clamp_or_skip(tmp_path):
    frames = make_log(tmp_path, ["a.png", "b.png", "c.png"])
    (frames / "timestamps.txt").write_text("1.0\n0.5\n2.0\n")
    with pytest.raises(SourceError, match=r"backwards at frame index 1 \(b\.png\): 0\.500000 s after 1\.000000 s"):
        list(open_images(frames))
    clamped = open_images(frames, on_backwards="clamp")
    assert [f.timestamp for f in clamped] == [1.0, 1.0, 2.0]
    assert clamped.events[0]["kind"] == "timestamp_clamped" and clamped.stats()["timestamps_repaired"] == 1
    skipped = open_images(frames, on_backwards="skip")
    assert [f.meta["file"] for f in skipped] == ["a.png", "c.png"]
    assert skipped.stats()["frames_skipped"] == 1
    with pytest.raises(SourceError, match="on_backwards must be one of"):
        open_images(frames, on_backwards="ignore")


def test_mixed_sizes_error_or_resize(tmp_path):
    label = np.array([[1, 2, 3, 4, 5, 6]] * 4, np.uint8)
    frames = make_log(tmp_path, ["a.png", "b.png"], labels={"a": label})
    write_frame(frames / "b.png", 50, size=(8, 6))
    with pytest.raises(SourceError, match=r"frame b\.png has size 8x6 \(WxH\) but the first frame a\.png has size 6x4"):
        list(open_images(frames))
    got = list(open_images(frames, resize="3x2"))
    assert [f.shape for f in got] == [(2, 3), (2, 3)]
    assert set(np.unique(got[0].label)) <= set(range(1, 7))  # nearest: no blended class ids
    with pytest.raises(SourceError, match="resize must be"):
        open_images(frames, resize="big")


def test_iterate_once_close_twice_and_unknown_options(tmp_path):
    frames = make_log(tmp_path, ["a.png", "b.png"])
    source = ImageFolderSource(frames)
    it = iter(source)
    next(it)
    with pytest.raises(SourceError, match="only once"):
        iter(source)
    source.close()
    source.close()
    assert list(it) == []
    with pytest.raises(SourceError, match=r"unknown option\(s\) speed"):
        open_images(frames, speed=2)
    with pytest.raises(SourceError, match="fps must be positive"):
        open_images(frames, fps=0)


def test_read_timestamps_file_by_stem(tmp_path):
    stamps = tmp_path / "t.txt"
    stamps.write_text("x 3\ny 4\n")
    assert read_timestamps_file(stamps, ["x.jpg", "y.png"]) == [3.0, 4.0]


@pytest.mark.shared_data
def test_camvid_log_with_labels_from_the_sibling_folder():
    if not (CAMVID / "frames").is_dir():
        pytest.skip(f"shared data absent: {CAMVID}")
    with open_images(CAMVID / "frames", label_map="camvid") as source:
        assert len(source) == 101
        got = list(itertools.islice(source, 3))
    assert got[0].source_id == "images:camvid_0016E5_15hz" and got[0].shape == (360, 480)
    assert got[0].meta["file"] == "0016E5_07959.png"
    assert all(f.label is not None for f in got)
    assert set(np.unique(got[0].label)) <= {0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 18, 255}
    raw = next(iter(open_images(CAMVID / "frames")))
    assert int(raw.label.max()) <= 11
