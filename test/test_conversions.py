# Tests of sgn_ros/ros/conversions.py against independent decoders: rosbags-image for camera
# images (our messages go through real CDR serialization into rosbags' own message classes),
# the `pointcloud2` package for PointCloud2, and slow per-voxel Python versions for the
# prediction -> PointCloud2 / MarkerArray / SemanticVoxelGrid conversions. No DDS traffic.
"""sgn_ros.ros.conversions: images, CameraInfo, depth, point clouds in; prediction messages out."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages (requirements/ros.txt) not installed")

import pointcloud2  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from rosbags.image import message_to_cvimage  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from sgn_ros.grid import DEFAULT_GRID, VoxelGrid  # noqa: E402
from sgn_ros.labels import load_label_set  # noqa: E402
from sgn_ros.ros import conversions as conv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
TYPESTORE.register(
    get_types_from_msg((ROOT / "msg" / "SemanticVoxelGrid.msg").read_text(), "sgn_ros/msg/SemanticVoxelGrid")
)
SMALL_GRID = VoxelGrid(origin=DEFAULT_GRID.origin, voxel_size=DEFAULT_GRID.voxel_size * 8, dims=(8, 6, 4), scales=(1,))


def _to_rosbags(msg, typename: str):
    """An rclpy message -> CDR bytes -> rosbags' message object (independent deserializer)."""
    return TYPESTORE.deserialize_cdr(bytes(serialize_message(msg)), typename)


def _pixels(encoding: str, rng: np.random.Generator, h: int = 6, w: int = 10) -> np.ndarray:
    dtype, ch = conv.IMAGE_ENCODINGS[encoding]
    shape = (h, w, ch) if ch > 1 else (h, w)
    if dtype == np.float32:
        return rng.normal(0, 100, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


# --------------------------------------------------------------------------- images
@pytest.mark.parametrize("encoding", sorted(set(conv.IMAGE_ENCODINGS) - {"uyvy", "yuyv", "8UC1", "8UC3"}))
@pytest.mark.parametrize("big_endian", [False, True])
def test_image_to_array_matches_rosbags_image(encoding: str, big_endian: bool) -> None:
    rng = np.random.default_rng(0)
    px = _pixels(encoding, rng)
    msg = conv.array_to_image(px, encoding, is_bigendian=big_endian)
    np.testing.assert_array_equal(conv.image_to_array(msg), px)
    ref = message_to_cvimage(_to_rosbags(msg, "sensor_msgs/msg/Image"))
    np.testing.assert_array_equal(conv.image_to_array(msg), ref)


@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "32FC1", "bayer_grbg8", "yuv422"])
def test_padded_rows(encoding: str) -> None:
    """step > width * bytes per pixel: padding is skipped (rosbags-image reads the unpadded copy)."""
    rng = np.random.default_rng(1)
    px = _pixels(encoding, rng, 5, 8)
    row = px.shape[1] * conv.IMAGE_ENCODINGS[encoding][1] * px.dtype.itemsize
    padded = conv.array_to_image(px, encoding, step=row + 13, is_bigendian=True)
    dense = conv.array_to_image(px, encoding)
    assert padded.step == row + 13 and len(padded.data) == (row + 13) * px.shape[0]
    np.testing.assert_array_equal(conv.image_to_array(padded), message_to_cvimage(_to_rosbags(dense,
                                                                                               "sensor_msgs/msg/Image")))
    # the last row's padding may be missing from the buffer
    padded.data = padded.data[:-13]
    np.testing.assert_array_equal(conv.image_to_array(padded), px)


@pytest.mark.parametrize(
    "encoding",
    ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8",
     "yuv422", "yuv422_yuy2"],
)
def test_image_to_rgb_matches_rosbags_image(encoding: str) -> None:
    rng = np.random.default_rng(2)
    msg = conv.array_to_image(_pixels(encoding, rng, 8, 12), encoding)
    ref = message_to_cvimage(_to_rosbags(msg, "sensor_msgs/msg/Image"), "rgb8")
    np.testing.assert_array_equal(conv.image_to_rgb(msg), ref)


