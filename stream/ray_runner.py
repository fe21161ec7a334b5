"""The Ray runner's driver: starts the four actors of :mod:`stream.actors`, moves frame packs
between them and writes the run folder, with the same semantics and outputs as
:func:`stream.pipeline.run_local`.

The driver keeps at most ``run.max_in_flight`` frames between ingest and learner
(backpressure with bounded queues). The learner actor restarts after a crash
(``max_restarts``) and restores its last checkpoint in its constructor; the driver then
re-sends the frames since that checkpoint (from the ring transport, read again from the
source), and the evaluator and the recorder skip what they already counted.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from learners.records import StepResult
from stream.actors import EvaluatorActor, FrameSlot, IngestActor, LearnerActor, TeacherActor
from stream.config import RunConfig
from stream.framering import remove_ring, ring_name
from stream.machine import peak_rss_mb, usable_cores
from stream.pipeline import RunSession, progress_bar
from stream.recorder import RunRecorder

log = logging.getLogger(__name__)

LEARNER_GONE = (RayActorError, ActorUnavailableError)  # died, or restarting after a death


def ensure_ray(num_cpus: int | None = None) -> None:
    """Start a local Ray instance unless one is running (tests share one per session)."""
    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus or usable_cores(), include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=True, configure_logging=False)


def resolve_transport(config: RunConfig) -> str:
    """``run.transport`` made concrete: ``auto`` is the frame ring on a one-machine Ray
    cluster, except for paced (``--realtime``) logs, and the object store otherwise (a ring
    lives in one machine's shared memory; a crashed learner's frames are read again from the
    source, which a paced log, dropping by the clock, cannot repeat)."""
    transport = config.run.transport
    if transport == "auto":
        alive = [node for node in ray.nodes() if node.get("Alive", True)]
        return "ring" if len(alive) == 1 and not config.run.realtime else "object_store"
    return transport


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
    transport = resolve_transport(config)
    ring = ring_name()
    ingest = IngestActor.remote(config, transport=transport, ring=ring)
    actors = [ingest, teacher, learner, evaluator]
    window = max(1, config.run.max_in_flight)
    pack_size = max(1, window // 2)  # two packs in flight: the learner works on one, the next waits
    log.info("Ray runner: frames travel by %s", transport)
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
        if redo and transport == "ring":  # their ring slots may hold newer frames by now: read them again
            for pack_ref, slot, index, _, _ in ray.get(ingest.reread.remote(redo[0], redo[-1], pack_size)):
                sent[index] = (pack_ref, slot)
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
        if transport == "ring":  # readers keep their mappings; no new one is made
            remove_ring(ring)
    session.teacher_calls = len(asked)
    evaluation = ray.get(evaluator.summary.remote())
    stats = ray.get(ingest.stats.remote())
    true_shifts = ray.get(ingest.true_shifts.remote())
    height, width = shape or (config.sim.height, config.sim.width)
    teacher_info = ray.get(teacher.describe.remote(height, width))
    student_info = ray.get(learner.describe.remote(height, width))
    rss = [peak_rss_mb()] + [ray.get(a.peak_rss_mb.remote()) for a in actors]
    try:
        ray.get(ingest.close.remote(), timeout=30)  # its decoder stops and its ring is deleted
    except (ray.exceptions.GetTimeoutError, RayActorError) as error:
        log.warning("the ingest actor did not close cleanly: %s", error)
    for actor in actors:
        ray.kill(actor)
    info = {
        "student_params": student_info["params"], "teacher_params": teacher_info["params"],
        "student_macs": student_info["macs"], "teacher_macs": teacher_info["macs"],
        "teacher_name": teacher_info["name"], "teacher_device": teacher_info["device"], "frame_size": [height, width],
    }
    extra = {"peak_rss_mb": sum(rss), "peak_rss_mb_by_process": dict(zip(["driver", "ingest", "teacher", "learner", "evaluator"], rss))}
    return session.finish(evaluation, stats, true_shifts, info, extra)
