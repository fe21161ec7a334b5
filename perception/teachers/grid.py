"""Teacher adapters: logits on the frame's grid (:class:`GridAlignedTeacher`) and a teacher run
at a fixed input size (:class:`ResizedTeacher`, :func:`at_input_size`).

Example:
    >>> import numpy as np
    >>> from perception.teachers.sim import SegNetTeacher
    >>> teacher = GridAlignedTeacher(at_input_size(SegNetTeacher(weights=None, device="cpu"), (32, 48)), stride=4)
    >>> out = teacher.label(np.zeros((1, 36, 60, 3), np.uint8))  # runs at 48x32, answers at 60x36
    >>> out.labels.shape, out.logits.shape
    ((1, 36, 60), (1, 19, 9, 15))
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from perception.teacher import TeacherOutput, request_features


def _on_grid(array: np.ndarray, height: int, width: int, stride: int) -> np.ndarray:
    """A (B, C, h, w) map on a whole-pixel grid of a (height, width) frame: as it is when it
    already sits on one (the same stride both ways), else resampled (bilinear) to 1/s of the
    frame, s the largest stride <= ``stride`` that divides both sides.

    Shape:
        array (B, C, h, w) -> (B, C, H/s, W/s), its dtype kept
    """
    grid_h, grid_w = array.shape[-2:]
    if height % grid_h == 0 and width % grid_w == 0 and height // grid_h == width // grid_w:
        return array
    stride = next(s for s in range(stride, 0, -1) if height % s == 0 and width % s == 0)
    resampled = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(array)).float(),
                                                size=(height // stride, width // stride), mode="bilinear",
                                                align_corners=False)  # (B, C, H/s, W/s)
    return resampled.numpy().astype(array.dtype, copy=False)


class GridAlignedTeacher:
    """A teacher whose logits always sit on a whole-pixel grid of the frame.

    The online learner crops a frame and the teacher's logits at the same place, which needs
    the logits at an integer stride of the frame. A teacher that ships them on another grid
    (ESPNetv2 gives 192x256 for a 360x480 frame; any teacher run at another input size)
    has them resampled (bilinear) to the frame at 1/``stride``, the largest stride <=
    ``stride`` that divides both sides; a teacher already on such a grid (the sim teacher)
    is passed through untouched. Every other attribute is the wrapped teacher's.

    Example:
        >>> class Odd:
        ...     name, device, params = "odd", "cpu", 1
        ...     def label(self, images):
        ...         b, h, w = images.shape[:3]
        ...         return TeacherOutput(np.zeros((b, h, w), np.uint8), np.zeros((b, 19, 7, 9), np.float32))
        >>> GridAlignedTeacher(Odd(), stride=4).label(np.zeros((1, 36, 48, 3), np.uint8)).logits.shape
        (1, 19, 9, 12)
        >>> GridAlignedTeacher(Odd(), stride=4).name
        'odd'
    """

    def __init__(self, teacher: Any, stride: int) -> None:
        if stride < 1:
            raise ValueError(f"GridAlignedTeacher: stride must be >= 1, got {stride}")
        self.teacher = teacher
        self.stride = stride
        self.feature_stride: int | None = None  # the features' stride, once asked for (request_features)

    def __getattr__(self, name: str) -> Any:
        if name == "teacher":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.teacher, name)

    def request_features(self, layer: str, stride: int) -> None:
        """Pass a feature request on to the wrapped teacher; its features are put on the
        frame's grid like the logits (at the largest stride <= ``stride`` that divides the frame)."""
        request_features(self.teacher, layer, stride)
        self.feature_stride = stride

    def label(self, images: np.ndarray) -> TeacherOutput:
        """Shape: images (B, H, W, 3) uint8 -> labels (B, H, W) uint8, logits (B, K, H/s, W/s),
        features (B, C, H/f, W/f) or None."""
        out = self.teacher.label(images)
        height, width = images.shape[1:3]
        logits = _on_grid(out.logits, height, width, self.stride)  # (B, K, H/s, W/s)
        features = None
        if out.features is not None:
            features = _on_grid(out.features, height, width, self.feature_stride or self.stride)
        if logits is out.logits and features is out.features:
            return out
        depth = out.depth
        if depth is not None and logits is not out.logits:  # nearest: a 0 ("no depth") must not blend into its neighbours
            depth = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(depth))[:, None],
                                                    size=logits.shape[-2:], mode="nearest")[:, 0].numpy()  # (B, H/s, W/s)
        return TeacherOutput(labels=out.labels, logits=np.asarray(logits, np.float32), views=out.views, depth=depth,
                             features=features)


