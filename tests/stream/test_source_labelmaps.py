"""Label maps from log label sets into the canonical space."""
from __future__ import annotations

import numpy as np
import pytest

from perception.labels import CITYSCAPES_TO_CAMVID, CLASS_ID, IGNORE_INDEX, LABEL_MAPS, LabelMap
from stream.sources.base import SourceError
from stream.sources.labelmaps import get_label_map


def test_camvid_map_matches_the_stated_table():
    expected = {
        0: CLASS_ID["sky"], 1: CLASS_ID["building"], 2: CLASS_ID["pole"], 3: CLASS_ID["road"],
        4: CLASS_ID["sidewalk"], 5: CLASS_ID["vegetation"], 6: CLASS_ID["traffic_sign"], 7: CLASS_ID["fence"],
        8: CLASS_ID["car"], 9: CLASS_ID["person"], 10: CLASS_ID["bicycle"], 11: IGNORE_INDEX,
    }
    ids = np.arange(12, dtype=np.uint8)[None, :]  # (1, 12)
    assert get_label_map("camvid")(ids)[0].tolist() == [expected[i] for i in range(12)]
    assert (expected[0], expected[3], expected[8], expected[10]) == (10, 0, 13, 18)


def test_camvid_round_trips_through_cityscapes_to_camvid():
    camvid = get_label_map("camvid")
    ids = np.arange(11, dtype=np.uint8)
    assert CITYSCAPES_TO_CAMVID[camvid(ids)].tolist() == ids.tolist()


def test_camvid_raw_keeps_ids_and_turns_void_into_ignore():
    raw = get_label_map("camvid-raw")
    assert raw(np.array([0, 5, 10, 11, 200], np.uint8)).tolist() == [0, 5, 10, 255, 255]


def test_cityscapes_label_ids_to_train_ids():
    m = get_label_map("cityscapes-ids")
    assert m(np.array([7, 8, 26, 33, 0, 6, 9, 29], np.uint8)).tolist() == [0, 1, 13, 18, 255, 255, 255, 255]


def test_identity_ignores_values_outside_the_canonical_space():
    m = get_label_map("identity")
    assert m(np.array([0, 18, 19, 255], np.uint8)).tolist() == [0, 18, 255, 255]


def test_none_and_labelmap_pass_through_and_unknown_names_are_listed():
    custom = LabelMap.from_pairs("mine", {1: 2})
    assert get_label_map(None) is None and get_label_map(custom) is custom
    with pytest.raises(SourceError, match="unknown label map 'kitty'.*camvid, camvid-raw"):
        get_label_map("kitty")
    with pytest.raises(SourceError, match="got int"):
        get_label_map(3)  # type: ignore[arg-type]
    assert set(LABEL_MAPS) == {"camvid", "camvid-raw", "cityscapes-ids", "identity"}


def test_canonical_predictions_map_to_camvid_with_the_unlabelled_as_asked():
    from perception.labels import CAMVID_VOID, canonical_to_camvid

    predictions = np.array(list(range(19)) + [IGNORE_INDEX], np.uint8)  # the 19 trainIds and "no label"
    assert canonical_to_camvid()(predictions).tolist() == CITYSCAPES_TO_CAMVID.tolist() + [IGNORE_INDEX]
    assert canonical_to_camvid(CAMVID_VOID)(predictions).tolist() == CITYSCAPES_TO_CAMVID.tolist() + [CAMVID_VOID]
