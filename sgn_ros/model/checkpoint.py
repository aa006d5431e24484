# Checkpoints of SGN: the released reference files (mmcv: {"state_dict", "meta", maybe
# "optimizer"}, names img_backbone.* / img_neck.* / pts_bbox_head.*) and our own format
# ({"format": "sgn_ros/1", "model": our names, "config": cfg.to_dict(), optional provenance}).
#
# `REFERENCE_NAME_MAP` is the one table between the two namings: reference prefix -> our prefix,
# the rest of a name unchanged. Loading is strict: every tensor of the file is used, every
# parameter / buffer of the model is provided, every shape matches, or one ValueError lists all
# unknown, missing and mis-shaped names.
#
# Sparse conv weights of older spconv releases are accepted where the layout change is
# unambiguous: spconv >= 2.2 (and 2.1 with implicit GEMM, the CUDA default the reference was
# trained with) stores [out, k, k, k, in] (KRSC); spconv 2.1's native algorithm (its CPU build)
# stored [k, k, k, out, in] (RSKC) and spconv 1.x [k, k, k, in, out] (RSCK). For 1x1x1 kernels
# every spconv 2.x release multiplies features by the weight's memory read as (in, out) (spconv
# issues #450, #556), so a [1, 1, 1, a, b] tensor is re-laid by reshape (memory kept, numbers
# kept). For k > 1 the permutation back to KRSC is chosen by shape; with in == out both older
# layouts have the same shape and `legacy_sparse_layout` (default RSKC, spconv 2.1) decides.
"""Reference <-> sgn_ros parameter names, strict loading, saving our checkpoints."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sgn_ros.fileio import atomic_path

__all__ = [
    "CHECKPOINT_FORMAT",
    "REFERENCE_NAME_MAP",
    "reference_to_ours",
    "ours_to_reference",
    "read_checkpoint",
    "checkpoint_kind",
    "convert_reference_state_dict",
    "load_model_weights",
    "save_checkpoint",
    "load_sgn",
    "infer_reference_variant",
]

#: The `format` tag of our checkpoint files.
CHECKPOINT_FORMAT = "sgn_ros/1"

_H = "pts_bbox_head."
_P = _H + "pts_header."
#: Reference name prefix -> our module prefix (the rest of a name is the same in both).
REFERENCE_NAME_MAP: tuple[tuple[str, str], ...] = (
    ("img_backbone.", "encoder."),
    ("img_neck.", "neck."),
    (_H + "bottleneck.", "bottleneck."),
    (_H + "occ_header.0.", "occupancy_head.diffusion."),
    (_H + "occ_header.1.", "occupancy_head.classifier."),
    (_P + "voxelize.PPmodel.", "proposal.point_mlp."),
    (_P + "voxelize.soft_model.conv_block.spconv_layers.", "proposal.point_blocks."),
    (_P + "voxelize.soft_model.proj_block.", "proposal.point_attention."),
    (_P + "Encoder_block1.", "proposal.bev_unet.enc1."),
    (_P + "Encoder_block2.", "proposal.bev_unet.enc2."),
    (_P + "Encoder_block3.", "proposal.bev_unet.enc3."),
    (_P + "Encoder_block4.", "proposal.bev_unet.enc4."),
    (_P + "conv_out_scale_1_8.", "proposal.bev_unet.out_1_8."),
    (_P + "deconv_1_8__1_2.", "proposal.bev_unet.up_1_8_to_1_2."),
    (_P + "deconv_1_8__1_1.", "proposal.bev_unet.up_1_8_to_1_1."),
    (_P + "deconv1_8.", "proposal.bev_unet.up_1_8."),
    (_P + "conv1_4.", "proposal.bev_unet.dec_1_4."),
    (_P + "conv_out_scale_1_4.", "proposal.bev_unet.out_1_4."),
    (_P + "deconv_1_4__1_1.", "proposal.bev_unet.up_1_4_to_1_1."),
    (_P + "deconv1_4.", "proposal.bev_unet.up_1_4."),
    (_P + "conv1_2.", "proposal.bev_unet.dec_1_2."),
    (_P + "conv_out_scale_1_2.", "proposal.bev_unet.out_1_2."),
    (_P + "seg_head_1_2.", "proposal.seg_head."),
    (_H + "sgb.conv_block.spconv_layers.", "guidance.block1."),
    (_H + "sgb.proj_block.", "guidance.attention1."),
    (_H + "sgb.conv_block_down.spconv_layers.", "guidance.block2."),
    (_H + "sgb.proj_block_down.", "guidance.attention2."),
    (_H + "sgb.fc_out.", "guidance.fuse."),
    (_H + "sem_header.mlp_head.", "seed_head."),
    (_H + "mlp_prior.", "prior_mlp."),
    (_H + "sdb.", "diffusion."),
    (_H + "ssc_header.mlp_head.", "output_head.mlp."),
)
# Longest prefix first, so that a prefix never shadows a longer one.
_REF_ORDER = sorted(REFERENCE_NAME_MAP, key=lambda kv: -len(kv[0]))
_OUR_ORDER = sorted(REFERENCE_NAME_MAP, key=lambda kv: -len(kv[1]))


def reference_to_ours(name: str) -> str | None:
    """Our parameter name for a reference name, or None if no prefix of the table matches."""
    for ref, ours in _REF_ORDER:
        if name.startswith(ref):
            return ours + name[len(ref):]
    return None


def ours_to_reference(name: str) -> str | None:
    """The reference name of one of our parameter names, or None."""
    for ref, ours in _OUR_ORDER:
        if name.startswith(ours):
            return ref + name[len(ours):]
    return None


# --------------------------------------------------------------------------- reading files
def read_checkpoint(path: str | os.PathLike[str], allow_unsafe: bool = False) -> dict[str, Any]:
    """torch.load a checkpoint on the CPU, with ``weights_only=True`` unless `allow_unsafe`.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file needs full unpickling (e.g. mmcv meta with NumPy objects) and
            `allow_unsafe` is False - the message names ``allow_unsafe=True`` / ``--unsafe-load``;
            or the file does not hold a dict.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=not allow_unsafe)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{p}: cannot be read with torch.load(weights_only=True) ({str(e).splitlines()[0]}). "
            "If you trust this file, load it with allow_unsafe=True (CLI: --unsafe-load), which unpickles "
            "arbitrary Python objects."
        ) from e
    if not isinstance(obj, Mapping):
        raise ValueError(f"{p}: expected a checkpoint dict, got {type(obj).__name__}")
    return dict(obj)