def test_mono16_to_rgb_scales_like_cv_bridge() -> None:
    px = np.array([[0, 257, 65535, 1000]], dtype=np.uint16)
    rgb = conv.image_to_rgb(conv.array_to_image(px, "mono16"))
    np.testing.assert_array_equal(rgb[0, :, 0], np.round(px[0] / 257.0).astype(np.uint8))
    assert np.all(rgb[..., 0] == rgb[..., 2])


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_recover_a_solid_colour(pattern: str) -> None:
    """Physical check independent of OpenCV's naming: a mosaic of one colour demosaics to it."""
    colour = {"r": 200, "g": 120, "b": 40}
    h, w = 8, 10
    mosaic = np.zeros((h, w), np.uint8)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = colour[pattern[2 * dy + dx]]
    rgb = conv.image_to_rgb(conv.array_to_image(mosaic, f"bayer_{pattern}8"))
    np.testing.assert_array_equal(rgb[2:-2, 2:-2].reshape(-1, 3), np.tile([200, 120, 40], ((h - 4) * (w - 4), 1)))


def test_yuv422_byte_orders() -> None:
    """Grey in YUV (U = V = 128): UYVY carries Y in odd bytes, YUYV in even bytes."""
    y = np.array([[16, 235, 100, 50]], dtype=np.uint8)
    uyvy = np.stack([np.full_like(y, 128), y], axis=-1)
    yuyv = np.stack([y, np.full_like(y, 128)], axis=-1)
    a = conv.image_to_rgb(conv.array_to_image(uyvy, "yuv422"))
    b = conv.image_to_rgb(conv.array_to_image(yuyv, "yuv422_yuy2"))
    np.testing.assert_array_equal(a, b)
    assert a[0, 0, 0] < 10 and a[0, 1, 0] > 245 and np.all(a[..., 0] == a[..., 1])


@pytest.mark.parametrize(
    "change, match",
    [
        ({"encoding": "jpeg"}, "unsupported encoding"),
        ({"step": 5}, "step 5 <"),
        ({"height": 100000, "width": 100000, "step": 300000}, "bytes of data, need"),
        ({"width": 0}, "empty image"),
        ({"data": b"\x00" * 10}, "bytes of data"),
    ],
)
def test_malformed_images_raise(change: dict, match: str) -> None:
    msg = conv.array_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(ValueError, match=match):
        conv.image_to_rgb(msg)


def test_depth_encoding_is_not_a_camera_image() -> None:
    with pytest.raises(ValueError, match="not a colour"):
        conv.image_to_rgb(conv.array_to_image(np.ones((3, 4), np.float32), "32FC1"))


# --------------------------------------------------------------------------- camera info, depth
def _info(K: np.ndarray, p03: float = 0.0, hw=(10, 20)) -> CameraInfo:
    m = CameraInfo()
    m.height, m.width = hw
    m.k = [float(v) for v in np.asarray(K, dtype=np.float64).reshape(-1)]
    P = np.zeros((3, 4))
    P[:, :3] = K
    P[0, 3] = p03
    m.p = [float(v) for v in P.reshape(-1)]
    return m


def test_camera_info_to_K_and_baseline() -> None:
    K = np.array([[700.0, 0, 600], [0, 710.0, 180], [0, 0, 1]])
    np.testing.assert_array_equal(conv.camera_info_to_K(_info(K)), K)
    assert conv.camera_info_baseline(_info(K), _info(K, -700.0 * 0.54)) == pytest.approx(0.54)
    with pytest.raises(ValueError, match="baseline"):
        conv.camera_info_baseline(_info(K, -700.0 * 0.54), _info(K))


