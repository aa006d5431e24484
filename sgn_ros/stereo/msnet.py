# MobileStereoNet (Shamsafar et al., WACV 2022): the stereo network whose disparity, turned into
# pseudo-LiDAR, the released SGN / VoxFormer checkpoints were trained on (depth_model: msnet3d).
# Written from the public description and code of cogsys-tuebingen/mobilestereonet, with our own
# module names; the released checkpoints load through REFERENCE_NAME_TABLE below. Behaviour kept
# on purpose, because the released weights were trained with it:
#   * the 3D MobileNetV2 blocks never add their residual (the reference compares an int stride with
#     (1, 1, 1), which is always False); the 2D ones do when stride 1 and in == out;
#   * the 2D variant's interlaced cost of disparity d is computed on the overlap w >= d only, i.e.
#     its 3x3 convolutions see zero padding at column d (we mask instead of cropping, so all
#     disparities run as one batch);
#   * inputs are ImageNet-normalised, then zero-padded at the top and right to 384 x 1248 (KITTI),
#     and the padding is cropped from the disparity.
"""MobileStereoNet-3D / -2D disparity networks, their checkpoints and a stereo-depth front end."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("msnet3d", "msnet2d")
#: the reference's maximum disparity (pixels at full resolution)
DEFAULT_MAXDISP = 192
#: the reference pads KITTI images (top, right) to this size; larger images go to a multiple of 16
REFERENCE_PAD_SIZE = (384, 1248)
#: the network halves the resolution four times (2 in the features, 2 in each hourglass)
SIZE_MULTIPLE = 16
#: nominal KITTI baseline (m) the reference multiplies with P2's focal length (388.1823 = 0.54 * 718.856)
REFERENCE_BASELINE_M = 0.54
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: written into converted checkpoints; read back by `load_msnet`
CHECKPOINT_FORMAT = "sgn_ros.msnet"

WEIGHTS_HELP = (
    "MobileStereoNet weights are not bundled. Download a released checkpoint from the tables of "
    "https://github.com/cogsys-tuebingen/mobilestereonet (README, 'Evaluation Results'; the SGN / VoxFormer "
    "depth uses 3D-MobileStereoNet 'SF + DS + KITTI2015', the file MSNet3D_SF_DS_KITTI2015.ckpt that "
    "VoxFormer ships in preprocess/mobilestereonet/), then pass it directly or convert it with "
    "`sgn-ros convert-checkpoint MSNet3D_SF_DS_KITTI2015.ckpt msnet3d.pt --kind msnet`. "
    "An untrained depth network is never run."
)


class MSNetWeightsMissing(FileNotFoundError):
    """No MobileStereoNet weights were given or found; the message says where to get them."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{detail + ': ' if detail else ''}{WEIGHTS_HELP}")


# --------------------------------------------------------------------------- building blocks
def conv_bn(cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, dilation: int = 1) -> nn.Sequential:
    """Conv2d (no bias) + BatchNorm2d; a dilated conv pads by its dilation as the reference does."""
    pad = dilation if dilation > 1 else pad
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False), nn.BatchNorm2d(cout))


def conv_bn_3d(cin: int, cout: int, k: int, stride: int, pad: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, k, stride, pad, bias=False), nn.BatchNorm3d(cout))


