"""The canonical label space (the 19 Cityscapes trainIds, 255 = ignore) and maps into it.

Example:
    >>> import numpy as np
    >>> CLASS_NAMES[0], CLASS_NAMES[13], NUM_CLASSES
    ('road', 'car', 19)
    >>> colorize(np.array([[0, 255]], np.uint8)).shape
    (1, 2, 3)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255

CLASS_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
NUM_CLASSES = len(CLASS_NAMES)
CLASS_ID = {name: index for index, name in enumerate(CLASS_NAMES)}

# Cityscapes' own palette, so our pictures look like everyone else's.
PALETTE = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)  # (19, 3)

CAMVID_CLASS_NAMES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
)
# canonical trainId -> CamVid class (index 11 of a 20-entry teacher output = void)
CITYSCAPES_TO_CAMVID = np.array([3, 4, 1, 1, 7, 2, 6, 6, 5, 5, 0, 9, 10, 8, 8, 8, 8, 10, 10], np.uint8)


def colorize(label: np.ndarray) -> np.ndarray:
    """Colour a canonical label map with the Cityscapes palette (ignore is black).

    Shape:
        label (H, W) uint8 -> (H, W, 3) uint8
    """
    lut = np.zeros((256, 3), np.uint8)
    lut[:NUM_CLASSES] = PALETTE
    return lut[label]


@dataclass(frozen=True)
class LabelMap:
    """A lookup table from one label set into another; unmapped values become 255.

    ``space`` names the label set the map's output is in: ``"canonical"`` (the 19 trainIds)
    for maps into the canonical space, or another set's name (``"camvid"`` for a map that
    keeps CamVid ids), so a run can tell whether its ground truth and its evaluation label
    set agree.

    Example:
        >>> m = LabelMap.from_pairs("demo", {0: 3, 1: 0})
        >>> m(np.array([[0, 1, 7]], np.uint8)).tolist(), m.space
        ([[3, 0, 255]], 'canonical')
    """

    name: str
    table: np.ndarray  # (256,) uint8
    space: str = "canonical"  # the label set of the output

    @classmethod
    def from_pairs(cls, name: str, pairs: dict[int, int], space: str = "canonical") -> "LabelMap":
        table = np.full(256, IGNORE_INDEX, np.uint8)
        for source, target in pairs.items():
            table[int(source)] = int(target)
        return cls(name, table, space)

    @classmethod
    def identity(cls, num_classes: int = NUM_CLASSES) -> "LabelMap":
        return cls.from_pairs("identity", {i: i for i in range(num_classes)})

    def __call__(self, label: np.ndarray) -> np.ndarray:
        """Shape: (H, W) uint8 -> (H, W) uint8."""
        return self.table[label]
