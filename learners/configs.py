"""The learner's settings: distillation, robust distillation, online learning and the stream
learner, one frozen dataclass each.

They live apart from the classes they configure, in a module that imports neither torch nor
numpy, so that a pickled :class:`stream.config.RunConfig` loads without torch: the Ray ingest
and evaluator actors receive the whole run config and never import torch (about a second of
CPU and a few hundred MB per process on the vehicle box). Building a config from scratch still
checks ``student.net`` against the student nets, which imports torch; the driver does that.

Example:
    >>> OnlineConfig(steps_per_label=4).steps_per_label
    4
    >>> DistillationConfig(alpha=2.0)
    Traceback (most recent call last):
    ...
    ValueError: alpha must be in [0, 1], got 2.0
    >>> RobustDistillConfig(loss="trades").beta
    0.25
"""
from __future__ import annotations

from dataclasses import dataclass

from perception.taps import check_tap


@dataclass(frozen=True)
class DistillationConfig:
    """How hard and soft targets are mixed.

    alpha: weight of the hard-label loss; (1 - alpha) weights the soft-label loss.
    temperature: softmax temperature of the soft-label loss.
    feature_weight: weight of feature distillation (0 = off, logits only): the teacher ships
        the feature map of ``feature_layer`` at 1/``feature_stride`` of the frame, and the
        student's map of the same layer, through a 1x1-conv adapter the learner trains beside
        it, is matched to it (:func:`learners.losses.feature_distance`: the mean over pixels
        of the squared distance between unit feature vectors, 2 - 2 cos, in [0, 4]).
    feature_layer: ``decoder`` (before the classifier) or ``stage1`` .. ``stage4`` (encoder
        stages at strides 4 .. 32), the same layer on both sides (:mod:`perception.taps`).
    feature_stride: the teacher's features ship average-pooled to 1/this of the frame (a
        multiple of the layer's own stride: coarse is cheap to ship and to keep in replay).

    Example:
        >>> DistillationConfig(feature_weight=1.0, feature_layer="stage5")
        Traceback (most recent call last):
        ...
        ValueError: feature_layer: unknown layer 'stage5' (choose decoder, stage1, stage2, stage3, stage4)
    """

    alpha: float = 0.5  # 1.0 = hard labels only, 0.0 = soft labels only
    temperature: float = 2.0
    class_balance: float = 0.5  # hard-label class weights freq**-power (0 = none, 0.5 = sqrt balancing)
    feature_weight: float = 0.0  # feature distillation's weight (0 = off: logits-only distillation)
    feature_layer: str = "decoder"  # decoder | stage1 | stage2 | stage3 | stage4 (perception.taps)
    feature_stride: int = 8  # the teacher's feature map ships at 1/this of the frame

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not self.feature_weight >= 0.0:  # also refuses NaN
            raise ValueError(f"feature_weight must be >= 0 (0 = off), got {self.feature_weight}")
        check_tap(self.feature_layer, self.feature_stride)  # ValueError naming feature_layer / feature_stride

    @property
    def features(self) -> bool:
        """Whether feature distillation is on (the teacher must ship features)."""
        return self.feature_weight > 0


ROBUST_LOSSES = ("none", "ard", "rslad", "trades")


