"""The Ray runner's four actors: ingest, teacher, learner and evaluator.

Each actor wraps the same plain class the in-process runner uses; the driver that wires them
together is :mod:`stream.ray_runner`. Frames travel in packs: each ``IngestActor.read`` puts the
records of the frames it read into the object store once, as one object (one ObjectRef per
pack, not per frame: Ray's per-object cost would otherwise limit ingest). The driver
addresses a frame as (pack ref, slot); the learner and the teacher both read it from the
pack by reference, and the learner steps through a whole pack in one call. With
``run.transport=ring`` the pixels are not in the pack: the ingest actor decodes them into a
shared-memory :class:`~stream.framering.FrameRing`, the pack holds
:class:`~stream.framering.RingFrame` records, and the learner releases ring slots in frame
order once it is done with them.

This module imports neither torch nor the torch-bound pipeline at load time: the teacher and
learner actors import their builders in their constructors, so the ingest and evaluator
processes never load torch (each would pay about a second of CPU at start and a few hundred
MB of memory, on the same two cores the learner trains on).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from typing import Any

import ray

from learners.records import StepResult
from perception.teacher import TeacherOutput
from stream.config import RunConfig
from stream.evaluation import FrameEvaluator
from stream.frame import Frame
from stream.framering import FrameRing, RingFrame, RingReaders, as_frame
from stream.machine import peak_rss_mb
from stream.sources import open_source

log = logging.getLogger(__name__)


FrameSlot = tuple[ray.ObjectRef, int, int, str, tuple[int, int]]
"""How the driver holds a frame: (pack ref, slot in the pack, frame index, domain, (H, W))."""


class PackReader:
    """Resolves (pack ref, slot) to a frame, keeping the last pack (frames arrive in order).

    A pack holds :class:`Frame` s (object-store transport) or :class:`RingFrame` s, whose
    images are read from their frame ring without a copy (ring transport).

    Example:
        >>> reader = PackReader(lambda ref: ["frame a", "frame b"])
        >>> reader.frame("ref", 1), reader.frame("ref", 0)
        ('frame b', 'frame a')
    """

    def __init__(self, get: Any = None) -> None:
        self.get = get or ray.get
        self.ref: Any = None
        self.frames: list[Any] = []
        self.rings = RingReaders()

    def record(self, ref: Any, slot: int) -> Any:
        """What the pack holds at ``slot``: a Frame or a RingFrame."""
        if self.ref is None or ref != self.ref:
            self.frames, self.ref = self.get(ref), ref
        return self.frames[slot]

    def frame(self, ref: Any, slot: int) -> Frame:
        return as_frame(self.record(ref, slot), self.rings)

    def release(self, ref: Any, slot: int) -> None:
        """Give back the ring slots up to and including this frame's (for a consumer that
        finishes frames in order); nothing for an object-store frame."""
        item = self.record(ref, slot)
        if isinstance(item, RingFrame) and item.ring is not None:
            self.rings.get(item.ring).release(item.seq + 1)


def _threads(config: RunConfig) -> None:
    """Torch threads of this actor's process: ``run.inference_threads()`` (one by default;
    several torch processes with a thread per core each stall one another on a small machine).
    The learner's gradient steps take ``run.train_threads()`` (see ``build_learner``)."""
    import torch

    torch.set_num_threads(config.run.inference_threads())


class PrefetchIterator:
    """Iterates a source in a background thread, up to ``depth`` frames ahead of the reader.

    Decoding (OpenCV releases the GIL) then overlaps with the reader's ``ray.put`` of the
    previous frames. Frames come out in the source's order; an error raised by the source is
    raised by ``next`` after the frames before it. ``stop()`` ends the thread (the source is
    not closed: its owner closes it).

    Example:
        >>> it = PrefetchIterator(iter(range(5)), depth=2)
        >>> list(it)
        [0, 1, 2, 3, 4]
        >>> def broken():
        ...     yield 1
        ...     raise ValueError("frame 1 is damaged")
        >>> it = PrefetchIterator(broken(), depth=2)
        >>> next(it)
        1
        >>> next(it)
        Traceback (most recent call last):
        ...
        ValueError: frame 1 is damaged
    """

    _END = object()

    def __init__(self, iterator: Any, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"PrefetchIterator: depth must be >= 1, got {depth}")
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.stopped = threading.Event()
        self.finished = False
        self.thread = threading.Thread(target=self._run, args=(iterator,), name="ingest-prefetch", daemon=True)
        self.thread.start()

    def _offer(self, item: Any) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, iterator: Any) -> None:
        try:
            for item in iterator:
                if not self._offer(item):
                    return
        except BaseException as error:  # handed to the reader, in order
            self.error = error
        self._offer(self._END)

    def __iter__(self) -> "PrefetchIterator":
        return self

    def __next__(self) -> Any:
        if self.finished:
            raise StopIteration
        item = self.queue.get()
        if item is self._END:
            self.finished = True
            if self.error is not None:
                raise self.error
            raise StopIteration
        return item

    def stop(self) -> None:
        """Stop the thread (frames already decoded are dropped)."""
        self.stopped.set()
        self.thread.join(timeout=5)