class ResizedTeacher:
    """Any teacher run at a fixed input size ``(height, width)``, answering at the frame's size.

    Each frame is resized to the input size (area averaging when shrinking, bilinear when
    enlarging), labelled, and its labels brought back to the frame's size (nearest
    neighbour: labels are classes). The logits stay as the wrapped teacher gives them, on the
    input size's grid; :class:`GridAlignedTeacher` puts them on the frame's grid for the
    learner. ``macs(h, w)`` counts the teacher at the input size. Every other attribute is
    the wrapped teacher's.

    Example:
        >>> class Half:
        ...     name, device, params = "half", "cpu", 1
        ...     def label(self, images):
        ...         b, h, w = images.shape[:3]
        ...         labels = (images[..., 0] > 127).astype(np.uint8)  # (B, H, W)
        ...         return TeacherOutput(labels, np.zeros((b, 19, h // 4, w // 4), np.float32))
        ...     def macs(self, height, width):
        ...         return height * width
        >>> frame = np.zeros((1, 60, 80, 3), np.uint8); frame[:, :, 40:] = 255
        >>> teacher = ResizedTeacher(Half(), (32, 48))
        >>> out = teacher.label(frame)
        >>> out.labels.shape, out.logits.shape, int(out.labels[0, 0, 79]), teacher.macs(60, 80), teacher.name
        ((1, 60, 80), (1, 19, 8, 12), 1, 1536, 'half')
    """

    def __init__(self, teacher: Any, size: tuple[int, int]) -> None:
        height, width = (int(s) for s in size)
        if height < 1 or width < 1:
            raise ValueError(f"ResizedTeacher: size must be positive (height, width), got {size!r}")
        self.teacher = teacher
        self.input_size = (height, width)

    def __getattr__(self, name: str) -> Any:
        if name == "teacher":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.teacher, name)

    def request_features(self, layer: str, stride: int) -> None:
        """Pass a feature request on to the wrapped teacher (its features stay on the input
        size's grid; :class:`GridAlignedTeacher` puts them on the frame's)."""
        request_features(self.teacher, layer, stride)

    def macs(self, height: int, width: int) -> int:
        """The wrapped teacher's multiply-accumulates at the input size (whatever the frame's)."""
        return self.teacher.macs(*self.input_size)

    def label(self, images: np.ndarray) -> TeacherOutput:
        """Shape: images (B, H, W, 3) uint8 -> labels (B, H, W) uint8, logits (B, K, h', w') on the input size's grid."""
        batch, height, width = images.shape[:3]
        in_h, in_w = self.input_size
        if (height, width) == (in_h, in_w):
            return self.teacher.label(images)
        shrink = in_h <= height and in_w <= width
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        resized = np.stack([cv2.resize(image, (in_w, in_h), interpolation=interpolation) for image in images])  # (B, h, w, 3)
        out = self.teacher.label(resized)
        labels = np.stack([cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
                           for label in out.labels])  # (B, H, W)
        return TeacherOutput(labels=labels, logits=out.logits, depth=out.depth, features=out.features)


def at_input_size(teacher: Any, size: tuple[int, int] | None) -> Any:
    """The teacher run at ``(height, width)`` ``size`` for every frame; unchanged for None.

    The one place every teacher kind gets an input size (``teacher.input_size``). A teacher
    that resizes inside itself offers ``at_input_size(size)`` and is asked to (ESPNetv2:
    its labels are then the argmax of its logits upsampled straight to the frame, as
    ``bench/espnetv2_camvid.py`` measures); any other is wrapped in :class:`ResizedTeacher`.
    """
    if size is None:
        return teacher
    own = getattr(teacher, "at_input_size", None)
    if callable(own):
        return own(tuple(size))
    return ResizedTeacher(teacher, size)
