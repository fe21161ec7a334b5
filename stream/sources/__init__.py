"""Camera sources behind one protocol, chosen by a spec string (``--source``).

``sim:SCHEDULE`` — the built-in simulator (``sim:tour`` by default).
"""
from __future__ import annotations

from typing import Any, Callable

from stream.sources.base import Source, SourceError

__all__ = ["Source", "SourceError", "open_source", "SOURCE_KINDS"]


def _sim(arg: str, config: Any) -> Source:
    from stream.sources.sim import SimSource

    return SimSource(config.sim, seed=config.run.seed, frames=config.run.frames, schedule=arg or "tour")


SOURCE_KINDS: dict[str, Callable[[str, Any], Source]] = {"sim": _sim}


def open_source(spec: str, config: Any) -> Source:
    """Open the source a spec names; ``config`` is the :class:`~stream.config.RunConfig`."""
    kind, _, arg = spec.partition(":")
    if kind not in SOURCE_KINDS:
        raise SourceError(f"unknown source {spec!r} (kinds: {', '.join(k + ':...' for k in sorted(SOURCE_KINDS))})")
    return SOURCE_KINDS[kind](arg, config)
