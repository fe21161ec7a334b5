"""The vehicle runtime: onnxruntime bundles, swaps between frames with none lost, local rollback
on NaN, latency and confidence collapse, a registry that fails mid-run, and no torch or ray."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.export import DeployableStudent, ExportConfig, ExportReport, export_manifest, export_student
from stream.vehicle import BundleModel, VehicleConfig, VehicleError, VehicleRuntime, drive, open_vehicle_source

REPO = Path(__file__).resolve().parents[2]
H, W = 32, 64


class Tiny(torch.nn.Module):
    """A 1x1 convolution student (fast), or one that answers NaN or the same score for every class."""

    def __init__(self, seed: int, kind: str = "ok") -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 19, 1)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # (B, 19, H, W)
        if self.kind == "nan":
            return y * float("nan")
        if self.kind == "flat":
            return y * 0.0
        return y * 10.0


def bundle(folder: Path, seed: int, kind: str = "ok", version: int = 1) -> Path:
    """An exported bundle: student.onnx and manifest.json (bad kinds skip the export's parity check)."""
    pytest.importorskip("onnx")
    frames = np.random.default_rng(seed).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    if kind == "ok":
        report = export_student(Tiny(seed).eval(), folder, frames, ExportConfig(formats=("onnx",), model_size=(W, H)))
    else:
        folder.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(DeployableStudent(Tiny(seed, kind).eval(), (W, H), (W, H)).eval(),
                          (torch.from_numpy(frames[:1]),), str(folder / "student.onnx"), input_names=["image"],
                          output_names=["logits", "labels"], dynamo=False)
        report = ExportReport(files={"onnx": str(folder / "student.onnx")}, camera_size=(W, H), model_size=(W, H))
    (folder / "manifest.json").write_text(json.dumps(export_manifest(report, version=version)))
    return folder


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {name: bundle(root / name, seed, kind, version) for name, seed, kind, version in (
        ("v1", 1, "ok", 1), ("v2", 2, "ok", 2), ("nan", 3, "nan", 3), ("flat", 4, "flat", 4), ("v5", 5, "ok", 5))}


def image(i: int = 0) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)


def test_a_bundle_runs_in_onnxruntime_and_checks_its_input(bundles):
    model = BundleModel(bundles["v1"])
    logits, labels = model.run(image())
    assert model.version == 1 and logits.shape == (1, 19, H, W) and labels.shape == (1, H, W)
    with pytest.raises(VehicleError, match=r"takes \(32, 64, 3\) uint8 frames, got \(16, 64, 3\)"):
        model.run(image()[:16])


def test_bad_bundles_are_refused_by_name(tmp_path, bundles):
    with pytest.raises(VehicleError, match="no manifest.json: not a student bundle"):
        BundleModel(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.loads(json.dumps("{")) + "not json")
    with pytest.raises(VehicleError, match="manifest.json: unreadable"):
        BundleModel(broken)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "manifest.json").write_text((bundles["v1"] / "manifest.json").read_text())
    (truncated / "student.onnx").write_bytes((bundles["v1"] / "student.onnx").read_bytes()[:200])
    with pytest.raises(VehicleError, match="onnxruntime cannot load it"):
        BundleModel(truncated)
    sneaky = tmp_path / "sneaky"
    sneaky.mkdir()
    manifest = json.loads((bundles["v1"] / "manifest.json").read_text())
    manifest["models"]["onnx"] = "../v1/student.onnx"
    (sneaky / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VehicleError, match="names no ONNX file"):
        BundleModel(sneaky)


