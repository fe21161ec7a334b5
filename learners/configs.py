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
    >>> StaticGateConfig(enabled=True, threshold=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: threshold must be >= 0 (mean absolute grey-level change), got -1.0
"""
from __future__ import annotations

from dataclasses import dataclass

from perception.taps import check_tap


CONFIDENCE_WEIGHTINGS = ("none", "maxprob", "entropy")


@dataclass(frozen=True)
class DistillationConfig:
    """How hard and soft targets are mixed.

    alpha: weight of the hard-label loss; (1 - alpha) weights the soft-label loss.
    temperature: softmax temperature of the soft-label loss.
    confidence_weighting: per-pixel weights from the teacher's own confidence in its soft
        logits (:func:`learners.losses.confidence_weights`), applied to the hard- and the
        soft-label term: "none" (every pixel alike), "maxprob" (the top softmax probability)
        or "entropy" (1 - the softmax entropy / ln K). A pixel's weight is
        ``floor + (1 - floor) * confidence ** power``, rescaled so that the labelled pixels
        of each term keep a mean weight of 1 (the loss's scale stays that of the plain loss).
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
        >>> DistillationConfig(confidence_weighting="margin")
        Traceback (most recent call last):
        ...
        ValueError: confidence_weighting: unknown weighting 'margin' (choose none, maxprob, entropy)
        >>> DistillationConfig(feature_weight=1.0, feature_layer="stage5")
        Traceback (most recent call last):
        ...
        ValueError: feature_layer: unknown layer 'stage5' (choose decoder, stage1, stage2, stage3, stage4)
    """

    alpha: float = 0.5  # 1.0 = hard labels only, 0.0 = soft labels only
    temperature: float = 2.0
    class_balance: float = 0.5  # hard-label class weights freq**-power (0 = none, 0.5 = sqrt balancing)
    confidence_weighting: str = "none"  # none | maxprob | entropy: weigh pixels by the teacher's confidence
    confidence_floor: float = 0.0  # the weight of a pixel the teacher has no confidence in, in [0, 1)
    confidence_power: float = 1.0  # confidence ** power: > 1 sharpens the preference for sure pixels
    depth_weight: float = 0.0  # multi-task: weight of the log-depth L1 against the teacher's depth, added to the
    # segmentation loss; > 0 gives the student a depth head (perception.depth) and needs a teacher with depth
    feature_weight: float = 0.0  # feature distillation's weight (0 = off: logits-only distillation)
    feature_layer: str = "decoder"  # decoder | stage1 | stage2 | stage3 | stage4 (perception.taps)
    feature_stride: int = 8  # the teacher's feature map ships at 1/this of the frame

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0.0 <= self.depth_weight <= 100.0:  # NaN fails too
            raise ValueError(f"depth_weight must be in [0, 100], got {self.depth_weight}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.confidence_weighting not in CONFIDENCE_WEIGHTINGS:
            raise ValueError(f"confidence_weighting: unknown weighting {self.confidence_weighting!r} "
                             f"(choose {', '.join(CONFIDENCE_WEIGHTINGS)})")
        if not 0.0 <= self.confidence_floor < 1.0:
            raise ValueError(f"confidence_floor must be in [0, 1), got {self.confidence_floor}")
        if not self.confidence_power > 0:
            raise ValueError(f"confidence_power must be > 0, got {self.confidence_power}")
        if not self.feature_weight >= 0.0:  # also refuses NaN
            raise ValueError(f"feature_weight must be >= 0 (0 = off), got {self.feature_weight}")
        check_tap(self.feature_layer, self.feature_stride)  # ValueError naming feature_layer / feature_stride
        if self.depth_weight > 0 and self.feature_weight > 0:
            raise ValueError(f"depth_weight={self.depth_weight} and feature_weight={self.feature_weight} are not combined "
                             "yet: set one of them to 0")

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
    idle_steps_per_second: float = 0.0  # replay-only steps for every second of stream time between frames
    # (what the learner's hardware does while it waits for the next frame: a 1 Hz log leaves it a whole
    # second per frame, a 15 Hz stream 67 ms); 0 = none
    idle_max_seconds: float = 2.0  # a longer gap between frames (a break in the log) counts as this long
    train_bn: str = "batch"  # batch norm in the learning steps: "batch" (normalise by the batch, running
    # statistics follow it) or "frozen" (normalise by the running statistics and keep them)
    restore_prob: float = 0.0  # after every step, each weight goes back to its starting value with this
    # probability (stochastic restore, as CoTTA, Wang et al. CVPR 2022): what the starting student knew is
    # never overwritten for good; 0 = off

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
        if not self.idle_steps_per_second >= 0:
            raise ValueError(f"idle_steps_per_second must be >= 0, got {self.idle_steps_per_second}")
        if self.train_bn not in ("batch", "frozen"):
            raise ValueError(f"train_bn must be 'batch' or 'frozen', got {self.train_bn!r}")
        if not 0.0 <= self.restore_prob < 1.0:
            raise ValueError(f"restore_prob must be in [0, 1), got {self.restore_prob}")
        if not self.idle_max_seconds > 0:
            raise ValueError(f"idle_max_seconds must be > 0, got {self.idle_max_seconds}")


EXPERT_ROUTES = ("frame", "active")


@dataclass(frozen=True)
class ExpertConfig:
    """Domain experts against forgetting (:mod:`learners.experts`): the student is banked at
    every drift with its regime's input statistics and restored when they come back.

    enabled: keep a bank of experts (off: one student, as before).
    max_experts: experts kept, the learning one included (the least recently used leaves).
    warmup: frames after a drift whose statistics decide between a banked expert and a new one.
    match: mean clipped z-score within which the mean statistics of ``warmup`` frames name a
        banked expert's regime (and within which a frame goes to a banked expert while the new
        regime has no signature yet). 0.6, chosen on DRIFT_TUNING worlds 30 030-30 033 with what
        the learner sees (a 300-frame signature of each domain in one world against 20-frame
        windows 0-200 frames into every domain of the others): the same domain lies at 0.56
        (median), 0.91 (p90), 1.34 (max), another domain at 0.63 at the least (fog's signature
        against rain's first frames; p1 0.96). 0.6 gives up half the restores to make a wrong
        one (which would teach one domain's expert another's frames) unlikely.
    lookback: frames before a detection whose learning is not banked with the old expert
        (the detection's delay: those frames showed the next domain already).
    snapshot_every: frames between the training snapshots ``lookback`` picks from.
    min_std, z_clip: the z-score's floor on a feature's std and its clip.
    route: "frame" = every frame is predicted by the nearest expert (a returning domain by its
        own from its first frame); "active" = by the learning student alone.
    """

    enabled: bool = False
    max_experts: int = 8
    warmup: int = 20
    match: float = 0.6
    lookback: int = 16
    snapshot_every: int = 8
    min_std: float = 0.01
    z_clip: float = 10.0
    route: str = "frame"

    def __post_init__(self) -> None:
        if isinstance(self.max_experts, bool) or not isinstance(self.max_experts, int) or self.max_experts < 2:
            raise ValueError(f"max_experts must be an int >= 2 (the learning expert and one banked), got {self.max_experts!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 1:
            raise ValueError(f"warmup must be an int >= 1 (frames), got {self.warmup!r}")
        if not self.match > 0:
            raise ValueError(f"match must be > 0 (a mean z-score), got {self.match}")
        if isinstance(self.lookback, bool) or not isinstance(self.lookback, int) or self.lookback < 0:
            raise ValueError(f"lookback must be an int >= 0 (frames), got {self.lookback!r}")
        if isinstance(self.snapshot_every, bool) or not isinstance(self.snapshot_every, int) or self.snapshot_every < 1:
            raise ValueError(f"snapshot_every must be an int >= 1 (frames), got {self.snapshot_every!r}")
        if not self.min_std > 0 or not self.z_clip > 0:
            raise ValueError(f"min_std and z_clip must be > 0, got {self.min_std}, {self.z_clip}")
        if self.route not in EXPERT_ROUTES:
            raise ValueError(f"route: unknown route {self.route!r} (choose {', '.join(EXPERT_ROUTES)})")


@dataclass(frozen=True)
class StreamLearnerConfig:
    teacher_latency: int = 3  # frames between asking the teacher and learning from its answer
    teacher_latency_s: float = 0.0  # seconds of stream time after which an answer is there at the latest
    # (0 = frames only): the answer is learned before the first frame at least this much later is predicted,
    # so on a 1 Hz log a 0.2 s teacher has answered by the next frame; teacher_latency frames stay the bound
    settled_agreement: float = 0.0  # a teacher frame the student's prediction already matches this well (pixel
    # agreement, before learning) is stored for replay but not stepped on: learning where the student already
    # agrees only teaches it the teacher's own mistakes; 0 = off
    checkpoint_every: int = 600  # frames between checkpoints (0 = never)
    keep_checkpoints: int = 2  # newest checkpoints kept on disk
    rate_event_change: float = 0.25  # log a teacher-rate event when the rate moved this much (relative)
    agreement: str = "pixel"  # what the scheduler steers on: "pixel" accuracy or frame "miou" vs the teacher
    frozen: bool = False  # predict (and watch for drift) but never learn: no teacher calls for learning, no steps
    # (a frozen student in a scenario suite; the robustness probe still asks for its frames' labels)

    def __post_init__(self) -> None:
        if self.agreement not in ("pixel", "miou"):
            raise ValueError(f"agreement must be 'pixel' or 'miou', got {self.agreement!r}")
        if self.teacher_latency < 0:
            raise ValueError(f"teacher_latency must be >= 0, got {self.teacher_latency}")
        if not 0.0 <= self.settled_agreement <= 1.0:
            raise ValueError(f"settled_agreement must be in [0, 1] (pixel agreement; 0 = off), got {self.settled_agreement}")
        if not self.teacher_latency_s >= 0:
            raise ValueError(f"teacher_latency_s must be >= 0, got {self.teacher_latency_s}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")


@dataclass(frozen=True)
class StaticGateConfig:
    """The input-change gate against collapse on static stretches (the car stopped at a light):
    a frame the scheduler picks for the teacher is skipped (no teacher call, no learning
    steps, nothing stored for replay) while it barely differs from the last frame the student
    learned from, so one repeated view cannot fill the replay buffer and be trained on
    hundreds of times (:class:`learners.static_gate.StaticGate`). Off by default: the learner
    is then the same, bit for bit.

    The change is the mean absolute difference, in grey levels (0..255), of the two frames'
    ``cells`` x ``cells``-pixel block means (small, so sensor noise and rain streaks average
    out while a pan of the camera does not).
    """

    enabled: bool = False
    threshold: float = 4.0  # grey levels: a picked frame whose change is below this is skipped (bench/static.py
    # --tune on STATIC_TUNING worlds 32000..32002, 128x64: picks 8 frames apart changed by 3.5 at least (1st percentile
    # 4.4) while driving, by 1.3 in the median inside stops)
    cells: int = 8  # block size (pixels) of the thumbnails compared
    max_skip: int = 0  # after this many skipped picks in a row, ask anyway (0 = skip while static)

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, (int, float)) or isinstance(self.threshold, bool) or self.threshold < 0:
            raise ValueError(f"threshold must be >= 0 (mean absolute grey-level change), got {self.threshold}")
        if self.threshold > 255:
            raise ValueError(f"threshold must be <= 255 (grey levels), got {self.threshold}")
        if not isinstance(self.cells, int) or isinstance(self.cells, bool) or not 1 <= self.cells <= 64:
            raise ValueError(f"cells must be an int in [1, 64] (pixels per thumbnail block), got {self.cells!r}")
        if not isinstance(self.max_skip, int) or isinstance(self.max_skip, bool) or self.max_skip < 0:
            raise ValueError(f"max_skip must be an int >= 0 (0 = skip while static), got {self.max_skip!r}")
