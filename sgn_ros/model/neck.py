# Image neck of SGN: mmdet's FPN as the reference configures it (one input level, start_level 0,
# num_outs 1, no norm, no activation), so the output is fpn_conv(lateral_conv(x)): a 1x1 conv
# that brings the ResNet stage-3 channels (1024 / 256) to D, then a 3x3 conv at D. Module names
# follow mmdet's ConvModule wrapping (lateral_convs.0.conv, fpn_convs.0.conv) so the reference
# checkpoints' `img_neck.*` tensors load unchanged. Several levels are supported with mmdet's
# top-down pathway (nearest upsampling + sum), which reduces to the above for one level.
"""FPN neck: lateral 1x1 + output 3x3 convolutions with mmdet-compatible names."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FPNNeck"]


class _ConvUnit(nn.Module):
    """A conv with bias under the attribute name `conv` (mmcv ConvModule without norm / act)."""

    def __init__(self, cin: int, cout: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FPNNeck(nn.Module):
    """Feature pyramid neck (mmdet FPN semantics, outputs = inputs, no extra levels).

    Args:
        in_channels: channels of each input level (an int for the single level SGN uses).
        out_channels: D, the channels of every output level.

    Forward: a tensor (N, C_in, h, w) -> (N, D, h, w); or a sequence of levels (fine to coarse)
    -> a list of (N, D, h_i, w_i).
    """

    def __init__(self, in_channels: int | Sequence[int], out_channels: int) -> None:
        super().__init__()
        ins = [int(in_channels)] if isinstance(in_channels, int) else [int(c) for c in in_channels]
        if not ins or any(c <= 0 for c in ins) or out_channels <= 0:
            raise ValueError(f"FPNNeck: invalid channels in={in_channels!r} out={out_channels!r}")
        self.in_channels = tuple(ins)
        self.out_channels = int(out_channels)
        self.lateral_convs = nn.ModuleList(_ConvUnit(c, out_channels, 1) for c in ins)
        self.fpn_convs = nn.ModuleList(_ConvUnit(out_channels, out_channels, 3) for _ in ins)
        # mmdet FPN init: Xavier-uniform weights, zero bias.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, features: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        single = isinstance(features, torch.Tensor)
        levels = [features] if single else list(features)
        if len(levels) != len(self.lateral_convs):
            raise ValueError(f"FPNNeck: expected {len(self.lateral_convs)} input level(s), got {len(levels)}")
        for i, (x, c) in enumerate(zip(levels, self.in_channels)):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(f"FPNNeck: level {i} expected (N, {c}, h, w), got {tuple(x.shape)}")
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, levels)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse into fine
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + up
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        return outs[0] if single else outs