@pytest.mark.parametrize(
    "K, match",
    [
        (np.zeros((3, 3)), "all zeros"),
        (np.array([[np.nan, 0, 1], [0, 1, 1], [0, 0, 1]]), "non-finite"),
        (np.array([[-5.0, 0, 1], [0, 1, 1], [0, 0, 1]]), "pinhole"),
        (np.array([[5.0, 0, 1], [0, 1, 1], [0, 0, 2]]), "pinhole"),
    ],
)
def test_bad_intrinsics_raise(K: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        conv.camera_info_to_K(_info(K))


def test_camera_info_needs_a_size() -> None:
    with pytest.raises(ValueError, match="zero image size"):
        conv.camera_info_to_K(_info(np.eye(3), hw=(0, 0)))


def test_depth_image_to_metres() -> None:
    f = np.array([[1.5, np.nan, np.inf], [0.0, -2.0, 40.0]], np.float32)
    out = conv.depth_image_to_metres(conv.array_to_image(f, "32FC1"))
    np.testing.assert_array_equal(np.isnan(out), [[False, True, True], [True, True, False]])
    np.testing.assert_array_equal(out[[0, 1], [0, 2]], [1.5, 40.0])
    mm = np.array([[0, 1500, 65535]], np.uint16)
    for big in (False, True):
        out = conv.depth_image_to_metres(conv.array_to_image(mm, "16UC1", is_bigendian=big))
        assert np.isnan(out[0, 0])
        np.testing.assert_allclose(out[0, 1:], [1.5, 65.535], rtol=1e-6)
    with pytest.raises(ValueError, match="32FC1"):
        conv.depth_image_to_metres(conv.array_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))


# --------------------------------------------------------------------------- point clouds in
def _header() -> Header:
    h = Header()
    h.frame_id = "lidar"
    h.stamp.sec, h.stamp.nanosec = 12, 345
    return h


def _rclpy_cloud(c) -> PointCloud2:
    m = PointCloud2()
    m.header = _header()
    m.height, m.width, m.point_step, m.row_step = c.height, c.width, c.point_step, c.row_step
    m.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in c.fields]
    m.is_bigendian, m.is_dense, m.data = c.is_bigendian, c.is_dense, bytes(c.data)
    return m


@pytest.mark.parametrize("coord", ["<f4", "<f8"])
def test_pointcloud2_to_xyz_matches_pointcloud2_package(coord: str) -> None:
    rng = np.random.default_rng(3)
    dt = np.dtype([("intensity", "<f4"), ("x", coord), ("ring", "<u2"), ("y", coord), ("z", coord)])
    rec = np.zeros(50, dt)
    for n in ("x", "y", "z"):
        rec[n] = rng.normal(0, 20, 50)
    rec["x"][[3, 7]] = np.nan
    rec["intensity"] = rng.random(50)
    cloud = _rclpy_cloud(pointcloud2.create_cloud(_header(), pointcloud2.fields_from_dtype(dt), rec))
    ref = pointcloud2.read_points(cloud, ["x", "y", "z"], skip_nans=True)
    got = conv.pointcloud2_to_xyz(cloud)
    assert got.shape == (48, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, np.stack([ref["x"], ref["y"], ref["z"]], 1).astype(np.float32))


def test_pointcloud2_organized_padded_big_endian() -> None:
    """An organised 3 x 4 cloud, big-endian, 16-byte points (4 padding bytes), padded rows."""
    rng = np.random.default_rng(4)
    pts = rng.normal(0, 5, (3, 4, 3)).astype(np.float32)
    point_step, row_step = 16, 16 * 4 + 7
    data = bytearray(row_step * 3)
    for r in range(3):  # slow, obvious packing
        for c in range(4):
            struct.pack_into(">fff", data, r * row_step + c * point_step, *pts[r, c])
    m = PointCloud2()
    m.height, m.width, m.point_step, m.row_step, m.is_bigendian = 3, 4, point_step, row_step, True
    m.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    m.data = bytes(data)
    np.testing.assert_array_equal(conv.pointcloud2_to_xyz(m), pts.reshape(-1, 3))
    ref = pointcloud2.read_points(m)
    np.testing.assert_array_equal(np.stack([ref["x"], ref["y"], ref["z"]], 1), pts.reshape(-1, 3))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"fields": "xy"}, "missing field"),
        ({"point_step": 2}, "beyond point_step"),
        ({"row_step": 10}, "too small"),
        ({"data": b"\x00" * 8}, "bytes of data"),
        ({"datatype": PointField.INT32}, "FLOAT32 or FLOAT64"),
    ],
)
def test_malformed_clouds_raise(change: dict, match: str) -> None:
    m = PointCloud2()
    m.height, m.width, m.point_step, m.row_step = 1, 4, 12, 48
    m.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    m.data = bytes(48)
    if "fields" in change:
        m.fields = m.fields[: len(change["fields"])]
    if "datatype" in change:
        m.fields[0].datatype = change["datatype"]
    for k in ("point_step", "row_step", "data"):
        if k in change:
            setattr(m, k, change[k])
    with pytest.raises(ValueError, match=match):
        conv.pointcloud2_to_xyz(m)


