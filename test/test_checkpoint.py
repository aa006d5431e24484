# Tests of checkpoint handling (sgn_ros/model/checkpoint.py, convert.py): the reference <-> our
# name table against the released checkpoints' layout (test/data/sgn_reference_state_dict.json,
# every name and shape of the four released files), strict loading with one error listing every
# problem, old spconv weight layouts, weights_only loading, our format's round trip and the
# `sgn-ros convert-checkpoint` command.
"""Tests for sgn_ros.model.checkpoint and sgn_ros.model.convert."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sgn_ros import cli
from sgn_ros.model import build_model
from sgn_ros.model.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_kind,
    convert_reference_state_dict,
    infer_reference_variant,
    load_model,
    load_model_weights,
    ours_to_reference,
    read_checkpoint,
    reference_to_ours,
    save_checkpoint,
)
from sgn_ros.model.spconv_compat import spconv

REFERENCE_LAYOUT = Path(__file__).resolve().parent / "data" / "sgn_reference_state_dict.json"
VARIANTS = {
    "SGN-T/S semantickitti": ("sgn-s", "semantickitti"),
    "SGN-T/S kitti360": ("sgn-s", "kitti360"),
    "SGN-L semantickitti": ("sgn-l", "semantickitti"),
    "SGN-L kitti360": ("sgn-l", "kitti360"),
}


def reference_layout(key: str) -> dict:
    return json.loads(REFERENCE_LAYOUT.read_text())["variants"][key]


def random_reference_state(key: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the names and shapes of a released checkpoint and random values."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in reference_layout(key)["state_dict"].items():
        if name.endswith("num_batches_tracked"):
            out[name] = torch.randint(0, 1000, tuple(shape), generator=g)
        elif name.endswith("running_var"):
            out[name] = torch.rand(tuple(shape), generator=g) + 0.5
        else:
            out[name] = torch.randn(tuple(shape), generator=g)
    return out


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_name_table_is_a_bijection_onto_the_model(key):
    variant, dataset = VARIANTS[key]
    layout = reference_layout(key)
    model = build_model(variant, dataset)
    own = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == layout["trainable_and_frozen_params"]
    mapped = {}
    for name, shape in layout["state_dict"].items():
        ours = reference_to_ours(name)
        assert ours in own, name
        assert list(own[ours].shape) == shape, name
        assert ours_to_reference(ours) == name
        mapped[ours] = name
    assert set(mapped) == set(own)


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_load_random_reference_checkpoint_file(key, tmp_path):
    variant, dataset = VARIANTS[key]
    state = random_reference_state(key)
    path = tmp_path / "ref.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 12, "iter": 3}, "optimizer": {"state": {}}}, path)
    assert infer_reference_variant(state) == (variant, dataset)
    model = build_model(variant, dataset)
    assert load_model_weights(model, path) == "reference"
    own = model.state_dict()
    for name, tensor in state.items():
        assert torch.equal(own[reference_to_ours(name)], tensor), name


def test_strict_loading_lists_unknown_missing_and_misshaped():
    state = random_reference_state("SGN-L semantickitti")
    state["pts_bbox_head.not_a_layer.weight"] = torch.zeros(3)
    del state["pts_bbox_head.sdb.conv_in.bias"]
    state["pts_bbox_head.mlp_prior.0.weight"] = torch.zeros(5, 5)
    model = build_model("sgn-l", "semantickitti")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_model_weights(model, {"state_dict": state})
    msg = str(err.value)
    assert "1 unknown: pts_bbox_head.not_a_layer.weight" in msg
    assert "1 missing: diffusion.conv_in.bias (reference pts_bbox_head.sdb.conv_in.bias)" in msg
    assert "1 mis-shaped: pts_bbox_head.mlp_prior.0.weight -> prior_mlp.0.weight: file (5, 5) vs model (32, 64)" in msg
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing loaded


def test_wrong_variant_is_rejected():
    state = random_reference_state("SGN-L semantickitti")
    with pytest.raises(ValueError, match="mis-shaped"):
        load_model_weights(build_model("sgn-l", "kitti360"), {"state_dict": state})


def test_old_spconv_layouts_are_relaid():
    """spconv 2.1 native (RSKC) 3x3x3 weights and [1,1,1,out,in] 1x1x1 weights load to the same numbers."""
    state = random_reference_state("SGN-L semantickitti", seed=1)
    model = build_model("sgn-l", "semantickitti")
    sparse = [n for n, m in model.named_modules() if isinstance(m, spconv.SubMConv3d)]
    assert len(sparse) == 3 * 2 + 3 * 1 + 3 * 1  # proposal: 2 blocks, guidance: 2 x 1 block, 3 convs each
    old = dict(state)
    for ours in sparse:
        ref = ours_to_reference(ours + ".weight")
        w = state[ref]
        if w.shape[1] == 1:
            old[ref] = w.reshape(1, 1, 1, w.shape[0], w.shape[4])  # same memory, older declared shape
        else:
            old[ref] = w.permute(1, 2, 3, 0, 4).contiguous()  # KRSC -> RSKC
    converted = convert_reference_state_dict(old, model)
    expected = convert_reference_state_dict(state, model)
    for k in expected:
        assert torch.equal(converted[k], expected[k]), k
    # spconv 1.x RSCK, chosen explicitly (same shape as RSKC when in == out)
    rsck = dict(state)
    for ours in sparse:
        ref = ours_to_reference(ours + ".weight")
        if state[ref].shape[1] == 3:
            rsck[ref] = state[ref].permute(1, 2, 3, 4, 0).contiguous()
    converted = convert_reference_state_dict(rsck, model, legacy_sparse_layout="RSCK")
    for k in expected:
        assert torch.equal(converted[k], expected[k]), k


def test_weights_only_by_default_with_named_escape_hatch(tmp_path):
    state = random_reference_state("SGN-L kitti360")
    path = tmp_path / "mmcv.pth"
    torch.save({"state_dict": state, "meta": {"env": np.array([1, 2, 3])}}, path)
    with pytest.raises(ValueError, match=r"allow_unsafe=True \(CLI: --unsafe-load\)"):
        read_checkpoint(path)
    model = build_model("sgn-l", "kitti360")
    assert load_model_weights(model, path, allow_unsafe=True) == "reference"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_checkpoint(tmp_path / "nope.pth")


def test_checkpoint_kind_rejects_other_files():
    with pytest.raises(ValueError, match="not an SGN checkpoint"):
        checkpoint_kind({"state_dict": {"backbone.conv.weight": torch.zeros(1)}})
    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        checkpoint_kind({"format": "sgn_ros/0", "model": {}})


def test_round_trip_of_our_format(tmp_path):
    from test_model import make_batch, small_config

    torch.manual_seed(0)
    cfg = small_config("sgn-l")
    model = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "ckpt" / "sgn.pth", model, cfg, source="unit test")
    assert [p.name for p in path.parent.iterdir()] == ["sgn.pth"]  # no temporary file left
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and raw["provenance"] == {"source": "unit test"}
    assert not any(k.startswith("pts_bbox_head") for k in raw["model"])
    lm = load_model(path)
    loaded, loaded_cfg = lm.model, lm.cfg
    assert loaded_cfg == cfg and not loaded.training
    batch = make_batch(cfg, 1)
    with torch.no_grad():
        a, b = model(batch), loaded(batch)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # a checkpoint of another variant is refused by the strict check
    with pytest.raises(ValueError, match="mis-shaped"):
        load_model_weights(build_model("sgn-l", "kitti360"), path)


def test_convert_checkpoint_cli(tmp_path):
    state = random_reference_state("SGN-L kitti360", seed=2)
    src, dst = tmp_path / "released.pth", tmp_path / "out" / "sgn_l_kitti360.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 31}}, src)
    assert cli.main(["convert-checkpoint", str(src), str(dst)]) == 0
    lm = load_model(dst)
    model, cfg = lm.model, lm.cfg
    assert (cfg.name, cfg.data.dataset) == ("sgn-l", "kitti360")
    own = model.state_dict()
    assert all(torch.equal(own[reference_to_ours(k)], v) for k, v in state.items())
    prov = torch.load(dst, weights_only=True)["provenance"]
    assert prov["epoch"] == 31 and len(prov["source_sha256"]) == 64
    with pytest.raises(ValueError, match="already an sgn_ros checkpoint"):
        cli.main(["convert-checkpoint", "--debug", str(dst), str(tmp_path / "again.pth")])


def test_compact_checkpoint_round_trip(tmp_path):
    """Shipping format: float16 parameters, ResNet layer4 (never run) left out; outputs stay close."""
    from sgn_ros.config import load_config
    from sgn_ros.model import build_model
    from sgn_ros.model.checkpoint import load_model_weights, read_checkpoint, save_checkpoint

    cfg = load_config("sgn-l", overrides={"grid": {"voxel_size": 1.6, "dims": [32, 32, 16]}})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    full = save_checkpoint(tmp_path / "full.pth", model, cfg)
    small = save_checkpoint(tmp_path / "small.pth", model, cfg, compact=True, recipe="test")
    assert small.stat().st_size < 0.45 * full.stat().st_size
    ck = read_checkpoint(small)
    assert ck["omitted"] == ["encoder.layer4."] and not any(k.startswith("encoder.layer4.") for k in ck["model"])
    assert ck["model"]["neck.fpn_convs.0.conv.weight"].dtype == torch.float16
    assert ck["provenance"] == {"recipe": "test"}
    torch.manual_seed(1)
    other = build_model(cfg).eval()
    load_model_weights(other, small)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        if k.startswith("encoder.layer4."):
            continue
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-3, atol=1e-3, msg=k)
    # a file may not omit anything else
    ck["omitted"] = ["guidance."]
    with pytest.raises(ValueError, match="may only name"):
        load_model_weights(other, ck)
