# kitti2bag (PyPI 1.5, ROS 1) cannot run here: it imports rospy, rosbag, tf and cv_bridge, which
# exist only in a ROS 1 installation. This writes what it writes, with `rosbags` instead: the
# topics, message types, encodings, frame ids and transform tree of kitti2bag 1.5's `raw_sync`
# and `odom` modes (read from its source, tomas789/kitti2bag kitti2bag/kitti2bag.py), computed
# from pykitti exactly as it does. Test helper, not part of the package.
"""ROS 1 bags in kitti2bag 1.5's format."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np


def _store():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC)  # has no tf2_msgs: add ROS 1's TFMessage
    store.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf2_msgs/msg/TFMessage"))
    return store


def _quat(m: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix (m[:3, :3])."""
    r = m[:3, :3]
    w = np.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = np.copysign(np.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    return float(x), float(y), float(z), float(w)


class _Bag:
    def __init__(self, path: Path) -> None:
        from rosbags.rosbag1 import Writer

        self.store = _store()
        self.t = self.store.types
        self.writer = Writer(path)
        self.writer.open()
        self.conns: dict[str, object] = {}

    def time(self, ns: int):
        return self.t["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)

    def header(self, ns: int, frame: str):
        return self.t["std_msgs/msg/Header"](seq=0, stamp=self.time(ns), frame_id=frame)

    def tf(self, ns: int, parent: str, child: str, m: np.ndarray):
        t = self.t
        x, y, z, w = _quat(m)
        return t["geometry_msgs/msg/TransformStamped"](
            header=self.header(ns, parent), child_frame_id=child, transform=t["geometry_msgs/msg/Transform"](
                translation=t["geometry_msgs/msg/Vector3"](x=float(m[0, 3]), y=float(m[1, 3]), z=float(m[2, 3])),
                rotation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)))

    def write(self, topic: str, msg, ns: int) -> None:
        msgtype = msg.__msgtype__
        if topic not in self.conns:
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        self.writer.write(self.conns[topic], ns, self.store.serialize_ros1(msg, msgtype))

    def image(self, path: Path, ns: int, frame: str):
        import cv2

        bgr = cv2.imread(str(path))
        h, w = bgr.shape[:2]
        return self.t["sensor_msgs/msg/Image"](header=self.header(ns, frame), height=h, width=w, encoding="bgr8",
                                               is_bigendian=0, step=w * 3, data=bgr.reshape(-1))

    def info(self, ns: int, frame: str, h: int, w: int, k, r, d, p):
        t = self.t
        return t["sensor_msgs/msg/CameraInfo"](
            header=self.header(ns, frame), height=h, width=w, distortion_model="plumb_bob",
            D=np.asarray(d, float).reshape(-1), K=np.asarray(k, float).reshape(9), R=np.asarray(r, float).reshape(9),
            P=np.asarray(p, float).reshape(12), binning_x=0, binning_y=0,
            roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))

    def cloud(self, scan: np.ndarray, ns: int, frame: str):
        t = self.t
        fields = [t["sensor_msgs/msg/PointField"](name=n, offset=4 * i, datatype=7, count=1)
                  for i, n in enumerate(("x", "y", "z", "intensity"))]
        data = np.ascontiguousarray(scan, dtype=np.float32)
        return t["sensor_msgs/msg/PointCloud2"](header=self.header(ns, frame), height=1, width=len(data),
                                                fields=fields, is_bigendian=False, point_step=16,
                                                row_step=16 * len(data), data=data.view(np.uint8).reshape(-1),
                                                is_dense=True)

    def close(self) -> None:
        self.writer.close()


def _stamps(path: Path) -> list[int]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            d = dt.datetime.strptime(line[:-4], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc)
            out.append(int(round(d.timestamp() * 1e6)) * 1000)
    return out


