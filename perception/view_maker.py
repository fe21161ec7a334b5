"""The teacher side's view maker: adversarial and worst-of-k Kornia views of labelled frames.

The teacher part (in-process, or the teacher actor under Ray, on the GPU when there is one)
owns a :class:`ViewMaker`. It holds a copy of the student, which the learner syncs every
``adversarial.sync_every`` learning steps (:meth:`ViewMaker.sync`; the bytes are counted),
so that the views hurt the student as it is now. For each frame the teacher labels (a
``adversarial.fraction`` of them, a fixed draw per frame) :meth:`ViewMaker.make` gives a
:class:`~perception.views.FrameViews`:

- ``adversarial``: the frame under the configured gradient attack (FGSM or PGD, L-inf or L2,
  CE or SegPGD loss) aimed at the teacher's labels, against the student copy
  (``adversarial.target=student``) or the teacher's own network (``target=teacher``);
- ``corrupted``: the worst of ``adversarial.worst_k`` Kornia views for the student copy, with
  ``adversarial.param_steps`` signed-gradient steps on a differentiable preset's parameters;
  the teacher's labels move with a geometric view.

Views are quantised to uint8 (what a camera gives; a quarter of the float bytes on the wire);
an L-inf attack whose radius is a whole number of 8-bit steps stays inside its ball.

Example:
    >>> import numpy as np
    >>> from perception.views import ViewConfig
    >>> maker = ViewMaker(ViewConfig(enabled=True, steps=1, worst_k=2, presets="brightness,gamma"), "default", seed=0)
    >>> views = maker.make(np.full((32, 64, 3), 128, np.uint8), np.zeros((32, 64), np.uint8), index=0)
    >>> views.adversarial.shape, views.corrupted.dtype, views.recipe["preset"]["preset"] in ("brightness", "gamma")
    ((32, 64, 3), dtype('uint8'), True)
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from perception.attacks import attack
from perception.corruptions import GEOMETRIC, worst_of_k
from perception.student_nets import build_student_net
from perception.teachers.common import images_to_tensor
from perception.views import FrameViews, ViewConfig, frame_draw, frame_seed

log = logging.getLogger(__name__)


def to_uint8_image(x: torch.Tensor) -> np.ndarray:
    """Shape: x (1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (x[0].permute(1, 2, 0) * 255.0).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()  # (H, W, 3)


class ViewMaker:
    """Makes the views of labelled frames against a synced student copy (module docstring).

    Args:
        config: the run's ``[adversarial]`` section.
        student_net: the student's architecture name (``student.net``) for the copy.
        seed: the run's seed (each frame's views are seeded by it and the frame index).
        device: where the copy and the attacks run (the teacher's device).
        teacher_model: the teacher as a differentiable module
            (:func:`perception.teachers.gradients.gradient_model`); needed for ``target=teacher``.
        frame_bn: the student predicts with the frame's own batch-norm statistics
            (``online.predict_bn=frame``): the copy runs in train mode, its statistics frozen.
    """

    def __init__(self, config: ViewConfig, student_net: str, seed: int, device: str = "cpu",
                 teacher_model: nn.Module | None = None, frame_bn: bool = False) -> None:
        if config.target == "teacher" and teacher_model is None:
            raise ValueError("adversarial.target=teacher needs the teacher's differentiable network")
        self.config = config
        self.seed = seed
        self.device = torch.device(device)
        self.attack_config = config.attack_config()
        self.presets = config.preset_names()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.student = build_student_net(student_net)
        self.student.requires_grad_(False).to(self.device).train(frame_bn)
        self.target_model = teacher_model if config.target == "teacher" else self.student
        self.syncs = 0
        self.sync_bytes = 0
        self.frames = 0
        self.ms_total = 0.0

    def sync(self, state: dict[str, np.ndarray]) -> int:
        """Load the learner's student weights into the copy; returns the bytes received."""
        tensors = {name: torch.from_numpy(np.asarray(value)) for name, value in state.items()}
        self.student.load_state_dict(tensors, strict=True)
        size = int(sum(np.asarray(value).nbytes for value in state.values()))
        self.syncs += 1
        self.sync_bytes += size
        return size

    def wants(self, index: int) -> bool:
        """Whether frame ``index`` gets views (a fixed draw per frame: retries and both runners agree)."""
        return self.config.enabled and frame_draw(self.seed, index, "views") < self.config.fraction

    def make(self, image: np.ndarray, labels: np.ndarray, index: int) -> FrameViews:
        """The views of one teacher-labelled frame.

        Shape:
            image (H, W, 3) uint8, labels (H, W) uint8 teacher labels (255 = none) -> FrameViews
        """
        started = time.perf_counter()
        x = images_to_tensor(image[None], self.device)  # (1, 3, H, W)
        target = torch.from_numpy(np.ascontiguousarray(labels)).to(self.device).long()[None]  # (1, H, W)
        attack_seed = frame_seed(self.seed, index, "attack")
        adversarial = attack(self.target_model, x, target, self.attack_config, seed=attack_seed)  # (1, 3, H, W)
        view = worst_of_k(self.student, x, target, self.presets, self.config.worst_k,
                          seed=frame_seed(self.seed, index, "kornia"), param_steps=self.config.param_steps)
        moved = view.labels[0].clamp(0, 255).to(torch.uint8).cpu().numpy() if view.labels is not None else labels  # (H, W)
        ms = (time.perf_counter() - started) * 1000.0
        self.frames += 1
        self.ms_total += ms
        recipe: dict[str, Any] = {"attack": {**self.config.attack_settings(), "target": self.config.target, "seed": attack_seed},
                                  "preset": view.recipe.to_json()}
        return FrameViews(adversarial=to_uint8_image(adversarial), corrupted=to_uint8_image(view.images),
                          corrupted_labels=moved, corrupted_aligned=view.recipe.preset not in GEOMETRIC,
                          recipe=recipe, ms=ms)

    def stats(self) -> dict[str, Any]:
        """Counts for the run's summary."""
        return {"frames": self.frames, "ms_total": self.ms_total, "syncs": self.syncs, "sync_bytes": self.sync_bytes,
                "target": self.config.target}
