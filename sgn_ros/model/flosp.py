# FLoSP lifting (MonoScene's features line of sight projection), as SGN uses it: every voxel of
# the 1/2-scale grid takes the stride-16 image feature at the cell its centre projects into;
# voxels outside the image or behind the camera take zeros; with several frames (SGN-T) the
# features of the frames that see a voxel are averaged.
#
# A pure function of its inputs: the projection tables (gather index and FOV mask, see
# projection.py) come with the batch. The datasets make them in their CPU workers, the predictor
# once per camera geometry; the module keeps no cache (nothing outside its state_dict changes
# between calls). Host round trips: none (gather, sum and divide on the device).
"""FLoSP: lift stride-16 image features onto the voxel grid (single frame or frame average)."""

from __future__ import annotations

import torch
from torch import nn

from sgn_ros.grid import VoxelGrid
from sgn_ros.model.projection import feature_size

__all__ = ["FLoSP"]


class FLoSP(nn.Module):
    """Lift image features to a voxel grid.

    Args:
        grid: the grid the features are lifted to (SGN: the 1/2-scale grid, 128 x 128 x 16).
        stride: pixels per feature cell of the sampled feature map (16).

    Forward: features (B, F, C, h, w), gather index (B, F, N) int64 and FOV mask (B, F, N) bool
    (`projection.projection_tables` per sample), image_size (H, W) -> (B, C, X, Y, Z).
    """

    def __init__(self, grid: VoxelGrid, stride: int) -> None:
        super().__init__()
        self.grid = grid
        self.stride = int(stride)

    def forward(
        self,
        features: torch.Tensor,
        gather_index: torch.Tensor,
        fov_mask: torch.Tensor,
        image_size: tuple[int, int],
    ) -> torch.Tensor:
        if features.dim() != 5:
            raise ValueError(f"FLoSP: features must be (B, F, C, h, w), got {tuple(features.shape)}")
        b, f, c, fh, fw = features.shape
        n = self.grid.num_voxels
        if tuple(gather_index.shape) != (b, f, n) or tuple(fov_mask.shape) != (b, f, n):
            raise ValueError(
                f"FLoSP: gather_index {tuple(gather_index.shape)} / fov_mask {tuple(fov_mask.shape)} "
                f"do not match features (B={b}, F={f}) and the grid ({n} voxels)"
            )
        h, w = int(image_size[0]), int(image_size[1])
        if fh * self.stride < h or fw * self.stride < w:
            raise ValueError(
                f"FLoSP: feature map {fh}x{fw} at stride {self.stride} does not cover the {h}x{w} image"
            )
        if (fh, fw) != feature_size((h, w), self.stride):
            raise ValueError(
                f"FLoSP: feature map {fh}x{fw} is not the stride-{self.stride} map of a {h}x{w} image "
                f"{feature_size((h, w), self.stride)} the gather index was made for"
            )
        src = features.reshape(b * f, c, fh * fw)
        src = torch.cat([src, src.new_zeros(b * f, c, 1)], dim=-1)  # slot h*w: zeros for unseen voxels
        index = gather_index.reshape(b * f, 1, n).expand(-1, c, -1)
        lifted = torch.gather(src, 2, index).reshape(b, f, c, n)
        if f > 1:
            # Average over the frames that see each voxel (unseen frames contribute exact zeros).
            counts = fov_mask.sum(dim=1)  # (B, N) int64
            counts = torch.where(counts == 0, torch.ones_like(counts), counts)
            lifted = torch.sum(lifted * fov_mask.unsqueeze(2).to(lifted.dtype), dim=1) / counts[:, None]
        else:
            lifted = lifted[:, 0]
        return lifted.reshape(b, c, *self.grid.dims)
