# Sparse building blocks shared by SGN's sparse voxel proposal network (point voxels at full
# resolution) and its sparse guidance block (seed voxels at 1/2 resolution):
#   * `SparseResBlock`: submanifold residual block - a 1x1x1 shortcut + BN next to
#     3x3x3 conv, BN, LeakyReLU(0.1), 3x3x3 conv, BN; sum, LeakyReLU(0.1) (spconv SubMConv3d,
#     weights [out, k, k, k, in]);
#   * `MultiScalePooledAttention`: features are mean-pooled in cells of 2, 4, 6, 8 voxels, each
#     scale goes through a small MLP, the scales are fused with sigmoid attention, and a linear
#     projection maps [reduced input, fused scales] to the output channels;
#   * native-torch scatter helpers (`scatter_mean`, `scatter_max`, `group_cells`) replacing
#     torch_scatter: index_add_ for the sums and the counts of means (same summation as
#     torch_scatter; bincount would wait on CUDA for the largest index), amax with an
#     arg-max-routed gradient for max pooling (fast backward on the CPU).
"""Sparse residual blocks, multi-scale pooled attention and native scatter helpers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sgn_ros.model.spconv_compat import spconv

__all__ = [
    "scatter_mean",
    "scatter_max",
    "group_cells",
    "SparseResBlock",
    "make_res_blocks",
    "MultiScalePooledAttention",
    "POOL_SCALES",
    "LEAKY_SLOPE",
]

#: Cell sizes (voxels) of the pooled attention, as the reference's SGFE.
POOL_SCALES = (2, 4, 6, 8)
#: Negative slope of the LeakyReLUs in the sparse residual blocks.
LEAKY_SLOPE = 0.1


# --------------------------------------------------------------------------- scatter helpers
def scatter_mean(src: torch.Tensor, index: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Mean of the rows of `src` (N, C) per group `index` (N,) in [0, num_groups) -> (G, C).

    Empty groups give zeros (torch_scatter's convention).
    """
    total = src.new_zeros((num_groups, *src.shape[1:])).index_add_(0, index, src)
    # the counts bincount would give, without its device -> host wait for the largest index
    count = index.new_zeros(num_groups).index_add_(0, index, torch.ones_like(index)).clamp_(min=1)
    return total / count.view(-1, *([1] * (src.dim() - 1))).to(src.dtype)


class _ScatterMax(torch.autograd.Function):
    """Per-group, per-channel maximum; the gradient goes to the first row holding the maximum."""

    @staticmethod
    def forward(ctx, src: torch.Tensor, index: torch.Tensor, num_groups: int) -> torch.Tensor:  # type: ignore[override]
        idx = index.view(-1, 1).expand_as(src)
        out = src.new_zeros((num_groups, src.shape[1])).scatter_reduce_(0, idx, src, "amax", include_self=False)
        rows = torch.arange(src.shape[0], device=src.device).view(-1, 1).expand_as(src)
        is_max = src == out.gather(0, idx)
        candidate = torch.where(is_max, rows, torch.full_like(rows, src.shape[0]))
        arg = torch.full((num_groups, src.shape[1]), src.shape[0], dtype=torch.long, device=src.device)
        arg.scatter_reduce_(0, idx, candidate, "amin", include_self=True)
        ctx.save_for_backward(arg)
        ctx.num_rows = src.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (arg,) = ctx.saved_tensors
        grad_src = grad_out.new_zeros((ctx.num_rows + 1, grad_out.shape[1]))
        grad_src.scatter_(0, arg, grad_out)  # row num_rows collects empty groups, dropped below
        return grad_src[: ctx.num_rows], None, None


