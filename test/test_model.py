# Tests of the assembled SGN network (sgn_ros/model/sgn.py and __init__.py): exact parameter
# counts of all variants, forward/backward of every variant on a reduced grid and image, batch
# consistency, seed fallback, frozen parameters, determinism, and one full-size SGN-L forward.
"""Tests for sgn_ros.model (build_model, SGN.forward)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from sgn_ros.batch import SSCBatch
from sgn_ros.config import SGNConfig, load_config
from sgn_ros.model import build_model

torch.set_num_threads(2)

#: Reference parameter counts (ResNet with layer4, no fc; FPN; head) - SGN_REFERENCE.md.
PARAM_COUNTS = {
    ("sgn-t", "semantickitti"): 28_157_507,
    ("sgn-s", "semantickitti"): 28_157_507,
    ("sgn-t", "kitti360"): 28_157_313,
    ("sgn-s", "kitti360"): 28_157_313,
    ("sgn-l", "semantickitti"): 12_499_203,
    ("sgn-l", "kitti360"): 12_499_105,
}

#: A coarse grid over the real volume (1.6 m voxels, 32 x 32 x 16) for fast CPU tests.
SMALL_GRID = {"voxel_size": 1.6, "dims": [32, 32, 16]}
SMALL_IMAGE = (32, 96)

# KITTI odometry sequence 00: P2 intrinsics and velodyne -> camera transform.
KITTI_K = torch.tensor([[718.856, 0.0, 607.1928], [0.0, 718.856, 185.2157], [0.0, 0.0, 1.0]])
KITTI_TR = torch.tensor(
    [
        [4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02],
        [-7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02],
        [9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def small_config(variant: str = "sgn-l", dataset: str = "semantickitti", **model) -> SGNConfig:
    """A real variant config on the coarse test grid (optionally with model overrides)."""
    overrides: dict = {"grid": dict(SMALL_GRID)}
    if model:
        overrides["model"] = model
    return load_config(variant, dataset=dataset, overrides=overrides)


def make_batch(
    cfg: SGNConfig, batch_size: int = 1, image_size: tuple[int, int] = SMALL_IMAGE, seed: int = 0, points: int = 3000
) -> SSCBatch:
    """Random images of `image_size` (K scaled from KITTI's 370 x 1220 crop), KITTI's velodyne ->
    camera transform (earlier frames displaced backwards) and pseudo-LiDAR points on a ground plane
    plus boxes inside cfg.grid."""
    g = torch.Generator().manual_seed(seed)
    f = cfg.data.num_frames
    h, w = image_size
    k = KITTI_K.clone()
    k[0] *= w / 1220.0
    k[1] *= h / 370.0
    ts = []
    for i in range(f):
        move = torch.eye(4)
        move[0, 3] = 1.5 * i  # frame i sees the scene from 1.5 i metres behind
        ts.append(KITTI_TR @ move)
    lo = torch.tensor(cfg.grid.origin)
    hi = torch.tensor(cfg.grid.upper)
    pts = []
    for _ in range(batch_size):
        ground = torch.rand(points, 3, generator=g) * (hi - lo) + lo
        ground[:, 2] = lo[2] + 0.3 + 0.05 * torch.randn(points, generator=g)
        centres = torch.rand(8, 1, 3, generator=g) * (hi - lo) * 0.8 + lo + 0.1 * (hi - lo)
        boxes = (centres + torch.randn(8, points // 8, 3, generator=g)).reshape(-1, 3)
        pts.append(torch.cat([ground, boxes]))
    return SSCBatch(
        images=torch.randn(batch_size, f, 3, h, w, generator=g),
        intrinsics=k.expand(batch_size, f, 3, 3).clone(),
        lidar_to_cam=torch.stack(ts).expand(batch_size, f, 4, 4).clone(),
        points=pts,
    )


def check_outputs(out: dict[str, torch.Tensor], cfg: SGNConfig, batch_size: int) -> None:
    x, y, z = cfg.grid.dims
    c = cfg.num_classes
    assert out["ssc_logits"].shape == (batch_size, c, x, y, z)
    assert out["occ_logits"].shape == (batch_size, 1, x // 2, y // 2, z // 2)
    assert out["proposal_logits"].shape == (batch_size, 1, x // 2, y // 2, z // 2)
    s = out["seed_index"].shape[0]
    assert out["seed_index"].shape == (s, 4) and out["seed_index"].dtype == torch.int64
    assert out["seed_logits"].shape == (s, c)
    idx = out["seed_index"]
    assert int(idx[:, 0].min()) >= 0 and int(idx[:, 0].max()) < batch_size
    for axis, d in enumerate((x // 2, y // 2, z // 2)):
        assert int(idx[:, axis + 1].min()) >= 0 and int(idx[:, axis + 1].max()) < d
    for k, v in out.items():
        if v.is_floating_point():
            assert torch.isfinite(v).all(), k


def expected_seeds(proposal_logits: torch.Tensor) -> torch.Tensor:
    """Slow obvious seed selection: per sample, voxels with logit > 0, or all if fewer than 2."""
    rows = []
    for b in range(proposal_logits.shape[0]):
        m = proposal_logits[b, 0] > 0
        if int(m.sum()) < 2:
            m = torch.ones_like(m)
        for xyz in m.nonzero().tolist():
            rows.append([b, *xyz])
    return torch.tensor(rows, dtype=torch.int64)


# --------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize(("variant", "dataset"), sorted(PARAM_COUNTS))
def test_parameter_counts_match_reference(variant, dataset):
    model = build_model(variant, dataset)
    assert sum(p.numel() for p in model.parameters()) == PARAM_COUNTS[(variant, dataset)]
    # Derived constants are buffers outside the state dict; FLoSP has no state at all.
    assert not any("centres" in k or "range_lo" in k for k in model.state_dict())
    assert not list(model.flosp.buffers())


def test_build_model_accepts_config_and_rejects_contradiction():
    cfg = small_config("sgn-l", "kitti360")
    model = build_model(cfg)
    assert model.cfg is cfg and model.output_head.mlp[1].out_features == 19
    with pytest.raises(ValueError, match="contradicts"):
        build_model(cfg, dataset="semantickitti")


# --------------------------------------------------------------------------- forward / backward
@pytest.mark.parametrize(
    ("variant", "dataset", "batch_size"),
    [("sgn-t", "semantickitti", 1), ("sgn-s", "kitti360", 2), ("sgn-l", "semantickitti", 2), ("sgn-l", "kitti360", 1)],
)
def test_forward_backward_every_variant(variant, dataset, batch_size):
    torch.manual_seed(0)
    cfg = small_config(variant, dataset)
    model = build_model(cfg).train()
    batch = make_batch(cfg, batch_size)
    assert batch.num_frames == (1 if variant == "sgn-s" else 5)  # SGN-T and SGN-L are temporal
    out = model(batch)
    check_outputs(out, cfg, batch_size)
    assert torch.equal(out["seed_index"], expected_seeds(out["proposal_logits"].detach()))
    loss = sum(out[k].float().square().mean() for k in ("ssc_logits", "occ_logits", "proposal_logits", "seed_logits"))
    loss.backward()
    # Frozen (stem, layer1, every BN of the encoder) and unused parameters get no gradient;
    # every other parameter gets a finite, non-zero one.
    unused = {id(p) for p in model.unused_parameters()}
    frozen = {id(p) for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    for mod in (model.encoder.conv1, model.encoder.layer1):
        frozen |= {id(p) for p in mod.parameters()}
    for name, p in model.named_parameters():
        if id(p) in frozen or id(p) in unused:
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None, name
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    # BatchNorm of the encoder stays in eval mode under .train().
    assert all(not m.training for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_batch_equals_single_samples():
    """Samples in one batch give the same numbers as alone (eval mode; sparse structure differs per sample)."""
    torch.manual_seed(0)
    cfg = small_config("sgn-l")
    model = build_model(cfg).eval()
    batch = make_batch(cfg, 2, seed=3)
    with torch.no_grad():
        both = model(batch)
        for b in range(2):
            one = SSCBatch(
                batch.images[b : b + 1], batch.intrinsics[b : b + 1], batch.lidar_to_cam[b : b + 1], [batch.points[b]]
            )
            single = model(one)
            for key in ("ssc_logits", "occ_logits", "proposal_logits"):
                torch.testing.assert_close(both[key][b : b + 1], single[key], atol=1e-5, rtol=1e-5)
            sel = both["seed_index"][:, 0] == b
            assert torch.equal(both["seed_index"][sel][:, 1:], single["seed_index"][:, 1:])
            torch.testing.assert_close(both["seed_logits"][sel], single["seed_logits"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bias", [-50.0, 50.0])
def test_seed_fallback_and_all_seeds(bias):
    """Proposal logits all < 0 -> every voxel is a seed (reference fallback); all > 0 -> also all."""
    cfg = small_config("sgn-l")
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.proposal.seg_head.conv_classes.weight.zero_()
        model.proposal.seg_head.conv_classes.bias.fill_(bias)
        out = model(make_batch(cfg, 2))
    n = cfg.grid.num_voxels // 8
    assert out["seed_index"].shape[0] == 2 * n
    check_outputs(out, cfg, 2)


def test_empty_point_cloud_gives_zero_bev_and_runs():
    cfg = small_config("sgn-l")
    model = build_model(cfg).eval()
    batch = make_batch(cfg, 2)
    batch.points[0] = batch.points[0][:5]  # fewer than MIN_POINTS: treated as empty
    batch.points[1] = torch.full((50, 3), 1e4)  # all outside the volume
    with torch.no_grad():
        bev = model.proposal.bev_map(batch.points, 2)
        assert bev.shape == (2, cfg.grid.dims[2], cfg.grid.dims[0], cfg.grid.dims[1])
        assert not bev.any()
        check_outputs(model(batch), cfg, 2)


def test_without_guidance_channels():
    cfg = small_config("sgn-l", guidance=False)
    model = build_model(cfg).eval()
    assert model.proposal.seg_head.guidance_layer is None
    assert model.diffusion.conv_in.in_channels == cfg.model.embed_dims
    with torch.no_grad():
        check_outputs(model(make_batch(cfg, 1)), cfg, 1)


def test_deterministic_single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = small_config("sgn-l")
        outs = []
        for _ in range(2):
            torch.manual_seed(123)
            model = build_model(cfg).train()
            out = model(make_batch(cfg, 1, seed=7))
            out["ssc_logits"].mean().backward()
            outs.append((out, model.bottleneck.weight.grad.clone()))
        for key in outs[0][0]:
            assert torch.equal(outs[0][0][key], outs[1][0][key]), key
        assert torch.equal(outs[0][1], outs[1][1])
    finally:
        torch.set_num_threads(threads)


def test_forward_is_a_pure_function_of_the_batch():
    """Regression (FLoSP kept a projection cache outside state_dict): tables travel on the batch;
    a forward changes no module state, and given tables equal the ones the model would make."""
    from dataclasses import replace

    torch.manual_seed(0)
    cfg = small_config("sgn-l")
    model = build_model(cfg).eval()
    batch = make_batch(cfg, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = set(vars(model.flosp))
    index, visible = model.projection_tables(batch)
    with torch.no_grad():
        a = model(batch)["ssc_logits"]
        b = model(replace(batch, gather_index=index, fov_mask=visible))["ssc_logits"]
        moved = batch.lidar_to_cam.clone()
        moved[..., 0, 3] += 0.5
        c = model(replace(batch, lidar_to_cam=moved))["ssc_logits"]
        d = model(batch)["ssc_logits"]
    assert torch.equal(a, b) and torch.equal(a, d) and not torch.equal(a, c)
    assert set(vars(model.flosp)) == attrs
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="both or neither"):
        replace(batch, gather_index=index)


def test_sparse_conv_algorithm_follows_the_device_not_the_forward():
    """Regression: a model that ran once on the CPU kept spconv's Native algorithm after
    .to('cuda'), because every CPU forward set it. Now placement chooses it, forward never does."""
    import sgn_ros.model.sgn as sgn_module
    from sgn_ros.model.spconv_compat import conv_algorithm, place_sparse_convs, spconv

    def algos(m):
        return {c.algo for c in m.modules() if isinstance(c, spconv.conv.SparseConvolution)}

    native, gemm = spconv.ConvAlgo.Native, spconv.ConvAlgo.MaskImplicitGemm
    assert conv_algorithm("cpu", cpu_only_build=False) == native
    assert conv_algorithm("cuda", cpu_only_build=False) == gemm
    assert conv_algorithm("cuda", cpu_only_build=True) == native
    torch.manual_seed(0)
    cfg = small_config("sgn-l")
    model = build_model(cfg).eval()
    assert algos(model) == {native}
    with torch.no_grad():
        model(make_batch(cfg, 1))  # a CPU forward
    place_sparse_convs(model, "cuda", cpu_only_build=False)  # what .to('cuda') does on a CUDA build
    assert algos(model) == {gemm}
    # .to(...) goes through the placement hook with the new device ('meta': no CUDA needed here)
    seen = []
    original = sgn_module.place_sparse_convs
    sgn_module.place_sparse_convs = lambda m, d: seen.append(torch.device(d))
    try:
        model.to("meta")
    finally:
        sgn_module.place_sparse_convs = original
    assert seen == [torch.device("meta")]


MODEL_DIR = Path(__file__).resolve().parent.parent / "sgn_ros" / "model"
FORWARD_MODULES = ("sgn.py", "flosp.py", "projection.py", "proposal.py", "guidance.py", "sparse_blocks.py",
                   "diffusion.py", "heads.py")


@pytest.mark.parametrize("filename", FORWARD_MODULES)
def test_forward_code_has_no_host_round_trips(filename):
    """No .cpu() / .numpy() / .item() / .tolist() and no NumPy in the network's modules."""
    tree = ast.parse((MODEL_DIR / filename).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("cpu", "numpy", "item", "tolist"):
            pytest.fail(f"{filename}:{node.lineno}: .{node.attr} in network code")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n and n.split(".")[0] == "numpy" for n in names), f"{filename}:{node.lineno}: numpy"


def test_forward_waits_for_the_device_only_where_sparse_voxels_need_it():
    """The running twin of the check above. On CUDA an operation whose output size depends on
    device data makes the host wait. In a forward, the only such operations are the sparse path's
    own: torch.unique (voxelisation, pooling cells) and nonzero (the seeds). There is no item(),
    no bincount, and no repeat_interleave without its output size."""
    from sgn_ros.runtime import recorded_ops

    waiting = {"_local_scalar_dense", "bincount", "nonzero", "_unique2", "unique_dim", "masked_select"}
    torch.manual_seed(0)
    cfg = small_config("sgn-l")
    model = build_model(cfg).eval()
    with torch.no_grad(), recorded_ops() as ops:
        model(make_batch(cfg, 1))
    seen = [name for name, kwargs in ops if name in waiting
            or (name == "repeat_interleave" and kwargs.get("output_size") is None)]
    assert set(seen) <= {"_unique2", "nonzero"}, seen
    # 1 voxelisation + 4 pooling scales in the proposal + 9 cell groupings in the guidance; 2 seed splits
    assert seen.count("_unique2") == 14 and seen.count("nonzero") == 2, seen


@pytest.mark.slow
def test_full_size_sgn_l_forward():
    """The real grid (256 x 256 x 32) and image (370 x 1220), SGN-L, one sample."""
    torch.manual_seed(0)
    cfg = load_config("sgn-l")
    model = build_model(cfg).eval()
    batch = make_batch(cfg, 1, image_size=cfg.data.image_size, points=20000)
    with torch.no_grad():
        out = model(batch)
    check_outputs(out, cfg, 1)
    assert out["ssc_logits"].shape == (1, 20, 256, 256, 32)
    assert torch.equal(out["seed_index"], expected_seeds(out["proposal_logits"]))


def test_encoder_unfrozen_for_training_from_scratch():
    """encoder_frozen_stages=0 / encoder_norm_eval=False (the synthetic demo recipe): the stem and
    every BatchNorm learn, BatchNorm statistics update, and the unused layer4 stays frozen."""
    torch.manual_seed(0)
    cfg = small_config("sgn-l", encoder_frozen_stages=0, encoder_norm_eval=False)
    model = build_model(cfg)
    model.train()
    assert model.encoder.bn1.training
    before = model.encoder.bn1.running_mean.clone()
    out = model(make_batch(cfg))
    out["ssc_logits"].float().mean().backward()
    assert model.encoder.conv1.weight.grad is not None and model.encoder.conv1.weight.grad.abs().sum() > 0
    assert model.encoder.bn1.weight.grad is not None
    assert not torch.equal(before, model.encoder.bn1.running_mean)
    assert all(not p.requires_grad for p in model.encoder.layer4.parameters())
