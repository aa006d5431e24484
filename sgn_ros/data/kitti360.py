# SSCBench-KITTI-360 semantic scene completion reader in the layout the reference reads:
#   ROOT/data_2d_raw/<seq>/{image_00/data_rect/NNNNNN.png, voxels/*.bin, poses.txt}
#   ROOT/preprocess/<labels_tag>/<seq>/NNNNNN_1_1.npy, NNNNNN_1_2.npy
#   ROOT/<depth_model>_pseudo_lidar/<seq>/NNNNNN.bin
# with <seq> = 2013_05_28_drive_00XX_sync. poses.txt holds "frame r00 .. r23" rows (IMU/GPS
# poses of the frames SSCBench kept; gaps allowed); the calibration is the fixed KITTI-360
# perspective camera 00 and its camera -> velodyne transform, as the reference hard-codes.
"""`Kitti360Dataset`: SSCBench-KITTI-360 SSC samples for SGN (camera image_00)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sgn_ros.data.common import SequenceInfo, SSCDataset
from sgn_ros.data.kitti_io import read_indexed_poses

#: rectified perspective camera 00: fx = fy, cx, cy in pixels (KITTI-360 calibration).
KITTI360_K = np.array([[552.554261, 0.0, 682.049453], [0.0, 552.554261, 238.769549], [0.0, 0.0, 1.0]])
#: camera 00 -> velodyne (KITTI-360 calib_cam_to_velo.txt).
KITTI360_CAM_TO_VELO = np.array(
    [
        [0.04307104361, -0.08829286498, 0.995162929, 0.8043914418],
        [-0.999004371, 0.007784614041, 0.04392796942, 0.2993489574],
        [-0.01162548558, -0.9960641394, -0.08786966659, -0.1770225824],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
#: camera 00 -> IMU/GPS pose frame (KITTI-360 calib_cam_to_pose.txt).
KITTI360_CAM_TO_POSE = np.array(
    [
        [0.0371783278, -0.0986182135, 0.9944306009, 1.5752681039],
        [0.9992675562, -0.0053553387, -0.0378902567, 0.0043914093],
        [0.0090621821, 0.9951109327, 0.0983468786, -0.6500000000],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def read_kitti360_poses(path: Path, lidar_to_cam: np.ndarray) -> dict[int, np.ndarray]:
    """``poses.txt`` ("frame" + 12 numbers a row) -> frame id -> (4, 4) LiDAR pose.

    LiDAR pose = pose @ cam_to_pose @ lidar_to_cam (LiDAR -> camera 00 -> IMU -> world).
    """
    return {f: pose @ KITTI360_CAM_TO_POSE @ lidar_to_cam for f, pose in read_indexed_poses(path).items()}


class Kitti360Dataset(SSCDataset):
    """SSCBench-KITTI-360 SSC dataset (splits from config/labels/kitti360.yaml).

    Args:
        root: the SSCBench-KITTI-360 root (holds ``data_2d_raw/``).
        cfg: SGN config for the kitti360 dataset (19 classes, 376 x 1408 crop).
        split: ``train``, ``val`` / ``valid`` or ``test``.
        sequences: explicit sequence directory names instead of the split's.
        preprocess_root: where ``<labels_tag>/<seq>/*.npy`` live (default ``root/preprocess``).
        load_points: read pseudo-LiDAR.
    """

    dataset_name = "kitti360"
    required_dir = "data_2d_raw"

    def default_preprocess_root(self) -> Path:
        return self.root / "preprocess"

    def sequence_dir(self, seq: str) -> Path:
        return self.root / "data_2d_raw" / seq

    def image_path(self, seq: str, frame: int) -> Path:
        return self.sequence_dir(seq) / "image_00" / "data_rect" / f"{frame:06d}.png"

    def points_path(self, seq: str, frame: int) -> Path:
        return self.root / f"{self.cfg.data.depth_model}_pseudo_lidar" / seq / f"{frame:06d}.bin"

    def read_sequence(self, seq: str) -> SequenceInfo:
        lidar_to_cam = np.linalg.inv(KITTI360_CAM_TO_VELO)
        return SequenceInfo(
            name=seq,
            K=KITTI360_K.copy(),
            lidar_to_cam=lidar_to_cam,
            poses=read_kitti360_poses(self.sequence_dir(seq) / "poses.txt", lidar_to_cam),
        )
