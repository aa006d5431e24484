# A KITTI odometry / SemanticKITTI sequence as the ROS 2 messages a recording of it would hold.
#
# One definition of "what a KITTI frame looks like on the wire", used by the live
# `kitti_player` node and by `sgn-ros kitti-to-bag`: both take the CDR bytes built here, so a
# replay and a recording of the same sequence are byte-identical. Topic and frame names default
# to those of the widely used kitti2bag recordings (tomas789/kitti2bag), so one remap preset
# (config/kitti2bag_remap.yaml) serves both. No rclpy import: messages are rosbags typestore
# dataclasses, serialized for a chosen ROS 2 distro.
"""KITTI sequence reader and its ROS 2 message set (images, camera_info, odometry, TF, clock)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from sgn_ros.data.kitti_sequence import KittiSequence
from sgn_ros.geometry import invert_transform, matrix_to_quaternion
from sgn_ros.ros.rosbag_io import DEFAULT_DISTRO, typestore

#: dataset time 0 on the wire, in ns: 2011-09-26 12:00:00 UTC, the base kitti2bag gives odometry
#: sequences (their times.txt starts at 0, which ROS tools read as "no time yet").
KITTI_EPOCH_NS = 1_317_038_400 * 1_000_000_000


@dataclass(frozen=True)
class KittiTopics:
    """Topic names. Defaults: kitti2bag's names; `depth` and `odom` have no kitti2bag equivalent."""

    left_image: str = "/kitti/camera_color_left/image"
    left_info: str = "/kitti/camera_color_left/camera_info"
    right_image: str = "/kitti/camera_color_right/image"
    right_info: str = "/kitti/camera_color_right/camera_info"
    depth: str = "/kitti/camera_color_left/depth"
    points: str = "/kitti/velo/pointcloud"
    odom: str = "/kitti/odom"
    tf: str = "/tf"
    tf_static: str = "/tf_static"
    clock: str = "/clock"


@dataclass(frozen=True)
class KittiFrames:
    """TF frame ids (kitti2bag's camera and LiDAR names; `world` = the LiDAR frame of frame 0)."""

    left: str = "camera_color_left"
    right: str = "camera_color_right"
    lidar: str = "velo_link"
    world: str = "odom"


@dataclass
class KittiStreams:
    """Which optional streams to produce (each only where the sequence has the data).

    `tf`: /tf_static (LiDAR -> cameras, from calib.txt) and, with odometry, /tf (world -> LiDAR).
    """

    right: bool = True
    depth: bool = True
    points: bool = True
    odom: bool = True
    tf: bool = True

    def restrict(self, seq: KittiSequence) -> KittiStreams:
        """These choices, minus what `seq` lacks."""
        have = {f.name: getattr(self, f.name) and (f.name == "tf" or seq.has(f.name)) for f in fields(self)}
        return replace(self, **have)


