"""Several logs in one run: renumbering, per-log domains, boundaries, folders of logs."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.sources.base import Source, SourceError
from stream.sources.images import open_images
from stream.sources.multi import discover_logs, open_many

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def image_log(root: Path, count: int, size: tuple[int, int] = (6, 4), corrupt: int | None = None) -> Path:
    frames = root / "frames"
    frames.mkdir(parents=True)
    for i in range(count):
        assert cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((size[1], size[0], 3), i, np.uint8))
    if corrupt is not None:
        (frames / f"{corrupt:03d}.png").write_bytes(b"broken")
    return frames


def video_log(path: Path, count: int, size: tuple[int, int] = (16, 8)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    for i in range(count):
        writer.write(np.full((size[1], size[0], 3), 30 * i, np.uint8))
    writer.release()
    return path


def test_logs_play_one_after_the_other(tmp_path):
    a = open_images(image_log(tmp_path / "alpha", 3))
    b = open_images(image_log(tmp_path / "beta", 4, corrupt=1))
    run = open_many([a, b])
    assert isinstance(run, Source)
    got = list(run)
    assert [f.index for f in got] == list(range(6))
    assert [f.meta["log_index"] for f in got] == [0, 1, 2, 0, 1, 2]
    assert [f.source_id for f in got] == ["images:alpha"] * 3 + ["images:beta"] * 3
    assert [f.domain for f in got] == ["alpha"] * 3 + ["beta"] * 3
    assert [f.timestamp for f in got][3:] == [0.0, 0.2, 0.3]  # each log's own clock
    assert run.true_shifts == [3]
    stats = run.stats()
    assert stats["frames_read"] == 6 and stats["frames_skipped"] == 1 and stats["logs"] == 2
    kinds = [(e["kind"], e["index"]) for e in run.events]
    assert kinds == [("log_start", 0), ("log_start", 3), ("frame_skipped", 4)]
    skipped = run.events[2]
    assert skipped["file"] == "001.png" and skipped["log_index"] == 1 and skipped["source_id"] == "images:beta"
    run.close()
    run.close()


def test_duplicate_log_names_get_unique_domains_and_empty_input_fails(tmp_path):
    one = open_images(image_log(tmp_path / "x" / "log", 1))
    two = open_images(image_log(tmp_path / "y" / "log", 1))
    assert [f.domain for f in open_many([one, two])] == ["log", "log~2"]
    with pytest.raises(SourceError, match="no sources given"):
        open_many([])


def test_folder_of_logs_is_discovered_and_options_reach_every_log(tmp_path):
    logs = tmp_path / "logs"
    image_log(logs / "b_camvid", 2, size=(12, 8))
    video_log(logs / "a_drive.avi", 3)
    drive = logs / "c_kitti" / "image_02"
    drive.mkdir(parents=True)
    image_log(drive.parent / "tmp", 2)
    (drive.parent / "tmp" / "frames").rename(drive / "data")
    (drive / "timestamps.txt").write_text("2011-09-26 13:02:25.0\n2011-09-26 13:02:25.1\n")
    (logs / "README.txt").write_text("not a log")
    kinds = [(kind, path.relative_to(logs).as_posix()) for kind, path in discover_logs(logs)]
    assert kinds == [("video", "a_drive.avi"), ("images", "b_camvid/frames"), ("kitti", "c_kitti")]
    with open_many(logs, resize=(4, 2)) as run:
        got = list(run)
    assert [f.source_id for f in got] == ["video:a_drive.avi"] * 3 + ["images:b_camvid"] * 2 + ["kitti:c_kitti"] * 2
    assert {f.shape for f in got} == {(2, 4)} and run.true_shifts == [3, 5]
    with pytest.raises(SourceError, match=r"unknown|cannot apply"):
        open_many(logs, colour="red")


def test_folder_errors(tmp_path):
    with pytest.raises(SourceError, match=r"logs:.*none: the folder does not exist"):
        open_many(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no logs in the folder"):
        open_many(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    video_log(bad / "a.avi", 2)
    (bad / "b.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match=r"video:.*b\.mp4: OpenCV cannot open it"):
        open_many(bad)


@pytest.mark.shared_data
def test_shared_logs_folder_is_discovered():
    logs = DATA / "logs"
    if not logs.is_dir():
        pytest.skip(f"shared data absent: {logs}")
    kinds = [(kind, path.name) for kind, path in discover_logs(logs)]
    assert kinds == [("images", "frames"), ("video", "udacity_solidWhiteRight.mp4")]
