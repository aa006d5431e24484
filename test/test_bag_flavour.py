# Tests of sgn_ros/ros/bag_flavour.py: each converter's topic/frame set is recognised and wired,
# unknown bags are wired by type or rejected with the topics named, static TF chains compose.
"""sgn_ros.ros.bag_flavour."""

from __future__ import annotations

import numpy as np
import pytest

from sgn_ros.ros.bag_flavour import detect_bag_flavour, static_transform, transform_matrix

IMG, INFO, PC, ODOM, TF = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/PointCloud2",
                           "nav_msgs/msg/Odometry", "tf2_msgs/msg/TFMessage")


def _cams(prefix: str, suffix: str, kind: str = IMG) -> dict[str, str]:
    out = {}
    for side in ("left", "right"):
        out[f"{prefix}_{side}/{suffix}"] = kind
        out[f"{prefix}_{side}/camera_info"] = INFO
    return out


def test_kitti2bag_raw() -> None:
    topics = {**_cams("/kitti/camera_color", "image"), **_cams("/kitti/camera_gray", "image"),
              "/kitti/velo/pointcloud": PC, "/kitti/oxts/imu": "sensor_msgs/msg/Imu", "/tf": TF, "/tf_static": TF}
    p = detect_bag_flavour(topics, {"world", "base_link", "imu_link", "velo_link", "camera_color_left"})
    assert p.name == "kitti2bag-raw" and p.grid_frame == "velo_link"
    params = p.node_parameters()
    assert params["image_topic"] == "/kitti/camera_color_left/image" and params["depth_source"] == "stereo"
    assert p.depth_sources() == ["stereo", "points"]
    assert p.node_parameters("points")["points_topic"] == "/kitti/velo/pointcloud"
    with pytest.raises(ValueError, match="depth_image"):
        p.node_parameters("depth_image")


def test_kitti2bag_odom_and_ours() -> None:
    topics = {**_cams("/kitti/camera_color", "image"), "/tf": TF}
    p = detect_bag_flavour(topics, {"camera_init", "camera_gray_left"})
    assert p.name == "kitti2bag-odom" and p.notes
    ours = {**topics, "/kitti/camera_color_left/depth": IMG, "/kitti/odom": ODOM, "/tf_static": TF}
    p = detect_bag_flavour(ours, {"odom", "velo_link", "camera_color_left"})
    assert p.name == "sgn-kitti" and p.topics["odom_topic"] == "/kitti/odom"
    assert p.depth_sources() == ["stereo", "depth_image"]


def test_kitti2mcap_left_camera_only_uses_points() -> None:
    topics = {"/kitti/camera_color_left/image_raw": IMG, "/kitti/camera_color_left/camera_info": INFO,
              "/kitti/velodyne_points": PC, "/kitti/imu": "sensor_msgs/msg/Imu", "/tf": TF, "/tf_static": TF}
    p = detect_bag_flavour(topics, {"map", "base_link", "velodyne", "camera_color_left"})
    assert p.name == "kitti2mcap" and p.grid_frame == "velodyne"
    assert p.node_parameters() == {"image_topic": "/kitti/camera_color_left/image_raw",
                                   "camera_info_topic": "/kitti/camera_color_left/camera_info",
                                   "points_topic": "/kitti/velodyne_points", "depth_source": "points",
                                   "grid_frame": "velodyne"}


def test_compressed_and_generic() -> None:
    comp = "sensor_msgs/msg/CompressedImage"
    topics = {"/kitti/camera_color_left/image_raw/compressed": comp, "/kitti/camera_color_left/camera_info": INFO,
              "/kitti/velodyne_points": PC}
    assert detect_bag_flavour(topics).topics["image_topic"] == "/kitti/camera_color_left/image_raw/compressed"
    generic = {**_cams("/stereo/cam", "image_rect", comp), "/lidar/points": PC}
    p = detect_bag_flavour(generic, {"base", "lidar"})
    assert p.name == "generic" and p.topics["image_topic"] == "/stereo/cam_left/image_rect"
    assert p.topics["right_image_topic"] == "/stereo/cam_right/image_rect" and p.grid_frame == "lidar"
    with pytest.raises(ValueError, match="/chatter"):
        detect_bag_flavour({"/chatter": "std_msgs/msg/String"})


def _rand_pose(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return transform_matrix(rng.normal(size=3), q)


def test_static_transform_chains_against_explicit_products() -> None:
    rng = np.random.default_rng(1)
    a, b, c = (_rand_pose(rng) for _ in range(3))
    np.testing.assert_allclose(a[:3, :3] @ a[:3, :3].T, np.eye(3), atol=1e-12)  # a proper rotation
    edges = [("imu", "velo", a), ("imu", "cam", b), ("base", "imu", c)]
    np.testing.assert_allclose(static_transform(edges, "velo", "cam"), np.linalg.inv(a) @ b, atol=1e-12)
    np.testing.assert_allclose(static_transform(edges, "base", "cam"), c @ b, atol=1e-12)
    np.testing.assert_allclose(static_transform(edges, "cam", "cam"), np.eye(4))
    with pytest.raises(ValueError, match="no static transform"):
        static_transform(edges, "velo", "map")


def test_transform_matrix_quaternion_convention() -> None:
    m = transform_matrix((1, 2, 3), (0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)))  # 90 deg about z
    np.testing.assert_allclose(m[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(m[:3, 3], [1, 2, 3])