@dataclass
class KittiMessageBuilder:
    """Builds the serialized (CDR) messages of a sequence's frames.

    Each message is ``(topic, msgtype, cdr_bytes)``; the stamp of every header of frame `i` is
    the caller's `stamp_ns` (wall clock for live replay, ``KITTI_EPOCH_NS + times[i]`` for
    recordings / simulated time).
    """

    seq: KittiSequence
    topics: KittiTopics = field(default_factory=KittiTopics)
    frames: KittiFrames = field(default_factory=KittiFrames)
    streams: KittiStreams = field(default_factory=KittiStreams)
    distro: str = DEFAULT_DISTRO

    def __post_init__(self) -> None:
        self.streams = self.streams.restrict(self.seq)
        self.store = typestore(self.distro)
        self._lidar_poses = self.seq.lidar_poses()

    # ------------------------------------------------------------------ helpers
    def _t(self, name: str) -> Any:
        return self.store.types[name]

    def _serialize(self, msg: Any) -> bytes:
        return bytes(self.store.serialize_cdr(msg, msg.__msgtype__))

    def _header(self, stamp_ns: int, frame_id: str) -> Any:
        return self._t("std_msgs/msg/Header")(stamp=self._time(stamp_ns), frame_id=frame_id)

    def _time(self, stamp_ns: int) -> Any:
        return self._t("builtin_interfaces/msg/Time")(sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9))

    def _transform(self, stamp_ns: int, parent: str, child: str, pose: np.ndarray) -> Any:
        """TransformStamped of `child` in `parent`: `pose` (4, 4) maps child coordinates to parent."""
        vec3, quat = self._t("geometry_msgs/msg/Vector3"), self._t("geometry_msgs/msg/Quaternion")
        q = matrix_to_quaternion(pose[:3, :3])
        tf = self._t("geometry_msgs/msg/Transform")(
            translation=vec3(x=float(pose[0, 3]), y=float(pose[1, 3]), z=float(pose[2, 3])),
            rotation=quat(x=q[0], y=q[1], z=q[2], w=q[3]),
        )
        return self._t("geometry_msgs/msg/TransformStamped")(
            header=self._header(stamp_ns, parent), child_frame_id=child, transform=tf
        )

    def image_msg(self, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
        """sensor_msgs/Image, rgb8, rows unpadded (step = 3 W)."""
        h, w = rgb.shape[:2]
        return self._t("sensor_msgs/msg/Image")(
            header=self._header(stamp_ns, frame_id), height=h, width=w, encoding="rgb8",
            is_bigendian=0, step=3 * w, data=np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1),
        )

    def depth_msg(self, depth: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
        """sensor_msgs/Image, 32FC1 metres (0 = no depth), little endian."""
        h, w = depth.shape
        return self._t("sensor_msgs/msg/Image")(
            header=self._header(stamp_ns, frame_id), height=h, width=w, encoding="32FC1",
            is_bigendian=0, step=4 * w, data=np.ascontiguousarray(depth, dtype="<f4").view(np.uint8).reshape(-1),
        )

    def camera_info_msg(self, camera: str, stamp_ns: int) -> Any:
        """sensor_msgs/CameraInfo of the rectified colour camera (ROS stereo convention).

        K = P2/P3's left 3x3 block; P = [K | 0] for the left camera and [K | (-fx B, 0, 0)] for
        the right one, B = `KittiSequence.baseline` metres, so stereo consumers find the baseline
        as ``-P[0, 3] / P[0, 0]``. Images are rectified: D = 0, R = I.
        """
        k = self.seq.k_left if camera == "left" else self.seq.k_right
        p = np.zeros((3, 4))
        p[:, :3] = k
        if camera == "right":
            p[0, 3] = -k[0, 0] * self.seq.baseline
        h, w = self.seq.image_size
        frame = self.frames.left if camera == "left" else self.frames.right
        roi = self._t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self._t("sensor_msgs/msg/CameraInfo")(
            header=self._header(stamp_ns, frame), height=h, width=w, distortion_model="plumb_bob",
            d=np.zeros(5), k=k.reshape(-1).astype(np.float64), r=np.eye(3).reshape(-1),
            p=p.reshape(-1), binning_x=0, binning_y=0, roi=roi,
        )

    def points_msg(self, pts: np.ndarray, stamp_ns: int) -> Any:
        """sensor_msgs/PointCloud2 of velodyne points: float32 x, y, z, intensity (kitti2bag's layout)."""
        pf = self._t("sensor_msgs/msg/PointField")
        flds = [pf(name=n, offset=4 * i, datatype=pf.FLOAT32, count=1) for i, n in enumerate("x y z intensity".split())]
        data = np.ascontiguousarray(pts[:, :4], dtype="<f4")
        return self._t("sensor_msgs/msg/PointCloud2")(
            header=self._header(stamp_ns, self.frames.lidar), height=1, width=len(data), fields=flds,
            is_bigendian=False, point_step=16, row_step=16 * len(data), data=data.view(np.uint8).reshape(-1),
            is_dense=True,
        )

    def odometry_msg(self, index: int, stamp_ns: int) -> Any:
        """nav_msgs/Odometry: the LiDAR pose of frame `index` in the LiDAR frame of frame 0.

        header.frame_id = world frame, child_frame_id = LiDAR frame (velo_link): the pose maps
        current-LiDAR coordinates to frame-0-LiDAR coordinates (``inv(Tr) @ pose_cam0 @ Tr``),
        what SGN-T needs to move earlier frames' points into the current LiDAR frame.
        Twist is left zero with an unknown covariance (-1 on the diagonal's first entry).
        """
        pose = self._lidar_poses[index]
        q = matrix_to_quaternion(pose[:3, :3])
        pt, quat = self._t("geometry_msgs/msg/Point"), self._t("geometry_msgs/msg/Quaternion")
        pose_msg = self._t("geometry_msgs/msg/Pose")(
            position=pt(x=float(pose[0, 3]), y=float(pose[1, 3]), z=float(pose[2, 3])),
            orientation=quat(x=q[0], y=q[1], z=q[2], w=q[3]),
        )
        twist_cov = np.zeros(36)
        twist_cov[0] = -1.0
        vec3 = self._t("geometry_msgs/msg/Vector3")
        twist = self._t("geometry_msgs/msg/Twist")(linear=vec3(x=0.0, y=0.0, z=0.0), angular=vec3(x=0.0, y=0.0, z=0.0))
        return self._t("nav_msgs/msg/Odometry")(
            header=self._header(stamp_ns, self.frames.world), child_frame_id=self.frames.lidar,
            pose=self._t("geometry_msgs/msg/PoseWithCovariance")(pose=pose_msg, covariance=np.zeros(36)),
            twist=self._t("geometry_msgs/msg/TwistWithCovariance")(twist=twist, covariance=twist_cov),
        )

    # ------------------------------------------------------------------ message sets
    def dataset_stamp_ns(self, index: int) -> int:
        """``KITTI_EPOCH_NS + times[index]`` in ns: the stamp recordings and simulated time use."""
        return KITTI_EPOCH_NS + round(float(self.seq.times[index]) * 1e9)

    def frame_messages(self, index: int, stamp_ns: int) -> list[tuple[str, str, bytes]]:
        """All per-frame messages of frame `index` as (topic, msgtype, CDR bytes), images first."""
        s, t, fr = self.streams, self.topics, self.frames
        msgs = [(t.left_image, self.image_msg(self.seq.left_image(index), stamp_ns, fr.left)),
                (t.left_info, self.camera_info_msg("left", stamp_ns))]
        if s.right:
            msgs += [(t.right_image, self.image_msg(self.seq.right_image(index), stamp_ns, fr.right)),
                     (t.right_info, self.camera_info_msg("right", stamp_ns))]
        if s.depth:
            msgs.append((t.depth, self.depth_msg(self.seq.depth(index), stamp_ns, fr.left)))
        if s.points:
            msgs.append((t.points, self.points_msg(self.seq.points(index), stamp_ns)))
        if s.odom:
            msgs.append((t.odom, self.odometry_msg(index, stamp_ns)))
        if s.tf and s.odom:
            tfm = self._t("tf2_msgs/msg/TFMessage")(
                transforms=[self._transform(stamp_ns, fr.world, fr.lidar, self._lidar_poses[index])]
            )
            msgs.append((t.tf, tfm))
        return [(topic, m.__msgtype__, self._serialize(m)) for topic, m in msgs]

    def static_tf_message(self, stamp_ns: int) -> tuple[str, str, bytes]:
        """/tf_static: LiDAR -> left and right colour camera (from Tr and P2/P3's offsets)."""
        fr = self.frames
        tfm = self._t("tf2_msgs/msg/TFMessage")(transforms=[
            self._transform(stamp_ns, fr.lidar, fr.left, invert_transform(self.seq.lidar_to_camera("left"))),
            self._transform(stamp_ns, fr.lidar, fr.right, invert_transform(self.seq.lidar_to_camera("right"))),
        ])
        return self.topics.tf_static, tfm.__msgtype__, self._serialize(tfm)

    def clock_message(self, stamp_ns: int) -> tuple[str, str, bytes]:
        """rosgraph_msgs/Clock at `stamp_ns`."""
        clk = self._t("rosgraph_msgs/msg/Clock")(clock=self._time(stamp_ns))
        return self.topics.clock, clk.__msgtype__, self._serialize(clk)

    def topic_types(self) -> dict[str, str]:
        """topic -> msgtype of every topic `frame_messages` / `static_tf_message` produce."""
        s, t = self.streams, self.topics
        img, info = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"
        out = {t.left_image: img, t.left_info: info}
        if s.right:
            out.update({t.right_image: img, t.right_info: info})
        if s.depth:
            out[t.depth] = img
        if s.points:
            out[t.points] = "sensor_msgs/msg/PointCloud2"
        if s.odom:
            out[t.odom] = "nav_msgs/msg/Odometry"
        if s.tf:
            out[t.tf_static] = "tf2_msgs/msg/TFMessage"
        if s.tf and s.odom:
            out[t.tf] = "tf2_msgs/msg/TFMessage"
        return out
