"""Offline training behind ``odistill train-teacher``, ``train-student`` and ``eval-teacher``.

Both are seeded and reproducible on one machine (bit-exact on the CPU; on a GPU up to
cuDNN's non-determinism). The teacher learns from the simulator's ground truth on every
domain; the starting student is distilled from a teacher on one kind of footage only
(by default clear-day frames of one sim town), so that every other domain is new to it.

These commands sit on the ``stream`` floor: they read frames from sources (the sim, a log)
and train with the learners' distillation loss. Their settings are config sections like a
run's (``teacher_training``, ``student_training``), loaded by :func:`stream.config.load_config`
from a TOML file and ``--set section.key=value`` overrides, checked by the same code with the
same messages.

Example:
    >>> student_training_config(overrides=["student_training.steps=10", "alpha=0.25"]).steps
    10
    >>> student_training_config(overrides=["alpha=2"])
    Traceback (most recent call last):
    ...
    stream.config.ConfigError: student_training.alpha must be in [0, 1], got 2.0
"""
from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from learners.configs import DistillationConfig
from learners.losses import DistillationLoss
from perception.device import resolve_device
from perception.labels import IGNORE_INDEX
from perception.nets import TEACHER_CONFIG, SegNet, count_macs, count_params
from perception.student_nets import STUDENT_NETS, build_student_net
from perception.weights import WEIGHTS_DIR, save_weights
from perception.evaluator import StreamingEvaluator
from perception.teachers import open_teacher
from perception.teachers.sim import SegNetTeacher
from sim import seeds as world_seeds
from sim.world import SimConfig
from stream.config import RunConfig, apply_overrides, load_config
from stream.sources import open_source
from stream.sources.sim import SimSource

log = logging.getLogger(__name__)

EVAL_SEED = world_seeds.TEACHER_EVALUATION[0]  # eval-teacher's default world and train-teacher's held-out score