@dataclass(frozen=True)
class RobustDistillConfig:
    """Robust distillation: train the student on the teacher's robustness views as well
    (:class:`perception.views.FrameViews`), see :mod:`learners.robust_losses`.

    The loss mixes a clean term and a robust term; ``mix`` weighs them the same way for ``ard``
    and ``rslad`` (``(1 - mix) * clean + mix * robust``), while ``trades`` keeps its paper's
    form ``clean + beta * robust`` (``mix`` unused). With ``loss`` "none" the views are ignored
    and the learner is plain distillation, bit for bit.

    Adversarial views are refreshed by the learner before each use (``refine_steps`` signed
    gradient steps of ``refine_step * refine_eps`` each, in the linf ball of ``refine_eps``
    around the clean frame) and written back to the replay buffer, so a perturbation keeps
    growing stronger across the reuses of its frame (ATTA, Zheng et al. 2020).
    """

    loss: str = "none"  # none | ard (Goldblum et al. 2020) | rslad (Zi et al. 2021) | trades (Zhang et al. 2019)
    mix: float = 0.5  # ard, rslad: weight of the robust term; the clean term gets 1 - mix
    temperature: float = 2.0  # of the soft terms against the teacher (ard, rslad)
    beta: float = 0.25  # trades: weight of KL(student(clean) || student(adversarial)); the paper's 6 cost the sim
    # student 17 points of clean mIoU online, 0.25 about 3 (chosen on sim.seeds.ROBUST_TUNING, bench/robustness.py)
    corrupt_weight: float = 0.25  # weight of the loss on the Kornia view, where a sample has one (0 = off)
    refine_steps: int = 1  # learner-side signed-gradient steps per use of an adversarial view (0 = as sent)
    refine_eps: float = 4 / 255  # linf radius of the refined perturbation around the clean frame, in [0, 1]
    refine_step: float = 0.25  # size of each refinement step, as a fraction of refine_eps

    def __post_init__(self) -> None:
        if self.loss not in ROBUST_LOSSES:
            raise ValueError(f"loss: unknown robust loss {self.loss!r} (choose {', '.join(ROBUST_LOSSES)})")
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"mix must be in [0, 1], got {self.mix}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.corrupt_weight < 0:
            raise ValueError(f"corrupt_weight must be >= 0, got {self.corrupt_weight}")
        if self.refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {self.refine_steps}")
        if not 0.0 <= self.refine_eps <= 1.0:
            raise ValueError(f"refine_eps must be in [0, 1], got {self.refine_eps}")
        if not 0.0 < self.refine_step <= 2.0:
            raise ValueError(f"refine_step must be in (0, 2] (a fraction of refine_eps), got {self.refine_step}")


@dataclass(frozen=True)
class OnlineConfig:
    lr: float = 2e-3  # Adam learning rate
    weight_decay: float = 1e-5
    steps_per_label: int = 12  # gradient steps for every teacher-labelled frame
    catch_up_steps: int = 0  # steps instead while the student trails the teacher (after a drift); 0 = same
    batch_size: int = 8  # the new frame + replayed frames per step
    grad_clip: float = 5.0  # max gradient norm (0 = off)
    crop: tuple[int, int] = (96, 192)  # (height, width) of the random training crops; (0, 0) = whole frames
    predict_bn: str = "running"  # batch norm when predicting: "running" statistics, or "frame" (normalise by the
    # frame's own statistics and fold them into the running ones: teacher-free test-time adaptation)
    ema: float = 0.0  # predict with an exponential moving average of the weights, this decay per step (0 = off)
    loss_grid: str = "net"  # where the training losses are taken: "net" = the network's own output grid
    # (its coarse_logits, labels sampled there: a step costs about a third less) or "frame" = full size

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.steps_per_label < 1:
            raise ValueError(f"steps_per_label must be >= 1, got {self.steps_per_label}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.predict_bn not in ("running", "frame"):
            raise ValueError(f"predict_bn must be 'running' or 'frame', got {self.predict_bn!r}")
        if self.loss_grid not in ("net", "frame"):
            raise ValueError(f"loss_grid must be 'net' or 'frame', got {self.loss_grid!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")


@dataclass(frozen=True)
class StreamLearnerConfig:
    teacher_latency: int = 3  # frames between asking the teacher and learning from its answer
    checkpoint_every: int = 600  # frames between checkpoints (0 = never)
    keep_checkpoints: int = 2  # newest checkpoints kept on disk
    rate_event_change: float = 0.25  # log a teacher-rate event when the rate moved this much (relative)
    agreement: str = "pixel"  # what the scheduler steers on: "pixel" accuracy or frame "miou" vs the teacher

    def __post_init__(self) -> None:
        if self.agreement not in ("pixel", "miou"):
            raise ValueError(f"agreement must be 'pixel' or 'miou', got {self.agreement!r}")
        if self.teacher_latency < 0:
            raise ValueError(f"teacher_latency must be >= 0, got {self.teacher_latency}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
