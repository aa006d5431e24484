"""Tests of sgn_ros.stereo.msnet (MobileStereoNet-3D / -2D) at reduced sizes.

The vectorised parts are checked against slow, obvious versions written the way the reference
code does them (one disparity at a time, cropped overlaps); the checkpoint name table against the
reference's exact parameter names and shapes (their sorted list's SHA-256, taken by hand from
cogsys-tuebingen/mobilestereonet, models/*.py). The network against the reference code itself was
compared by hand (README, "MobileStereoNet").
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgn_ros.cli import main as cli_main
from sgn_ros.data import kitti_io
from sgn_ros.stereo import msnet
from sgn_ros.stereo.msnet import (
    REFERENCE_NAME_TABLE,
    MSNetWeightsMissing,
    StereoDepth,
    build_msnet,
    convert_reference_state_dict,
    disparity,
    disparity_regression,
    groupwise_correlation_volume,
    load_msnet,
    padded_size,
    prepare_pair,
)

#: (tensor count, SHA-256 of 'name:shape;...' sorted) of the reference's MSNet3D(192) / MSNet2D(192)
REFERENCE_LAYOUT = {
    "msnet3d": (1126, "66fa6a466b6ce32fc9d2700d68af54286b656f6b60d45adce21245921af2e262"),
    "msnet2d": (1173, "7f3d2bfdaeab663aab07a357ef708655e04ef9be5661418719dd779011ef9e32"),
}


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and BN statistics, so that every tensor changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var") or (t.dim() == 1 and name.endswith("weight")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() == 1:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)
    return model.eval()


def to_reference_names(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our state dict under the reference's names (REFERENCE_NAME_TABLE read backwards), as the
    released files hold it (DataParallel 'module.' prefix)."""
    out = {}
    for name, t in model.state_dict().items():
        rows = [(ref, ours) for ref, ours in REFERENCE_NAME_TABLE[model.kind] if name.startswith(ours)]
        assert len(rows) == 1, name
        out["module." + rows[0][0] + name[len(rows[0][1]) :]] = t.clone()
    return out


