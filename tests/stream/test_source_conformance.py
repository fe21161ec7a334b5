"""Conformance of every source kind to the :class:`~stream.sources.base.Source` contract.

Each entry of :data:`SOURCES` builds a tiny log in ``tmp_path`` and opens it, through the
spec registry (:func:`stream.sources.open_source`) where the kind has a spec, so the same
checks run on the simulator, videos, image folders, KITTI drives, ROS 2 bags, runs of
several logs, paced replays, and the CARLA bridge (``carla:``, over the in-process fake
``carla`` module of test_carla_bridge.py, which every test here finds as ``import carla``).
A new source kind is one line here.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from source_fixtures import (
    BASE_NS,
    compressed_message,
    make_drive,
    raw_message,
    rgb_pattern,
    write_avi,
    write_bag,
    write_image_log,
    write_label_folder,
)
from test_carla_bridge import FakeCarla
from sim.world import SimConfig
from stream.config import RunConfig, RunSection
from stream.frame import Frame
from stream.sources import SOURCE_KINDS, Source, SourceError, open_source, parse_spec
from stream.sources.images import open_images
from stream.sources.pacing import Paced


def config(realtime: bool = False) -> RunConfig:
    return RunConfig(run=RunSection(frames=4, seed=0, realtime=realtime), sim=SimConfig(width=32, height=16))


# ------------------------------------------------------------------------------ the logs

def video_spec(tmp: Path) -> str:
    return f"video:{write_avi(tmp / 'clip.avi')}"


def video_labels_spec(tmp: Path) -> str:
    labels = write_label_folder(tmp / "clip_labels", [f"{i:02d}" for i in range(4)], size=(32, 16))
    return f"video:{write_avi(tmp / 'clip.avi')}?labels={labels}&label_map=camvid"


def images_spec(tmp: Path) -> str:
    return f"images:{write_image_log(tmp / 'drive')}?label_map=camvid&fps=5"


def kitti_spec(tmp: Path) -> str:
    return f"kitti:{make_drive(tmp)}"


def rosbag_spec(tmp: Path) -> str:
    raw = [(BASE_NS + i, raw_message(rgb_pattern(i), enc, BASE_NS + i * 50_000_000))
           for i, enc in enumerate(["rgb8", "bgr8", "mono8", "rgba8"])]
    compressed = [(BASE_NS + i, compressed_message(rgb_pattern(i), "png", BASE_NS + i * 50_000_000)) for i in range(3)]
    bag = write_bag(tmp / "bag", {"/cam/raw": raw, "/cam/compressed": compressed})
    return f"rosbag:{bag}#/cam/raw"


def rosbag_compressed_spec(tmp: Path) -> str:
    return rosbag_spec(tmp).replace("#/cam/raw", "#/cam/compressed")


def logs_folder_spec(tmp: Path) -> str:
    folder = tmp / "logs"
    folder.mkdir()
    write_avi(folder / "a_clip.avi", count=3)
    write_image_log(folder / "b_drive", count=3)
    make_drive(folder / "c_kitti")
    return f"logs:{folder}"


def logs_list_spec(tmp: Path) -> str:
    first = write_avi(tmp / "first.avi", count=3)
    second = write_image_log(tmp / "second", count=2).parent
    return f"logs:{first},{second}"


def realtime_spec(tmp: Path) -> str:
    return f"images:{write_image_log(tmp / 'drive')}?fps=200"  # paced by open_source, 15 ms in all


def carla_spec(tmp: Path) -> str:
    return "carla:localhost:2000?town=Town01&weather=WetCloudySunset&width=32&height=16&timeout=2"


def paced_drop(tmp: Path) -> Source:
    """A slow consumer on a fake clock: the drop-oldest policy drops frames, indices keep gaps."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def clock() -> float:
        now[0] += 0.06  # a slow consumer: every look at the clock is 0.6 frame intervals later
        return now[0]

    return Paced(open_images(write_image_log(tmp / "drive", count=6), fps=10), clock=clock, sleep=sleep)


@dataclass(frozen=True)
class SourceCase:
    name: str
    spec: Callable[[Path], str] | None = None  # builds the log, returns its spec for open_source
    make: Callable[[Path], Source] | None = None  # or: builds and opens it (no spec)
    realtime: bool = False
    missing: str = ""  # a spec naming a path that is not there ({tmp} is filled in)

    def open(self, tmp: Path) -> Source:
        if self.make is not None:
            return self.make(tmp)
        return open_source(self.spec(tmp), config(self.realtime))


SOURCES = [
    SourceCase("sim", spec=lambda tmp: "sim:fog@oldtown,night@newtown"),
    SourceCase("video", spec=video_spec, missing="video:{tmp}/nope.avi"),
    SourceCase("video_labels", spec=video_labels_spec, missing="video:{tmp}/nope.mp4"),
    SourceCase("images", spec=images_spec, missing="images:{tmp}/nope/frames"),
    SourceCase("kitti", spec=kitti_spec, missing="kitti:{tmp}/nope_drive"),
    SourceCase("rosbag", spec=rosbag_spec, missing="rosbag:{tmp}/nope_bag#/cam"),
    SourceCase("rosbag_compressed", spec=rosbag_compressed_spec, missing="rosbag:{tmp}/nope_bag"),
    SourceCase("logs_folder", spec=logs_folder_spec, missing="logs:{tmp}/nope_logs"),
    SourceCase("logs_list", spec=logs_list_spec, missing="logs:{tmp}/nope.avi,{tmp}/other.avi"),
    SourceCase("realtime", spec=realtime_spec, realtime=True, missing="images:{tmp}/nope"),
    SourceCase("paced_drop", make=paced_drop),
    SourceCase("carla", spec=carla_spec),
]

