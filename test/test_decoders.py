# Tests of sgn_ros/ros/decoders.py against independent decoders: rosbags-image for camera
# images (our messages go through real CDR serialization into rosbags' own message classes), the
# `pointcloud2` package for PointCloud2, plus CameraInfo / depth / pose decoding. No DDS traffic.
"""sgn_ros.ros.decoders: images, CameraInfo, depth, point clouds, poses in."""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages (requirements/ros.txt) not installed")

import pointcloud2  # noqa: E402
from ros_messages import header as _header  # noqa: E402
from ros_messages import to_rosbags as _to_rosbags  # noqa: E402
from rosbags.image import message_to_cvimage  # noqa: E402
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField  # noqa: E402

from sgn_ros.ros import decoders as conv  # noqa: E402


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
def _info(K: np.ndarray, p03: float = 0.0, hw=(370, 1220)) -> CameraInfo:
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
