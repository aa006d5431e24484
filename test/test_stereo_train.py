"""Tests of MobileStereoNet training (sgn_ros.stereo.dataset / sgn_ros.stereo.train) on the CPU.

Real files (a tiny synthetic world: 2 frames per sequence at 64 x 128), real optimisation steps of
the real network at a reduced maxdisp (16) and crop (32 x 64); only the size of the full recipe is
checked at full scale (the compact export of MSNet3D / MSNet2D at maxdisp 192).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sgn_ros.cli import main as cli_main
from sgn_ros.data.stereo import stereo_baseline_focal
from sgn_ros.stereo.dataset import StereoDisparityDataset
from sgn_ros.stereo.msnet import CHECKPOINT_FORMAT, build_msnet, load_msnet, prepare_pair
from sgn_ros.stereo.train import (
    COMPACT_LIMIT_BYTES,
    export_compact,
    load_stereo_config,
    msnet_loss,
    reference_lr,
    run,
)

SIZE = (64, 128)
#: CLI overrides of the tiny recipe every run here uses
TINY = ["maxdisp=16", "crop=[32,64]", "batch_size=1", "num_workers=0", "log_interval=1", "eval_interval=0",
        "train_sequences=['00']", "val_sequences=[]"]


@pytest.fixture(scope="module")
def stereo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic sequences 00 (training) and 08 (held out), 2 frames each, with true depth."""
    from sgn_ros.data.synth import generate_sequence

    root = tmp_path_factory.mktemp("stereo_synth")
    for seq, seed in (("00", 3), ("08", 11)):
        generate_sequence(root, sequence=seq, frames=2, seed=seed, depth=True, image_size=SIZE)
    return root