# --------------------------------------------------------------------------- transforms, fitting
def test_transforms_round_trip() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        v = [*rng.normal(0, 3, 3), *rng.uniform(-math.pi, math.pi, 3)]
        T = conv.xyz_rpy_to_matrix(v)
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(conv.pose_to_matrix(conv.matrix_to_pose(T)), T, atol=1e-12)
        np.testing.assert_allclose(conv.xyz_rpy_to_matrix(T.reshape(-1)), T)
    # yaw of 90 degrees turns x into y
    np.testing.assert_allclose(conv.xyz_rpy_to_matrix([0, 0, 0, 0, 0, math.pi / 2])[:3, 0], [0, 1, 0], atol=1e-12)
    with pytest.raises(ValueError, match="6 values"):
        conv.xyz_rpy_to_matrix([1.0, 2.0])
    with pytest.raises(ValueError, match="orthonormal"):
        conv.xyz_rpy_to_matrix(np.diag([2.0, 1, 1, 1]).reshape(-1))


def test_fit_image_to_network() -> None:
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    K = np.array([[50.0, 0, 6], [0, 50.0, 5], [0, 0, 1]])
    out, K2 = conv.fit_image_to_network(img, K, (8, 14), "crop")
    assert out.shape == (8, 14, 3) and np.array_equal(out[:, :12], img[:8]) and not out[:, 12:].any()
    np.testing.assert_array_equal(K2, K)
    out, K2 = conv.fit_image_to_network(img, K, (5, 6), "resize")
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8
    assert K2[0, 0] == pytest.approx(25.0) and K2[1, 1] == pytest.approx(25.0)
    with pytest.raises(ValueError, match="crop' or 'resize"):
        conv.fit_image_to_network(img, K, (5, 6), "stretch")


# --------------------------------------------------------------------------- prediction out
def _prediction(rng: np.random.Generator, grid: VoxelGrid = SMALL_GRID) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 20, grid.dims).astype(np.uint8)
    labels[rng.random(grid.dims) < 0.4] = 0
    labels[rng.random(grid.dims) < 0.05] = 255
    return labels, rng.random(grid.dims).astype(np.float32)


