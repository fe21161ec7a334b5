"""The parts' builders: the student, the teacher and the stream learner of a run, from its config.

Both runners build the same parts with these functions, so a seed and a config give the same
metrics in either. This module imports torch; the torch-free parts (ingest, evaluator) and the
driver do not import it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learners.stream_learner import StreamLearner, TeacherClient
from perception.student_nets import build_student_net
from perception.teacher import TeacherOutput
from perception.weights import WEIGHTS_DIR, load_weights
from stream.config import ConfigError, RunConfig

log = logging.getLogger(__name__)

STUDENT_WEIGHTS = WEIGHTS_DIR / "student_clear_oldtown.safetensors"


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


class GridAlignedTeacher:
    """A teacher whose logits always sit on a whole-pixel grid of the frame.

    The online learner crops a frame and the teacher's logits at the same place, which needs
    the logits at an integer stride of the frame. A teacher that ships them on another grid
    (ESPNetv2 gives 192x256 for a 360x480 frame) has them resampled (bilinear) to the frame
    at 1/``stride``, the largest stride <= ``stride`` that divides both sides; a teacher
    already on such a grid (the sim teacher) is passed through untouched. Every other
    attribute is the wrapped teacher's.

    Example:
        >>> class Odd:
        ...     name, device, params = "odd", "cpu", 1
        ...     def label(self, images):
        ...         b, h, w = images.shape[:3]
        ...         return TeacherOutput(np.zeros((b, h, w), np.uint8), np.zeros((b, 19, 7, 9), np.float32))
        >>> GridAlignedTeacher(Odd(), stride=4).label(np.zeros((1, 36, 48, 3), np.uint8)).logits.shape
        (1, 19, 9, 12)
        >>> GridAlignedTeacher(Odd(), stride=4).name
        'odd'
    """

    def __init__(self, teacher: Any, stride: int) -> None:
        if stride < 1:
            raise ValueError(f"GridAlignedTeacher: stride must be >= 1, got {stride}")
        self.teacher = teacher
        self.stride = stride

    def __getattr__(self, name: str) -> Any:
        if name == "teacher":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.teacher, name)

    def label(self, images: np.ndarray) -> TeacherOutput:
        """Shape: images (B, H, W, 3) uint8 -> labels (B, H, W) uint8, logits (B, K, H/s, W/s)."""
        out = self.teacher.label(images)
        height, width = images.shape[1:3]
        grid_h, grid_w = out.logits.shape[-2:]
        if height % grid_h == 0 and width % grid_w == 0 and height // grid_h == width // grid_w:
            return out
        stride = next(s for s in range(self.stride, 0, -1) if height % s == 0 and width % s == 0)
        logits = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(out.logits)).float(),
                                                 size=(height // stride, width // stride), mode="bilinear",
                                                 align_corners=False)  # (B, K, H/s, W/s)
        return TeacherOutput(labels=out.labels, logits=logits.numpy())


def build_teacher(config: RunConfig) -> Any:
    """The teacher ``teacher.spec`` names, its logits on a grid the learner can crop."""
    from perception.teachers import open_teacher

    teacher = open_teacher(config.teacher.spec, device=config.teacher.device, logits_stride=config.teacher.logits_stride)
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

