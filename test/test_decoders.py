# Tests of sgn_ros/ros/decoders.py against independent decoders: rosbags-image for camera
# images (our messages go through real CDR serialization into rosbags' own message classes), the
# `pointcloud2` package for PointCloud2, plus CameraInfo / depth / pose decoding. No DDS traffic.
"""sgn_ros.ros.decoders: images, CameraInfo, depth, point clouds, poses in."""

from __future__ import annotations

import struct
from types import SimpleNamespace as _NS

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


# --------------------------------------------------------------------------- CameraInfo: rectification, plausibility
def _rect_info(K: np.ndarray, P: np.ndarray, d=(), r=None, hw=(720, 1280)) -> CameraInfo:
    m = CameraInfo()
    m.height, m.width = hw
    m.k = [float(v) for v in np.asarray(K, dtype=np.float64).reshape(-1)]
    m.p = [float(v) for v in np.asarray(P, dtype=np.float64).reshape(-1)]
    m.d = [float(v) for v in d]
    m.distortion_model = "plumb_bob" if len(d) else ""
    if r is not None:
        m.r = [float(v) for v in np.asarray(r).reshape(-1)]
    return m


K_RAW = np.array([[910.0, 0, 652.0], [0, 905.0, 361.0], [0, 0, 1]])
P_RECT = np.array([[880.0, 0, 640.5, 0.0], [0, 880.0, 355.5, 0.0], [0, 0, 1, 0.0]])


def test_rectified_images_use_P_and_R() -> None:
    """K != P: a rectified stream (d all zero, or declared rectified) is projected with P[:3, :3]
    in the frame rotated by r, as the CameraInfo documentation says; raw images with k."""
    c, s = np.cos(0.01), np.sin(0.01)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    m = conv.camera_info_model(_rect_info(K_RAW, P_RECT, d=[0.0] * 5, r=R))
    assert m.rectified
    np.testing.assert_array_equal(m.K, P_RECT[:, :3])
    np.testing.assert_allclose(m.R, R)
    np.testing.assert_array_equal(conv.camera_info_to_K(_rect_info(K_RAW, P_RECT)), P_RECT[:, :3])
    # raw undistorted images: k, no rotation
    raw = conv.camera_info_model(_rect_info(K_RAW, P_RECT, r=R), rectified=False)
    np.testing.assert_array_equal(raw.K, K_RAW)
    np.testing.assert_array_equal(raw.R, np.eye(3))
    # p unset: k serves the rectified image; r unset (all zero): identity
    m = conv.camera_info_model(_rect_info(K_RAW, np.zeros((3, 4))))
    np.testing.assert_array_equal(m.K, K_RAW)
    np.testing.assert_array_equal(m.R, np.eye(3))
    # a point seen through (K, R) lands where the rectified image shows it
    X = np.array([1.0, -0.5, 12.0])
    m = conv.camera_info_model(_rect_info(K_RAW, P_RECT, r=R))
    uvw = P_RECT @ np.append(R @ X, 1.0)
    np.testing.assert_allclose((m.K @ m.R @ X)[:2] / (m.K @ m.R @ X)[2], uvw[:2] / uvw[2])


def test_distorted_images_need_rectification() -> None:
    d = [-0.37, 0.2, 0.001, -0.0005, -0.07]
    with pytest.raises(ValueError, match=r"CameraInfo \(/cam/camera_info\): the images are distorted.*image_proc"):
        conv.camera_info_to_K(_rect_info(K_RAW, P_RECT, d=d), topic="/cam/camera_info")
    with pytest.raises(ValueError, match="rectify"):
        conv.camera_info_to_K(_rect_info(K_RAW, P_RECT, d=d), rectified=False)
    # KITTI sync drives: raw d beside rectified images, declared rectified -> P
    np.testing.assert_array_equal(conv.camera_info_to_K(_rect_info(K_RAW, P_RECT, d=d), rectified=True),
                                  P_RECT[:, :3])
    with pytest.raises(ValueError, match="rotation"):
        conv.camera_info_model(_rect_info(K_RAW, P_RECT, r=np.diag([1.0, 2.0, 1.0])))


@pytest.mark.parametrize("entry, value, match", [
    ((0, 0), 1e308, "focal"), ((0, 0), 1e-300, "focal"), ((0, 2), -1e6, "principal"),
    ((1, 1), np.inf, "non-finite"), ((1, 2), np.nan, "non-finite"),
])
def test_implausible_intrinsics_raise(entry, value, match) -> None:
    K = K_RAW.copy()
    K[entry] = value
    P = np.concatenate([K, np.zeros((3, 1))], axis=1)
    with pytest.raises(ValueError, match=match):
        conv.camera_info_to_K(_rect_info(K, P))
    with pytest.raises(ValueError, match=match):
        conv.camera_info_to_K(_rect_info(K, P), rectified=False)