def write_kitti2bag_raw(root: Path, out: Path, date: str = "2011_09_26", drive: str = "0001") -> Path:
    """kitti2bag raw_sync of a raw drive: colour cameras, velodyne, IMU and the TF tree (the grey
    cameras are left out to keep the bag small; their topics do not change the wiring)."""
    import pykitti
    from pykitti.utils import read_calib_file

    kitti = pykitti.raw(str(root), date, drive)
    util = read_calib_file(str(Path(kitti.calib_path) / "calib_cam_to_cam.txt"))
    bag = _Bag(out)
    t = bag.t
    stamps = _stamps(Path(kitti.data_path) / "oxts" / "timestamps.txt")
    base_to_imu = np.eye(4)
    base_to_imu[:3, 3] = [-2.71 / 2.0 - 0.05, 0.32, 0.93]
    statics = [("base_link", "imu_link", base_to_imu), ("imu_link", "velo_link", np.linalg.inv(kitti.calib.T_velo_imu))]
    statics += [("imu_link", f"camera_{n}", np.linalg.inv(getattr(kitti.calib, f"T_cam{i}_imu")))
                for i, n in enumerate(("gray_left", "gray_right", "color_left", "color_right"))]
    for ns in stamps:  # kitti2bag writes the whole static tree at every frame's time
        bag.write("/tf_static", t["tf2_msgs/msg/TFMessage"](transforms=[bag.tf(ns, *s) for s in statics]), ns)
    imu_to_base = np.eye(4)
    imu_to_base[:3, 3] = [2.71 / 2.0 + 0.05, -0.32, -0.93]
    for ns, oxts in zip(stamps, kitti.oxts):
        bag.write("/tf", t["tf2_msgs/msg/TFMessage"](transforms=[bag.tf(ns, "world", "base_link",
                                                                          oxts.T_w_imu @ imu_to_base)]), ns)
        bag.write("/kitti/oxts/imu", t["sensor_msgs/msg/Imu"](
            header=bag.header(ns, "imu_link"),
            orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
            orientation_covariance=np.zeros(9), angular_velocity=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
            angular_velocity_covariance=np.zeros(9),
            linear_acceleration=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
            linear_acceleration_covariance=np.zeros(9)), ns)
    for cam, name in ((2, "camera_color_left"), (3, "camera_color_right")):
        pad = f"{cam:02d}"
        folder = Path(kitti.data_path) / f"image_{pad}"
        w, h = (int(v) for v in util[f"S_rect_{pad}"])
        for ns, png in zip(_stamps(folder / "timestamps.txt"), sorted((folder / "data").glob("*.png"))):
            bag.write(f"/kitti/{name}/image", bag.image(png, ns, name), ns)
            bag.write(f"/kitti/{name}/camera_info", bag.info(ns, name, h, w, util[f"K_{pad}"], util[f"R_rect_{pad}"],
                                                             util[f"D_{pad}"], util[f"P_rect_{pad}"]), ns)
    velo = Path(kitti.data_path) / "velodyne_points"
    for ns, f in zip(_stamps(velo / "timestamps.txt"), sorted((velo / "data").glob("*.bin"))):
        bag.write("/kitti/velo/pointcloud", bag.cloud(np.fromfile(f, np.float32).reshape(-1, 4), ns, "velo_link"), ns)
    bag.close()
    return out


def write_kitti2bag_odom(sequence_dir: Path, out: Path) -> Path:
    """kitti2bag odom of an odometry sequence, colour cameras: images + CameraInfo with only P set
    (K, R, D left empty, as kitti2bag does), /tf camera_init -> camera_gray_left from poses.txt."""
    from sgn_ros.data import kitti_io

    seq = Path(sequence_dir)
    calib = kitti_io.read_calib(seq / "calib.txt")
    times = kitti_io.read_times(seq / "times.txt")
    poses = kitti_io.read_poses(seq / "poses.txt")
    initial = int(dt.datetime(2011, 9, 26, 12, 0, 0, tzinfo=dt.timezone.utc).timestamp()) * 10**9
    stamps = [initial + int(round(float(s) * 1e9)) for s in times]
    bag = _Bag(out)
    for ns, pose in zip(stamps, poses):
        bag.write("/tf", bag.t["tf2_msgs/msg/TFMessage"](transforms=[bag.tf(ns, "camera_init", "camera_gray_left",
                                                                             pose)]), ns)
    for cam, name in ((2, "camera_color_left"), (3, "camera_color_right")):
        for ns, png in zip(stamps, sorted((seq / f"image_{cam}").glob("*.png"))):
            img = bag.image(png, ns, name)
            bag.write(f"/kitti/{name}/image", img, ns)
            bag.write(f"/kitti/{name}/camera_info", bag.info(ns, name, img.height, img.width, np.zeros(9),
                                                             np.zeros(9), np.zeros(0), calib[f"P{cam}"]), ns)
    bag.close()
    return out
