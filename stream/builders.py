"""The parts' builders: the student, the teacher and the stream learner of a run, from its config.

Both runners build the same parts with these functions, so a seed and a config give the same
metrics in either. This module imports torch; the torch-free parts (ingest, evaluator) and the
driver do not import it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch

from learners.robust_probe import RobustProbe
from learners.stream_learner import StreamLearner, TeacherClient
from perception.student_nets import build_student_net
from perception.teachers.grid import GridAlignedTeacher
from perception.weights import WEIGHTS_DIR, load_weights
from stream.config import ConfigError, RunConfig

log = logging.getLogger(__name__)

STUDENT_WEIGHTS = WEIGHTS_DIR / "student_clear_oldtown.safetensors"


def shipped_student_weights(net: str) -> Path:
    """The shipped clear-day starting student of architecture ``net`` (``student.weights=default``):
    ``student_clear_oldtown.safetensors`` for the default net, ``student_clear_oldtown_NET.safetensors``
    for the others that ``bench/ceiling.py --ship`` trained on the same worlds."""
    return STUDENT_WEIGHTS if net == "default" else WEIGHTS_DIR / f"student_clear_oldtown_{net}.safetensors"


def build_student(config: RunConfig) -> torch.nn.Module:
    """The student network (``student.net``) with its starting weights (``student.weights``)."""
    with torch.random.fork_rng():
        torch.manual_seed(config.run.seed)
        model = build_student_net(config.student.net)
    weights = config.student.weights
    if weights == "default":
        shipped = shipped_student_weights(config.student.net)
        if not shipped.is_file():
            raise ConfigError(f"student.weights=default: no shipped starting student for student.net={config.student.net} "
                              f"({shipped.name}); give a weights path (or none)")
        load_weights(model, shipped)
    elif weights != "none":
        load_weights(model, weights)
    if config.distill.depth_weight > 0:  # a fresh depth head beside the loaded segmentation weights
        from perception.depth import attach_depth_head

        with torch.random.fork_rng():
            torch.manual_seed(config.run.seed + 1)
            attach_depth_head(model)
    return model



def student_from_checkpoint(config: RunConfig, path: str | Path) -> torch.nn.Module:
    """The predictor a learner checkpoint holds (its EMA weights where the run keeps them, else
    its weights), in the batch-norm mode the run predicts in (``online.predict_bn``: running
    statistics, or each frame's own)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    prefix = "average." if any(k.startswith("average.") for k in tensors) else "model."
    model = build_student(dataclasses.replace(config, student=dataclasses.replace(config.student, weights="none")))
    model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    model.train(config.online.predict_bn == "frame")
    experts = checkpoint_state(path).get("experts")
    if not experts or config.experts.route == "active":
        return model
    from learners.experts import ExpertRouter, Signature, expert_tensors, predictor_from_state

    nets, signatures = [model], [Signature.from_state(experts["active"])]
    for row in experts["banked"]:
        nets.append(predictor_from_state(model, expert_tensors(tensors, int(row["id"]))))
        signatures.append(Signature.from_state(row["signature"]))
    ready = experts.get("pending") is None and signatures[0].n >= config.experts.warmup
    return ExpertRouter(nets, signatures, config.experts, active_ready=ready).train(model.training)


def checkpoint_state(path: str | Path) -> dict[str, Any]:
    """The plain-JSON learner state a checkpoint carries in its metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads((handle.metadata() or {}).get("state", "{}"))

def build_teacher(config: RunConfig) -> Any:
    """The teacher ``teacher.spec`` names (averaged over ``teacher.tta``'s views), its logits on a
    grid the learner can crop."""
    from perception.teachers import open_teacher

    teacher = open_teacher(config.teacher.spec, device=config.teacher.device, logits_stride=config.teacher.logits_stride,
                           input_size=config.teacher.input_size, tta=config.teacher.tta,
                           tta_scales=config.teacher.tta_scales, tta_average=config.teacher.tta_average)
    return GridAlignedTeacher(teacher, config.teacher.logits_stride)


def ask_teacher_features(config: RunConfig, teacher: Any) -> None:
    """With feature distillation on (``distill.feature_weight`` > 0), ask the teacher to ship
    its ``distill.feature_layer`` map at ``distill.feature_stride`` with every answer; a teacher
    that cannot is refused with an error naming the setting. Off: the teacher is left alone."""
    if not config.distill.features:
        return
    from perception.teacher import TeacherFeatureError, request_features

    try:
        request_features(teacher, config.distill.feature_layer, config.distill.feature_stride)
    except TeacherFeatureError as error:
        raise ConfigError(str(error)) from None


def build_view_maker(config: RunConfig, teacher: Any) -> Any:
    """The teacher part's :class:`~perception.view_maker.ViewMaker` (``adversarial.enabled``), or None.

    ``adversarial.target=teacher`` with a teacher that has no gradients (ONNX; TorchScript
    without autograd) is refused with an error naming the setting, unless
    ``adversarial.fallback`` lets the views aim at the student copy instead (with a warning).
    """
    views = config.adversarial
    if not views.enabled:
        return None
    from perception.teachers.gradients import TeacherGradientError, gradient_model
    from perception.view_maker import ViewMaker

    teacher_model = None
    if views.target == "teacher":
        try:
            teacher_model = gradient_model(teacher)
        except TeacherGradientError as error:
            if not views.fallback:
                raise ConfigError(f"adversarial.target=teacher: {error}; set adversarial.target=student, or "
                                  f"adversarial.fallback=true to aim the attacks at the student when the teacher "
                                  f"has none") from None
            log.warning("adversarial.target=teacher: %s; adversarial.fallback=true: the attacks aim at the student", error)
            views = dataclasses.replace(views, target="student")
    return ViewMaker(views, config.student.net, seed=config.run.seed, device=str(teacher.device),
                     teacher_model=teacher_model, frame_bn=config.online.predict_bn == "frame")


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
        probe=RobustProbe(config.evaluator, seed=config.run.seed) if config.evaluator.robust_every > 0 else None,
        sync_every=config.adversarial.sync_every if config.adversarial.enabled else 0,
        robust=config.robust,
        experts=config.experts,
        static=config.static,
    )
    learner.learner.train_threads = config.run.train_threads()
    return learner