def put_pack(frames: list[Any]) -> list[FrameSlot]:
    """Put ``frames`` (Frames or RingFrames) into the object store as one pack; one
    :data:`FrameSlot` per frame (none for no frames)."""
    if not frames:
        return []
    pack = ray.put(frames)
    return [(pack, slot, frame.index, frame.domain, frame.shape) for slot, frame in enumerate(frames)]


def ring_slots(config: RunConfig) -> int:
    """Slots of the ingest actor's frame ring: ``run.ring_slots``, or enough for the frames the
    driver, the learner (in flight and waiting on teacher answers) and the decoder hold at once.

    Example:
        >>> from stream.config import load_config
        >>> ring_slots(load_config(None, []))
        39
    """
    if config.run.ring_slots > 0:
        return config.run.ring_slots
    return config.least_ring_slots() + 16  # the spare lets the decoder work ahead


@ray.remote(num_cpus=0, concurrency_groups={"control": 1}, enable_task_events=False)
class IngestActor:
    """Reads the source and puts the frames of each ``read`` into the object store once, as one
    pack; returns one :data:`FrameSlot` per frame.

    ``transport="object_store"``: the pack is a list of :class:`Frame`. ``"ring"``: images go
    into a shared-memory :class:`FrameRing` (the source decodes straight into its slots) and
    the pack is a list of :class:`RingFrame`; whoever finishes frames in order releases their
    slots (the learner actor). ``prefetch`` > 0 decodes up to that many frames ahead in a
    background thread started by the first ``read`` (:class:`PrefetchIterator`); the ring
    always decodes ahead, as far as its free slots allow.
    """

    def __init__(self, config: RunConfig, prefetch: int = 0, transport: str = "object_store", ring: str | None = None):
        """``ring``: the ring's file name (see :func:`~stream.framering.ring_name`); None, a fresh one."""
        if prefetch < 0:
            raise ValueError(f"IngestActor: prefetch must be >= 0, got {prefetch}")
        if transport not in ("object_store", "ring"):
            raise ValueError(f"IngestActor: transport must be object_store or ring, got {transport!r}")
        self.config = config
        self.source = open_source(config.run.source, config)
        self.prefetch = prefetch
        self.transport = transport
        self.ring_name = ring
        self.ring: FrameRing | None = None
        self.closed = False
        self.oversize_logged = False
        self.prefetcher: PrefetchIterator | None = None
        self.iterator: Any = None
        self.done = False

    def _new_ring(self, slot_bytes: int) -> FrameRing:
        if self.closed:  # the driver may have removed the ring's name already: make no new file
            raise RuntimeError("IngestActor: closed")
        return FrameRing.create(ring_slots(self.config), slot_bytes, name=self.ring_name)

    def _claim(self, height: int, width: int) -> Any:
        """The source's image sink: the next ring slot (the ring is made for the first frame)."""
        if self.ring is None:
            self.ring = self._new_ring(height * width * 3)
        claimed = self.ring.claim(height, width)
        if claimed is None:
            if not self.oversize_logged:
                self.oversize_logged = True
                log.warning("%dx%d frames are larger than the ring's slots (made for the first frame): "
                            "they travel in the object store", width, height)
            return None
        self._last_claim = claimed
        return claimed[1]

    def _ring_records(self) -> Any:
        """The source's frames as RingFrames, their images in ring slots."""
        self._last_claim: tuple[int, Any] | None = None
        decode_into = getattr(self.source, "decode_into", None)
        if decode_into is not None:
            decode_into(self._claim)
        for frame in self.source:
            claim, self._last_claim = self._last_claim, None
            seq = None
            if claim is not None and frame.image.ctypes.data == claim[1].ctypes.data:
                seq = claim[0]  # decoded into its slot already
            elif self.ring is None:
                self.ring = self._new_ring(frame.image.nbytes)
            yield RingFrame.put(frame, self.ring, seq)

    def read(self, count: int) -> list[FrameSlot]:
        """Up to ``count`` frames, packed in one object; an empty list at the end of the stream."""
        if self.iterator is None:
            if self.transport == "ring":
                self.prefetcher = PrefetchIterator(self._ring_records(), ring_slots(self.config))
            elif self.prefetch > 0:
                self.prefetcher = PrefetchIterator(iter(self.source), self.prefetch)
            self.iterator = self.prefetcher or iter(self.source)
        frames: list[Any] = []
        while len(frames) < count and not self.done:
            try:
                frame = next(self.iterator)
            except StopIteration:
                self.done = True
                break
            if frame.index >= self.config.run.frames:
                self.done = True
                break
            frames.append(frame)
        return put_pack(frames)

    @ray.method(concurrency_group="control")  # runs even while a read waits for free ring slots
    def reread(self, first: int, last: int, pack_size: int) -> list[FrameSlot]:
        """Frames ``first``..``last`` again, from a fresh copy of the source, in object-store
        packs of ``pack_size`` (a restarted learner's frames whose ring slots were reused)."""
        source = open_source(self.config.run.source, self.config)
        slots: list[FrameSlot] = []
        try:
            chunk: list[Frame] = []
            for frame in source:
                if frame.index > last:
                    break
                if frame.index >= first:
                    chunk.append(frame)
                if len(chunk) == pack_size or (chunk and frame.index == last):
                    slots.extend(put_pack(chunk))
                    chunk = []
        finally:
            source.close()
        return slots

    def stats(self) -> dict[str, int]:
        return self.source.stats()

    def events(self) -> list[dict[str, Any]]:
        return list(self.source.events)

    def true_shifts(self) -> list[int]:
        return list(self.source.true_shifts)

    @ray.method(concurrency_group="control")  # stops a read that waits for free ring slots
    def close(self) -> None:
        self.closed = True
        if self.prefetcher is not None:
            if self.ring is not None:
                self.ring.stop.set()  # a decoder waiting for a free slot gives up
            self.prefetcher.stop()
        if self.ring is not None:
            self.ring.close()
        self.source.close()

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()