def test_swaps_happen_between_frames_and_no_frame_is_lost(bundles):
    models = [BundleModel(bundles["v1"]), BundleModel(bundles["v2"])]
    runtime = VehicleRuntime(VehicleConfig(poll_every=0), models[0])
    outputs = []
    for i in range(100):
        if i % 2 == 0:
            runtime.offer(models[(i // 2 + 1) % 2])  # a new version every other frame: 50 swaps
        outputs.append(runtime.step(image(i)))
    assert runtime.frames == len(outputs) == 100 and runtime.swaps == 50 and runtime.rollbacks == 0
    expected = [models[(i // 2 + 1) % 2].run(image(i))[1][0] for i in range(100)]
    assert all(np.array_equal(a, b) for a, b in zip(outputs, expected)), "each frame labelled by the version swapped in before it"


@pytest.mark.parametrize("bad, reason", [("nan", "NaN or infinite logits"), ("flat", "confidence collapsed")])
def test_an_unhealthy_version_is_rolled_back_at_once_and_never_taken_again(bundles, bad, reason):
    good, broken = BundleModel(bundles["v1"]), BundleModel(bundles[bad])
    runtime = VehicleRuntime(VehicleConfig(poll_every=0, watch_frames=3), good)
    runtime.offer(broken)
    labels = [runtime.step(image(i)) for i in range(6)]
    assert runtime.version == 1 and runtime.rollbacks == 1 and len(labels) == 6
    event = next(e for e in runtime.events if e["kind"] == "rollback")
    assert event["version"] == broken.version and event["to"] == 1 and reason in event["reason"]
    if bad == "nan":  # refused on its first frame, which the good version labels instead
        assert event["frame"] == 0 and np.array_equal(labels[0], good.run(image(0))[1][0])
    else:  # judged over the watch's 3 frames
        assert event["frame"] == 2
    runtime.offer(broken)
    runtime.step(image(9))
    assert runtime.version == 1 and runtime.swaps == 1


def test_a_version_over_the_latency_budget_is_rolled_back(bundles):
    class Slow(BundleModel):
        def run(self, frame):
            time.sleep(0.004)
            return super().run(frame)

    runtime = VehicleRuntime(VehicleConfig(poll_every=0, watch_frames=3, budget_ms=2.0), BundleModel(bundles["v1"]))
    runtime.offer(Slow(bundles["v2"]))
    for i in range(4):
        runtime.step(image(i))
    assert runtime.version == 1 and "over the 2 ms budget" in runtime.events[-1]["reason"]


def test_the_registry_failing_mid_run_is_recorded_and_the_vehicle_keeps_driving(bundles):
    calls = []

    def fetch():
        calls.append(1)
        if len(calls) == 1:
            return BundleModel(bundles["v5"])
        raise ConnectionError("registry at http://127.0.0.1:9 unreachable")

    runtime = VehicleRuntime(VehicleConfig(poll_every=5), BundleModel(bundles["v1"]), fetch=fetch)
    for i in range(30):
        runtime.step(image(i))
        if runtime.poller is not None:
            runtime.poller.join()
    runtime.close()
    assert runtime.frames == 30 and runtime.version == 5 and len(calls) == 6
    failed = [e for e in runtime.events if e["kind"] == "fetch_failed"]
    assert len(failed) == 5 and "unreachable" in failed[0]["reason"]


def test_the_vehicle_process_imports_neither_torch_nor_ray(bundles):
    code = (f"import sys, json\nfrom stream.vehicle import BundleModel, VehicleConfig, VehicleRuntime, drive, open_vehicle_source\n"
            f"runtime = VehicleRuntime(VehicleConfig(poll_every=0), BundleModel({str(bundles['v1'])!r}))\n"
            f"from types import SimpleNamespace\n"
            f"import numpy as np\n"
            f"for i in range(3): runtime.step(np.zeros(({H}, {W}, 3), np.uint8))\n"
            f"src = open_vehicle_source('sim:clear', 2)\nnext(iter(src)); src.close()\n"
            f"print(json.dumps(sorted(m for m in ('torch', 'ray', 'kornia', 'torchvision') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_drive_runs_a_source_through_the_runtime(bundles):
    runtime = VehicleRuntime(VehicleConfig(poll_every=0), BundleModel(bundles["v1"]))
    from sim.world import SimConfig
    from stream.sources.sim import SimSource

    summary = drive(runtime, SimSource(SimConfig(width=W, height=H), seed=1, frames=5, schedule="clear"), frames=5)
    assert summary["frames"] == 5 and summary["version"] == 1 and summary["rollbacks"] == 0


def test_the_vehicle_follows_the_registry_over_http_and_survives_it_going_away(tmp_path, bundles):
    """Deployments reach a running vehicle between frames through a TUF registry on a loopback
    HTTP server; when the server goes away the vehicle records it and drives on."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from stream.registry import Registry, new_key
    from stream.vehicle import RegistryFetcher

    new_key(tmp_path / "fleet.pem")
    registry = Registry.init(tmp_path / "registry", tmp_path / "fleet.pem")
    for name in ("v1", "v2"):
        registry.add_bundle(bundles[name], reason="exported")
    registry.promote(1, "approved", "gate")
    registry.promote(1, "deployed", "fleet")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "registry"))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    fetch = RegistryFetcher(url, registry.root_path, tmp_path / "vehicle")
    runtime = VehicleRuntime(VehicleConfig(poll_every=4), fetch(), fetch=fetch)
    assert runtime.version == 1

    def frames(n, start):
        for i in range(start, start + n):
            runtime.step(image(i))
            if runtime.poller is not None:
                runtime.poller.join()

    frames(8, 0)
    registry.promote(2, "approved", "gate")
    registry.promote(2, "deployed", "fleet")
    frames(8, 8)
    assert runtime.version == 2 and runtime.swaps == 1, runtime.events
    server.shutdown()
    server.server_close()
    frames(8, 16)
    runtime.close()
    assert runtime.frames == 24 and runtime.version == 2
    assert any(e["kind"] == "fetch_failed" for e in runtime.events)


def test_a_pickle_with_a_code_payload_is_never_loaded_as_weights_or_a_model(tmp_path, bundles):
    """Weights are read as safetensors only and models by onnxruntime only: a pickle that would
    run code when unpickled is refused, and its code never runs."""
    import os
    import pickle

    from perception.student_nets import build_student_net
    from perception.weights import CheckpointError, load_weights

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "student.safetensors"
    evil.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_weights(build_student_net("default"), evil)
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text((bundles["v1"] / "manifest.json").read_text())
    (folder / "student.onnx").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(VehicleError, match="onnxruntime cannot load it"):
        BundleModel(folder)
    assert not marker.exists()


def test_a_swap_during_a_watch_keeps_the_last_healthy_version_to_go_back_to(bundles):
    good, fresh, broken = BundleModel(bundles["v1"]), BundleModel(bundles["v2"]), BundleModel(bundles["nan"])
    runtime = VehicleRuntime(VehicleConfig(poll_every=0, watch_frames=5), good)
    runtime.offer(fresh)
    runtime.step(image(0))  # v2 under watch
    runtime.offer(broken)
    runtime.step(image(1))  # v3 replaces v2 before v2's watch ended: NaN, rolled back
    assert runtime.version == 1 and runtime.rollbacks == 1, runtime.events


def test_a_watched_version_that_fails_outright_is_rolled_back(bundles, tmp_path):
    other = tmp_path / "other_size"
    bundle(other, 9, version=9)  # 64x32 graph...
    manifest = json.loads((other / "manifest.json").read_text())
    good = BundleModel(bundles["v1"])

    class Failing(BundleModel):
        def run(self, frame):
            raise VehicleError("bundle v9 takes (16, 32, 3) uint8 frames, got (32, 64, 3) uint8")

    runtime = VehicleRuntime(VehicleConfig(poll_every=0), good)
    runtime.offer(Failing(other, version=manifest["version"]))
    labels = runtime.step(image(0))
    assert runtime.version == 1 and "failed: VehicleError" in runtime.events[-1]["reason"]
    assert np.array_equal(labels, good.run(image(0))[1][0])


def test_a_restarted_vehicle_starts_from_its_last_healthy_version_and_keeps_refusals(tmp_path, bundles):
    from stream.registry import Registry, new_key
    from stream.vehicle import RegistryFetcher

    new_key(tmp_path / "fleet.pem")
    registry = Registry.init(tmp_path / "registry", tmp_path / "fleet.pem")
    for name in ("v1", "nan"):
        registry.add_bundle(bundles[name], stage="approved")
    registry.promote(1, "deployed", "fleet")
    fetch = RegistryFetcher(registry.folder, registry.root_path, tmp_path / "car")
    runtime = VehicleRuntime(VehicleConfig(poll_every=1, watch_frames=2), fetch.start(), fetch=fetch,
                             on_refused=fetch.mark_refused, on_healthy=fetch.mark_healthy)

    def drive_frames(n):
        for i in range(n):
            runtime.step(image(i))
            if runtime.poller is not None:
                runtime.poller.join()

    drive_frames(3)  # v1 runs its first 2 frames clean: remembered as healthy
    assert fetch.good == 1
    registry.promote(2, "deployed", "a bad one")
    drive_frames(3)
    assert runtime.version == 1 and runtime.refused == {2}
    again = RegistryFetcher(registry.folder, registry.root_path, tmp_path / "car")  # the car restarts
    assert again.refused == {2} and again.start().version == 1 and again() is None
    other_car = tmp_path / "other_car"
    assert RegistryFetcher(registry.folder, registry.root_path, other_car).start().version == 2
    unreachable = RegistryFetcher(tmp_path / "gone", registry.root_path, other_car)  # the registry cannot be reached
    assert unreachable.start().version == 2  # it starts with the verified bundle it holds
