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
import resource
import time
from collections import deque
from typing import Any

import ray
from ray.exceptions import RayActorError

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


@ray.remote(num_cpus=0)
class IngestActor:
    """Reads the source and puts each frame into the object store once."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.source = build_source(config)
        self.iterator = iter(self.source)
        self.done = False

    def read(self, count: int) -> list[tuple[ray.ObjectRef, int, str, tuple[int, int]]]:
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
        except RayActorError:
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
            except RayActorError:
                break
            in_flight.popleft()
            handle(result, windows_ref)
            bar.update(1)
        recorder.event({"kind": "actor_restart", "index": session.frames, "detector": "learner"})
        in_flight.clear()
        resume = ray.get(learner.position.remote())
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