@ray.remote(num_cpus=0, enable_task_events=False)
class TeacherActor:
    """Labels frames (on the GPU when one is present); stateless, so safe to retry."""

    def __init__(self, config: RunConfig):
        from stream.pipeline import build_teacher  # torch: only the teacher and learner actors load it

        _threads(config)
        self.teacher = build_teacher(config)
        self.rings = RingReaders()

    def label(self, pack: list[Any], slot: int) -> TeacherOutput:
        """Labels frame ``slot`` of a pack (Ray resolves the pack ref to the shared frames)."""
        return self.teacher.label(as_frame(pack[slot], self.rings).image[None])

    def describe(self, height: int, width: int) -> dict[str, Any]:
        return {"params": self.teacher.params, "macs": self.teacher.macs(height, width),
                "name": self.teacher.name, "device": self.teacher.device}

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()


class RayTeacherClient:
    """The learner's view of a :class:`TeacherActor`: submit by (pack ref, slot), block on the answer."""

    def __init__(self, actor: Any):
        self.actor = actor

    def submit(self, frame: Frame, handle: tuple[ray.ObjectRef, int]) -> ray.ObjectRef:
        pack, slot = handle
        return self.actor.label.remote(pack, slot)

    def result(self, ticket: ray.ObjectRef) -> TeacherOutput:
        return ray.get(ticket)


@ray.remote(num_cpus=0, max_restarts=1, max_task_retries=0, enable_task_events=False)
class LearnerActor:
    """The :class:`~learners.stream_learner.StreamLearner` in its own process."""

    def __init__(self, config: RunConfig, teacher: Any, checkpoint_dir: str):
        from stream.pipeline import build_learner  # torch: only the teacher and learner actors load it

        _threads(config)
        self.learner = build_learner(config, RayTeacherClient(teacher), checkpoint_dir)
        self.packs = PackReader()
        self.held: deque[tuple[int, str, int]] = deque()  # (frame index, ring, seq) of ring frames not released

    def step(self, wrapped: list[ray.ObjectRef], slots: list[int]) -> tuple[list[StepResult], list]:
        """Frames ``slots`` of the pack in ``wrapped`` (a list, so Ray passes the ref unresolved),
        in order: one call per pack keeps Ray's per-call cost off the per-frame path."""
        results, records = [], []
        for slot in slots:
            item = self.packs.record(wrapped[0], slot)
            if isinstance(item, RingFrame) and item.ring is not None:
                self.held.append((item.index, item.ring, item.seq))
            frame = as_frame(item, self.packs.rings)
            result = self.learner.step(frame, handle=(wrapped[0], slot))
            records.extend(result.records)
            result.records = []
            results.append(result)
        self.release()
        return results, records

    def release(self) -> None:
        """Give the ring slots of finished frames back to the ingest actor, in order. A frame is
        finished once its teacher answer (if it asked) was applied; the replay buffer keeps
        copies."""
        oldest = self.learner.oldest_unfinished
        ring, seq = None, None
        while self.held and self.held[0][0] < oldest:
            _, ring, seq = self.held.popleft()
        if ring is not None and seq is not None:
            self.packs.rings.get(ring).release(seq + 1)

    def flush(self) -> tuple[StepResult, list]:
        result = self.learner.flush()
        self.release()
        records, result.records = result.records, []
        return result, records

    def position(self) -> int:
        return self.learner.next_index

    def describe(self, height: int, width: int) -> dict[str, Any]:
        from perception.nets import count_macs, count_params

        model = self.learner.learner.model
        return {"params": count_params(model), "macs": count_macs(model, height, width)}

    def crash(self) -> None:
        """Fault injection for tests: the process dies as if it had crashed."""
        os._exit(1)

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()


@ray.remote(num_cpus=0, enable_task_events=False)
class EvaluatorActor:
    """The numba evaluator; receives the learner's records by reference."""

    def __init__(self, config: RunConfig):
        self.evaluator = FrameEvaluator(config.evaluator, config.run.label_map)

    def update(self, records: list) -> list[dict[str, Any]]:
        return self.evaluator.update(records)

    def summary(self) -> dict[str, Any]:
        return self.evaluator.summary()

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()