def train_args(root: Path, work_dir: Path, *extra: str, resume: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(config="msnet3d-synth", data_root=str(root), work_dir=str(work_dir), resume=resume,
                              override=[*TINY, *extra], export=None, device="cpu")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# --------------------------------------------------------------------------- data
def test_dataset_disparity_is_baseline_focal_over_depth(stereo_root: Path) -> None:
    full = StereoDisparityDataset(stereo_root, ["00"])
    item = full[1]
    calib = full.sequences["00"].calib
    b, f = stereo_baseline_focal(calib["P2"], calib["P3"])
    depth, disp = item["depth"].numpy(), item["disparity"].numpy()
    hit = depth > 0
    assert hit.mean() > 0.5 and (~hit).any()  # ground and objects, and some sky without truth
    np.testing.assert_allclose(disp[hit] * depth[hit], b * f, rtol=1e-5)
    assert (disp[~hit] == 0).all()
    assert item["left"].shape == (*SIZE, 3) and item["left"].dtype == torch.uint8
    # crops: a pure function of (seed, epoch, index), cut from the full frame at one place for all four
    crops = StereoDisparityDataset(stereo_root, ["00"], crop=(32, 64), seed=5)
    a, again = crops[1], crops[1]
    assert torch.equal(a["left"], again["left"]) and a["disparity"].shape == (32, 64)
    windows = torch.from_numpy(np.lib.stride_tricks.sliding_window_view(item["disparity"].numpy(), (32, 64)).copy())
    hits = (windows == a["disparity"]).flatten(2).all(-1).nonzero()
    y, x = hits[0].tolist()
    assert torch.equal(a["left"], item["left"][y : y + 32, x : x + 64])
    assert torch.equal(a["right"], item["right"][y : y + 32, x : x + 64])
    seen = set()
    for epoch in range(6):
        crops.set_epoch(epoch)
        seen.add(crops[1]["left"].numpy().tobytes())
    assert len(seen) > 1


def test_config_rejects_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    cfg = load_stereo_config("msnet3d-synth")
    assert (cfg.kind, cfg.maxdisp, cfg.crop, cfg.lr, cfg.loss_weights) == ("msnet3d", 192, (256, 512), 1e-3,
                                                                           (0.5, 0.5, 0.7, 1.0))
    assert cfg.val_sequences == ("08",) and "08" not in cfg.train_sequences
    with pytest.raises(ValueError, match="unknown key.*bogus"):
        load_stereo_config("msnet3d-synth", {"bogus": 1})
    with pytest.raises(ValueError, match="multiples of 16"):
        load_stereo_config("msnet3d-synth", {"crop": [30, 64]})


def test_reference_step_schedule() -> None:
    lrs = [reference_lr(e, 1e-3, (10, 12, 14, 16), 2.0) for e in range(20)]
    assert lrs[:10] == [1e-3] * 10
    assert lrs[10:12] == [5e-4] * 2 and lrs[12:14] == [2.5e-4] * 2 and lrs[14:16] == [1.25e-4] * 2
    assert lrs[16:] == [6.25e-5] * 4


def test_loss_masks_and_weights() -> None:
    target = torch.tensor([[[0.0, 5.0, 20.0, 3.0]]])
    outs = [torch.tensor([[[100.0, 5.5, -50.0, 3.0]]])] * 4
    total, terms = msnet_loss(outs, target, maxdisp=16, weights=(0.5, 0.5, 0.7, 1.0))
    # only 5 and 3 count (0 and 20 >= maxdisp do not): smooth L1 = (0.5 * 0.5**2 + 0) / 2
    np.testing.assert_allclose([t.item() for t in terms], [0.5 * 0.0625, 0.5 * 0.0625, 0.7 * 0.0625, 0.0625])
    assert total.item() == pytest.approx(2.7 * 0.0625)
    empty, _ = msnet_loss([o.clone().requires_grad_() for o in outs], torch.zeros_like(target), 16, (1, 1, 1, 1))
    assert empty.item() == 0.0 and empty.requires_grad


def test_loss_falls_overfitting_one_pair(stereo_root: Path) -> None:
    torch.manual_seed(0)
    item = StereoDisparityDataset(stereo_root, ["00"], crop=(32, 64), seed=1)[0]
    model = build_msnet("msnet3d", 16).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    left, right, _ = prepare_pair(item["left"], item["right"], min_size=None)
    target = item["disparity"][None]
    losses = []
    for _ in range(8):
        loss, _ = msnet_loss(model(left, right), target, 16, (0.5, 0.5, 0.7, 1.0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# --------------------------------------------------------------------------- the trainer
def test_resume_is_bit_identical_and_files_load(stereo_root: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    recipe = ["epochs=2", "max_iters_per_epoch=2", "lr_epochs=[1]", "checkpoint_interval_iters=3"]
    whole = tmp_path / "whole"
    run(train_args(stereo_root, whole, *recipe, "val_sequences=['08']"))
    table = capsys.readouterr().out
    # held-out evaluation next to SGBM: printed and written
    assert "msnet3d" in table and "sgbm" in table and "EPE" in table
    scores = json.loads((whole / "eval.json").read_text())["metrics"]
    assert set(scores) == {"msnet3d", "sgbm"} and scores["msnet3d"]["density"] == 1.0
    assert 0 < scores["sgbm"]["density"] < 1 and np.isfinite(scores["sgbm"]["depth_rel_median"])
    assert {p.name for p in whole.iterdir()} >= {"epoch_1.pth", "epoch_2.pth", "iter_3.pth", "latest.pth",
                                                "config.yaml", "train.log", "tb", "msnet3d-synth.pt"}
    assert (whole / "latest.pth").resolve().name == "epoch_2.pth"
    assert any(p.name.startswith("events.out.tfevents") for p in (whole / "tb").iterdir())
    final = weights(whole / "epoch_2.pth")

    # from the epoch boundary and from the middle of epoch 2: the same final weights and optimiser, bit for bit
    for name, start in (("from_epoch", "epoch_1.pth"), ("from_iter", "iter_3.pth")):
        work = tmp_path / name
        work.mkdir()
        shutil.copy(whole / start, work / start)
        run(train_args(stereo_root, work, *recipe, resume=str(work / start)))
        resumed = weights(work / "epoch_2.pth")
        assert resumed.keys() == final.keys()
        assert all(torch.equal(resumed[k], final[k]) for k in final), name
        a = torch.load(work / "epoch_2.pth", weights_only=True)["training"]
        b = torch.load(whole / "epoch_2.pth", weights_only=True)["training"]
        assert a["iteration"] == b["iteration"] == 4
        for pid, st in b["optimizer"]["state"].items():
            assert torch.equal(a["optimizer"]["state"][pid]["exp_avg"], st["exp_avg"])
        assert a["optimizer"]["param_groups"][0]["lr"] == 5e-4

    # the training checkpoint is an MSNet checkpoint: load_msnet reads it
    model = load_msnet(whole / "epoch_2.pth")
    assert (model.kind, model.maxdisp, model.training) == ("msnet3d", 16, False)
    assert torch.equal(model.state_dict()["heads.3.2.weight"], final["heads.3.2.weight"])
    # the compact export: float16 on disk, loads, and gives the same disparity to float16 precision
    compact = whole / "msnet3d-synth.pt"
    raw = torch.load(compact, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and "training" not in raw
    assert raw["state_dict"]["heads.3.2.weight"].dtype == torch.float16
    small = load_msnet(compact)
    item = StereoDisparityDataset(stereo_root, ["08"])[0]
    left, right, _ = prepare_pair(item["left"], item["right"], min_size=None)
    with torch.no_grad():
        d_full, d_small = model(left, right)[-1], small(left, right)[-1]
    assert (d_full - d_small).abs().max().item() < 0.1


@pytest.mark.parametrize("kind", ["msnet3d", "msnet2d"])
def test_compact_export_of_the_full_network_fits(kind: str, tmp_path: Path) -> None:
    model = build_msnet(kind, 192)
    out = export_compact(model, tmp_path / f"{kind}.pt", note="test")
    size = out.stat().st_size
    assert size <= COMPACT_LIMIT_BYTES
    loaded = load_msnet(out, kind=kind)
    assert loaded.maxdisp == 192
    assert all(torch.equal(a.half().float(), b) for a, b in zip(model.state_dict().values(),
                                                                  loaded.state_dict().values())
               if a.is_floating_point())
    with pytest.raises(ValueError, match="above the"):
        export_compact(model, tmp_path / "too_big.pt", limit_bytes=size - 1, note="test")
    assert not (tmp_path / "too_big.pt").exists()


@pytest.mark.parametrize("broken", ["image_3/000001.png", "depth/000000.npy"])
def test_a_broken_data_file_is_named_and_leaves_nothing(broken: str, stereo_root: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    shutil.copytree(stereo_root, root)
    bad = root / "dataset" / "sequences" / "00" / broken
    bad.write_bytes(bad.read_bytes()[:-20])
    work = tmp_path / "runs" / "w"
    rc = cli_main(["train-stereo", "--data-root", str(root), "--work-dir", str(work), "--device", "cpu",
                   "--override", *TINY, "epochs=1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(bad) in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_cli_user_errors_exit_2(stereo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["train-stereo", "--data-root", str(stereo_root), "--work-dir", str(tmp_path / "w"),
                   "--override", "bogus=1"])
    assert rc == 2 and "bogus" in capsys.readouterr().err
    rc = cli_main(["train-stereo", "--data-root", str(stereo_root), "--work-dir", str(tmp_path / "w"),
                   "--device", "cpu", "--override", *TINY, "train_sequences=['05']"])
    assert rc == 2 and "05" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
