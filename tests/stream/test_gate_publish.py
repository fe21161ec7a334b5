"""Candidates published by a run, and the promotion gate that approves or refuses them."""
from __future__ import annotations

import json

import pytest

from stream.config import ConfigError, load_config
from stream.gate import GateConfig, run_gate
from stream.local import run_local
from stream.registry import Registry, RegistryError, new_key

SMALL = ["sim.width=64", "sim.height=32", "evaluator.robust_every=0"]
GATE = GateConfig(frames=4, robust_every=2, robust_steps=2, width=64, height=32)


@pytest.fixture(scope="module")
def registry_with_run(tmp_path_factory):
    """A run of 40 frames that published its checkpoints at frames 20 and 40 into a fresh registry."""
    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("publish")
    new_key(root / "fleet.pem")
    Registry.init(root / "registry", root / "fleet.pem")
    run = root / "run"
    run_local(load_config(None, [*SMALL, "run.frames=40", "learner.checkpoint_every=20", f"run.out={run}",
                                 f"publish.registry={root / 'registry'}", "publish.every=20"]), progress=False)
    return root, run


def test_a_run_publishes_its_checkpoints_as_candidates(registry_with_run):
    root, run = registry_with_run
    bundles = Registry(root / "registry").list()
    assert [(b.version, b.stage) for b in bundles] == [(1, "candidate"), (2, "candidate")]
    assert "every 20 frames (frame 20)" in bundles[0].history[0]["reason"]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["version"] for e in events if e["kind"] == "published"] == [1, 2]
    manifest = json.loads((run / "candidates" / "frame-40" / "manifest.json").read_text())
    assert manifest["student"]["frames_trained_on"] == 40 and set(manifest["models"]) == {"onnx", "torchscript", "weights"}


def test_the_gate_approves_a_first_candidate_and_refuses_a_worse_one(registry_with_run, tmp_path):
    root, _ = registry_with_run
    folder = root / "registry"
    first = run_gate(folder, 1, GATE)
    assert first.approved and first.deployed is None and "gate approved" in first.text()
    registry = Registry(folder)
    registry.promote(1, "deployed", "fleet")
    # a broken candidate: the same bundle with random weights
    broken = tmp_path / "broken"
    registry.unpack(2, broken)
    import torch
    from perception.student_nets import build_student_net
    from perception.weights import save_weights

    torch.manual_seed(5)
    save_weights(build_student_net("default"), broken / "student.safetensors")
    version = registry.add_bundle(broken, reason="a broken student").version
    refused = run_gate(folder, version, GATE)
    assert not refused.approved and refused.deployed_version == 1
    assert any("points below the deployed version's" in reason for reason in refused.reasons)
    info = Registry(folder).show(version)
    assert info.stage == "candidate" and info.history[-1]["reason"].startswith("gate refused: ")
    with pytest.raises(RegistryError, match="the gate judges candidates"):
        run_gate(folder, 1, GATE)


def test_publishing_settings_are_checked_together():
    with pytest.raises(ConfigError, match="need publish.registry"):
        load_config(None, ["publish.every=600"])
    with pytest.raises(ConfigError, match="must be a multiple of learner.checkpoint_every=600"):
        load_config(None, ["publish.registry=reg", "publish.every=500"])
