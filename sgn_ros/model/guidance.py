# Sparse guidance block of SGN (reference `SGB`): the seed voxels (proposal logit > 0) carry
# their lifted features through a sparse residual block and the multi-scale pooled attention at
# 1/2 resolution; the result is max-pooled into 2x2x2 cells (1/4 resolution) and goes through a
# second block + attention; a linear layer fuses [input, level 1, level 2 scattered back].
#
# Like the reference, the sparse tensors are indexed (batch, z, y, x) with spatial shape
# (Z, Y, X): spconv kernels are laid out in index order, so this keeps the released 3x3x3 weights
# meaningful. Callers pass (batch, x, y, z) indices; the flip happens here.
"""Sparse guidance block: seed voxel features -> geometry-aware seed descriptors."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sgn_ros.model.sparse_blocks import MultiScalePooledAttention, group_cells, make_res_blocks, scatter_max
from sgn_ros.model.spconv_compat import spconv

__all__ = ["SparseGuidanceBlock"]


class SparseGuidanceBlock(nn.Module):
    """Seed features (S, C) at (S, 4) (batch, x, y, z) indices of a grid of `dims` -> (S, C).

    Args:
        channels: C, the lifted feature width (D).
        dims: (X, Y, Z) of the grid the seeds live on (the 1/2-scale grid); even sizes.
    """

    def __init__(self, channels: int, dims: Sequence[int]) -> None:
        super().__init__()
        if any(int(d) % 2 for d in dims):
            raise ValueError(f"SparseGuidanceBlock: grid dims {tuple(dims)} must be even (2x2x2 pooling)")
        self.dims = tuple(int(d) for d in dims)
        c = channels
        self.block1 = make_res_blocks(c, c, 1, "guidance_1")
        self.attention1 = MultiScalePooledAttention(c, c, c)
        self.block2 = make_res_blocks(c, c, 1, "guidance_2")
        self.attention2 = MultiScalePooledAttention(c, c, c)
        self.fuse = nn.Linear(3 * c, c)

    def forward(self, features: torch.Tensor, index: torch.Tensor, batch_size: int) -> torch.Tensor:
        coords = torch.stack([index[:, 0], index[:, 3], index[:, 2], index[:, 1]], dim=1).to(torch.int32)
        shape = list(self.dims[::-1])  # (Z, Y, X)
        level1 = self.block1(spconv.SparseConvTensor(features, coords, shape, batch_size))
        proj1 = self.attention1(level1.features, coords, shape)

        cells, inverse = group_cells(coords, 2, shape)
        pooled = scatter_max(proj1, inverse, cells.shape[0])
        shape2 = [s // 2 for s in shape]
        cells32 = cells.to(torch.int32)
        level2 = self.block2(spconv.SparseConvTensor(pooled, cells32, shape2, batch_size))
        proj2 = self.attention2(level2.features, cells32, shape2)
        return self.fuse(torch.cat([features, proj1, proj2[inverse]], dim=1))
