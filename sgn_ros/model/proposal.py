# Depth-based sparse voxel proposal network of SGN (reference `SGNHeadOcc`, guidance enabled).
#
# Pseudo-LiDAR points (from a depth map, all frames moved into the current LiDAR frame) are
# voxelised on the full grid (256 x 256 x 32). Per point: xyz, xyz minus the mean of the points of
# its voxel, xyz minus the voxel's minimum corner (the reference calls it the "centre" but adds no
# half voxel; we keep its arithmetic) -> MLP 9-16-16 -> mean per voxel -> two sparse residual
# blocks -> multi-scale pooled attention to one channel -> sigmoid -> dense (B, Z, X, Y)
# bird's-eye map with height as channels -> 2-D U-Net (widths 32, 48, 64, 80 at 1, 1/2, 1/4, 1/8,
# decoder back to 1/2 with Z/8, Z/4, Z/2-channel "height" outputs) -> 3-D segmentation head with
# ASPP (dilations 1, 2, 3) on the (Z/2)-channel map seen as a 1-channel volume: one occupancy
# logit and `guidance_channels` guidance features per 1/2-scale voxel.
#
# Batched: all samples' voxels form one sparse tensor (batch index in its coordinates).
# Points outside the volume (1e-4 m margin) are dropped. A sample with fewer than
# MIN_POINTS in-volume points is treated as empty (its bird's-eye map is zeros) - the reference
# replaces such input by 10 random points, which is not reproducible.
"""Sparse voxel proposal network: pseudo-LiDAR points -> 1/2-scale occupancy logits + guidance."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sgn_ros.grid import VoxelGrid
from sgn_ros.model.sparse_blocks import MultiScalePooledAttention, make_res_blocks, scatter_mean
from sgn_ros.model.spconv_compat import spconv

__all__ = ["SparseVoxelProposal", "BEVUNet", "SegmentationHead3d", "MIN_POINTS", "RANGE_MARGIN"]

#: Samples with fewer in-volume points than this are treated as having none.
MIN_POINTS = 10
#: Points closer than this to the volume's faces (metres) are dropped, as the reference does.
RANGE_MARGIN = 1e-4
#: Dilations of the segmentation head's ASPP.
SEG_HEAD_DILATIONS = (1, 2, 3)
#: Width of the point MLP and of the sparse point-voxel features.
POINT_CHANNELS = 16


def _double_conv(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool else []
    layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


class BEVUNet(nn.Module):
    """2-D U-Net on the bird's-eye occupancy map, height as channels (LMSCNet style).

    Args:
        height: Z, channels of the input map (voxels along z of the full grid).
        widths: encoder widths at 1, 1/2, 1/4, 1/8 (reference: 32, 48, 64, 80).

    Forward: (B, Z, X, Y) -> (B, Z/2, X/2, Y/2), the 1/2-scale map with Z/2 "height" channels.
    `up_1_8_to_1_1` and `up_1_4_to_1_1` exist in the reference checkpoints but are never used.
    """

    def __init__(self, height: int, widths: Sequence[int]) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"BEVUNet: need 4 encoder widths, got {tuple(widths)}")
        if height % 8:
            raise ValueError(f"BEVUNet: grid height {height} voxels must be divisible by 8")
        w1, w2, w4, w8 = (int(w) for w in widths)
        h8, h4, h2 = height // 8, height // 4, height // 2
        self.enc1 = _double_conv(height, w1, pool=False)
        self.enc2 = _double_conv(w1, w2, pool=True)
        self.enc3 = _double_conv(w2, w4, pool=True)
        self.enc4 = _double_conv(w4, w8, pool=True)
        self.out_1_8 = nn.Conv2d(w8, h8, 3, padding=1)
        self.up_1_8_to_1_2 = nn.ConvTranspose2d(h8, h8, kernel_size=4, stride=4)
        self.up_1_8_to_1_1 = nn.ConvTranspose2d(h8, h8, kernel_size=8, stride=8)  # unused (checkpoint layout)
        self.up_1_8 = nn.ConvTranspose2d(h8, h8, kernel_size=6, stride=2, padding=2)
        self.dec_1_4 = nn.Conv2d(w4 + h8, w4, 3, padding=1)
        self.out_1_4 = nn.Conv2d(w4, h4, 3, padding=1)
        self.up_1_4_to_1_1 = nn.ConvTranspose2d(h4, h4, kernel_size=4, stride=4)  # unused (checkpoint layout)
        self.up_1_4 = nn.ConvTranspose2d(h4, h4, kernel_size=6, stride=2, padding=2)
        self.dec_1_2 = nn.Conv2d(w2 + h4 + h8, w2, 3, padding=1)
        self.out_1_2 = nn.Conv2d(w2, h2, 3, padding=1)

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        s1 = self.enc1(bev)
        s2 = self.enc2(s1)
        s4 = self.enc3(s2)
        s8 = self.enc4(s4)
        o8 = self.out_1_8(s8)
        x = F.relu(self.dec_1_4(torch.cat([self.up_1_8(o8), s4], dim=1)))
        o4 = self.out_1_4(x)
        x = torch.cat([self.up_1_4(o4), s2, self.up_1_8_to_1_2(o8)], dim=1)
        x = F.relu(self.dec_1_2(x))
        return self.out_1_2(x)


def _conv_depth_last(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """`conv` applied to a volume whose axes (D, H, W) are laid out as (H, W, D): the same
    convolution with the kernel's axes (and its stride, padding, dilation) moved alike."""
    def move(t: tuple[int, ...]) -> tuple[int, ...]:
        return (t[1], t[2], t[0])

    return F.conv3d(x, conv.weight.permute(0, 1, 3, 4, 2), conv.bias, move(conv.stride), move(conv.padding),
                    move(conv.dilation), conv.groups)


