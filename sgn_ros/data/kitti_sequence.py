# The files of one KITTI odometry / SemanticKITTI sequence folder, read through kitti_io, with the
# camera geometry derived from calib.txt (rectified intrinsics, baseline, LiDAR -> camera). A data
# layer class: the ROS message set built from it (sgn_ros.ros.kitti_sequence) and the synthetic
# raw-drive writer both read sequences through it.
"""`KittiSequence`: one KITTI sequence folder's images, calibration, poses, depth and points."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sgn_ros.data import kitti_io
from sgn_ros.geometry import camera_translation_from_P, make_transform

__all__ = ["KittiSequence"]


def _camera_offset(p: np.ndarray) -> np.ndarray:
    """(4, 4) cam0 -> this rectified camera: a translation K^-1 P[:, 3] (KITTI's P = K [I | t])."""
    return make_transform(translation=camera_translation_from_P(p))


class KittiSequence:
    """Files of one KITTI odometry sequence folder (``.../sequences/NN``).

    Needs ``calib.txt``, ``times.txt`` and ``image_2/``; uses ``image_3/`` (stereo),
    ``poses.txt`` (odometry/TF; absent for test sequences), ``depth/NNNNNN.npy`` (float32 metres,
    the synthetic world's depth maps) and ``velodyne/NNNNNN.bin`` where they exist.
    """

    def __init__(self, sequence_dir: str | os.PathLike[str]) -> None:
        self.root = Path(sequence_dir)
        if not self.root.is_dir():
            raise FileNotFoundError(f"KITTI sequence folder not found: {self.root}")
        self.calib = kitti_io.read_calib(self.root / "calib.txt")
        self.times = kitti_io.read_times(self.root / "times.txt")
        if not (self.root / "image_2").is_dir():
            raise FileNotFoundError(f"missing dataset folder: {self.root / 'image_2'}")
        if "P3" not in self.calib:
            raise kitti_io.DataFormatError(self.root / "calib.txt", "missing P3 (right colour camera)")
        poses_path = self.root / "poses.txt"
        self.cam_poses = kitti_io.read_poses(poses_path) if poses_path.is_file() else None
        if self.cam_poses is not None and len(self.cam_poses) < len(self.times):
            raise kitti_io.DataFormatError(
                poses_path, f"{len(self.cam_poses)} poses for {len(self.times)} frames in times.txt"
            )
        first = self.left_image(0)
        self.image_size = first.shape[:2]  # (H, W) pixels

    def __len__(self) -> int:
        return len(self.times)

    # ------------------------------------------------------------------ geometry
    @property
    def tr(self) -> np.ndarray:
        """(4, 4) velodyne -> cam0 (KITTI's ``Tr``)."""
        return self.calib["Tr"]

    @property
    def k_left(self) -> np.ndarray:
        """(3, 3) intrinsics of image_2 (P2's left block)."""
        return self.calib["P2"][:3, :3].copy()

    @property
    def k_right(self) -> np.ndarray:
        return self.calib["P3"][:3, :3].copy()

    @property
    def baseline(self) -> float:
        """Metres between the optical centres of image_2 and image_3 (about 0.54 on KITTI)."""
        return float(_camera_offset(self.calib["P2"])[0, 3] - _camera_offset(self.calib["P3"])[0, 3])

    def lidar_to_camera(self, camera: str = "left") -> np.ndarray:
        """(4, 4) velodyne -> rectified colour camera frame (image_2 'left' / image_3 'right')."""
        p = self.calib["P2" if camera == "left" else "P3"]
        return _camera_offset(p) @ self.tr

    def lidar_poses(self) -> np.ndarray | None:
        """(N, 4, 4) LiDAR poses in the LiDAR frame of frame 0 (``inv(Tr) @ pose @ Tr``)."""
        return None if self.cam_poses is None else kitti_io.lidar_poses(self.cam_poses, self.tr)

    # ------------------------------------------------------------------ per-frame data
    def _image(self, folder: str, index: int) -> np.ndarray:
        return kitti_io.read_image(self.root / folder / f"{index:06d}.png")

    def left_image(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of image_2."""
        return self._image("image_2", index)

    def right_image(self, index: int) -> np.ndarray:
        return self._image("image_3", index)

    def has(self, what: str) -> bool:
        """Whether the optional stream `what` ('right', 'depth', 'points', 'odom') exists."""
        probe = {"right": "image_3/000000.png", "depth": "depth/000000.npy", "points": "velodyne/000000.bin"}
        if what == "odom":
            return self.cam_poses is not None
        return (self.root / probe[what]).is_file()

    def depth(self, index: int) -> np.ndarray:
        """(H, W) float32 metres of image_2, 0 = no depth."""
        path = self.root / "depth" / f"{index:06d}.npy"
        d = kitti_io.read_npy(path)
        if d.shape != tuple(self.image_size):
            raise kitti_io.DataFormatError(path, f"depth shape {d.shape} != image size {self.image_size}")
        return np.ascontiguousarray(d, dtype=np.float32)

    def points(self, index: int) -> np.ndarray:
        """(N, 4) float32 velodyne points (x, y, z, intensity)."""
        return kitti_io.read_points(self.root / "velodyne" / f"{index:06d}.bin")
