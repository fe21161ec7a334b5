"""The ingest part without Ray: packs, ground truth apart, the frame limit, source events,
the frame ring and re-reading after a learner crash."""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from learners.records import Observation
from stream.config import load_config
from stream.framering import RingFrame, RingReaders, as_observation, ring_folders, ring_name
from stream.ingest import Ingest, PrefetchStopped


@pytest.fixture()
def clip(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 16))
    for i in range(40):
        writer.write(np.full((16, 32, 3), (5 * i, 100, 200 - 4 * i), np.uint8))
    writer.release()
    return path


def read_all(ingest: Ingest, count: int = 4):
    packs = []
    while True:
        pack, truths, manifest = ingest.read(count)
        packs.append((pack, truths, manifest))
        if manifest.ended:
            return packs


def test_packs_hold_observations_and_the_ground_truth_travels_apart():
    ingest = Ingest(load_config(None, ["run.frames=7", "sim.width=32", "sim.height=16"]))
    packs = read_all(ingest, 3)
    ingest.close()
    seen = [item for pack, _, _ in packs for item in pack]
    truths = [truth for _, truth, _ in packs for truth in truth]
    assert [s.index for s in seen] == list(range(7)) == [t.index for t in truths]
    assert all(type(s) is Observation for s in seen)  # image, index, timestamp, source id: nothing else
    assert all(t.label is not None and t.label.shape == (16, 32) for t in truths)
    headers = [h for _, _, manifest in packs for h in manifest.frames]
    assert [h.domain for h in headers] == [t.domain for t in truths] and headers[0].shape == (16, 32)
    assert [len(pack) for pack, _, _ in packs] == [3, 3, 1] and packs[-1][2].ended


def test_the_frame_limit_is_applied_once_and_counted(clip):
    ingest = Ingest(load_config(None, [f"run.source=video:{clip}", "run.frames=10"]))
    assert sum(len(pack) for pack, _, _ in read_all(ingest)) == 10
    assert ingest.stats()["frame_limit_reached"] == 1
    ingest.close()
    whole = Ingest(load_config(None, [f"run.source=video:{clip}", "run.frames=1000"]))
    assert sum(len(pack) for pack, _, _ in read_all(whole)) == 40
    assert whole.stats()["frame_limit_reached"] == 0
    whole.close()


def test_source_events_reach_the_driver_with_the_reads():
    ingest = Ingest(load_config(None, ["run.frames=12", "sim.width=32", "sim.height=16"]))  # the tour: a domain a frame or two
    events = [event for _, _, manifest in read_all(ingest, 4) for event in manifest.events]
    events += ingest.events()
    ingest.close()
    changes = [event for event in events if event["kind"] == "domain_change"]
    assert len(changes) >= 5 and [e["index"] for e in changes] == sorted(e["index"] for e in changes)
    assert len(events) == len({(e["kind"], e["index"]) for e in events})  # each handed out once


def test_corrupt_frames_are_skipped_counted_and_reported(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:04d}.png"), np.full((8, 12, 3), 20 * i, np.uint8))
    (folder / "0002.png").write_bytes(b"not a png")
    ingest = Ingest(load_config(None, [f"run.source=images:{folder}", "run.frames=100"]))
    packs = read_all(ingest, 2)
    events = [event for _, _, manifest in packs for event in manifest.events] + ingest.events()
    assert sum(len(pack) for pack, _, _ in packs) == 5 and ingest.stats()["frames_skipped"] == 1
    assert any("0002.png" in str(event) for event in events), events
    ingest.close()


def test_reread_gives_the_same_frames_again(clip):
    ingest = Ingest(load_config(None, [f"run.source=video:{clip}", "run.frames=1000"]))
    first = [item for pack, _, _ in read_all(ingest) for item in pack]
    again, truths, manifest = ingest.reread(5, 9)
    more, _, _ = ingest.reread(10, 12)  # reads on
    earlier, _, _ = ingest.reread(2, 3)  # starts the copy again
    assert [s.index for s in again] == [5, 6, 7, 8, 9] == [h.index for h in manifest.frames] == [t.index for t in truths]
    assert [s.index for s in more] == [10, 11, 12] and [s.index for s in earlier] == [2, 3]
    for seen in again + more + earlier:
        assert np.array_equal(seen.image, first[seen.index].image)
    ingest.close()
    ingest.close()  # twice is fine


def test_a_handed_in_source_cannot_be_read_again():
    from stream.sources import open_source

    config = load_config(None, ["run.frames=4", "sim.width=32", "sim.height=16"])
    ingest = Ingest(config, source=open_source(config.run.source, config))
    with pytest.raises(RuntimeError, match="cannot be read again"):
        ingest.reread(0, 1)
    ingest.close()


def test_the_ring_gives_the_same_frames_reuses_its_slots_and_is_deleted(clip):
    name = ring_name()
    config = load_config(None, [f"run.source=video:{clip}", "run.frames=1000", "run.max_in_flight=2", "run.ring_slots=8"])
    plain = [item.image.copy() for pack, _, _ in read_all(Ingest(config)) for item in pack]
    ingest = Ingest(config, ring=True, ring_name=name)
    readers, got = RingReaders(), []
    while True:
        pack, _, manifest = ingest.read(4)
        for item in pack:
            assert isinstance(item, RingFrame) and item.ring.endswith(name)  # the pixels stay in shared memory
            got.append(as_observation(item, readers).image.copy())
        if pack:  # done with them: give the slots back, as the learner does
            readers.get(pack[-1].ring).release(pack[-1].seq + 1)
        if manifest.ended:
            break
    assert len(got) == 40 > 8  # 8 slots for 40 frames: the decoder waited for releases and reused them
    assert all(np.array_equal(a, b) for a, b in zip(got, plain))
    assert any((folder / name).exists() for folder in ring_folders())
    ingest.close()
    readers.close()
    assert not any((folder / name).exists() for folder in ring_folders())


def test_close_stops_a_read_that_waits_for_free_ring_slots(clip):
    config = load_config(None, [f"run.source=video:{clip}", "run.frames=1000", "run.max_in_flight=2", "run.ring_slots=8"])
    ingest = Ingest(config, ring=True)
    ingest.read(8)  # every slot taken and none given back (a learner that died)
    again, _, _ = ingest.reread(2, 5)  # a restarted learner's frames, from the source, meanwhile
    assert [s.index for s in again] == [2, 3, 4, 5]
    outcome: list[BaseException | None] = []

    def stuck_read() -> None:
        try:
            ingest.read(4)
            outcome.append(None)
        except BaseException as error:  # the ring's "closed" error
            outcome.append(error)

    reader = threading.Thread(target=stuck_read)
    reader.start()
    reader.join(timeout=1.0)
    assert reader.is_alive()  # the read waits for free slots
    ingest.close()
    reader.join(timeout=30)
    assert not reader.is_alive() and outcome and isinstance(outcome[0], PrefetchStopped)
