# ROS message -> NumPy decoders of sgn_ros: camera images (all common raw encodings, padded
# rows, either byte order), CameraInfo intrinsics and stereo baseline, depth images, point
# clouds, poses, stamps and the node's own SemanticVoxelGrid (for its subscribers and tests).
# The first step of the one data path: messages -> decoded frame -> predictor -> prediction ->
# encoders (encoders.py) -> publishers.
#
# Pure, vectorised functions: no rclpy import, no node state. Inputs are message objects read by
# attribute (rclpy messages or rosbags' dataclasses alike). `array_to_image`, the inverse of
# `image_to_array`, lives here with the encoding table it shares (players, tests, benchmarks).
# The geometry (quaternions, baselines) is sgn_ros.geometry's.
"""Vectorised decoders of ROS 2 messages into the arrays of sgn_ros."""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from sgn_ros.geometry import check_intrinsics, make_transform, quaternion_to_matrix, stereo_baseline_from_P
from sgn_ros.grid import VoxelGrid

__all__ = [
    "IMAGE_ENCODINGS",
    "image_to_array",
    "image_to_rgb",
    "array_to_image",
    "CameraModel",
    "camera_info_model",
    "camera_info_to_K",
    "camera_info_baseline",
    "depth_image_to_metres",
    "pointcloud2_to_xyz",
    "pose_to_matrix",
    "voxel_grid_to_arrays",
    "stamp_to_ns",
    "byte_array",
    "PF_TO_DTYPE",
]

#: ROS image encoding -> (NumPy scalar type, channels). Bayer and YUV 4:2:2 are decoded with OpenCV.
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "yuv422": (np.dtype(np.uint8), 2),  # UYVY
    "uyvy": (np.dtype(np.uint8), 2),
    "yuv422_yuy2": (np.dtype(np.uint8), 2),  # YUYV
    "yuyv": (np.dtype(np.uint8), 2),
    "bayer_rggb8": (np.dtype(np.uint8), 1),
    "bayer_bggr8": (np.dtype(np.uint8), 1),
    "bayer_gbrg8": (np.dtype(np.uint8), 1),
    "bayer_grbg8": (np.dtype(np.uint8), 1),
}

# OpenCV names a Bayer pattern by the 2x2 block starting at pixel (1, 1) (as cv_bridge maps it).
_BAYER_TO_CV = {"bayer_rggb8": "BG", "bayer_bggr8": "RG", "bayer_gbrg8": "GR", "bayer_grbg8": "GB"}
_YUV_TO_CV = {"yuv422": "UYVY", "uyvy": "UYVY", "yuv422_yuy2": "YUY2", "yuyv": "YUY2"}

# sensor_msgs/PointField datatypes
PF_TO_DTYPE = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}

_SYSTEM_BIG_ENDIAN = sys.byteorder == "big"


# --------------------------------------------------------------------------- small helpers
def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def byte_array(a: np.ndarray) -> array.array:
    """The bytes of a C-contiguous array as array('B'): the fast path of rclpy's uint8[] setters."""
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(a)).cast("B"))
    return out


def _buffer(data: Any, what: str) -> np.ndarray:
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list of ints (rare: hand-built messages)
        return np.asarray(data, dtype=np.uint8)
    except Exception as e:  # pragma: no cover - defensive
        raise ValueError(f"{what}: unreadable data field ({e})") from e


