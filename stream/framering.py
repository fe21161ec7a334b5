"""A shared-memory ring of frame slots: how the Ray runner moves images between processes on
one machine without the object store.

The ingest actor decodes each image straight into the next free slot of a :class:`FrameRing`
(a file in ``/dev/shm`` mapped by every process that reads it) and sends a small
:class:`RingFrame` record instead of the pixels: the observation's other fields and the
slot's sequence number. Readers map the same file (:meth:`FrameRing.attach`) and rebuild the
:class:`~learners.records.Observation` around a read-only view of the slot, without a copy.

Slots are handed out in sequence order and given back in that order: the one consumer that
finishes frames in order (the learner) calls :meth:`FrameRing.release` with the first
sequence number it still needs, and the writer waits for that before it reuses a slot. A
reader that keeps an image past its release (the replay buffer) copies it. An image larger
than a slot does not go through the ring (:meth:`FrameRing.claim` answers None) and travels
inside its record instead.

Example:
    >>> import numpy as np
    >>> ring = FrameRing.create(slots=2, slot_bytes=4 * 6 * 3)
    >>> seq, out = ring.claim(4, 6)
    >>> out[:] = 7
    >>> reader = FrameRing.attach(ring.name)
    >>> view = reader.view(seq, 4, 6)
    >>> int(view.sum()), view.flags.writeable
    (504, False)
    >>> reader.release(seq + 1)
    >>> ring.pending()
    0
    >>> reader.close(); ring.close()
"""
from __future__ import annotations

import logging
import mmap
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from learners.records import Observation
from stream.frame import Frame  # noqa: F401  (the doctests)

log = logging.getLogger(__name__)

HEADER_BYTES = 64  # eight int64: written, released, slots, slot_bytes, magic, closed, 2 spare
MAGIC = 0x6F64697374696C6C  # "odistill"
_WRITTEN, _RELEASED, _SLOTS, _SLOT_BYTES, _MAGIC, _CLOSED = range(6)


class RingError(RuntimeError):
    """The ring cannot be created, mapped, or read as asked."""


def ring_folders() -> list[Path]:
    """Where rings may live: ``/dev/shm`` (memory) where it is writable, then the temp folder."""
    shm = Path("/dev/shm")
    folders = [shm] if shm.is_dir() and os.access(shm, os.W_OK) else []
    return folders + [Path(tempfile.gettempdir())]


