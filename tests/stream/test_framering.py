"""The shared-memory frame ring: slots, in-order release, waiting, errors, and sources that
decode straight into its slots."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from learners.replay import ReplayBuffer, ReplayConfig
from stream.frame import Frame
from stream.framering import FrameRing, RingError, RingFrame, RingReaders, remove_ring, ring_folders, ring_name, ring_path
from stream.sources.multi import open_many
from stream.sources.video import open_video


def write_avi(path: Path, count: int, size: tuple[int, int] = (32, 16)) -> Path:
    """A small MJPG clip whose frames differ in colour (blue, green and red differ too)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    for i in range(count):
        bgr = np.zeros((size[1], size[0], 3), np.uint8)
        bgr[..., 0], bgr[..., 2] = 10 + 30 * i, 200 - 30 * i
        writer.write(bgr)
    writer.release()
    return path


@pytest.fixture
def ring(tmp_path):
    ring = FrameRing.create(slots=3, slot_bytes=4 * 5 * 3, path=tmp_path / "ring")
    yield ring
    ring.close()


def fill(ring: FrameRing, value: int, height: int = 4, width: int = 5) -> int:
    claimed = ring.claim(height, width, timeout=1.0)
    assert claimed is not None
    seq, out = claimed
    out[:] = value
    return seq


def test_a_reader_sees_what_the_writer_wrote_without_a_copy(ring):
    seqs = [fill(ring, v) for v in (10, 20, 30)]
    assert seqs == [0, 1, 2]
    reader = FrameRing.attach(ring.name)
    views = [reader.view(seq, 4, 5) for seq in seqs]
    assert [int(v[0, 0, 0]) for v in views] == [10, 20, 30]
    assert not views[0].flags.writeable
    with pytest.raises(ValueError):
        views[0][0, 0, 0] = 1  # readers cannot write into a slot
    del views
    reader.close()


def test_slots_are_reused_only_after_release_in_order(ring):
    for value in (1, 2, 3):
        fill(ring, value)
    with pytest.raises(RingError, match="no slot released within 0.05 s"):
        ring.claim(4, 5, timeout=0.05)
    reader = FrameRing.attach(ring.name)
    reader.release(1)  # frame 0 is done
    assert fill(ring, 4) == 3
    assert int(reader.view(3, 4, 5)[0, 0, 0]) == 4  # slot 0 again, with the new frame
    with pytest.raises(RingError, match="slot 0 was released already"):
        reader.view(0, 4, 5)
    with pytest.raises(RingError, match="slot 7 was never written"):
        reader.view(7, 4, 5)
    reader.release(0)  # never backwards
    assert reader.released == 1
    reader.close()


def test_a_waiting_writer_goes_on_when_a_reader_releases(ring):
    for value in (1, 2, 3):
        fill(ring, value)
    got: list[int] = []
    writer = threading.Thread(target=lambda: got.append(fill(ring, 5)))
    writer.start()
    time.sleep(0.05)
    assert not got  # still waiting
    FrameRing.attach(ring.name).release(2)
    writer.join(timeout=5)
    assert got == [3]


def test_closing_stops_a_waiting_writer(tmp_path):
    ring = FrameRing.create(slots=1, slot_bytes=60, path=tmp_path / "ring")
    fill(ring, 1)
    errors: list[Exception] = []

    def wait() -> None:
        try:
            ring.claim(4, 5)
        except RingError as error:
            errors.append(error)

    waiter = threading.Thread(target=wait)
    waiter.start()
    ring.stop.set()
    waiter.join(timeout=5)
    assert errors and "closed while waiting" in str(errors[0])
    ring.close()
    assert not (tmp_path / "ring").exists()  # the writer deletes its file


def test_too_large_images_travel_in_the_record(ring):
    assert ring.claim(40, 50) is None
    big = Frame(np.full((8, 10, 3), 7, np.uint8), timestamp=1.0, source_id="cam", index=4,
                label=np.ones((8, 10), np.uint8), meta={"domain": "fog"})
    record = RingFrame.put(big.observation(), ring)
    assert record.ring is None and record.image is not None and ring.written == 0
    back = record.resolve(RingReaders())
    assert back.index == 4 and back.timestamp == 1.0 and int(back.image.max()) == 7
    assert not hasattr(record, "label") and not hasattr(back, "label")  # ground truth never rides with the image
    small = Frame(np.full((4, 5, 3), 3, np.uint8), timestamp=1.5, source_id="cam", index=5)
    record = RingFrame.put(small.observation(), ring)
    assert record.ring == ring.name and record.image is None and record.seq == 0
    assert np.array_equal(record.resolve(RingReaders()).image, small.image)


def test_bad_ring_names_get_clear_errors(tmp_path):
    with pytest.raises(RingError, match="no such ring"):
        FrameRing.attach(str(tmp_path / "missing"))
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(RingError, match="cannot map it"):
        FrameRing.attach(str(tmp_path / "empty"))
    other = tmp_path / "other"
    other.write_bytes(b"\0" * 128)
    with pytest.raises(RingError, match="not a frame ring"):
        FrameRing.attach(str(other))
    with pytest.raises(RingError, match="must be >= 1"):
        FrameRing.create(slots=0, slot_bytes=10, path=tmp_path / "zero")


def test_a_video_decodes_straight_into_the_slots(tmp_path):
    path = write_avi(tmp_path / "clip.avi", count=5)
    with open_video(path) as source:
        plain = [f.image.copy() for f in source]
    ring = FrameRing.create(slots=8, slot_bytes=16 * 32 * 3, path=tmp_path / "ring")
    given: list[np.ndarray] = []

    def sink(height: int, width: int) -> np.ndarray:
        claimed = ring.claim(height, width)
        assert claimed is not None
        given.append(claimed[1])
        return claimed[1]

    with open_video(path) as source:
        source.decode_into(sink)
        frames = list(source)
    assert len(frames) == len(given) == 5
    for frame, slot, expected in zip(frames, given, plain):
        assert np.shares_memory(frame.image, slot)  # no copy after the colour conversion
        assert np.array_equal(frame.image, expected)
        assert not frame.image.flags.writeable
    del frames, given
    ring.close()


def test_multi_log_sources_forward_the_sink_to_every_log(tmp_path):
    logs = [write_avi(tmp_path / f"log{i}.avi", count=2) for i in range(2)]
    calls: list[tuple[int, int]] = []

    def sink(height: int, width: int) -> None:
        calls.append((height, width))
        return None  # a fresh array, as without a sink

    source = open_many([open_video(p) for p in logs])
    source.decode_into(sink)
    assert len(list(source)) == 4 and len(calls) == 4
    source.close()


def test_replay_copies_images_it_does_not_own(ring):
    fill(ring, 42)
    view = FrameRing.attach(ring.name).view(0, 4, 5)
    replay = ReplayBuffer(ReplayConfig(capacity=4), seed=0)
    replay.add(view, np.zeros((4, 5), np.uint8), None, regime=0)
    stored = replay.samples[0].image
    assert not np.shares_memory(stored, view) and int(stored.max()) == 42 and not stored.flags.writeable


def test_rings_live_in_shared_memory_when_it_has_room_and_are_removed_by_name():
    name = ring_name()
    assert ring_path(name, 1 << 20).parent == ring_folders()[0]
    assert ring_path(name, 1 << 60).parent == ring_folders()[-1]  # no room anywhere: the temp folder
    ring = FrameRing.create(slots=2, slot_bytes=12, name=name)
    assert ring.path.name == name and ring.path.stat().st_size == 64 + 24
    remove_ring(name)
    assert not ring.path.exists()
    ring.close()
