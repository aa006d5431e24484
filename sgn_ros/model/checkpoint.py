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

import dataclasses
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sgn_ros.errors import CheckpointError
from sgn_ros.fileio import atomic_path

if TYPE_CHECKING:
    from sgn_ros.config import SGNConfig

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
    "load_model",
    "LoadedModel",
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

    Every failure names the file and says what is wrong with it (empty, truncated, not a
    checkpoint at all, or needing full unpickling), instead of torch's bare EOFError /
    RuntimeError / KeyError, which name neither.

    Raises:
        FileNotFoundError: `path` does not exist.
        CheckpointError (a ValueError): the file is empty, truncated or corrupt, not a torch file,
            does not hold a dict, or needs full unpickling (e.g. mmcv meta with NumPy objects) while
            `allow_unsafe` is False - that message names ``allow_unsafe=True`` / ``--unsafe-load``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    size = p.stat().st_size
    if size == 0:
        raise CheckpointError(p, "empty file (0 bytes), not a checkpoint")
    with open(p, "rb") as f:
        head = f.read(4)
    is_zip = head == b"PK\x03\x04"
    try:
        obj = torch.load(p, map_location="cpu", weights_only=not allow_unsafe)
    except pickle.UnpicklingError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "Weights only load failed" in str(e) and not allow_unsafe:
            raise CheckpointError(
                p,
                f"cannot be read with torch.load(weights_only=True) ({first[:200]}). If you trust this file, load "
                "it with allow_unsafe=True (CLI: --unsafe-load), which unpickles arbitrary Python objects.",
            ) from e
        raise CheckpointError(p, f"not a checkpoint: torch.load cannot unpickle it ({first[:200]})") from e
    except (EOFError, RuntimeError, zipfile.BadZipFile) as e:
        if is_zip or isinstance(e, EOFError) or "zip archive" in str(e):
            raise CheckpointError(
                p, f"truncated or corrupt checkpoint ({size} bytes; torch.load: {type(e).__name__}: "
                f"{str(e).splitlines()[0][:120] if str(e) else 'unexpected end of file'})",
            ) from e
        raise CheckpointError(p, f"not a checkpoint ({type(e).__name__}: {str(e)[:200]})") from e
    except (KeyError, ValueError, TypeError, AttributeError, ImportError, IndexError, UnicodeDecodeError) as e:
        raise CheckpointError(p, f"not a checkpoint: torch.load fails ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(obj, Mapping):
        raise CheckpointError(p, f"not a checkpoint: expected a dict, the file holds a {type(obj).__name__}")
    return dict(obj)


def checkpoint_kind(ckpt: Mapping[str, Any], where: str | os.PathLike[str] | None = None) -> str:
    """'sgn_ros' (our format), 'reference' (mmcv file or bare reference state dict).

    Raises:
        CheckpointError: neither (`where`, the file, is named).
    """
    if ckpt.get("format") == CHECKPOINT_FORMAT and isinstance(ckpt.get("model"), Mapping):
        return "sgn_ros"
    if isinstance(ckpt.get("format"), str):
        raise CheckpointError(
            where, f"unsupported checkpoint format {ckpt['format']!r}; expected {CHECKPOINT_FORMAT!r}"
        )
    sd = ckpt.get("state_dict", ckpt)
    if isinstance(sd, Mapping) and sd and all(isinstance(k, str) for k in sd):
        keys = [_strip_module(k) for k in sd]
        if any(k.startswith(("pts_bbox_head.", "img_backbone.")) for k in keys):
            return "reference"
    raise CheckpointError(
        where,
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
    raise CheckpointError(where, "checkpoint does not match the model - " + " | ".join(parts))


#: Name prefixes a compact checkpoint may leave out: modules kept only for the reference layout
#: that forward never runs (ResNet layer4). Loading keeps the model's own tensors there.
OMITTABLE_PREFIXES = ("encoder.layer4.",)


def _check_ours(
    state: Mapping[str, torch.Tensor], model: nn.Module, where: str, omitted: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    bad = [p for p in omitted if p not in OMITTABLE_PREFIXES]
    if bad:
        raise CheckpointError(where, f"'omitted' may only name {OMITTABLE_PREFIXES}, got {bad}")
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
    kind = checkpoint_kind(ckpt, where)
    _load_into(model, ckpt, kind, where, legacy_sparse_layout)
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


def infer_reference_variant(
    state_dict: Mapping[str, torch.Tensor], where: str | os.PathLike[str] | None = None
) -> tuple[str, str]:
    """Guess (variant, dataset) of a reference state dict from its shapes.

    SGN-T and SGN-S share every tensor (they differ in input frames only): 'sgn-s' is returned
    for ResNet-50 files; pass the variant explicitly for SGN-T.
    """
    sd = {_strip_module(k): v for k, v in state_dict.items()}
    head = sd.get(_H + "ssc_header.mlp_head.1.weight")
    if head is None:
        raise CheckpointError(
            where, f"cannot infer the variant: {_H}ssc_header.mlp_head.1.weight not in the checkpoint"
        )
    classes = int(head.shape[0])
    datasets = {20: "semantickitti", 19: "kitti360"}
    if classes not in datasets:
        raise CheckpointError(where, f"cannot infer the dataset: {classes} classes (expected 20 or 19)")
    variant = "sgn-s" if "img_backbone.layer1.0.conv3.weight" in sd else "sgn-l"
    return variant, datasets[classes]


# --------------------------------------------------------------------------- the one loader
@dataclass
class LoadedModel:
    """What `load_model` returns.

    Attributes:
        cfg: the config the network was built with (ours: the one stored in the file).
        model: the network, weights loaded, in eval mode, on the requested device.
        meta: ``kind`` ('sgn_ros' / 'reference'), ``path``, ``provenance`` (ours, may be empty),
            ``training`` (True for a trainer checkpoint), ``epoch`` / ``iteration`` when known.
    """

    cfg: SGNConfig
    model: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)


def _contradictions(stored: SGNConfig, wanted: SGNConfig) -> list[str]:
    """What of `wanted` the network in a file cannot honour: architecture, classes, dataset, grid."""
    out = []
    if stored.model != wanted.model:
        a, b = stored.model, wanted.model
        diff = [f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]
        out.append(f"model settings {diff} differ (file: {stored.name}, requested: {wanted.name})")
    if stored.data.dataset != wanted.data.dataset:
        out.append(f"dataset: file {stored.data.dataset!r}, requested {wanted.data.dataset!r}")
    elif stored.num_classes != wanted.num_classes:
        out.append(f"classes: file {stored.num_classes}, requested {wanted.num_classes}")
    if stored.grid != wanted.grid:
        out.append(f"grid: file {stored.grid}, requested {wanted.grid}")
    return out


def load_model(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    variant: str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    expect: SGNConfig | None = None,
    device: torch.device | str | None = None,
    allow_unsafe: bool = False,
    legacy_sparse_layout: str = "RSKC",
    where: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Build the network a checkpoint describes and load its weights: THE loader of the package
    (predictor, node, evaluate, train --resume / train.load_from, convert, demo weights).

    Our files carry the config they were trained with, and it is honoured: `variant`, `dataset`,
    `overrides` and `expect` may only agree with it (or change settings that do not define the
    network: data paths, training recipe); a different architecture, class count, dataset or
    voxel grid is a `CheckpointError` naming the file and each contradiction. Reference files
    carry no config: it is composed from `variant` / `dataset` (inferred from shapes when not
    given) and `overrides`, and the strict weight check rejects what does not fit.

    Args:
        source: a checkpoint path, or an already read checkpoint dict.
        variant, dataset: what the caller asks for (a variant name or config YAML).
        overrides: nested config overrides (as `sgn_ros.config.load_config` takes them).
        expect: a complete config the caller holds (e.g. the trainer's); checked like `variant`.
        device: where to put the model (default CPU).
        where: the file's name in messages when `source` is a dict already read from it.
    """
    from sgn_ros.config import _deep_merge, config_from_dict, load_config
    from sgn_ros.model import build_model

    if isinstance(source, Mapping):
        ckpt, where = dict(source), os.fspath(where) if where is not None else "checkpoint dict"
    else:
        ckpt, where = read_checkpoint(source, allow_unsafe=allow_unsafe), os.fspath(source)
    kind = checkpoint_kind(ckpt, where)
    meta: dict[str, Any] = {"kind": kind, "path": where, "training": "training" in ckpt}
    if kind == "sgn_ros":
        if not isinstance(ckpt.get("config"), Mapping):
            raise CheckpointError(where, "our format needs a 'config' dict (the config the model was built with)")
        try:
            stored = config_from_dict(dict(ckpt["config"]), where=where)
        except ValueError as e:
            raise CheckpointError(where, f"stored config is invalid: {e}") from e
        cfg = stored
        if overrides:
            cfg = config_from_dict(_deep_merge(stored.to_dict(), dict(overrides)), where=f"{where} + overrides")
        problems = _contradictions(stored, cfg)
        if variant is not None:
            requested = load_config(variant, dataset=dataset or stored.data.dataset,
                                    overrides=dict(overrides) if overrides else None)
            problems += _contradictions(stored, requested)
        elif dataset is not None and dataset.lower() != stored.data.dataset:
            problems.append(f"dataset: file {stored.data.dataset!r}, requested {dataset!r}")
        if expect is not None:
            problems += _contradictions(stored, expect)
        if problems:
            raise CheckpointError(where, "contradicts the request: " + "; ".join(dict.fromkeys(problems)))
        prov = ckpt.get("provenance")
        meta["provenance"] = dict(prov) if isinstance(prov, Mapping) else {}
        tr = ckpt.get("training")
        if isinstance(tr, Mapping):
            meta.update({k: tr[k] for k in ("epoch", "iteration") if k in tr})
    else:
        guess_v, guess_d = infer_reference_variant(ckpt.get("state_dict", ckpt), where)
        if dataset is not None and dataset.lower() != guess_d:
            raise CheckpointError(where, f"holds a {guess_d} network (class count), dataset {dataset!r} was requested")
        cfg = load_config(variant or guess_v, dataset=dataset or guess_d,
                          overrides=dict(overrides) if overrides else None)
        if expect is not None:  # the caller's config defines the network; the strict load checks the fit
            if expect.data.dataset != guess_d:
                raise CheckpointError(
                    where, f"contradicts the request: dataset: file {guess_d!r}, requested {expect.data.dataset!r}"
                )
            cfg = expect
        meta["provenance"] = {}
    model = build_model(cfg)
    _load_into(model, ckpt, kind, where, legacy_sparse_layout)
    if device is not None:
        model = model.to(device)
    return LoadedModel(cfg=cfg, model=model.eval(), meta=meta)


def _load_into(model: nn.Module, ckpt: dict[str, Any], kind: str, where: str, legacy_sparse_layout: str) -> None:
    """Strictly load the tensors of a checkpoint dict of `kind` into `model`."""
    if kind == "sgn_ros":
        state = ckpt["model"]
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(where, "'model' must map parameter names to tensors")
        state = _check_ours(ckpt["model"], model, where, omitted=ckpt.get("omitted", ()))
    else:
        state = convert_reference_state_dict(
            ckpt.get("state_dict", ckpt), model, legacy_sparse_layout=legacy_sparse_layout, where=where
        )
    model.load_state_dict(state, strict=True)
