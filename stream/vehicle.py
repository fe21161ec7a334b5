"""The vehicle runtime: run the deployed student with onnxruntime, swap in new versions between
two frames, and roll back on its own when a new version is unhealthy.

Small on purpose: it imports numpy and onnxruntime (and the registry client, for fetching),
never torch or ray, so ``pip install "odistill[vehicle]"`` is enough on the car.

- :class:`BundleModel`: one exported bundle (``manifest.json`` + ``student.onnx``, as
  ``odistill export`` writes it) in an onnxruntime session, its input checked against the
  manifest's spec.
- :class:`VehicleRuntime`: labels each frame with the current model. A *fetcher* (a callable
  that returns the newest deployed bundle's version and folder, or None) is polled in a
  background thread every ``poll_every`` frames; a new version is loaded and warmed up there,
  and swapped in at the start of the next frame, so no frame waits for it and none is dropped.
  A swapped-in version is watched for ``watch_frames`` frames: a NaN in its logits, its median
  latency over ``budget_ms``, or a confidence collapse (its mean top softmax probability under
  ``min_confidence``) rolls back to the previous version at once, the reason recorded, and
  that version is never taken again. A fetch that fails (the registry unreachable) is
  recorded and the runtime goes on with what it has.

Example:
    >>> import numpy as np
    >>> class Echo:  # a stand-in model: what BundleModel offers
    ...     def __init__(self, version): self.version = version
    ...     def run(self, image): return np.zeros((1, 2, 1, 1), np.float32), np.zeros((1, 1, 1), np.uint8)
    >>> runtime = VehicleRuntime(VehicleConfig(poll_every=0), Echo(1))
    >>> runtime.step(np.zeros((1, 1, 3), np.uint8)).shape, runtime.version
    ((1, 1), 1)
    >>> runtime.offer(Echo(2)); _ = runtime.step(np.zeros((1, 1, 3), np.uint8)); runtime.version, runtime.swaps
    (2, 1)
"""
from __future__ import annotations

import json
import logging
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

log = logging.getLogger(__name__)


class VehicleError(RuntimeError):
    """A bundle the vehicle cannot run; the message names the bundle and what is wrong."""


@dataclass(frozen=True)
class VehicleConfig:
    """Settings of :class:`VehicleRuntime`.

    Example:
        >>> VehicleConfig(budget_ms=0)
        Traceback (most recent call last):
        ...
        stream.vehicle.VehicleError: VehicleConfig.budget_ms must be > 0, got 0
    """

    budget_ms: float = 100.0  # a version whose median frame time passes this is rolled back
    watch_frames: int = 20  # frames a newly swapped-in version is watched
    min_confidence: float = 0.25  # mean top softmax probability over the watch, at least
    poll_every: int = 50  # frames between registry refreshes (0 = never poll)
    threads: int = 1  # onnxruntime intra-op threads

    def __post_init__(self) -> None:
        if not self.budget_ms > 0:
            raise VehicleError(f"VehicleConfig.budget_ms must be > 0, got {self.budget_ms}")
        if self.watch_frames < 1 or self.poll_every < 0 or self.threads < 1:
            raise VehicleError(f"VehicleConfig needs watch_frames >= 1, poll_every >= 0, threads >= 1, got "
                               f"{self.watch_frames}, {self.poll_every}, {self.threads}")
        if not 0.0 <= self.min_confidence < 1.0:
            raise VehicleError(f"VehicleConfig.min_confidence must be in [0, 1), got {self.min_confidence}")


