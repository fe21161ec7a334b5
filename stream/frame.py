"""The one record that flows through odistill: :class:`Frame`.

A frame is produced by a source (simulator, video file, image folder, ...) and read by
every later stage. Its arrays are read-only, so an accidental in-place write fails in the
in-process runner exactly as it fails under Ray (whose ``ray.get`` returns read-only arrays).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from learners.records import Observation
from perception.labels import IGNORE_INDEX  # noqa: F401  label value for "no ground truth here"


@dataclass(frozen=True)
class GroundTruth:
    """What only the evaluator may see of a frame: its label, depth and domain tag.

    Attributes:
        index: the frame's index (the evaluator joins it with the learner's output by index).
        domain: the source's domain tag (``"unknown"`` when it gives none).
        label: optional (H, W) uint8 in the canonical label space, 255 = ignore.
        depth: optional (H, W) float32 metres (the sim's depth camera), for the depth scores.
    """

    index: int
    domain: str
    label: np.ndarray | None = None
    depth: np.ndarray | None = None


class FrameError(ValueError):
    """A frame's arrays do not have the shape or type the pipeline expects."""


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    if array.flags.writeable:
        array = array.copy() if array.base is not None and array.base.flags.writeable else array
        array.setflags(write=False)
    return array


@dataclass(frozen=True)
class Frame:
    """One camera frame with optional ground truth.

    Attributes:
        image: (H, W, 3) uint8 RGB, C-contiguous, read-only.
        timestamp: seconds on the source's clock.
        source_id: which source produced it (a log's name, ``sim:tour``, ...).
        index: monotonic per source, starting at 0.
        label: optional (H, W) uint8 in the canonical label space (Cityscapes trainIds),
            255 = ignore.
        depth: optional (H, W) float32 depth in metres.
        meta: small plain values, e.g. the simulator's ``domain`` and ``town``.

    Example:
        >>> import numpy as np
        >>> f = Frame(np.zeros((4, 6, 3), np.uint8), timestamp=0.0, source_id="demo", index=0)
        >>> f.shape
        (4, 6)
        >>> f.image.flags.writeable
        False
    """

    image: np.ndarray
    timestamp: float
    source_id: str
    index: int
    label: np.ndarray | None = None
    depth: np.ndarray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        image = self.image
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise FrameError(
                f"frame {self.source_id}#{self.index}: image must be (H, W, 3), "
                f"got {getattr(image, 'shape', type(image).__name__)}"
            )
        if image.dtype != np.uint8:
            raise FrameError(f"frame {self.source_id}#{self.index}: image must be uint8, got {image.dtype}")
        object.__setattr__(self, "image", _readonly(image))
        height, width = image.shape[:2]
        if self.label is not None:
            label = self.label
            if label.shape != (height, width):
                raise FrameError(
                    f"frame {self.source_id}#{self.index}: label shape {label.shape} does not match "
                    f"image size {(height, width)}"
                )
            if label.dtype != np.uint8:
                raise FrameError(f"frame {self.source_id}#{self.index}: label must be uint8, got {label.dtype}")
            object.__setattr__(self, "label", _readonly(label))
        if self.depth is not None:
            depth = self.depth
            if depth.shape != (height, width):
                raise FrameError(
                    f"frame {self.source_id}#{self.index}: depth shape {depth.shape} does not match "
                    f"image size {(height, width)}"
                )
            object.__setattr__(self, "depth", _readonly(depth.astype(np.float32, copy=False)))
        object.__setattr__(self, "timestamp", float(self.timestamp))
        object.__setattr__(self, "index", int(self.index))
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return self.image.shape[0], self.image.shape[1]

    def observation(self) -> Observation:
        """What the learner may see: image, index, timestamp, source id (no label, no meta).

        Example:
            >>> f = Frame(np.zeros((2, 2, 3), np.uint8), 0.5, "cam", 7, label=np.zeros((2, 2), np.uint8))
            >>> seen = f.observation()
            >>> seen.index, seen.timestamp, hasattr(seen, "label")
            (7, 0.5, False)
        """
        return Observation(self.image, self.index, self.timestamp, self.source_id)

    def truth(self, depth: bool = False) -> GroundTruth:
        """What the evaluator alone sees: the label and the domain tag, and with ``depth`` the
        frame's depth (when it has one; a run whose student learns depth sends it).

        Example:
            >>> f = Frame(np.zeros((2, 2, 3), np.uint8), 0.5, "cam", 7, depth=np.ones((2, 2), np.float32))
            >>> f.truth().depth is None, f.truth(depth=True).depth.shape
            (True, (2, 2))
        """
        return GroundTruth(self.index, self.domain, self.label, self.depth if depth else None)

    @property
    def domain(self) -> str:
        """The domain tag from ``meta`` (``"unknown"`` when the source gives none)."""
        return str(self.meta.get("domain", "unknown"))
