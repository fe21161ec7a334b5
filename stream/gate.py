"""The promotion gate: a candidate bundle is approved only when it is not worse than the fleet's.

On a *gate set* kept aside from training (simulator frames of the ``GATE_SET`` worlds with
their ground truth, every weather of both towns), the candidate's student and the deployed
one's are scored alike: clean mIoU, and robust mIoU (PGD at ``robust_eps`` with
``robust_steps`` iterations, the CE and SegPGD losses, on every ``robust_every``-th gate frame,
aimed at the ground truth), overall and per domain. The candidate is approved when its clean
and its robust mIoU are each at most ``max_drop_points`` mIoU points below the deployed
version's (any candidate passes this part when nothing is deployed yet) and, when a scenario
folder is given, the scenario suite passes with the candidate's weights. Either way the
decision and its figures go into the bundle's signed history: ``promote(..., "approved")`` or a
note that records the refusal and why.

Example:
    >>> decide({"clean_miou": 0.700, "robust_miou": 0.300}, {"clean_miou": 0.704, "robust_miou": 0.310}, 0.5)
    ["robust mIoU 0.300 is 1.00 points below the deployed version's 0.310 (at most 0.5 allowed)"]
    >>> decide({"clean_miou": 0.70, "robust_miou": 0.31}, None, 0.5)
    []
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig:
    """Settings of the promotion gate.

    Example:
        >>> GateConfig(max_drop_points=-1)
        Traceback (most recent call last):
        ...
        ValueError: GateConfig.max_drop_points must be >= 0 (mIoU points), got -1
    """

    max_drop_points: float = 0.5  # clean and robust mIoU may each be this many points below the deployed version's
    frames: int = 48  # gate-set frames (spread over every weather of both towns)
    robust_every: int = 4  # every Nth gate frame is attacked
    robust_eps: str = "4/255"  # PGD radius (L-inf)
    robust_steps: int = 10
    width: int = 256  # the gate set's frame size (the size the fleet's cameras deliver)
    height: int = 128

    def __post_init__(self) -> None:
        if self.max_drop_points < 0:
            raise ValueError(f"GateConfig.max_drop_points must be >= 0 (mIoU points), got {self.max_drop_points}")
        if self.frames < 1 or self.robust_every < 1 or self.robust_steps < 1:
            raise ValueError(f"GateConfig needs frames, robust_every and robust_steps >= 1, got {self.frames}, "
                             f"{self.robust_every}, {self.robust_steps}")


@dataclass
class GateDecision:
    """What the gate decided for one candidate, and on what figures."""

    version: int
    approved: bool
    reasons: list[str] = field(default_factory=list)
    candidate: dict[str, Any] = field(default_factory=dict)
    deployed: dict[str, Any] | None = None
    deployed_version: int | None = None
    suite: dict[str, Any] | None = None

    def text(self) -> str:
        figures = f"clean {self.candidate['clean_miou']:.3f}, robust {self.candidate['robust_miou']:.3f}"
        if self.deployed is not None:
            figures += (f" against v{self.deployed_version}'s clean {self.deployed['clean_miou']:.3f}, robust "
                        f"{self.deployed['robust_miou']:.3f}")
        if self.suite is not None:
            figures += f"; scenario suite {self.suite['passed']}/{self.suite['scenarios']} passed"
        verdict = "gate approved" if self.approved else "gate refused: " + "; ".join(self.reasons)
        return f"{verdict} ({figures})"


def gate_set(config: GateConfig) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(image, ground truth, domain) of the gate frames: the GATE_SET worlds, every weather of both towns."""
    from sim.seeds import GATE_SET
    from sim.world import SimConfig
    from stream.sources.sim import SimSource

    frames = []
    per_world = -(-config.frames // len(GATE_SET))
    for seed in GATE_SET:
        source = SimSource(SimConfig(width=config.width, height=config.height), seed=seed, frames=per_world * 10,
                           schedule="all")
        for frame in source:
            if frame.index % 10 == 0:  # a frame a second: the gate set spreads over the whole schedule
                frames.append((frame.image, frame.label, str(frame.meta["domain"])))
        source.close()
    return frames[: config.frames]


def score_student(weights: str | Path, frames: list[tuple[np.ndarray, np.ndarray, str]], config: GateConfig,
                  net: str = "default") -> dict[str, Any]:
    """Clean and robust mIoU (overall and per domain) of a student weights file on the gate set."""
    import torch

    from learners.robust_probe import RobustProbe
    from perception.argmax import net_labels
    from perception.evaluator import EvaluatorConfig, confusion_update
    from perception.labels import NUM_CLASSES
    from perception.metrics import mean_iou
    from perception.student_nets import build_student_net
    from perception.teachers.common import images_to_tensor
    from perception.weights import load_weights

    model = load_weights(build_student_net(net), weights).eval()
    probe = RobustProbe(EvaluatorConfig(robust_every=config.robust_every, robust_eps=config.robust_eps,
                                        robust_steps=config.robust_steps, corruptions="", worst_k=0), seed=0)
    shape = (NUM_CLASSES, NUM_CLASSES + 1)
    clean: dict[str, np.ndarray] = {}
    robust: dict[str, np.ndarray] = {}
    view = f"pgd {config.robust_eps}"
    for i, (image, label, domain) in enumerate(frames):
        with torch.inference_mode():
            predicted = np.asarray(net_labels(model, images_to_tensor(image[None]))).reshape(label.shape)
        confusion_update(clean.setdefault(domain, np.zeros(shape, np.int64)), label, predicted, 255)
        if i % config.robust_every == 0:
            record = probe.probe(model, image, np.array(label), i)  # a writable copy for torch
            confusion_update(robust.setdefault(domain, np.zeros(shape, np.int64)), label, record.labels[view], 255)
    per_domain = {d: {"clean_miou": float(mean_iou(m)), "robust_miou": float(mean_iou(robust[d])) if d in robust else None}
                  for d, m in clean.items()}
    return {"clean_miou": float(mean_iou(sum(clean.values()))), "robust_miou": float(mean_iou(sum(robust.values()))),
            "per_domain": per_domain, "frames": len(frames), "attacked_frames": sum(1 for i in range(len(frames))
                                                                                    if i % config.robust_every == 0)}


def decide(candidate: dict[str, Any], deployed: dict[str, Any] | None, max_drop_points: float) -> list[str]:
    """The reasons to refuse a candidate against the deployed version's figures ([] = none)."""
    if deployed is None:
        return []
    reasons = []
    for key, name in (("clean_miou", "clean"), ("robust_miou", "robust")):
        drop = (deployed[key] - candidate[key]) * 100
        if drop > max_drop_points + 1e-9:
            reasons.append(f"{name} mIoU {candidate[key]:.3f} is {drop:.2f} points below the deployed version's "
                           f"{deployed[key]:.3f} (at most {max_drop_points:g} allowed)")
    return reasons


def _weights_of(registry: Any, version: int, scratch: Path) -> tuple[Path, dict[str, Any]]:
    folder = registry.unpack(version, scratch / f"v{version}")
    manifest = json.loads((folder / "manifest.json").read_text())
    name = (manifest.get("models") or {}).get("weights")
    if not name:
        from stream.registry import RegistryError

        raise RegistryError(f"{registry.folder}: bundle version {version} carries no PyTorch weights (models.weights) "
                            f"for the gate to attack; export it with odistill export")
    return folder / name, manifest


def run_gate(registry_folder: str | Path, version: int, config: GateConfig = GateConfig(),
             scenarios: str | Path | None = None, out_dir: str | Path = "runs/gate") -> GateDecision:
    """Judge candidate ``version`` of the registry, and record the decision there."""
    from stream.registry import Registry

    registry = Registry(registry_folder)
    info = registry.show(version)
    if info.stage != "candidate":
        from stream.registry import RegistryError

        raise RegistryError(f"{registry_folder}: version {version} is {info.stage}; the gate judges candidates")
    with tempfile.TemporaryDirectory(prefix="odistill-gate-") as scratch:
        scratch_path = Path(scratch)
        weights, manifest = _weights_of(registry, version, scratch_path)
        frames = gate_set(config)
        net = (manifest.get("student") or {}).get("net", "default")
        decision = GateDecision(version, True, candidate=score_student(weights, frames, config, net))
        current = registry.deployed()
        if current is not None:
            deployed_weights, deployed_manifest = _weights_of(registry, current.version, scratch_path)
            decision.deployed_version = current.version
            decision.deployed = score_student(deployed_weights, frames, config,
                                              (deployed_manifest.get("student") or {}).get("net", "default"))
        decision.reasons = decide(decision.candidate, decision.deployed, config.max_drop_points)
        if scenarios is not None:
            from stream.simtest import load_suite, run_suite

            suite, errors = load_suite([scenarios])
            results = run_suite(suite, Path(out_dir) / f"v{version}", overrides=[f"student.weights={weights}",
                                                                                 f"student.net={net}"]) + errors
            failed = [r for r in results if not r.passed]
            decision.suite = {"scenarios": len(results), "passed": len(results) - len(failed),
                              "failed": [r.name for r in failed]}
            if failed:
                decision.reasons.append(f"the scenario suite failed: {', '.join(r.name for r in failed)}")
    decision.approved = not decision.reasons
    if decision.approved:
        registry.promote(version, "approved", decision.text())
    else:
        registry.note(version, decision.text())
    log.info("v%d: %s", version, decision.text())
    return decision
