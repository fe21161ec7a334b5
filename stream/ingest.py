"""The ingest part: reads a source and hands out packs of observations, the ground truth apart.

:class:`Ingest` is a plain class; the in-process runner calls it directly and the Ray runner
wraps it with ``ray.remote`` (:mod:`stream.actors`). Each :meth:`Ingest.read` gives back three
things, which travel separately:

- the **pack**: the frames' :class:`~learners.records.Observation` s (image, index, timestamp,
  source id: what a car has), for the learner and the teacher. With a frame ring the images
  are decoded straight into shared-memory slots and the pack holds small
  :class:`~stream.framering.RingFrame` records instead;
- the **truths**: each frame's :class:`~stream.frame.GroundTruth` (label, domain tag), for the
  evaluator alone;
- the **manifest**: what the driver needs to steer the run (index, domain and size of each
  frame, the events the source raised since the last read, whether the stream ended).

The run's frame limit (``run.frames``) is applied here, once; a source cut short by it is
counted in :meth:`stats` (``frame_limit_reached``).

Example:
    >>> from stream.config import load_config
    >>> ingest = Ingest(load_config(None, ["run.source=sim:fog@oldtown", "run.frames=5", "sim.width=32", "sim.height=16"]))
    >>> pack, truths, manifest = ingest.read(3)
    >>> [seen.index for seen in pack], [truth.domain for truth in truths]
    ([0, 1, 2], ['fog@oldtown', 'fog@oldtown', 'fog@oldtown'])
    >>> hasattr(pack[0], "label"), manifest.frames[0].shape
    (False, (16, 32))
    >>> len(ingest.read(10)[0]), ingest.read(10)[2].ended
    (2, True)
    >>> ingest.close()
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

from learners.records import Observation
from stream.config import RunConfig
from stream.frame import Frame, GroundTruth
from stream.framering import FrameRing, RingFrame
from stream.machine import peak_rss_mb
from stream.sources import open_source
from stream.sources.base import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameHeader:
    """What the driver knows of a frame: its index, domain tag and (H, W)."""

    index: int
    domain: str
    shape: tuple[int, int]


@dataclass
class ReadManifest:
    """The driver's part of a read: frame headers, new source events, end of stream."""

    frames: list[FrameHeader] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False


Pack = list[Any]
"""A read's observations: :class:`Observation` s, or :class:`RingFrame` s with a frame ring."""


class PrefetchStopped(RuntimeError):
    """A read was waiting for the prefetcher's next frame when it was stopped (the ingest closed)."""


