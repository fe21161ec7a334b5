"""The sim teacher's depth head, trained offline (``odistill train-teacher-depth``).

The teacher's trunk and decoder stay frozen: their decoder features (stride 2) are computed
once for frames of :data:`sim.seeds.TEACHER_TRAINING` worlds, pooled to stride 4, and a small
:class:`perception.depth.DepthHead` learns the sim's rendered depth from them (log-depth L1,
sky and anything beyond ``perception.depth.MAX_DEPTH`` left out). The head is written as its
own safetensors file beside the teacher's weights; :func:`evaluate_teacher_depth` scores it
(AbsRel, per domain) on a :data:`sim.seeds.TEACHER_EVALUATION` world.

Seeded and reproducible on one machine (bit-exact on the CPU).

Example:
    >>> teacher_depth_config(overrides=["steps=10"]).steps
    10
    >>> teacher_depth_config(overrides=["teacher_depth.lr=0"])
    Traceback (most recent call last):
    ...
    stream.config.ConfigError: teacher_depth.lr must be > 0, got 0.0
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from perception.depth import MAX_DEPTH, log_depth_l1
from perception.depth_metrics import DepthScores
from perception.device import resolve_device
from perception.nets import count_params
from perception.teachers.sim import DEPTH_STRIDE, SIM_TEACHER_DEPTH_WEIGHTS, SIM_TEACHER_WEIGHTS, SegNetTeacher, teacher_depth_head
from perception.weights import save_weights
from sim import seeds as world_seeds
from sim.world import SimConfig
from stream.config import load_config
from stream.sources.sim import SimSource
from stream.training import in_batches

log = logging.getLogger(__name__)

EVAL_SEED = world_seeds.TEACHER_EVALUATION[0]


@dataclass(frozen=True)
class TeacherDepthConfig:
    """The ``teacher_depth`` section (``odistill train-teacher-depth``)."""

    steps: int = 300  # optimiser steps of the head
    batch_size: int = 8
    lr: float = 3e-3  # AdamW peak learning rate (one-cycle schedule)
    weight_decay: float = 1e-4
    worlds: int = 24  # distinct worlds: the first of sim.seeds.TEACHER_TRAINING
    frames_per_world: int = 12  # frames per world, spread over every domain of `schedule`
    schedule: str = "all"
    eval_frames: int = 120  # frames of a TEACHER_EVALUATION world scored at the end (0 = none)
    max_depth: float = 80.0  # metres: the AbsRel's range (sky and farther are left out)

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "worlds", "frames_per_world"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.eval_frames < 0:
            raise ValueError(f"eval_frames must be >= 0, got {self.eval_frames}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.max_depth <= 0:
            raise ValueError(f"max_depth must be > 0, got {self.max_depth}")
        world_seeds.teacher_training_worlds(self.worlds)  # ValueError naming the range


@dataclass(frozen=True)
class TeacherDepthSettings:
    """Root of ``train-teacher-depth``'s config."""

    teacher_depth: TeacherDepthConfig = field(default_factory=TeacherDepthConfig)


def teacher_depth_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TeacherDepthConfig:
    """Defaults, then the ``[teacher_depth]`` table of a TOML file, then ``teacher_depth.key=value``
    (or ``key=value``) overrides."""
    from stream.training import _in_section

    return load_config(path, _in_section("teacher_depth", overrides), root=TeacherDepthSettings).teacher_depth