def _slow_voxels(labels, conf, grid, threshold, T):
    """Obvious per-voxel loop: [(x, y, z, label, confidence)] of occupied voxels in C order."""
    out = []
    X, Y, Z = grid.dims
    for i in range(X):
        for j in range(Y):
            for k in range(Z):
                c = int(labels[i, j, k])
                if c in (0, 255) or conf[i, j, k] < threshold:
                    continue
                p = np.array([grid.origin[0] + (i + 0.5) * grid.voxel_size,
                              grid.origin[1] + (j + 0.5) * grid.voxel_size,
                              grid.origin[2] + (k + 0.5) * grid.voxel_size, 1.0])
                out.append(((T @ p)[:3], c, float(conf[i, j, k])))
    return out


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_labels_to_pointcloud2_vs_slow_loop(threshold: float) -> None:
    rng = np.random.default_rng(6)
    labels, conf = _prediction(rng)
    colors = load_label_set("semantickitti").colors_rgb
    T = conv.xyz_rpy_to_matrix([1.0, -2.0, 0.5, 0.1, -0.2, 0.3])
    msg = conv.labels_to_pointcloud2(labels, SMALL_GRID, colors, _header(), conf, threshold, T)
    slow = _slow_voxels(labels, conf, SMALL_GRID, threshold, T)
    assert msg.header.frame_id == "lidar" and msg.width == len(slow) > 0
    rec = pointcloud2.read_points(_to_rosbags(msg, "sensor_msgs/msg/PointCloud2"))  # wire round trip
    for n, (p, c, cf) in enumerate(slow):
        np.testing.assert_allclose([rec["x"][n], rec["y"][n], rec["z"][n]], p, atol=1e-5)
        assert rec["label"][n] == c and rec["confidence"][n] == np.float32(cf)
        r, g, b = (int(v) for v in colors[c])
        assert struct.unpack("<I", struct.pack("<f", rec["rgb"][n]))[0] == (r << 16) | (g << 8) | b
    plain = conv.labels_to_pointcloud2(labels, SMALL_GRID, colors, include_confidence=False)
    assert [f.name for f in plain.fields] == ["x", "y", "z", "rgb", "label"] and plain.point_step == 20


def test_labels_to_marker_array_vs_slow_loop() -> None:
    rng = np.random.default_rng(7)
    labels, conf = _prediction(rng)
    colors = load_label_set("semantickitti").colors_rgb
    T = conv.xyz_rpy_to_matrix([0.3, 0.0, -0.1, 0.0, 0.0, 1.0])
    ma, present = conv.labels_to_marker_array(labels, SMALL_GRID, colors, _header(), conf, 0.0, T)
    slow = _slow_voxels(labels, conf, SMALL_GRID, 0.0, np.eye(4))  # marker points are in grid coordinates
    by_class: dict[int, list] = {}
    for p, c, _ in slow:
        by_class.setdefault(c, []).append(p)
    assert present == set(by_class)
    assert [m.id for m in ma.markers] == sorted(by_class)
    for m in ma.markers:
        assert m.type == m.CUBE_LIST and m.action == m.ADD and m.ns == "ssc"
        assert m.scale.x == m.scale.y == m.scale.z == pytest.approx(SMALL_GRID.voxel_size)
        np.testing.assert_allclose([m.color.r, m.color.g, m.color.b], colors[m.id] / 255.0)
        np.testing.assert_allclose([[p.x, p.y, p.z] for p in m.points], by_class[m.id], atol=1e-5)
        np.testing.assert_allclose(conv.pose_to_matrix(m.pose), T, atol=1e-9)
    # next frame: one class disappears -> DELETE with its id, others re-sent with the same ids
    gone = sorted(by_class)[0]
    labels2 = labels.copy()
    labels2[labels2 == gone] = 0
    ma2, present2 = conv.labels_to_marker_array(labels2, SMALL_GRID, colors, previous_classes=present)
    assert present2 == present - {gone}
    deletes = [m for m in ma2.markers if m.action == m.DELETE]
    assert [m.id for m in deletes] == [gone]
    assert sorted(m.id for m in ma2.markers if m.action == m.ADD) == sorted(present2)


