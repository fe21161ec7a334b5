"""KITTI raw drive source on a tiny fake drive."""
from __future__ import annotations

import pytest

from source_fixtures import KITTI_STAMPS as STAMPS
from source_fixtures import make_drive
from stream.sources.base import Source, SourceError
from stream.sources.kitti import open_kitti, parse_kitti_stamp


def test_drive_timestamps_are_seconds_since_the_first_line(tmp_path):
    drive = make_drive(tmp_path)
    with open_kitti(drive) as source:
        assert isinstance(source, Source)
        got = list(source)
    assert [f.index for f in got] == [0, 1, 2]
    assert [f.timestamp for f in got] == pytest.approx([0.0, 0.103670112, 0.207000001], abs=1e-9)
    assert got[0].source_id == "kitti:2011_09_26_drive_0001_sync"
    assert got[0].domain == "2011_09_26_drive_0001_sync" and got[1].meta["file"] == "0000000001.png"
    assert [int(f.image[0, 0, 0]) for f in got] == [0, 10, 20]
    assert all(f.label is None for f in got) and source.stats()["labels_missing"] == 0


def test_accepts_the_camera_and_data_folders_and_another_camera(tmp_path):
    drive = make_drive(tmp_path)
    for path in (drive / "image_02", drive / "image_02" / "data"):
        assert len(list(open_kitti(path))) == 3
    make_drive(tmp_path / "b", camera="image_03")
    assert len(list(open_kitti(tmp_path / "b" / "2011_09_26_drive_0001_sync", camera="image_03"))) == 3


def test_parse_stamp_keeps_nanoseconds():
    assert parse_kitti_stamp("2011-09-26 13:02:25.964389445") % 1_000_000_000 == 964389445
    assert parse_kitti_stamp("1970-01-02 00:00:00") == 86_400 * 1_000_000_000


def test_bad_drives_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match=r"kitti:.*nodrive: the folder does not exist"):
        open_kitti(tmp_path / "nodrive")
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match=r"not a KITTI raw drive: no image_02/data"):
        open_kitti(tmp_path / "plain")
    drive = make_drive(tmp_path / "short", stamps=STAMPS[:2])
    with pytest.raises(SourceError, match="timestamps.txt has 2 lines for 3 frames"):
        open_kitti(drive)
    drive = make_drive(tmp_path / "garbled", stamps=[STAMPS[0], "13:03:00", STAMPS[2]])
    with pytest.raises(SourceError, match=r"timestamps.txt, line 2: not a 'YYYY-MM-DD HH:MM:SS.fffffffff'"):
        open_kitti(drive)
    drive = make_drive(tmp_path / "nostamps")
    (drive / "image_02" / "timestamps.txt").unlink()
    with pytest.raises(SourceError, match=r"image_02/timestamps.txt does not exist"):
        open_kitti(drive)
    drive = make_drive(tmp_path / "empty", frames=0, stamps=[])
    with pytest.raises(SourceError, match="is empty|no image files"):
        open_kitti(drive)


def test_backwards_timestamps_error_names_the_index_and_both_values(tmp_path):
    drive = make_drive(tmp_path, stamps=[STAMPS[0], STAMPS[2], STAMPS[1]])
    with pytest.raises(SourceError, match=r"backwards at frame index 2 \(0000000002.png\): 0.103670 s after 0.207000 s"):
        list(open_kitti(drive))
    assert len(list(open_kitti(drive, on_backwards="skip"))) == 2
