"""Domain experts: one copy of the student per input regime, brought back when the stream returns.

An online student that learns fog, then night, then rain has partly unlearned fog by the time
fog comes back, replay or not (``bench/forgetting.py``). The expert bank keeps what it knew
instead: at every drift the student as it was just before the change is *banked* together
with the input statistics of the regime it learned on (its *signature*: the running mean and
variance of :func:`learners.input_stats.frame_statistics`, teacher-free, what a car sees).

1. ``on_drift(index)``: the active student is banked, with the newest training snapshot
   taken at least ``lookback`` frames before the detection (the frames between the real
   change and its detection taught it the next domain already) and its signature.
2. The next ``warmup`` frames' statistics name the new regime. If their mean lies within
   ``match`` (mean clipped z-score, :class:`Signature`) of a banked expert, that expert's
   weights are loaded into the learner and it carries on learning from there ("restore");
   otherwise the learner keeps its weights as a new expert ("new").
3. Prediction (``route="frame"``): each frame is predicted by the banked expert whose
   signature it is nearest, when that is within ``match`` and nearer than the active
   regime's; else by the learning student. So a returning domain is predicted by its own
   expert from its first frame, before any drift is detected.

A bank holds at most ``max_experts`` experts, the learning one included; the least recently
used banked expert gives way. Nothing here sees a label or a domain tag.

Example:
    >>> import numpy as np, torch
    >>> from learners.configs import ExpertConfig, OnlineConfig
    >>> from learners.online import OnlineLearner
    >>> from perception.nets import SegNet, STUDENT_CONFIG
    >>> learner = OnlineLearner(OnlineConfig(batch_size=1), SegNet(STUDENT_CONFIG), seed=0)
    >>> bank = ExpertBank(ExpertConfig(enabled=True, warmup=2, lookback=0), learner)
    >>> day, night = np.full(21, 0.6), np.full(21, 0.1)
    >>> for i in range(4): _ = bank.observe(i, day)
    >>> bank.on_drift(4)
    >>> [bank.observe(i, night) for i in (4, 5)][-1]["action"]
    'new'
    >>> bank.route(day).expert_id, bank.route(night) is None
    (0, True)
"""
from __future__ import annotations

import copy
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from learners.configs import ExpertConfig
from learners.input_stats import NUM_FEATURES, frame_statistics

if TYPE_CHECKING:
    from learners.online import OnlineLearner

log = logging.getLogger(__name__)


@dataclass
class Signature:
    """Running mean and variance (Welford) of a regime's frame statistics, and a distance to it.

    ``score(x)`` is the mean over features of ``min(|x - mean| / max(std, min_std), z_clip)``,
    the same novelty score as :class:`learners.input_stats.InputStatsTracker`.

    Example:
        >>> s = Signature()
        >>> for v in (0.0, 0.2): s.add(np.full(21, v))
        >>> round(s.score(np.full(21, 0.3), min_std=0.01, z_clip=10.0), 6)
        1.414214
    """

    n: int = 0
    mean: np.ndarray = field(default_factory=lambda: np.zeros(NUM_FEATURES))  # (K,)
    m2: np.ndarray = field(default_factory=lambda: np.zeros(NUM_FEATURES))  # (K,)

    def add(self, x: np.ndarray) -> None:
        """Absorb one frame's statistics. Shape: x (K,)."""
        self.n += 1
        delta = x - self.mean  # (K,)
        self.mean = self.mean + delta / self.n
        self.m2 = self.m2 + delta * (x - self.mean)

    def score(self, x: np.ndarray, min_std: float, z_clip: float) -> float:
        """Mean clipped z-score of ``x`` (K,) against this signature (inf while it is empty)."""
        if self.n == 0:
            return float("inf")
        std = np.maximum(np.sqrt(self.m2 / max(1, self.n - 1)), min_std)  # (K,)
        return float(np.minimum(np.abs(x - self.mean) / std, z_clip).mean())

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Signature":
        return cls(int(state["n"]), np.asarray(state["mean"], np.float64), np.asarray(state["m2"], np.float64))


@dataclass
class BankedExpert:
    """A student the stream has moved away from: its training state (``model.*`` weights and,
    with an EMA, ``average.*``), the signature of its regime, and when it was last used."""

    expert_id: int
    state: dict[str, torch.Tensor]
    signature: Signature
    last_used: int
    predictor: nn.Module | None = None  # built on first use: the predicting weights in a copy of the net