def ring_name() -> str:
    """A new, unused ring file name. The Ray driver picks it, so it can delete the file
    (:func:`remove_ring`) even if the ingest actor dies."""
    return f"odistill-ring-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def ring_path(name: str, size: int) -> Path:
    """The file for a ring of ``size`` bytes: in the first of :func:`ring_folders` with room for
    it and a margin (a container's ``/dev/shm`` is often only 64 MB)."""
    folders = ring_folders()
    for folder in folders:
        stats = os.statvfs(folder)
        if stats.f_bavail * stats.f_frsize >= size + max(size // 4, 64 << 20):
            return folder / name
    return folders[-1] / name


def remove_ring(name: str) -> None:
    """Delete the ring file ``name`` wherever it was made (nothing if there is none)."""
    for folder in ring_folders():
        (folder / name).unlink(missing_ok=True)


class FrameRing:
    """A ring of ``slots`` image slots of ``slot_bytes`` each in one shared file.

    Use :meth:`create` (the writer, which owns and finally deletes the file) and
    :meth:`attach` (readers). One thread writes (``claim``); any process reads (``view``);
    one consumer releases, in sequence order (``release``).
    """

    def __init__(self, path: Path, owner: bool) -> None:
        self.path = path
        self.owner = owner
        try:
            with open(path, "r+b") as handle:
                self._map = mmap.mmap(handle.fileno(), 0)
        except (OSError, ValueError) as error:  # ValueError: an empty file
            raise RingError(f"frame ring {path}: cannot map it ({error})") from None
        if len(self._map) < HEADER_BYTES:
            self._map.close()
            raise RingError(f"frame ring {path}: {len(self._map)} bytes, smaller than its header")
        if int(np.frombuffer(self._map, np.int64, 8)[_MAGIC]) != MAGIC:
            self._map.close()
            raise RingError(f"frame ring {path}: not a frame ring (bad magic number)")
        self.header = np.frombuffer(self._map, np.int64, 8)  # (8,) shared counters
        self.slots = int(self.header[_SLOTS])
        self.slot_bytes = int(self.header[_SLOT_BYTES])
        self.data = np.frombuffer(self._map, np.uint8, self.slots * self.slot_bytes, HEADER_BYTES)  # (slots * slot_bytes,)
        self.stop = threading.Event()  # set by close(): a waiting claim gives up

    @classmethod
    def create(cls, slots: int, slot_bytes: int, path: str | Path | None = None, name: str | None = None) -> "FrameRing":
        """A new ring in the file ``path``, or else one called ``name`` (default: a fresh
        :func:`ring_name`) in the first :func:`ring_folders` with room. Its memory is reserved
        now, so a full ``/dev/shm`` fails here, with an error, not later in a write."""
        if slots < 1 or slot_bytes < 1:
            raise RingError(f"frame ring: slots and slot_bytes must be >= 1, got {slots} and {slot_bytes}")
        size = HEADER_BYTES + slots * slot_bytes
        path = Path(path) if path is not None else ring_path(name or ring_name(), size)
        try:
            with open(path, "xb") as handle:
                try:
                    if hasattr(os, "posix_fallocate"):
                        os.posix_fallocate(handle.fileno(), 0, size)
                    else:  # no way to reserve the memory here: size the file only
                        handle.truncate(size)
                except OSError:
                    path.unlink(missing_ok=True)
                    raise
                header = np.zeros(8, np.int64)
                header[_SLOTS], header[_SLOT_BYTES], header[_MAGIC] = slots, slot_bytes, MAGIC
                handle.write(header.tobytes())
        except OSError as error:
            raise RingError(f"frame ring {path}: cannot create it ({size} bytes; {error})") from None
        return cls(path, owner=True)

    @classmethod
    def attach(cls, name: str) -> "FrameRing":
        """Map the ring called ``name`` (its file path) for reading and releasing."""
        path = Path(name)
        if not path.is_file():
            raise RingError(f"frame ring {name}: no such ring (its writer closed it, or it lives on another machine)")
        return cls(path, owner=False)

    @property
    def name(self) -> str:
        """What readers pass to :meth:`attach`."""
        return str(self.path)

    @property
    def written(self) -> int:
        return int(self.header[_WRITTEN])

    @property
    def released(self) -> int:
        return int(self.header[_RELEASED])

    def pending(self) -> int:
        """Slots claimed and not released yet."""
        return self.written - self.released

    def claim(self, height: int, width: int, timeout: float | None = None) -> tuple[int, np.ndarray] | None:
        """The next slot as a writable (height, width, 3) uint8 view, with its sequence number;
        waits while every slot is still in use. None when the image does not fit a slot.

        Raises :class:`RingError` when ``timeout`` seconds pass, or the ring is closed, first.
        """
        size = height * width * 3
        if size > self.slot_bytes:
            return None
        seq = self.written
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.0001
        while seq - self.released >= self.slots:
            if self.stop.is_set() or int(self.header[_CLOSED]):
                raise RingError(f"frame ring {self.path}: closed while waiting for a free slot")
            if deadline is not None and time.monotonic() > deadline:
                raise RingError(f"frame ring {self.path}: no slot released within {timeout} s "
                                f"({self.slots} slots, {self.pending()} in use)")
            time.sleep(pause)
            pause = min(pause * 2, 0.005)
        start = (seq % self.slots) * self.slot_bytes
        out = self.data[start:start + size].reshape(height, width, 3)  # (H, W, 3) uint8
        self.header[_WRITTEN] = seq + 1
        return seq, out

    def view(self, seq: int, height: int, width: int) -> np.ndarray:
        """The image of slot ``seq`` as a read-only (height, width, 3) uint8 view (no copy)."""
        if seq < self.released:
            raise RingError(f"frame ring {self.path}: slot {seq} was released already (released up to {self.released})")
        if seq >= self.written:
            raise RingError(f"frame ring {self.path}: slot {seq} was never written (written up to {self.written})")
        size = height * width * 3
        if size > self.slot_bytes:
            raise RingError(f"frame ring {self.path}: a {height}x{width} image does not fit a {self.slot_bytes}-byte slot")
        start = (seq % self.slots) * self.slot_bytes
        out = self.data[start:start + size].reshape(height, width, 3)  # (H, W, 3) uint8
        out.setflags(write=False)
        return out

    def release(self, seq: int) -> None:
        """Give back every slot before sequence number ``seq`` (never moves backwards)."""
        if seq > self.released:
            self.header[_RELEASED] = min(seq, self.written)

    def close(self) -> None:
        """Unmap; the writer also deletes the file (readers that still map it keep their copy)."""
        self.stop.set()
        if self.owner:
            self.header[_CLOSED] = 1
        self.header = np.zeros(8, np.int64)  # drop the views before the map closes
        self.data = np.zeros(0, np.uint8)
        try:
            self._map.close()
        except BufferError:  # a view still points into the map: leave it to the garbage collector
            pass
        if self.owner:
            self.path.unlink(missing_ok=True)


class RingReaders:
    """The rings this process has mapped, by name (a reader maps each ring once)."""

    def __init__(self) -> None:
        self.rings: dict[str, FrameRing] = {}

    def get(self, name: str) -> FrameRing:
        ring = self.rings.get(name)
        if ring is None:
            ring = self.rings[name] = FrameRing.attach(name)
        return ring

    def close(self) -> None:
        for ring in self.rings.values():
            ring.close()
        self.rings.clear()


@dataclass(frozen=True)
class RingFrame:
    """An :class:`~learners.records.Observation` whose image waits in a ring slot.

    ``image`` is set instead of ``ring``/``seq`` when the image did not fit a slot.

    Example:
        >>> ring = FrameRing.create(slots=1, slot_bytes=12)
        >>> frame = Frame(np.full((2, 2, 3), 9, np.uint8), timestamp=0.5, source_id="demo", index=3)
        >>> record = RingFrame.put(frame.observation(), ring)
        >>> record.seq, record.image is None
        (0, True)
        >>> back = record.resolve(RingReaders())
        >>> back.index, back.timestamp, int(back.image.max())
        (3, 0.5, 9)
        >>> ring.close()
    """

    source_id: str
    index: int
    timestamp: float
    height: int
    width: int
    ring: str | None = None
    seq: int = -1
    image: np.ndarray | None = None  # (H, W, 3) uint8 when not in the ring

    @classmethod
    def put(cls, observation: Observation, ring: FrameRing, seq: int | None = None) -> "RingFrame":
        """The record of ``observation``. ``seq`` names the slot that already holds its image
        (the source decoded into it); otherwise the image is copied into a new slot, or, too
        large for one, kept in the record."""
        height, width = observation.shape
        image = None
        if seq is None:
            claimed = ring.claim(height, width)
            if claimed is None:
                image, seq = observation.image, -1
            else:
                seq, out = claimed
                np.copyto(out, observation.image)
        return cls(observation.source_id, observation.index, observation.timestamp, height, width,
                   ring=ring.name if image is None else None, seq=seq, image=image)

    def resolve(self, readers: RingReaders) -> Observation:
        """The observation, its image a read-only view of the slot (no copy)."""
        image = self.image if self.ring is None else readers.get(self.ring).view(self.seq, self.height, self.width)
        return Observation(image, self.index, self.timestamp, self.source_id)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width


def as_observation(item: Observation | RingFrame, readers: RingReaders) -> Observation:
    """A pack's entry as an :class:`~learners.records.Observation`: a RingFrame resolved to its
    slot, an Observation as it is."""
    return item.resolve(readers) if isinstance(item, RingFrame) else item
