"""Publishing candidates during a run: the learner's checkpoints, exported, into a registry.

``publish.every = N`` publishes the checkpoint at every N-th frame; ``publish.after_drift = M``
publishes the first checkpoint at least M frames after a drift event (the student has had time
to recover in the new domain). Each candidate is exported with parity checks
(:func:`stream.export.export_from_checkpoint`) into ``RUN/candidates/frame-N`` and added to the
registry as a *candidate* with the reason; the promotion gate (:mod:`stream.gate`) decides later.
A failed publication is logged and recorded as an event; the run goes on.

Example:
    >>> from stream.config import PublishConfig
    >>> publisher = Publisher(PublishConfig(registry="reg", every=1200, after_drift=300))
    >>> publisher.reason({"kind": "checkpoint", "index": 599}), publisher.reason({"kind": "checkpoint", "index": 1199})
    (None, 'every 1200 frames (frame 1200)')
    >>> publisher.observe({"kind": "drift", "index": 1250}); publisher.reason({"kind": "checkpoint", "index": 1799})
    'recovered from the drift at frame 1250 (frame 1800)'
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Publisher:
    """Decides which checkpoints become candidates, and publishes them (module docstring)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.drift_at: int | None = None  # the last drift not yet answered by a publication
        self.published: set[int] = set()

    def observe(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "drift":
            self.drift_at = int(event["index"])

    def reason(self, event: dict[str, Any]) -> str | None:
        """Why the checkpoint ``event`` is to be published, or None."""
        frames = int(event["index"]) + 1
        if frames in self.published:
            return None  # the same checkpoint again, after a learner restart
        every = self.config.every
        if every and frames % every == 0:
            return f"every {every} frames (frame {frames})"
        after = self.config.after_drift
        if after and self.drift_at is not None and frames - 1 - self.drift_at >= after:
            return f"recovered from the drift at frame {self.drift_at} (frame {frames})"
        return None

    def on_event(self, event: dict[str, Any], run_config: Any, out_dir: str | Path) -> dict[str, Any] | None:
        """Publish the checkpoint of ``event`` when it is due; the event to record, or None."""
        self.observe(event)
        if event.get("kind") != "checkpoint" or not self.config.registry:
            return None
        reason = self.reason(event)
        if reason is None:
            return None
        frames = int(event["index"]) + 1
        self.published.add(frames)
        self.drift_at = None
        try:
            from stream.export import export_from_checkpoint
            from stream.registry import Registry

            folder = export_from_checkpoint(run_config, event["path"], Path(out_dir) / "candidates" / f"frame-{frames}")
            info = Registry(self.config.registry).add_bundle(folder, reason=f"published by the run: {reason}")
        except Exception as error:  # a registry or export problem must not stop the car's learning
            log.error("publishing the checkpoint of frame %d failed: %s", frames, error)
            return {"kind": "publish_failed", "index": frames - 1, "reason": f"{type(error).__name__}: {error}"}
        log.info("published frame %d's student as candidate v%d: %s", frames, info.version, reason)
        return {"kind": "published", "index": frames - 1, "version": info.version, "reason": reason}
