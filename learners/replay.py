"""A bounded replay buffer that keeps old regimes (domains) alive.

Each stored sample is a teacher-labelled frame. Samples are grouped by *regime*: the learner
opens a new regime whenever drift is detected, so the buffer never needs the true domain.
When full, a sample is evicted from the regime that holds the most, so every regime keeps a
fair share however long the current one lasts. A sample may also hold the robustness views the
teacher side made of its frame (:class:`perception.views.FrameViews`); the learner refreshes
the adversarial one in place as it replays the frame.

Example:
    >>> import numpy as np
    >>> buf = ReplayBuffer(ReplayConfig(capacity=4), seed=0)
    >>> for i in range(6):
    ...     _ = buf.add(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), None, regime=i // 3)
    >>> len(buf), sorted(buf.regime_counts().items())
    (4, [(0, 2), (1, 2)])
    >>> len(buf.sample(3))
    3
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.views import FrameViews


@dataclass(frozen=True)
class ReplayConfig:
    capacity: int = 256  # teacher-labelled frames kept in memory
    recent_fraction: float = 0.5  # share of a replay batch drawn from the current regime

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {self.capacity}")
        if not 0.0 <= self.recent_fraction <= 1.0:
            raise ValueError(f"recent_fraction must be in [0, 1], got {self.recent_fraction}")


@dataclass
class ReplaySample:
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) uint8, 255 = ignore
    logits: np.ndarray | None  # (K, h, w) float16 or None
    regime: int
    adversarial: np.ndarray | None = None  # (H, W, 3) uint8, the frame under attack (the buffer's own copy:
    # the learner refines it in place)
    corrupted: np.ndarray | None = None  # (H, W, 3) uint8, a Kornia view of the frame
    corrupted_labels: np.ndarray | None = None  # (H, W) uint8, the teacher's labels moved with that view
    corrupted_aligned: bool = True  # the Kornia view is pixel-aligned with the frame (soft labels apply)
    depth: np.ndarray | None = None  # (h, w) float16 metres, the teacher's depth on its logits' grid (0 = none)
    features: np.ndarray | None = None  # (C, h', w') float16, the teacher's feature map (feature distillation)


def _owned(array: np.ndarray | None) -> np.ndarray | None:
    """``array``, copied (read-only) if it is a view of memory someone else owns (a frame ring's
    slot, a Ray object-store pack): the buffer outlives the frame."""
    if array is None or array.base is None:
        return array
    array = array.copy()
    array.setflags(write=False)
    return array


class ReplayBuffer:
    """Regime-balanced bounded buffer of labelled frames (see module docstring)."""

    def __init__(self, config: ReplayConfig, seed: int):
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.samples: list[ReplaySample] = []

    def __len__(self) -> int:
        return len(self.samples)

    def regime_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for sample in self.samples:
            counts[sample.regime] = counts.get(sample.regime, 0) + 1
        return counts

    def add(self, image: np.ndarray, labels: np.ndarray, logits: np.ndarray | None, regime: int,
            views: FrameViews | None = None, depth: np.ndarray | None = None,
            features: np.ndarray | None = None) -> ReplaySample:
        """Store one labelled frame (and its robustness views, the teacher's depth and its
        feature map, if given); returns the stored sample. An image or view that is a view of
        memory someone else owns (a frame ring's slot, a Ray object-store pack) is copied: the
        buffer outlives the frame.

        Shape:
            image (H, W, 3) uint8, labels (H, W) uint8, logits (K, h, w) or None; the views at the
            image's size; depth (h, w) or None; features (C, h', w') or None
        """
        image = _owned(image)  # (H, W, 3) uint8
        adversarial = corrupted = corrupted_labels = None
        aligned = True
        if views is not None:
            adversarial, corrupted, aligned = views.adversarial, views.corrupted, bool(views.corrupted_aligned)
            corrupted_labels = views.corrupted_labels
            if corrupted is not None and corrupted_labels is None:
                if not aligned:
                    raise ValueError("views.corrupted_labels: a geometric (not aligned) Kornia view needs the labels "
                                     "moved with it, got None")
                corrupted_labels = labels  # a photometric view keeps the frame's labels
            for name, view in (("adversarial", adversarial), ("corrupted", corrupted)):
                if view is not None and view.shape != image.shape:
                    raise ValueError(f"views.{name}: shape {view.shape} differs from the image's {image.shape}")
            if corrupted_labels is not None and corrupted_labels.shape != labels.shape:
                raise ValueError(f"views.corrupted_labels: shape {corrupted_labels.shape} differs from the "
                                 f"labels' {labels.shape}")
        if len(self.samples) >= self.config.capacity:
            counts = self.regime_counts()
            largest = max(counts.values())
            # evict from the fullest regime; on a tie the incoming sample's own regime pays, so
            # old regimes keep their share
            tied = [r for r, c in counts.items() if c == largest]
            victim_regime = int(regime) if int(regime) in tied else min(tied)
            members = [i for i, s in enumerate(self.samples) if s.regime == victim_regime]
            self.samples.pop(members[int(self.rng.integers(len(members)))])
        # the adversarial view is always copied: the learner refines it in place (the sender's array stays as sent)
        adversarial = None if adversarial is None else np.array(adversarial)
        sample = ReplaySample(image, labels, logits, int(regime), adversarial, _owned(corrupted),
                              _owned(corrupted_labels), aligned, _owned(depth), _owned(features))
        self.samples.append(sample)
        return sample

    def sample(self, count: int, current_regime: int | None = None) -> list[ReplaySample]:
        """Draw ``count`` samples without replacement: ``recent_fraction`` of them from the
        current regime (if given), the rest uniformly from the whole buffer."""
        if not self.samples or count <= 0:
            return []
        count = min(count, len(self.samples))
        chosen: list[int] = []
        if current_regime is not None:
            recent = [i for i, s in enumerate(self.samples) if s.regime == current_regime]
            take = min(len(recent), int(round(count * self.config.recent_fraction)))
            if take:
                chosen += [recent[i] for i in self.rng.choice(len(recent), size=take, replace=False)]
        rest = [i for i in range(len(self.samples)) if i not in set(chosen)]
        need = count - len(chosen)
        if need > 0 and rest:
            chosen += [rest[i] for i in self.rng.choice(len(rest), size=min(need, len(rest)), replace=False)]
        return [self.samples[i] for i in chosen]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The buffer as plain arrays (for a checkpoint); logits are dropped if any is missing.

        Views, the teacher's depth and its feature maps are stacked over the samples that hold one, with a
        presence mask over all samples (``replay.<name>_present``, (N,) uint8); keys of absent
        ones are left out.
        """
        if not self.samples:
            return {}
        out = {
            "replay.images": np.stack([s.image for s in self.samples]),  # (N, H, W, 3)
            "replay.labels": np.stack([s.labels for s in self.samples]),  # (N, H, W)
            "replay.regimes": np.array([s.regime for s in self.samples], np.int64),  # (N,)
        }
        if all(s.logits is not None for s in self.samples):
            out["replay.logits"] = np.stack([s.logits for s in self.samples])  # (N, K, h, w)
        for name in _OPTIONAL:
            present = np.array([getattr(s, name) is not None for s in self.samples], np.uint8)  # (N,)
            if present.any():
                out[f"replay.{name}"] = np.stack([getattr(s, name) for s in self.samples if getattr(s, name) is not None])
                out[f"replay.{name}_present"] = present
        if any(s.corrupted is not None for s in self.samples):
            out["replay.corrupted_aligned"] = np.array([s.corrupted_aligned for s in self.samples], np.uint8)  # (N,)
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.samples = []
        if "replay.images" not in arrays:
            return
        logits = arrays.get("replay.logits")
        count = len(arrays["replay.images"])
        views: dict[str, list[np.ndarray | None]] = {}
        for name in _OPTIONAL:
            present = arrays.get(f"replay.{name}_present")
            stacked = iter(arrays[f"replay.{name}"]) if present is not None else iter(())
            views[name] = [next(stacked) if present is not None and present[i] else None for i in range(count)]
        views["adversarial"] = [None if v is None else np.array(v) for v in views["adversarial"]]  # refined in place
        aligned = arrays.get("replay.corrupted_aligned")
        for i in range(count):
            self.samples.append(
                ReplaySample(
                    arrays["replay.images"][i],
                    arrays["replay.labels"][i],
                    None if logits is None else logits[i],
                    int(arrays["replay.regimes"][i]),
                    views["adversarial"][i],
                    views["corrupted"][i],
                    views["corrupted_labels"][i],
                    True if aligned is None else bool(aligned[i]),
                    views["depth"][i],
                    views["features"][i],
                )
            )


_VIEWS = ("adversarial", "corrupted", "corrupted_labels")  # the robustness views a ReplaySample may hold
_OPTIONAL = _VIEWS + ("depth", "features")  # every optional per-sample array of a ReplaySample