# --------------------------------------------------------------------------- images in
def image_to_array(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> its pixels, (H, W) or (H, W, C), in the encoding's own type.

    Honours `step` (rows may be padded beyond width * bytes per pixel) and `is_bigendian`
    (multi-byte pixels are returned in native order). Unpadded native-order pixels come back as
    a view of the message's buffer (no copy; treat it as read-only), anything else as a copy.

    Raises:
        ValueError: unsupported encoding, zero size, step too small, or too little / too much data.
    """
    enc = str(msg.encoding)
    if enc not in IMAGE_ENCODINGS:
        raise ValueError(f"Image: unsupported encoding {enc!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    dtype, ch = IMAGE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ValueError(f"Image ({enc}): empty image {w}x{h}")
    row = w * ch * dtype.itemsize
    if step < row:
        raise ValueError(f"Image ({enc}, {w}x{h}): step {step} < width * bytes per pixel = {row}")
    buf = _buffer(msg.data, f"Image ({enc})")
    need = step * (h - 1) + row
    if buf.size < need:
        raise ValueError(f"Image ({enc}, {w}x{h}, step {step}): {buf.size} bytes of data, need {need}")
    if buf.size > step * h:
        raise ValueError(f"Image ({enc}, {w}x{h}, step {step}): {buf.size} bytes of data, more than "
                         f"height * step = {step * h}")
    if buf.size >= step * h:
        rows = buf[: step * h].reshape(h, step)[:, :row]
    else:  # last row without its padding
        rows = np.lib.stride_tricks.as_strided(buf, shape=(h, row), strides=(step, 1))
    px = np.ascontiguousarray(rows).view(dtype)
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != _SYSTEM_BIG_ENDIAN:
        px = px.byteswap()
    return px.reshape(h, w, ch) if ch > 1 else px.reshape(h, w)


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> RGB (H, W, 3) uint8, the network's input.

    Colour encodings are reordered / demosaiced (Bayer, OpenCV edge-aware bilinear) / converted
    from YUV 4:2:2; grey images are replicated to three channels (mono16 scaled by 255 / 65535).

    Raises:
        ValueError: as `image_to_array`, and for depth encodings (32FC1) that are no camera image.
    """
    import cv2

    enc = str(msg.encoding)
    px = image_to_array(msg)
    if enc in ("rgb8", "8UC3"):
        return px
    if enc == "bgr8":
        return np.ascontiguousarray(px[..., ::-1])
    if enc == "rgba8":
        return np.ascontiguousarray(px[..., :3])
    if enc == "bgra8":
        return np.ascontiguousarray(px[..., 2::-1])
    if enc in ("mono8", "8UC1"):
        return np.repeat(px[..., None], 3, axis=2)
    if enc in ("mono16", "16UC1"):  # 0..65535 -> 0..255 rounded, as cv_bridge's convertTo
        return np.repeat(np.rint(px / 257.0).astype(np.uint8)[..., None], 3, axis=2)
    if enc in _BAYER_TO_CV:
        return cv2.cvtColor(px, getattr(cv2, f"COLOR_Bayer{_BAYER_TO_CV[enc]}2RGB"))
    if enc in _YUV_TO_CV:
        if px.shape[1] % 2:
            raise ValueError(f"Image ({enc}): YUV 4:2:2 needs an even width, got {px.shape[1]}")
        return cv2.cvtColor(px, getattr(cv2, f"COLOR_YUV2RGB_{_YUV_TO_CV[enc]}"))
    raise ValueError(f"Image: encoding {enc!r} is not a colour or grey camera image")


def array_to_image(
    pixels: np.ndarray,
    encoding: str,
    header: Any = None,
    step: int | None = None,
    is_bigendian: bool = False,
) -> Any:
    """(H, W[, C]) array -> sensor_msgs/Image with `encoding` (optionally padded rows / big-endian).

    The array's dtype and channel count must match the encoding (uint8 for rgb8, float32 for
    32FC1, ...). Used by players, tests and benchmarks.
    """
    from sensor_msgs.msg import Image

    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"array_to_image: unsupported encoding {encoding!r}")
    dtype, ch = IMAGE_ENCODINGS[encoding]
    px = np.asarray(pixels)
    if px.ndim == 2:
        px = px[..., None]
    if px.ndim != 3 or px.shape[2] != ch or px.dtype != dtype:
        raise ValueError(
            f"array_to_image: {encoding} needs (H, W{', ' + str(ch) if ch > 1 else ''}) {dtype}, "
            f"got {pixels.shape} {pixels.dtype}"
        )
    h, w = px.shape[:2]
    row = w * ch * dtype.itemsize
    step = row if step is None else int(step)
    if step < row:
        raise ValueError(f"array_to_image: step {step} < {row}")
    if dtype.itemsize > 1 and is_bigendian != _SYSTEM_BIG_ENDIAN:
        px = px.byteswap()
    raw = np.zeros((h, step), dtype=np.uint8)
    raw[:, :row] = np.ascontiguousarray(px).view(np.uint8).reshape(h, row)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = int(bool(is_bigendian))
    msg.step = step
    msg.data = byte_array(raw)
    return msg


