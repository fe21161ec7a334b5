"""The label spaces, in one place: the canonical space (the 19 Cityscapes trainIds,
:data:`IGNORE_INDEX` = 255 = ignore), CamVid's 11 classes, and every map between them.

Maps from a log's label files into the canonical space, by the names ``label_map=``
options accept (:data:`LABEL_MAPS`, :func:`label_map_named`):

- ``"camvid"``: CamVid's 11 classes (0..10 = Sky, Building, Pole, Road, Pavement, Tree,
  SignSymbol, Fence, Car, Pedestrian, Bicyclist; 11 = void) -> canonical trainIds.
- ``"camvid-raw"``: CamVid ids kept as they are (0..10), void (11) and anything else -> 255.
  This is the map to use when a run is evaluated in CamVid's own label set (the canonical
  predictions mapped with :func:`canonical_to_camvid`).
- ``"cityscapes-ids"``: Cityscapes ``labelIds`` (0..33) -> trainIds.
- ``"identity"``: canonical trainIds kept (0..18), anything else -> 255.

The other way, canonical predictions -> CamVid classes: :data:`CITYSCAPES_TO_CAMVID` and
:func:`canonical_to_camvid`.

Example:
    >>> import numpy as np
    >>> CLASS_NAMES[0], CLASS_NAMES[13], NUM_CLASSES
    ('road', 'car', 19)
    >>> colorize(np.array([[0, 255]], np.uint8)).shape
    (1, 2, 3)
    >>> label_map_named("camvid")(np.array([[3, 8, 11]], np.uint8)).tolist()
    [[0, 13, 255]]
    >>> canonical_to_camvid()(np.array([[0, 13, 255]], np.uint8)).tolist()
    [[3, 8, 255]]
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
CAMVID_VOID = 11  # CamVid's "void" id in its label files (no class)
# canonical trainId -> CamVid class
CITYSCAPES_TO_CAMVID = np.array([3, 4, 1, 1, 7, 2, 6, 6, 5, 5, 0, 9, 10, 8, 8, 8, 8, 10, 10], np.uint8)  # (19,)

# CamVid class index -> canonical trainId (void is left out, so it maps to 255).
CAMVID_TO_CANONICAL: dict[int, int] = {
    0: CLASS_ID["sky"],  # Sky
    1: CLASS_ID["building"],  # Building
    2: CLASS_ID["pole"],  # Pole
    3: CLASS_ID["road"],  # Road
    4: CLASS_ID["sidewalk"],  # Pavement
    5: CLASS_ID["vegetation"],  # Tree
    6: CLASS_ID["traffic_sign"],  # SignSymbol
    7: CLASS_ID["fence"],  # Fence
    8: CLASS_ID["car"],  # Car
    9: CLASS_ID["person"],  # Pedestrian
    10: CLASS_ID["bicycle"],  # Bicyclist
}

# Cityscapes labelId -> trainId (every labelId not listed is ignored in evaluation).
CITYSCAPES_LABELID_TO_TRAINID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


class LabelMapError(ValueError):
    """A label map name that is not one of :data:`LABEL_MAPS`."""


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
    """A lookup table from one label set into another; unmapped values become ``fill`` (255).

    Example:
        >>> m = LabelMap.from_pairs("demo", {0: 3, 1: 0})
        >>> m(np.array([[0, 1, 7]], np.uint8)).tolist()
        [[3, 0, 255]]
    """

    name: str
    table: np.ndarray  # (256,) uint8

    @classmethod
    def from_pairs(cls, name: str, pairs: dict[int, int], fill: int = IGNORE_INDEX) -> "LabelMap":
        table = np.full(256, fill, np.uint8)  # (256,)
        for source, target in pairs.items():
            table[int(source)] = int(target)
        return cls(name, table)

    @classmethod
    def identity(cls, num_classes: int = NUM_CLASSES) -> "LabelMap":
        return cls.from_pairs("identity", {i: i for i in range(num_classes)})

    def __call__(self, label: np.ndarray) -> np.ndarray:
        """Shape: (H, W) uint8 -> (H, W) uint8."""
        return self.table[label]


CAMVID = LabelMap.from_pairs("camvid", CAMVID_TO_CANONICAL)
CAMVID_RAW = LabelMap.from_pairs("camvid-raw", {i: i for i in range(CAMVID_VOID)})
CITYSCAPES_IDS = LabelMap.from_pairs("cityscapes-ids", CITYSCAPES_LABELID_TO_TRAINID)
IDENTITY = LabelMap.identity(NUM_CLASSES)

LABEL_MAPS: dict[str, LabelMap] = {m.name: m for m in (CAMVID, CAMVID_RAW, CITYSCAPES_IDS, IDENTITY)}


def label_map_named(name: str) -> LabelMap:
    """The label map :data:`LABEL_MAPS` holds under ``name``.

    Raises:
        LabelMapError: an unknown name (the message lists the known ones).
    """
    try:
        return LABEL_MAPS[name]
    except (KeyError, TypeError):
        raise LabelMapError(f"unknown label map {name!r}; known label maps: {', '.join(sorted(LABEL_MAPS))}") from None


def canonical_to_camvid(unmapped: int = IGNORE_INDEX) -> LabelMap:
    """Canonical predictions -> CamVid's 11 classes.

    A value outside the 19 trainIds (a teacher's 255, "no label") becomes ``unmapped``:
    :data:`IGNORE_INDEX` to leave it out of the counts, or :data:`CAMVID_VOID` to score it as
    a wrong answer against CamVid's hand labels.
    """
    return LabelMap.from_pairs("canonical-to-camvid", dict(enumerate(CITYSCAPES_TO_CAMVID.tolist())), fill=unmapped)