class InvertedResidual(nn.Module):
    """MobileNetV2 block (1x1 expand, 3x3 depthwise, 1x1 project) in 2D or 3D.

    `residual` is passed explicitly: the reference's 3D block never adds it (see the file header).
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: float, dims: int = 2, dilation: int = 1,
                 residual: bool | None = None) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        hidden = int(cin * expand) if dims == 2 else round(cin * expand)
        self.residual = (stride == 1 and cin == cout) if residual is None else residual
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [conv(cin, hidden, 1, 1, 0, bias=False), bn(hidden), nn.ReLU6(inplace=True)]
        layers += [
            conv(hidden, hidden, 3, stride, dilation, dilation=dilation, groups=hidden, bias=False),
            bn(hidden),
            nn.ReLU6(inplace=True),
            conv(hidden, cout, 1, 1, 0, bias=False),
            bn(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def separable_conv_bn(cin: int, cout: int, stride: int, pad: int, dilation: int, last_relu: bool) -> nn.Sequential:
    """MobileNetV1 depthwise-separable 3x3 conv: dw conv + BN + ReLU6, pw conv + BN (+ ReLU6)."""
    pad = dilation if dilation > 1 else pad
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cin, 3, stride, pad, dilation=dilation, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU6(inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if last_relu:
        layers.append(nn.ReLU6(inplace=False))
    return nn.Sequential(*layers)


class SeparableResidual(nn.Module):
    """Two MobileNetV1 separable convs with a (1x1 conv projected when needed) skip connection."""

    def __init__(self, cin: int, cout: int, stride: int, pad: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = separable_conv_bn(cin, cout, stride, pad, dilation, last_relu=True)
        self.conv2 = separable_conv_bn(cout, cout, 1, pad, dilation, last_relu=False)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.conv1(x)) + skip


class FeatureExtractor(nn.Module):
    """Shared left/right features at 1/4 resolution: 320 channels (64 + 128 + 128 of three stages)."""

    def __init__(self, relu_after_stem: bool) -> None:
        super().__init__()
        stem: list[nn.Module] = []
        for cin in (3, 32, 32):
            stem.append(InvertedResidual(cin, 32, 2 if cin == 3 else 1, 3))
            if relu_after_stem:
                stem.append(nn.ReLU(inplace=True))
        self.stem = nn.Sequential(*stem)
        self.layer1 = self._stage(32, 32, 3, 1, 1)
        self.layer2 = self._stage(32, 64, 16, 2, 1)
        self.layer3 = self._stage(64, 128, 3, 1, 1)
        self.layer4 = self._stage(128, 128, 3, 1, 2)

    @staticmethod
    def _stage(cin: int, cout: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        return nn.Sequential(*[SeparableResidual(cin if i == 0 else cout, cout, stride if i == 0 else 1, 1, dilation)
                               for i in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        l2 = self.layer2(self.layer1(self.stem(x)))
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        return torch.cat((l2, l3, l4), dim=1)


class Hourglass(nn.Module):
    """Encoder-decoder over the cost (2D: disparities as channels; 3D: a disparity axis)."""

    def __init__(self, c: int, dims: int) -> None:
        super().__init__()
        deconv = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        res = None if dims == 2 else False

        def block(cin: int, cout: int, stride: int) -> InvertedResidual:
            return InvertedResidual(cin, cout, stride, 2, dims, residual=res)

        self.conv1 = block(c, 2 * c, 2)
        self.conv2 = block(2 * c, 2 * c, 1)
        self.conv3 = block(2 * c, 4 * c, 2)
        self.conv4 = block(4 * c, 4 * c, 1)
        self.conv5 = nn.Sequential(deconv(4 * c, 2 * c, 3, 2, 1, output_padding=1, bias=False), bn(2 * c))
        self.conv6 = nn.Sequential(deconv(2 * c, c, 3, 2, 1, output_padding=1, bias=False), bn(c))
        self.redir1 = block(c, c, 1)
        self.redir2 = block(2 * c, 2 * c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv2 = self.conv2(self.conv1(x))
        conv4 = self.conv4(self.conv3(conv2))
        conv5 = F.relu(self.conv5(conv4) + self.redir2(conv2), inplace=True)
        return F.relu(self.conv6(conv5) + self.redir1(x), inplace=True)


# --------------------------------------------------------------------------- cost volumes
def _chunk(n_disp: int, bytes_per_disp: int, budget: int = 256 << 20) -> int:
    return max(1, min(n_disp, budget // max(bytes_per_disp, 1)))


def groupwise_correlation_volume(left: torch.Tensor, right: torch.Tensor, max_disp: int, groups: int) -> torch.Tensor:
    """(B, G, D, H, W) volume: mean over each channel group of left(w) * right(w - d), 0 where w < d.

    Disparities are processed in chunks of one strided view of the left-padded right features, so
    that the (B, C, D, H, W) product is never held at once (1.8 GB at KITTI size).
    """
    b, c, h, w = left.shape
    if c % groups:
        raise ValueError(f"groupwise_correlation_volume: {c} channels do not split into {groups} groups")
    windows = F.pad(right, (max_disp - 1, 0)).unfold(3, w, 1)  # (B, C, H, D, W); index k: shift D-1-k
    volume = left.new_empty((b, groups, max_disp, h, w))
    step = _chunk(max_disp, left.element_size() * c * h * w)
    for d0 in range(0, max_disp, step):
        d1 = min(max_disp, d0 + step)
        shifted = windows[:, :, :, max_disp - d1 : max_disp - d0].flip(3)  # disparities d0 .. d1-1
        prod = left.unsqueeze(3) * shifted
        volume[:, :, d0:d1] = prod.view(b, groups, c // groups, h, d1 - d0, w).mean(2).permute(0, 1, 3, 2, 4)
    return volume


def disparity_regression(cost: torch.Tensor, max_disp: int, size: tuple[int, int]) -> torch.Tensor:
    """Soft-argmin: (B, 1, D', H', W') cost -> upsampled to (max_disp, H, W) -> expected disparity (B, H, W).

    The softmax and sum run in float32 so that float16 networks still resolve sub-pixel disparity.
    """
    cost = F.interpolate(cost, [max_disp, size[0], size[1]], mode="trilinear").squeeze(1)
    prob = F.softmax(cost.float(), dim=1)
    values = torch.arange(max_disp, dtype=prob.dtype, device=prob.device).view(1, max_disp, 1, 1)
    return (prob * values).sum(1)


def _head(c: int, out: int, dims: int) -> nn.Sequential:
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    cb = conv_bn(c, c, 3, 1, 1) if dims == 2 else conv_bn_3d(c, c, 3, 1, 1)
    return nn.Sequential(cb, nn.ReLU(inplace=True), conv(c, out, 3, 1, 1, bias=False))


def _init_weights(model: nn.Module) -> None:
    """The reference's initialisation (He-normal convs, unit BN), so that training from scratch
    starts where theirs does."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            n = math.prod(m.kernel_size) * m.out_channels
            m.weight.data.normal_(0, math.sqrt(2.0 / n))
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            m.weight.data.fill_(1)
            m.bias.data.zero_()


class _MSNet(nn.Module):
    """What both variants share: features -> cost volume -> 2 aggregation stages -> 3 stacked
    hourglasses -> a head per stage -> soft-argmin at full resolution."""

    kind = ""

    def __init__(self, maxdisp: int) -> None:
        super().__init__()
        if maxdisp % SIZE_MULTIPLE:
            raise ValueError(f"{type(self).__name__}: maxdisp must be a multiple of {SIZE_MULTIPLE}, got {maxdisp}")
        self.maxdisp = maxdisp

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def head_cost(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, D', H', W') cost of head `i`."""
        return self.heads[i](x)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> list[torch.Tensor]:
        _check_input(left, right)
        volume = self.cost_volume(self.embed(left), self.embed(right))
        cost0 = self.aggregate0(volume)
        cost0 = self.aggregate1(cost0) + cost0
        outs = [cost0]
        for hg in self.hourglasses:
            outs.append(hg(outs[-1]))
        size = (left.shape[2], left.shape[3])
        heads = range(4) if self.training else (3,)
        return [disparity_regression(self.head_cost(i, outs[i]), self.maxdisp, size) for i in heads]


class MSNet3D(_MSNet):
    """3D MobileStereoNet: group-wise correlation volume (40 groups, maxdisp/4 disparities) refined
    by 3D MobileNetV2 hourglasses. forward(left, right) -> list of (B, H, W) disparities: four in
    training (deep supervision), the last one in eval. Inputs: normalised, H and W multiples of 16."""

    kind = "msnet3d"

    def __init__(self, maxdisp: int = DEFAULT_MAXDISP) -> None:
        super().__init__(maxdisp)
        self.groups = 40
        c = 32
        self.features = FeatureExtractor(relu_after_stem=False)
        blk = lambda i, o: InvertedResidual(i, o, 1, 3, dims=3, residual=False)  # noqa: E731
        self.aggregate0 = nn.Sequential(blk(self.groups, c), blk(c, c))
        self.aggregate1 = nn.Sequential(blk(c, c), blk(c, c))
        self.hourglasses = nn.ModuleList(Hourglass(c, 3) for _ in range(3))
        self.heads = nn.ModuleList(_head(c, 1, 3) for _ in range(4))
        _init_weights(self)

    def cost_volume(self, fl: torch.Tensor, fr: torch.Tensor) -> torch.Tensor:
        return groupwise_correlation_volume(fl, fr, self.maxdisp // 4, self.groups)


class MSNet2D(_MSNet):
    """2D MobileStereoNet: an 'interlacing' cost (left/right channels interleaved, squeezed by 3D
    convs over the channel axis) for 48 disparities, refined by 2D hourglasses with disparities as
    channels. Same interface as MSNet3D."""

    kind = "msnet2d"

    def __init__(self, maxdisp: int = DEFAULT_MAXDISP) -> None:
        super().__init__(maxdisp)
        self.volume_size = 48
        c = 48
        self.features = FeatureExtractor(relu_after_stem=True)
        self.reduce = nn.Sequential(
            conv_bn(320, 256, 1), nn.ReLU(inplace=True), conv_bn(256, 128, 1), nn.ReLU(inplace=True),
            conv_bn(128, 64, 1), nn.ReLU(inplace=True), nn.Conv2d(64, 32, 1, 1, 0, 1),
        )
        self.interlace = nn.Sequential(
            nn.Conv3d(1, 16, (8, 3, 3), (8, 1, 1), (0, 1, 1)), nn.BatchNorm3d(16), nn.ReLU(),
            nn.Conv3d(16, 32, (4, 3, 3), (4, 1, 1), (0, 1, 1)), nn.BatchNorm3d(32), nn.ReLU(),
            nn.Conv3d(32, 16, (2, 3, 3), (2, 1, 1), (0, 1, 1)), nn.BatchNorm3d(16), nn.ReLU(),
        )
        self.interlace_proj = nn.Sequential(conv_bn(16, 1, 1), nn.ReLU(inplace=True))
        self.aggregate0 = nn.Sequential(InvertedResidual(c, c, 1, 3), nn.ReLU(inplace=True),
                                        InvertedResidual(c, c, 1, 3), nn.ReLU(inplace=True))
        self.aggregate1 = nn.Sequential(InvertedResidual(c, c, 1, 3), nn.ReLU(inplace=True),
                                        InvertedResidual(c, c, 1, 3))
        self.hourglasses = nn.ModuleList(Hourglass(c, 2) for _ in range(3))
        self.heads = nn.ModuleList(_head(c, c, 2) for _ in range(4))
        _init_weights(self)

    def cost_volume(self, fl: torch.Tensor, fr: torch.Tensor) -> torch.Tensor:
        """(B, 48, H, W) interlaced cost; disparities run batched, in chunks.

        The reference convolves the cropped overlap (w >= d) of each disparity; here the full width
        is convolved with everything left of column d zeroed before every 3x3 layer, which gives the
        same zero neighbourhood at the overlap's border, and the result left of d is set to 0.
        """
        b, c, h, w = fl.shape
        n = self.volume_size
        fr_pad = F.pad(fr, (n - 1, 0)).unfold(3, w, 1)  # (B, C, H, n, W); index k: shift n-1-k
        cols = torch.arange(w, device=fl.device)
        volume = fl.new_zeros((b, n, h, w))
        step = _chunk(n, fl.element_size() * 2 * 64 * c * h * w)
        for d0 in range(0, n, step):
            d1 = min(n, d0 + step)
            k = d1 - d0
            right = fr_pad[:, :, :, n - d1 : n - d0].flip(3).permute(0, 3, 1, 2, 4)  # (B, k, C, H, W)
            woven = torch.stack((fl.unsqueeze(1).expand(b, k, c, h, w), right), dim=3).reshape(b * k, 1, 2 * c, h, w)
            mask = (cols >= torch.arange(d0, d1, device=fl.device).view(k, 1)).to(fl.dtype)  # (k, W)
            mask = mask.repeat(b, 1).view(b * k, 1, 1, 1, w)
            x = woven * mask
            for i in range(0, len(self.interlace), 3):
                conv, bn, act = self.interlace[i : i + 3]
                x = act(bn(conv(x))) * mask
            x = self.interlace_proj(x.squeeze(2)) * mask.squeeze(2)  # (B*k, 1, H, W)
            volume[:, d0:d1] = x.view(b, k, h, w)
        return volume

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.features(x))

    def head_cost(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.heads[i](x).unsqueeze(1)  # disparities as channels -> a disparity axis


def _check_input(left: torch.Tensor, right: torch.Tensor) -> None:
    if left.shape != right.shape or left.dim() != 4 or left.shape[1] != 3:
        raise ValueError(f"MSNet: expected left and right (B, 3, H, W) of equal shape, got {tuple(left.shape)} "
                         f"and {tuple(right.shape)}")
    if left.shape[2] % SIZE_MULTIPLE or left.shape[3] % SIZE_MULTIPLE:
        raise ValueError(f"MSNet: H and W must be multiples of {SIZE_MULTIPLE}, got {tuple(left.shape[2:])}; "
                         "pad with prepare_pair()")


def build_msnet(kind: str = "msnet3d", maxdisp: int = DEFAULT_MAXDISP) -> _MSNet:
    """An untrained network of `kind` ('msnet3d' or 'msnet2d'); load weights before use."""
    if kind not in KINDS:
        raise ValueError(f"build_msnet: kind must be one of {KINDS}, got {kind!r}")
    return MSNet3D(maxdisp) if kind == "msnet3d" else MSNet2D(maxdisp)


# --------------------------------------------------------------------------- reference checkpoints
#: reference parameter-name prefix (after DataParallel's 'module.') -> ours, per network. Inside each
#: block both use the same nn.Sequential indices, so a prefix table maps every tensor; it is applied
#: strictly (every reference tensor must match one row, every one of ours must be filled, shapes equal).
_COMMON = [("feature_extraction.firstconv.", "features.stem.")] + [
    (f"feature_extraction.layer{i}.", f"features.layer{i}.") for i in range(1, 5)
] + [("dres0.", "aggregate0."), ("dres1.", "aggregate1.")] + [
    (f"encoder_decoder{i + 1}.", f"hourglasses.{i}.") for i in range(3)
] + [(f"classif{i}.", f"heads.{i}.") for i in range(4)]
REFERENCE_NAME_TABLE: dict[str, list[tuple[str, str]]] = {
    "msnet3d": _COMMON,
    "msnet2d": _COMMON + [("preconv11.", "reduce."), ("conv3d.", "interlace."), ("volume11.", "interlace_proj.")],
}


def _map_name(name: str, table: list[tuple[str, str]]) -> str | None:
    hits = [ours + name[len(ref) :] for ref, ours in table if name.startswith(ref)]
    return hits[0] if len(hits) == 1 else None


def reference_kind(state_dict: Mapping[str, Any]) -> str:
    """'msnet3d' or 'msnet2d' from a reference state dict's names (2D has the preconv11 reducer)."""
    names = [re.sub(r"^module\.", "", k) for k in state_dict]
    if not any(n.startswith("feature_extraction.") for n in names):
        raise ValueError("not a MobileStereoNet state dict (no 'feature_extraction.' tensors)")
    return "msnet2d" if any(n.startswith("preconv11.") for n in names) else "msnet3d"


def convert_reference_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Reference names -> ours through REFERENCE_NAME_TABLE, strictly, checked against `model`.

    Raises:
        ValueError: listing unmapped reference tensors, our tensors left unfilled, and shape mismatches.
    """
    table = REFERENCE_NAME_TABLE[model.kind]
    ours = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    unmapped, bad_shape = [], []
    for name, t in state_dict.items():
        new = _map_name(re.sub(r"^module\.", "", name), table)
        if new is None or new not in ours:
            unmapped.append(name)
        elif tuple(t.shape) != tuple(ours[new].shape):
            bad_shape.append(f"{name} {tuple(t.shape)} -> {new} {tuple(ours[new].shape)}")
        else:
            out[new] = t
    missing = sorted(set(ours) - set(out) - {n for n in ours if n.endswith("num_batches_tracked")})
    if unmapped or missing or bad_shape:
        def show(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f" (+{len(xs) - 8} more)" if len(xs) > 8 else "")
        raise ValueError(f"{model.kind} checkpoint does not fit: unmapped [{show(unmapped)}], "
                         f"missing [{show(missing)}], shape mismatch [{show(bad_shape)}]")
    return out


def read_msnet_checkpoint(path: Path) -> dict[str, Any]:
    """torch.load(weights_only=True) on the CPU through the package's one checkpoint reader (which
    names the file and what is wrong: empty, truncated, not a dict); a missing file raises
    MSNetWeightsMissing, whose message says where the released weights come from."""
    from sgn_ros.model.checkpoint import read_checkpoint

    if not path.is_file():
        raise MSNetWeightsMissing(f"no MobileStereoNet checkpoint at {path}")
    return read_checkpoint(path)


def is_msnet_checkpoint(ckpt: Mapping[str, Any]) -> bool:
    """True for a released MobileStereoNet file ({'model': DataParallel state dict, ...}) or ours."""
    if ckpt.get("format") == CHECKPOINT_FORMAT:
        return True
    sd = ckpt.get("model", ckpt)
    return isinstance(sd, Mapping) and any(re.sub(r"^module\.", "", str(k)).startswith("feature_extraction.")
                                           for k in sd)


def load_msnet(path: str | os.PathLike[str] | None, device: str | torch.device = "cpu",
               kind: str | None = None, dtype: torch.dtype = torch.float32) -> _MSNet:
    """A MobileStereoNet in eval mode on `device` from a released (.ckpt) or converted checkpoint.

    Args:
        path: the checkpoint; None raises MSNetWeightsMissing (an untrained network is never built
            for inference).
        kind: 'msnet3d' / 'msnet2d'; default from the file. A mismatch raises ValueError.
        dtype: float16 for GPU inference (the soft-argmin still runs in float32).
    """
    if path is None or str(path) == "":
        raise MSNetWeightsMissing("no MobileStereoNet weights given")
    path = Path(path)
    ckpt = read_msnet_checkpoint(path)
    if ckpt.get("format") == CHECKPOINT_FORMAT:
        file_kind, maxdisp = str(ckpt["kind"]), int(ckpt["maxdisp"])
        model = build_msnet(file_kind, maxdisp)
        sd = ckpt["state_dict"]
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [m for m in missing if not m.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"{path}: converted MSNet checkpoint does not fit {file_kind}: missing {missing[:8]}, "
                             f"unexpected {unexpected[:8]}")
    else:
        sd = ckpt.get("model", ckpt)
        if not is_msnet_checkpoint(ckpt):
            raise ValueError(f"{path}: not a MobileStereoNet checkpoint (expected 'model' with feature_extraction.*)")
        file_kind = reference_kind(sd)
        model = build_msnet(file_kind, DEFAULT_MAXDISP)
        try:
            model.load_state_dict(convert_reference_state_dict(sd, model), strict=False)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
    if kind is not None and kind != file_kind:
        raise ValueError(f"{path}: holds a {file_kind} network, but {kind} was asked for")
    return model.to(device=device, dtype=dtype).eval()


def convert_msnet_checkpoint(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str]) -> Path:
    """Released MobileStereoNet .ckpt -> our format (our names, kind, maxdisp, source and sha256)."""
    import hashlib

    from sgn_ros.fileio import atomic_path

    model = load_msnet(input_path)
    digest = hashlib.sha256(Path(input_path).read_bytes()).hexdigest()
    payload = {"format": CHECKPOINT_FORMAT, "kind": model.kind, "maxdisp": model.maxdisp,
               "state_dict": model.state_dict(), "source": str(input_path), "source_sha256": digest}
    out = Path(output_path)
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    return out


# --------------------------------------------------------------------------- images in, disparity out
def padded_size(h: int, w: int, min_size: tuple[int, int] | None = REFERENCE_PAD_SIZE) -> tuple[int, int]:
    """The reference's padded size: at least `min_size` (384 x 1248 for KITTI), a multiple of 16."""
    ph = -(-h // SIZE_MULTIPLE) * SIZE_MULTIPLE
    pw = -(-w // SIZE_MULTIPLE) * SIZE_MULTIPLE
    if min_size is not None:
        ph, pw = max(ph, min_size[0]), max(pw, min_size[1])
    return ph, pw


def _as_batch(img: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.require(img, requirements=["C", "W"])) if isinstance(img, np.ndarray) else img
    if t.dtype != torch.uint8:
        raise ValueError(f"MSNet input: expected uint8 RGB images, got {t.dtype}")
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[-1] != 3:
        raise ValueError(f"MSNet input: expected (H, W, 3) or (B, H, W, 3) RGB, got {tuple(t.shape)}")
    return t.to(device, non_blocking=True)


def prepare_pair(left: np.ndarray | torch.Tensor, right: np.ndarray | torch.Tensor, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, min_size: tuple[int, int] | None = REFERENCE_PAD_SIZE,
                 ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """uint8 RGB (H, W, 3) or (B, H, W, 3) pair -> normalised (B, 3, H', W') on `device`, padded
    with zeros at the top and right as the reference does; returns (left, right, (top, right) pad).

    Normalisation and padding run on `device` (only uint8 bytes are transferred).
    """
    dev = torch.device(device)
    lt, rt = _as_batch(left, dev), _as_batch(right, dev)
    if lt.shape != rt.shape:
        raise ValueError(f"MSNet input: left {tuple(lt.shape)} and right {tuple(rt.shape)} differ in size")
    h, w = lt.shape[1], lt.shape[2]
    ph, pw = padded_size(h, w, min_size)
    mean = torch.tensor(IMAGENET_MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=dev).view(1, 3, 1, 1)

    def norm(t: torch.Tensor) -> torch.Tensor:
        x = (t.permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        return F.pad(x, (0, pw - w, ph - h, 0)).to(dtype)

    return norm(lt), norm(rt), (ph - h, pw - w)


@torch.no_grad()
def disparity(model: nn.Module, left: np.ndarray | torch.Tensor, right: np.ndarray | torch.Tensor,
              min_size: tuple[int, int] | None = REFERENCE_PAD_SIZE) -> torch.Tensor:
    """Disparity (H, W) or (B, H, W) float32 pixels of the left image, on the model's device.

    Args:
        model: from `load_msnet` (eval mode; its first parameter gives device and dtype).
        left, right: rectified uint8 RGB, (H, W, 3) or (B, H, W, 3), NumPy or torch.
    """
    p = next(model.parameters())
    single = (left.ndim if isinstance(left, np.ndarray) else left.dim()) == 3
    lt, rt, (top, rpad) = prepare_pair(left, right, p.device, p.dtype, min_size)
    disp = model(lt, rt)[-1][:, top:, : lt.shape[3] - rpad].float()
    return disp[0] if single else disp


def reference_depth(disp: np.ndarray | torch.Tensor, baseline_focal: float) -> np.ndarray | torch.Tensor:
    """The reference's depth: baseline * focal / max(disparity, 1e-8) (metres, no invalid pixels)."""
    if isinstance(disp, torch.Tensor):
        return baseline_focal / disp.clamp(min=1e-8)
    return (baseline_focal / np.clip(disp, 1e-8, None)).astype(np.float32)


class StereoDepth:
    """Stereo pair -> metric depth with a loaded MobileStereoNet; what nodes and predictors call.

    Construction without weights raises MSNetWeightsMissing (never an untrained network).
    baseline defaults to the reference's nominal 0.54 m (its depth files use 0.54 * fx).
    """

    def __init__(self, weights: str | os.PathLike[str] | None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, kind: str | None = "msnet3d",
                 min_size: tuple[int, int] | None = REFERENCE_PAD_SIZE) -> None:
        self.model = load_msnet(weights, device, kind, dtype)
        self.min_size = min_size

    def disparity(self, left: np.ndarray | torch.Tensor, right: np.ndarray | torch.Tensor) -> torch.Tensor:
        return disparity(self.model, left, right, self.min_size)

    def depth(self, left: np.ndarray | torch.Tensor, right: np.ndarray | torch.Tensor, focal: float,
              baseline: float = REFERENCE_BASELINE_M) -> torch.Tensor:
        """Depth (H, W) or (B, H, W) metres on the model's device."""
        return reference_depth(self.disparity(left, right), baseline * focal)