cases = pytest.mark.parametrize("case", SOURCES, ids=[c.name for c in SOURCES])
with_spec = pytest.mark.parametrize("case", [c for c in SOURCES if c.spec is not None],
                                    ids=[c.name for c in SOURCES if c.spec is not None])
with_path = pytest.mark.parametrize("case", [c for c in SOURCES if c.missing],
                                    ids=[c.name for c in SOURCES if c.missing])


@pytest.fixture(autouse=True)
def fake_carla_server(monkeypatch) -> FakeCarla:
    """A fresh fake CARLA server for each test, found by the bridge's ``import carla``."""
    fake = FakeCarla()
    monkeypatch.setitem(sys.modules, "carla", fake)
    return fake


def _read_only(array: np.ndarray) -> bool:
    probe = array.reshape(-1)[:1]
    try:
        probe[0] = probe[0]
    except ValueError:
        return True
    return False


# ------------------------------------------------------------------------------ the checks

@cases
def test_frames_follow_the_contract(case, tmp_path):
    source = case.open(tmp_path)
    assert isinstance(source, Source)
    got = list(source)
    assert len(got) >= 2
    for frame in got:
        assert isinstance(frame, Frame) and isinstance(frame.source_id, str) and frame.source_id
        assert isinstance(frame.meta.get("domain"), str) and frame.meta["domain"]
        image = frame.image
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.flags.c_contiguous and not image.flags.writeable and _read_only(image)
        if frame.label is not None:
            assert frame.label.dtype == np.uint8 and frame.label.shape == image.shape[:2]
            assert not frame.label.flags.writeable and frame.label.flags.c_contiguous
            assert set(np.unique(frame.label).tolist()) <= set(range(19)) | {255}  # canonical
        if frame.depth is not None:
            assert frame.depth.dtype == np.float32 and frame.depth.shape == image.shape[:2]
            assert not frame.depth.flags.writeable and bool((frame.depth > 0).all())  # metres ahead
    indices = [f.index for f in got]
    assert all(b > a for a, b in zip(indices, indices[1:])), indices  # strictly increasing over the run
    clocks: dict[str, list[float]] = {}
    for frame in got:
        clocks.setdefault(frame.source_id, []).append(frame.timestamp)
    for source_id, times in clocks.items():  # each log its own clock, never going back
        assert all(np.isfinite(times)), source_id
        assert all(b >= a for a, b in zip(times, times[1:])), (source_id, times)
    stats = source.stats()
    assert stats["frames_read"] - stats.get("frames_dropped", 0) == len(got)
    assert "frames_skipped" in stats
    assert all(isinstance(e, dict) and "kind" in e and "index" in e for e in source.events)
    source.close()


@cases
def test_iterates_once(case, tmp_path):
    source = case.open(tmp_path)
    frames = iter(source)
    next(frames)
    with pytest.raises(SourceError, match="iterated only once"):
        iter(source)  # while the first iteration runs
    list(frames)
    with pytest.raises(SourceError, match="iterated only once"):
        iter(source)  # and after it ended (some logs close themselves at their end)
    source.close()
    with pytest.raises(SourceError, match="iterated only once"):
        iter(source)


@cases
def test_close_twice_and_stats_after_close(case, tmp_path):
    source = case.open(tmp_path)
    frames = iter(source)
    next(frames)
    source.close()
    source.close()
    assert list(frames) == []  # a source closed mid-stream ends quietly (its handles are gone)
    stats = source.stats()
    assert stats["frames_read"] >= 1 and isinstance(source.true_shifts, list)
    (tmp_path / "again").mkdir()
    unread = case.open(tmp_path / "again")
    unread.close()
    unread.close()
    assert unread.stats()["frames_read"] == 0
    with pytest.raises(SourceError, match="closed"):
        iter(unread)


@with_path
def test_missing_path_is_named(case, tmp_path):
    spec = case.missing.format(tmp=tmp_path)
    missing = spec.split(":", 1)[1].split("#")[0].split(",")[0]
    with pytest.raises(SourceError, match="does not exist") as error:
        open_source(spec, config(case.realtime))
    assert missing in str(error.value)
    kind, arg, options = parse_spec(spec)  # the kind's own opener, past open_source's check
    with pytest.raises(SourceError, match="does not exist") as error:
        SOURCE_KINDS[kind](arg, options, config(case.realtime))
    assert missing in str(error.value)


@with_spec
def test_unknown_option_is_named(case, tmp_path):
    spec = case.spec(tmp_path)
    bad = spec + ("&" if "?" in spec else "?") + "colour_space=bgr"
    with pytest.raises(SourceError, match="colour_space"):
        open_source(bad, config(case.realtime))


@with_spec
def test_bad_option_value_is_named(case, tmp_path):
    spec = case.spec(tmp_path)
    if spec.startswith("sim:"):
        bad, name = "sim:sunny@nowhere", "sunny@nowhere"  # the simulator's only input: its schedule
    elif spec.startswith("carla:"):
        bad, name = spec + "&width=0", "width"  # the bridge's cameras have no resize: their size is asked for
    else:
        bad, name = spec + ("&" if "?" in spec else "?") + "resize=0x4", "resize"
    with pytest.raises(SourceError, match=name):
        open_source(bad, config(case.realtime))
