# Depth map -> points: the pseudo-LiDAR back-projection SGN's sparse voxel proposal takes when
# there is no LiDAR. One function for NumPy (host, dataset workers) and torch (on the device of
# the depth map, the predictor on a GPU), with the same float64 arithmetic as the reference.
"""Metric depth map -> (N, 3) points in the camera or a target frame."""

from __future__ import annotations

import numpy as np
import torch

from sgn_ros.geometry.camera import check_intrinsics
from sgn_ros.geometry.transforms import check_transform

__all__ = ["depth_to_points"]


def depth_to_points(
    depth: np.ndarray | torch.Tensor,
    K: np.ndarray,
    cam_to_target: np.ndarray | None = None,
    max_depth: float | None = None,
) -> np.ndarray | torch.Tensor:
    """Back-project a metric depth map to a point cloud (pseudo-LiDAR).

    Pixel (u, v) with depth z (metres along the optical axis) becomes the camera-frame point
    ((u - cx) z / fx, (v - cy) z / fy, z) (skew ignored, as the reference), then, with
    `cam_to_target` (4, 4), the target-frame point ``cam_to_target @ [x, y, z, 1]``. Pixels with
    z <= 0, non-finite z or (with `max_depth`) z > max_depth are dropped. The camera frame is the
    one K projects from (for KITTI's P2 fold its x translation into the lidar->camera transform).
    Arithmetic in float64 (as the reference's NumPy code), result rounded to float32.

    Args:
        depth: (H, W) metres; a NumPy array, or a tensor (computed on its device, e.g. the GPU).
        K: (3, 3) intrinsics of the depth map's pixels.
        cam_to_target: (4, 4) camera -> target (LiDAR / grid) transform, or None for camera-frame points.
        max_depth: metres; farther pixels are dropped.

    Returns:
        (N, 3) float32 points, metres, in row-major pixel order; NumPy for NumPy input, else a tensor.
    """
    is_numpy = not isinstance(depth, torch.Tensor)
    if is_numpy:
        depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth_to_points: expected a depth map (H, W), got shape {tuple(depth.shape)}")
    K = check_intrinsics(K, "depth_to_points: K")
    T = None if cam_to_target is None else check_transform(cam_to_target, "depth_to_points: cam_to_target")
    d = depth
    if is_numpy:  # NumPy on the host: several times faster than CPU torch for these element-wise ops
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(d) & (d > 0) & (d <= (np.inf if max_depth is None else max_depth))
        v, u = np.nonzero(keep)  # row-major order
        z, u, v = d[v, u].astype(np.float64), u.astype(np.float64), v.astype(np.float64)
    else:
        keep = torch.isfinite(d) & (d > 0) & (d <= (float("inf") if max_depth is None else max_depth))
        v, u = torch.nonzero(keep, as_tuple=True)
        z, u, v = d[v, u].to(torch.float64), u.to(torch.float64), v.to(torch.float64)
    # the same arithmetic for both array types
    cam = ((u - K[0, 2]) * (z / K[0, 0]), (v - K[1, 2]) * (z / K[1, 1]), z)
    if T is None:
        axes = cam
    else:  # per output axis: cheaper than an (N, 3) @ (3, 3) product
        axes = tuple(T[i, 0] * cam[0] + T[i, 1] * cam[1] + T[i, 2] * cam[2] + T[i, 3] for i in range(3))
    if is_numpy:
        return np.stack(axes, axis=1).astype(np.float32)
    return torch.stack(axes, dim=1).to(torch.float32)