class PrefetchIterator:
    """Iterates a source in a background thread, up to ``depth`` frames ahead of the reader.

    Decoding (OpenCV releases the GIL) then overlaps with the reader's work on the previous
    frames. Frames come out in the source's order; an error raised by the source is raised by
    ``next`` after the frames before it. ``stop()`` ends the thread (the source is not closed:
    its owner closes it), and a reader waiting in ``next`` gets :class:`PrefetchStopped`.

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

    def __init__(self, iterator: Iterator[Any], depth: int) -> None:
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

    def _run(self, iterator: Iterator[Any]) -> None:
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
        while True:
            try:
                item = self.queue.get(timeout=0.1)
                break
            except queue.Empty:
                if self.stopped.is_set():  # stopped while the reader waited: end it, do not hang
                    self.finished = True
                    raise PrefetchStopped("the prefetcher was stopped while a read waited for a frame") from None
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


def ring_slots(config: RunConfig) -> int:
    """Slots of the ingest's frame ring: ``run.ring_slots``, or enough for the frames the
    driver, the learner (in flight and waiting on teacher answers) and the decoder hold at once.

    Example:
        >>> from stream.config import load_config
        >>> ring_slots(load_config(None, []))
        39
    """
    if config.run.ring_slots > 0:
        return config.run.ring_slots
    return config.least_ring_slots() + 16  # the spare lets the decoder work ahead


class Ingest:
    """Reads ``run.source`` (or ``source``) and hands out packs (module docstring).

    Args:
        config: the run's configuration (source spec, frame limit, ring size).
        ring: decode images into a shared-memory :class:`FrameRing` (one machine); the packs
            then hold :class:`RingFrame` s, whose slots the learner releases in frame order.
        ring_name: the ring's file name (see :func:`~stream.framering.ring_name`); None, a fresh one.
        prefetch: without a ring, decode up to this many frames ahead in a background thread
            (0: decode in ``read``). The ring always decodes ahead, as far as its slots allow.
        source: an open source to read instead of the one ``run.source`` names (the ingest
            takes ownership and closes it; it cannot be read again after a learner crash).
    """

    def __init__(self, config: RunConfig, ring: bool = False, ring_name: str | None = None, prefetch: int = 0,
                 source: Source | None = None) -> None:
        if prefetch < 0:
            raise ValueError(f"Ingest: prefetch must be >= 0, got {prefetch}")
        self.config = config
        self.depth_truth = config.distill.depth_weight > 0  # the depth scores need the frames' depth
        self.limit = config.run.frames
        self.given_source = source is not None
        self.source = open_source(config.run.source, config) if source is None else source
        self.use_ring = ring
        self.ring_name = ring_name
        self.ring: FrameRing | None = None
        self.prefetch = prefetch
        self.prefetcher: PrefetchIterator | None = None
        self.iterator: Iterator[Any] | None = None
        self.ended = False
        self.closed = False
        self.frame_limit_reached = False
        self.events_seen = 0
        self.oversize_logged = False
        self._last_claim: tuple[int, Any] | None = None
        self.rereader: tuple[Source, Iterator[Frame]] | None = None
        self.reread_next = 0

    # -- reading ----------------------------------------------------------------------------
    def _start(self) -> None:
        if self.use_ring:
            self.prefetcher = PrefetchIterator(self._ring_records(), ring_slots(self.config))
        elif self.prefetch > 0:
            self.prefetcher = PrefetchIterator(self._split(iter(self.source)), self.prefetch)
        self.iterator = self.prefetcher or self._split(iter(self.source))

    def read(self, count: int) -> tuple[Pack, list[GroundTruth], ReadManifest]:
        """Up to ``count`` frames: (pack, truths, manifest); an empty pack once the stream ended."""
        if count < 1:
            raise ValueError(f"Ingest.read: count must be >= 1, got {count}")
        if self.closed:
            raise RuntimeError("Ingest: closed")
        if self.iterator is None:
            self._start()
        pack: Pack = []
        truths: list[GroundTruth] = []
        headers: list[FrameHeader] = []
        while len(pack) < count and not self.ended:
            try:
                item, truth = next(self.iterator)  # type: ignore[arg-type]
            except StopIteration:
                self.ended = True
                break
            if item.index >= self.limit:
                self.ended = self.frame_limit_reached = True
                log.info("run.frames=%d cut %s short", self.limit, self.source.source_id)
                break
            pack.append(item)
            truths.append(truth)
            headers.append(FrameHeader(item.index, truth.domain, item.shape))
        return pack, truths, ReadManifest(headers, self._new_events(), self.ended)

    def _new_events(self) -> list[dict[str, Any]]:
        events = list(self.source.events[self.events_seen:])
        self.events_seen += len(events)
        return events

    def _split(self, frames: Iterator[Frame]) -> Iterator[tuple[Observation, GroundTruth]]:
        for frame in frames:
            yield frame.observation(), frame.truth(self.depth_truth)

    # -- the frame ring ---------------------------------------------------------------------
    def _new_ring(self, slot_bytes: int) -> FrameRing:
        if self.closed:  # the driver may have removed the ring's name already: make no new file
            raise RuntimeError("Ingest: closed")
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
                            "they travel with the pack", width, height)
            return None
        self._last_claim = claimed
        return claimed[1]

    def _ring_records(self) -> Iterator[tuple[RingFrame, GroundTruth]]:
        """The source's frames as RingFrames, their images in ring slots."""
        self._last_claim = None
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
            yield RingFrame.put(frame.observation(), self.ring, seq), frame.truth(self.depth_truth)

    # -- after a learner crash --------------------------------------------------------------
    def reread(self, first: int, last: int) -> tuple[Pack, list[GroundTruth], ReadManifest]:
        """Frames ``first``..``last`` again, from a second copy of the source, as a pack of
        observations (a restarted learner's frames whose ring slots were reused). Calls in
        increasing order read on; an earlier ``first`` starts the copy again."""
        if self.given_source:
            raise RuntimeError("Ingest: a source handed in cannot be read again")
        if self.rereader is None or first < self.reread_next:
            self._close_rereader()
            source = open_source(self.config.run.source, self.config)
            self.rereader = (source, iter(source))
        pack: Pack = []
        truths: list[GroundTruth] = []
        headers: list[FrameHeader] = []
        for frame in self.rereader[1]:
            self.reread_next = frame.index + 1
            if frame.index >= first:
                pack.append(frame.observation())
                truths.append(frame.truth(self.depth_truth))
                headers.append(FrameHeader(frame.index, frame.domain, frame.shape))
            if frame.index >= last:
                break
        return pack, truths, ReadManifest(headers)

    def _close_rereader(self) -> None:
        if self.rereader is not None:
            self.rereader[0].close()
            self.rereader = None
            self.reread_next = 0

    # -- a closed loop ----------------------------------------------------------------------
    def steer(self, index: int, labels: Any) -> float:
        """Hand the student's prediction of frame ``index`` to the source, which steers by it
        before it renders the next frame (``run.closed_loop``); returns the steering command."""
        steer = getattr(self.source, "steer", None)
        if steer is None:
            raise RuntimeError(f"run.closed_loop: source {self.source.source_id} cannot be steered (only the built-in "
                               f"simulator's ego can)")
        if self.prefetcher is not None:
            raise RuntimeError("run.closed_loop: the ingest decodes ahead (ring or prefetch), so a frame would be "
                               "rendered before the previous frame's steering arrived")
        return steer(index, labels)

    # -- what the driver asks at the end ----------------------------------------------------
    def stats(self) -> dict[str, int]:
        """The source's counters, plus ``frame_limit_reached`` (1 when ``run.frames`` cut it short)."""
        return {**self.source.stats(), "frame_limit_reached": int(self.frame_limit_reached)}

    def true_shifts(self) -> list[int]:
        return list(self.source.true_shifts)

    def events(self) -> list[dict[str, Any]]:
        """The source events not yet handed out with a read."""
        return self._new_events()

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()

    def close(self) -> None:
        """Stop decoding, delete the ring, close the sources; safe to call twice."""
        self.closed = True
        if self.prefetcher is not None:
            if self.ring is not None:
                self.ring.stop.set()  # a decoder waiting for a free slot gives up
            self.prefetcher.stop()
        if self.ring is not None:
            self.ring.close()
        self._close_rereader()
        self.source.close()
