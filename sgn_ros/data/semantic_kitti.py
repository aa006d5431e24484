# SemanticKITTI semantic scene completion reader, laid out as the benchmark and the reference
# expect, so data prepared for the reference works as is:
#   ROOT/dataset/sequences/SS/{image_2/NNNNNN.png, image_3/, calib.txt, poses.txt, voxels/}
#   ROOT/dataset/<labels_tag>/SS/NNNNNN_1_1.npy, NNNNNN_1_2.npy     (sgn-ros preprocess labels)
#   ROOT/dataset/sequences_<depth_model>_lidar/sequences/SS/NNNNNN.bin (pseudo-LiDAR, every frame)
"""`SemanticKittiDataset`: SemanticKITTI SSC samples for SGN (left colour camera, P2, Tr)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sgn_ros.data import kitti_io
from sgn_ros.data.common import SequenceInfo, SSCDataset


def camera2_to_lidar(calib: dict[str, np.ndarray]) -> np.ndarray:
    """(4, 4) transform from the left colour camera (image_2) frame to the LiDAR frame.

    P2 = K [I | t] is relative to camera 0; the image_2 camera sits at x = -P2[0,3] / fx,
    y = -P2[1,3] / fy in camera 0 (the reference's pseudo-LiDAR uses exactly these offsets,
    ignoring the tiny P2[2,3]), and ``Tr`` maps LiDAR -> camera 0.
    """
    p2 = calib["P2"]
    cam2_in_cam0 = np.eye(4)
    cam2_in_cam0[0, 3] = -p2[0, 3] / p2[0, 0]
    cam2_in_cam0[1, 3] = -p2[1, 3] / p2[1, 1]
    return np.linalg.inv(calib["Tr"]) @ cam2_in_cam0


class SemanticKittiDataset(SSCDataset):
    """SemanticKITTI SSC dataset (splits from config/labels/semantic-kitti.yaml).

    Args:
        root: the directory that holds ``dataset/`` (the reference's ``data_root``).
        cfg: the SGN config (image crop, temporal offsets, depth model tag, label tag, grid).
        split: ``train``, ``val`` / ``valid`` or ``test``.
        sequences: explicit sequence names (e.g. ``["00"]``) instead of the split's.
        preprocess_root: where ``<labels_tag>/SS/*.npy`` live (default ``root/dataset``).
        load_points: read pseudo-LiDAR (False for camera-only uses).
    """

    dataset_name = "semantickitti"
    required_dir = "dataset/sequences"

    def default_preprocess_root(self) -> Path:
        return self.root / "dataset"

    def sequence_dir(self, seq: str) -> Path:
        return self.root / "dataset" / "sequences" / seq

    def image_path(self, seq: str, frame: int) -> Path:
        return self.sequence_dir(seq) / "image_2" / f"{frame:06d}.png"

    def points_path(self, seq: str, frame: int) -> Path:
        tag = self.cfg.data.depth_model
        return self.root / "dataset" / f"sequences_{tag}_lidar" / "sequences" / seq / f"{frame:06d}.bin"

    def read_sequence(self, seq: str) -> SequenceInfo:
        d = self.sequence_dir(seq)
        calib = kitti_io.read_calib(d / "calib.txt")
        poses = kitti_io.lidar_poses(kitti_io.read_poses(d / "poses.txt"), calib["Tr"])
        return SequenceInfo(
            name=seq,
            K=calib["P2"][:3, :3].copy(),
            lidar_to_cam=calib["Tr"],
            poses=dict(enumerate(poses)),
        )