@dataclass(frozen=True)
class CameraModel:
    """The pinhole model of the images a CameraInfo describes, as the network needs it.

    Attributes:
        K: (3, 3) intrinsics of the images the node receives (P[:3, :3] for rectified images,
            CameraInfo.k for undistorted raw ones).
        R: (3, 3) rotation from the camera's (tf) optical frame into the frame K projects from:
            CameraInfo.r for rectified images (identity when unset), else identity. A point X in
            the camera frame is seen at K @ R @ X; compose lidar->camera as [R 0; 0 1] @ T.
        rectified: whether K / R are the rectified (P, R) ones.
        size: (H, W) of the calibrated image.
    """

    K: np.ndarray
    R: np.ndarray
    rectified: bool
    size: tuple[int, int]


def _matrix(values: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    try:
        m = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: not numeric ({e})") from None
    if m.size != shape[0] * shape[1]:
        raise ValueError(f"{what}: expected {shape[0] * shape[1]} values, got {m.size}")
    return m.reshape(shape)


def camera_info_model(msg: Any, rectified: bool | None = None, topic: str = "camera_info") -> CameraModel:
    """sensor_msgs/CameraInfo -> the `CameraModel` of the images it describes, validated.

    As the CameraInfo documentation says, raw images (image_raw) are projected by k with the
    distortion d, rectified ones (image_rect, stereo_image_proc, KITTI's sync drives) by
    P[:3, :3] in the frame rotated by r. The network needs undistorted pinhole images, so:

    - ``rectified=True`` (the image topic is rectified): K = P[:3, :3] (k when p is unset), R = r.
    - ``rectified=False`` (raw images): d must be all zero, K = k, R = identity.
    - ``rectified=None`` (auto): d all zero (or empty) means the images are undistorted and
      treated as rectified (P when set, as above); a non-zero d is an error, because raw
      distorted images would be projected wrongly: rectify them (image_proc's rectify node
      publishes image_rect) or declare the stream rectified (KITTI sync bags carry the raw d
      beside rectified images).

    Raises:
        ValueError: naming `topic`: uncalibrated (all-zero) or non-finite k / p, intrinsics
            implausible for width x height (`sgn_ros.geometry.check_intrinsics`), a non-rotation
            r, or distorted images not declared rectified.
    """
    h, w = int(msg.height), int(msg.width)
    if w <= 0 or h <= 0:
        raise ValueError(f"CameraInfo ({topic}): zero image size {msg.width}x{msg.height}")
    k = _matrix(msg.k, (3, 3), f"CameraInfo ({topic}): k")
    if not np.any(k):
        raise ValueError(f"CameraInfo ({topic}): k is all zeros (uncalibrated camera)")
    d = np.asarray(msg.d, dtype=np.float64).reshape(-1) if len(msg.d) else np.zeros(0)
    if not np.all(np.isfinite(d)):
        raise ValueError(f"CameraInfo ({topic}): non-finite distortion d")
    distorted = bool(np.any(d != 0))
    if rectified is None:
        if distorted:
            raise ValueError(
                f"CameraInfo ({topic}): the images are distorted ({msg.distortion_model or 'model unset'}, "
                f"d=[{', '.join(f'{v:.4g}' for v in d)}]); rectify them "
                "(image_proc's rectify node publishes image_rect) "
                "or set the stream as rectified if it already is (KITTI sync drives)"
            )
        rectified = True
    elif not rectified and distorted:
        raise ValueError(
            f"CameraInfo ({topic}): raw images with distortion d=[{', '.join(f'{v:.4g}' for v in d)}] cannot be used; "
            "rectify them (image_proc's rectify node publishes image_rect)"
        )
    R = np.eye(3)
    K = k
    if rectified:
        P = _matrix(msg.p, (3, 4), f"CameraInfo ({topic}): p")
        if np.any(P[:, :3]):
            K = P[:, :3]
        r = _matrix(msg.r, (3, 3), f"CameraInfo ({topic}): r")
        if np.any(r):  # all zero = unset
            if (not np.all(np.abs(r) <= 1.0 + 1e-6)  # also rejects NaN / inf, and keeps r @ r.T finite
                    or not np.allclose(r @ r.T, np.eye(3), atol=1e-5) or np.linalg.det(r) < 0):
                raise ValueError(f"CameraInfo ({topic}): r is not a rotation matrix: {r.tolist()}")
            R = r
    K = check_intrinsics(K, f"CameraInfo ({topic}) {'P' if K is not k else 'k'}", (h, w))
    return CameraModel(K=K, R=R, rectified=bool(rectified), size=(h, w))


def camera_info_to_K(msg: Any, rectified: bool | None = None, topic: str = "camera_info") -> np.ndarray:
    """sensor_msgs/CameraInfo -> K (3, 3) float64 of the images it describes (`camera_info_model`).

    Raises:
        ValueError: as `camera_info_model`.
    """
    return camera_info_model(msg, rectified, topic).K


def camera_info_baseline(left: Any, right: Any) -> float:
    """Stereo baseline (metres, > 0) from the projection matrices of a rectified pair.

    ROS stores the right camera's P[0, 3] = -fx * B (and the left's usually 0).
    """
    return stereo_baseline_from_P(left.p, right.p, "CameraInfo (stereo)")


def depth_image_to_metres(msg: Any) -> np.ndarray:
    """Depth image (32FC1 metres, 16UC1 / mono16 millimetres) -> (H, W) float32 metres.

    Invalid pixels (NaN, +-inf, 0, negative) become NaN, which `depth_to_points` drops.
    """
    enc = str(msg.encoding)
    if enc not in ("32FC1", "16UC1", "mono16"):
        raise ValueError(f"depth Image: expected encoding 32FC1 (m) or 16UC1 (mm), got {enc!r}")
    d = image_to_array(msg)
    d = d.astype(np.float32) * np.float32(0.001) if d.dtype == np.uint16 else d.astype(np.float32, copy=False)
    return np.where(np.isfinite(d) & (d > 0), d, np.float32(np.nan)).astype(np.float32, copy=False)


#: |coordinate| in metres above which a point is dropped as garbage (a wrong is_bigendian flag or
#: uninitialised memory decode to values like 1e30; no range sensor measures 100 km), which also
#: keeps the float64 -> float32 cast free of overflow.
MAX_POINT_COORDINATE = 1e5


def pointcloud2_to_xyz(msg: Any) -> np.ndarray:
    """sensor_msgs/PointCloud2 -> (N, 3) float32 points of its x, y, z fields.

    Any point_step / field offsets, FLOAT32 or FLOAT64 coordinates, row padding, either byte order
    (as `is_bigendian` declares). Non-finite points and points beyond `MAX_POINT_COORDINATE` are
    dropped. A field with count > 1 is read at its first element.

    Raises:
        ValueError: missing, repeated or overlapping x / y / z fields, count 0, non-float
            coordinates, fields beyond point_step, steps too small, or data shorter / longer
            than row_step * height.
    """
    h, w, step, row_step = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    names_all = [str(f.name) for f in msg.fields]
    repeated = sorted({n for n in names_all if names_all.count(n) > 1})
    if repeated:
        raise ValueError(f"PointCloud2: repeated field(s) {repeated}")
    fields = {str(f.name): f for f in msg.fields}
    missing = [n for n in "xyz" if n not in fields]
    if missing:
        raise ValueError(f"PointCloud2: missing field(s) {missing}; has {sorted(fields)}")
    if h < 0 or w < 0:
        raise ValueError(f"PointCloud2: negative size {w}x{h}")
    if h * w == 0:
        return np.zeros((0, 3), np.float32)
    if step <= 0 or row_step < w * step:
        raise ValueError(f"PointCloud2: point_step {step} / row_step {row_step} too small for width {w}")
    names, formats, offsets, spans = [], [], [], []
    order = ">" if msg.is_bigendian else "<"
    for n in "xyz":
        f = fields[n]
        if int(f.datatype) not in (7, 8):
            raise ValueError(f"PointCloud2: field {n} must be FLOAT32 or FLOAT64, got datatype {f.datatype}")
        if int(f.count) < 1:
            raise ValueError(f"PointCloud2: field {n} has count {f.count} (no value)")
        size = 4 if int(f.datatype) == 7 else 8
        off = int(f.offset)
        if off < 0 or off + size > step:
            raise ValueError(f"PointCloud2: field {n} (offset {f.offset}) beyond point_step {step}")
        for m, (lo, hi) in zip(names, spans):
            if off < hi and lo < off + size:
                raise ValueError(f"PointCloud2: fields {m} (bytes {lo}..{hi - 1}) and {n} "
                                 f"(bytes {off}..{off + size - 1}) overlap")
        names.append(n)
        formats.append(order + PF_TO_DTYPE[int(f.datatype)])
        offsets.append(off)
        spans.append((off, off + size))
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    buf = _buffer(msg.data, "PointCloud2")
    need = row_step * (h - 1) + w * step
    if buf.size < need:
        raise ValueError(f"PointCloud2: {buf.size} bytes of data, need {need} ({w}x{h} points)")
    if buf.size > row_step * h:
        raise ValueError(f"PointCloud2: {buf.size} bytes of data, more than row_step * height = {row_step * h}")
    if row_step == w * step:  # no row padding (LiDAR drivers, KITTI bags): the buffer as it is
        pts = buf[:need].view(dt)
    else:
        rows = np.lib.stride_tricks.as_strided(buf, shape=(h, w * step), strides=(row_step, 1))
        pts = np.ascontiguousarray(rows).view(dt).reshape(-1)
    # column by column (a reduction over an axis of 3 costs more than the three comparisons), in
    # the fields' own precision, then cast once into the (N, 3) float32 result
    cols = [pts["x"], pts["y"], pts["z"]]
    with np.errstate(invalid="ignore"):
        keep = np.abs(cols[0]) <= MAX_POINT_COORDINATE  # False for NaN / inf too
        keep &= np.abs(cols[1]) <= MAX_POINT_COORDINATE
        keep &= np.abs(cols[2]) <= MAX_POINT_COORDINATE
    index = None if keep.all() else np.flatnonzero(keep)
    xyz = np.empty((w * h if index is None else len(index), 3), np.float32)
    for a, col in enumerate(cols):
        xyz[:, a] = col if index is None else col[index]
    return xyz


# --------------------------------------------------------------------------- poses and outputs
def pose_to_matrix(pose: Any) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4 float64 (the quaternion is normalised; a zero one is an error)."""
    q = (pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w)
    try:
        R = quaternion_to_matrix(q)
    except ValueError as e:
        raise ValueError(f"Pose: {e}") from None
    T = make_transform(R, (pose.position.x, pose.position.y, pose.position.z))
    if not np.all(np.isfinite(T)):
        raise ValueError("Pose: non-finite position")
    return T


def voxel_grid_to_arrays(msg: Any) -> tuple[np.ndarray, np.ndarray | None, VoxelGrid, np.ndarray]:
    """sgn_ros/SemanticVoxelGrid -> (labels, confidence, grid, corner).

    Returns:
        labels (X, Y, Z) uint8; confidence (X, Y, Z) float32 in [0, 1] or None; a VoxelGrid of the
        message's voxel size and dims with its origin at (0, 0, 0); `corner` (4, 4), the pose of the
        grid's corner in header.frame_id, so that a voxel centre c of `grid` lies at corner @ [c, 1].
    """
    dims = (int(msg.size_x), int(msg.size_y), int(msg.size_z))
    n = dims[0] * dims[1] * dims[2]
    lab = _buffer(msg.labels, "SemanticVoxelGrid.labels")
    if lab.size != n:
        raise ValueError(f"SemanticVoxelGrid: {lab.size} labels for dims {dims}")
    conf = None
    if len(msg.confidence):
        c = _buffer(msg.confidence, "SemanticVoxelGrid.confidence")
        if c.size != n:
            raise ValueError(f"SemanticVoxelGrid: {c.size} confidence values for dims {dims}")
        conf = (c.astype(np.float32) / 255.0).reshape(dims)
    corner = pose_to_matrix(msg.origin)  # grid corner in the header frame
    grid = VoxelGrid(origin=(0.0, 0.0, 0.0), voxel_size=float(msg.voxel_size), dims=dims, scales=(1,))
    return lab.reshape(dims).copy(), conf, grid, corner
