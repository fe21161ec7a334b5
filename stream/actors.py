"""The Ray runner: ingest, teacher, learner and evaluator actors (the only module importing ray
besides the CLI).

Each actor wraps the same plain class the in-process runner uses. Frames travel in packs: each
``IngestActor.read`` puts the frames it decoded into the object store once, as one object (one
ObjectRef per pack, not per frame: Ray's per-object cost, not the copy, limits a per-frame
put to about the bare decode rate of a 960x540 video). The driver addresses a frame as
(pack ref, slot); the learner and the teacher both read it from the pack by reference,
without a copy, and the learner steps through a whole pack in one call. The driver keeps at most ``run.max_in_flight`` frames between
ingest and learner (backpressure with ``ray.wait``-style bounded queues). The learner actor
restarts after a crash (``max_restarts``) and restores its last checkpoint in its constructor;
the driver then re-sends the frames since that checkpoint, and the evaluator and the recorder
skip what they already counted.
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import resource
import threading
import time
from collections import deque
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

LEARNER_GONE = (RayActorError, ActorUnavailableError)  # died, or restarting after a death

from learners.stream_learner import StepResult
from perception.teacher import TeacherOutput
from stream.config import RunConfig
from stream.frame import Frame
from stream.pipeline import (
    FrameEvaluator,
    RunSession,
    build_learner,
    build_source,
    build_teacher,
    peak_rss_mb,
    progress_bar,
)
from stream.recorder import RunRecorder

log = logging.getLogger(__name__)


FrameSlot = tuple[ray.ObjectRef, int, int, str, tuple[int, int]]
"""How the driver holds a frame: (pack ref, slot in the pack, frame index, domain, (H, W))."""


class PackReader:
    """Resolves (pack ref, slot) to a frame, keeping the last pack (frames arrive in order).

    Example:
        >>> reader = PackReader(lambda ref: ["frame a", "frame b"])
        >>> reader.frame("ref", 1), reader.frame("ref", 0)
        ('frame b', 'frame a')
    """

    def __init__(self, get: Any = None) -> None:
        self.get = get or ray.get
        self.ref: Any = None
        self.frames: list[Frame] = []

    def frame(self, ref: Any, slot: int) -> Frame:
        if self.ref is None or ref != self.ref:
            self.frames, self.ref = self.get(ref), ref
        return self.frames[slot]


def _threads(config: RunConfig) -> None:
    """Torch threads of this actor: ``run.torch_threads``, or one when it is 0 (several torch
    processes with a thread per core each stall one another on a small machine)."""
    import torch

    torch.set_num_threads(config.run.torch_threads if config.run.torch_threads > 0 else 1)


def learner_train_threads(config: RunConfig) -> int:
    """Torch threads of the learner actor's gradient steps: ``run.torch_threads``, or every core
    when it is 0. Training is the pipeline's critical path and its batches split well over
    threads; the learner's per-frame prediction (batch 1, small kernels) stays on one thread,
    where a second one only waits on the other actors sharing the cores.

    Example:
        >>> from stream.config import load_config
        >>> learner_train_threads(load_config(None, ["run.torch_threads=3"]))
        3
    """
    return config.run.torch_threads if config.run.torch_threads > 0 else max(1, os.cpu_count() or 1)


def ensure_ray(num_cpus: int | None = None) -> None:
    """Start a local Ray instance unless one is running (tests share one per session)."""
    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=True, configure_logging=False)


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


@ray.remote(num_cpus=0)
class IngestActor:
    """Reads the source and puts the frames of each ``read`` into the object store once, as one
    pack (a list of :class:`Frame`); returns one :data:`FrameSlot` per frame.

    ``prefetch`` > 0 decodes up to that many frames ahead in a background thread started by
    the first ``read`` (:class:`PrefetchIterator`), overlapping decoding with ``ray.put``;
    0 (the default) decodes in ``read``.
    """

    def __init__(self, config: RunConfig, prefetch: int = 0):
        if prefetch < 0:
            raise ValueError(f"IngestActor: prefetch must be >= 0, got {prefetch}")
        self.config = config
        self.source = build_source(config)
        self.prefetch = prefetch
        self.prefetcher: PrefetchIterator | None = None
        self.iterator: Any = None
        self.done = False

    def read(self, count: int) -> list[FrameSlot]:
        """Up to ``count`` frames, packed in one object; an empty list at the end of the stream."""
        if self.iterator is None:
            if self.prefetch > 0:
                self.prefetcher = PrefetchIterator(iter(self.source), self.prefetch)
            self.iterator = self.prefetcher or iter(self.source)
        frames: list[Frame] = []
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
        if not frames:
            return []
        pack = ray.put(frames)
        return [(pack, slot, frame.index, frame.domain, frame.shape) for slot, frame in enumerate(frames)]

    def stats(self) -> dict[str, int]:
        return self.source.stats()

    def events(self) -> list[dict[str, Any]]:
        return list(self.source.events)

    def true_shifts(self) -> list[int]:
        return list(self.source.true_shifts)

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.stop()
        self.source.close()

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()


@ray.remote(num_cpus=0)
class TeacherActor:
    """Labels frames (on the GPU when one is present); stateless, so safe to retry."""

    def __init__(self, config: RunConfig):
        _threads(config)
        self.teacher = build_teacher(config)

    def label(self, pack: list[Frame], slot: int) -> TeacherOutput:
        """Labels frame ``slot`` of a pack (Ray resolves the pack ref to the shared frames)."""
        return self.teacher.label(pack[slot].image[None])

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


@ray.remote(num_cpus=0, max_restarts=1, max_task_retries=0)
class LearnerActor:
    """The :class:`~learners.stream_learner.StreamLearner` in its own process."""

    def __init__(self, config: RunConfig, teacher: Any, checkpoint_dir: str):
        _threads(config)
        self.learner = build_learner(config, RayTeacherClient(teacher), checkpoint_dir)
        self.learner.learner.train_threads = learner_train_threads(config)
        self.packs = PackReader()

    def step(self, wrapped: list[ray.ObjectRef], slots: list[int]) -> tuple[list[StepResult], list]:
        """Frames ``slots`` of the pack in ``wrapped`` (a list, so Ray passes the ref unresolved),
        in order: one call per pack keeps Ray's per-call cost off the per-frame path."""
        results, records = [], []
        for slot in slots:
            frame = self.packs.frame(wrapped[0], slot)
            result = self.learner.step(frame, handle=(wrapped[0], slot))
            records.extend(result.records)
            result.records = []
            results.append(result)
        return results, records

    def flush(self) -> tuple[StepResult, list]:
        result = self.learner.flush()
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


