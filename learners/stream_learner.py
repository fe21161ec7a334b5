"""The learner side of the pipeline: one observation in, prequential prediction, drift, teacher, learning.

:class:`StreamLearner` is a plain class; the in-process runner calls it directly and the Ray
runner wraps it in an actor. Its semantics, identical in both runners:

1. the student predicts frame ``i`` (before it can learn from it: prequential);
2. the drift monitor sees the frame's input statistics and, when its detector watches them, the
   student's entropy / confidence on the frame from step 1's logits (no teacher needed);
3. the scheduler decides whether to ask the teacher; if so the frame is submitted to the
   teacher client (a local call, or a Ray actor working in parallel);
4. teacher answers are applied in frame order, ``teacher_latency`` frames after they were
   asked for (a real teacher is never instant): the disagreement is measured, fed to the
   scheduler and the disagreement detector, and the student learns;
5. every frame is *finalised* in order once its teacher answer (if any) is applied, which
   yields one :class:`~learners.records.LearnerOutput` per frame.

The learner takes :class:`~learners.records.Observation` s only (image, index, timestamp,
source id: what a car has); it refuses anything else, so no ground truth or domain tag can
reach learning. The evaluator joins its outputs with the ground truth by frame index.

Every ``checkpoint_every`` frames the learner drains its pending answers and writes a
safetensors checkpoint; a new learner built on the same folder resumes from it.
"""
from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from learners.confidence import softmax_confidence
from learners.configs import DistillationConfig, ExpertConfig, OnlineConfig, RobustDistillConfig, StaticGateConfig, StreamLearnerConfig
from learners.experts import ExpertBank
from learners.input_stats import frame_statistics
from learners.monitor import DriftConfig, DriftMonitor
from learners.online import OnlineLearner
from learners.replay import ReplayConfig
from learners.records import LearnerOutput, Observation, StepResult
from learners.scheduler import SchedulerConfig, TeacherScheduler
from learners.static_gate import StaticGate
from perception.evaluator import confusion_update
from perception.labels import IGNORE_INDEX, NUM_CLASSES
from perception.metrics import mean_iou, pixel_accuracy
from perception.model_state import frozen_buffers
from perception.teacher import TeacherOutput

if TYPE_CHECKING:
    from learners.robust_probe import RobustProbe

log = logging.getLogger(__name__)


def frame_agreement(student: np.ndarray, teacher: np.ndarray) -> tuple[float, float]:
    """Pixel agreement and mIoU of the student's labels against the teacher's on one frame.

    Shape:
        student (H, W) uint8, teacher (H, W) uint8 (255 = no label) -> (float, float)

    Example:
        >>> a = np.array([[0, 0, 1, 1]], np.uint8)
        >>> frame_agreement(a, np.array([[0, 0, 1, 255]], np.uint8))
        (1.0, 1.0)
        >>> frame_agreement(a, np.array([[0, 1, 1, 1]], np.uint8))
        (0.75, 0.5833333333333333)
    """
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES + 1), np.int64)  # (C, C + 1)
    confusion_update(cm, teacher, student, IGNORE_INDEX)
    if cm.sum() == 0:
        return 1.0, 1.0
    return float(pixel_accuracy(cm)), float(mean_iou(cm))


class TeacherClient(Protocol):
    """How the learner reaches a teacher: ``submit`` returns a handle, ``result`` blocks on it."""

    def submit(self, observation: Observation, handle: Any) -> Any: ...

    def result(self, ticket: Any) -> TeacherOutput: ...

    def sync_student(self, state: dict[str, Any]) -> None:
        """Hand the student's weights to the teacher side (for its views); optional."""


class LocalTeacherClient:
    """Calls a teacher in this process when the answer is needed."""

    def __init__(self, teacher: Any):
        self.teacher = teacher

    def submit(self, observation: Observation, handle: Any) -> Observation:
        return observation

    def result(self, ticket: Observation) -> TeacherOutput:
        return self.teacher.label(ticket.image[None])

    def sync_student(self, state: dict[str, Any]) -> None:
        """A bare teacher makes no views: nothing to sync."""


@dataclass
class _Pending:
    frame: Observation
    prediction: np.ndarray
    ticket: Any | None
    asked_at: int
    robust: bool = False  # a robustness frame: attacked before the student learns from it
    depth: np.ndarray | None = None  # (h, w) float16 metres: the student's depth, predicted with the labels


