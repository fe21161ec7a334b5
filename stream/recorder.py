"""The run folder: resolved config, metrics.jsonl, events.jsonl, summary.json, report.png.

Example:
    >>> import tempfile, json
    >>> out = tempfile.mkdtemp()
    >>> rec = RunRecorder(out, config_json='{"run": {}}')
    >>> rec.event({"kind": "drift", "index": 5}); rec.event({"kind": "drift", "index": 5})
    >>> rec.close(); len(open(f"{out}/events.jsonl").read().splitlines())
    1
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class OutputError(OSError):
    """The run folder cannot be created or written."""


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value


class RunRecorder:
    """Writes the run folder as the run goes (line-buffered JSONL, so a crash keeps what was done)."""

    def __init__(self, out_dir: str | Path, config_json: str):
        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise OutputError(f"output folder {self.out_dir} is not writable ({error.strerror or error})") from None
        # A run starts at frame 0: the checkpoints of an earlier run in this folder are not its
        # own (a learner restarted within this run restores from the ones this run writes).
        stale = sorted(self.checkpoint_dir.glob("learner_*.safetensors"))
        for old in stale:
            old.unlink()
        if stale:
            log.info("removed %d checkpoint(s) of an earlier run from %s", len(stale), self.checkpoint_dir)
        (self.out_dir / "config.json").write_text(config_json)
        self.metrics_file = open(self.out_dir / "metrics.jsonl", "w", buffering=1)
        self.events_file = open(self.out_dir / "events.jsonl", "w", buffering=1)
        self.metrics: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._seen_events: set[tuple[str, int, str]] = set()

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def event(self, event: dict[str, Any]) -> None:
        """Record one event; a repeat of the same (kind, index, detail) is ignored (actor replays)."""
        key = (str(event.get("kind")), int(event.get("index", -1)), str(event.get("detector", event.get("reason", ""))))
        if key in self._seen_events:
            return
        self._seen_events.add(key)
        event = _json_safe(event)
        self.events.append(event)
        self.events_file.write(json.dumps(event) + "\n")

    def metric(self, row: dict[str, Any]) -> None:
        row = _json_safe(row)
        self.metrics.append(row)
        self.metrics_file.write(json.dumps(row) + "\n")

    def write_summary(self, summary: dict[str, Any]) -> Path:
        path = self.out_dir / "summary.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_json_safe(summary), indent=2, sort_keys=True))
        os.replace(tmp, path)
        return path

    def close(self) -> None:
        for handle in (self.metrics_file, self.events_file):
            if not handle.closed:
                handle.close()
