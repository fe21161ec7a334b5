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
    def from_pairs(cls, name: str, pairs: dict[int, int], fill: int = IGNORE_INDEX, space: str = "canonical") -> "LabelMap":
        table = np.full(256, fill, np.uint8)  # (256,)
        for source, target in pairs.items():
            table[int(source)] = int(target)
        return cls(name, table, space)

    @classmethod
    def identity(cls, num_classes: int = NUM_CLASSES) -> "LabelMap":
        return cls.from_pairs("identity", {i: i for i in range(num_classes)})

    def __call__(self, label: np.ndarray) -> np.ndarray:
        """Shape: (H, W) uint8 -> (H, W) uint8."""
        return self.table[label]


CAMVID = LabelMap.from_pairs("camvid", CAMVID_TO_CANONICAL)
CAMVID_RAW = LabelMap.from_pairs("camvid-raw", {i: i for i in range(CAMVID_VOID)}, space="camvid")
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


# ``run.label_map`` (the evaluation label set) -> the label set the ground truth must be in.
# Predictions are canonical and mapped into it (stream.evaluation.EvalMapper); the ground
# truth is not mapped again, so a source's ``label_map`` must give labels in this set.
EVALUATION_SPACES: dict[str, str] = {"": "canonical", "canonical": "canonical", "cityscapes": "canonical", "camvid": "camvid"}


def evaluation_space(run_label_map: str) -> str:
    """The label set ground truth must be in for ``run.label_map`` (see :data:`EVALUATION_SPACES`).

    Example:
        >>> evaluation_space(""), evaluation_space("camvid")
        ('canonical', 'camvid')

    Raises:
        ValueError: an unknown evaluation label set (the message names ``run.label_map``).
    """
    try:
        return EVALUATION_SPACES[run_label_map]
    except KeyError:
        known = ", ".join(repr(k) for k in EVALUATION_SPACES)
        raise ValueError(f"run.label_map: unknown evaluation label set {run_label_map!r} (choose one of {known})") from None


def maps_into(space: str) -> list[str]:
    """The named label maps whose output is in ``space``.

    Example:
        >>> maps_into("camvid")
        ['camvid-raw']
    """
    return [name for name, m in LABEL_MAPS.items() if m.space == space]


def canonical_to_camvid(unmapped: int = IGNORE_INDEX) -> LabelMap:
    """Canonical predictions -> CamVid's 11 classes.

    A value outside the 19 trainIds (a teacher's 255, "no label") becomes ``unmapped``:
    :data:`IGNORE_INDEX` to leave it out of the counts, or :data:`CAMVID_VOID` to score it as
    a wrong answer against CamVid's hand labels.
    """
    return LabelMap.from_pairs("canonical-to-camvid", dict(enumerate(CITYSCAPES_TO_CAMVID.tolist())), fill=unmapped,
                              space="camvid")