class StreamLearner:
    """Prequential student with scheduler, drift monitor and teacher client (module docstring)."""

    def __init__(
        self,
        student: torch.nn.Module,
        teacher_client: TeacherClient,
        *,
        seed: int,
        config: StreamLearnerConfig = StreamLearnerConfig(),
        online: OnlineConfig = OnlineConfig(),
        distill: DistillationConfig = DistillationConfig(),
        replay: ReplayConfig = ReplayConfig(),
        scheduler: SchedulerConfig = SchedulerConfig(),
        drift: DriftConfig = DriftConfig(),
        checkpoint_dir: str | Path | None = None,
        device: str = "cpu",
        probe: "RobustProbe | None" = None,
        sync_every: int = 0,
        robust: RobustDistillConfig = RobustDistillConfig(),
        experts: ExpertConfig = ExpertConfig(),
        static: StaticGateConfig = StaticGateConfig(),
    ):
        """``probe``: attacks the student on the robustness frames (they are always sent to the
        teacher). ``sync_every``: learning steps between two syncs of the teacher part's
        student copy (0 = no copy: the teacher makes no views against the student).
        ``robust``: the robust distillation settings. ``experts``: a bank of domain experts
        against forgetting (:mod:`learners.experts`; off by default). ``static``: the
        input-change gate (:mod:`learners.static_gate`), None of it when off."""
        self.config = config
        self.teacher = teacher_client
        self.learner = OnlineLearner(online, student, seed=seed, distill=distill, replay=replay, device=device,
                                     robust=robust)
        self.experts = ExpertBank(experts, self.learner) if experts.enabled else None
        self.probe = probe
        self.sync_every = sync_every
        self.synced_at = -1  # optimizer steps at the last sync (-1: never synced)
        self.sync_bytes = 0
        self.syncs = 0
        self.robust_asks = 0  # teacher calls made for robustness frames the scheduler had not picked
        self.view_frames = 0  # labelled frames that came with views
        self.view_ms = 0.0  # the teacher side's milliseconds making them
        self.scheduler = TeacherScheduler(scheduler)
        self.monitor = DriftMonitor(drift)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.pending: deque[_Pending] = deque()
        self.next_index = 0  # the frame index expected next
        self.regime = 0
        self.logged_rate = self.scheduler.rate
        self.teacher_calls = 0
        self.gate = StaticGate(static) if static.enabled else None  # skips picks that repeat the last frame learned
        self.last_timestamp: float | None = None  # the previous frame's, for the idle steps between frames
        self.idle_credit = 0.0  # idle steps owed, fractional
        self.idle_steps = 0  # replay steps taken between frames
        self.settled_frames = 0  # teacher frames stored without steps (learner.settled_agreement)
        self.warned_features = False  # feature distillation on, a teacher answer without features: warned once
        if self.checkpoint_dir is not None:
            self.restore_latest()

    # -- the stream -------------------------------------------------------------------------
    def step(self, frame: Observation, handle: Any = None) -> StepResult:
        """Process one observation (``handle`` is what the teacher client submits; default the
        observation itself)."""
        if not isinstance(frame, Observation):
            raise TypeError(f"StreamLearner.step takes an Observation (image, index, timestamp, source_id), "
                            f"not {type(frame).__name__}: ground truth must not reach the learner")
        if frame.index != self.next_index:
            raise ValueError(f"learner expected frame {self.next_index}, got {frame.index} from {frame.source_id}")
        self.next_index += 1
        result = StepResult(index=frame.index, asked_teacher=False, teacher_rate=self.scheduler.rate)
        if self.config.teacher_latency_s > 0:  # answers that came in before this frame: learned before it is predicted
            self._finalise_arrived(frame, result)
        if not self.config.frozen:
            self._rehearse_until(frame.timestamp)
        stats = frame_statistics(frame.image) if self.experts is not None else None  # (21,), shared with the monitor
        expert = self.experts.route(stats, frame.index) if self.experts is not None else None
        if expert is None:
            prediction = self.learner.predict(frame.image)  # (H, W) uint8, before any learning
        else:  # a banked expert's regime: its own network predicts
            prediction = self.learner.predict(frame.image, model=self.experts.predictor(expert))  # (H, W) uint8
        entropy = confidence = None
        if self.monitor.wants_confidence:  # from the prediction's own logits: no second forward pass
            entropy_t, confidence_t = softmax_confidence(self.learner.last_logits)  # (1,), (1,)
            entropy, confidence = float(entropy_t[0]), float(confidence_t[0])
        shared = {} if stats is None else {"features": stats}  # the experts' statistics: not computed twice
        if self.monitor.update_frame(frame.image, frame.index, entropy, confidence, **shared):
            self._on_drift(frame.index, "input", result)
        if self.experts is not None:
            decided = self.experts.observe(frame.index, stats)
            if decided is not None:
                result.events.append(decided)
        ticket = None
        scheduled = self.scheduler.should_ask() and not self.config.frozen
        if scheduled and self.gate is not None and not self.gate.admit(frame.image):
            scheduled = False  # a static view: the student already learned this frame
        robust = self.probe is not None and self.probe.wants(frame.index)
        if scheduled or robust:
            if self.sync_every and self.synced_at < 0:
                self._sync_student()  # the teacher side's copy starts from the student as it starts
            ticket = self.teacher.submit(frame, frame if handle is None else handle)
            result.asked_teacher = True
            self.teacher_calls += 1
            self.robust_asks += int(not scheduled)
        self.pending.append(_Pending(frame, prediction, ticket, frame.index, robust, self.learner.last_depth))
        result.prediction = prediction
        self._finalise(frame.index - self.config.teacher_latency, result)
        result.teacher_rate = self.scheduler.rate
        every = self.config.checkpoint_every
        if every and self.checkpoint_dir is not None and (frame.index + 1) % every == 0:
            self._finalise(frame.index, result)
            result.events.append(self.save_checkpoint())
        return result

    @property
    def oldest_unfinished(self) -> int:
        """The index of the oldest frame the learner still holds (waiting on its teacher
        answer); ``next_index`` when it holds none."""
        return self.pending[0].frame.index if self.pending else self.next_index

    def flush(self) -> StepResult:
        """Apply every pending teacher answer (end of stream)."""
        result = StepResult(index=self.next_index - 1, asked_teacher=False, teacher_rate=self.scheduler.rate)
        self._finalise(self.next_index - 1, result)
        return result

    def _finalise(self, up_to: int, result: StepResult) -> None:
        while self.pending and self.pending[0].asked_at <= up_to:
            item = self.pending.popleft()
            teacher_labels = None
            record = None
            teacher_depth = None
            if item.ticket is not None:
                output = self.teacher.result(item.ticket)
                teacher_labels = output.labels[0]  # (H, W) uint8
                if item.robust and self.probe is not None:  # before the student learns from the frame
                    record = self.probe.probe(self.learner._predicting(), item.frame.image, teacher_labels, item.frame.index)
                pixel, miou = frame_agreement(item.prediction, teacher_labels)
                if self.monitor.update_disagreement(1.0 - pixel, item.frame.index):
                    self._on_drift(item.frame.index, "disagreement", result)
                self.scheduler.on_agreement(miou if self.config.agreement == "miou" else pixel)
                if output.views is not None:
                    self.view_frames += 1
                    self.view_ms += output.views.ms
                stop_at = self.scheduler.stop_at
                reached: list[float] = []  # jitnet: the agreement at each check of its early stop

                def stop() -> bool:
                    reached.append(self._agreement_now(item.frame.image, teacher_labels))
                    return stop_at is not None and reached[-1] >= stop_at

                if self.learner.depth_weight > 0 and output.depth is not None:
                    teacher_depth = output.depth[0].astype(np.float16)  # (h, w) metres, 0 = none
                features = None if output.features is None else output.features[0]  # (C, h', w')
                if features is None and self.learner.distill.features and not self.warned_features:
                    log.warning("distill.feature_weight > 0 but the teacher's answer for frame %d has no features: "
                                "those frames are distilled from logits only", item.frame.index)
                    self.warned_features = True
                steps = None if stop_at is None else self.scheduler.config.max_updates
                if not self.config.frozen:  # a frozen learner's labels (robustness frames) are scored, never learned from
                    if self.config.settled_agreement > 0 and pixel >= self.config.settled_agreement:
                        steps = 0  # the student already predicts this frame as the teacher does: stored, not stepped on
                        self.settled_frames += 1
                    metrics = self.learner.learn(item.frame.image, teacher_labels, output.logits[0], self.regime,
                                                 catch_up=self.scheduler.trailing, views=output.views,
                                                 steps=steps,
                                                 stop=None if stop_at is None else stop, depth=teacher_depth,
                                                 features=features)
                    if self.scheduler.wants_after:  # the agreement after learning (jitnet: after its last update)
                        done = stop_at is not None and reached[-1] >= stop_at  # else: measured before its last update
                        after = reached[-1] if done else self._agreement_now(item.frame.image, teacher_labels)
                        self.scheduler.on_learned(after)
                    self._maybe_log_rate(item.frame.index, result)
                    result.losses.append(metrics["loss"])
                    if self.sync_every and self.learner.steps - self.synced_at >= self.sync_every:
                        self._sync_student()
            result.outputs.append(LearnerOutput(item.frame.index, item.prediction, teacher_labels, robust=record,
                                                student_depth=item.depth, teacher_depth=teacher_depth))

    def _finalise_arrived(self, frame: Observation, result: StepResult) -> None:
        """Apply, in order, the pending answers asked at least ``teacher_latency_s`` seconds of
        stream time before ``frame`` (to a microsecond: timestamps are sums of float periods), or
        ``teacher_latency`` frames before it (a log whose clock restarts, as a replayed pass,
        still gets its answers)."""
        while self.pending:
            first = self.pending[0]
            waited = frame.timestamp - first.frame.timestamp
            if waited < self.config.teacher_latency_s - 1e-6 and frame.index - first.asked_at < self.config.teacher_latency:
                break
            self._finalise(first.asked_at, result)

    def _rehearse_until(self, timestamp: float) -> None:
        """Spend the stream time since the previous frame on replay steps
        (``online.idle_steps_per_second``; a gap longer than ``idle_max_seconds``, or a clock
        that went back, counts as at most that long)."""
        per_second = self.learner.config.idle_steps_per_second
        last, self.last_timestamp = self.last_timestamp, timestamp
        if per_second <= 0 or last is None:
            return
        gap = min(max(timestamp - last, 0.0), self.learner.config.idle_max_seconds)
        self.idle_credit += gap * per_second
        steps = int(self.idle_credit)
        self.idle_credit -= steps  # spent, whether or not the buffer holds anything to rehearse yet
        if steps:
            self.idle_steps += int(self.learner.rehearse(steps, self.regime)["steps"])

    def _agreement_now(self, image: np.ndarray, teacher_labels: np.ndarray) -> float:
        """The student's agreement (``learner.agreement``) with a teacher frame's labels as it
        predicts now; its batch-norm running statistics are left as they were."""
        with frozen_buffers(self.learner.predictor):
            pixel, miou = frame_agreement(self.learner.predict(image), teacher_labels)
        return miou if self.config.agreement == "miou" else pixel

    def _sync_student(self) -> None:
        """Send the predictor's weights to the teacher side's student copy (counted in bytes)."""
        state = {name: value.detach().cpu().numpy().copy() for name, value in self.learner.predictor.state_dict().items()}
        self.teacher.sync_student(state)
        self.synced_at = self.learner.steps
        self.syncs += 1
        self.sync_bytes += int(sum(value.nbytes for value in state.values()))

    def robust_stats(self) -> dict[str, Any]:
        """The robustness work of the run so far, for its summary."""
        probe = self.probe
        return {"robust_asks": self.robust_asks, "robust_frames": probe.frames if probe else 0,
                "robust_probe_ms": probe.ms_total if probe else 0.0, "student_syncs": self.syncs,
                "student_sync_bytes": self.sync_bytes, "view_frames": self.view_frames, "view_ms": self.view_ms,
                "view_refine_ms": self.learner.refine_ms_total,
                **({"idle_steps": self.idle_steps} if self.learner.config.idle_steps_per_second > 0 else {}),
                **({"settled_frames": self.settled_frames} if self.config.settled_agreement > 0 else {}),
                **({} if self.experts is None else {"experts_restored": self.experts.restores,
                                                    "experts_created": self.experts.created,
                                                    "experts_banked": len(self.experts.banked)})}

    def _on_drift(self, index: int, detector: str, result: StepResult) -> None:
        self.regime += 1
        if self.experts is not None:
            self.experts.on_drift(index)
        rate = self.scheduler.on_drift()
        result.events.append({"kind": "drift", "index": int(index), "detector": detector, "regime": self.regime})
        result.events.append({"kind": "teacher_rate", "index": int(index), "rate": rate, "reason": "drift"})
        self.logged_rate = rate
        log.info("drift at frame %d (%s); teacher rate -> %.2f", index, detector, rate)

    def _maybe_log_rate(self, index: int, result: StepResult) -> None:
        rate = self.scheduler.rate
        if abs(rate - self.logged_rate) >= self.config.rate_event_change * self.logged_rate:
            result.events.append({"kind": "teacher_rate", "index": int(index), "rate": rate, "reason": "agreement"})
            self.logged_rate = rate

    # -- checkpoints ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "next_index": self.next_index,
            "regime": self.regime,
            "logged_rate": self.logged_rate,
            "teacher_calls": self.teacher_calls,
            "robust_asks": self.robust_asks,
            "synced_at": self.synced_at,
            "scheduler": self.scheduler.state(),
            "monitor": self.monitor.state(),
            "optimizer_steps": self.learner.steps,
            "last_timestamp": self.last_timestamp,
            "idle_credit": self.idle_credit,
            "idle_steps": self.idle_steps,
            "settled_frames": self.settled_frames,
            "replay_rng": self.learner.replay.rng.bit_generator.state,
            "experts": None if self.experts is None else self.experts.state(),
            **({"static_gate": self.gate.state()} if self.gate is not None else {}),
        }

    def save_checkpoint(self) -> dict[str, Any]:
        """Write ``checkpoints/learner_<frame>.safetensors`` (pending answers must be drained)."""
        assert self.checkpoint_dir is not None
        if self.pending:
            raise RuntimeError("cannot checkpoint with teacher answers still pending")
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"learner_{self.next_index:08d}.safetensors"
        tmp = path.with_suffix(".tmp")
        tensors = self.learner.state_tensors()
        if self.experts is not None:
            tensors.update(self.experts.state_tensors())
        save_file(tensors, str(tmp), metadata={"state": json.dumps(self._state())})
        tmp.replace(path)
        for old in sorted(self.checkpoint_dir.glob("learner_*.safetensors"))[: -self.config.keep_checkpoints]:
            old.unlink()
        log.info("checkpoint %s", path)
        return {"kind": "checkpoint", "index": self.next_index - 1, "path": str(path)}

    def restore_latest(self) -> bool:
        """Load the newest checkpoint in ``checkpoint_dir``; returns whether one was found."""
        assert self.checkpoint_dir is not None
        found = sorted(self.checkpoint_dir.glob("learner_*.safetensors")) if self.checkpoint_dir.exists() else []
        if not found:
            return False
        path = found[-1]
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            state = json.loads(handle.metadata()["state"])
        tensors = load_file(str(path))
        self.learner.load_state_tensors(tensors)
        if self.experts is not None and state.get("experts"):
            self.experts.load_state(state["experts"], tensors)
        self.next_index = int(state["next_index"])
        self.regime = int(state["regime"])
        self.logged_rate = float(state["logged_rate"])
        self.teacher_calls = int(state["teacher_calls"])
        self.robust_asks = int(state.get("robust_asks", 0))
        self.synced_at = -1  # a restarted learner syncs the teacher side's copy again before its next ask
        self.learner.steps = int(state["optimizer_steps"])
        last = state.get("last_timestamp")
        self.last_timestamp = None if last is None else float(last)
        self.idle_credit = float(state.get("idle_credit", 0.0))
        self.idle_steps = int(state.get("idle_steps", 0))
        self.settled_frames = int(state.get("settled_frames", 0))
        self.scheduler.load_state(state["scheduler"])
        self.monitor.load_state(state["monitor"])
        self.learner.replay.rng.bit_generator.state = state["replay_rng"]
        if self.gate is not None and "static_gate" in state:
            self.gate.load_state(state["static_gate"])
        log.warning("learner restored from %s, resuming at frame %d", path, self.next_index)
        return True
