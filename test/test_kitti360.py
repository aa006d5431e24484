"""Tests of sgn_ros.data.kitti360 on a tiny SSCBench-KITTI-360 layout built from the synthetic sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgn_ros.config import load_config
from sgn_ros.data import kitti_io
from sgn_ros.data.kitti360 import KITTI360_CAM_TO_POSE, KITTI360_CAM_TO_VELO, KITTI360_K, Kitti360Dataset
from sgn_ros.data.registry import build_dataset
from sgn_ros.grid import DEFAULT_GRID

SEQ = "2013_05_28_drive_0006_sync"  # the validation sequence
MISSING_POSE = 6


@pytest.fixture(scope="module")
def kitti360_root(synthetic_root, tmp_path_factory):
    """data_2d_raw/<seq>/{image_00/data_rect, voxels, poses.txt}, preprocess/labels/<seq>,
    msnet3d_pseudo_lidar/<seq> from the synthetic SemanticKITTI sequence (links to its files);
    poses written in KITTI-360's "frame + 12 numbers" form with frame 6 left out."""
    root = tmp_path_factory.mktemp("kitti360")
    src = synthetic_root / "dataset" / "sequences" / "00"
    seq = root / "data_2d_raw" / SEQ
    for sub in ("image_00/data_rect", "voxels"):
        (seq / sub).mkdir(parents=True)
    for png in (src / "image_2").glob("*.png"):
        (seq / "image_00" / "data_rect" / png.name).symlink_to(png)
    for vox in (src / "voxels").glob("*.bin"):
        (seq / "voxels" / vox.name).symlink_to(vox)
    links = {
        "preprocess/labels": "dataset/labels/00",
        "msnet3d_pseudo_lidar": "dataset/sequences_msnet3d_lidar/sequences/00",
    }
    for name, sub in links.items():
        (root / name / SEQ).mkdir(parents=True)
        for f in (synthetic_root / sub).iterdir():
            (root / name / SEQ / f.name).symlink_to(f)
    lidar = _synthetic_lidar_poses(synthetic_root)
    tr360 = np.linalg.inv(KITTI360_CAM_TO_VELO)
    rows = []
    for i, t in enumerate(lidar):
        if i == MISSING_POSE:
            continue
        pose = t @ np.linalg.inv(tr360) @ np.linalg.inv(KITTI360_CAM_TO_POSE)  # world <- IMU
        rows.append(np.r_[i, pose[:3].reshape(-1)])
    np.savetxt(seq / "poses.txt", np.array(rows), fmt="%.12e")
    return root


def _synthetic_lidar_poses(synthetic_root) -> np.ndarray:
    src = synthetic_root / "dataset" / "sequences" / "00"
    tr = kitti_io.read_calib(src / "calib.txt")["Tr"]
    return kitti_io.lidar_poses(kitti_io.read_poses(src / "poses.txt"), tr)