def checkpoint_kind(ckpt: Mapping[str, Any]) -> str:
    """'sgn_ros' (our format), 'reference' (mmcv file or bare reference state dict).

    Raises:
        ValueError: neither.
    """
    if ckpt.get("format") == CHECKPOINT_FORMAT and isinstance(ckpt.get("model"), Mapping):
        return "sgn_ros"
    if isinstance(ckpt.get("format"), str):
        raise ValueError(f"unsupported checkpoint format {ckpt['format']!r}; expected {CHECKPOINT_FORMAT!r}")
    sd = ckpt.get("state_dict", ckpt)
    if isinstance(sd, Mapping) and sd and all(isinstance(k, str) for k in sd):
        keys = [_strip_module(k) for k in sd]
        if any(k.startswith(("pts_bbox_head.", "img_backbone.")) for k in keys):
            return "reference"
    raise ValueError(
        "not an SGN checkpoint: expected our format (keys 'format', 'model', 'config') or a reference "
        "file (a 'state_dict' with img_backbone.* / pts_bbox_head.* tensors)"
    )


def _strip_module(name: str) -> str:
    return name[len("module."):] if name.startswith("module.") else name


# --------------------------------------------------------------------------- conversion
def _sparse_weight_names(model: nn.Module) -> set[str]:
    from sgn_ros.model.spconv_compat import spconv

    conv_types = (spconv.SubMConv3d, spconv.SparseConv3d)
    return {f"{name}.weight" for name, mod in model.named_modules() if isinstance(mod, conv_types)}


