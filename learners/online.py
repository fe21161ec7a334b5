"""The online student learner: predict a frame, learn from teacher-labelled frames with replay.

With a robust loss (:class:`learners.configs.RobustDistillConfig`) each step also trains on
the robustness views the teacher side sent with the frames (:class:`perception.views.FrameViews`):
the adversarial view of every sample in the batch is first refreshed against the current
student and written back to the replay buffer (see :meth:`OnlineLearner._refine`), then the
robust loss (:mod:`learners.robust_losses`) is taken on the clean and adversarial crops, plus
a term on the Kornia views where samples have one.

With feature distillation (``distill.feature_weight`` > 0) the teacher's feature map travels
with the labelled frame into the replay buffer like its logits, is cropped with the same
windows, and each step adds ``feature_weight`` times the distance between it and the
student's map of the same layer through the learner's adapter (:mod:`learners.features`;
the adapter is made when the first feature map arrives, as its channel count is the teacher's).

Example:
    >>> import numpy as np
    >>> from perception.nets import SegNet, STUDENT_CONFIG
    >>> learner = OnlineLearner(OnlineConfig(batch_size=2), SegNet(STUDENT_CONFIG), seed=0)
    >>> image = np.zeros((32, 64, 3), np.uint8)
    >>> learner.predict(image).shape
    (32, 64)
    >>> sorted(learner.learn(image, np.zeros((32, 64), np.uint8), None, regime=0))
    ['loss', 'replay_size', 'steps']
"""
from __future__ import annotations

import contextlib
import copy
import logging
import time
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from learners.configs import DistillationConfig, OnlineConfig, RobustDistillConfig
from learners.features import FeatureDistiller
from learners.losses import DistillationLoss, hard_label_loss
from learners.replay import ReplayBuffer, ReplayConfig, ReplaySample
from learners.robust_losses import RobustDistillationLoss
from perception.argmax import net_labels_and_logits, upsampled_class_labels
from perception.depth import coarse_outputs, has_depth, log_depth_l1
from perception.device import resolve_device
from perception.model_state import frozen_buffers, running_statistics_paused
from perception.teachers.common import images_to_tensor
from perception.views import FrameViews

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