@ray.remote(num_cpus=0)
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


def run_ray(config: RunConfig, progress: bool = True, crash_learner_at: int | None = None) -> dict[str, Any]:
    """Run the pipeline on Ray actors; same semantics and outputs as :func:`stream.pipeline.run_local`.

    ``crash_learner_at`` kills the learner's process once that frame was sent (for tests).
    """
    started = time.perf_counter()
    recorder = RunRecorder(config.run.out, config.to_json())
    ensure_ray()
    session = RunSession(config, recorder, started=started)
    teacher = TeacherActor.remote(config)
    learner = LearnerActor.remote(config, teacher, str(recorder.checkpoint_dir))
    evaluator = EvaluatorActor.remote(config)
    ingest = IngestActor.remote(config)
    actors = [ingest, teacher, learner, evaluator]
    window = max(1, config.run.max_in_flight)
    pack_size = max(1, window // 2)  # two packs in flight: the learner works on one, the next waits
    sent: dict[int, tuple[ray.ObjectRef, int]] = {}  # frames since the last checkpoint, for a learner restart
    in_flight: deque[tuple[list[int], Any, Any]] = deque()  # (frame indices, results ref, windows ref) per call
    asked: set[int] = set()
    shape: tuple[int, int] | None = None
    bar = progress_bar(config.run.frames, progress)
    pending_packs: deque[list[FrameSlot]] = deque()
    next_read = ingest.read.remote(pack_size)

    def fits() -> bool:
        """Whether the next pack can go to the learner without passing ``window`` frames in flight."""
        if not pending_packs:
            return False
        in_learner = sum(len(indices) for indices, _, _ in in_flight)
        return in_learner + len(pending_packs[0]) <= max(window, pack_size)

    def handle(results: list[StepResult], windows_ref: Any) -> None:
        for result in results:
            if result.asked_teacher:
                asked.add(result.index)
            session.on_step(result)
            for event in result.events:
                if event.get("kind") == "checkpoint":
                    for index in [i for i in sent if i <= event["index"]]:
                        del sent[index]
        session.on_windows(ray.get(windows_ref))

    def submit(pack_ref: ray.ObjectRef, indices: list[int]) -> None:
        slots = [sent[index][1] for index in indices]
        results_ref, records_ref = learner.step.options(num_returns=2).remote([pack_ref], slots)
        in_flight.append((indices, results_ref, evaluator.update.remote(records_ref)))

    def finish_oldest() -> None:
        """Count the oldest learner call's results (raises ``LEARNER_GONE`` if the learner died first)."""
        _, results_ref, windows_ref = in_flight[0]
        results = ray.get(results_ref)
        in_flight.popleft()
        handle(results, windows_ref)
        bar.update(len(results))

    def drain_one() -> None:
        try:
            finish_oldest()
        except LEARNER_GONE:
            recover()

    def recover() -> None:
        """The learner died: wait for its restart, then re-send what its checkpoint lacks."""
        log.warning("learner actor died; restarting from its last checkpoint")
        while in_flight:  # results that were done before the crash still count
            try:
                finish_oldest()
            except LEARNER_GONE:
                break
        recorder.event({"kind": "actor_restart", "index": session.frames, "detector": "learner"})
        in_flight.clear()
        deadline = time.monotonic() + 120
        while True:  # the restarted actor answers once its constructor restored the checkpoint
            try:
                resume = ray.get(learner.position.remote())
                break
            except LEARNER_GONE:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        redo = sorted(i for i in sent if i >= resume)
        for _, group in itertools.groupby(redo, key=lambda i: sent[i][0]):  # one call per pack, in order
            indices = list(group)
            submit(sent[indices[0]][0], indices)

    try:
        reading = True
        while reading or pending_packs or in_flight:
            if reading and len(pending_packs) < 2:
                items = ray.get(next_read)
                if items:
                    pending_packs.append(items)
                    next_read = ingest.read.remote(pack_size)
                else:
                    reading = False
            while fits():
                items = pending_packs.popleft()
                for pack_ref, slot, index, domain, frame_shape in items:
                    shape = shape or frame_shape
                    session.on_frame(index, domain)
                    sent[index] = (pack_ref, slot)
                indices = [item[2] for item in items]
                submit(items[0][0], indices)
                if crash_learner_at is not None and indices[0] <= crash_learner_at <= indices[-1]:
                    crash_learner_at = None
                    learner.crash.remote()
            if in_flight and not (reading and len(pending_packs) < 2):  # full, or nothing left to read
                drain_one()
        result, records = learner.flush.options(num_returns=2).remote()
        handle([ray.get(result)], evaluator.update.remote(records))
    except KeyboardInterrupt:
        session.interrupted = True
        log.warning("interrupted: stopping the actors, writing the summary of the frames done")
        try:
            result, records = learner.flush.options(num_returns=2).remote()
            handle([ray.get(result, timeout=60)], evaluator.update.remote(records))
        except Exception as error:  # a second Ctrl-C or a dead actor: keep what we have
            log.error("could not flush the learner: %s", error)
    finally:
        bar.close()
    session.teacher_calls = len(asked)
    evaluation = ray.get(evaluator.summary.remote())
    stats = ray.get(ingest.stats.remote())
    true_shifts = ray.get(ingest.true_shifts.remote())
    height, width = shape or (config.sim.height, config.sim.width)
    teacher_info = ray.get(teacher.describe.remote(height, width))
    student_info = ray.get(learner.describe.remote(height, width))
    rss = [peak_rss_mb()] + [ray.get(a.peak_rss_mb.remote()) for a in actors]
    ingest.close.remote()
    for actor in actors:
        ray.kill(actor)
    info = {
        "student_params": student_info["params"], "teacher_params": teacher_info["params"],
        "student_macs": student_info["macs"], "teacher_macs": teacher_info["macs"],
        "teacher_name": teacher_info["name"], "teacher_device": teacher_info["device"], "frame_size": [height, width],
    }
    extra = {"peak_rss_mb": sum(rss), "peak_rss_mb_by_process": dict(zip(["driver", "ingest", "teacher", "learner", "evaluator"], rss))}
    return session.finish(evaluation, stats, true_shifts, info, extra)