@dataclass(frozen=True)
class TeacherTrainingConfig:
    """The ``teacher_training`` section (``odistill train-teacher``)."""

    steps: int = 6000  # optimiser steps
    batch_size: int = 32
    lr: float = 3e-3  # AdamW peak learning rate (one-cycle schedule)
    weight_decay: float = 1e-4
    worlds: int = 128  # distinct worlds rendered for training: the first of sim.seeds.TEACHER_TRAINING
    frames_per_world: int = 120  # frames per world, spread over every domain of `schedule`
    schedule: str = "all"  # every weather in both towns
    workers: int = 0  # render processes (0 = cpu count)
    eval_frames: int = 1200  # frames of held-out worlds scored at the end

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "worlds", "frames_per_world"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("workers", "eval_frames"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        world_seeds.teacher_training_worlds(self.worlds)  # ValueError naming teacher_training.worlds and the range


@dataclass(frozen=True)
class StudentTrainingConfig:
    """The ``student_training`` section (``odistill train-student``)."""

    steps: int = 6000
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-5
    frames: int = 6000  # frames labelled by the teacher once, then trained on
    worlds: int = 24  # sim only: worlds the frames come from (sim.seeds.student_training_worlds)
    alpha: float = 0.5  # hard/soft mix of the distillation loss
    temperature: float = 2.0
    class_balance: float = 0.5  # hard-label class weights freq**-power (see learners.losses)
    workers: int = 0
    net: str = "default"  # student architecture, a name in perception.student_nets.STUDENT_NETS

    def __post_init__(self) -> None:
        if self.net not in STUDENT_NETS:
            raise ValueError(f"net: unknown student net {self.net!r} (choose one of: {', '.join(sorted(STUDENT_NETS))})")
        for key in ("steps", "batch_size", "frames", "worlds"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        self.distillation()  # alpha and temperature are checked where they are used, with its messages

    def distillation(self) -> DistillationConfig:
        """The distillation loss's settings."""
        return DistillationConfig(alpha=self.alpha, temperature=self.temperature, class_balance=self.class_balance)


@dataclass(frozen=True)
class TeacherTrainingSettings:
    """Root of ``train-teacher``'s config: its one section, as :class:`stream.config.RunConfig` is a run's."""

    teacher_training: TeacherTrainingConfig = field(default_factory=TeacherTrainingConfig)


@dataclass(frozen=True)
class StudentTrainingSettings:
    """Root of ``train-student``'s config."""

    student_training: StudentTrainingConfig = field(default_factory=StudentTrainingConfig)


def _in_section(section: str, overrides: list[str] | None) -> list[str]:
    """``key=value`` (the short form) -> ``section.key=value``; dotted overrides pass as they are."""
    out = []
    for item in overrides or []:
        key, sep, _ = item.partition("=")
        out.append(f"{section}.{item.strip()}" if sep and "." not in key else item)
    return out


def teacher_training_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TeacherTrainingConfig:
    """Defaults, then the ``[teacher_training]`` table of the TOML file at ``path``, then
    ``teacher_training.key=value`` (or ``key=value``) overrides."""
    settings = load_config(path, _in_section("teacher_training", overrides), root=TeacherTrainingSettings)
    return settings.teacher_training


def student_training_config(path: str | Path | None = None, overrides: list[str] | None = None) -> StudentTrainingConfig:
    """Defaults, then the ``[student_training]`` table of the TOML file at ``path``, then
    ``student_training.key=value`` (or ``key=value``) overrides."""
    settings = load_config(path, _in_section("student_training", overrides), root=StudentTrainingSettings)
    return settings.student_training


def _render_world(args: tuple[int, int, str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    seed, frames, schedule = args
    images, labels, domains = [], [], []
    with_source = SimSource(SimConfig(), seed=seed, frames=frames, schedule=schedule)
    for frame in with_source:
        images.append(frame.image)
        labels.append(frame.label)
        domains.append(frame.domain)
    with_source.close()
    return np.stack(images), np.stack(labels), domains


def render_dataset(seeds: list[int], frames_per_world: int, schedule: str, workers: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Render ``frames_per_world`` frames of every world seed (in parallel processes).

    Shape:
        -> images (N, H, W, 3) uint8, labels (N, H, W) uint8, domains [N]
    """
    import os

    workers = workers or os.cpu_count() or 1
    jobs = [(seed, frames_per_world, schedule) for seed in seeds]
    if workers == 1:
        parts = [_render_world(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            parts = list(pool.map(_render_world, jobs))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    domains = [d for p in parts for d in p[2]]
    return images, labels, domains


def _batches(count: int, batch: int, steps: int, rng: np.random.Generator):
    for _ in range(steps):
        yield rng.integers(0, count, size=batch)


def _augment(x: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None, rng: np.random.Generator):
    """Horizontal flips (the world has no handedness the labels depend on).

    Shape:
        x (B, 3, H, W), y (B, H, W), soft (B, K, h, w) -> same
    """
    flip = torch.from_numpy(rng.random(x.shape[0]) < 0.5).to(x.device)  # (B,)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    y = torch.where(flip[:, None, None], y.flip(-1), y)
    if soft is not None:
        soft = torch.where(flip[:, None, None, None], soft.flip(-1), soft)
    return x, y, soft


def _to_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)


def train_teacher(config: TeacherTrainingConfig | None = None, out: str | Path | None = None, seed: int = 0,
                  device: str = "auto") -> dict[str, Any]:
    """Train the sim teacher on ground truth from every domain; write safetensors; score held-out worlds."""
    config = config or TeacherTrainingConfig()
    out = Path(out) if out else WEIGHTS_DIR / "sim_teacher.safetensors"
    dev = resolve_device(device, setting="--device")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    worlds = world_seeds.teacher_training_worlds(config.worlds)
    images, labels, _ = render_dataset(worlds, config.frames_per_world, config.schedule, config.workers)
    log.info("rendered %d training frames in %.1f s", len(images), time.perf_counter() - t0)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        model = SegNet(TEACHER_CONFIG).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    model.train()
    t1 = time.perf_counter()
    for step, idx in enumerate(_batches(len(images), config.batch_size, config.steps, rng)):
        x = _to_input(images[idx], dev)  # (B, 3, H, W)
        y = torch.from_numpy(labels[idx]).to(dev).long()  # (B, H, W)
        x, y, _ = _augment(x, y, None, rng)
        loss = F.cross_entropy(model(x), y, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 500 == 0 or step == config.steps - 1:
            log.info("teacher step %d/%d loss %.4f (%.1f s)", step, config.steps, float(loss.detach()), time.perf_counter() - t1)
    train_s = time.perf_counter() - t1
    model.eval()
    meta = {"seed": str(seed), "steps": str(config.steps), "config": str(dataclasses.asdict(config)),
            "world_seeds": f"{worlds[0]}..{worlds[-1]}"}
    save_weights(model, out, metadata=meta)
    del images, labels
    result = {"weights": str(out), "params": count_params(model), "macs": count_macs(model, 128, 256),
              "train_s": round(train_s, 1), "device": str(dev)}
    if config.eval_frames:
        teacher = SegNetTeacher(out, device=str(dev))
        result["eval"] = evaluate_on_sim(teacher, frames=config.eval_frames, seed=EVAL_SEED, schedule="all")
    return result


def _label_frames(teacher: Any, frames: list[np.ndarray], batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    labels, logits = [], []
    for start in range(0, len(frames), batch):
        out = teacher.label(np.stack(frames[start : start + batch]))
        labels.append(out.labels)
        logits.append(out.logits.astype(np.float16))
    return np.concatenate(labels), np.concatenate(logits)


def _collect_frames(source: str, config: StudentTrainingConfig, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """The frames the student learns from, and the sim world seeds they come from (none for a log)."""
    kind, _, arg = source.partition(":")
    if kind == "sim":
        per_world = max(1, config.frames // config.worlds)
        worlds = world_seeds.student_training_worlds(seed, config.worlds)
        images, _, _ = render_dataset(worlds, per_world, arg or "clear", config.workers)
        return list(images), worlds
    run = apply_overrides(RunConfig(), [f"run.frames={config.frames}"])
    frames = []
    src = open_source(source, run)
    try:
        for frame in src:
            frames.append(frame.image)
            if len(frames) >= config.frames:
                break
    finally:
        src.close()
    return frames, []


def label_dataset(teacher: Any, frames: list[np.ndarray], batch: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label ``frames`` once with ``teacher`` (an object with ``label``): the training set of an
    offline student.

    Shape:
        frames [N x (H, W, 3) uint8] -> images (N, H, W, 3) uint8, labels (N, H, W) uint8,
        logits (N, K, h, w) float16 (the teacher's soft targets at its logits stride)
    """
    labels, logits = _label_frames(teacher, frames, batch)
    return np.stack(frames), labels, logits


def fit_student(images: np.ndarray, labels: np.ndarray, logits: np.ndarray, config: StudentTrainingConfig,
                seed: int = 0, device: str = "auto") -> torch.nn.Module:
    """Train a fresh ``config.net`` student on a labelled set (:func:`label_dataset`) with the
    distillation loss, AdamW and a one-cycle schedule; seeded (init and batches). Returns it in
    eval mode on the CPU.

    Shape:
        images (N, H, W, 3) uint8, labels (N, H, W) uint8, logits (N, K, h, w)
    """
    dev = resolve_device(device, setting="--device")
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        model = build_student_net(config.net).to(dev)
    loss_fn = DistillationLoss(config.distillation())
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    model.train()
    t1 = time.perf_counter()
    for step, idx in enumerate(_batches(len(images), config.batch_size, config.steps, rng)):
        x = _to_input(images[idx], dev)  # (B, 3, H, W)
        y = torch.from_numpy(labels[idx]).to(dev).long()  # (B, H, W)
        soft = torch.from_numpy(logits[idx]).to(dev).float()  # (B, K, h, w)
        x, y, soft = _augment(x, y, soft, rng)
        loss = loss_fn(model(x), y, soft)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 500 == 0 or step == config.steps - 1:
            log.info("student %s step %d/%d loss %.4f (%.1f s)", config.net, step, config.steps, float(loss.detach()),
                     time.perf_counter() - t1)
    return model.eval().cpu()


def train_student(config: StudentTrainingConfig | None = None, out: str | Path | None = None, teacher: str = "sim",
                  source: str = "sim:clear", seed: int = 0, device: str = "auto",
                  input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Distil the starting student offline from ``teacher`` on frames of ``source`` only."""
    config = config or StudentTrainingConfig()
    out = Path(out) if out else WEIGHTS_DIR / "student_clear_oldtown.safetensors"
    dev = resolve_device(device, setting="--device")
    frames, worlds = _collect_frames(source, config, seed)
    if input_size is not None:
        import cv2

        frames = [cv2.resize(f, (input_size[1], input_size[0]), interpolation=cv2.INTER_AREA) for f in frames]
    labeller = open_teacher(teacher, device=str(dev))
    t0 = time.perf_counter()
    images, labels, logits = label_dataset(labeller, frames)
    log.info("teacher labelled %d frames in %.1f s", len(images), time.perf_counter() - t0)
    t1 = time.perf_counter()
    model = fit_student(images, labels, logits, config, seed=seed, device=device)
    meta = {"seed": str(seed), "teacher": teacher, "source": source, "steps": str(config.steps), "net": config.net}
    if worlds:
        meta["world_seeds"] = f"{worlds[0]}..{worlds[-1]}"
    save_weights(model, out, metadata=meta)
    return {"weights": str(out), "params": count_params(model), "macs": count_macs(model, images.shape[1], images.shape[2]),
            "frames": len(images), "train_s": round(time.perf_counter() - t1, 1), "device": str(dev)}


def in_batches(frames: Iterable[Any], batch: int) -> Iterator[list[Any]]:
    """``frames`` in lists of ``batch`` (the last one shorter), for batched scoring of a stream.

    Example:
        >>> [len(p) for p in in_batches(range(5), 2)]
        [2, 2, 1]
    """
    pack: list[Any] = []
    for frame in frames:
        pack.append(frame)
        if len(pack) == batch:
            yield pack
            pack = []
    if pack:
        yield pack


def evaluate_on_sim(teacher: Any, frames: int = 1200, seed: int = EVAL_SEED, schedule: str = "all",
                    device: str = "auto", batch: int = 16) -> dict[str, Any]:
    """Per-domain mIoU and pixel accuracy of a teacher (object or spec) against sim ground truth
    on world ``seed`` (warns when that world is in a range of :mod:`sim.seeds` something was fitted on)."""
    fitted = world_seeds.training_use(seed)
    if fitted is not None:
        log.warning("eval-teacher: world seed %d is in %s (sim.seeds): the score is not on held-out worlds", seed, fitted)
    if isinstance(teacher, str):
        teacher = open_teacher(teacher, device=device)
    evaluator = StreamingEvaluator()
    source = SimSource(SimConfig(), seed=seed, frames=frames, schedule=schedule)
    for pack in in_batches(source, batch):
        out = teacher.label(np.stack([f.image for f in pack]))
        for frame, pred in zip(pack, out.labels):
            evaluator.update(frame.domain, pred, ground_truth=frame.label)
    source.close()
    summary = evaluator.summary()
    per_domain = {name: {"miou": d["student_miou"], "pixel_acc": d["student_pixel_acc"], "frames": d["frames"]}
                  for name, d in summary["per_domain"].items()}
    return {"miou": summary["student_miou"], "pixel_acc": summary["student_pixel_acc"],
            "min_domain_miou": min(d["miou"] for d in per_domain.values()), "per_domain": per_domain, "seed": seed}