def test_kitti360_samples_geometry_and_targets(kitti360_root, synthetic_root) -> None:
    cfg = load_config("sgn-t", dataset="kitti360", overrides={"data": {"image_size": [370, 1220]}})
    ds = build_dataset(kitti360_root, cfg, "val")  # split from kitti360.yaml: sequence 6
    assert isinstance(ds, Kitti360Dataset)
    assert [s for s, _ in ds.samples] == [SEQ] * 4 and [f for _, f in ds.samples] == [0, 5, 10, 15]
    lidar = _synthetic_lidar_poses(synthetic_root)
    tr360 = np.linalg.inv(KITTI360_CAM_TO_VELO)
    item = ds[3]
    # neighbours of 15: 3, 6 (no pose -> the current frame stands in), 9, 12
    frames = [15, 3, 15, 9, 12]
    assert item["meta"]["frame_ids"] == [f"{f:06d}" for f in frames]
    for k, f in enumerate(frames):
        np.testing.assert_allclose(item["intrinsics"][k].numpy(), KITTI360_K, rtol=1e-6)
        expected = tr360 @ np.linalg.inv(lidar[f]) @ lidar[15]
        np.testing.assert_allclose(item["lidar_to_cam"][k].numpy(), expected, rtol=1e-4, atol=1e-4)
    # points of frame 3 moved into frame 15 keep their distances to each other and are the
    # transformed file contents
    own = kitti_io.read_points(kitti360_root / "msnet3d_pseudo_lidar" / SEQ / "000015.bin")[:, :3]
    other = kitti_io.read_points(kitti360_root / "msnet3d_pseudo_lidar" / SEQ / "000003.bin")[:, :3]
    moved = item["points"][len(own) : len(own) + len(other)].numpy()
    t = np.linalg.inv(lidar[15]) @ lidar[3]
    np.testing.assert_allclose(moved, other @ t[:3, :3].T + t[:3, 3], atol=2e-4)
    np.testing.assert_array_equal(item["points"][: len(own)].numpy(), own)
    # KITTI-360 has 19 classes; the labels are read as prepared
    assert cfg.num_classes == 19 and ds.label_set.num_classes == 19
    full = np.load(kitti360_root / "preprocess" / "labels" / SEQ / "000015_1_1.npy")
    np.testing.assert_array_equal(item["target"].numpy(), full)
    assert tuple(item["target_half"].shape) == DEFAULT_GRID.scaled(2).dims


def test_kitti360_errors(kitti360_root, tmp_path) -> None:
    cfg = load_config("sgn-s", dataset="kitti360", overrides={"data": {"image_size": [370, 1220]}})
    with pytest.raises(FileNotFoundError, match="data_2d_raw"):
        Kitti360Dataset(tmp_path, cfg, "val")
    with pytest.raises(FileNotFoundError, match=r"2013_05_28_drive_0000_sync/poses\.txt"):
        Kitti360Dataset(kitti360_root, cfg, "train")  # train sequences are not there
    bad = tmp_path / "data_2d_raw" / SEQ
    bad.mkdir(parents=True)
    (bad / "poses.txt").write_text("0 1 2 3\n")
    with pytest.raises(kitti_io.DataFormatError, match=r"poses\.txt: each pose line needs a frame index and 12"):
        Kitti360Dataset(tmp_path, cfg, "val")


def test_kitti360_neighbours_follow_the_reference_rule_with_pose_gaps(kitti360_root) -> None:
    """The reference takes frame + offset only if it lies in 0 .. (pose rows - 1) and both frames
    have a pose. poses.txt here has 15 rows for frames 0..15 without 6: frame 15 exists and has a
    pose, yet as a neighbour it is beyond the row count and the current frame stands in."""
    from sgn_ros.data.common import temporal_frame_ids

    gapped = set(range(10)) | set(range(20, 30))  # 20 rows
    assert temporal_frame_ids(25, (-12, -9, -6, -3), gapped) == [25, 25, 25, 25]  # 13..22 > 19 or no pose
    assert temporal_frame_ids(9, (-12, -9, -6, -3), gapped) == [9, 0, 3, 6]  # -3 is before the sequence
    assert temporal_frame_ids(8, (-3, 1, 2), gapped) == [5, 9, 8]  # 10 has no pose
    data = {"image_size": [64, 192], "temporal": [5, -3, -4]}
    cfg = load_config("sgn-s", dataset="kitti360", overrides={"data": data})
    ds = Kitti360Dataset(kitti360_root, cfg, "val", load_points=False)
    item = ds[[f for _, f in ds.samples].index(10)]
    # 15: has a pose but 15 > 14 = rows - 1 -> 10; 7: fine; 6: no pose -> 10
    assert item["meta"]["frame_ids"] == ["000010", "000010", "000007", "000010"]
    assert torch.equal(item["lidar_to_cam"][1], item["lidar_to_cam"][0])
    assert not torch.equal(item["lidar_to_cam"][2], item["lidar_to_cam"][0])
