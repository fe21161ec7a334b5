"""The online student learner: predict a frame, learn from teacher-labelled frames with replay.

Example:
    >>> import numpy as np
    >>> from perception.nets import SegNet, STUDENT_CONFIG
    >>> learner = OnlineLearner(OnlineConfig(batch_size=2), SegNet(STUDENT_CONFIG), seed=0)
    >>> image = np.zeros((32, 64, 3), np.uint8)
    >>> learner.predict(image).shape
    (32, 64)
    >>> sorted(learner.learn(image, np.zeros((32, 64), np.uint8), None, regime=0))
    ['loss', 'replay_size']
"""
from __future__ import annotations

import contextlib
import copy
import logging
from typing import Iterator

import numpy as np
import torch
from torch import nn

from learners.configs import DistillationConfig, OnlineConfig
from learners.losses import DistillationLoss
from learners.replay import ReplayBuffer, ReplayConfig
from perception.argmax import class_labels, upsampled_class_labels
from perception.device import resolve_device
from perception.teachers.common import images_to_tensor

log = logging.getLogger(__name__)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads (0 = leave the setting alone).

    Example:
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    before = torch.get_num_threads()
    if count <= 0 or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class OnlineLearner:
    """A student network, its optimiser, a distillation loss and a replay buffer."""

    def __init__(
        self,
        config: OnlineConfig,
        model: nn.Module,
        seed: int,
        distill: DistillationConfig = DistillationConfig(),
        replay: ReplayConfig = ReplayConfig(),
        device: str = "cpu",
    ):
        self.config = config
        self.device = resolve_device(device, setting="student.device")
        self.model = model.to(self.device)
        self.loss = DistillationLoss(distill)
        self.replay = ReplayBuffer(replay, seed=seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.steps = 0
        # torch threads for gradient steps only (0 = torch's setting); both runners predict
        # on one thread and train on every core (see stream.config.RunSection.train_threads)
        self.train_threads = 0
        self.rng = self.replay.rng  # one seeded generator for replay draws and crops
        # the predictor: the trained model itself, or a moving average of its weights (online.ema)
        self.average = copy.deepcopy(self.model).requires_grad_(False) if config.ema > 0 else None

    @property
    def predictor(self) -> nn.Module:
        """The network that predicts frames: the moving average when ``ema`` > 0, else the model."""
        return self.model if self.average is None else self.average

    @torch.no_grad()
    def _update_average(self) -> None:
        """average <- ema * average + (1 - ema) * model, for weights and batch-norm statistics."""
        if self.average is None:
            return
        for avg, new in zip(self.average.state_dict().values(), self.model.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.lerp_(new, 1.0 - self.config.ema)
            else:
                avg.copy_(new)  # counters such as num_batches_tracked

    def _crop(self, images: np.ndarray, targets: np.ndarray, teacher: np.ndarray | None):
        """Random crops (one per sample), aligned to the teacher logits' grid.

        Shape:
            images (B, H, W, 3), targets (B, H, W), teacher (B, K, h, w) -> the same, cropped
        """
        ch, cw = self.config.crop
        batch, height, width = targets.shape
        if ch <= 0 or cw <= 0 or (ch >= height and cw >= width):
            return images, targets, teacher
        ch, cw = min(ch, height), min(cw, width)
        stride = height // teacher.shape[2] if teacher is not None else 1
        out_i, out_t, out_s = [], [], []
        for b in range(batch):
            top = int(self.rng.integers(0, (height - ch) // stride + 1)) * stride
            left = int(self.rng.integers(0, (width - cw) // stride + 1)) * stride
            out_i.append(images[b, top : top + ch, left : left + cw])
            out_t.append(targets[b, top : top + ch, left : left + cw])
            if teacher is not None:
                out_s.append(teacher[b, :, top // stride : (top + ch) // stride, left // stride : (left + cw) // stride])
        return np.stack(out_i), np.stack(out_t), (np.stack(out_s) if teacher is not None else None)

    def _training_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: x (B, 3, H, W) -> logits (B, K, H, W), or on the net's own grid (loss_grid "net")."""
        if self.config.loss_grid == "net" and hasattr(self.model, "coarse_logits"):
            return self.model.coarse_logits(x)
        return self.model(x)

    def _predicting(self) -> nn.Module:
        """The predictor, in the batch-norm mode of ``online.predict_bn``."""
        return self.predictor.train(self.config.predict_bn == "frame")

    @torch.inference_mode()
    def predict_logits(self, image: np.ndarray) -> torch.Tensor:
        """Shape: image (H, W, 3) uint8 -> logits (1, K, H, W)."""
        return self._predicting()(images_to_tensor(image[None], self.device))

    @torch.inference_mode()
    def predict(self, image: np.ndarray) -> np.ndarray:
        """Shape: image (H, W, 3) uint8 -> labels (H, W) uint8.

        A net with ``coarse_logits`` (every student net: its ``forward`` is their bilinear
        upsampling) gives labels straight from its coarse grid, without the full-size map
        (:func:`perception.argmax.upsampled_class_labels`: that step about three times faster,
        the whole prediction 1.1-1.2x, ``bench/predict.py``).
        """
        coarse = getattr(self._predicting(), "coarse_logits", None)
        if coarse is None:
            return class_labels(self.predict_logits(image)[0])  # (H, W) uint8
        height, width = image.shape[:2]
        logits = coarse(images_to_tensor(image[None], self.device))  # (1, K, H/s, W/s)
        return upsampled_class_labels(logits[0], height, width)  # (H, W) uint8

    def learn(self, image: np.ndarray, labels: np.ndarray, logits: np.ndarray | None, regime: int,
              catch_up: bool = False) -> dict[str, float]:
        """Store the labelled frame, then take ``steps_per_label`` steps on it plus replay
        (``catch_up_steps`` when ``catch_up``: the student trails the teacher).

        Shape:
            image (H, W, 3) uint8, labels (H, W) uint8, logits (K, h, w) or None
        """
        with torch_threads(self.train_threads):
            return self._learn(image, labels, logits, regime, catch_up)

    def _learn(self, image: np.ndarray, labels: np.ndarray, logits: np.ndarray | None, regime: int,
               catch_up: bool) -> dict[str, float]:
        small_logits = None if logits is None else logits.astype(np.float16)
        self.replay.add(image, labels, small_logits, regime)
        total = 0.0
        self.model.train()
        steps = self.config.catch_up_steps if catch_up and self.config.catch_up_steps > 0 else self.config.steps_per_label
        for _ in range(steps):
            batch = self.replay.sample(self.config.batch_size - 1, current_regime=regime)
            images = np.stack([image] + [s.image for s in batch])  # (B, H, W, 3)
            targets = np.stack([labels] + [s.labels for s in batch])  # (B, H, W)
            use_soft = small_logits is not None and all(s.logits is not None for s in batch)
            soft = np.stack([small_logits] + [s.logits for s in batch]) if use_soft else None  # (B, K, h, w)
            images, targets, soft = self._crop(images, targets, soft)
            teacher = None if soft is None else torch.from_numpy(soft).to(self.device).float()  # (B, K, h', w')
            out = self._training_logits(images_to_tensor(images, self.device))  # (B, K, h, w)
            loss = self.loss(out, torch.from_numpy(targets).to(self.device).long(), teacher)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self._update_average()
            self.steps += 1
            total += float(loss.detach())
        return {"loss": total / steps, "replay_size": float(len(self.replay))}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Weights, optimiser moments and replay as flat tensors (for a safetensors checkpoint)."""
        out = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if self.average is not None:
            out.update({f"average.{k}": v.detach().cpu().contiguous() for k, v in self.average.state_dict().items()})
        opt = self.optimizer.state_dict()
        for pid, state in opt["state"].items():
            for key, value in state.items():
                out[f"optim.{pid}.{key}"] = torch.as_tensor(value).cpu().contiguous()
        for key, value in self.replay.state_arrays().items():
            out[key] = torch.from_numpy(np.ascontiguousarray(value))
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_state, strict=True)
        if self.average is not None:
            average_state = {k[len("average."):]: v for k, v in tensors.items() if k.startswith("average.")}
            self.average.load_state_dict(average_state or model_state, strict=True)
        opt = self.optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                opt["state"].setdefault(int(pid), {})[name] = value.clone()
        self.optimizer.load_state_dict(opt)
        self.replay.load_state_arrays({k: v.numpy() for k, v in tensors.items() if k.startswith("replay.")})