def scatter_max(src: torch.Tensor, index: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Maximum of the rows of `src` (N, C) per group `index` (N,) -> (G, C); every group must be non-empty."""
    return _ScatterMax.apply(src, index, num_groups)


def group_cells(
    coords: torch.Tensor, cell: int, spatial_shape: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group sparse voxels by (batch, coords // cell).

    Args:
        coords: (N, 1 + D) int (batch, i_1..i_D) voxel indices.
        cell: cell edge in voxels.
        spatial_shape: extent of each of the D index axes (voxels).

    Returns:
        unique_coords: (G, 1 + D) int64 (batch, i // cell) of the occupied cells, sorted
            lexicographically (as torch.unique(dim=0) sorts).
        inverse: (N,) int64 cell of each voxel.
    """
    c = coords.to(torch.int64)
    cell_dims = [-(-int(s) // cell) for s in spatial_shape]
    key = c[:, 0]
    for axis, extent in enumerate(cell_dims):
        key = key * extent + torch.div(c[:, axis + 1], cell, rounding_mode="floor")
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    parts = []
    rest = uniq
    for extent in reversed(cell_dims):
        parts.append(rest % extent)
        rest = torch.div(rest, extent, rounding_mode="floor")
    parts.append(rest)
    return torch.stack(parts[::-1], dim=1), inverse


# --------------------------------------------------------------------------- residual block
class SparseResBlock(spconv.SparseModule):
    """Submanifold residual block (reference `BasicBlock` of the sparse modules).

    out = LeakyReLU(BN(conv1x1(x)) + BN(conv3(LeakyReLU(BN(conv3(x)))))), slope 0.1, BN eps 1e-5,
    momentum 0.1. All convs share `indice_key` (spconv computes 1x1x1 convs as a matrix product
    without indice pairs, so the 3x3x3 pairs are computed once and reused).
    """

    def __init__(self, in_channels: int, out_channels: int, indice_key: str) -> None:
        super().__init__()
        self.layers_in = spconv.SparseSequential(
            spconv.SubMConv3d(in_channels, out_channels, 1, indice_key=indice_key, bias=False),
            nn.BatchNorm1d(out_channels),
        )
        self.layers = spconv.SparseSequential(
            spconv.SubMConv3d(in_channels, out_channels, 3, indice_key=indice_key, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.LeakyReLU(LEAKY_SLOPE),
            spconv.SubMConv3d(out_channels, out_channels, 3, indice_key=indice_key, bias=False),
            nn.BatchNorm1d(out_channels),
        )

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        if x.features.is_cuda:
            if self.layers[0].weight.dtype == torch.float16:
                # half sparse weights (the predictor's fp16 mode, spconv_compat.sparse_convs_to):
                # spconv has float16 kernels when features AND weights are half; BatchNorm keeps
                # float32 parameters (mixed BN is native on CUDA).
                return self._block(x.replace_feature(x.features.half()))
            # float32 weights: spconv's CUDA kernels find no algorithm for float16 features with
            # them, which is what autocast hands over: the block runs in float32 with autocast off.
            with torch.autocast("cuda", enabled=False):
                return self._block(x.replace_feature(x.features.float()))
        # The conv algorithm (Native on the CPU) is chosen when the model is placed on a device
        # (spconv_compat.place_sparse_convs), not here: a forward changes no module state.
        return self._block(x)

    def _block(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        shortcut = self.layers_in(x)
        out = self.layers(x)
        return out.replace_feature(F.leaky_relu(shortcut.features + out.features, LEAKY_SLOPE))


def make_res_blocks(in_channels: int, out_channels: int, blocks: int, indice_key: str) -> spconv.SparseSequential:
    """`blocks` residual blocks in a SparseSequential (names 0, 1, ...)."""
    layers = [SparseResBlock(in_channels, out_channels, indice_key)]
    layers += [SparseResBlock(out_channels, out_channels, indice_key) for _ in range(1, blocks)]
    return spconv.SparseSequential(*layers)


# --------------------------------------------------------------------------- pooled attention
class MultiScalePooledAttention(nn.Module):
    """Multi-scale pooled-attention projection of sparse voxel features (reference `SGFE`).

    Args:
        in_channels: input feature channels.
        out_channels: output channels.
        reduce_channels: R, width of the reduced features (R/2 per scale).
        scales: cell sizes of the mean pooling.

    Forward: features (N, in), coords (N, 4) int (batch, i, j, k), spatial_shape (3,) ->
    (N, out). `scale_selection` exists in the reference (and its checkpoints) but is never used;
    it is kept for the checkpoint layout.
    """

    def __init__(
        self, in_channels: int, out_channels: int, reduce_channels: int, scales: Sequence[int] = POOL_SCALES
    ) -> None:
        super().__init__()
        r, half = reduce_channels, reduce_channels // 2
        self.scales = tuple(int(s) for s in scales)
        self.feature_reduce = nn.Linear(in_channels, r)
        self.fc_list = nn.ModuleList(nn.Sequential(nn.Linear(r, half), nn.ReLU()) for _ in self.scales)
        self.fcs = nn.ModuleList(nn.Sequential(nn.Linear(half, half)) for _ in self.scales)
        self.scale_selection = nn.Sequential(nn.Linear(len(self.scales) * half, r), nn.ReLU())  # unused
        self.fc = nn.Sequential(nn.Linear(half, half, bias=False), nn.ReLU())
        self.out_fc = nn.Linear(half, r, bias=False)
        self.linear_output = nn.Sequential(nn.Linear(2 * r, r, bias=False), nn.ReLU(), nn.Linear(r, out_channels))

    def forward(self, features: torch.Tensor, coords: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
        reduced = F.relu(self.feature_reduce(features))
        per_scale = []
        for scale, mlp in zip(self.scales, self.fc_list):
            cells, inverse = group_cells(coords, scale, spatial_shape)
            pooled = scatter_mean(reduced, inverse, cells.shape[0])
            per_scale.append(mlp(pooled)[inverse])
        stacked = torch.stack(per_scale, dim=1)  # (N, S, R/2)
        squeezed = self.fc(stacked.sum(1))
        attention = torch.sigmoid(torch.stack([fc(squeezed) for fc in self.fcs], dim=1))
        fused = self.out_fc(torch.sum(stacked * attention, dim=1))
        return self.linear_output(torch.cat([reduced, fused], dim=1))
