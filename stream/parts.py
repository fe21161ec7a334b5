"""The learner and teacher parts of a run: plain classes that the driver calls in this process,
or that :mod:`stream.actors` wraps with ``ray.remote``.

Both address a frame as (pack, slot): the pack is what :meth:`stream.ingest.Ingest.read` gave
back (observations, or frame-ring records). Under Ray the learner receives the pack's
reference unresolved and hands it on to the teacher with the slot, so the pixels are never
copied between them; how a reference is resolved (``resolve``) and how the teacher is reached
(``teacher_client``) are handed in by whoever places the part.

This module imports torch only inside the constructors, like the builders it calls.

Example:
    >>> import numpy as np
    >>> from learners.records import Observation
    >>> from learners.stream_learner import LocalTeacherClient
    >>> from stream.config import load_config
    >>> config = load_config(None, ["sim.width=64", "sim.height=32"])
    >>> teacher = TeacherPart(config)
    >>> pack = [Observation(np.zeros((32, 64, 3), np.uint8), 0, 0.0, "cam")]
    >>> learner = LearnerPart(config, LocalTeacherClient(teacher.teacher))
    >>> results, outputs = learner.step([pack], [0])
    >>> results[0].index, results[0].asked_teacher
    (0, True)
    >>> outputs, learner.flush()[1][0].student.shape
    ([], (32, 64))
"""
from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from learners.records import LearnerOutput, Observation, StepResult
from perception.teacher import TeacherOutput
from stream.config import RunConfig
from stream.framering import RingFrame, RingReaders, as_observation
from stream.machine import peak_rss_mb

if TYPE_CHECKING:
    from learners.stream_learner import TeacherClient

log = logging.getLogger(__name__)


def _identity(pack: Any) -> Any:
    return pack


def _same_pack(a: Any, b: Any) -> bool:
    """Whether two pack handles name the same pack: the same list in-process, equal
    references under Ray (each call brings its own copy of the reference)."""
    return a is b or (not isinstance(a, list) and not isinstance(b, list) and a == b)


def _inference_threads(config: RunConfig) -> None:
    """Torch threads of this process: ``run.inference_threads()`` (one by default; several
    torch processes with a thread per core each stall one another on a small machine). The
    learner's gradient steps take ``run.train_threads()`` (see ``build_learner``)."""
    import torch

    torch.set_num_threads(config.run.inference_threads())


class PartTeacherClient:
    """The learner's way to a :class:`TeacherPart` in the same process: each frame is labelled
    when it is submitted, as the teacher actor does under Ray, so that the student syncs
    reach the views in the same order in both runners."""

    def __init__(self, teacher: "TeacherPart") -> None:
        self.teacher = teacher

    def submit(self, observation: Observation, handle: Any) -> TeacherOutput:
        return self.teacher.label_frame(observation)

    def result(self, ticket: TeacherOutput) -> TeacherOutput:
        return ticket

    def sync_student(self, state: dict[str, Any]) -> None:
        self.teacher.sync_student(state)


class TeacherPart:
    """The teacher of a run (on the GPU when there is one); stateless, so safe to retry.

    ``teacher``: a teacher object to use instead of the one ``teacher.spec`` names.
    """

    def __init__(self, config: RunConfig, teacher: Any = None) -> None:
        from stream.builders import ask_teacher_features, build_teacher, build_view_maker  # torch: teacher and learner parts only

        _inference_threads(config)
        self.teacher = build_teacher(config) if teacher is None else teacher
        ask_teacher_features(config, self.teacher)  # distill.feature_weight > 0: ship features (or say it cannot)
        self.rings = RingReaders()
        self.views = build_view_maker(config, self.teacher)  # None unless adversarial.enabled

    def label(self, pack: list[Any], slot: int) -> TeacherOutput:
        """Labels frame ``slot`` of a pack (with its views, when it gets some)."""
        return self.label_frame(as_observation(pack[slot], self.rings))

    def label_frame(self, observation: Observation) -> TeacherOutput:
        """Labels one observation; makes its robustness views when ``adversarial`` asks for them."""
        out = self.teacher.label(observation.image[None])
        if self.views is None or not self.views.wants(observation.index):
            return out
        views = self.views.make(observation.image, out.labels[0], observation.index)
        return TeacherOutput(out.labels, out.logits, views=views, depth=out.depth, features=out.features)

    def sync_student(self, state: dict[str, Any]) -> int:
        """The learner's current student weights, for the views' student copy; returns the bytes."""
        return self.views.sync(state) if self.views is not None else 0

    def describe(self, height: int, width: int) -> dict[str, Any]:
        return {"params": int(self.teacher.params), "macs": int(self.teacher.macs(height, width)),
                "name": self.teacher.name, "device": self.teacher.device,
                "views": self.views.stats() if self.views is not None else None}

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()