# --------------------------------------------------------------------------- malformed clouds and images
def _xyz_cloud(fields, point_step=12, n=4, data=None, big=False) -> PointCloud2:
    m = PointCloud2()
    m.height, m.width, m.point_step, m.row_step, m.is_bigendian = 1, n, point_step, point_step * n, big
    m.fields = [PointField(name=nm, offset=o, datatype=t, count=c) for nm, o, t, c in fields]
    m.data = bytes(point_step * n) if data is None else data
    return m


F4, F8 = PointField.FLOAT32, PointField.FLOAT64


@pytest.mark.parametrize("fields, step, match", [
    ([("x", 0, F8, 1), ("y", 4, F8, 1), ("z", 12, F8, 1)], 20, "overlap"),  # float64 x overlaps y
    ([("x", 0, F4, 1), ("y", 4, F4, 1), ("z", 8, F4, 1), ("y", 8, F4, 1)], 12, "repeated"),
    ([("x", 0, F4, 0), ("y", 4, F4, 1), ("z", 8, F4, 1)], 12, "count 0"),
    ([("x", 0, F4, 1), ("y", 0, F4, 1), ("z", 8, F4, 1)], 12, "overlap"),
])
def test_overlapping_repeated_or_empty_fields_raise(fields, step, match) -> None:
    with pytest.raises(ValueError, match=match):
        conv.pointcloud2_to_xyz(_xyz_cloud(fields, step))


def test_cloud_byte_order_and_garbage() -> None:
    """Big-endian data is decoded (well defined); little-endian data flagged big-endian decodes
    to garbage magnitudes that are dropped, never cast with overflow; too much data is an error."""
    fields = [("x", 0, F4, 1), ("y", 4, F4, 1), ("z", 8, F4, 1)]
    pts = np.array([[1.5, -2.0, 0.25], [10.0, 3.0, -1.0]], np.float32)
    big = _xyz_cloud(fields, 12, 2, pts.astype(">f4").tobytes(), big=True)
    np.testing.assert_array_equal(conv.pointcloud2_to_xyz(big), pts)
    wrong = _xyz_cloud(fields, 12, 2, pts.astype("<f4").tobytes(), big=True)
    with np.errstate(all="raise"):
        got = conv.pointcloud2_to_xyz(wrong)
    assert np.all(np.abs(got) <= conv.MAX_POINT_COORDINATE)
    far = np.array([[1e30, 0, 0], [1, 2, 3]], np.float64)
    f8 = _xyz_cloud([("x", 0, F8, 1), ("y", 8, F8, 1), ("z", 16, F8, 1)], 24, 2, far.astype("<f8").tobytes())
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(conv.pointcloud2_to_xyz(f8), [[1, 2, 3]])
    with pytest.raises(ValueError, match="more than row_step"):
        conv.pointcloud2_to_xyz(_xyz_cloud(fields, 12, 2, bytes(25)))


def test_image_data_longer_than_height_times_step_raises() -> None:
    msg = conv.array_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    msg.data = bytes(4 * 18 + 1)
    with pytest.raises(ValueError, match="more than height"):
        conv.image_to_rgb(msg)


# --------------------------------------------------------------------------- fuzz
# Every decoder, on thousands of random (mostly malformed) messages, returns a valid array or
# raises ValueError: never another exception, never a NumPy warning (raised by errstate / filter).
# Messages are plain attribute objects (the decoders read attributes only), so thousands of cases
# run in seconds; a seeded generator makes every failure reproducible (the case index is printed).
_ENCODINGS = [*conv.IMAGE_ENCODINGS, "jpeg", ""]


def _some_int(rng, typical: int) -> int:
    r = rng.random()
    if r < 0.6:
        return typical
    if r < 0.8:
        return int(rng.integers(-2, 3)) + typical
    return int(rng.choice([0, -1, 1, 2, 3, 7, 2**31, 10**12]))


def _data(rng, need: int) -> bytes:
    n = max(0, min(_some_int(rng, need), 1 << 16))
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


def _fuzz_image(rng):
    enc = str(rng.choice(_ENCODINGS))
    dtype, ch = conv.IMAGE_ENCODINGS.get(enc, (np.dtype(np.uint8), 3))
    h, w = _some_int(rng, int(rng.integers(1, 9))), _some_int(rng, int(rng.integers(1, 9)))
    step = _some_int(rng, max(w, 0) * ch * dtype.itemsize + int(rng.integers(0, 3)))
    return _NS(encoding=enc, height=h, width=w, step=step, is_bigendian=int(rng.integers(0, 2)),
               data=_data(rng, max(step, 0) * max(h, 0)))


def _special(rng, typical: float, p: float = 0.3) -> float:
    if rng.random() >= p:
        return typical
    return float(rng.choice([0.0, -1.0, 1e308, -1e308, 1e-300, np.nan, np.inf, -np.inf, 1e6, -1e6]))


