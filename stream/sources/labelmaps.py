"""``label_map=`` options of the log sources, resolved to a :class:`~perception.labels.LabelMap`.

The maps themselves live with the label spaces, in :mod:`perception.labels`
(:data:`~perception.labels.LABEL_MAPS`); this turns an option's value into one, with the
sources' error type.

Each map knows the label set its output is in (:attr:`~perception.labels.LabelMap.space`);
:data:`~perception.labels.EVALUATION_SPACES` says which set a run's ground truth must be in
for each ``run.label_map``, so a source's ``label_map`` and ``run.label_map`` that do not fit
together (e.g. ``label_map=camvid`` with ``run.label_map=camvid``: the labels would be mapped
twice) are refused before a frame is read (:func:`stream.config.check_label_maps`).

Example:
    >>> import numpy as np
    >>> get_label_map("camvid")(np.array([[3, 8, 11]], np.uint8)).tolist()
    [[0, 13, 255]]
    >>> get_label_map(None) is None
    True
"""
from __future__ import annotations

from perception.labels import (  # noqa: F401  (re-exported for the sources and the config check)
    EVALUATION_SPACES,
    LABEL_MAPS,
    LabelMap,
    LabelMapError,
    evaluation_space,
    label_map_named,
    maps_into,
)
from stream.sources.base import SourceError


def get_label_map(spec: str | LabelMap | None) -> LabelMap | None:
    """Resolve a ``label_map`` option: a name from :data:`perception.labels.LABEL_MAPS`, a LabelMap, or None.

    None means "keep the label files' values as they are" and is returned unchanged.

    Raises:
        SourceError: an unknown name (the message lists the known ones).
    """
    if spec is None or isinstance(spec, LabelMap):
        return spec
    if isinstance(spec, str):
        try:
            return label_map_named(spec)
        except LabelMapError as error:
            raise SourceError(str(error)) from None
    raise SourceError(f"label_map must be a name, a LabelMap or None, got {type(spec).__name__}")
