"""Robustness on the stream: the current student attacked and corrupted on sampled frames.

On every ``evaluator.robust_every``-th frame (``index % N == 0``) the stream learner asks the
teacher (whatever the scheduler says) and, once the answer is there and *before* the student
learns from the frame, hands the frame to :class:`RobustProbe`. The probe attacks the student
as it is at that moment:

- PGD at each radius of ``evaluator.robust_eps`` (L-inf, ``robust_steps`` iterations of a
  cosine step schedule with momentum, ``robust_restarts`` random restarts, the worst iterate
  per image kept), with each loss of
  ``robust_loss`` (CE and SegPGD by default; the one that hurts the student more is kept), aimed at the
  teacher's labels of the frame (the learner never sees ground truth, and the teacher's labels
  are the closest thing to it the car has);
- each Kornia preset of ``evaluator.corruptions`` once, seeded by the frame;
- worst-of-k: ``evaluator.worst_k`` Kornia views, the one that hurts the student most kept,
  with a few signed-gradient steps on a differentiable preset's parameters.

It returns the student's labels on every view (a :class:`~learners.records.RobustRecord`); the
evaluator scores them against the ground truth and the teacher's labels. The probe leaves the
student exactly as it was (weights, gradients, batch-norm statistics), so a run with it
learns the same as one without, frame for frame.

Example:
    >>> import numpy as np
    >>> from perception.evaluator import EvaluatorConfig
    >>> from perception.nets import SegNet, STUDENT_CONFIG
    >>> probe = RobustProbe(EvaluatorConfig(robust_every=10, robust_steps=2, corruptions="brightness", worst_k=2), seed=0)
    >>> probe.wants(20), probe.wants(21)
    (True, False)
    >>> record = probe.probe(SegNet(STUDENT_CONFIG).eval(), np.zeros((32, 64, 3), np.uint8), np.zeros((32, 64), np.uint8), 20)
    >>> sorted(record.labels)
    ['brightness', 'pgd 2/255', 'pgd 4/255', 'pgd 8/255', 'worst_of_k']
"""
from __future__ import annotations

import logging
import time
import numpy as np
import torch
from torch import nn

from learners.records import RobustRecord
from perception.argmax import net_labels
from perception.attacks import AttackConfig, attack
from perception.corruptions import check_presets, corrupt, worst_of_k
from perception.evaluator import EvaluatorConfig
from perception.labels import IGNORE_INDEX
from perception.model_state import frozen_buffers
from perception.teachers.common import images_to_tensor
from perception.views import eps_name, frame_seed, parse_eps_list

log = logging.getLogger(__name__)

WORST_OF_K = "worst_of_k"
EVAL_PARAM_STEPS = 2  # signed-gradient steps on a differentiable preset's parameters in the worst-of-k view


def attack_name(eps: float) -> str:
    """The summary's name of the PGD view at radius ``eps``.

    Example:
        >>> attack_name(4 / 255)
        'pgd 4/255'
    """
    return f"pgd {eps_name(eps)}"


def predicted_labels(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The student's labels as the learner predicts them (coarse logits upsampled by the
    fused kernel when the net has them).

    Shape:
        x (1, 3, H, W) float in [0, 1] -> (H, W) uint8
    """
    with torch.no_grad(), frozen_buffers(model):
        return net_labels(model, x)  # (H, W) uint8


def _labels(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """:func:`predicted_labels` inside the probe, whose own :func:`frozen_buffers` covers it."""
    with torch.no_grad():
        return net_labels(model, x)  # (H, W) uint8


class RobustProbe:
    """Attacks and corrupts the current student on the sampled frames (module docstring)."""

    def __init__(self, config: EvaluatorConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        losses = config.robust_losses()
        self.attacks = [(attack_name(eps), [AttackConfig(kind="pgd", norm="linf", eps=eps, steps=config.robust_steps,
                                                         step_size=eps * config.robust_step, restarts=config.robust_restarts,
                                                         loss=loss, momentum=config.robust_momentum,
                                                         schedule=config.robust_schedule) for loss in losses])
                        for eps in parse_eps_list(config.robust_eps, "evaluator.robust_eps")]
        self.presets = check_presets(config.corruptions, "evaluator.corruptions") if config.corruptions.strip() else ()
        self.worst_k = config.worst_k if self.presets else 0
        self.frames = 0
        self.ms_total = 0.0

    def wants(self, index: int) -> bool:
        """Whether frame ``index`` is a robustness frame."""
        every = self.config.robust_every
        return every > 0 and index % every == 0

    def probe(self, model: nn.Module, image: np.ndarray, reference: np.ndarray, index: int) -> RobustRecord:
        """The student's labels on every view of one frame.

        ``model``: the student's predictor, in the mode it predicts in (left as it was).

        Shape:
            image (H, W, 3) uint8, reference (H, W) uint8 teacher labels (255 = none) -> RobustRecord
        """
        started = time.perf_counter()
        device = next(model.parameters()).device
        x = images_to_tensor(image[None], device)  # (1, 3, H, W)
        target = torch.from_numpy(np.ascontiguousarray(reference)).to(device).long()[None]  # (1, H, W)
        labels: dict[str, np.ndarray] = {}
        transforms: dict[str, list[list[float]]] = {}
        with frozen_buffers(model):
            valid = reference != IGNORE_INDEX  # (H, W)
            for name, configs in self.attacks:
                worst = 2.0
                for config in configs:  # each loss; the labels of the one that hurts most are kept
                    adversarial = attack(model, x, target, config, seed=frame_seed(self.seed, index, name))  # (1, 3, H, W)
                    predicted = _labels(model, adversarial)  # (H, W)
                    accuracy = float((predicted[valid] == reference[valid]).mean()) if valid.any() else 0.0
                    if accuracy < worst:
                        labels[name], worst = predicted, accuracy
            for preset in self.presets:
                view = corrupt(preset, x, target, seed=frame_seed(self.seed, index, preset))
                labels[preset] = _labels(model, view.images)
                if view.transform is not None:
                    transforms[preset] = view.transform[0].tolist()
            if self.worst_k > 0:
                view = worst_of_k(model, x, target, self.presets, self.worst_k, seed=frame_seed(self.seed, index, WORST_OF_K),
                                  param_steps=EVAL_PARAM_STEPS)
                labels[WORST_OF_K] = _labels(model, view.images)
                if view.transform is not None:
                    transforms[WORST_OF_K] = view.transform[0].tolist()
        ms = (time.perf_counter() - started) * 1000.0
        self.frames += 1
        self.ms_total += ms
        return RobustRecord(labels=labels, transforms=transforms, ms=ms)
