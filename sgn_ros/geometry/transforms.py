# SE(3) as 4x4 homogeneous float64 matrices, and unit quaternions in ROS order (x, y, z, w).
# Every place of sgn_ros that composes, inverts or applies a rigid transform, or converts a
# rotation to / from a quaternion, calls these functions (the TF buffer, the encoders, the
# node, the datasets, the KITTI players).
#
# Numbers: transforms are float64 (the reference's NumPy arithmetic); `apply_transform` computes
# in float64 and returns the points' own floating dtype. `invert_transform` is the general
# matrix inverse, not R^T: KITTI's Tr is orthonormal only to ~1e-4, and the reference inverts it
# with np.linalg.inv, so the exact inverse keeps our numbers identical to its.
"""Rigid transforms (compose / invert / apply / build) and quaternion <-> rotation matrix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

__all__ = [
    "check_transform",
    "make_transform",
    "invert_transform",
    "apply_transform",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "xyz_rpy_to_matrix",
]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def check_transform(T: np.ndarray, name: str = "transform") -> np.ndarray:
    """Validate a 4x4 homogeneous rigid transform; returns it as float64 (4, 4).

    Raises:
        ValueError: wrong shape, non-finite entries, bottom row other than (0, 0, 0, 1), or a
            rotation block that is not orthonormal (tolerance 1e-3; KITTI's Tr is slightly off).
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name}: expected a 4x4 transform, got shape {T.shape}")
    if not np.all(np.isfinite(T)) or not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0)):
        raise ValueError(f"{name}: not a homogeneous transform (non-finite or last row != 0 0 0 1): {T.tolist()}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-3):
        raise ValueError(f"{name}: rotation block is not orthonormal: {R.tolist()}")
    return T


def make_transform(rotation: np.ndarray | None = None, translation: Sequence[float] | None = None) -> np.ndarray:
    """(4, 4) float64 from a (3, 3) rotation (None = identity) and a translation (None = zero)."""
    T = np.eye(4)
    if rotation is not None:
        T[:3, :3] = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    if translation is not None:
        T[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a (..., 4, 4) transform, float64 (the exact matrix inverse; see the header)."""
    return np.linalg.inv(np.asarray(T, dtype=np.float64))


def apply_transform(T: np.ndarray | torch.Tensor, points: ArrayT) -> ArrayT:
    """Points (N, 3) (NumPy or torch; extra columns are dropped) mapped by T: R p + t.

    Computed in float64 and returned in the points' floating dtype (float64 for integer input);
    a tensor stays on its device. NumPy computes it as (R @ P^T)^T: its (N, 3) @ (3, 3) path is
    ~10x slower for large N.
    """
    if isinstance(points, torch.Tensor):
        dtype = points.dtype if points.is_floating_point() else torch.float64
        Tt = torch.as_tensor(np.asarray(T, dtype=np.float64) if not isinstance(T, torch.Tensor) else T)
        Tt = Tt.to(device=points.device, dtype=torch.float64)
        p = points[:, :3].to(torch.float64)
        out = p @ Tt[:3, :3].T + Tt[:3, 3]
        return out.to(dtype)
    p = np.asarray(points)
    dtype = p.dtype if np.issubdtype(p.dtype, np.floating) else np.dtype(np.float64)
    T = np.asarray(T, dtype=np.float64)
    p = p[:, :3].astype(np.float64, copy=False)
    out = (T[:3, :3] @ p.T).T + T[:3, 3]
    return out.astype(dtype, copy=False)


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Quaternion (x, y, z, w) -> (3, 3) float64 rotation; the quaternion is normalised first.

    Raises:
        ValueError: a zero or non-finite quaternion.
    """
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if q.size != 4:
        raise ValueError(f"quaternion: expected 4 values (x, y, z, w), got {q.size}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"quaternion: invalid orientation quaternion {q.tolist()}")
    big = float(np.max(np.abs(q)))
    n = float(np.linalg.norm(q / big)) * big if big > 0 else 0.0  # scaled: no overflow at 1e308
    if not n >= 1e-9:
        raise ValueError(f"quaternion: invalid orientation quaternion {q.tolist()}")
    x, y, z, w = (q / big) / (n / big)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix (3, 3) (or the rotation block of a 4x4) -> unit quaternion (x, y, z, w).

    Shepperd's method: the branch of the largest diagonal term keeps the division well conditioned.
    """
    R = np.asarray(R, dtype=np.float64)[:3, :3]
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


def xyz_rpy_to_matrix(values: Sequence[float]) -> np.ndarray:
    """(x, y, z, roll, pitch, yaw) (metres, radians, R = Rz(yaw) Ry(pitch) Rx(roll)) or 16 values
    (row-major 4x4) -> homogeneous 4x4 float64, validated by `check_transform`."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 16:
        T = v.reshape(4, 4)
    elif v.size == 6:
        cr, sr = math.cos(v[3]), math.sin(v[3])
        cp, sp = math.cos(v[4]), math.sin(v[4])
        cy, sy = math.cos(v[5]), math.sin(v[5])
        R = [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
        T = make_transform(R, v[:3])
    else:
        raise ValueError(f"transform: expected 6 values (x y z roll pitch yaw) or 16 (4x4), got {v.size}")
    return check_transform(T, "transform")
