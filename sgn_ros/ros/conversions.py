# ROS message <-> NumPy conversions of the SGN node: camera images (all common raw encodings,
# padded rows, either byte order), CameraInfo intrinsics, depth images, point clouds in; the
# semantic voxel prediction out as PointCloud2, MarkerArray and sgn_ros/SemanticVoxelGrid.
#
# Pure, vectorised functions: no rclpy import, no node state. Inputs are message objects read by
# attribute (rclpy messages or rosbags' dataclasses alike); outputs are built from the ROS message
# packages (sensor_msgs, visualization_msgs, ...), imported when first needed. Per-voxel work is
# NumPy on whole arrays; the one per-point Python loop left is the construction of
# geometry_msgs/Point objects for markers, which the Marker message format itself demands.
"""Vectorised conversions between ROS 2 messages and the arrays of sgn_ros."""

from __future__ import annotations

import array
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sgn_ros.grid import VoxelGrid
from sgn_ros.labels import IGNORE_LABEL
from sgn_ros.model.preprocessing import check_intrinsics, check_transform, crop_or_pad, resize_image

__all__ = [
    "IMAGE_ENCODINGS",
    "image_to_array",
    "image_to_rgb",
    "array_to_image",
    "camera_info_to_K",
    "camera_info_baseline",
    "depth_image_to_metres",
    "pointcloud2_to_xyz",
    "fit_image_to_network",
    "xyz_rpy_to_matrix",
    "rotation_to_quaternion",
    "matrix_to_pose",
    "pose_to_matrix",
    "select_voxels",
    "pack_rgb",
    "labels_to_pointcloud2",
    "MarkerPointCache",
    "labels_to_marker_array",
    "labels_to_voxel_grid",
    "voxel_grid_to_arrays",
    "stamp_to_ns",
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
_PF_TO_DTYPE = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_PF_UINT32, _PF_FLOAT32 = 6, 7

_SYSTEM_BIG_ENDIAN = sys.byteorder == "big"


# --------------------------------------------------------------------------- small helpers
def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _byte_array(a: np.ndarray) -> array.array:
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
        ValueError: unsupported encoding, zero size, step too small, or too little data.
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
    msg.data = _byte_array(raw)
    return msg


def camera_info_to_K(msg: Any) -> np.ndarray:
    """sensor_msgs/CameraInfo -> K (3, 3) float64, validated.

    Raises:
        ValueError: uncalibrated (all-zero) or non-finite K, non-positive focal lengths, a bad
            last row, or zero width / height.
    """
    k = np.asarray(msg.k, dtype=np.float64)
    if k.size != 9:
        raise ValueError(f"CameraInfo: k must have 9 values, got {k.size}")
    if int(msg.width) <= 0 or int(msg.height) <= 0:
        raise ValueError(f"CameraInfo: zero image size {msg.width}x{msg.height}")
    if not np.any(k):
        raise ValueError("CameraInfo: k is all zeros (uncalibrated camera)")
    return check_intrinsics(k.reshape(3, 3), "CameraInfo.k")


def camera_info_baseline(left: Any, right: Any) -> float:
    """Stereo baseline (metres, > 0) from the projection matrices of a rectified pair.

    ROS stores the right camera's P[0, 3] = -fx * B (and the left's usually 0).
    """
    pl = np.asarray(left.p, dtype=np.float64).reshape(3, 4)
    pr = np.asarray(right.p, dtype=np.float64).reshape(3, 4)
    if not (np.all(np.isfinite(pl)) and np.all(np.isfinite(pr))) or pl[0, 0] <= 0 or pr[0, 0] <= 0:
        raise ValueError("CameraInfo (stereo): projection matrix p is not set (fx <= 0 or non-finite)")
    b = (pl[0, 3] / pl[0, 0]) - (pr[0, 3] / pr[0, 0])
    if not b > 0:
        raise ValueError(f"CameraInfo (stereo): baseline from p must be > 0 m, got {b:.4g} m")
    return float(b)


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


def pointcloud2_to_xyz(msg: Any) -> np.ndarray:
    """sensor_msgs/PointCloud2 -> (N, 3) float32 points of its x, y, z fields (non-finite dropped).

    Any point_step / field offsets, FLOAT32 or FLOAT64 coordinates, row padding, either byte order.
    """
    h, w, step, row_step = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    fields = {f.name: f for f in msg.fields}
    missing = [n for n in "xyz" if n not in fields]
    if missing:
        raise ValueError(f"PointCloud2: missing field(s) {missing}; has {sorted(fields)}")
    if h * w == 0:
        return np.zeros((0, 3), np.float32)
    if step <= 0 or row_step < w * step:
        raise ValueError(f"PointCloud2: point_step {step} / row_step {row_step} too small for width {w}")
    names, formats, offsets = [], [], []
    order = ">" if msg.is_bigendian else "<"
    for n in "xyz":
        f = fields[n]
        if int(f.datatype) not in (7, 8):
            raise ValueError(f"PointCloud2: field {n} must be FLOAT32 or FLOAT64, got datatype {f.datatype}")
        size = 4 if int(f.datatype) == 7 else 8
        if int(f.offset) + size > step:
            raise ValueError(f"PointCloud2: field {n} (offset {f.offset}) beyond point_step {step}")
        names.append(n)
        formats.append(order + _PF_TO_DTYPE[int(f.datatype)])
        offsets.append(int(f.offset))
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    buf = _buffer(msg.data, "PointCloud2")
    need = row_step * (h - 1) + w * step
    if buf.size < need:
        raise ValueError(f"PointCloud2: {buf.size} bytes of data, need {need} ({w}x{h} points)")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(h, w * step), strides=(row_step, 1))
    pts = np.ascontiguousarray(rows).view(dt).reshape(-1)
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float32)
    return xyz[np.all(np.isfinite(xyz), axis=1)]


