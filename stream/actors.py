"""The Ray runner: ingest, teacher, learner and evaluator actors (the only module importing ray
besides the CLI).

Each actor wraps the same plain class the in-process runner uses. A frame travels as one
ObjectRef: the ingest actor puts it in the object store once, the learner and the teacher
both read it by reference. The driver keeps at most ``run.max_in_flight`` frames between
ingest and learner (backpressure with ``ray.wait``-style bounded queues). The learner actor
restarts after a crash (``max_restarts``) and restores its last checkpoint in its constructor;
the driver then re-sends the frames since that checkpoint, and the evaluator and the recorder
skip what they already counted.
"""
from __future__ import annotations

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


def _threads(config: RunConfig) -> None:
    import torch

    torch.set_num_threads(config.run.torch_threads if config.run.torch_threads > 0 else 1)


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
    """Reads the source and puts each frame into the object store once.

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

    def read(self, count: int) -> list[tuple[ray.ObjectRef, int, str, tuple[int, int]]]:
        if self.iterator is None:
            if self.prefetch > 0:
                self.prefetcher = PrefetchIterator(iter(self.source), self.prefetch)
            self.iterator = self.prefetcher or iter(self.source)
        out = []
        while len(out) < count and not self.done:
            try:
                frame = next(self.iterator)
            except StopIteration:
                self.done = True
                break
            if frame.index >= self.config.run.frames:
                self.done = True
                break
            out.append((ray.put(frame), frame.index, frame.domain, frame.shape))
        return out

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

    def label(self, frame: Frame) -> TeacherOutput:
        return self.teacher.label(frame.image[None])

    def describe(self, height: int, width: int) -> dict[str, Any]:
        return {"params": self.teacher.params, "macs": self.teacher.macs(height, width),
                "name": self.teacher.name, "device": self.teacher.device}

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()


class RayTeacherClient:
    """The learner's view of a :class:`TeacherActor`: submit by ObjectRef, block on the answer."""

    def __init__(self, actor: Any):
        self.actor = actor

    def submit(self, frame: Frame, handle: Any) -> ray.ObjectRef:
        return self.actor.label.remote(handle)

    def result(self, ticket: ray.ObjectRef) -> TeacherOutput:
        return ray.get(ticket)


@ray.remote(num_cpus=0, max_restarts=1, max_task_retries=0)
class LearnerActor:
    """The :class:`~learners.stream_learner.StreamLearner` in its own process."""

    def __init__(self, config: RunConfig, teacher: Any, checkpoint_dir: str):
        _threads(config)
        self.learner = build_learner(config, RayTeacherClient(teacher), checkpoint_dir)

    def step(self, wrapped: list[ray.ObjectRef]) -> tuple[StepResult, list]:
        frame = ray.get(wrapped[0])
        result = self.learner.step(frame, handle=wrapped[0])
        records, result.records = result.records, []
        return result, records

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
    sent: dict[int, ray.ObjectRef] = {}  # frames since the last checkpoint, for a learner restart
    in_flight: deque[tuple[int, Any, Any]] = deque()
    asked: set[int] = set()
    shape: tuple[int, int] | None = None
    bar = progress_bar(config.run.frames, progress)
    pending_frames: deque[tuple[ray.ObjectRef, int, str, tuple[int, int]]] = deque()
    next_read = ingest.read.remote(window)

    def handle(result: StepResult, windows_ref: Any) -> None:
        if result.asked_teacher:
            asked.add(result.index)
        session.on_step(result)
        for event in result.events:
            if event.get("kind") == "checkpoint":
                for index in [i for i in sent if i <= event["index"]]:
                    del sent[index]
        session.on_windows(ray.get(windows_ref))

    def submit(frame_ref: ray.ObjectRef) -> tuple[Any, Any]:
        result_ref, records_ref = learner.step.options(num_returns=2).remote([frame_ref])
        return result_ref, evaluator.update.remote(records_ref)

    def drain_one() -> None:
        index, result_ref, windows_ref = in_flight.popleft()
        try:
            result = ray.get(result_ref)
        except LEARNER_GONE:
            in_flight.appendleft((index, result_ref, windows_ref))
            recover()
            return
        handle(result, windows_ref)
        bar.update(1)

    def recover() -> None:
        """The learner died: wait for its restart, then re-send what its checkpoint lacks."""
        log.warning("learner actor died; restarting from its last checkpoint")
        while in_flight:  # results that were done before the crash still count
            index, result_ref, windows_ref = in_flight[0]
            try:
                result = ray.get(result_ref)
            except LEARNER_GONE:
                break
            in_flight.popleft()
            handle(result, windows_ref)
            bar.update(1)
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
        for index in sorted(i for i in sent if i >= resume):
            result_ref, windows_ref = submit(sent[index])
            in_flight.append((index, result_ref, windows_ref))

    try:
        reading = True
        while reading or pending_frames or in_flight:
            if reading and len(pending_frames) < window:
                batch = ray.get(next_read)
                if batch:
                    pending_frames.extend(batch)
                    next_read = ingest.read.remote(window)
                else:
                    reading = False
            while pending_frames and len(in_flight) < window:
                frame_ref, index, domain, frame_shape = pending_frames.popleft()
                shape = shape or frame_shape
                session.on_frame(index, domain)
                sent[index] = frame_ref
                result_ref, windows_ref = submit(frame_ref)
                in_flight.append((index, result_ref, windows_ref))
                if crash_learner_at is not None and index == crash_learner_at:
                    crash_learner_at = None
                    learner.crash.remote()
            if in_flight and (len(in_flight) >= window or not pending_frames):
                drain_one()
        result, records = learner.flush.options(num_returns=2).remote()
        handle(ray.get(result), evaluator.update.remote(records))
    except KeyboardInterrupt:
        session.interrupted = True
        log.warning("interrupted: stopping the actors, writing the summary of the frames done")
        try:
            result, records = learner.flush.options(num_returns=2).remote()
            handle(ray.get(result, timeout=60), evaluator.update.remote(records))
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
