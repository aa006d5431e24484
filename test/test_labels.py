"""Tests of the dataset label sets (sgn_ros.labels) against the reference YAML files."""

import numpy as np
import pytest

from sgn_ros.labels import IGNORE_LABEL, load_label_set


def test_semantickitti_label_set():
    ls = load_label_set("semantickitti")
    assert ls.num_classes == 20
    assert ls.names[0] == "unlabeled" and ls.names[1] == "car" and ls.names[19] == "traffic-sign"
    # car is BGR [245, 150, 100] in the YAML -> RGB
    np.testing.assert_array_equal(ls.colors_rgb[1], [100, 150, 245])
    raw = np.array([0, 1, 10, 40, 52, 60, 99, 252, 259, 12345])
    np.testing.assert_array_equal(ls.to_train_ids(raw), [0, 0, 1, 9, 0, 9, 0, 1, 5, IGNORE_LABEL])
    assert ls.splits["valid"] == (8,) and ls.splits["train"] == (0, 1, 2, 3, 4, 5, 6, 7, 9, 10)
    # inverse map round trip over all training ids
    ids = np.arange(20, dtype=np.uint8)
    np.testing.assert_array_equal(ls.to_train_ids(ls.to_raw_ids(ids)), ids)


def test_kitti360_label_set():
    ls = load_label_set("kitti360")
    assert ls.num_classes == 19
    assert ls.names[7] == "road" and ls.names[18] == "other-object"
    assert ls.splits == {"train": (0, 2, 3, 4, 5, 7, 10), "valid": (6,), "test": (9,)}


def test_raw_ids_reject_out_of_range():
    with pytest.raises(ValueError, match="training ids must be < 20"):
        load_label_set("semantickitti").to_raw_ids(np.array([20]))
