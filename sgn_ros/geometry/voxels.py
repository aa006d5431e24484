# Voxel centres and points-in-grid: the one formula, centre = origin + voxel_size * (index + 0.5),
# for NumPy (float64: outputs, labels, rendering) and torch (float32 on a device, as the
# reference computes the centres it projects for FLoSP, so that pixels round identically).
# `VoxelGrid` (sgn_ros/grid.py) stays the description of the volume and calls these.
"""Voxel centres of a `VoxelGrid` and the mask of points inside it (NumPy and torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from sgn_ros.grid import VoxelGrid

__all__ = ["voxel_centres", "points_in_grid"]


def voxel_centres(
    grid: VoxelGrid,
    indices: np.ndarray | torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> np.ndarray | torch.Tensor:
    """Centres (metres) of the voxels with integer `indices` (N, 3), or of all voxels.

    - NumPy `indices`: (N, 3) float64.
    - torch `indices`: (N, 3) float32 on their device (the reference's float32 arithmetic).
    - None: all voxels, (X*Y*Z, 3) float32 tensor in C order of (x, y, z) on `device` (FLoSP);
      ``grid.voxel_centers()`` gives the NumPy float64 (X, Y, Z, 3) version.
    """
    if indices is None:
        axes = [torch.arange(d, dtype=torch.float32, device=device) for d in grid.dims]
        indices = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    if isinstance(indices, torch.Tensor):
        origin = torch.tensor(grid.origin, dtype=torch.float32, device=indices.device)
        return origin + grid.voxel_size * (indices.to(torch.float32) + 0.5)
    ijk = np.asarray(indices)
    if ijk.ndim < 1 or ijk.shape[-1] != 3:
        raise ValueError(f"voxel_centres: expected (..., 3) voxel indices, got shape {ijk.shape}")
    return np.asarray(grid.origin) + (ijk.astype(np.float64) + 0.5) * grid.voxel_size


def points_in_grid(points: np.ndarray | torch.Tensor, grid: VoxelGrid) -> np.ndarray | torch.Tensor:
    """Boolean mask (N,) of points (N, >=3, metres) inside the half-open volume of `grid`.

    Compared in float64 for both array types; a tensor's mask stays on its device (GPU cropping).
    """
    if isinstance(points, torch.Tensor):
        p = points[:, :3].to(torch.float64)
        lo = torch.tensor(grid.origin, dtype=torch.float64, device=points.device)
        hi = torch.tensor(grid.upper, dtype=torch.float64, device=points.device)
        return ((p >= lo) & (p < hi)).all(dim=1)
    p = np.asarray(points)
    lo, hi = np.asarray(grid.origin, np.float64), np.asarray(grid.upper, np.float64)
    inside = np.ones(len(p), bool)
    for a in range(3):  # per column (an all() over an axis of 3 is the slow part); float64 bounds
        col = p[:, a]
        inside &= col >= lo[a]
        inside &= col < hi[a]
    return inside
