# Tests of sgn_ros/data/synth/raw_drive.py: the synthetic raw drive is read by the real pykitti
# (the reader of kitti2bag and kitti2mcap), with the calibration and poses it was written from.
"""sgn_ros.data.synth.raw_drive.write_raw_drive."""

from __future__ import annotations

import numpy as np
import pytest

from sgn_ros.data.synth import generate_sequence
from sgn_ros.data.synth.raw_drive import write_raw_drive
from sgn_ros.ros.kitti_sequence import KittiSequence


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    seq_dir = generate_sequence(root / "odo", frames=3, image_size=(48, 160), depth=True)
    return seq_dir, root / "raw", write_raw_drive(seq_dir, root / "raw", point_step=2)


def test_pykitti_reads_the_drive(drive) -> None:
    pykitti = pytest.importorskip("pykitti")
    seq_dir, root, drive_dir = drive
    seq = KittiSequence(seq_dir)
    data = pykitti.raw(str(root), "2011_09_26", "0001")
    assert len(data.timestamps) == 3 and drive_dir.name == "2011_09_26_drive_0001_sync"
    np.testing.assert_allclose(data.calib.P_rect_20, seq.calib["P2"], atol=1e-9)
    np.testing.assert_allclose(data.calib.T_cam2_velo, seq.lidar_to_camera("left"), atol=1e-9)
    np.testing.assert_array_equal(np.asarray(data.get_cam2(1)), seq.left_image(1))
    # the OXTS poses pykitti derives are the sequence's LiDAR motion, seen from the IMU
    poses = np.stack([o.T_w_imu for o in data.oxts])
    lidar = seq.lidar_poses()
    np.testing.assert_allclose(poses[:, :3, :3], lidar[:, :3, :3], atol=1e-6)
    np.testing.assert_allclose(poses[:, :3, 3] - poses[0, :3, 3], lidar[:, :3, 3] - lidar[0, :3, 3], atol=2e-3)


def test_scan_points_project_onto_the_rendered_depth(drive) -> None:
    seq_dir, _, drive_dir = drive
    seq = KittiSequence(seq_dir)
    pts = np.fromfile(drive_dir / "velodyne_points" / "data" / "0000000000.bin", np.float32).reshape(-1, 4)
    assert len(pts) > 100
    cam = seq.lidar_to_camera("left") @ np.c_[pts[:, :3], np.ones(len(pts))].T
    uv = seq.k_left @ cam[:3]
    u, v = np.round(uv[0] / uv[2]).astype(int), np.round(uv[1] / uv[2]).astype(int)
    np.testing.assert_allclose(cam[2], seq.depth(0)[v, u], rtol=1e-4)


def test_needs_depth(tmp_path) -> None:
    seq_dir = generate_sequence(tmp_path / "odo", frames=1, image_size=(16, 32), depth=False)
    with pytest.raises(FileNotFoundError, match="depth"):
        write_raw_drive(seq_dir, tmp_path / "raw")
