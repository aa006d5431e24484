# FLoSP lifting (MonoScene's features line of sight projection), as SGN uses it: every voxel of
# the 1/2-scale grid takes the stride-16 image feature at the cell its centre projects into;
# voxels outside the image or behind the camera take zeros; with several frames (SGN-T) the
# features of the frames that see a voxel are averaged.
#
# Projection tables cache: the gather index (B*F, N) and the FOV mask (B, F, N) depend only on
# (K, lidar_to_cam, image size, feature size). They are computed on the input device and kept in
# a small LRU cache. The cache key is the batch layout (device, B, F, image and feature size);
# the entry is valid when the cameras are equal to the cached ones, checked with one
# `torch.equal` on the device (a single boolean read per batch - the seed selection later in the
# forward synchronises anyway). A fixed camera (ROS node, single-frame KITTI sequence) therefore
# projects once; a new pose computes new tables.
"""FLoSP: lift stride-16 image features onto the voxel grid (single frame or frame average)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from sgn_ros.grid import VoxelGrid
from sgn_ros.model.projection import feature_gather_index, fov_mask, voxel_centres, voxel_to_pixel

__all__ = ["FLoSP"]


class FLoSP(nn.Module):
    """Lift image features to a voxel grid.

    Args:
        grid: the grid the features are lifted to (SGN: the 1/2-scale grid, 128 x 128 x 16).
        stride: pixels per feature cell of the sampled feature map (16).
        cache_size: camera set-ups whose projection tables are kept.

    Forward: features (B, F, C, h, w), intrinsics (B, F, 3, 3), lidar_to_cam (B, F, 4, 4),
    image_size (H, W) -> (B, C, X, Y, Z) lifted features.
    """

    def __init__(self, grid: VoxelGrid, stride: int, cache_size: int = 4) -> None:
        super().__init__()
        self.grid = grid
        self.stride = int(stride)
        self.cache_size = int(cache_size)
        # Voxel centres (N, 3) float32, metres; a buffer so that .to(device) moves it, not saved.
        self.register_buffer("centres", voxel_centres(grid), persistent=False)
        self._cache: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()

    def clear_cache(self) -> None:
        """Forget all cached projection tables."""
        self._cache.clear()

    def tables(
        self,
        intrinsics: torch.Tensor,
        lidar_to_cam: torch.Tensor,
        image_size: tuple[int, int],
        feature_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather index (B*F, N) int64 into a (h*w + 1) feature row and FOV mask (B, F, N) bool.

        Cached per camera set-up (see the module header).
        """
        b, f = intrinsics.shape[:2]
        device = self.centres.device
        key = (str(device), b, f, tuple(int(s) for s in image_size), tuple(int(s) for s in feature_size))
        fingerprint = torch.cat([intrinsics.reshape(-1), lidar_to_cam.reshape(-1)]).to(device=device)
        hit = self._cache.get(key)
        if hit is not None and hit[0].dtype == fingerprint.dtype and torch.equal(hit[0], fingerprint):
            self._cache.move_to_end(key)
            return hit[1], hit[2]
        with torch.no_grad():
            pixels, depth = voxel_to_pixel(
                self.centres, intrinsics.reshape(b * f, 3, 3).to(device), lidar_to_cam.reshape(b * f, 4, 4).to(device)
            )
            visible = fov_mask(pixels, depth, image_size)
            index = feature_gather_index(pixels, visible, self.stride, feature_size)
        visible = visible.reshape(b, f, -1)
        self._cache[key] = (fingerprint.detach().clone(), index, visible)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return index, visible

    def forward(
        self,
        features: torch.Tensor,
        intrinsics: torch.Tensor,
        lidar_to_cam: torch.Tensor,
        image_size: tuple[int, int],
    ) -> torch.Tensor:
        if features.dim() != 5:
            raise ValueError(f"FLoSP: features must be (B, F, C, h, w), got {tuple(features.shape)}")
        b, f, c, fh, fw = features.shape
        if tuple(intrinsics.shape) != (b, f, 3, 3) or tuple(lidar_to_cam.shape) != (b, f, 4, 4):
            raise ValueError(
                f"FLoSP: intrinsics {tuple(intrinsics.shape)} / lidar_to_cam {tuple(lidar_to_cam.shape)} "
                f"do not match features (B={b}, F={f})"
            )
        h, w = int(image_size[0]), int(image_size[1])
        if fh * self.stride < h or fw * self.stride < w:
            raise ValueError(
                f"FLoSP: feature map {fh}x{fw} at stride {self.stride} does not cover the {h}x{w} image"
            )
        index, visible = self.tables(intrinsics, lidar_to_cam, (h, w), (fh, fw))
        src = features.reshape(b * f, c, fh * fw)
        src = torch.cat([src, src.new_zeros(b * f, c, 1)], dim=-1)  # slot h*w: zeros for unseen voxels
        lifted = torch.gather(src, 2, index.unsqueeze(1).expand(-1, c, -1))  # (B*F, C, N)
        lifted = lifted.reshape(b, f, c, -1)
        if f > 1:
            # Average over the frames that see each voxel (unseen frames contribute exact zeros).
            counts = visible.sum(dim=1)  # (B, N) int64
            counts = torch.where(counts == 0, torch.ones_like(counts), counts)
            lifted = torch.sum(lifted * visible.unsqueeze(2).to(lifted.dtype), dim=1) / counts[:, None]
        else:
            lifted = lifted[:, 0]
        return lifted.reshape(b, c, *self.grid.dims)