def _under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` whose name starts with ``prefix``, the prefix taken off.

    >>> _under({"model.w": 1, "average.w": 2}, "model.")
    {'w': 1}
    """
    return {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}


class OnlineLearner:
    """A student network, its optimiser, a distillation loss (plain or robust) and a replay buffer."""

    def __init__(
        self,
        config: OnlineConfig,
        model: nn.Module,
        seed: int,
        distill: DistillationConfig = DistillationConfig(),
        replay: ReplayConfig = ReplayConfig(),
        device: str = "cpu",
        robust: RobustDistillConfig = RobustDistillConfig(),
    ):
        self.config = config
        self.device = resolve_device(device, setting="student.device")
        self.model = model.to(self.device)
        self.loss = DistillationLoss(distill)
        self.depth_weight = distill.depth_weight
        if self.depth_weight > 0 and not has_depth(self.model):
            raise ValueError("distill.depth_weight > 0 needs a student with a depth head (perception.depth."
                             "attach_depth_head; stream.builders.build_student gives it one)")
        if self.depth_weight > 0 and robust.loss != "none":
            raise ValueError(f"distill.depth_weight > 0 is not combined with robust.loss={robust.loss}: "
                             f"set robust.loss=none or distill.depth_weight=0")
        if self.depth_weight > 0 and distill.features:
            raise ValueError("distill.depth_weight and distill.feature_weight are not combined yet: set one of them to 0")
        self.distill = distill
        self.seed = seed
        if distill.features and not hasattr(self.model, "tap"):
            raise ValueError(f"distill.feature_weight={distill.feature_weight} needs a student net with feature taps; "
                             f"{type(self.model).__name__} has none (every perception.student_nets net has)")
        self.features: FeatureDistiller | None = None  # the adapter, once the teacher's first feature map came
        self.robust = robust
        self.robust_loss = None if robust.loss == "none" else RobustDistillationLoss(robust, distill)
        self.refine_ms_total = 0.0  # wall milliseconds spent refining adversarial views (cumulative)
        self.replay = ReplayBuffer(replay, seed=seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.steps = 0
        # torch threads for gradient steps only (0 = torch's setting); both runners predict
        # on one thread and train on every core (see stream.config.RunSection.train_threads)
        self.train_threads = 0
        self.rng = self.replay.rng  # one seeded generator for replay draws and crops
        # the predictor: the trained model itself, or a moving average of its weights (online.ema)
        self.average = copy.deepcopy(self.model).requires_grad_(False) if config.ema > 0 else None
        # stochastic restore (online.restore_prob): the starting weights and the draws' own generator
        self.source: dict[str, torch.Tensor] | None = None
        self.restore_rng: torch.Generator | None = None
        if config.restore_prob > 0:
            self.source = {name: p.detach().clone() for name, p in self.model.named_parameters()}
            self.restore_rng = torch.Generator(device=self.device).manual_seed(seed + 7919)
        self.last_logits: torch.Tensor | None = None  # (1, K, h, w) the last predict's logits (coarse grid if any)
        self.last_depth: np.ndarray | None = None  # (h, w) float16 metres: the last predict's depth (depth head only)

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

    def _feature_distiller(self, teacher_channels: int) -> FeatureDistiller:
        """The adapter to ``teacher_channels`` (made on first use, its parameters added to the
        optimiser: the adapter trains with the student)."""
        if self.features is None:
            self.features = FeatureDistiller(self.model, self.distill.feature_layer, teacher_channels, seed=self.seed)
            self.features.adapter.to(self.device)
            self.optimizer.add_param_group({"params": list(self.features.adapter.parameters())})
        return self.features

    def _trained_parameters(self) -> list[nn.Parameter]:
        params = list(self.model.parameters())
        return params if self.features is None else params + list(self.features.adapter.parameters())

    def _windows(self, batch: int, height: int, width: int, stride: int) -> list[tuple[int, int, int, int]] | None:
        """One random crop window (top, left, height, width) per sample, on the teacher grid's
        stride; None when ``online.crop`` keeps whole frames."""
        ch, cw = self.config.crop
        if ch <= 0 or cw <= 0 or (ch >= height and cw >= width):
            return None
        ch, cw = min(ch, height), min(cw, width)
        windows = []
        for _ in range(batch):
            top = int(self.rng.integers(0, (height - ch) // stride + 1)) * stride
            left = int(self.rng.integers(0, (width - cw) // stride + 1)) * stride
            windows.append((top, left, ch, cw))
        return windows

    def _crop(self, images: np.ndarray, targets: np.ndarray, teacher: np.ndarray | None,
              views: Sequence[Sequence[np.ndarray | None]] = (), features: np.ndarray | None = None):
        """Random crops (one per sample), aligned to the teacher logits' grid (and to the
        teacher features' grid, when there are features: windows then start on multiples of
        both strides); ``views`` are per-sample lists of optional arrays at the frame's size
        (the robustness views), cropped with the same windows; ``features`` are cropped on
        their own grid at the same places.

        Shape:
            images (B, H, W, 3), targets (B, H, W), teacher (B, K, h, w), views [B x (H, W, ...) or None],
            features (B, C, h', w') -> the same, cropped, the windows [(top, left, height, width)] * B,
            and the features, cropped
        """
        batch, height, width = targets.shape
        stride = height // teacher.shape[2] if teacher is not None else 1
        feature_stride = height // features.shape[2] if features is not None else 1
        window_stride = int(np.lcm(stride, feature_stride)) if features is not None else stride
        windows = self._windows(batch, height, width, window_stride)
        if windows is None:
            return images, targets, teacher, [list(v) for v in views], [(0, 0, height, width)] * batch, features
        out_i, out_t, out_s, out_f = [], [], [], []
        for b, (top, left, ch, cw) in enumerate(windows):
            out_i.append(images[b, top : top + ch, left : left + cw])
            out_t.append(targets[b, top : top + ch, left : left + cw])
            if teacher is not None:
                out_s.append(teacher[b, :, top // stride : (top + ch) // stride, left // stride : (left + cw) // stride])
            if features is not None:
                f = feature_stride
                out_f.append(features[b, :, top // f : (top + ch) // f, left // f : (left + cw) // f])
        out_v = [[None if v is None else v[top : top + ch, left : left + cw] for v, (top, left, ch, cw) in zip(per, windows)]
                 for per in views]
        return (np.stack(out_i), np.stack(out_t), (np.stack(out_s) if teacher is not None else None), out_v, windows,
                (np.stack(out_f) if features is not None else None))

    def _training_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: x (B, 3, H, W) -> logits (B, K, H, W), or on the net's own grid (loss_grid "net")."""
        if self.config.loss_grid == "net" and hasattr(self.model, "coarse_logits"):
            return self.model.coarse_logits(x)
        return self.model(x)

    def _training_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_training_logits` and the student's map of ``distill.feature_layer``, one pass.

        Shape: x (B, 3, H, W) -> logits (B, K, h, w) (or (B, K, H, W), loss_grid "frame"), features (B, C, h', w')
        """
        coarse, feature = self.model.tap(x, self.distill.feature_layer)  # (B, K, h, w), (B, C, h', w')
        if self.config.loss_grid == "frame":
            coarse = nn.functional.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return coarse, feature

    def _batch_features(self, maps: Sequence[np.ndarray | None]) -> np.ndarray | None:
        """The teacher feature maps of a batch's samples, stacked, when feature distillation is
        on and every sample has one (of one shape); else None (the step is logits-only).

        Shape: maps [B x (C, h', w') float16 or None] -> (B, C, h', w') or None
        """
        if not self.distill.features or not maps or any(m is None for m in maps):
            return None
        if len({m.shape for m in maps}) != 1:
            return None
        return np.stack(maps)  # (B, C, h', w')

    def _feature_term(self, student_features: torch.Tensor, teacher_features: np.ndarray) -> torch.Tensor:
        """The unweighted feature distance of a batch (the adapter made on first use).

        Shape: student_features (B, c, H', W'), teacher_features (B, C, h', w') -> scalar
        """
        target = torch.from_numpy(np.ascontiguousarray(teacher_features)).to(self.device).float()  # (B, C, h', w')
        return self._feature_distiller(target.shape[1]).loss(student_features, target)

    def _predicting(self) -> nn.Module:
        """The predictor, in the batch-norm mode of ``online.predict_bn``."""
        return self.predictor.train(self.config.predict_bn == "frame")

    @torch.inference_mode()
    def predict_logits(self, image: np.ndarray) -> torch.Tensor:
        """Shape: image (H, W, 3) uint8 -> logits (1, K, H, W)."""
        return self._predicting()(images_to_tensor(image[None], self.device))

    def training_state(self) -> dict[str, torch.Tensor]:
        """A copy of the weights that learn (``model.*``) and predict (``average.*``, with an EMA),
        for :class:`learners.experts.ExpertBank`."""
        out = {f"model.{k}": v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.average is not None:
            out.update({f"average.{k}": v.detach().clone() for k, v in self.average.state_dict().items()})
        return out

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        """Carry on from a :meth:`training_state` (the optimiser's moments stay as they are)."""
        self.model.load_state_dict(_under(state, "model."))
        if self.average is not None:
            average = _under(state, "average.")
            self.average.load_state_dict(average or self.model.state_dict())

    @torch.inference_mode()
    def predict(self, image: np.ndarray, model: nn.Module | None = None) -> np.ndarray:
        """Shape: image (H, W, 3) uint8 -> labels (H, W) uint8.

        A net with ``coarse_logits`` (every student net: its ``forward`` is their bilinear
        upsampling) gives labels straight from its coarse grid, without the full-size map
        (:func:`perception.argmax.upsampled_class_labels`: that step about three times faster,
        the whole prediction 1.1-1.2x, ``bench/predict.py``). The logits stay in
        :attr:`last_logits` (teacher-free drift signals use them: no second forward pass).
        ``model`` (a banked expert's predictor) predicts instead of the learner's own network.
        """
        net = self._predicting() if model is None else model.train(self.config.predict_bn == "frame")
        x = images_to_tensor(image[None], self.device)  # (1, 3, H, W)
        if not has_depth(net):
            labels, self.last_logits = net_labels_and_logits(net, x)
            return labels  # (H, W) uint8
        self.last_logits, log_depth = coarse_outputs(net, x)  # (1, K, h, w), (1, h, w)
        self.last_depth = log_depth[0].exp().to(torch.float16).cpu().numpy()  # (h, w) metres
        return upsampled_class_labels(self.last_logits[0], *x.shape[-2:])  # (H, W) uint8

    def learn(self, image: np.ndarray, labels: np.ndarray, logits: np.ndarray | None, regime: int,
              catch_up: bool = False, views: FrameViews | None = None, steps: int | None = None,
              stop: Callable[[], bool] | None = None, depth: np.ndarray | None = None,
              features: np.ndarray | None = None) -> dict[str, float]:
        """Store the labelled frame, then take ``steps_per_label`` steps on it plus replay
        (``catch_up_steps`` when ``catch_up``: the student trails the teacher; ``steps`` when
        given). ``stop``, when given, is asked before every step and ends the steps once it
        returns True (JITNet's early stop, :class:`learners.scheduler.TeacherScheduler`); the
        number of steps taken is returned as ``steps``.

        ``views`` (the teacher side's robustness views of the frame) are stored and trained on
        with a robust loss, and ignored with ``robust.loss`` "none". Returns the mean
        ``loss`` over the steps and the ``replay_size``; with a robust loss also the means of
        its parts ``clean_loss``, ``robust_loss`` and ``corrupt_loss`` (unweighted).

        ``depth`` (the teacher's, on its logits' grid, 0 = none) is stored with the frame when
        the student learns depth (``distill.depth_weight`` > 0) and ignored otherwise; the
        steps then add ``depth_weight`` times the log-depth L1 on the samples that have it,
        and the mean of that term comes back as ``depth_loss`` (unweighted).


        ``features`` (the teacher's feature map of the frame) are stored and trained on with
        ``distill.feature_weight`` > 0 (then the mean unweighted ``feature_loss`` over the
        steps that had features for their whole batch is returned too), and ignored otherwise.


        Shape:
            image (H, W, 3) uint8, labels (H, W) uint8, logits (K, h, w) or None, depth (h, w) or None,
            features (C, h', w') or None
        """
        small_features = None if features is None or not self.distill.features else features.astype(np.float16)
        with torch_threads(self.train_threads):
            if self.robust_loss is not None:
                return self._learn_robust(image, labels, logits, regime, catch_up, views, steps, stop, small_features)
            return self._learn(image, labels, logits, regime, catch_up, steps, stop,
                               depth if self.depth_weight > 0 else None, small_features)

    def _steps(self, catch_up: bool, steps: int | None = None) -> int:
        if steps is not None:
            return steps
        return self.config.catch_up_steps if catch_up and self.config.catch_up_steps > 0 else self.config.steps_per_label

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self._trained_parameters(), self.config.grad_clip)
        self.optimizer.step()
        self._restore_some()
        self._update_average()
        self.steps += 1

    def _train_mode(self) -> None:
        """The model in training mode; with ``train_bn`` "frozen" its batch-norm layers stay in
        eval mode (normalise by their running statistics and keep them; their scale and shift
        still learn)."""
        self.model.train()
        if self.config.train_bn == "frozen":
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    @torch.no_grad()
    def _restore_some(self) -> None:
        """Put each trained weight back to its starting value with probability ``restore_prob``
        (batch-norm running statistics are not weights: they follow the stream)."""
        if self.source is None:
            return
        assert self.restore_rng is not None
        for name, param in self.model.named_parameters():
            draw = torch.rand(param.shape, generator=self.restore_rng, device=param.device)  # same shape as the weight
            param.copy_(torch.where(draw < self.config.restore_prob, self.source[name], param))

    def _learn(self, image: np.ndarray, labels: np.ndarray, logits: np.ndarray | None, regime: int,
               catch_up: bool, steps: int | None = None, stop: Callable[[], bool] | None = None,
               depth: np.ndarray | None = None, features: np.ndarray | None = None) -> dict[str, float]:
        small_logits = None if logits is None else logits.astype(np.float16)
        small_depth = None if depth is None else depth.astype(np.float16)  # (h, w) at the logits' grid
        if small_depth is not None and (small_logits is None or small_depth.shape != small_logits.shape[1:]):
            raise ValueError(f"teacher depth must sit on the teacher logits' grid "
                             f"{None if small_logits is None else small_logits.shape[1:]}, got {small_depth.shape}")
        self.replay.add(image, labels, small_logits, regime, depth=small_depth, features=features)
        newest = ReplaySample(image, labels, small_logits, regime, depth=small_depth, features=features)
        return self._train_with(newest, self._steps(catch_up, steps), regime, stop)

    def rehearse(self, steps: int, regime: int) -> dict[str, float]:
        """Take ``steps`` steps on replay alone (no new frame): each batch is ``batch_size``
        stored frames, drawn as the steps on a new label draw theirs. The stream learner spends
        the time between frames this way (``online.idle_steps_per_second``). Returns the mean
        ``loss``, ``replay_size`` and the ``steps`` taken (none while the buffer is empty).

        >>> from perception.nets import SegNet, STUDENT_CONFIG
        >>> learner = OnlineLearner(OnlineConfig(batch_size=2, crop=(0, 0)), SegNet(STUDENT_CONFIG), seed=0)
        >>> learner.rehearse(3, regime=0)["steps"]
        0.0
        """
        if self.robust_loss is not None:
            raise ValueError("rehearsal steps (online.idle_steps_per_second) do not take a robust loss yet: "
                             "set robust.loss=none or online.idle_steps_per_second=0")
        if steps <= 0 or not len(self.replay):
            return {"loss": 0.0, "replay_size": float(len(self.replay)), "steps": 0.0}
        with torch_threads(self.train_threads):
            newest = self.replay.sample(1, current_regime=regime)[0]
            return self._train_with(newest, steps, regime, None, rehearsal=True)

    def _train_with(self, newest: ReplaySample, steps: int, regime: int, stop: Callable[[], bool] | None,
                    rehearsal: bool = False) -> dict[str, float]:
        """``steps`` steps, each on ``newest`` plus ``batch_size - 1`` replayed frames (with
        ``rehearsal``: frames other than ``newest``, itself drawn from the buffer)."""
        image, labels, small_logits, small_depth, features = (newest.image, newest.labels, newest.logits,
                                                              newest.depth, newest.features)
        total = depth_total = 0.0
        taken = 0
        feature_total, feature_steps = 0.0, 0
        for _ in range(steps):
            if stop is not None and stop():
                break
            self._train_mode()
            batch = self.replay.sample(self.config.batch_size - 1 + int(rehearsal), current_regime=regime)
            if rehearsal:
                batch = [s for s in batch if s is not newest][: self.config.batch_size - 1]
            images = np.stack([image] + [s.image for s in batch])  # (B, H, W, 3)
            targets = np.stack([labels] + [s.labels for s in batch])  # (B, H, W)
            use_soft = small_logits is not None and all(s.logits is not None for s in batch)
            soft = np.stack([small_logits] + [s.logits for s in batch]) if use_soft else None  # (B, K, h, w)
            with_depth = self.depth_weight > 0 and use_soft
            if with_depth:  # the depth rides as one more channel of the soft targets: cropped on their grid
                soft = np.concatenate([soft, self._depth_channel(small_depth, batch, soft.shape[-2:])], 1)  # (B, K+1, h, w)
            maps = self._batch_features([features] + [s.features for s in batch])  # (B, C, h', w') or None
            images, targets, soft, _, _, maps = self._crop(images, targets, soft, features=maps)
            teacher = None if soft is None else torch.from_numpy(soft).to(self.device).float()  # (B, K, h', w')
            x = images_to_tensor(images, self.device)  # (B, 3, h, w)
            y = torch.from_numpy(targets).to(self.device).long()  # (B, h, w)
            if with_depth:
                assert teacher is not None
                teacher, teacher_depth = teacher[:, :-1], teacher[:, -1]  # (B, K, h', w'), (B, h', w')
                out, log_depth = self._training_outputs(x)  # (B, K, h, w), (B, h2, w2)
                depth_loss = log_depth_l1(log_depth, teacher_depth)
                loss = self.loss(out, y, teacher) + self.depth_weight * depth_loss
                depth_total += float(depth_loss.detach())
            elif maps is not None:
                out, student_map = self._training_tap(x)  # (B, K, h, w), (B, c, h'', w'')
                term = self._feature_term(student_map, maps)
                loss = self.loss(out, y, teacher) + self.distill.feature_weight * term
                feature_total += float(term.detach())
                feature_steps += 1
            else:
                out = self._training_logits(x)  # (B, K, h, w)
                loss = self.loss(out, y, teacher)
            self._optimizer_step(loss)
            total += float(loss.detach())
            taken += 1
        result = {"loss": total / max(1, taken), "replay_size": float(len(self.replay)), "steps": float(taken)}
        if self.depth_weight > 0:
            result["depth_loss"] = depth_total / max(1, taken)
        if self.distill.features:
            result["feature_loss"] = feature_total / max(1, feature_steps)
        return result

    @staticmethod
    def _depth_channel(newest: np.ndarray | None, batch: list[ReplaySample], grid: tuple[int, ...]) -> np.ndarray:
        """The teacher depth of the newest frame and the replayed ones as one channel, 0 (no
        depth) for a sample stored without it.

        Shape:
            newest (h, w) or None, batch [B-1 samples] -> (B, 1, h, w) float16
        """
        maps = [newest] + [s.depth for s in batch]
        return np.stack([np.zeros(grid, np.float16) if d is None else d for d in maps])[:, None]

    def _training_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (as :meth:`_training_logits`) and log-depth from one pass through the trunk.

        Shape:
            x (B, 3, H, W) -> logits (B, K, h, w) or (B, K, H, W), log-depth (B, h, w)
        """
        logits, log_depth = coarse_outputs(self.model, x)  # (B, K, h, w), (B, h, w)
        assert log_depth is not None
        if self.config.loss_grid != "net":
            logits = torch.nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits, log_depth

    def _learn_robust(self, image: np.ndarray, labels: np.ndarray, logits: np.ndarray | None, regime: int,
                      catch_up: bool, views: FrameViews | None, steps: int | None = None,
                      stop: Callable[[], bool] | None = None, features: np.ndarray | None = None) -> dict[str, float]:
        """The steps of :meth:`learn` with a robust loss: every sample of a batch brings its
        adversarial view (refined, then written back) and its Kornia view, if it has one; with
        feature distillation the feature term is taken on the clean crops."""
        assert self.robust_loss is not None
        small_logits = None if logits is None else logits.astype(np.float16)
        newest = self.replay.add(image, labels, small_logits, regime, views=views, features=features)
        sums = {"loss": 0.0, "clean_loss": 0.0, "robust_loss": 0.0, "corrupt_loss": 0.0}
        if self.distill.features:
            sums["feature_loss"] = 0.0
        feature_steps = 0
        taken = 0
        for _ in range(self._steps(catch_up, steps)):
            if stop is not None and stop():
                break
            self._train_mode()
            batch = [newest] + self.replay.sample(self.config.batch_size - 1, current_regime=regime)
            images = np.stack([s.image for s in batch])  # (B, H, W, 3)
            targets = np.stack([s.labels for s in batch])  # (B, H, W)
            use_soft = all(s.logits is not None for s in batch)
            soft = np.stack([s.logits for s in batch]) if use_soft else None  # (B, K, h, w)
            per_sample = ([s.adversarial for s in batch], [s.corrupted for s in batch], [s.corrupted_labels for s in batch])
            maps = self._batch_features([s.features for s in batch])  # (B, C, h', w') or None
            images, targets, soft, (adversarial, corrupted, corrupted_labels), windows, maps = self._crop(
                images, targets, soft, per_sample, features=maps)
            x = images_to_tensor(images, self.device)  # (B, 3, h, w)
            y = torch.from_numpy(targets).to(self.device).long()  # (B, h, w)
            teacher = None if soft is None else torch.from_numpy(soft).to(self.device).float()  # (B, K, h', w')
            started = time.perf_counter()
            x_adv = self._refine(x, y, adversarial)  # (B, 3, h, w)
            if self.robust.refine_steps > 0:
                self._write_back(batch, windows, images, x, x_adv)
            self.refine_ms_total += (time.perf_counter() - started) * 1000.0
            if maps is None:
                clean_logits = self._training_logits(x)  # (B, K, h, w); batch norm's running statistics follow clean crops
            else:
                clean_logits, student_map = self._training_tap(x)  # (B, K, h, w), (B, c, h'', w'')
            with running_statistics_paused(self.model):  # ... and only them: views are normalised by their own batch
                adversarial_logits = self._training_logits(x_adv)  # (B, K, h, w)
                corrupt = self._corrupt_loss(batch, corrupted, corrupted_labels, teacher)
            loss, parts = self.robust_loss(clean_logits, adversarial_logits, y, teacher)
            if corrupt is not None:
                loss = loss + self.robust.corrupt_weight * corrupt
                parts["corrupt_loss"] = float(corrupt.detach())
            if maps is not None:
                term = self._feature_term(student_map, maps)
                loss = loss + self.distill.feature_weight * term
                parts["feature_loss"] = float(term.detach())
                feature_steps += 1
            self._optimizer_step(loss)
            sums["loss"] += float(loss.detach())
            for key, value in parts.items():
                sums[key] += value
            taken += 1
        out = {key: value / max(1, taken) for key, value in sums.items()}
        if "feature_loss" in out:
            out["feature_loss"] = sums["feature_loss"] / max(1, feature_steps)
        out["replay_size"] = float(len(self.replay))
        out["steps"] = float(taken)
        return out

    def _refine(self, x: torch.Tensor, y: torch.Tensor, starts: list[np.ndarray | None]) -> torch.Tensor:
        """Adversarial crops refreshed against the current student.

        Each sample starts from its stored adversarial view (a sample without one from its
        clean crop plus uniform noise in the ball: a fresh perturbation), projected to the linf
        ball of ``refine_eps`` around the clean crop and to [0, 1]; then ``refine_steps``
        signed-gradient ascent steps of ``refine_step * refine_eps`` on the student's
        cross-entropy against the teacher's hard labels, each projected again. The steps run
        in training mode (batch statistics, as the loss they attack) inside
        :func:`frozen_buffers`, so the batch-norm running statistics stay as they were, and
        take the gradient of the input alone (nothing lands on the parameters' ``.grad``).
        With ``refine_steps`` 0 the stored views are used as sent and samples without one
        train on their clean crop twice.

        Shape:
            x (B, 3, h, w) in [0, 1], y (B, h, w) int64, starts [B x (h, w, 3) uint8 or None] -> (B, 3, h, w)
        """
        cfg = self.robust
        x_adv = x.clone()  # (B, 3, h, w)
        have = [b for b, start in enumerate(starts) if start is not None]
        if have:
            x_adv[have] = images_to_tensor(np.stack([starts[b] for b in have]), self.device)
        if cfg.refine_steps == 0:
            return x_adv
        fresh = [b for b, start in enumerate(starts) if start is None]
        eps = cfg.refine_eps
        if fresh:
            noise = self.rng.uniform(-eps, eps, size=(len(fresh), *x.shape[1:])).astype(np.float32)  # (F, 3, h, w)
            x_adv[fresh] += torch.from_numpy(noise).to(self.device)
        x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)
        step = cfg.refine_step * eps
        with frozen_buffers(self.model):
            for _ in range(cfg.refine_steps):
                x_adv.requires_grad_(True)
                attack_loss = hard_label_loss(self._training_logits(x_adv), y)
                (grad,) = torch.autograd.grad(attack_loss, x_adv)  # (B, 3, h, w)
                x_adv = x_adv.detach() + step * grad.sign()
                x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)
        return x_adv.detach()

    def _write_back(self, batch: list[ReplaySample], windows: list[tuple[int, int, int, int]], images: np.ndarray,
                    x: torch.Tensor, x_adv: torch.Tensor) -> None:
        """Store each refined crop in its sample's adversarial view (made from the frame if it
        had none), so the perturbation accumulates across the frame's reuses (ATTA). The
        perturbation is quantised to whole uint8 levels within ``refine_eps``.

        Shape:
            images (B, h, w, 3) uint8 (the clean crops), x, x_adv (B, 3, h, w) in [0, 1]
        """
        levels = int(np.floor(self.robust.refine_eps * 255.0 + 1e-6))
        delta = ((x_adv - x) * 255.0).round_().clamp_(-levels, levels)  # (B, 3, h, w) whole levels
        delta = delta.permute(0, 2, 3, 1).to(torch.int16).cpu().numpy()  # (B, h, w, 3)
        crops = np.clip(images.astype(np.int16) + delta, 0, 255).astype(np.uint8)  # (B, h, w, 3)
        for sample, (top, left, ch, cw), crop in zip(batch, windows, crops):
            view = sample.adversarial
            if view is None or not view.flags.writeable:  # the buffer's own copy is refined in place
                view = (sample.image if view is None else view).copy()  # (H, W, 3) uint8
            view[top : top + ch, left : left + cw] = crop
            sample.adversarial = view

    def _corrupt_loss(self, batch: list[ReplaySample], corrupted: list[np.ndarray | None],
                      corrupted_labels: list[np.ndarray | None], teacher: torch.Tensor | None) -> torch.Tensor | None:
        """The Kornia-view term on the samples that have a view (None if none has, or
        ``corrupt_weight`` is 0); see :meth:`RobustDistillationLoss.corrupt`.

        Shape:
            corrupted [B x (h, w, 3) uint8 or None], corrupted_labels [B x (h, w) uint8 or None], teacher (B, K, h', w')
        """
        have = [b for b, view in enumerate(corrupted) if view is not None]
        if not have or self.robust.corrupt_weight <= 0:
            return None
        assert self.robust_loss is not None
        xc = images_to_tensor(np.stack([corrupted[b] for b in have]), self.device)  # (C, 3, h, w)
        yc = torch.from_numpy(np.stack([corrupted_labels[b] for b in have])).to(self.device).long()  # (C, h, w)
        aligned = torch.tensor([batch[b].corrupted_aligned for b in have], device=self.device)  # (C,)
        tc = None if teacher is None else teacher[have]  # (C, K, h', w')
        return self.robust_loss.corrupt(self._training_logits(xc), yc, tc, aligned)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Weights, optimiser moments and replay as flat tensors (for a safetensors checkpoint);
        the feature adapter's weights as ``adapter.*`` when it exists."""
        out = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if self.features is not None:
            out.update({f"adapter.{k}": v.detach().cpu().contiguous()
                        for k, v in self.features.adapter.state_dict().items()})
        if self.average is not None:
            out.update({f"average.{k}": v.detach().cpu().contiguous() for k, v in self.average.state_dict().items()})
        if self.source is not None and self.restore_rng is not None:
            out.update({f"source.{k}": v.detach().cpu().contiguous() for k, v in self.source.items()})
            out["restore_rng"] = self.restore_rng.get_state()
        opt = self.optimizer.state_dict()
        for pid, state in opt["state"].items():
            for key, value in state.items():
                out[f"optim.{pid}.{key}"] = torch.as_tensor(value).cpu().contiguous()
        for key, value in self.replay.state_arrays().items():
            out[key] = torch.from_numpy(np.ascontiguousarray(value))
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        model_state = _under(tensors, "model.")
        self.model.load_state_dict(model_state, strict=True)
        if self.average is not None:
            average_state = _under(tensors, "average.")
            self.average.load_state_dict(average_state or model_state, strict=True)
        if self.source is not None and self.restore_rng is not None:
            source = _under(tensors, "source.")
            if source:  # the starting weights of the run, not the resumed ones
                self.source = {k: v.to(self.device).clone() for k, v in source.items()}
            if "restore_rng" in tensors:
                self.restore_rng.set_state(tensors["restore_rng"])
        adapter_state = _under(tensors, "adapter.")
        if adapter_state:  # made before the optimiser's state is loaded: its moments follow the model's
            self._feature_distiller(int(adapter_state["0.weight"].shape[0])).adapter.load_state_dict(adapter_state, strict=True)
        opt = self.optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                opt["state"].setdefault(int(pid), {})[name] = value.clone()
        self.optimizer.load_state_dict(opt)
        self.replay.load_state_arrays({k: v.numpy() for k, v in tensors.items() if k.startswith("replay.")})
