"""The vehicle runtime against a bare onnxruntime session, and swaps under load.

    .venv/bin/python bench/runtime.py [--frames 600] [--swaps 100] [--repeats 5]

1. Export the shipped student (256x128 camera frames) twice: two bundles, v1 and v2.
2. Overhead: the same frames through a bare ``onnxruntime.InferenceSession`` (the baseline) and
   through :class:`stream.vehicle.VehicleRuntime` (its health checks included); medians over
   ``--repeats`` interleaved passes, ``overhead_vs_ort`` = runtime / bare - 1 (target <= 0.05).
3. Swaps under load: ``--swaps`` new versions offered while frames stream (every few frames);
   each frame must come out (``frames_lost`` = frames in - frames out, target 0) and a swap must
   cost at most one frame time (``swap_ms_max`` against ``frame_ms``).
4. ``vehicle_imports``: the heavy modules a fresh process running the runtime imported (target []).
5. The registry: for a 1 MB and a 50 MB model, the time a vehicle takes to refresh the TUF
   metadata, download and verify the bundle (a fresh vehicle), and to refresh when nothing changed.

Last line: one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.runtime")


def make_bundles(out: Path, frames: np.ndarray) -> list[Path]:
    from perception.export import ExportConfig, export_manifest, export_student
    from perception.student_nets import build_student_net
    from perception.weights import load_weights
    from stream.builders import shipped_student_weights

    folders = []
    for version in (1, 2):
        net = build_student_net("default")
        load_weights(net, shipped_student_weights("default"))
        if version == 2:  # another student: the same net a little changed
            import torch

            with torch.no_grad():
                for p in net.parameters():
                    p.mul_(1.001)
        folder = out / f"v{version}"
        report = export_student(net.eval(), folder, frames, ExportConfig(formats=("onnx",)))
        (folder / "manifest.json").write_text(json.dumps(export_manifest(report, version=version)))
        folders.append(folder)
    return folders


def vehicle_imports(bundle: Path) -> list[str]:
    code = ("import sys, json, numpy as np\nfrom stream.vehicle import BundleModel, VehicleConfig, VehicleRuntime\n"
            f"r = VehicleRuntime(VehicleConfig(poll_every=0), BundleModel({str(bundle)!r}))\n"
            "r.step(np.zeros((128, 256, 3), np.uint8))\n"
            "print(json.dumps(sorted(m for m in ('torch', 'ray', 'kornia', 'torchvision', 'tensorflow') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def registry_times(out: Path, sizes_mb: tuple[int, ...] = (1, 50)) -> dict[str, dict[str, float]]:
    """Seconds a vehicle spends on metadata refresh + download + verification of a bundle of each
    size (median of 3 fresh vehicles), and on a refresh that finds nothing new."""
    from stream.registry import Registry, fetch_deployed, new_key

    new_key(out / "fleet.pem")
    times = {}
    for size in sizes_mb:
        registry = Registry.init(out / f"registry-{size}mb", out / "fleet.pem")
        bundle = out / f"bundle-{size}mb"
        bundle.mkdir()
        (bundle / "student.onnx").write_bytes(np.random.default_rng(size).bytes(size * 1024 * 1024))
        (bundle / "manifest.json").write_text(json.dumps({"models": {"onnx": "student.onnx"}}))
        registry.add_bundle(bundle)
        registry.promote(1, "approved", "bench")
        registry.promote(1, "deployed", "bench")
        fresh, again = [], []
        for repeat in range(3):
            cache = out / f"vehicle-{size}-{repeat}"
            started = time.perf_counter()
            fetch_deployed(registry.folder, registry.root_path, cache)
            fresh.append(time.perf_counter() - started)
            started = time.perf_counter()
            fetch_deployed(registry.folder, registry.root_path, cache)
            again.append(time.perf_counter() - started)
        times[f"{size}mb"] = {"fetch_verify_s": statistics.median(fresh), "refresh_nothing_new_s": statistics.median(again)}
        print(f"registry, {size} MB model: refresh + download + verify {statistics.median(fresh) * 1000:.0f} ms · "
              f"a refresh with nothing new {statistics.median(again) * 1000:.0f} ms")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--swaps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from sim.world import SimConfig
    from stream.sources.sim import SimSource

    frames = np.stack([f.image for f in SimSource(SimConfig(), seed=100_301, frames=64, schedule="tour")])  # (64, 128, 256, 3)
    out = Path(tempfile.mkdtemp(prefix="odistill-runtime-"))
    v1, v2 = make_bundles(out, frames[:16])
    import onnxruntime as ort

    from stream.vehicle import BundleModel, VehicleConfig, VehicleRuntime

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    bare = ort.InferenceSession(str(v1 / "student.onnx"), options, providers=["CPUExecutionProvider"])
    runtime = VehicleRuntime(VehicleConfig(poll_every=0), BundleModel(v1))
    stream = [frames[i % len(frames)] for i in range(args.frames)]
    def bare_pass() -> float:
        started = time.perf_counter()
        for image in stream:
            bare.run(["logits", "labels"], {"image": image[None]})
        return (time.perf_counter() - started) * 1000 / len(stream)

    def runtime_pass() -> float:
        started = time.perf_counter()
        for image in stream:
            runtime.step(image)
        return (time.perf_counter() - started) * 1000 / len(stream)

    bare_pass(), runtime_pass()  # warm-up
    bare_ms, runtime_ms = [], []
    for repeat in range(args.repeats):  # interleaved, the order alternating: the machine's noise hits both alike
        first, second = (bare_pass, runtime_pass) if repeat % 2 == 0 else (runtime_pass, bare_pass)
        a, b = first(), second()
        bare_ms.append(a if first is bare_pass else b)
        runtime_ms.append(b if first is bare_pass else a)
    bare_median, runtime_median = statistics.median(bare_ms), statistics.median(runtime_ms)
    overhead = statistics.median(r / b - 1.0 for r, b in zip(runtime_ms, bare_ms))  # the median of paired ratios
    print(f"per frame: bare onnxruntime (baseline) {bare_median:.2f} ms · vehicle runtime {runtime_median:.2f} ms · "
          f"overhead {overhead * 100:+.1f}% (target <= +5%)")

    class Tagged:
        """One of the two graphs under a new version number (what a fresh deployment looks like)."""

        def __init__(self, model: BundleModel, version: int) -> None:
            self.model, self.version = model, version

        def run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return self.model.run(image)

    graphs = [BundleModel(v1), BundleModel(v2)]
    swapping = VehicleRuntime(VehicleConfig(poll_every=0, watch_frames=2, budget_ms=1000.0), Tagged(graphs[0], 1))
    period = max(1, args.frames // args.swaps)
    produced, version = 0, 1
    for i, image in enumerate(stream):
        if i % period == 0 and version - 1 < args.swaps:
            version += 1
            swapping.offer(Tagged(graphs[version % 2], version))  # the two graphs in turn
        swapping.step(image)
        produced += 1
    summary = swapping.summary()
    frame_ms = summary["frame_ms_median"]
    print(f"swaps under load: {summary['swaps']} swaps over {len(stream)} frames, {len(stream) - produced} frames lost, "
          f"longest swap {summary['swap_ms_max']:.3f} ms against a frame time of {frame_ms:.2f} ms")
    imports = vehicle_imports(v1)
    registry = registry_times(out)
    print(f"modules a vehicle process imported of torch, ray, kornia, torchvision, tensorflow: {imports}")
    print(json.dumps({"frames": len(stream), "swaps": summary["swaps"], "frames_lost": len(stream) - produced,
                      "swap_ms_max": summary["swap_ms_max"], "frame_ms": frame_ms, "bare_ort_ms": bare_median,
                      "runtime_ms": runtime_median, "overhead_vs_ort": overhead, "vehicle_imports": imports,
                      "rollbacks": summary["rollbacks"], "registry": registry}))


if __name__ == "__main__":
    main()