def _relayout_sparse(t: torch.Tensor, target: tuple[int, ...], legacy: str) -> torch.Tensor | None:
    """Bring an older spconv weight layout to [out, k, k, k, in]; None if no unambiguous match."""
    if t.dim() != 5 or len(target) != 5:
        return None
    out_c, k1, k2, k3, in_c = target
    shape = tuple(t.shape)
    if (k1, k2, k3) == (1, 1, 1):
        # 1x1x1: spconv 2.x reads the memory as (in, out) whatever the declared shape.
        if shape in ((1, 1, 1, out_c, in_c), (1, 1, 1, in_c, out_c)):
            return t.contiguous().reshape(target)
        return None
    rskc = (k1, k2, k3, out_c, in_c)
    rsck = (k1, k2, k3, in_c, out_c)
    candidates = []
    if shape == rskc:
        candidates.append("RSKC")
    if shape == rsck:
        candidates.append("RSCK")
    if not candidates:
        return None
    layout = legacy if len(candidates) > 1 else candidates[0]
    if layout == "RSKC":
        return t.permute(3, 0, 1, 2, 4).contiguous()
    return t.permute(4, 0, 1, 2, 3).contiguous()


def convert_reference_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, legacy_sparse_layout: str = "RSKC", where: str = ""
) -> dict[str, torch.Tensor]:
    """Reference-named tensors -> our names, strictly checked against `model`.

    Raises:
        ValueError: one message listing unknown names (no table entry, or no such tensor in the
            model), missing model tensors and mis-shaped tensors.
    """
    if legacy_sparse_layout not in ("RSKC", "RSCK"):
        raise ValueError(f"legacy_sparse_layout must be 'RSKC' or 'RSCK', got {legacy_sparse_layout!r}")
    own = model.state_dict()
    sparse = _sparse_weight_names(model)
    out: dict[str, torch.Tensor] = {}
    provided: set[str] = set()
    unknown: list[str] = []
    misshaped: list[str] = []
    for raw_name, tensor in state_dict.items():
        name = _strip_module(raw_name)
        ours = reference_to_ours(name)
        if ours is None or ours not in own:
            unknown.append(name)
            continue
        provided.add(ours)
        if not isinstance(tensor, torch.Tensor):
            misshaped.append(f"{name}: not a tensor ({type(tensor).__name__})")
            continue
        target = tuple(own[ours].shape)
        if tuple(tensor.shape) != target and ours in sparse:
            relaid = _relayout_sparse(tensor, target, legacy_sparse_layout)
            if relaid is not None:
                tensor = relaid
        if tuple(tensor.shape) != target:
            misshaped.append(f"{name} -> {ours}: file {tuple(tensor.shape)} vs model {target}")
            continue
        out[ours] = tensor
    missing = [f"{k} (reference {ours_to_reference(k)})" for k in sorted(set(own) - provided)]
    _raise_if_problems(where or "reference checkpoint", unknown, missing, misshaped)
    return out


def _raise_if_problems(where: str, unknown: list[str], missing: list[str], misshaped: list[str]) -> None:
    if not (unknown or missing or misshaped):
        return
    parts = []
    for title, items in (("unknown", unknown), ("missing", missing), ("mis-shaped", misshaped)):
        if items:
            shown = "; ".join(items[:20]) + (f"; ... ({len(items) - 20} more)" if len(items) > 20 else "")
            parts.append(f"{len(items)} {title}: {shown}")
    raise ValueError(f"{where}: checkpoint does not match the model - " + " | ".join(parts))


#: Name prefixes a compact checkpoint may leave out: modules kept only for the reference layout
#: that forward never runs (ResNet layer4). Loading keeps the model's own tensors there.
OMITTABLE_PREFIXES = ("encoder.layer4.",)


def _check_ours(
    state: Mapping[str, torch.Tensor], model: nn.Module, where: str, omitted: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    bad = [p for p in omitted if p not in OMITTABLE_PREFIXES]
    if bad:
        raise ValueError(f"{where}: 'omitted' may only name {OMITTABLE_PREFIXES}, got {bad}")
    own = model.state_dict()
    unknown = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state and not k.startswith(tuple(omitted)))
    state = {**{k: v for k, v in own.items() if k.startswith(tuple(omitted))}, **state} if omitted else state
    misshaped = sorted(
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    )
    _raise_if_problems(where, unknown, missing, misshaped)
    return dict(state)


