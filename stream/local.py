"""The in-process runner: every part of a run in this process, called in order.

:class:`LocalPlacement` is the :class:`~stream.driver.Placement` that keeps the parts here; a
call runs at once and its future is its value. It is the debugging and unit-test path, and it
gives the same metrics as the Ray runner for the same seed and config.

Example:
    >>> from perception.evaluator import EvaluatorConfig
    >>> placement = LocalPlacement()
    >>> placement.parts["evaluator"] = FrameEvaluator(EvaluatorConfig())
    >>> placement.get(placement.call("evaluator", "summary"))["frames"]
    0
"""
from __future__ import annotations

import logging
from typing import Any

from stream.config import RunConfig
from stream.driver import PARTS, Driver
from stream.evaluation import FrameEvaluator
from stream.ingest import Ingest
from stream.machine import peak_rss_mb
from stream.parts import LearnerPart, PartTeacherClient, TeacherPart
from stream.sources.base import Source

log = logging.getLogger(__name__)


class LocalPlacement:
    """Every part in this process (see :class:`~stream.driver.Placement`).

    ``source`` and ``teacher``, when given, are used instead of the ones ``run.source`` and
    ``teacher.spec`` name (e.g. several logs with their own options, or a teacher with a
    non-default inference size); the run takes ownership of ``source`` and closes it.

    Torch runs on ``run.inference_threads()`` threads during the run (restored afterwards),
    except the learner's gradient steps: the same split as under Ray, so both runners give
    the same metrics.
    """

    name = "local"
    transport = "direct"

    def __init__(self, source: Source | None = None, teacher: Any = None) -> None:
        self.source = source
        self.teacher = teacher
        self.parts: dict[str, Any] = {}
        self.threads: int | None = None

    def start(self, config: RunConfig, checkpoint_dir: str) -> None:
        import torch

        self.threads = torch.get_num_threads()
        ingest = Ingest(config, source=self.source)
        self.parts["ingest"] = ingest
        teacher = self.parts["teacher"] = TeacherPart(config, teacher=self.teacher)
        self.parts["learner"] = LearnerPart(config, PartTeacherClient(teacher), checkpoint_dir)
        self.parts["evaluator"] = FrameEvaluator(config.evaluator, config.run.label_map, config.run.source)

    def call(self, part: str, method: str, *args: Any, returns: int = 1, control: bool = False) -> Any:
        """Runs the call now; its future is its value (a tuple of ``returns`` values)."""
        value = getattr(self.parts[part], method)(*args)
        if returns > 1 and (not isinstance(value, tuple) or len(value) != returns):
            raise TypeError(f"{part}.{method} returned {type(value).__name__}, expected {returns} values")
        return value

    def get(self, future: Any, timeout: float | None = None) -> Any:
        return future

    def restarted_learner(self) -> int:
        raise RuntimeError("the in-process runner cannot restart its learner")

    def crash(self, part: str) -> None:
        raise RuntimeError("the in-process runner cannot crash a part: it would crash the run")

    def peak_rss_mb(self) -> dict[str, float]:
        return {"driver": peak_rss_mb()}

    def nodes(self) -> dict[str, str]:
        return {part: "local" for part in PARTS}

    def stop(self) -> None:
        ingest = self.parts.pop("ingest", None)
        if ingest is not None:
            ingest.close()
        elif self.source is not None:
            self.source.close()
        self.parts.clear()
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
            self.threads = None


def run_local(config: RunConfig, progress: bool = True, source: Source | None = None, teacher: Any = None) -> dict[str, Any]:
    """Run the whole pipeline in this process; returns the summary (also in the run folder).

    ``source`` and ``teacher``: see :class:`LocalPlacement`.
    """
    return Driver(config, LocalPlacement(source=source, teacher=teacher), progress=progress).run()
