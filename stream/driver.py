"""The driver: one class that owns a run, whichever runner places its parts.

A run has four parts, each a plain class: :class:`~stream.ingest.Ingest` (reads the source),
:class:`~stream.parts.TeacherPart`, :class:`~stream.parts.LearnerPart` and
:class:`~stream.evaluation.FrameEvaluator`. The :class:`Driver` builds them through a
:class:`Placement`, feeds frames from the ingest to the learner in packs, sends the learner's
outputs and the ingest's ground truth to the evaluator, counts, records, flushes and
summarises. A placement only decides where the parts live: :class:`stream.local.LocalPlacement`
keeps them in this process, :class:`stream.actors.RayPlacement` puts each in a Ray actor.

The driver talks to the parts through ``placement.call(part, method, *args)``, which gives
back a *future* (the value itself in-process, an ObjectRef under Ray) that can be handed to
another call unresolved, and ``placement.get(future)``. At most ``run.max_in_flight`` frames
are between the ingest and the learner (backpressure). Under Ray a crashed learner restarts
from its checkpoint and the driver re-sends the frames since (read again from the source when
their frame-ring slots were reused); the evaluator and the counts here skip what they
already counted, so a crash changes no figure.

Example:
    >>> score_drift([105, 130, 400], [100, 300])
    {'detected': 1, 'missed': [300], 'delays': {'100': 5}, 'false_events': 2}
"""
from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from learners.records import StepResult
from stream.config import RunConfig
from stream.evaluation import ROBUST_KEYS
from stream.ingest import FrameHeader
from stream.recorder import RunRecorder
from stream.report import write_report
from stream.sources import sim_world_fitted

log = logging.getLogger(__name__)

DRIFT_TOLERANCE = 60  # frames after a true shift within which a detection counts
PARTS = ("ingest", "teacher", "learner", "evaluator")


class LearnerGone(RuntimeError):
    """The learner part died (a placement that can restart it raises this from ``get``)."""