def load_model_weights(
    model: nn.Module,
    path_or_dict: str | os.PathLike[str] | Mapping[str, Any],
    allow_unsafe: bool = False,
    legacy_sparse_layout: str = "RSKC",
) -> str:
    """Load weights into `model` from a reference checkpoint or one of ours (detected). Strict.

    Returns the detected kind ('reference' or 'sgn_ros').
    """
    if isinstance(path_or_dict, Mapping):
        ckpt, where = dict(path_or_dict), "checkpoint dict"
    else:
        ckpt, where = read_checkpoint(path_or_dict, allow_unsafe=allow_unsafe), os.fspath(path_or_dict)
    kind = checkpoint_kind(ckpt)
    if kind == "sgn_ros":
        state = _check_ours(ckpt["model"], model, where, omitted=ckpt.get("omitted", ()))
    else:
        state = convert_reference_state_dict(
            ckpt.get("state_dict", ckpt), model, legacy_sparse_layout=legacy_sparse_layout, where=where
        )
    model.load_state_dict(state, strict=True)
    return kind


def save_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, config: Any, compact: bool = False, **provenance: Any
) -> Path:
    """Write our checkpoint atomically (temporary file in the same folder + os.replace).

    Args:
        model: the network (its state_dict, our names, is stored under ``model``).
        config: an `SGNConfig` (stored as ``config.to_dict()``) or a plain dict.
        compact: for shipping weights: parameters in float16 (buffers such as BatchNorm
            statistics stay float32), `OMITTABLE_PREFIXES` left out (listed under ``omitted``).
            SGN-L shrinks from 50 MB to about 8 MB; loading casts back to the model's dtype.
        provenance: extra plain entries (e.g. ``source=...``, ``epoch=...``) stored under ``provenance``.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    cfg_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "model": state, "config": cfg_dict}
    if compact:
        params = {name for name, _ in model.named_parameters()}
        state = {
            k: (v.half() if k in params and v.is_floating_point() else v)
            for k, v in state.items()
            if not k.startswith(OMITTABLE_PREFIXES)
        }
        payload["model"] = state
        payload["omitted"] = list(OMITTABLE_PREFIXES)
    if provenance:
        payload["provenance"] = provenance
    with atomic_path(p, fsync=False) as tmp:
        torch.save(payload, tmp)
    return p


def infer_reference_variant(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """Guess (variant, dataset) of a reference state dict from its shapes.

    SGN-T and SGN-S share every tensor (they differ in input frames only): 'sgn-s' is returned
    for ResNet-50 files; pass the variant explicitly for SGN-T.
    """
    sd = {_strip_module(k): v for k, v in state_dict.items()}
    head = sd.get(_H + "ssc_header.mlp_head.1.weight")
    if head is None:
        raise ValueError(f"cannot infer the variant: {_H}ssc_header.mlp_head.1.weight not in the checkpoint")
    classes = int(head.shape[0])
    datasets = {20: "semantickitti", 19: "kitti360"}
    if classes not in datasets:
        raise ValueError(f"cannot infer the dataset: {classes} classes (expected 20 or 19)")
    variant = "sgn-s" if "img_backbone.layer1.0.conv3.weight" in sd else "sgn-l"
    return variant, datasets[classes]


def load_sgn(
    path: str | os.PathLike[str],
    variant: str | None = None,
    dataset: str | None = None,
    allow_unsafe: bool = False,
    device: torch.device | str | None = None,
):
    """Build the network a checkpoint describes and load it (ours: from its stored config;
    reference: from `variant` / `dataset`, inferred from shapes when not given).

    Returns (model, cfg), the model in eval mode on `device` (default CPU).
    """
    from sgn_ros.config import config_from_dict, load_config
    from sgn_ros.model import build_model

    ckpt = read_checkpoint(path, allow_unsafe=allow_unsafe)
    kind = checkpoint_kind(ckpt)
    if kind == "sgn_ros":
        cfg = config_from_dict(ckpt["config"], where=os.fspath(path))
        if variant is not None or dataset is not None:
            cfg_req = load_config(variant or cfg.name, dataset=dataset or cfg.data.dataset)
            if cfg_req.num_classes != cfg.num_classes or cfg_req.model != cfg.model:
                raise ValueError(f"{path}: stored config ({cfg.name}, {cfg.data.dataset}) differs from the request")
    else:
        guess_v, guess_d = infer_reference_variant(ckpt.get("state_dict", ckpt))
        cfg = load_config(variant or guess_v, dataset=dataset or guess_d)
    model = build_model(cfg)
    load_model_weights(model, ckpt)
    if device is not None:
        model = model.to(device)
    return model.eval(), cfg
