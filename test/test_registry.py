"""Tests of sgn_ros.data.registry: one table of readers and sequence names."""

from __future__ import annotations

import pytest

from sgn_ros.config import load_config
from sgn_ros.data.kitti360 import Kitti360Dataset
from sgn_ros.data.registry import build_dataset, dataset_spec, split_sequences
from sgn_ros.data.semantic_kitti import SemanticKittiDataset
from sgn_ros.labels import load_label_set


def test_readers_and_names() -> None:
    assert dataset_spec("semantickitti").reader_class() is SemanticKittiDataset
    assert dataset_spec("KITTI360").reader_class() is Kitti360Dataset
    assert dataset_spec("semantickitti").sequence_name(8) == "08"
    assert dataset_spec("kitti360").sequence_name(6) == "2013_05_28_drive_0006_sync"
    with pytest.raises(ValueError, match="unknown dataset 'nuscenes'"):
        dataset_spec("nuscenes")


def test_split_sequences_follow_the_dataset() -> None:
    # regression: evaluation and export named every sequence f"{s:02d}", wrong for KITTI-360
    assert split_sequences(load_label_set("semantickitti"), "val") == ["08"]
    assert split_sequences(load_label_set("kitti360"), "val") == ["2013_05_28_drive_0006_sync"]


def test_build_dataset_names_the_missing_layout(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="kitti360: missing directory .*data_2d_raw"):
        build_dataset(tmp_path, load_config("sgn-s", dataset="kitti360"), "val")
