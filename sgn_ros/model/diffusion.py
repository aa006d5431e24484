# Multi-scale semantic diffusion block of SGN (the paper's "semantic propagation"): a 3x3x3 conv
# to the block width, `depth` anisotropic multi-path convolutions (AICNet-style: for each axis in
# turn, three 1-D convs of kernel 3 / 5 / 7 along that axis, mixed by per-voxel softmax weights,
# with a residual), then a 3-D ASPP (dilations 1, 2, 4). The same block (depth 1) starts the
# geometry-guidance occupancy head.
#
# Tensor layout (B, C, X, Y, Z): a (1, 1, k) kernel runs along Z, (1, k, 1) along Y, (k, 1, 1)
# along X; they are applied in that order, as the reference does.
"""Semantic diffusion block: anisotropic multi-path convolutions + 3-D ASPP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AnisotropicConv", "ASPP3d", "SemanticDiffusionBlock", "ANISO_KERNELS", "ASPP_DILATIONS"]

#: Kernel lengths of the paths of an anisotropic conv.
ANISO_KERNELS = (3, 5, 7)
#: Dilations of the ASPP branches.
ASPP_DILATIONS = (1, 2, 4)


class AnisotropicConv(nn.Module):
    """Anisotropic multi-path convolution with residual (reference `MPAC`, version 1).

    `conv_mx` predicts 3 x n per-voxel logits, softmax-normalised over the n paths of each axis
    group. Group 2 weights the (1, 1, k) convs (applied first), group 1 the (1, k, 1) convs, group
    0 the (k, 1, 1) convs; each stage sums gate * ReLU(conv(previous stage)). Output:
    ReLU(stage3 + x). Shape preserving: (B, C, X, Y, Z) -> same.

    Without autograd (inference) the ReLUs, gates and sums work in place on each conv's fresh
    output: the same float operations (a product is commutative), so the same bits, without a new
    full-size volume per operation (SGN-L: 34 MB each, just above glibc's largest mmap threshold,
    so each was mapped and page-faulted afresh): 500 -> 360 ms per block on the 2-core CPU. Not
    under autocast: there the float16 conv outputs meet float32 gates, and the reference's
    out-of-place products promote the sums to float32, which in place they would not.
    """

    def __init__(self, channels: int, kernels: Sequence[int] = ANISO_KERNELS) -> None:
        super().__init__()
        c = channels
        self.n = len(kernels)
        self.conv_mx = nn.Conv3d(c, 3 * self.n, 1, bias=False)
        self.conv_1x1xk = nn.ModuleList(nn.Conv3d(c, c, (1, 1, k), padding=(0, 0, k // 2)) for k in kernels)
        self.conv_1xkx1 = nn.ModuleList(nn.Conv3d(c, c, (1, k, 1), padding=(0, k // 2, 0)) for k in kernels)
        self.conv_kx1x1 = nn.ModuleList(nn.Conv3d(c, c, (k, 1, 1), padding=(k // 2, 0, 0)) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, *spatial = x.shape
        gates = torch.softmax(self.conv_mx(x).view(b, 3, self.n, 1, *spatial), dim=2)  # (B, 3, n, 1, X, Y, Z)
        # nothing keeps the intermediates for a backward, and no autocast mixes dtypes
        in_place = not torch.is_grad_enabled() and not torch.is_autocast_enabled(x.device.type)
        y = x
        for group, convs in ((2, self.conv_1x1xk), (1, self.conv_1xkx1), (0, self.conv_kx1x1)):
            acc = None
            for i, conv in enumerate(convs):
                if in_place:
                    term = conv(y).relu_().mul_(gates[:, group, i])
                    acc = term if acc is None else acc.add_(term)
                else:
                    term = gates[:, group, i] * F.relu(conv(y))
                    acc = term if acc is None else acc + term
            y = acc
        return y.add_(x).relu_() if in_place else F.relu(y + x)


class ASPP3d(nn.Module):
    """3-D atrous spatial pyramid: 1x1x1 reduce to C/2, three dilated 3x3x3 convs, 1x1x1 fusion to C, ReLU."""

    def __init__(self, channels: int, dilations: Sequence[int] = ASPP_DILATIONS) -> None:
        super().__init__()
        c = channels // 2
        self.dilations = tuple(dilations)
        self.reduce = nn.Conv3d(channels, c, 1)
        for d in self.dilations:
            setattr(self, f"aspp_{d}", nn.Conv3d(c, c, 3, padding=d, dilation=d))
        self.fusion = nn.Conv3d(c * len(self.dilations), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reduce(x)
        branches = [getattr(self, f"aspp_{d}")(r) for d in self.dilations]
        return F.relu(self.fusion(torch.cat(branches, dim=1)))


class SemanticDiffusionBlock(nn.Module):
    """Reference `SDB`: conv_in (3x3x3, in -> out), `depth` anisotropic convs, ASPP.

    (B, in_channels, X, Y, Z) -> (B, out_channels, X, Y, Z).
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int) -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"SemanticDiffusionBlock: depth must be >= 0, got {depth}")
        self.conv_in = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.diffusion = nn.Sequential(*[AnisotropicConv(out_channels) for _ in range(depth)])
        self.aspp = ASPP3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aspp(self.diffusion(self.conv_in(x)))