def pair(h: int, w: int, shift: int, seed: int = 0, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (h, w + shift, 3) if batch is None else (batch, h, w + shift, 3)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    return np.ascontiguousarray(img[..., shift:, :]), np.ascontiguousarray(img[..., :w, :])


# --------------------------------------------------------------------------- slow obvious versions
def test_groupwise_correlation_matches_per_disparity_loop() -> None:
    torch.manual_seed(0)
    fl, fr = torch.randn(2, 12, 5, 17), torch.randn(2, 12, 5, 17)
    groups, d_max = 3, 9
    slow = torch.zeros(2, groups, d_max, 5, 17)
    for d in range(d_max):
        for g in range(groups):
            c = slice(4 * g, 4 * g + 4)
            for w in range(d, 17):
                slow[:, g, d, :, w] = (fl[:, c, :, w] * fr[:, c, :, w - d]).mean(1)
    torch.testing.assert_close(groupwise_correlation_volume(fl, fr, d_max, groups), slow, rtol=1e-6, atol=1e-6)
    # chunked over disparities (tiny memory budget) gives the same volume
    orig = msnet._chunk
    try:
        msnet._chunk = lambda n, b, budget=0: 2
        torch.testing.assert_close(groupwise_correlation_volume(fl, fr, d_max, groups), slow, rtol=1e-6, atol=1e-6)
    finally:
        msnet._chunk = orig
    with pytest.raises(ValueError, match="groups"):
        groupwise_correlation_volume(fl, fr, d_max, 5)


def test_interlaced_cost_matches_cropped_per_disparity_loop() -> None:
    """MSNet2D's masked, batched cost == the reference's way: convolve each overlap, cropped."""
    net = randomise(build_msnet("msnet2d", 48))
    torch.manual_seed(1)
    fl, fr = torch.randn(2, 32, 4, 52), torch.randn(2, 32, 4, 52)
    slow = torch.zeros(2, 48, 4, 52)
    with torch.no_grad():
        for d in range(48):
            a, b = fl[..., d:], fr[..., : 52 - d]
            woven = torch.stack((a, b), dim=2).reshape(2, 64, 4, 52 - d)  # channels L0, R0, L1, R1, ...
            x = net.interlace(woven.unsqueeze(1)).squeeze(2)
            slow[:, d, :, d:] = net.interlace_proj(x)[:, 0]
        fast = net.cost_volume(fl, fr)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_disparity_regression_matches_explicit_softmax_sum() -> None:
    torch.manual_seed(2)
    cost = torch.randn(2, 1, 4, 3, 5)
    got = disparity_regression(cost, 16, (12, 20))
    up = F.interpolate(cost, [16, 12, 20], mode="trilinear")[:, 0]
    slow = torch.zeros(2, 12, 20)
    for b in range(2):
        for y in range(12):
            for x in range(20):
                e = torch.exp(up[b, :, y, x] - up[b, :, y, x].max())
                slow[b, y, x] = sum(d * e[d] for d in range(16)) / e.sum()
    torch.testing.assert_close(got, slow, rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("kind", ["msnet3d", "msnet2d"])
def test_name_table_covers_the_reference_layout_exactly(kind: str) -> None:
    model = build_msnet(kind, 192)
    ref = {k[len("module.") :]: v for k, v in to_reference_names(model).items()}
    listing = ";".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(ref.items()))
    assert (len(ref), hashlib.sha256(listing.encode()).hexdigest()) == REFERENCE_LAYOUT[kind]


def test_strict_name_table_rejects_what_does_not_fit() -> None:
    model = build_msnet("msnet3d", 48)
    sd = to_reference_names(model)
    assert set(convert_reference_state_dict(sd, model)) == set(model.state_dict())
    extra = dict(sd, **{"module.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unmapped \[module\.extra\.weight\]"):
        convert_reference_state_dict(extra, model)
    missing = dict(sd)
    del missing["module.classif3.2.weight"]
    with pytest.raises(ValueError, match=r"missing \[heads\.3\.2\.weight\]"):
        convert_reference_state_dict(missing, model)
    wrong = dict(sd, **{"module.classif3.2.weight": torch.zeros(1, 32, 3, 3)})
    with pytest.raises(ValueError, match="shape mismatch"):
        convert_reference_state_dict(wrong, model)
    with pytest.raises(ValueError, match="msnet2d"):  # a 3D file is not a 2D network
        convert_reference_state_dict(sd, build_msnet("msnet2d", 48))


def test_released_file_loads_converts_and_refuses_without_weights(tmp_path) -> None:
    src = randomise(build_msnet("msnet3d", 192))
    ref_sd = to_reference_names(src)
    released = tmp_path / "MSNet3D_SF_DS_KITTI2015.ckpt"
    # the released files are train.py's {'epoch', 'model', 'optimizer'} dicts
    torch.save({"epoch": 399, "model": ref_sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}}, released)
    left, right = pair(30, 60, 3)
    model = load_msnet(released)
    assert model.kind == "msnet3d" and not model.training
    want = disparity(src, left, right, min_size=None)
    torch.testing.assert_close(disparity(model, left, right, min_size=None), want)
    # the CLI converts it (kind auto-detected) into our format, which loads to the same network
    out = tmp_path / "msnet3d.pt"
    assert cli_main(["convert-checkpoint", str(released), str(out)]) == 0
    assert torch.load(out, weights_only=True)["kind"] == "msnet3d"
    torch.testing.assert_close(disparity(load_msnet(out), left, right, min_size=None), want)
    with pytest.raises(ValueError, match="msnet2d was asked for"):
        load_msnet(out, kind="msnet2d")
    # no weights: a refusal that says where the released weights are and how to convert them
    for missing in (None, tmp_path / "absent.ckpt"):
        with pytest.raises(MSNetWeightsMissing, match=r"cogsys-tuebingen/mobilestereonet.*convert-checkpoint"):
            StereoDepth(missing)
    bad = tmp_path / "other.ckpt"
    torch.save({"model": {"module.backbone.weight": torch.zeros(1)}}, bad)
    with pytest.raises(ValueError, match="not a MobileStereoNet checkpoint"):
        load_msnet(bad)


# --------------------------------------------------------------------------- input handling
def test_prepare_pair_normalises_and_pads_like_the_reference() -> None:
    assert padded_size(375, 1242) == (384, 1248)  # KITTI odometry 00-02
    assert padded_size(370, 1226) == (384, 1248)  # 04-12: the reference pads to 384 x 1248 too
    assert padded_size(400, 1300) == (400, 1312)  # larger: next multiple of 16
    assert padded_size(50, 70, None) == (64, 80)
    left, right = pair(50, 70, 2)
    lt, rt, pads = prepare_pair(left, right, min_size=None)
    assert lt.shape == (1, 3, 64, 80) and pads == (14, 10)
    assert torch.all(lt[:, :, :14] == 0) and torch.all(lt[..., 70:] == 0)
    want = (left[0, 0] / 255.0 - np.array(msnet.IMAGENET_MEAN)) / np.array(msnet.IMAGENET_STD)
    np.testing.assert_allclose(lt[0, :, 14, 0].numpy(), want, rtol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        prepare_pair(left.astype(np.float32), right)
    with pytest.raises(ValueError, match="differ in size"):
        prepare_pair(left, right[:, :60])
    with pytest.raises(ValueError, match="multiples of 16"):
        build_msnet("msnet3d", 48)(lt[..., :70], rt[..., :70])


@pytest.mark.parametrize("kind", ["msnet3d", "msnet2d"])
def test_any_size_and_batches_give_per_image_results(kind: str) -> None:
    model = randomise(build_msnet(kind, 48))
    left, right = pair(37, 75, 4, batch=2)
    both = disparity(model, torch.from_numpy(left), torch.from_numpy(right), min_size=None)
    assert both.shape == (2, 37, 75) and both.dtype == torch.float32
    for i in range(2):
        torch.testing.assert_close(disparity(model, left[i], right[i], min_size=None), both[i], rtol=1e-4, atol=1e-4)
    assert float(both.min()) >= 0 and float(both.max()) <= 47


def test_training_mode_returns_four_supervised_disparities() -> None:
    model = build_msnet("msnet3d", 48).train()
    lt, rt, _ = prepare_pair(*pair(32, 64, 2), min_size=None)
    outs = model(lt, rt)
    assert len(outs) == 4 and all(o.shape == (1, 32, 64) for o in outs)
    sum(F.smooth_l1_loss(o, torch.full_like(o, 2.0)) for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- preprocess CLI
P2 = np.array([[718.856, 0, 30.0, 45.38225], [0, 718.856, 15.0, -0.1130887], [0, 0, 1, 0.003779761]])


def test_preprocess_stereo_depth_msnet3d_writes_reference_layout(tmp_path, capsys) -> None:
    from PIL import Image

    root = tmp_path / "kitti"
    seq = root / "dataset" / "sequences" / "04"
    for cam in ("image_2", "image_3"):
        (seq / cam).mkdir(parents=True)
    p3 = P2.copy()
    p3[0, 3] = -337.2877
    kitti_io.write_calib(seq / "calib.txt", {"P0": P2, "P1": P2, "P2": P2, "P3": p3, "Tr": np.eye(4)})
    left, right = pair(30, 60, 3)
    for f in range(2):
        Image.fromarray(left).save(seq / "image_2" / f"{f:06d}.png")
        Image.fromarray(right).save(seq / "image_3" / f"{f:06d}.png")
    src = randomise(build_msnet("msnet3d", 48))
    args = ["preprocess", "stereo-depth", "--root", str(root), "--method", "msnet3d", "--pad-to", "0", "0"]
    assert cli_main(args) == 2  # a user error: one line naming where the released weights are
    assert "mobilestereonet" in capsys.readouterr().err
    # maxdisp 48 networks are not a released layout: written converted, the file carries maxdisp
    conv = tmp_path / "w.pt"
    torch.save({"format": msnet.CHECKPOINT_FORMAT, "kind": "msnet3d", "maxdisp": 48,
                "state_dict": src.state_dict()}, conv)
    assert cli_main(args + ["--weights", str(conv)]) == 0
    out = root / "dataset" / "sequences_msnet3d_depth" / "sequences" / "04"
    assert sorted(p.name for p in out.iterdir()) == ["000000.npy", "000001.npy"]
    depth = np.load(out / "000001.npy")
    assert depth.shape == (30, 60) and depth.dtype == np.float32
    disp = disparity(src, left, right, min_size=(0, 0)).numpy()
    np.testing.assert_allclose(depth, 0.54 * 718.856 / np.clip(disp, 1e-8, None), rtol=1e-5)
    assert cli_main(["preprocess", "stereo-depth", "--root", str(root), "--weights", str(conv)]) == 2
    assert "--weights applies to msnet3d" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_float16_on_gpu_agrees_with_float32() -> None:
    model = randomise(build_msnet("msnet3d", 192)).cuda()
    left, right = pair(64, 128, 6, batch=2)
    want = disparity(model, left, right, min_size=None)
    got = disparity(model.half(), left, right, min_size=None)
    assert got.dtype == torch.float32 and got.device.type == "cuda"
    assert float((got - want).abs().median()) < 0.5
