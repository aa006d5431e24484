# Which tool wrote a KITTI bag, and how sgn_node must be wired to replay it. Each converter names
# topics and frames its own way (kitti2bag: /kitti/camera_color_left/image + velo_link;
# kitti2mcap: /kitti/camera_color_left/image_raw + velodyne; sgn-ros kitti-to-bag: kitti2bag's
# names plus depth and odometry), and a wrong guess makes the node wait silently for topics that
# never come. `detect_bag_flavour` decides from the bag's topics, types and TF frames alone (pure,
# no ROS), and the resulting `BagPreset` gives the node parameters; `static_transform` chains the
# bag's /tf_static edges to get the camera pose in the grid (LiDAR) frame.
"""Recognise a bag's converter and derive sgn_node's wiring for it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
INFO = "sensor_msgs/msg/CameraInfo"
CLOUD = "sensor_msgs/msg/PointCloud2"
ODOM = "nav_msgs/msg/Odometry"

#: depth sources in order of preference when the bag has their inputs (stereo is SGN's own setting).
DEPTH_SOURCES = ("stereo", "depth_image", "points")


@dataclass(frozen=True)
class BagPreset:
    """How to feed one bag to sgn_node.

    `topics` maps sgn_node topic parameters (image_topic, camera_info_topic, right_image_topic,
    right_camera_info_topic, depth_topic, points_topic, odom_topic) to the bag's topics; only
    those present in the bag are set. `grid_frame` is the LiDAR frame (KITTI's voxel grid lives
    there); `camera_frame` is the left image's frame, `lidar_frame` the point cloud's.
    """

    name: str  # kitti2bag-raw | kitti2bag-odom | kitti2mcap | sgn-kitti | generic
    description: str
    topics: dict[str, str]
    camera_frame: str
    lidar_frame: str
    grid_frame: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def depth_sources(self) -> list[str]:
        """The depth sources this bag can feed, best first."""
        need = {"stereo": ("right_image_topic", "right_camera_info_topic"), "depth_image": ("depth_topic",),
                "points": ("points_topic",)}
        return [s for s in DEPTH_SOURCES if all(k in self.topics for k in need[s])]

    def default_depth_source(self) -> str:
        sources = self.depth_sources()
        if not sources:
            raise ValueError(f"bag ({self.description}): no right camera, depth image or point cloud topic; "
                             "sgn_node needs one of them for depth")
        return sources[0]

    def node_parameters(self, depth_source: str = "") -> dict[str, object]:
        """sgn_node parameters for this bag (topic names, frames, depth source)."""
        source = depth_source or self.default_depth_source()
        if source not in self.depth_sources():
            raise ValueError(f"--depth-source {source}: this bag ({self.description}) can feed "
                             f"{', '.join(self.depth_sources()) or 'none'}")
        params: dict[str, object] = dict(self.topics)
        params["depth_source"] = source
        params["grid_frame"] = self.grid_frame
        return params


def _first(topics: Mapping[str, str], candidates: Iterable[str], types: tuple[str, ...]) -> str | None:
    return next((t for t in candidates if topics.get(t) in types), None)


def _camera_pair(topics: Mapping[str, str], image: str) -> str | None:
    """The CameraInfo topic beside an image topic (``.../image_raw[/compressed]`` -> ``.../camera_info``)."""
    base = image[: -len("/compressed")] if image.endswith("/compressed") else image
    info = base.rsplit("/", 1)[0] + "/camera_info"
    return info if topics.get(info) == INFO else None


def _generic(topics: Mapping[str, str], frames: set[str]) -> BagPreset:
    images = sorted(t for t, ty in topics.items() if ty in (IMAGE, COMPRESSED) and _camera_pair(topics, t))
    if not images:
        seen = ", ".join(f"{t} ({ty})" for t, ty in sorted(topics.items())) or "none"
        raise ValueError(f"no camera image with a sibling camera_info topic in the bag; topics: {seen}")
    # left before right, raw before compressed, colour before grey
    def rank(t: str) -> tuple:
        return ("right" in t, topics[t] == COMPRESSED, "gray" in t or "mono" in t, t)

    images.sort(key=rank)
    left = images[0]
    out = {"image_topic": left, "camera_info_topic": _camera_pair(topics, left)}
    right = next((t for t in images if "right" in t and "right" not in left
                  and t.replace("right", "left") == left.replace("right", "left")), None)
    if right:
        out["right_image_topic"], out["right_camera_info_topic"] = right, _camera_pair(topics, right)
    clouds = sorted(t for t, ty in topics.items() if ty == CLOUD)
    if clouds:
        out["points_topic"] = clouds[0]
    odoms = sorted(t for t, ty in topics.items() if ty == ODOM)
    if odoms:
        out["odom_topic"] = odoms[0]
    lidar = next((f for f in ("velo_link", "velodyne", "lidar", "os_sensor") if f in frames), "")
    return BagPreset("generic", "unrecognised converter: topics guessed from their types", out, "", lidar,
                     lidar or "sgn_grid", ("topics chosen by type; check them in the replay log",))


def detect_bag_flavour(topics_with_types: Mapping[str, str], tf_frames: Iterable[str] = ()) -> BagPreset:
    """The converter that wrote a bag, from its topics ({topic: ROS 2 type}) and TF frame ids.

    Recognised: kitti2bag (PyPI 1.5, ROS 1: raw drives and odometry sequences, as is or through
    rosbags-convert), kitti2mcap (PyPI), sgn-ros kitti-to-bag / kitti_player; any other bag with
    an image + camera_info pair is wired by type ("generic"). Compressed image topics
    (``.../compressed``, sensor_msgs/CompressedImage) stand in for missing raw ones.

    Raises:
        ValueError: no usable camera image, naming the topics the bag has.
    """
    topics = dict(topics_with_types)
    frames = set(tf_frames)

    def image(*names: str) -> str | None:
        return _first(topics, [n for name in names for n in (name, name + "/compressed")], (IMAGE, COMPRESSED))

    def present(**candidates: str) -> dict[str, str]:
        return {k: v for k, v in candidates.items() if v and v in topics}

    left = image("/kitti/camera_color_left/image")
    if left:  # kitti2bag's names (also ours)
        ours = "/kitti/odom" in topics or "/kitti/camera_color_left/depth" in topics or "odom" in frames
        t = present(image_topic=left, camera_info_topic="/kitti/camera_color_left/camera_info",
                    right_image_topic=image("/kitti/camera_color_right/image"),
                    right_camera_info_topic="/kitti/camera_color_right/camera_info",
                    depth_topic="/kitti/camera_color_left/depth", points_topic="/kitti/velo/pointcloud",
                    odom_topic="/kitti/odom")
        if ours:
            return BagPreset("sgn-kitti", "sgn-ros kitti-to-bag / kitti_player", t, "camera_color_left",
                             "velo_link", "velo_link")
        if "camera_init" in frames or "/kitti/oxts/imu" not in topics:
            return BagPreset("kitti2bag-odom", "kitti2bag odom (KITTI odometry sequence)", t, "camera_color_left",
                             "velo_link", "velo_link",
                             ("kitti2bag odom leaves CameraInfo K empty and writes no camera extrinsics: "
                              "K is taken from P and camera_to_grid from calib defaults",))
        return BagPreset("kitti2bag-raw", "kitti2bag raw_sync (KITTI raw drive)", t, "camera_color_left",
                         "velo_link", "velo_link")
    left = image("/kitti/camera_color_left/image_raw")
    if left and ("/kitti/velodyne_points" in topics or "velodyne" in frames):
        t = present(image_topic=left, camera_info_topic="/kitti/camera_color_left/camera_info",
                    right_image_topic=image("/kitti/camera_color_right/image_raw"),
                    right_camera_info_topic="/kitti/camera_color_right/camera_info",
                    points_topic="/kitti/velodyne_points")
        return BagPreset("kitti2mcap", "kitti2mcap (KITTI raw drive, MCAP)", t, "camera_color_left", "velodyne",
                         "velodyne")
    return _generic(topics, frames)


def _matrix(translation: Iterable[float], quaternion_xyzw: Iterable[float]) -> np.ndarray:
    x, y, z, w = (float(v) for v in quaternion_xyzw)
    n = np.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    m = np.eye(4)
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    m[:3, 3] = list(translation)
    return m


def transform_matrix(translation: Iterable[float], quaternion_xyzw: Iterable[float]) -> np.ndarray:
    """(4, 4) of a geometry_msgs/Transform: translation (x, y, z) and rotation (x, y, z, w)."""
    return _matrix(translation, quaternion_xyzw)


def static_transform(edges: Iterable[tuple[str, str, np.ndarray]], target: str, source: str) -> np.ndarray:
    """(4, 4) pose of frame `source` in frame `target` through a tree of static transforms.

    Args:
        edges: (parent, child, T) with T the child's pose in the parent (TF's convention).
        target, source: frame ids.

    Raises:
        ValueError: the frames are not connected, naming the frames the tree has.
    """
    graph: dict[str, list[tuple[str, np.ndarray]]] = {}
    for parent, child, t in edges:
        t = np.asarray(t, dtype=float)
        graph.setdefault(parent, []).append((child, t))
        graph.setdefault(child, []).append((parent, np.linalg.inv(t)))
    # breadth-first from target: pose[f] = pose of f in target
    pose = {target: np.eye(4)}
    queue = [target]
    while queue:
        f = queue.pop(0)
        for g, t in graph.get(f, []):
            if g not in pose:
                pose[g] = pose[f] @ t
                queue.append(g)
    if source not in pose:
        raise ValueError(f"no static transform from {source!r} to {target!r}; frames: {', '.join(sorted(graph))}")
    return pose[source]