class ExpertBank:
    """The experts of one learner and the regime decisions (module docstring)."""

    def __init__(self, config: ExpertConfig, learner: "OnlineLearner"):
        if not config.enabled:
            raise ValueError("ExpertBank needs experts.enabled=true")
        self.config = config
        self.learner = learner
        self.banked: list[BankedExpert] = []
        self.active_id = 0
        self.next_id = 1
        self.active = Signature()  # the learning student's regime
        self.pending: list[np.ndarray] | None = None  # statistics of the frames since the last drift, while deciding
        self.pending_since = -1
        self.snapshots: deque[tuple[int, dict[str, torch.Tensor]]] = deque(
            maxlen=config.lookback // config.snapshot_every + 2)
        self.restores = 0
        self.created = 0

    # -- the stream ------------------------------------------------------------------------
    def observe(self, index: int, stats: np.ndarray) -> dict[str, Any] | None:
        """Frame ``index``'s statistics (K,), after its prediction; returns an ``expert`` event
        when this frame completes a regime decision."""
        if index % self.config.snapshot_every == 0 and self.config.lookback > 0:
            self.snapshots.append((index, self.learner.training_state()))
        if self.pending is None:
            self.active.add(stats)
            return None
        self.pending.append(stats)
        if len(self.pending) < self.config.warmup:
            return None
        return self._decide(index)

    def on_drift(self, index: int) -> None:
        """A drift was detected at frame ``index``: bank the active student, start deciding."""
        if self.pending is not None:  # a second alarm while deciding: decide on the frames after it
            self.pending, self.pending_since = [], index
            return
        state = self._state_before(index - self.config.lookback)
        self.banked.append(BankedExpert(self.active_id, state, self.active, last_used=index))
        self._evict()
        self.active = Signature()
        self.pending, self.pending_since = [], index
        self.snapshots.clear()

    def route(self, stats: np.ndarray, index: int | None = None) -> BankedExpert | None:
        """The banked expert that should predict a frame with statistics ``stats`` (K,), or None
        for the learning student: the nearest banked expert when it is nearer than the learning
        student's regime, or, while that regime has no signature yet (the ``warmup`` frames
        after a drift), when it lies within ``match``. With the frame's ``index`` the chosen
        expert counts as used there, so a full bank evicts the least recently used expert."""
        if self.config.route == "active" or not self.banked:
            return None
        cfg = self.config
        scores = [expert.signature.score(stats, cfg.min_std, cfg.z_clip) for expert in self.banked]
        best = int(np.argmin(scores))
        active = self.active.score(stats, cfg.min_std, cfg.z_clip) if self.active_ready else None
        if not nearer(scores[best], active, cfg.match):
            return None
        if index is not None:
            self.banked[best].last_used = max(self.banked[best].last_used, index)
        return self.banked[best]

    @property
    def active_ready(self) -> bool:
        """Whether the learning student's regime has a signature to compete with (not deciding, warm)."""
        return self.pending is None and self.active.n >= self.config.warmup

    def predictor(self, expert: BankedExpert) -> nn.Module:
        """The network that predicts for a banked expert (its EMA weights where the learner keeps them)."""
        if expert.predictor is None:
            expert.predictor = predictor_from_state(self.learner.predictor, expert.state)
        return expert.predictor

    # -- decisions -------------------------------------------------------------------------
    def _state_before(self, index: int) -> dict[str, torch.Tensor]:
        """The newest training snapshot taken at or before frame ``index`` (the oldest kept when
        none is that old; the learner's state now when none is kept)."""
        older = [state for at, state in self.snapshots if at <= index]
        if older:
            return older[-1]
        return self.snapshots[0][1] if self.snapshots else self.learner.training_state()

    def _decide(self, index: int) -> dict[str, Any]:
        assert self.pending is not None
        cfg = self.config
        frames = np.stack(self.pending)  # (warmup, K)
        centre = frames.mean(0)  # (K,)
        scores = [expert.signature.score(centre, cfg.min_std, cfg.z_clip) for expert in self.banked]
        best = int(np.argmin(scores)) if scores else -1
        event: dict[str, Any] = {"kind": "expert", "index": int(index), "since": int(self.pending_since)}
        if best >= 0 and scores[best] <= cfg.match:
            chosen = self.banked.pop(best)
            self.learner.load_training_state(chosen.state)
            self.active_id, self.active = chosen.expert_id, chosen.signature
            self.restores += 1
            event.update(action="restore", expert=chosen.expert_id, score=round(scores[best], 4))
        else:
            self.active_id, self.next_id = self.next_id, self.next_id + 1
            self.active = Signature()
            self.created += 1
            event.update(action="new", expert=self.active_id,
                         score=None if best < 0 else round(scores[best], 4))
        for x in frames:
            self.active.add(x)
        self.pending, self.pending_since = None, -1
        log.info("experts: %s expert %d at frame %d (%d banked)", event["action"], self.active_id, index, len(self.banked))
        return event

    def _evict(self) -> None:
        while len(self.banked) > self.config.max_experts - 1:
            oldest = min(range(len(self.banked)), key=lambda i: self.banked[i].last_used)
            log.info("experts: bank full, expert %d leaves", self.banked[oldest].expert_id)
            self.banked.pop(oldest)

    # -- checkpoints -----------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every banked expert's training state as ``expert.<id>.<model|average>.<name>``."""
        return {f"expert.{e.expert_id}.{key}": value for e in self.banked for key, value in e.state.items()}

    def state(self) -> dict[str, Any]:
        """The bank's plain-JSON state (signatures, ids, a decision in progress)."""
        return {"active_id": self.active_id, "next_id": self.next_id, "active": self.active.state(),
                "banked": [{"id": e.expert_id, "signature": e.signature.state(), "last_used": e.last_used}
                           for e in self.banked],
                "pending": None if self.pending is None else [x.tolist() for x in self.pending],
                "pending_since": self.pending_since, "restores": self.restores, "created": self.created}

    def load_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Continue from :meth:`state` and :meth:`state_tensors` (training snapshots start afresh)."""
        self.active_id, self.next_id = int(state["active_id"]), int(state["next_id"])
        self.active = Signature.from_state(state["active"])
        self.banked = [BankedExpert(int(row["id"]), expert_tensors(tensors, int(row["id"])),
                                    Signature.from_state(row["signature"]), int(row["last_used"]))
                       for row in state["banked"]]
        pending = state.get("pending")
        self.pending = None if pending is None else [np.asarray(x, np.float64) for x in pending]
        self.pending_since = int(state.get("pending_since", -1))
        self.restores, self.created = int(state.get("restores", 0)), int(state.get("created", 0))
        self.snapshots.clear()


def nearer(banked: float, active: float | None, match: float) -> bool:
    """Whether a frame goes to the banked expert at score ``banked`` rather than to the learning
    student (at score ``active``, None while its regime has no signature: then ``match`` decides).

    Example:
        >>> nearer(0.8, 1.5, 0.9), nearer(0.8, 0.5, 0.9), nearer(0.8, None, 0.9), nearer(1.2, None, 0.9)
        (True, False, True, False)
    """
    return banked < active if active is not None else banked <= match


def expert_tensors(tensors: dict[str, torch.Tensor], expert_id: int) -> dict[str, torch.Tensor]:
    """One banked expert's training state out of a checkpoint's tensors."""
    prefix = f"expert.{expert_id}."
    found = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
    if not found:
        raise ValueError(f"checkpoint holds no tensors of banked expert {expert_id} ({prefix}*)")
    return found


def predictor_from_state(template: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``template`` with the predicting weights of a training state (``average.*``
    where there are some, else ``model.*``), frozen, in ``template``'s train/eval mode."""
    prefix = "average." if any(key.startswith("average.") for key in state) else "model."
    model = copy.deepcopy(template).requires_grad_(False)
    model.load_state_dict({key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)})
    return model.train(template.training)


