# Input preprocessing shared by the predictor, the ROS node and the data pipeline: bringing a
# camera image to the network's input size (top-left crop as the reference does, or padding, or
# resizing) while keeping the intrinsics K consistent, ImageNet normalisation, and turning a
# metric depth map into pseudo-LiDAR points (the input of SGN's sparse voxel proposal network).
# Pure NumPy functions without state: cheap to test, usable from any process.
"""Image fitting / normalisation and depth -> pseudo-LiDAR back-projection helpers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sgn_ros.grid import VoxelGrid

__all__ = [
    "check_intrinsics",
    "check_transform",
    "crop_or_pad",
    "resize_image",
    "normalize_image",
    "depth_to_points",
    "points_in_grid",
]


def check_intrinsics(K: np.ndarray, name: str = "intrinsics") -> np.ndarray:
    """Validate a pinhole camera matrix; returns it as float64 (3, 3).

    Raises:
        ValueError: not 3x3, not finite, non-positive focal lengths, or a bottom row other than (0, 0, 1).
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{name}: expected a 3x3 camera matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{name}: camera matrix has non-finite entries")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise ValueError(f"{name}: not a pinhole camera matrix (need fx, fy > 0 and last row 0 0 1): {K.tolist()}")
    return K


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


def crop_or_pad(image: np.ndarray, size: Sequence[int], fill: float = 0) -> np.ndarray:
    """Bring an (H, W, ...) array to `size` = (H', W') anchored at the top-left corner.

    Rows / columns beyond (H', W') are cut (``image[:H', :W']``, the reference's crop of KITTI
    images to 370 x 1220); missing ones are added at the bottom / right with `fill`. Either way
    pixel (u, v) keeps its coordinates, so the intrinsics K stay unchanged.
    """
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"crop_or_pad: size must be positive (H, W), got {tuple(size)}")
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"crop_or_pad: expected an (H, W, ...) array, got shape {image.shape}")
    out = image[:h, :w]
    if out.shape[0] == h and out.shape[1] == w:
        return out
    padded = np.full((h, w, *image.shape[2:]), fill, dtype=image.dtype)
    padded[: out.shape[0], : out.shape[1]] = out
    return padded


def resize_image(image: np.ndarray, K: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize (bilinear, pixel-centre aligned) an (H, W, C) image to `size` = (H', W') and scale K.

    With pixel centres at integer coordinates, u' = (u + 0.5) * W'/W - 0.5, so fx and cx scale by
    sx = W'/W (cx also shifts by 0.5 * (sx - 1)); likewise fy, cy with sy = H'/H.

    Returns:
        (resized image (H', W', C) float32, new K (3, 3) float64)
    """
    K = check_intrinsics(K)
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"resize_image: expected an (H, W, C) image, got shape {image.shape}")
    h0, w0 = image.shape[:2]
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"resize_image: size must be positive (H, W), got {tuple(size)}")
    sy, sx = h / h0, w / w0
    # source coordinates of target pixel centres, clamped at the borders
    ys = np.clip((np.arange(h) + 0.5) / sy - 0.5, 0, h0 - 1)
    xs = np.clip((np.arange(w) + 0.5) / sx - 0.5, 0, w0 - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, h0 - 1)
    x1 = np.minimum(x0 + 1, w0 - 1)
    wy = (ys - y0)[:, None, None]
    wx = (xs - x0)[None, :, None]
    img = image.astype(np.float32)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    out = (top * (1 - wy) + bottom * wy).astype(np.float32)
    K2 = K.copy()
    K2[0, 0] *= sx
    K2[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K2[1, 1] *= sy
    K2[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    K2[0, 1] *= sx
    return out, K2


def normalize_image(image: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float]):
    """RGB image (H, W, 3), uint8 0..255 (or float 0..1) -> float32 (3, H, W), (x - mean) / std.

    `mean` / `std` are per channel on the 0..1 scale (ImageNet: 0.485 0.456 0.406 / 0.229 0.224 0.225).
    A NumPy array gives a NumPy array; a tensor gives a tensor on its own device (so the predictor
    can upload uint8 pixels and normalise on the GPU).
    """
    is_numpy = not isinstance(image, torch.Tensor)
    x = torch.from_numpy(np.ascontiguousarray(image)) if is_numpy else image
    if x.dim() != 3 or x.shape[2] != 3:
        raise ValueError(f"normalize_image: expected an RGB image (H, W, 3), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255.0
    elif x.is_floating_point():
        x = x.to(torch.float32)
    else:
        raise ValueError(f"normalize_image: expected uint8 or float pixels, got {x.dtype}")
    m = torch.tensor(mean, dtype=torch.float32, device=x.device)
    s = torch.tensor(std, dtype=torch.float32, device=x.device)
    out = ((x - m) / s).permute(2, 0, 1).contiguous()
    return out.numpy() if is_numpy else out


def depth_to_points(
    depth: np.ndarray | torch.Tensor,
    K: np.ndarray,
    cam_to_lidar: np.ndarray | None = None,
    max_depth: float | None = None,
) -> np.ndarray | torch.Tensor:
    """Back-project a metric depth map to a pseudo-LiDAR point cloud.

    Pixel (u, v) with depth z (metres along the optical axis) becomes the camera-frame point
    ((u - cx) z / fx, (v - cy) z / fy, z) (skew ignored, as the reference), then, with
    `cam_to_lidar` (4, 4), the LiDAR-frame point ``cam_to_lidar @ [x, y, z, 1]``. Pixels with
    z <= 0, non-finite z or (with `max_depth`) z > max_depth are dropped. The camera frame is the
    one K projects from (for KITTI's P2 fold its x translation into the lidar->camera transform).
    Arithmetic in float64 (as the reference's NumPy code), result rounded to float32.

    Args:
        depth: (H, W) metres; a NumPy array, or a tensor (computed on its device, e.g. the GPU).
        K: (3, 3) intrinsics of the depth map's pixels.
        cam_to_lidar: (4, 4) camera -> LiDAR transform, or None to return camera-frame points.
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
    T = None if cam_to_lidar is None else check_transform(cam_to_lidar, "depth_to_points: cam_to_lidar")
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


def points_in_grid(points: torch.Tensor, grid: VoxelGrid) -> torch.Tensor:
    """Boolean mask (N,) of points (N, >=3) inside the half-open volume of `grid`, on their device.

    The tensor counterpart of `VoxelGrid.contains` (same float64 comparison), so that point
    clouds can be cropped on the GPU.
    """
    p = points[:, :3].to(torch.float64)
    lo = torch.tensor(grid.origin, dtype=torch.float64, device=points.device)
    hi = torch.tensor(grid.upper, dtype=torch.float64, device=points.device)
    return ((p >= lo) & (p < hi)).all(dim=1)