def test_labels_to_voxel_grid_layout_and_round_trip() -> None:
    rng = np.random.default_rng(8)
    labels, conf = _prediction(rng)
    names = load_label_set("semantickitti").names
    colors = load_label_set("semantickitti").colors_rgb
    T = conv.xyz_rpy_to_matrix([1.0, 2.0, 3.0, 0.0, 0.0, math.pi / 2])
    msg = conv.labels_to_voxel_grid(labels, SMALL_GRID, names, colors, _header(), conf, 0.3, T)
    raw = _to_rosbags(msg, "sgn_ros/msg/SemanticVoxelGrid")  # msg/ file parsed by rosbags: wire compatible
    X, Y, Z = SMALL_GRID.dims
    assert (msg.size_x, msg.size_y, msg.size_z) == (X, Y, Z)
    flat = np.frombuffer(bytes(raw.labels), np.uint8)
    for i, j, k in [(0, 0, 1), (1, 0, 0), (0, 1, 0), (X - 1, Y - 1, Z - 1), (3, 2, 1)]:  # z fastest
        expect = labels[i, j, k] if conf[i, j, k] >= 0.3 else 255
        assert flat[(i * Y + j) * Z + k] == expect
    lab, c, grid, corner = conv.voxel_grid_to_arrays(msg)
    np.testing.assert_array_equal(lab, np.where(conf >= 0.3, labels, 255))
    np.testing.assert_allclose(c, np.round(conf * 255) / 255, atol=1e-6)
    # origin = grid corner moved by T; centres agree with the PointCloud2 path
    np.testing.assert_allclose(corner[:3, 3], (T @ [*SMALL_GRID.origin, 1.0])[:3], atol=1e-9)
    ijk = np.argwhere((lab != 0) & (lab != 255))
    via_msg = (np.c_[grid.index_to_center(ijk), np.ones(len(ijk))] @ corner.T)[:, :3]
    centres, _, _, _ = conv.select_voxels(labels, SMALL_GRID, conf, 0.3, T)
    np.testing.assert_allclose(via_msg, centres, atol=1e-5)
    assert list(msg.class_names) == list(names) and len(msg.class_colors) == 3 * len(names)
    assert len(conv.labels_to_voxel_grid(labels, SMALL_GRID, names, include_confidence=False).confidence) == 0


def test_prediction_shape_and_class_checks() -> None:
    colors = load_label_set("semantickitti").colors_rgb
    with pytest.raises(ValueError, match="grid shape"):
        conv.labels_to_pointcloud2(np.zeros((2, 2, 2), np.uint8), SMALL_GRID, colors)
    bad = np.full(SMALL_GRID.dims, 40, np.uint8)
    with pytest.raises(ValueError, match="no colour"):
        conv.labels_to_pointcloud2(bad, SMALL_GRID, colors)


@pytest.mark.slow
def test_full_grid_conversions_are_vectorised() -> None:
    """The full 256 x 256 x 32 grid converts in well under a second (no per-voxel Python loop)."""
    import time

    rng = np.random.default_rng(9)
    labels, conf = _prediction(rng, DEFAULT_GRID)
    labels[rng.random(DEFAULT_GRID.dims) < 0.9] = 0  # ~10 % occupied, like a real scene
    colors = load_label_set("semantickitti").colors_rgb
    t = time.perf_counter()
    pc = conv.labels_to_pointcloud2(labels, DEFAULT_GRID, colors, None, conf)
    grid_msg = conv.labels_to_voxel_grid(labels, DEFAULT_GRID, load_label_set("semantickitti").names, colors,
                                         None, conf)
    assert time.perf_counter() - t < 2.0
    assert pc.width == int(((labels != 0) & (labels != 255)).sum())
    assert len(grid_msg.labels) == DEFAULT_GRID.num_voxels


def test_marker_point_cache_reuses_points() -> None:
    rng = np.random.default_rng(10)
    labels, _ = _prediction(rng)
    colors = load_label_set("semantickitti").colors_rgb
    cache = conv.MarkerPointCache(SMALL_GRID)
    a, _ = conv.labels_to_marker_array(labels, SMALL_GRID, colors, cache=cache)
    b, _ = conv.labels_to_marker_array(labels, SMALL_GRID, colors, cache=cache)
    c, _ = conv.labels_to_marker_array(labels, SMALL_GRID, colors)  # no cache: fresh objects, same values
    for ma, mb, mc in zip(a.markers, b.markers, c.markers):
        assert all(p is q for p, q in zip(ma.points, mb.points))
        assert [(p.x, p.y, p.z) for p in ma.points] == [(p.x, p.y, p.z) for p in mc.points]
    other = VoxelGrid(origin=SMALL_GRID.origin, voxel_size=SMALL_GRID.voxel_size, dims=(4, 4, 4), scales=(1,))
    with pytest.raises(ValueError, match="cache is for"):
        conv.labels_to_marker_array(np.zeros(other.dims, np.uint8), other, colors, cache=cache)