def block_log_depth(depth: np.ndarray, stride: int = DEPTH_STRIDE, max_depth: float = MAX_DEPTH) -> np.ndarray:
    """Depth on a ``stride`` grid: the geometric mean of each block's pixels with depth in
    ``(0, max_depth]``, 0 where fewer than half of the block's pixels have one (sky).

    Shape:
        depth (N, H, W) metres -> (N, H/stride, W/stride) float32 metres

    Example:
        >>> block_log_depth(np.array([[[1.0, 4.0, 1000.0, 1000.0]]]), stride=2, max_depth=80).shape
        (1, 0, 2)
        >>> block_log_depth(np.array([[[1.0, 4.0], [1.0, 4.0]]]), stride=2, max_depth=80).tolist()
        [[[2.0]]]
    """
    n, h, w = depth.shape
    h, w = h // stride * stride, w // stride * stride
    blocks = depth[:, :h, :w].reshape(n, h // stride, stride, w // stride, stride)  # (N, h, s, w, s)
    valid = (blocks > 0) & (blocks <= max_depth)
    logs = np.where(valid, np.log(np.where(valid, blocks, 1.0)), 0.0).sum((2, 4))  # (N, h, w)
    counts = valid.sum((2, 4))  # (N, h, w)
    out = np.exp(logs / np.maximum(counts, 1))
    return np.where(counts * 2 >= stride * stride, out, 0.0).astype(np.float32)


def _render(seeds: list[int], frames_per_world: int, schedule: str) -> tuple[np.ndarray, np.ndarray]:
    images, depths = [], []
    for seed in seeds:
        source = SimSource(SimConfig(), seed=seed, frames=frames_per_world, schedule=schedule)
        for frame in source:
            images.append(frame.image)
            depths.append(frame.depth)
        source.close()
    return np.stack(images), np.stack(depths)


@torch.inference_mode()
def _features(teacher: SegNetTeacher, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """Shape: images (N, H, W, 3) uint8 -> pooled features (N, D, H/4, W/4) float16."""
    out = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start : start + batch]).to(teacher.device).permute(0, 3, 1, 2).float() / 255.0
        features = teacher.model.features(x)  # (B, D, H/2, W/2)
        out.append(F.avg_pool2d(features, DEPTH_STRIDE // 2, ceil_mode=True).half().cpu().numpy())  # (B, D, H/4, W/4)
    return np.concatenate(out)


def train_teacher_depth(config: TeacherDepthConfig | None = None, out: str | Path | None = None, seed: int = 0,
                        device: str = "auto", teacher_weights: str | Path = SIM_TEACHER_WEIGHTS) -> dict[str, Any]:
    """Train the depth head on the frozen sim teacher; write it; score it on a held-out world."""
    config = config or TeacherDepthConfig()
    out = Path(out) if out else SIM_TEACHER_DEPTH_WEIGHTS
    dev = resolve_device(device, setting="--device")
    rng = np.random.default_rng(seed)
    teacher = SegNetTeacher(teacher_weights, device=str(dev), depth_weights=None)
    worlds = world_seeds.teacher_training_worlds(config.worlds)
    t0 = time.perf_counter()
    images, depths = _render(worlds, config.frames_per_world, config.schedule)
    features = _features(teacher, images)  # (N, D, h, w) float16
    targets = block_log_depth(depths)  # (N, h, w)
    del images, depths
    log.info("teacher depth: %d frames rendered and featurised in %.1f s", len(features), time.perf_counter() - t0)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        head = teacher_depth_head(teacher.model.config).to(dev)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    head.train()
    t1 = time.perf_counter()
    for step in range(config.steps):
        idx = rng.integers(0, len(features), size=config.batch_size)
        x = torch.from_numpy(features[idx]).to(dev).float()  # (B, D, h, w)
        y = torch.from_numpy(targets[idx]).to(dev)  # (B, h, w)
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(dev)  # (B,) the world has no handedness
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        y = torch.where(flip[:, None, None], y.flip(-1), y)
        loss = log_depth_l1(head(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == config.steps - 1:
            log.info("teacher depth step %d/%d loss %.4f (%.1f s)", step, config.steps, float(loss.detach()),
                     time.perf_counter() - t1)
    head.eval()
    meta = {"seed": str(seed), "config": str(dataclasses.asdict(config)), "world_seeds": f"{worlds[0]}..{worlds[-1]}",
            "teacher": Path(teacher_weights).name, "stride": str(DEPTH_STRIDE)}
    save_weights(head, out, metadata=meta)
    result: dict[str, Any] = {"weights": str(out), "params": count_params(head), "frames": int(len(features)),
                              "train_s": round(time.perf_counter() - t1, 1), "final_loss": round(float(loss.detach()), 4)}
    if config.eval_frames:
        scored = SegNetTeacher(teacher_weights, device=str(dev), depth_weights=out)
        result["eval"] = evaluate_teacher_depth(scored, frames=config.eval_frames, max_depth=config.max_depth)
    return result


def evaluate_teacher_depth(teacher: Any, frames: int = 240, seed: int = EVAL_SEED, schedule: str = "all",
                           max_depth: float = 80.0, batch: int = 16) -> dict[str, Any]:
    """AbsRel (overall, per domain) of a teacher's depth against the sim's on world ``seed``
    (warns when that world is in a range something was fitted on)."""
    fitted = world_seeds.training_use(seed)
    if fitted is not None:
        log.warning("teacher depth: world seed %d is in %s (sim.seeds): the score is not on held-out worlds", seed, fitted)
    scores = DepthScores(max_depth)
    source = SimSource(SimConfig(), seed=seed, frames=frames, schedule=schedule)
    for pack in in_batches(source, batch):
        out = teacher.label(np.stack([f.image for f in pack]))
        if out.depth is None:
            raise ValueError(f"teacher {getattr(teacher, 'name', teacher)!r} gives no depth")
        for frame, depth in zip(pack, out.depth):
            scores.update(frame.domain, "teacher", depth, frame.depth)
    source.close()
    summary = scores.summary()
    per_domain = {name: d["teacher_depth_abs_rel"] for name, d in summary["per_domain"].items()}
    return {"abs_rel": summary["teacher_depth_abs_rel"], "per_domain": per_domain, "seed": seed, "frames": frames,
            "max_depth": max_depth}
