"""Named label maps from recorded logs' label sets into the canonical space.

A log's label files hold the ids of the data set they come from; a
:class:`~perception.labels.LabelMap` turns them into the canonical space (the 19 Cityscapes
trainIds, 255 = ignore). The names here are what ``label_map=`` options accept:

- ``"camvid"``: CamVid's 11 classes (0..10 = Sky, Building, Pole, Road, Pavement, Tree,
  SignSymbol, Fence, Car, Pedestrian, Bicyclist; 11 = void) -> canonical trainIds.
- ``"camvid-raw"``: CamVid ids kept as they are (0..10), void (11) and anything else -> 255.
  This is the map to use when a run is evaluated in CamVid's own label set (the teacher's
  canonical output mapped with :data:`perception.labels.CITYSCAPES_TO_CAMVID`).
- ``"cityscapes-ids"``: Cityscapes ``labelIds`` (0..33) -> trainIds.
- ``"identity"``: canonical trainIds kept (0..18), anything else -> 255.

Each map knows the label set its output is in (:attr:`~perception.labels.LabelMap.space`);
:data:`EVALUATION_SPACES` says which set a run's ground truth must be in for each
``run.label_map``, so a source's ``label_map`` and ``run.label_map`` that do not fit together
(e.g. ``label_map=camvid`` with ``run.label_map=camvid``: the labels would be mapped twice)
are refused before a frame is read (:func:`stream.config.check_label_maps`).

Example:
    >>> import numpy as np
    >>> get_label_map("camvid")(np.array([[3, 8, 11]], np.uint8)).tolist()
    [[0, 13, 255]]
    >>> get_label_map(None) is None
    True
"""
from __future__ import annotations

from perception.labels import CLASS_ID, NUM_CLASSES, LabelMap
from stream.sources.base import SourceError

# CamVid class index -> canonical trainId (void = 11 is left out, so it maps to 255).
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
CAMVID_VOID = 11

# Cityscapes labelId -> trainId (every labelId not listed is ignored in evaluation).
CITYSCAPES_LABELID_TO_TRAINID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

CAMVID = LabelMap.from_pairs("camvid", CAMVID_TO_CANONICAL)
CAMVID_RAW = LabelMap.from_pairs("camvid-raw", {i: i for i in range(CAMVID_VOID)}, space="camvid")
CITYSCAPES_IDS = LabelMap.from_pairs("cityscapes-ids", CITYSCAPES_LABELID_TO_TRAINID)
IDENTITY = LabelMap.identity(NUM_CLASSES)

LABEL_MAPS: dict[str, LabelMap] = {m.name: m for m in (CAMVID, CAMVID_RAW, CITYSCAPES_IDS, IDENTITY)}

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


def get_label_map(spec: str | LabelMap | None) -> LabelMap | None:
    """Resolve a ``label_map`` option: a name from :data:`LABEL_MAPS`, a LabelMap, or None.

    None means "keep the label files' values as they are" and is returned unchanged.

    Raises:
        SourceError: an unknown name (the message lists the known ones).
    """
    if spec is None or isinstance(spec, LabelMap):
        return spec
    if isinstance(spec, str):
        try:
            return LABEL_MAPS[spec]
        except KeyError:
            known = ", ".join(sorted(LABEL_MAPS))
            raise SourceError(f"unknown label map {spec!r}; known label maps: {known}") from None
    raise SourceError(f"label_map must be a name, a LabelMap or None, got {type(spec).__name__}")
