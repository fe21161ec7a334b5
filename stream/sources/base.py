"""The :class:`Source` protocol every camera stream implements, and its error type."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol, runtime_checkable

import numpy as np

from stream.frame import Frame


class SourceError(ValueError):
    """A source cannot be opened or read; the message names the input and what is wrong."""


@runtime_checkable
class Source(Protocol):
    """A finite or endless stream of :class:`~stream.frame.Frame`.

    Contract:
        - ``source_id``: a short name put into every frame.
        - iterating yields frames with increasing ``index``; a source may be iterated once.
        - ``events``: a list of plain dicts the source appends to when something happens
          that the run should record (a corrupt frame skipped, a frame dropped, ...); each has
          at least ``"kind"`` and ``"index"``.
        - ``stats()``: small plain counters, at least ``frames_read`` and ``frames_skipped``.
        - ``true_shifts``: frame indices where the domain truly changes (the simulator knows;
          a recorded log returns an empty list).
        - ``close()`` releases files and handles; safe to call twice.
    """

    source_id: str
    events: list[dict[str, Any]]

    def __iter__(self) -> Iterator[Frame]: ...

    def stats(self) -> dict[str, int]: ...

    @property
    def true_shifts(self) -> list[int]: ...

    def close(self) -> None: ...


class IterateOnce:
    """The iterate-once guard the log sources share: ``__iter__`` hands out the subclass's
    ``_frames()`` generator one time, and refuses a closed source. Subclasses set
    ``source_id``, ``_started = False`` and ``_closed = False`` in their constructor."""

    source_id: str
    _started: bool
    _closed: bool
    image_sink: Callable[[int, int], np.ndarray | None] | None = None

    def decode_into(self, sink: Callable[[int, int], np.ndarray | None] | None) -> None:
        """Write each frame's RGB image into the writable (H, W, 3) uint8 array that
        ``sink(height, width)`` hands out (None from it: a fresh array, as without a sink).
        The Ray ingest actor passes a frame ring's ``claim`` so decoded pixels land in shared
        memory with no extra copy. Wrappers forward the sink to the sources they wrap."""
        self.image_sink = sink
        for inner in self._inner_sources():
            forward = getattr(inner, "decode_into", None)
            if forward is not None:
                forward(sink)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]

    def __del__(self) -> None:
        try:
            self.close()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def _inner_sources(self) -> list[Any]:
        """The sources this one wraps (none for a log; its logs for a multi-log source)."""
        return []

    def __iter__(self) -> Iterator[Frame]:
        # "once" first: a log that closed itself at its end was iterated, not closed by hand
        if self._started:
            raise SourceError(f"{self.source_id}: a source can be iterated only once")
        if self._closed:
            raise SourceError(f"{self.source_id}: the source is closed")
        self._started = True
        return self._frames()

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError
