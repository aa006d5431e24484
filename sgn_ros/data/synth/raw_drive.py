# A synthetic KITTI *raw* drive (the layout of KITTI's "raw data" downloads, which pykitti, the
# kitti2bag `raw` mode and kitti2mcap read), written from a synthetic odometry sequence so that
# third-party converters can be run on it in tests without downloading anything:
#
#   root/<date>/calib_cam_to_cam.txt     P_rect_0i, R_rect_0i (identity), S_rect_0i, K_0i, D_0i
#   root/<date>/calib_velo_to_cam.txt    R, T: velodyne -> unrectified cam0 (= calib.txt's Tr)
#   root/<date>/calib_imu_to_velo.txt    R, T: IMU -> velodyne (KITTI's typical mounting)
#   root/<date>/<date>_drive_<drive>_sync/
#       image_0{2,3}/data/NNNNNNNNNN.png + timestamps.txt   (the sequence's image_2 / image_3)
#       velodyne_points/data/NNNNNNNNNN.bin + timestamps.txt (x y z intensity float32)
#       oxts/data/NNNNNNNNNN.txt + timestamps.txt            (30 OXTS values, pose from poses.txt)
#
# The synthetic world has no LiDAR scans: each velodyne file is the rendered depth map of image_2
# back-projected into the LiDAR frame (every `point_step`-th pixel), which is geometry a
# converter copies through unchanged. R_rect is the identity, so rectified cam0 = cam0.
"""Synthetic KITTI raw drive from a synthetic odometry sequence."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np

from sgn_ros.data import kitti_io

#: IMU -> velodyne of KITTI's 2011_09_26 drives (rounded): the IMU sits 0.81 m behind, 0.32 m left
#: of and 0.80 m below the LiDAR, axes aligned.
IMU_TO_VELO_T = np.array([-0.808676, 0.319556, -0.799723])
EARTH_RADIUS = 6378137.0
START = dt.datetime(2011, 9, 26, 13, 2, 25)


def _timestamps(path: Path, seconds: np.ndarray) -> None:
    """KITTI's timestamps.txt: ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn`` per line."""
    lines = []
    for s in seconds:
        t = START + dt.timedelta(seconds=float(s))
        lines.append(t.strftime("%Y-%m-%d %H:%M:%S") + f".{int(round(float(s) % 1 * 1e9)):09d}")
    path.write_text("\n".join(lines) + "\n")


def _calib_line(name: str, values: np.ndarray) -> str:
    return f"{name}: " + " ".join(f"{v:.12e}" for v in np.asarray(values, dtype=float).reshape(-1))


def _oxts_line(pose_imu: np.ndarray, lat0: float = 49.011212804408, lon0: float = 8.4228850417969,
               alt0: float = 112.83) -> str:
    """30 OXTS values whose pykitti pose (Mercator, first-frame scale) is `pose_imu` (4x4, world = ENU
    at frame 0 with x east): position -> lat/lon/alt, rotation -> roll/pitch/yaw (ZYX)."""
    scale = np.cos(lat0 * np.pi / 180.0)
    tx0 = scale * lon0 * np.pi * EARTH_RADIUS / 180.0
    ty0 = scale * EARTH_RADIUS * np.log(np.tan((90.0 + lat0) * np.pi / 360.0))
    x, y, z = pose_imu[:3, 3]
    lon = (tx0 + x) * 180.0 / (np.pi * EARTH_RADIUS * scale)
    lat = np.arctan(np.exp((ty0 + y) / (scale * EARTH_RADIUS))) * 360.0 / np.pi - 90.0
    r = pose_imu[:3, :3]
    yaw = np.arctan2(r[1, 0], r[0, 0])
    pitch = np.arctan2(-r[2, 0], np.hypot(r[2, 1], r[2, 2]))
    roll = np.arctan2(r[2, 1], r[2, 2])
    floats = [lat, lon, alt0 + z, roll, pitch, yaw] + [0.0] * 19
    ints = [4, 10, 4, 10, 4]  # navstat numsats posmode velmode orimode
    return " ".join(f"{v:.15g}" for v in floats) + " " + " ".join(str(i) for i in ints)


def write_raw_drive(sequence_dir: str | os.PathLike[str], root: str | os.PathLike[str], date: str = "2011_09_26",
                    drive: str = "0001", point_step: int = 4) -> Path:
    """Write the raw-drive layout (module comment) of a synthetic odometry sequence; returns the drive folder.

    Args:
        sequence_dir: a sequence written by `generate_sequence(..., depth=True)`.
        root: the raw data root (``kitti2mcap --kitti-dir``, ``pykitti.raw(root, ...)``).
        date, drive: KITTI's naming, e.g. ``2011_09_26`` and ``0001``.
        point_step: back-project every `point_step`-th pixel (row and column) into the scan.

    Raises:
        FileNotFoundError: the sequence lacks depth maps (they give the LiDAR scans).
    """
    from sgn_ros.data.kitti_sequence import KittiSequence

    seq = KittiSequence(sequence_dir)
    if not seq.has("depth"):
        raise FileNotFoundError(f"write_raw_drive: {sequence_dir} has no depth/ maps (generate with depth=True)")
    if not drive.isdigit() or len(drive) != 4:
        raise ValueError(f"write_raw_drive: drive must be 4 digits like '0001', got {drive!r}")
    date_dir = Path(root) / date
    drive_dir = date_dir / f"{date}_drive_{drive}_sync"
    if drive_dir.exists():
        shutil.rmtree(drive_dir)
    date_dir.mkdir(parents=True, exist_ok=True)
    h, w = seq.image_size
    cam = [_calib_line("calib_time", np.zeros(0)).replace(": ", ": 09-Jan-2012 13:57:47"),
           _calib_line("corner_dist", [9.95e-02])]
    for i in range(4):
        p = seq.calib[f"P{i}"]
        cam += [_calib_line(f"S_0{i}", [w, h]), _calib_line(f"K_0{i}", p[:3, :3]), _calib_line(f"D_0{i}", np.zeros(5)),
                _calib_line(f"R_0{i}", np.eye(3)), _calib_line(f"T_0{i}", np.linalg.solve(p[:3, :3], p[:3, 3])),
                _calib_line(f"S_rect_0{i}", [w, h]), _calib_line(f"R_rect_0{i}", np.eye(3)),
                _calib_line(f"P_rect_0{i}", p)]
    (date_dir / "calib_cam_to_cam.txt").write_text("\n".join(cam) + "\n")
    tr = seq.tr
    (date_dir / "calib_velo_to_cam.txt").write_text("\n".join([
        "calib_time: 15-Mar-2012 11:37:16", _calib_line("R", tr[:3, :3]), _calib_line("T", tr[:3, 3]),
        _calib_line("delta_f", [0.0, 0.0]), _calib_line("delta_c", [0.0, 0.0])]) + "\n")
    (date_dir / "calib_imu_to_velo.txt").write_text("\n".join([
        "calib_time: 25-May-2012 16:47:16", _calib_line("R", np.eye(3)), _calib_line("T", IMU_TO_VELO_T)]) + "\n")

    n = len(seq)
    times = np.asarray(seq.times, dtype=float)
    for folder in ("image_02", "image_03", "velodyne_points", "oxts"):
        (drive_dir / folder / "data").mkdir(parents=True)
        _timestamps(drive_dir / folder / "timestamps.txt", times)
    k = seq.k_left
    velo_from_cam2 = np.linalg.inv(seq.lidar_to_camera("left"))
    vv, uu = np.mgrid[0:h:point_step, 0:w:point_step]
    imu_to_velo = np.eye(4)
    imu_to_velo[:3, 3] = IMU_TO_VELO_T
    lidar_poses = seq.lidar_poses()
    for i in range(n):
        name = f"{i:010d}"
        shutil.copyfile(seq.root / "image_2" / f"{i:06d}.png", drive_dir / "image_02" / "data" / f"{name}.png")
        shutil.copyfile(seq.root / "image_3" / f"{i:06d}.png", drive_dir / "image_03" / "data" / f"{name}.png")
        z = seq.depth(i)[vv, uu]
        keep = z > 0
        x = (uu[keep] - k[0, 2]) * z[keep] / k[0, 0]
        y = (vv[keep] - k[1, 2]) * z[keep] / k[1, 1]
        cam_pts = np.stack([x, y, z[keep], np.ones_like(x)])
        velo = (velo_from_cam2 @ cam_pts)[:3].T
        pts = np.concatenate([velo, np.full((len(velo), 1), 0.5)], axis=1).astype(np.float32)
        kitti_io.write_points(drive_dir / "velodyne_points" / "data" / f"{name}.bin", pts)
        lidar_pose = np.eye(4) if lidar_poses is None else lidar_poses[i]
        imu_pose = np.linalg.inv(imu_to_velo) @ lidar_pose @ imu_to_velo  # IMU pose in the IMU frame of frame 0
        (drive_dir / "oxts" / "data" / f"{name}.txt").write_text(_oxts_line(imu_pose) + "\n")
    return drive_dir