class ExpertRouter(nn.Module):
    """A checkpoint's experts as one network that predicts each image of a batch with the expert
    :meth:`ExpertBank.route` would pick: ``nets[0]`` is the learning student (its regime's
    signature ``signatures[0]``, a competitor once ``active_ready``), the others banked experts.
    For scoring a checkpoint on fixed probe frames (``bench/forgetting.py``).

    Example:
        >>> day, night = Signature(), Signature()
        >>> day.add(np.full(21, 0.5)); night.add(np.zeros(21))
        >>> router = ExpertRouter([nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1)], [day, night], ExpertConfig(enabled=True))
        >>> router.choose(torch.zeros(1, 3, 4, 6)), router(torch.rand(2, 3, 4, 6)).shape
        ([1], torch.Size([2, 2, 4, 6]))
    """

    def __init__(self, nets: list[nn.Module], signatures: list[Signature], config: ExpertConfig,
                 active_ready: bool = True):
        super().__init__()
        if len(nets) != len(signatures) or not nets:
            raise ValueError(f"ExpertRouter needs one signature per net, got {len(nets)} nets, {len(signatures)} signatures")
        self.nets = nn.ModuleList(nets)
        self.signatures = signatures
        self.config = config
        self.active_ready = active_ready
        self.routed = [0] * len(nets)  # images each expert predicted

    def choose(self, x: torch.Tensor) -> list[int]:
        """The expert of each image (0 = the learning student). Shape: x (B, 3, H, W) in [0, 1] -> [B]."""
        cfg = self.config
        images = (x.detach() * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
        out = []
        for image in images:
            stats = frame_statistics(np.ascontiguousarray(image))  # (K,)
            scores = [s.score(stats, cfg.min_std, cfg.z_clip) for s in self.signatures]
            best = 1 + int(np.argmin(scores[1:])) if len(scores) > 1 else 0
            active = scores[0] if self.active_ready else None
            out.append(best if best > 0 and nearer(scores[best], active, cfg.match) else 0)
        return out

    def _routed(self, x: torch.Tensor, coarse: bool) -> torch.Tensor:
        outs = []
        for b, k in enumerate(self.choose(x)):
            self.routed[k] += 1
            net = self.nets[k]
            head = getattr(net, "coarse_logits", net) if coarse else net
            outs.append(head(x[b : b + 1]))  # (1, K, h, w)
        return torch.cat(outs)  # (B, K, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._routed(x, coarse=False)

    def coarse_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._routed(x, coarse=True)