class Model(Protocol):
    version: int

    def run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 -> logits (1, C, h, w) float32, labels (1, H, W) uint8."""


class BundleModel:
    """An exported bundle in an onnxruntime session.

    Args:
        folder: the bundle's folder (``manifest.json`` and the ONNX file it names).
        version: the registry's version of the bundle (default: the manifest's ``version``, else 0).
        threads: onnxruntime intra-op threads.
    """

    def __init__(self, folder: str | Path, version: int | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except FileNotFoundError:
            raise VehicleError(f"{folder}: no manifest.json: not a student bundle") from None
        except (OSError, json.JSONDecodeError) as error:
            raise VehicleError(f"{folder}/manifest.json: unreadable ({error})") from None
        name = (manifest.get("models") or {}).get("onnx")
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise VehicleError(f"{folder}/manifest.json: names no ONNX file in models.onnx (got {name!r})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # a truncated or foreign file
            raise VehicleError(f"{folder / name}: onnxruntime cannot load it ({error})") from None
        spec = manifest.get("input", {})
        got = self.session.get_inputs()[0]
        if spec.get("shape") != list(got.shape) or got.type != "tensor(uint8)":
            raise VehicleError(f"{folder}: the manifest's input {spec.get('shape')} uint8 does not match the graph's "
                               f"{got.shape} {got.type}")
        self.folder = folder
        self.manifest = manifest
        self.version = int(manifest.get("version", 0) if version is None else version)
        self.shape = tuple(spec["shape"][1:])  # (H, W, 3)

    def run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if image.shape != self.shape or image.dtype != np.uint8:
            raise VehicleError(f"bundle v{self.version} takes {self.shape} uint8 frames, got {image.shape} {image.dtype}")
        logits, labels = self.session.run(["logits", "labels"], {"image": image[None]})
        return logits, labels


def top_probability(logits: np.ndarray) -> float:
    """The mean over pixels of the top softmax probability (the model's confidence).

    Example:
        >>> round(top_probability(np.zeros((1, 4, 2, 2), np.float32)), 3)
        0.25
    """
    z = logits[0].astype(np.float64)  # (C, h, w)
    z = z - z.max(axis=0, keepdims=True)
    p = np.exp(z)
    return float((p.max(axis=0) / p.sum(axis=0)).mean())


class VehicleRuntime:
    """The deployed student on the stream (module docstring).

    ``fetch``: a callable returning (version, model) of the newest deployed bundle, or None
    when there is nothing new; it runs in a background thread, and its exceptions are
    recorded as ``fetch_failed`` events.
    """

    def __init__(self, config: VehicleConfig, model: Model, fetch: Callable[[], Model | None] | None = None,
                 on_refused: Callable[[int], None] | None = None, on_healthy: Callable[[int], None] | None = None) -> None:
        self.config = config
        self.on_refused = on_refused  # told of each version rolled back (a fetcher keeps it refused across restarts)
        self.on_healthy = on_healthy  # told of each version that passed its watch (the one to start with next time)
        self.current = model
        self.previous: Model | None = None
        self.fetch = fetch
        self.pending: Model | None = None
        self.lock = threading.Lock()
        self.poller: threading.Thread | None = None
        self.refused: set[int] = set()  # versions rolled back: never taken again
        self.events: list[dict[str, Any]] = []
        self.frames = 0
        self.swaps = 0
        self.rollbacks = 0
        self.watch: deque[tuple[float, float]] = deque()  # (ms, confidence) of the frames since the last swap
        self.frame_ms: list[float] = []
        self.swap_ms: list[float] = []
        self.clean_frames = 0  # frames in a row the current version ran with finite logits
        self.reported_healthy: int | None = None  # the version last reported to on_healthy

    @property
    def version(self) -> int:
        return self.current.version

    def offer(self, model: Model) -> None:
        """A loaded, warmed-up model to swap in at the next frame (unless it was rolled back before)."""
        if model.version in self.refused or model.version == self.current.version:
            return
        with self.lock:
            self.pending = model

    def _poll(self) -> None:
        def work() -> None:
            try:
                model = self.fetch() if self.fetch is not None else None
                if model is not None:
                    self.offer(model)
            except Exception as error:  # an unreachable registry, a refused bundle: keep running what we have
                self.events.append({"kind": "fetch_failed", "frame": self.frames, "reason": f"{type(error).__name__}: {error}"})
                log.warning("vehicle: fetching the deployed bundle failed at frame %d: %s", self.frames, error)

        if self.poller is None or not self.poller.is_alive():
            self.poller = threading.Thread(target=work, name="odistill-fetch", daemon=True)
            self.poller.start()

    def _swap(self) -> None:
        started = time.perf_counter()
        with self.lock:
            model, self.pending = self.pending, None
        if model is None or model.version in self.refused or model.version == self.current.version:
            return
        if self.previous is None:  # the version running passed its watch: it is the one to come back to
            self.previous = self.current
        self.current = model  # (a version replaced during its own watch is dropped; the last good one stays)
        self.watch.clear()
        self.swaps += 1
        self.swap_ms.append((time.perf_counter() - started) * 1000)
        self.events.append({"kind": "swap", "frame": self.frames, "version": model.version,
                            "from": self.previous.version})
        log.info("vehicle: frame %d runs v%d (was v%d)", self.frames, model.version, self.previous.version)

    def _rollback(self, reason: str) -> None:
        bad = self.current
        self.refused.add(bad.version)
        if self.on_refused is not None:
            self.on_refused(bad.version)
        self.current, self.previous = self.previous, None
        self.watch.clear()
        self.rollbacks += 1
        self.events.append({"kind": "rollback", "frame": self.frames, "version": bad.version, "to": self.current.version,
                            "reason": reason})
        log.warning("vehicle: frame %d: v%d rolled back to v%d: %s", self.frames, bad.version, self.current.version, reason)

    def _unhealthy(self, logits: np.ndarray, ms: float) -> str | None:
        if not np.isfinite(logits).all():
            return "NaN or infinite logits"
        self.watch.append((ms, top_probability(logits)))
        if len(self.watch) < self.config.watch_frames:
            return None
        median_ms = statistics.median(m for m, _ in self.watch)
        confidence = float(np.mean([c for _, c in self.watch]))
        if median_ms > self.config.budget_ms:
            return f"median latency {median_ms:.1f} ms over the {self.config.budget_ms:g} ms budget"
        if confidence < self.config.min_confidence:
            return f"confidence collapsed: mean top probability {confidence:.3f} < {self.config.min_confidence:g}"
        self.previous = None  # watched long enough: healthy
        if self.on_healthy is not None:
            self.reported_healthy = self.current.version
            self.on_healthy(self.current.version)
        return None

    def step(self, image: np.ndarray) -> np.ndarray:
        """The labels of one frame ((H, W) uint8), from the current version (or the one it rolled back to)."""
        if self.pending is not None:
            self._swap()
        if self.fetch is not None and self.config.poll_every and self.frames % self.config.poll_every == 0:
            self._poll()
        started = time.perf_counter()
        try:
            logits, labels = self.current.run(image)
        except Exception as error:  # a version under watch that fails outright is rolled back like a sick one
            if self.previous is None:
                raise
            self._rollback(f"failed: {type(error).__name__}: {error}")
            logits, labels = self.current.run(image)
            self.frame_ms.append((time.perf_counter() - started) * 1000)
            self.frames += 1
            return labels[0]
        ms = (time.perf_counter() - started) * 1000
        if self.previous is not None:  # a version under watch
            reason = self._unhealthy(logits, ms)
            if reason is not None:
                self._rollback(reason)
                logits, labels = self.current.run(image)  # this frame too, from the version rolled back to
        elif self.on_healthy is not None and self.reported_healthy != self.current.version:
            # the version started with has nothing to go back to; it still proves itself for the next start
            self.clean_frames = self.clean_frames + 1 if np.isfinite(logits).all() else 0
            if self.clean_frames >= self.config.watch_frames:
                self.reported_healthy = self.current.version
                self.on_healthy(self.current.version)
        self.frame_ms.append(ms)
        self.frames += 1
        return labels[0]

    def close(self) -> None:
        if self.poller is not None:
            self.poller.join(timeout=30)

    def summary(self) -> dict[str, Any]:
        """Frames, the version running, swaps and rollbacks (with their reasons), frame and swap times."""
        return {"frames": self.frames, "version": self.version, "swaps": self.swaps, "rollbacks": self.rollbacks,
                "frame_ms_median": statistics.median(self.frame_ms) if self.frame_ms else None,
                "swap_ms_max": max(self.swap_ms) if self.swap_ms else 0.0, "refused_versions": sorted(self.refused),
                "events": self.events}


def open_vehicle_source(spec: str, frames: int, seed: int = 100_000, realtime: bool = False) -> Any:
    """A camera source for the vehicle (``--source``), opened without the training side's
    run configuration (which would load torch): the simulator at its default settings, or any
    recorded log."""
    from types import SimpleNamespace

    from sim.world import SimConfig
    from stream.sources import open_source

    run = SimpleNamespace(source=spec, frames=frames, seed=seed, realtime=realtime, closed_loop=False, label_map="")
    return open_source(spec, SimpleNamespace(run=run, sim=SimConfig()))


def drive(runtime: VehicleRuntime, source: Any, frames: int) -> dict[str, Any]:
    """Run the vehicle on up to ``frames`` frames of ``source``; the runtime's summary."""
    try:
        for frame in source:
            if frame.index >= frames:
                break
            runtime.step(frame.image)
    finally:
        source.close()
        runtime.close()
    return runtime.summary()


class RegistryFetcher:
    """The vehicle's side of the registry, for :class:`VehicleRuntime`: each call refreshes the
    TUF metadata, downloads and verifies the deployed bundle (:func:`stream.registry.fetch_deployed`)
    and loads and warms it up; None when it is the version loaded last or one this vehicle rolled
    back. ``CACHE/vehicle.json`` keeps, across restarts, the versions rolled back and the last
    version that passed its watch (:meth:`start` begins with that one, so a freshly deployed
    version is always watched with a healthy one to go back to)."""

    def __init__(self, registry: str | Path, trusted_root: str | Path, cache_dir: str | Path, threads: int = 1) -> None:
        self.registry, self.trusted_root, self.cache = registry, trusted_root, Path(cache_dir)
        self.threads = threads
        self.state_path = self.cache / "vehicle.json"
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            state = {}
        self.refused: set[int] = {int(v) for v in state.get("refused", [])}
        self.good: int | None = state.get("good")
        self.loaded: int | None = None

    def _save(self) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"refused": sorted(self.refused), "good": self.good}))
        temporary.replace(self.state_path)

    def mark_refused(self, version: int) -> None:
        self.refused.add(int(version))
        self._save()

    def mark_healthy(self, version: int) -> None:
        self.good = int(version)
        self._save()

    def _load(self, folder: Path, version: int) -> BundleModel:
        model = BundleModel(folder, version=version, threads=self.threads)
        model.run(np.zeros(model.shape, np.uint8))  # warm up here, off the frame path
        self.loaded = version
        return model

    def __call__(self) -> BundleModel | None:
        from stream.registry import fetch_deployed

        deployed = fetch_deployed(self.registry, self.trusted_root, self.cache)
        if deployed.version == self.loaded or deployed.version in self.refused:
            return None
        return self._load(deployed.path, deployed.version)

    def start(self) -> BundleModel:
        """The model to start driving with: the last version that passed its watch when its
        bundle is on disk; else the deployed one (fetched now, or the verified one held when
        the registry cannot be reached)."""
        from stream.registry import RegistryError, current_deployed

        good = self.cache / "bundles" / str(self.good)
        if self.good is not None and (good / "manifest.json").is_file():
            return self._load(good, self.good)
        try:
            model = self()
        except RegistryError as error:
            held = current_deployed(self.cache, verify=True)
            if held is None:
                raise
            log.warning("%s: starting with the version held, %d", error, held.version)
            return self._load(held.path, held.version)
        if model is None:
            raise VehicleError(f"{self.registry}: the deployed version was rolled back on this vehicle and no healthy "
                               f"version is on disk")
        return model