def _fuzz_camera_info(rng):
    h, w = _some_int(rng, 480), _some_int(rng, 640)
    f = float(rng.uniform(50, 3000))
    k = [_special(rng, v, 0.04) for v in (f, 0.0, w / 2, 0.0, f, h / 2, 0.0, 0.0, 1.0)]
    if rng.random() < 0.1:
        k = k[: int(rng.integers(0, 9))]
    p = [_special(rng, v, 0.04) for v in (f, 0.0, w / 2, 0.0, 0.0, f, h / 2, 0.0, 0.0, 0.0, 1.0, 0.0)]
    d = [] if rng.random() < 0.3 else [_special(rng, 0.0, 0.05) for _ in range(5)]
    r = [_special(rng, v, 0.04) for v in np.eye(3).reshape(-1)] if rng.random() < 0.7 else [0.0] * 9
    return _NS(height=h, width=w, k=k, p=p, d=d, r=r, distortion_model="plumb_bob")


def _fuzz_cloud(rng):
    names = list(rng.choice(["x", "y", "z", "intensity", "x"], size=int(rng.integers(2, 6)), replace=True))
    if rng.random() < 0.6:
        names = ["x", "y", "z", *names[3:]]
    fields, off = [], 0
    for n in names:
        dt = int(rng.choice([7, 8, 7, 8, 2, 5, 0, 9]))
        size = 8 if dt == 8 else 4
        fields.append(_NS(name=n, offset=_some_int(rng, off), datatype=dt, count=_some_int(rng, 1)))
        off += size
    step = _some_int(rng, off)
    h, w = _some_int(rng, int(rng.integers(1, 3))), _some_int(rng, int(rng.integers(0, 9)))
    row = _some_int(rng, max(w, 0) * max(step, 0))
    return _NS(height=h, width=w, point_step=step, row_step=row, fields=fields,
               is_bigendian=bool(rng.integers(0, 2)), data=_data(rng, max(row, 0) * max(h, 0)))


def _fuzz_pose(rng):
    v = [_special(rng, float(x)) for x in rng.normal(0, 1, 7)]
    return _NS(position=_NS(x=v[0], y=v[1], z=v[2]), orientation=_NS(x=v[3], y=v[4], z=v[5], w=v[6]))


def _fuzz_grid(rng):
    dims = [_some_int(rng, int(rng.integers(1, 5))) for _ in range(3)]
    n = int(np.prod([max(d, 0) for d in dims]))
    return _NS(size_x=dims[0], size_y=dims[1], size_z=dims[2], voxel_size=_special(rng, 0.2),
               labels=_data(rng, n), confidence=_data(rng, n) if rng.random() < 0.5 else b"",
               origin=_fuzz_pose(rng))


def _check_image(msg, out):
    assert isinstance(out, np.ndarray) and out.shape[:2] == (msg.height, msg.width)


def _check_rgb(msg, out):
    assert out.dtype == np.uint8 and out.shape == (msg.height, msg.width, 3)


def _check_depth(msg, out):
    assert out.dtype == np.float32 and out.shape == (msg.height, msg.width)
    assert not np.any(out <= 0) and not np.any(np.isinf(out))


def _check_info(msg, out):
    assert np.all(np.isfinite(out.K)) and out.K[0, 0] > 0 and out.K[1, 1] > 0
    np.testing.assert_allclose(out.R @ out.R.T, np.eye(3), atol=1e-4)


def _check_cloud(msg, out):
    assert out.dtype == np.float32 and out.ndim == 2 and out.shape[1] == 3
    assert np.all(np.abs(out) <= conv.MAX_POINT_COORDINATE)


def _check_pose(msg, out):
    assert out.shape == (4, 4) and np.all(np.isfinite(out))


def _check_grid(msg, out):
    assert out[0].shape == (msg.size_x, msg.size_y, msg.size_z)


FUZZ = {
    "image_to_array": (_fuzz_image, conv.image_to_array, _check_image),
    "image_to_rgb": (_fuzz_image, conv.image_to_rgb, _check_rgb),
    "depth_image_to_metres": (_fuzz_image, conv.depth_image_to_metres, _check_depth),
    "camera_info_model": (_fuzz_camera_info, conv.camera_info_model, _check_info),
    "camera_info_model rectified": (_fuzz_camera_info, lambda m: conv.camera_info_model(m, True), _check_info),
    "pointcloud2_to_xyz": (_fuzz_cloud, conv.pointcloud2_to_xyz, _check_cloud),
    "pose_to_matrix": (_fuzz_pose, conv.pose_to_matrix, _check_pose),
    "voxel_grid_to_arrays": (_fuzz_grid, conv.voxel_grid_to_arrays, _check_grid),
}


@pytest.mark.parametrize("name", list(FUZZ))
def test_fuzz_decoders_return_valid_arrays_or_raise_value_error(name: str) -> None:
    import warnings

    make, decode, check = FUZZ[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    outcomes = {"ok": 0, "ValueError": 0}
    for i in range(1500):
        msg = make(rng)
        # every NumPy floating-point warning raises (underflow to 0 is silent by NumPy's default)
        with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
            warnings.simplefilter("error")
            try:
                out = decode(msg)
            except ValueError:
                outcomes["ValueError"] += 1
                continue
            except Exception as e:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{name} case {i}: {type(e).__name__}: {e} on {msg}")
        check(msg, out)
        outcomes["ok"] += 1
    assert outcomes["ok"] > 50 and outcomes["ValueError"] > 50, outcomes  # both paths exercised