class SegmentationHead3d(nn.Module):
    """MonoScene-style 3-D segmentation head with ASPP (reference `SegmentationHead`).

    (B, D, H, W) map seen as a 1-channel volume -> logits (B, classes, D, H, W) and, if
    `guidance_channels` > 0, guidance features (B, guidance_channels, D, H, W)
    (Conv3d + BN + ReLU on the ASPP output), else None.

    On the CPU the volume is convolved laid out as (H, W, D) and the outputs are views in
    (D, H, W) axes (contiguous in (H, W, D), the order SparseVoxelProposal hands on): PyTorch's
    CPU convolution takes its slow reference kernels (slow_conv3d, slow_conv_dilated3d) when
    N * C * D * H of a batch-1 input is small, a rule made for 2-D convolutions that SGN's
    (1, 8, 16, 128) trips, and those were a quarter of SGN-L's CPU forward (~1 s); laid out
    (1, 8, 128, 128, 16) the same convolutions run in oneDNN, 10-17x faster, with the same sums in
    another order (~1e-6 relative). Other devices run the module's layout, as the reference.
    """

    def __init__(self, planes: int, num_classes: int, guidance: bool, dilations: Sequence[int] = SEG_HEAD_DILATIONS):
        super().__init__()
        self.conv0 = nn.Conv3d(1, planes, 3, padding=1)
        self.conv1 = nn.ModuleList(nn.Conv3d(planes, planes, 3, padding=d, dilation=d, bias=False) for d in dilations)
        self.bn1 = nn.ModuleList(nn.BatchNorm3d(planes) for _ in dilations)
        self.conv2 = nn.ModuleList(nn.Conv3d(planes, planes, 3, padding=d, dilation=d, bias=False) for d in dilations)
        self.bn2 = nn.ModuleList(nn.BatchNorm3d(planes) for _ in dilations)
        self.guidance_layer = None
        if guidance:
            self.guidance_layer = nn.Sequential(
                nn.Conv3d(planes, planes, 3, padding=1), nn.BatchNorm3d(planes), nn.ReLU()
            )
        self.conv_classes = nn.Conv3d(planes, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = x[:, None]
        depth_last = x.device.type == "cpu"
        if depth_last:
            x = x.permute(0, 1, 3, 4, 2)

        def conv(module: nn.Conv3d, t: torch.Tensor) -> torch.Tensor:
            return _conv_depth_last(module, t) if depth_last else module(t)

        x = F.relu(conv(self.conv0, x))
        y = None
        for c1, b1, c2, b2 in zip(self.conv1, self.bn1, self.conv2, self.bn2):
            branch = b2(conv(c2, F.relu(b1(conv(c1, x)))))
            y = branch if y is None else y + branch
        x = F.relu(y + x)
        guide = None
        if self.guidance_layer is not None:
            g_conv, g_bn, g_act = self.guidance_layer
            guide = g_act(g_bn(conv(g_conv, x)))
        logits = conv(self.conv_classes, x)
        if depth_last:  # views in (D, H, W) axes
            logits = logits.permute(0, 1, 4, 2, 3)
            guide = guide.permute(0, 1, 4, 2, 3) if guide is not None else None
        return logits, guide


class SparseVoxelProposal(nn.Module):
    """Pseudo-LiDAR points -> proposal occupancy logits and guidance features at 1/2 scale.

    Args:
        grid: the full-resolution grid the points are voxelised on.
        widths: BEV U-Net encoder widths.
        guidance_channels: guidance features handed to the diffusion block (0: none).
        point_blocks: sparse residual blocks on the point voxels (reference: 2).

    Forward: points list of B tensors (N_i, >=3) metres in the current LiDAR frame ->
    (logits (B, 1, X/2, Y/2, Z/2), guidance (B, G, X/2, Y/2, Z/2) or None).
    """

    def __init__(self, grid: VoxelGrid, widths: Sequence[int], guidance_channels: int, point_blocks: int = 2):
        super().__init__()
        self.grid = grid
        c = POINT_CHANNELS
        self.point_mlp = nn.Sequential(nn.Linear(9, c), nn.LayerNorm(c), nn.ReLU(), nn.Linear(c, c))
        self.point_blocks = make_res_blocks(c, c, point_blocks, "proposal_points")
        self.point_attention = MultiScalePooledAttention(c, 1, c)
        self.bev_unet = BEVUNet(grid.dims[2], widths)
        self.seg_head = SegmentationHead3d(guidance_channels or 8, 1, guidance=guidance_channels > 0)
        self.guidance_channels = int(guidance_channels)
        lo = [float(v) for v in grid.origin]
        hi = [float(v) for v in grid.upper]
        # float32 corners and voxel edges computed as the reference computes them
        rng = torch.tensor([lo, hi], dtype=torch.float32).T  # (3, 2)
        self.register_buffer("range_lo", rng[:, 0].clone(), persistent=False)
        self.register_buffer(
            "voxel_edge", (rng[:, 1] - rng[:, 0]) / torch.tensor(grid.dims, dtype=torch.float32), persistent=False
        )
        self._lo, self._hi = lo, hi

    # ------------------------------------------------------------------ voxelisation
    def _gather_points(self, points: Sequence[torch.Tensor], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenate in-volume points (M, 3) float32 with their batch index (M,) int64."""
        device = self.range_lo.device
        xyz = torch.cat([p[:, :3].to(device=device, dtype=torch.float32) for p in points])
        counts = torch.tensor([int(p.shape[0]) for p in points], device=device)
        # output_size known on the host: no device -> host wait for the sum of counts
        batch = torch.repeat_interleave(torch.arange(batch_size, device=device), counts, output_size=int(xyz.shape[0]))
        keep = torch.ones(xyz.shape[0], dtype=torch.bool, device=device)
        for a in range(3):
            keep &= (xyz[:, a] > self._lo[a] + RANGE_MARGIN) & (xyz[:, a] < self._hi[a] - RANGE_MARGIN)
        per_sample = torch.zeros(batch_size, dtype=torch.long, device=device).index_add_(0, batch, keep.long())
        keep &= per_sample[batch] >= MIN_POINTS
        return xyz[keep], batch[keep]

    def voxelize(self, xyz: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Point features averaged per voxel: (V, 16) features and (V, 4) int32 (b, x, y, z) indices."""
        dims = self.grid.dims
        idx = []
        for a in range(3):
            q = dims[a] * (xyz[:, a] - self._lo[a]) / (self._hi[a] - self._lo[a])
            idx.append(q.long())
        ijk = torch.stack(idx, dim=1)  # (M, 3)
        key = ((batch * dims[0] + ijk[:, 0]) * dims[1] + ijk[:, 1]) * dims[2] + ijk[:, 2]
        uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
        num = uniq.shape[0]
        mean = scatter_mean(xyz, inverse, num)[inverse]
        corner = ijk * self.voxel_edge + self.range_lo
        feats = self.point_mlp(torch.cat([xyz, xyz - mean, xyz - corner], dim=1))
        voxel_feats = scatter_mean(feats, inverse, num)
        z = uniq % dims[2]
        rest = torch.div(uniq, dims[2], rounding_mode="floor")
        y = rest % dims[1]
        rest = torch.div(rest, dims[1], rounding_mode="floor")
        x = rest % dims[0]
        b = torch.div(rest, dims[0], rounding_mode="floor")
        return voxel_feats, torch.stack([b, x, y, z], dim=1).to(torch.int32)

    def bev_map(self, points: Sequence[torch.Tensor], batch_size: int) -> torch.Tensor:
        """Soft bird's-eye occupancy (B, Z, X, Y) in [0, 1] (0 where no point voxel)."""
        xyz, batch = self._gather_points(points, batch_size)
        x_dim, y_dim, z_dim = self.grid.dims
        if xyz.shape[0] == 0:
            return self.range_lo.new_zeros(batch_size, z_dim, x_dim, y_dim)
        feats, coords = self.voxelize(xyz, batch)
        sp = spconv.SparseConvTensor(feats, coords, list(self.grid.dims), batch_size)
        sp = self.point_blocks(sp)
        occ = self.point_attention(sp.features, sp.indices, self.grid.dims)
        dense = sp.replace_feature(torch.sigmoid(occ)).dense()  # (B, 1, X, Y, Z)
        return dense[:, 0].permute(0, 3, 1, 2)

    def forward(
        self, points: Sequence[torch.Tensor], batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if len(points) != batch_size:
            raise ValueError(f"SparseVoxelProposal: expected {batch_size} point tensors, got {len(points)}")
        half = self.bev_unet(self.bev_map(points, batch_size))  # (B, Z/2, X/2, Y/2)
        logits, guide = self.seg_head(half)
        logits = logits.permute(0, 1, 3, 4, 2)
        if guide is not None:
            guide = guide.permute(0, 1, 3, 4, 2)
        return logits, guide
