"""The pipeline's parts, built from a :class:`~stream.config.RunConfig`, and the in-process runner.

Both runners (this one and :mod:`stream.ray_runner`) share :class:`RunSession`, the driver-side
bookkeeping (events, windowed metrics, drift scoring, the summary and the report), and build
the same components with the functions below, so a seed and a config give the same metrics
in either.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from learners.records import StepResult
from learners.online import torch_threads
from learners.stream_learner import LocalTeacherClient, StreamLearner, TeacherClient
from perception.teachers.grid import GridAlignedTeacher
from perception.nets import count_macs, count_params
from perception.student_nets import build_student_net
from perception.weights import WEIGHTS_DIR, load_weights
from stream.config import ConfigError, RunConfig
from stream.evaluation import FrameEvaluator
from stream.machine import peak_rss_mb
from stream.recorder import RunRecorder
from stream.report import write_report
from stream.sources import open_source
from stream.sources.base import Source

log = logging.getLogger(__name__)

STUDENT_WEIGHTS = WEIGHTS_DIR / "student_clear_oldtown.safetensors"
DRIFT_TOLERANCE = 60  # frames after a true shift within which a detection counts


def build_student(config: RunConfig) -> torch.nn.Module:
    """The student network (``student.net``) with its starting weights (``student.weights``)."""
    with torch.random.fork_rng():
        torch.manual_seed(config.run.seed)
        model = build_student_net(config.student.net)
    weights = config.student.weights
    if weights == "default":
        if config.student.net != "default":
            raise ConfigError(f"student.weights=default is the shipped sim student (student.net=default); "
                              f"give a weights path (or none) for student.net={config.student.net}")
        load_weights(model, STUDENT_WEIGHTS)
    elif weights != "none":
        load_weights(model, weights)
    return model


def build_teacher(config: RunConfig) -> Any:
    """The teacher ``teacher.spec`` names, its logits on a grid the learner can crop."""
    from perception.teachers import open_teacher

    teacher = open_teacher(config.teacher.spec, device=config.teacher.device, logits_stride=config.teacher.logits_stride,
                           input_size=config.teacher.input_size)
    return GridAlignedTeacher(teacher, config.teacher.logits_stride)


def build_learner(config: RunConfig, teacher_client: TeacherClient, checkpoint_dir: Path | None) -> StreamLearner:
    """The stream learner of a run; its gradient steps take ``run.train_threads()`` torch
    threads (the caller sets the thread count of everything else, ``run.inference_threads()``)."""
    learner = StreamLearner(
        build_student(config),
        teacher_client,
        seed=config.run.seed,
        config=config.learner,
        online=config.online,
        distill=config.distill,
        replay=config.replay,
        scheduler=config.scheduler,
        drift=config.drift,
        checkpoint_dir=checkpoint_dir,
        device=config.student.device,
    )
    learner.learner.train_threads = config.run.train_threads()
    return learner


def score_drift(detections: list[int], true_shifts: list[int], tolerance: int = DRIFT_TOLERANCE) -> dict[str, Any]:
    """Match detections to true shifts: the first detection in [shift, shift + tolerance].

    Example:
        >>> score_drift([105, 130, 400], [100, 300])
        {'detected': 1, 'missed': [300], 'delays': {'100': 5}, 'false_events': 2}
    """
    delays: dict[str, int] = {}
    used: set[int] = set()
    for shift in true_shifts:
        hits = [d for d in detections if shift <= d <= shift + tolerance and d not in used]
        if hits:
            delays[str(shift)] = hits[0] - shift
            used.add(hits[0])
    missed = [s for s in true_shifts if str(s) not in delays]
    return {"detected": len(delays), "missed": missed, "delays": delays, "false_events": len([d for d in detections if d not in used])}


@dataclass
class RunSession:
    """Driver-side bookkeeping shared by both runners."""

    config: RunConfig
    recorder: RunRecorder
    started: float = field(default_factory=time.perf_counter)
    frames: int = 0
    teacher_calls: int = 0
    domain_starts: list[tuple[int, str]] = field(default_factory=list)
    interrupted: bool = False

    def on_frame(self, index: int, domain: str) -> None:
        if not self.domain_starts or self.domain_starts[-1][1] != domain:
            self.domain_starts.append((index, domain))

    def on_step(self, result: StepResult) -> None:
        self.frames = max(self.frames, result.index + 1)
        self.teacher_calls += int(result.asked_teacher)
        for event in result.events:
            self.recorder.event(event)

    def on_windows(self, windows: list[dict[str, Any]]) -> None:
        for window in windows:
            self.recorder.metric(window)

    def finish(self, evaluation: dict[str, Any], source_stats: dict[str, int], true_shifts: list[int],
               model_info: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        drifts = sorted(e["index"] for e in self.recorder.events if e.get("kind") == "drift")
        drift_score = score_drift(drifts, [s for s in true_shifts if s < self.frames])
        per_domain = {
            name: {
                "frames": d["frames"],
                "teacher_frames": d["teacher_frames"],
                "student_miou": d["student_miou"],
                "teacher_miou": d["teacher_miou"],
                "student_vs_teacher_miou": d["student_vs_teacher_miou"],
                "student_pixel_acc": d["student_pixel_acc"],
                "teacher_pixel_acc": d["teacher_pixel_acc"],
            }
            for name, d in evaluation["per_domain"].items()
        }
        summary = {
            "source": self.config.run.source,
            "runner": self.config.run.runner,
            "seed": self.config.run.seed,
            "interrupted": self.interrupted,
            "frames": self.frames,
            "frames_dropped": int(source_stats.get("frames_dropped", 0)),
            "frames_skipped": int(source_stats.get("frames_skipped", 0)),
            "teacher_calls": self.teacher_calls,
            "teacher_rate": self.teacher_calls / max(1, self.frames),
            "student_miou": evaluation["student_miou"],
            "teacher_miou": evaluation["teacher_miou"],
            "student_vs_teacher_miou": evaluation["student_vs_teacher_miou"],
            "student_pixel_acc": evaluation["student_pixel_acc"],
            "teacher_pixel_acc": evaluation["teacher_pixel_acc"],
            "student_class_iou": evaluation.get("student_class_iou"),
            "teacher_class_iou": evaluation.get("teacher_class_iou"),
            "per_domain": per_domain,
            "drift_events": drifts,
            "true_shifts": true_shifts,
            "drift": drift_score,
            "fps": self.frames / wall if wall > 0 else 0.0,
            "wall_s": wall,
            **model_info,
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


def model_info(config: RunConfig, teacher: Any, student: torch.nn.Module, height: int, width: int) -> dict[str, Any]:
    return {
        "student_params": count_params(student),
        "teacher_params": int(teacher.params),
        "student_macs": count_macs(student, height, width),
        "teacher_macs": int(teacher.macs(height, width)),
        "teacher_name": teacher.name,
        "teacher_device": teacher.device,
        "frame_size": [height, width],
    }


def progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="frame", dynamic_ncols=True, mininterval=0.5)


def run_local(config: RunConfig, progress: bool = True, source: Source | None = None, teacher: Any = None) -> dict[str, Any]:
    """Run the whole pipeline in this process; returns the summary (also in the run folder).

    ``source`` and ``teacher``, when given, are used instead of the ones ``run.source`` and
    ``teacher.spec`` name (e.g. several logs with their own options, or a teacher with a
    non-default inference size); the run takes ownership of ``source`` and closes it.

    Torch runs on ``run.inference_threads()`` threads here (restored afterwards), except the
    learner's gradient steps: the same split as the Ray actors', so both runners give the
    same metrics.
    """
    with torch_threads(config.run.inference_threads()):
        return _run_local(config, progress, source, teacher)


def _run_local(config: RunConfig, progress: bool, source: Source | None, teacher: Any) -> dict[str, Any]:
    recorder = RunRecorder(config.run.out, config.to_json())
    session = RunSession(config, recorder)
    source = open_source(config.run.source, config) if source is None else source
    teacher = build_teacher(config) if teacher is None else teacher
    learner = build_learner(config, LocalTeacherClient(teacher), recorder.checkpoint_dir)
    evaluator = FrameEvaluator(config.evaluator, config.run.label_map)
    shape = None
    bar = progress_bar(config.run.frames, progress)
    try:
        for frame in source:
            if frame.index >= config.run.frames:
                break
            shape = shape or frame.shape
            session.on_frame(frame.index, frame.domain)
            result = learner.step(frame)
            session.on_step(result)
            session.on_windows(evaluator.update(result.records))
            bar.update(1)
            bar.set_postfix(rate=f"{result.teacher_rate:.2f}", refresh=False)
        final = learner.flush()
        session.on_step(final)
        session.on_windows(evaluator.update(final.records))
    except KeyboardInterrupt:
        session.interrupted = True
        log.warning("interrupted: writing the summary of the %d frames done", session.frames)
        final = learner.flush()
        session.on_step(final)
        session.on_windows(evaluator.update(final.records))
    finally:
        bar.close()
        stats = source.stats()
        source.close()
    height, width = shape or (config.sim.height, config.sim.width)
    info = model_info(config, teacher, learner.learner.model, height, width)
    return session.finish(evaluator.summary(), stats, source.true_shifts, info, {"peak_rss_mb": peak_rss_mb()})
