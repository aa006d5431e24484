# Camera geometry of FLoSP (MonoScene's "features line of sight projection"): where the centre
# of each voxel of the working grid lands in an image, and whether the camera sees it.
#
# Pure functions with explicit arguments, computed on whatever device their inputs live on.
# They reproduce the reference's arithmetic: voxel centres in float32 (origin + size * (i + 0.5)),
# the rigid transform and the pinhole projection in float64, pixel = round-half-to-even of
# (u, v) = (K X)[:2] / max(z, 1e-6), visible = 0 <= u < W, 0 <= v < H, z > 0. The feature cell of
# a pixel is pixel // stride (floor), as FLoSP samples a stride-`stride` feature map.
"""Voxel centre -> pixel projection, field-of-view masks and FLoSP gather indices."""

from __future__ import annotations

import torch

from sgn_ros.geometry.voxels import voxel_centres
from sgn_ros.grid import VoxelGrid

__all__ = ["voxel_to_pixel", "fov_mask", "feature_gather_index", "feature_size", "projection_tables",
           "network_tables", "FEATURE_SCALE"]

#: Smallest camera depth used as a divisor (metres), as the reference's cam2pix.
MIN_DEPTH = 1e-6


def voxel_to_pixel(
    points: torch.Tensor, intrinsics: torch.Tensor, lidar_to_cam: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project LiDAR-frame points into F cameras.

    Args:
        points: (N, 3) metres in the LiDAR frame (any float dtype).
        intrinsics: (F, 3, 3) camera matrices K, pixels.
        lidar_to_cam: (F, 4, 4) LiDAR -> camera transforms, metres.

    Returns:
        pixels: (F, N, 2) int64 (u, v) = round((K X_cam)[:2] / max(z, 1e-6)), half to even.
        depth: (F, N) float64 camera z, metres (<= 0: behind the camera).
    """
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"voxel_to_pixel: points must be (N, 3), got {tuple(points.shape)}")
    if intrinsics.dim() != 3 or intrinsics.shape[1:] != (3, 3):
        raise ValueError(f"voxel_to_pixel: intrinsics must be (F, 3, 3), got {tuple(intrinsics.shape)}")
    if lidar_to_cam.dim() != 3 or lidar_to_cam.shape[1:] != (4, 4) or lidar_to_cam.shape[0] != intrinsics.shape[0]:
        raise ValueError(
            f"voxel_to_pixel: lidar_to_cam must be (F, 4, 4) with F = {intrinsics.shape[0]}, "
            f"got {tuple(lidar_to_cam.shape)}"
        )
    p = points.to(torch.float64)
    T = lidar_to_cam.to(torch.float64)
    # The reference rounds K through float32 before its float64 matrix product.
    K = intrinsics.to(torch.float32).to(torch.float64)
    p_h = torch.cat([p, torch.ones_like(p[:, :1])], dim=1)  # homogeneous, as the reference
    cam = torch.einsum("fij,nj->fni", T, p_h)[..., :3]  # (F, N, 3)
    uvw = torch.einsum("fij,fnj->fni", K, cam)
    depth = cam[..., 2]
    uv = uvw[..., :2] / torch.clamp(uvw[..., 2:3], min=MIN_DEPTH)
    return torch.round(uv).to(torch.int64), depth


def fov_mask(pixels: torch.Tensor, depth: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(F, N) bool: pixel inside an image of `image_size` = (H, W) and in front of the camera."""
    h, w = int(image_size[0]), int(image_size[1])
    u, v = pixels[..., 0], pixels[..., 1]
    return (u >= 0) & (u < w) & (v >= 0) & (v < h) & (depth > 0)


def feature_gather_index(
    pixels: torch.Tensor, visible: torch.Tensor, stride: int, feature_size: tuple[int, int]
) -> torch.Tensor:
    """Flat index into a stride-`stride` feature map of `feature_size` = (h, w), plus one slot.

    Returns (F, N) int64 in [0, h*w]: (v // stride) * w + (u // stride) for visible voxels and
    h*w (a zero column appended by FLoSP) for the others. The caller makes sure that the
    feature map covers the image (h * stride >= H, w * stride >= W).
    """
    fh, fw = int(feature_size[0]), int(feature_size[1])
    cu = torch.div(pixels[..., 0], stride, rounding_mode="floor")
    cv = torch.div(pixels[..., 1], stride, rounding_mode="floor")
    index = cv * fw + cu
    outside = torch.full_like(index, fh * fw)
    return torch.where(visible, index, outside)


def feature_size(image_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(h, w) of the stride-`stride` feature map of an (H, W) image: ceil(H / stride), ceil(W / stride).

    ResNet's stride-2 stages (padded 7x7 / 3x3 convs and max pooling) each give ceil(n / 2), and
    nested ceilings of integer divisions are the ceiling of the whole division.
    """
    s = int(stride)
    return -(-int(image_size[0]) // s), -(-int(image_size[1]) // s)


def projection_tables(
    grid: VoxelGrid,
    stride: int,
    intrinsics: torch.Tensor,
    lidar_to_cam: torch.Tensor,
    image_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """FLoSP's tables for F cameras: gather index (F, N) int64 and FOV mask (F, N) bool.

    A pure function of the camera geometry, computed where the inputs live (dataset workers on
    the CPU, the predictor on its device). `lidar_to_cam` should be float64 (the reference's
    precision: a float32 frame-to-frame transform moves pixels by rounding); K is rounded through
    float32 inside `voxel_to_pixel`, as the reference does.

    Args:
        grid: the lifted grid (SGN: the 1/2-scale grid); N = grid.num_voxels.
        stride: pixels per feature cell (16).
        intrinsics: (F, 3, 3) K of the network images; lidar_to_cam: (F, 4, 4).
        image_size: (H, W) of the network images.
    """
    centres = voxel_centres(grid, device=lidar_to_cam.device)
    with torch.no_grad():
        pixels, depth = voxel_to_pixel(centres, intrinsics.to(lidar_to_cam.device), lidar_to_cam)
        visible = fov_mask(pixels, depth, image_size)
        index = feature_gather_index(pixels, visible, stride, feature_size(image_size, stride))
    return index, visible


#: SGN lifts image features onto the grid at 1 / FEATURE_SCALE of the full resolution.
FEATURE_SCALE = 2


def network_tables(
    grid: VoxelGrid,
    stride: int,
    intrinsics,
    lidar_to_cam,
    image_size: tuple[int, int],
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tables one sample of SGN needs: `projection_tables` on grid.scaled(FEATURE_SCALE).

    The one entry point of the datasets (per sample, CPU workers) and the predictor (once per
    camera geometry). `intrinsics` (F, 3, 3) and `lidar_to_cam` (F, 4, 4) are arrays or tensors,
    converted to float64 on `device` (NumPy's float64 transforms keep their precision).

    Returns:
        gather index (F, N) int64 and FOV mask (F, N) bool, N = voxels of the 1/2-scale grid.
    """
    k = torch.as_tensor(intrinsics, dtype=torch.float64, device=device)
    t = torch.as_tensor(lidar_to_cam, dtype=torch.float64, device=device)
    return projection_tables(grid.scaled(FEATURE_SCALE), stride, k, t, image_size)