class Placement(Protocol):
    """Where the parts of a run live, and how the driver reaches them."""

    name: str  # "local" | "ray", written into the summary
    transport: str  # how images reach the learner and teacher: "direct", "ring" or "object_store"

    def start(self, config: RunConfig, checkpoint_dir: str) -> None:
        """Build the four parts (:data:`PARTS`)."""

    def call(self, part: str, method: str, *args: Any, returns: int = 1, control: bool = False) -> Any:
        """Call ``part.method(*args)``; futures among ``args`` are resolved first. ``returns``:
        how many values the method returns (a tuple of that many futures); ``control``: the
        call may run while the part is busy with another (the ingest's reread and close)."""

    def get(self, future: Any, timeout: float | None = None) -> Any:
        """The value of a future; raises :class:`LearnerGone` when the learner died first."""

    def restarted_learner(self) -> int:
        """Wait for a crashed learner to come back; the frame index it resumes at."""

    def crash(self, part: str) -> None:
        """Fault injection for tests: kill the part's process."""

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak resident memory of each process of the run, by name."""

    def nodes(self) -> dict[str, str]:
        """The node each part runs on."""

    def stop(self) -> None:
        """Release the parts (idempotent)."""


def score_drift(detections: list[int], true_shifts: list[int], tolerance: int = DRIFT_TOLERANCE) -> dict[str, Any]:
    """Match detections to true shifts: the first detection in [shift, shift + tolerance]."""
    delays: dict[str, int] = {}
    used: set[int] = set()
    for shift in true_shifts:
        hits = [d for d in detections if shift <= d <= shift + tolerance and d not in used]
        if hits:
            delays[str(shift)] = hits[0] - shift
            used.add(hits[0])
    missed = [s for s in true_shifts if str(s) not in delays]
    return {"detected": len(delays), "missed": missed, "delays": delays, "false_events": len([d for d in detections if d not in used])}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _coverage_named(scores: dict[str, Any]) -> dict[str, Any]:
    """The evaluator's figures under names that say which frames each covers.

    ``student_miou`` covers every frame with ground truth; the teacher's figures and the
    student's beside them cover only the frames the teacher labelled, and
    ``student_teacher_ratio`` compares the two on those same frames.
    """
    return {
        "frames": scores["frames"],
        "teacher_frames": scores["teacher_frames"],
        "student_miou": scores["student_miou"],
        "student_pixel_acc": scores["student_pixel_acc"],
        "student_miou_on_teacher_frames": scores["student_on_teacher_frames_miou"],
        "teacher_miou_on_teacher_frames": scores["teacher_miou"],
        "teacher_pixel_acc_on_teacher_frames": scores["teacher_pixel_acc"],
        "student_teacher_ratio": _ratio(scores["student_on_teacher_frames_miou"], scores["teacher_miou"]),
        "student_vs_teacher_miou": scores["student_vs_teacher_miou"],
        **{key: value for key, value in scores.items() if key in ROBUST_KEYS},
        **_depth_named(scores),
    }


def _depth_named(scores: dict[str, Any]) -> dict[str, Any]:
    """Depth AbsRel (a multi-task run's) under names that say which frames each covers: the
    student's on every frame, the teacher's and the student's beside it on the teacher's frames;
    {} when the run scored no depth.

    Example:
        >>> _depth_named({"student_depth_abs_rel": 0.2, "teacher_depth_abs_rel": 0.1,
        ...               "student_on_teacher_frames_depth_abs_rel": 0.25})["teacher_depth_abs_rel_on_teacher_frames"]
        0.1
        >>> _depth_named({"student_miou": 0.5})
        {}
    """
    if "student_depth_abs_rel" not in scores:
        return {}
    out = {"student_depth_abs_rel": scores["student_depth_abs_rel"],
           "student_depth_abs_rel_on_teacher_frames": scores.get("student_on_teacher_frames_depth_abs_rel"),
           "teacher_depth_abs_rel_on_teacher_frames": scores.get("teacher_depth_abs_rel")}
    out.update({key: scores[key] for key in ("depth_frames", "depth_max") if key in scores})
    return out


@dataclass
class RunSession:
    """The driver's bookkeeping: frames and teacher calls (each counted once, by frame index),
    domain bands, events, windows, and the summary at the end."""

    config: RunConfig
    recorder: RunRecorder
    started: float = field(default_factory=time.perf_counter)
    frames: int = 0
    teacher_calls: int = 0
    domain_starts: list[tuple[int, str]] = field(default_factory=list)
    interrupted: bool = False

    def on_frame(self, header: FrameHeader) -> None:
        if not self.domain_starts or self.domain_starts[-1][1] != header.domain:
            self.domain_starts.append((header.index, header.domain))

    def on_step(self, result: StepResult) -> None:
        """Count a step's frame once: a frame re-sent after a learner restart is not counted
        again (its events, recorded again, are dropped by the recorder)."""
        if result.index >= self.frames:
            self.frames = result.index + 1
            self.teacher_calls += int(result.asked_teacher)
        for event in result.events:
            self.recorder.event(event)

    def on_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.recorder.event(event)

    def on_windows(self, windows: list[dict[str, Any]]) -> None:
        for window in windows:
            self.recorder.metric(window)

    def finish(self, evaluation: dict[str, Any], source_stats: dict[str, int], true_shifts: list[int],
               extra: dict[str, Any]) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        drifts = sorted(e["index"] for e in self.recorder.events if e.get("kind") == "drift")
        drift_score = score_drift(drifts, [s for s in true_shifts if s < self.frames])
        per_domain = {name: _coverage_named(scores) for name, scores in evaluation["per_domain"].items()}
        overall = _coverage_named(evaluation)
        del overall["frames"], overall["teacher_frames"]
        summary = {
            "source": self.config.run.source,
            "runner": self.config.run.runner,
            "seed": self.config.run.seed,
            "fitted_world": sim_world_fitted(self.config),  # the sim.seeds range the run's world was fitted on, or None
            "interrupted": self.interrupted,
            "frames": self.frames,
            "frames_dropped": int(source_stats.get("frames_dropped", 0)),
            "frames_skipped": int(source_stats.get("frames_skipped", 0)),
            "frame_limit_reached": bool(source_stats.get("frame_limit_reached", 0)),
            **({"driving": source_stats["driving"]} if "driving" in source_stats else {}),  # closed loop
            "teacher_calls": self.teacher_calls,
            "teacher_rate": self.teacher_calls / max(1, self.frames),
            **overall,
            "label_warning": evaluation.get("label_warning"),
            "student_class_iou": evaluation.get("student_class_iou"),
            "teacher_class_iou": evaluation.get("teacher_class_iou"),
            "per_domain": per_domain,
            "visits": evaluation.get("visits", []),  # per run of one domain: mIoU, of its first and last frames
            "drift_events": drifts,
            "true_shifts": true_shifts,
            "drift": drift_score,
            "fps": self.frames / wall if wall > 0 else 0.0,
            "wall_s": wall,
            **extra,
        }
        self.recorder.write_summary(summary)
        try:
            write_report(self.recorder.out_dir / "report.png", self.recorder.metrics, self.recorder.events,
                         self.domain_starts, true_shifts, f"{self.config.run.source} · {self.config.run.runner} runner · seed {self.config.run.seed}")
        except Exception as error:  # a broken plot must not lose the summary
            log.error("report.png not written: %s", error)
        self.recorder.close()
        return summary


def robustness_costs(learner: dict[str, Any], views: dict[str, Any] | None, frames: int) -> dict[str, Any]:
    """What robustness cost the run: the views (made on the teacher's side, refined on the
    learner's), the student syncs that keep the teacher's copy current, and the probe that
    attacks the student on the robustness frames.

    Example:
        >>> costs = robustness_costs({"view_frames": 4, "view_ms": 40.0, "view_refine_ms": 8.0, "robust_frames": 2,
        ...                           "robust_probe_ms": 300.0, "robust_asks": 1, "student_syncs": 3,
        ...                           "student_sync_bytes": 3000}, {"target": "student"}, frames=100)
        >>> costs["view_ms_per_frame"], costs["view_ms_per_view_frame"], costs["probe_ms_per_robust_frame"]
        (0.48, 12.0, 150.0)
    """
    view_frames = int(learner.get("view_frames", 0))
    view_ms = float(learner.get("view_ms", 0.0)) + float(learner.get("view_refine_ms", 0.0))
    probe_frames = int(learner.get("robust_frames", 0))
    return {
        "view_frames": view_frames,
        "view_target": views.get("target") if views else None,
        "view_ms_per_frame": view_ms / frames if frames else 0.0,  # over every frame of the stream
        "view_ms_per_view_frame": view_ms / view_frames if view_frames else 0.0,
        "view_teacher_ms": float(learner.get("view_ms", 0.0)),
        "view_learner_refine_ms": float(learner.get("view_refine_ms", 0.0)),
        "student_syncs": int(learner.get("student_syncs", 0)),
        "student_sync_bytes": int(learner.get("student_sync_bytes", 0)),
        "robust_frames": probe_frames,
        "robust_teacher_asks": int(learner.get("robust_asks", 0)),  # teacher calls made only for robustness frames
        "probe_ms_per_robust_frame": float(learner.get("robust_probe_ms", 0.0)) / probe_frames if probe_frames else 0.0,
    }


def progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="frame", dynamic_ncols=True, mininterval=0.5)


@dataclass
class _Sent:
    """A frame sent to the learner and not yet covered by a checkpoint: where it lives."""

    pack: Any  # the pack's future
    slot: int
    truths: Any  # the future of the same read's ground truth


class Driver:
    """Owns one run: builds the parts through ``placement``, streams, counts, summarises.

    ``crash_learner_at`` kills the learner's process once that frame was sent (fault
    injection for tests; needs a placement that restarts it).
    """

    def __init__(self, config: RunConfig, placement: Placement, progress: bool = True,
                 crash_learner_at: int | None = None) -> None:
        self.config = config
        self.placement = placement
        self.progress = progress
        self.crash_learner_at = crash_learner_at
        self.window = max(1, config.run.max_in_flight)
        self.pack_size = max(1, self.window // 2)  # two packs in flight: the learner works on one, the next waits
        self.sent: dict[int, _Sent] = {}
        self.in_flight: deque[tuple[list[int], Any, Any]] = deque()  # (frame indices, results, windows) per call
        self.shape: tuple[int, int] | None = None
        self.publisher = None  # candidates to a registry during the run (publish.registry)
        if config.publish.registry:
            from stream.publish import Publisher

            self.publisher = Publisher(config.publish)

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Stream the whole source; returns the summary (also written into the run folder)."""
        started = time.perf_counter()
        recorder = RunRecorder(self.config.run.out, self.config.to_json())
        self.session = RunSession(self.config, recorder, started=started)
        self.bar = progress_bar(self.config.run.frames, self.progress)
        placement = self.placement
        try:
            placement.start(self.config, str(recorder.checkpoint_dir))
            log.info("%s runner: frames travel %s", placement.name, placement.transport)
            try:
                if self.config.run.closed_loop:
                    self._stream_closed_loop()
                else:
                    self._stream()
                self._flush()
            except KeyboardInterrupt:
                self.session.interrupted = True
                log.warning("interrupted: writing the summary of the %d frames done", self.session.frames)
                try:
                    self.in_flight.clear()
                    self._flush(timeout=60)
                except Exception as error:  # a second Ctrl-C or a dead part: keep what we have
                    log.error("could not flush the learner: %s", error)
            finally:
                self.bar.close()
            return self._summarise()
        finally:
            placement.stop()

    def _stream(self) -> None:
        placement, session = self.placement, self.session
        pending: deque[tuple[Any, Any, list[FrameHeader]]] = deque()
        next_read = placement.call("ingest", "read", self.pack_size, returns=3)
        reading = True
        while reading or pending or self.in_flight:
            if reading and len(pending) < 2:
                pack, truths, manifest_ref = next_read
                manifest = placement.get(manifest_ref)
                session.on_events(manifest.events)
                if manifest.frames:
                    pending.append((pack, truths, manifest.frames))
                if manifest.ended or not manifest.frames:
                    reading = False
                else:
                    next_read = placement.call("ingest", "read", self.pack_size, returns=3)
            while self._fits(pending):
                pack, truths, headers = pending.popleft()
                for slot, header in enumerate(headers):
                    self.shape = self.shape or header.shape
                    session.on_frame(header)
                    self.sent[header.index] = _Sent(pack, slot, truths)
                indices = [header.index for header in headers]
                self._submit(pack, truths, indices, list(range(len(headers))))
                if self.crash_learner_at is not None and indices[0] <= self.crash_learner_at <= indices[-1]:
                    self.crash_learner_at = None
                    placement.crash("learner")
            if self.in_flight and not (reading and len(pending) < 2):  # full, or nothing left to read
                try:
                    self._finish_oldest()
                except LearnerGone:
                    self._recover()

    def _stream_closed_loop(self) -> None:
        """One frame at a time: read it, let the learner predict (and learn), then hand the
        prediction to the source, which steers by it before it renders the next frame."""
        placement, session = self.placement, self.session
        while True:
            pack, truths, manifest_ref = placement.call("ingest", "read", 1, returns=3)
            manifest = placement.get(manifest_ref)
            session.on_events(manifest.events)
            if not manifest.frames:
                return
            header = manifest.frames[0]
            self.shape = self.shape or header.shape
            session.on_frame(header)
            self.sent[header.index] = _Sent(pack, 0, truths)
            self._submit(pack, truths, [header.index], [0])
            prediction = self._finish_oldest()[-1].prediction
            if prediction is None:
                raise RuntimeError("run.closed_loop: the learner part sent no prediction to steer by")
            placement.get(placement.call("ingest", "steer", header.index, prediction))
            if manifest.ended:
                return

    def _fits(self, pending: deque) -> bool:
        """Whether the next pack can go to the learner without passing ``run.max_in_flight`` frames."""
        if not pending:
            return False
        in_learner = sum(len(indices) for indices, _, _ in self.in_flight)
        return in_learner + len(pending[0][2]) <= max(self.window, self.pack_size)

    def _submit(self, pack: Any, truths: Any, indices: list[int], slots: list[int]) -> None:
        results, outputs = self.placement.call("learner", "step", [pack], slots, returns=2)
        windows = self.placement.call("evaluator", "update", truths, outputs)
        self.in_flight.append((indices, results, windows))

    def _finish_oldest(self) -> list[StepResult]:
        """Count the oldest learner call's results and return them (raises LearnerGone if the
        learner died first)."""
        _, results_ref, windows_ref = self.in_flight[0]
        results = self.placement.get(results_ref)
        self.in_flight.popleft()
        self._count(results, windows_ref)
        self.bar.update(len(results))
        return results

    def _count(self, results: list[StepResult], windows_ref: Any) -> None:
        for result in results:
            self.session.on_step(result)
            for event in result.events:
                if event.get("kind") == "checkpoint":  # frames up to here will never be sent again
                    for index in [i for i in self.sent if i <= event["index"]]:
                        del self.sent[index]
                if self.publisher is not None:
                    published = self.publisher.on_event(event, self.config, self.config.run.out)
                    if published is not None:
                        self.session.recorder.event(published)
        self.session.on_windows(self.placement.get(windows_ref))

    def _recover(self) -> None:
        """The learner died: wait for its restart, then re-send what its checkpoint lacks."""
        log.warning("learner part died; restarting from its last checkpoint")
        while self.in_flight:  # results that were done before the crash still count
            try:
                self._finish_oldest()
            except LearnerGone:
                break
        self.session.recorder.event({"kind": "actor_restart", "index": self.session.frames, "detector": "learner"})
        self.in_flight.clear()
        resume = self.placement.restarted_learner()
        redo = sorted(i for i in self.sent if i >= resume)
        if redo and self.placement.transport == "ring":  # their ring slots may hold newer frames by now
            for start in range(0, len(redo), self.pack_size):
                chunk = redo[start:start + self.pack_size]
                pack, truths, manifest = self.placement.call("ingest", "reread", chunk[0], chunk[-1], returns=3,
                                                             control=True)
                got = [header.index for header in self.placement.get(manifest).frames]
                if got != chunk:
                    raise RuntimeError(f"re-reading frames {chunk[0]}..{chunk[-1]} after the learner's restart gave "
                                       f"frames {got[:3]}..: the source does not repeat itself")
                for slot, index in enumerate(chunk):
                    self.sent[index] = _Sent(pack, slot, truths)
        for _, group in itertools.groupby(redo, key=lambda i: id(self.sent[i].pack)):  # one call per pack, in order
            indices = list(group)
            first = self.sent[indices[0]]
            self._submit(first.pack, first.truths, indices, [self.sent[i].slot for i in indices])

    def _flush(self, timeout: float | None = None) -> None:
        """Apply the learner's pending teacher answers and count everything still in flight."""
        while self.in_flight:
            try:
                self._finish_oldest()
            except LearnerGone:
                self._recover()
        result, outputs = self.placement.call("learner", "flush", returns=2)
        windows = self.placement.call("evaluator", "update", [], outputs)
        self.session.on_step(self.placement.get(result, timeout=timeout))
        self.session.on_windows(self.placement.get(windows, timeout=timeout))
        self.session.on_windows(self.placement.get(self.placement.call("evaluator", "finish"), timeout=timeout))

    def _summarise(self) -> dict[str, Any]:
        placement = self.placement
        get = placement.get
        evaluation = get(placement.call("evaluator", "summary"))
        stats = get(placement.call("ingest", "stats"))
        true_shifts = get(placement.call("ingest", "true_shifts"))
        self.session.on_events(get(placement.call("ingest", "events")))
        if evaluation.get("label_warning"):
            self.session.recorder.event({"kind": "label_check", "index": self.session.frames - 1,
                                         "message": evaluation["label_warning"]})
        if stats.get("frame_limit_reached"):
            log.warning("run.frames=%d cut the source %s short", self.config.run.frames, self.config.run.source)
        height, width = self.shape or (self.config.sim.height, self.config.sim.width)
        teacher = get(placement.call("teacher", "describe", height, width))
        student = get(placement.call("learner", "describe", height, width))
        rss = placement.peak_rss_mb()
        extra = {
            "robustness": robustness_costs(student, teacher.get("views"), self.session.frames),
            "student_params": student["params"], "teacher_params": teacher["params"],
            "student_macs": student["macs"], "teacher_macs": teacher["macs"],
            "teacher_name": teacher["name"], "teacher_device": teacher["device"], "frame_size": [height, width],
            "transport": placement.transport, "nodes": placement.nodes(),
            "peak_rss_mb": sum(rss.values()), "peak_rss_mb_by_process": rss,
        }
        return self.session.finish(evaluation, stats, true_shifts, extra)