class LearnerPart:
    """The :class:`~learners.stream_learner.StreamLearner` of a run, stepping through packs.

    Args:
        config: the run's configuration.
        teacher_client: how the learner reaches the teacher part.
        checkpoint_dir: where the learner checkpoints (and restores from, when it restarts).
        resolve: turns the pack handed to :meth:`step` into its list of entries (the identity
            in-process; ``ray.get`` under Ray, where the learner gets the pack's reference).
    """

    def __init__(self, config: RunConfig, teacher_client: "TeacherClient", checkpoint_dir: str | Path | None = None,
                 resolve: Callable[[Any], list[Any]] | None = None) -> None:
        from stream.builders import build_learner  # torch: only the teacher and learner parts load it

        _inference_threads(config)
        self.learner = build_learner(config, teacher_client, checkpoint_dir)
        self.resolve = resolve or _identity
        self.keep_predictions = config.run.closed_loop  # the driver steers the ego by each step's prediction
        self.rings = RingReaders()
        self.pack_handle: Any = None
        self.pack: list[Any] = []
        self.held: deque[tuple[int, str, int]] = deque()  # (frame index, ring, seq) of ring frames not released

    def _entry(self, handle: Any, slot: int) -> Any:
        if self.pack_handle is None or not _same_pack(handle, self.pack_handle):
            self.pack, self.pack_handle = self.resolve(handle), handle
        return self.pack[slot]

    def step(self, packs: list[Any], slots: list[int]) -> tuple[list[StepResult], list[LearnerOutput]]:
        """Frames ``slots`` of the pack in ``packs`` (a one-item list, so that Ray passes a
        reference unresolved), in order: one call per pack keeps a remote call's cost off the
        per-frame path. Returns each frame's step result and the outputs finalised meanwhile."""
        handle = packs[0]
        results, outputs = [], []
        for slot in slots:
            item = self._entry(handle, slot)
            if isinstance(item, RingFrame) and item.ring is not None:
                self.held.append((item.index, item.ring, item.seq))
            observation: Observation = as_observation(item, self.rings)
            result = self.learner.step(observation, handle=(handle, slot))
            outputs.extend(result.outputs)
            result.outputs = []
            if not self.keep_predictions:
                result.prediction = None
            results.append(result)
        self._release()
        return results, outputs

    def _release(self) -> None:
        """Give the ring slots of finished frames back to the ingest part, in order. A frame is
        finished once its teacher answer (if it asked) was applied; the replay buffer keeps
        copies."""
        oldest = self.learner.oldest_unfinished
        ring, seq = None, None
        while self.held and self.held[0][0] < oldest:
            _, ring, seq = self.held.popleft()
        if ring is not None and seq is not None:
            self.rings.get(ring).release(seq + 1)

    def flush(self) -> tuple[StepResult, list[LearnerOutput]]:
        """Apply every pending teacher answer (end of stream)."""
        result = self.learner.flush()
        self._release()
        outputs, result.outputs = result.outputs, []
        return result, outputs

    def position(self) -> int:
        """The frame index the learner expects next (after a restart: its checkpoint's)."""
        return self.learner.next_index

    def describe(self, height: int, width: int) -> dict[str, Any]:
        from perception.nets import count_macs, count_params

        model = self.learner.learner.model
        return {"params": count_params(model), "macs": count_macs(model, height, width), **self.learner.robust_stats()}

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()