def fit_image_to_network(
    image: np.ndarray, K: np.ndarray, size: Sequence[int], mode: str = "crop"
) -> tuple[np.ndarray, np.ndarray]:
    """Bring a camera image (H, W, 3) and its K to the network input size (H', W').

    mode ``crop``: keep the top-left (H', W') (zero-padded if smaller), K unchanged — the
    reference's handling of KITTI images. ``resize``: scale the whole image (bilinear) and K, for
    cameras whose resolution differs from the training data's.
    """
    if mode == "crop":
        return crop_or_pad(image, size), np.asarray(K, dtype=np.float64)
    if mode == "resize":
        if tuple(image.shape[:2]) == tuple(int(s) for s in size):
            return image, np.asarray(K, dtype=np.float64)
        out, K2 = resize_image(image, K, size)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8), K2
    raise ValueError(f"fit_image_to_network: mode must be 'crop' or 'resize', got {mode!r}")


# --------------------------------------------------------------------------- transforms
def xyz_rpy_to_matrix(values: Sequence[float]) -> np.ndarray:
    """(x, y, z, roll, pitch, yaw) (metres, radians, R = Rz(yaw) Ry(pitch) Rx(roll)) or 16 values
    (row-major 4x4) -> homogeneous 4x4 float64."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 16:
        T = v.reshape(4, 4)
    elif v.size == 6:
        cr, sr = math.cos(v[3]), math.sin(v[3])
        cp, sp = math.cos(v[4]), math.sin(v[4])
        cy, sy = math.cos(v[5]), math.sin(v[5])
        T = np.eye(4)
        T[:3, :3] = np.array(
            [
                [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                [-sp, cp * sr, cp * cr],
            ]
        )
        T[:3, 3] = v[:3]
    else:
        raise ValueError(f"transform: expected 6 values (x y z roll pitch yaw) or 16 (4x4), got {v.size}")
    return check_transform(T, "transform")


def rotation_to_quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix -> unit quaternion (x, y, z, w), numerically stable branch choice."""
    t = np.trace(R)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        w, x, y, z = 0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        w, x, y, z = (R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s
    elif R[1, 1] > R[2, 2]:
        s = math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        w, x, y, z = (R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s
    else:
        s = math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        w, x, y, z = (R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s
    n = math.sqrt(w * w + x * x + y * y + z * z)
    return x / n, y / n, z / n, w / n


_rotation_to_quaternion = rotation_to_quaternion  # earlier private name, still imported by kitti_sequence


def matrix_to_pose(T: np.ndarray) -> Any:
    """4x4 homogeneous transform -> geometry_msgs/Pose."""
    from geometry_msgs.msg import Pose

    T = np.asarray(T, dtype=np.float64)
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    qx, qy, qz, qw = rotation_to_quaternion(T[:3, :3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = qx, qy, qz, qw
    return p


def pose_to_matrix(pose: Any) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4 float64 (the quaternion is normalised; a zero one is an error)."""
    q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w], np.float64)
    n = float(np.linalg.norm(q))
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"Pose: invalid orientation quaternion {q.tolist()}")
    x, y, z, w = q / n
    T = np.eye(4)
    T[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    T[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    if not np.all(np.isfinite(T)):
        raise ValueError("Pose: non-finite position")
    return T


# --------------------------------------------------------------------------- prediction out
def _check_prediction(labels: np.ndarray, confidence: np.ndarray | None, grid: VoxelGrid) -> None:
    if tuple(labels.shape) != tuple(grid.dims):
        raise ValueError(f"labels: expected grid shape {grid.dims}, got {labels.shape}")
    if confidence is not None and confidence.shape != labels.shape:
        raise ValueError(f"confidence: expected shape {labels.shape}, got {confidence.shape}")


def select_voxels(
    labels: np.ndarray,
    grid: VoxelGrid,
    confidence: np.ndarray | None = None,
    threshold: float = 0.0,
    transform: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """The occupied voxels of a prediction: class not 0 (empty) and not 255, confidence >= threshold.

    Args:
        labels: (X, Y, Z) uint8 class ids; grid: its VoxelGrid; confidence: (X, Y, Z) in [0, 1].
        transform: 4x4 from grid coordinates to the output frame (None = identity).

    Returns:
        (centres (M, 3) float32 metres in the output frame, labels (M,) uint8, confidence (M,)
        float32 or None, indices (M, 3) int64), in C order of the grid.
    """
    labels = np.asarray(labels)
    _check_prediction(labels, confidence, grid)
    keep = (labels != 0) & (labels != IGNORE_LABEL)
    if confidence is not None and threshold > 0:
        keep &= confidence >= threshold
    ijk = np.argwhere(keep)
    centres = grid.index_to_center(ijk)
    if transform is not None:
        T = np.asarray(transform, dtype=np.float64)
        centres = centres @ T[:3, :3].T + T[:3, 3]
    lab = labels[keep].astype(np.uint8)
    conf = None if confidence is None else np.asarray(confidence[keep], dtype=np.float32)
    return centres.astype(np.float32), lab, conf, ijk


def pack_rgb(colors_rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) float32 carrying 0x00RRGGBB in its bits (PCL / RViz 'rgb')."""
    c = np.asarray(colors_rgb, dtype=np.uint32)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).astype(np.uint32).view(np.float32)


def _class_colors(colors_rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    colors = np.asarray(colors_rgb, dtype=np.uint8)
    if labels.size and int(labels.max()) >= len(colors):
        raise ValueError(f"labels: class id {int(labels.max())} has no colour ({len(colors)} classes)")
    return colors[labels]


def labels_to_pointcloud2(
    labels: np.ndarray,
    grid: VoxelGrid,
    colors_rgb: np.ndarray,
    header: Any = None,
    confidence: np.ndarray | None = None,
    threshold: float = 0.0,
    transform: np.ndarray | None = None,
    include_confidence: bool = True,
) -> Any:
    """Occupied voxels -> sensor_msgs/PointCloud2, one point per voxel centre.

    Fields (little-endian, point_step 20 or 24): x, y, z FLOAT32 (metres, output frame), rgb
    FLOAT32 (packed class colour, RViz's RGB8 transformer), label UINT32 (class id), confidence
    FLOAT32 (when `confidence` is given and `include_confidence`). Unordered cloud: height 1, dense.
    """
    from sensor_msgs.msg import PointCloud2, PointField

    centres, lab, conf, _ = select_voxels(labels, grid, confidence, threshold, transform)
    if not include_confidence:
        conf = None
    names = ["x", "y", "z", "rgb", "label"] + (["confidence"] if conf is not None else [])
    types = [_PF_FLOAT32] * 4 + [_PF_UINT32] + ([_PF_FLOAT32] if conf is not None else [])
    dt = np.dtype({"names": names, "formats": ["<" + _PF_TO_DTYPE[t] for t in types]})
    rec = np.empty(len(lab), dtype=dt)
    rec["x"], rec["y"], rec["z"] = centres[:, 0], centres[:, 1], centres[:, 2]
    rec["rgb"] = pack_rgb(_class_colors(colors_rgb, lab))
    rec["label"] = lab
    if conf is not None:
        rec["confidence"] = conf
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = 1, len(lab)
    msg.fields = [
        PointField(name=n, offset=int(dt.fields[n][1]), datatype=t, count=1) for n, t in zip(names, types)
    ]
    msg.is_bigendian = False
    msg.point_step = dt.itemsize
    msg.row_step = dt.itemsize * len(lab)
    msg.is_dense = True
    msg.data = _byte_array(rec)
    return msg


class MarkerPointCache:
    """geometry_msgs/Point objects of voxel centres (grid coordinates), made once per voxel, reused.

    A CUBE_LIST needs one Python Point object per cube, and making them is what a MarkerArray
    costs (microseconds each). The centres never change for a grid, and an ego-centric scene
    keeps most occupied voxels from frame to frame, so the node keeps one cache per grid: a
    (X*Y*Z,) object array (8 bytes per voxel) filled as voxels first become occupied.
    """

    def __init__(self, grid: VoxelGrid) -> None:
        self.grid = grid
        self._points = np.empty(grid.num_voxels, dtype=object)

    def get(self, ijk: np.ndarray) -> np.ndarray:
        """Points (object array (M,)) of the voxels with indices `ijk` (M, 3)."""
        from geometry_msgs.msg import Point

        flat = np.ravel_multi_index(tuple(np.asarray(ijk, dtype=np.int64).T), self.grid.dims)
        objs = self._points[flat]
        missing = np.flatnonzero(np.equal(objs, None))
        if missing.size:
            made = np.empty(missing.size, dtype=object)
            made[:] = [Point(x=p[0], y=p[1], z=p[2]) for p in self.grid.index_to_center(ijk[missing]).tolist()]
            self._points[flat[missing]] = made
            objs[missing] = made
        return objs


def labels_to_marker_array(
    labels: np.ndarray,
    grid: VoxelGrid,
    colors_rgb: np.ndarray,
    header: Any = None,
    confidence: np.ndarray | None = None,
    threshold: float = 0.0,
    transform: np.ndarray | None = None,
    previous_classes: Iterable[int] = (),
    namespace: str = "ssc",
    alpha: float = 1.0,
    cache: MarkerPointCache | None = None,
) -> tuple[Any, set[int]]:
    """Occupied voxels -> visualization_msgs/MarkerArray: one CUBE_LIST per present class.

    Marker id = class id (stable, so RViz replaces a class's cubes in place), colour = the class
    colour, scale = voxel size; points are voxel centres in grid coordinates and the marker pose
    is `transform` (grid -> output frame). Classes in `previous_classes` but absent now get a
    DELETE marker. With a `cache` (of this grid), Point objects are reused between calls.

    Returns:
        (MarkerArray, the set of class ids published now — pass it as `previous_classes` next time)
    """
    from visualization_msgs.msg import Marker, MarkerArray

    _, lab, _, ijk = select_voxels(labels, grid, confidence, threshold, None)
    if cache is None:
        cache = MarkerPointCache(grid)
    elif cache.grid != grid:
        raise ValueError(f"labels_to_marker_array: cache is for {cache.grid}, not {grid}")
    colors = np.asarray(colors_rgb, dtype=np.float64) / 255.0
    if lab.size and int(lab.max()) >= len(colors):
        raise ValueError(f"labels: class id {int(lab.max())} has no colour ({len(colors)} classes)")
    pose = matrix_to_pose(np.eye(4) if transform is None else transform)
    order = np.argsort(lab, kind="stable")
    lab_sorted = lab[order]
    classes, starts = np.unique(lab_sorted, return_index=True)
    ends = np.append(starts[1:], len(lab_sorted))
    pts_sorted = cache.get(ijk[order])
    out = MarkerArray()
    present: set[int] = set()
    for c, s, e in zip(classes.tolist(), starts.tolist(), ends.tolist()):
        m = Marker()
        if header is not None:
            m.header = header
        m.ns, m.id, m.type, m.action = namespace, int(c), Marker.CUBE_LIST, Marker.ADD
        m.pose = pose
        m.scale.x = m.scale.y = m.scale.z = float(grid.voxel_size)
        m.color.r, m.color.g, m.color.b = (float(v) for v in colors[c])
        m.color.a = float(alpha)
        m.points = pts_sorted[s:e].tolist()
        out.markers.append(m)
        present.add(int(c))
    for c in sorted(set(int(v) for v in previous_classes) - present):
        m = Marker()
        if header is not None:
            m.header = header
        m.ns, m.id, m.action = namespace, c, Marker.DELETE
        out.markers.append(m)
    return out, present


def labels_to_voxel_grid(
    labels: np.ndarray,
    grid: VoxelGrid,
    class_names: Sequence[str],
    colors_rgb: np.ndarray | None = None,
    header: Any = None,
    confidence: np.ndarray | None = None,
    threshold: float = 0.0,
    transform: np.ndarray | None = None,
    include_confidence: bool = True,
) -> Any:
    """Dense prediction -> sgn_ros/SemanticVoxelGrid (see msg/SemanticVoxelGrid.msg).

    Voxels whose confidence is below `threshold` are sent as 255 (no prediction); confidence is
    quantised to 0..255 (left empty without `include_confidence`). `transform` (grid -> header
    frame) gives `origin`.
    """
    from sgn_ros.msg import SemanticVoxelGrid

    labels = np.asarray(labels)
    _check_prediction(labels, confidence, grid)
    lab = labels.astype(np.uint8, copy=True)
    if confidence is not None and threshold > 0:
        lab[confidence < threshold] = IGNORE_LABEL
    msg = SemanticVoxelGrid()
    if header is not None:
        msg.header = header
    T = np.eye(4) if transform is None else np.asarray(transform, dtype=np.float64)
    corner = np.eye(4)
    corner[:3, 3] = grid.origin
    msg.origin = matrix_to_pose(T @ corner)
    msg.voxel_size = float(grid.voxel_size)
    msg.size_x, msg.size_y, msg.size_z = (int(d) for d in grid.dims)
    msg.labels = _byte_array(lab)
    if confidence is not None and include_confidence:
        q = np.clip(np.rint(np.asarray(confidence, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
        msg.confidence = _byte_array(q)
    msg.class_names = [str(n) for n in class_names]
    if colors_rgb is not None:
        msg.class_colors = _byte_array(np.asarray(colors_rgb, dtype=np.uint8).reshape(-1))
    return msg


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
