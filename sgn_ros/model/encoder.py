# Image encoder of SGN: a ResNet-18 / ResNet-50 of our own (torchvision cannot be imported beside
# the pinned CPU torch), laid out with torchvision's parameter names so that the ImageNet files
# `resnet18-5c106cde.pth` / `resnet50-19c8e357.pth` load as they are (their `fc.*` dropped), and
# so that the reference checkpoints' `img_backbone.*` tensors map one to one.
#
# Behaviour follows mmdet's ResNet as the reference configures it: style='pytorch' (the stride of
# a Bottleneck sits on its 3x3 conv), frozen_stages=1 (stem + layer1 frozen), BatchNorm with
# requires_grad=False and norm_eval=True (every BN stays in eval mode, even under `.train()`),
# out_indices=(2,) (only the stride-16 output of layer3 is used). All four stages exist because
# the checkpoints (and the parameter counts) carry layer4; forward stops after layer3.
"""ResNet image encoder (stage-3 features, stride 16) with torchvision-compatible names."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNetEncoder",
    "load_torchvision_resnet",
    "ENCODER_OUT_CHANNELS",
    "ENCODER_STRIDE",
]

#: Output channels of layer3 (the stage SGN samples) per ResNet depth.
ENCODER_OUT_CHANNELS = {18: 256, 50: 1024}
#: Stride of layer3's output relative to the input image (pixels per feature cell).
ENCODER_STRIDE = 16

# (block type, blocks per stage) per depth, as in He et al. 2016 / torchvision.
_ARCH = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34). Names: conv1 bn1 conv2 bn2 downsample."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, 'pytorch' style) -> 1x1 (x4 channels) with a residual (ResNet-50)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet-18/50 trunk returning the stride-16 output of layer3.

    Args:
        depth: 18 or 50.
        frozen_stages: stages whose parameters get ``requires_grad=False`` and stay in eval mode;
            0 = none, 1 = stem (conv1, bn1) + layer1 (the reference), up to 4.
        norm_eval: keep every BatchNorm in eval mode (running statistics used and never updated),
            also under ``.train()``; the reference trains with batch 1 per GPU, where batch
            statistics would be useless.
        bn_requires_grad: whether BatchNorm affine parameters are trained (reference: False).

    Forward: images (N, 3, H, W), ImageNet-normalised -> features
    (N, ENCODER_OUT_CHANNELS[depth], ceil(H/16), ceil(W/16)).
    """

    def __init__(
        self, depth: int = 50, frozen_stages: int = 1, norm_eval: bool = True, bn_requires_grad: bool = False
    ) -> None:
        super().__init__()
        if depth not in _ARCH:
            raise ValueError(f"ResNetEncoder: depth must be one of {sorted(_ARCH)}, got {depth!r}")
        if not 0 <= frozen_stages <= 4:
            raise ValueError(f"ResNetEncoder: frozen_stages must be in 0..4, got {frozen_stages!r}")
        self.depth = depth
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.out_channels = ENCODER_OUT_CHANNELS[depth]
        self.stride = ENCODER_STRIDE
        kind, counts = _ARCH[depth]
        block = BasicBlock if kind == "basic" else Bottleneck

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = 64
        self.layer1 = self._make_layer(block, 64, counts[0], stride=1)
        self.layer2 = self._make_layer(block, 128, counts[1], stride=2)
        self.layer3 = self._make_layer(block, 256, counts[2], stride=2)
        self.layer4 = self._make_layer(block, 512, counts[3], stride=2)  # kept for checkpoints; never run
        del self._inplanes
        self._init_weights()
        self._freeze(bn_requires_grad)

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * block.expansion
        layers += [block(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # mmdet/torchvision defaults: Kaiming-normal (fan_out) convs, BN weight 1 and bias 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _frozen_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = []
        if self.frozen_stages >= 1:
            mods += [self.conv1, self.bn1]
        mods += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        return mods

    def _freeze(self, bn_requires_grad: bool) -> None:
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        if not bn_requires_grad:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    for p in m.parameters():
                        p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNetEncoder:
        """Switch modes but keep frozen stages, and (with norm_eval) every BatchNorm, in eval mode."""
        super().train(mode)
        if mode:
            for m in self._frozen_modules():
                m.eval()
            if self.norm_eval:
                for m in self.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images -> (N, C3, ceil(H/16), ceil(W/16)) layer3 features."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"ResNetEncoder: expected images (N, 3, H, W), got {tuple(images.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer1(x)
        x = self.layer2(x)
        return self.layer3(x)


def load_torchvision_resnet(
    encoder: ResNetEncoder, source: str | os.PathLike[str] | Mapping[str, torch.Tensor]
) -> ResNetEncoder:
    """Load a torchvision ImageNet ResNet checkpoint into `encoder` (in place; returns it).

    `source` is a path to a torchvision ``.pth`` file (a plain state dict, read with
    ``weights_only=True``) or such a mapping. A ``state_dict`` wrapper and a ``module.`` /
    ``img_backbone.`` prefix are accepted; ``fc.*`` (the ImageNet classifier) is dropped. Every
    other key must match the encoder exactly, in name and shape.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: missing / unexpected keys or shape mismatches, listed by name.
    """
    where = "state dict"
    if isinstance(source, Mapping):
        state = dict(source)
    else:
        where = os.fspath(source)
        if not os.path.isfile(where):
            raise FileNotFoundError(f"ResNet checkpoint not found: {where}")
        state = torch.load(where, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping):
            raise ValueError(f"{where}: expected a state dict, got {type(state).__name__}")
        state = dict(state)
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = dict(state["state_dict"])
    for prefix in ("module.", "img_backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}

    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    # torchvision files older than BN's num_batches_tracked buffer lack it: harmless, keep ours.
    missing_real = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing_real or unexpected or shapes:
        parts = []
        if missing_real:
            parts.append(f"missing {len(missing_real)} key(s): {', '.join(missing_real[:10])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {', '.join(unexpected[:10])}")
        if shapes:
            parts.append(f"shape mismatch: {'; '.join(shapes[:10])}")
        raise ValueError(f"{where}: not a ResNet-{encoder.depth} checkpoint ({' | '.join(parts)})")
    for k in missing:
        state[k] = own[k]
    encoder.load_state_dict(state, strict=True)
    return encoder
