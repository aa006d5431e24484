# Tests of the trainer on the CPU with the real SGN network at toy size (test/configs/sgn_tiny.yaml)
# and a small synthetic world rendered at 96 x 320 pixels: a two-process gloo run under torchrun
# whose ranks end with identical weights, a run killed with SIGKILL mid-training and resumed that
# ends bit-identical to an uninterrupted one, a short overfit whose loss falls and whose IoU rises
# well above the untrained network's, and `sgn-ros evaluate --checkpoint` on the result.
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sgn_ros.config import config_from_dict, load_config
from sgn_ros.grid import DEFAULT_GRID

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "test" / "configs" / "sgn_tiny.yaml"
SEQ = "08"  # the validation sequence: `--split val` finds it without overrides
FRAMES = 6  # voxel labels every 5th frame -> samples 0 and 5


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic sequence 08 at 96 x 320 px, prepared as real data, plus labels reduced to the tiny grid.

    The tiny grid covers the same volume with 4x larger voxels; its labels (tag labels_r4) come from
    the full-resolution training labels by the reference's block rule (sgn_ros.data.labels_preprocess).
    """
    from sgn_ros.data.labels_preprocess import downsample_labels
    from sgn_ros.data.preprocess import preprocess_depth_to_lidar, preprocess_labels
    from sgn_ros.data.synth import generate_sequence

    cfg = load_config(TINY)
    root = tmp_path_factory.mktemp("tiny_world")
    seq_dir = Path(
        generate_sequence(root, sequence=SEQ, frames=FRAMES, seed=3, depth=True, image_size=tuple(cfg.data.image_size))
    )
    preprocess_labels(root, [SEQ])
    preprocess_depth_to_lidar(root, cfg.data.depth_model, depth_dir=str(seq_dir.parent / "{seq}" / "depth"),
                              sequences=[SEQ])
    factor = DEFAULT_GRID.dims[0] // cfg.grid.dims[0]
    src = root / "dataset" / "labels" / SEQ
    dst = root / "dataset" / cfg.data.labels_tag / SEQ
    dst.mkdir(parents=True)
    for full_path in sorted(src.glob("*_1_1.npy")):
        full = np.load(full_path).reshape(DEFAULT_GRID.dims)
        reduced = downsample_labels(full, factor)
        assert reduced.shape == cfg.grid.dims
        np.save(dst / full_path.name, reduced)
        np.save(dst / full_path.name.replace("_1_1", "_1_2"), downsample_labels(reduced, 2))
    return root


def _env(threads: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _train_cmd(root: Path, work: Path, *extra: str, overrides: tuple[str, ...] = ()) -> list[str]:
    return [
        sys.executable, "-m", "sgn_ros", "train", "--config", str(TINY), "--data-root", str(root),
        "--work-dir", str(work), "--train-sequences", SEQ, "--device", "cpu", *extra,
        "--override", "train.eval_interval=0", *overrides,
    ]


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs (max abs {float((a[k] - b[k]).abs().max())})"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- (a) two processes, gloo
_DDP_WORKER = """
import os, sys, torch
from sgn_ros.cli import build_parser
from sgn_ros.training.cli import run_training
args = build_parser(only="train").parse_args(["train", *sys.argv[2:]])
trainer = run_training(args)
assert trainer.info.world_size == 2 and trainer.info.backend == "gloo"
torch.save({"model": trainer.model.state_dict(), "history": trainer.history},
           os.path.join(sys.argv[1], "rank%s.pt" % os.environ["RANK"]))
"""


def test_two_process_gloo_ranks_hold_identical_weights(tiny_root: Path, tmp_path: Path) -> None:
    worker = tmp_path / "ddp_worker.py"
    worker.write_text(_DDP_WORKER)
    work = tmp_path / "work"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), str(worker), str(tmp_path),
        *_train_cmd(tiny_root, work, overrides=("train.epochs=1", "train.lr=1e-3"))[4:],
    ]
    proc = subprocess.run(cmd, env=_env(1), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = _load(tmp_path / "rank0.pt"), _load(tmp_path / "rank1.pt")
    _assert_same_tensors(r0["model"], r1["model"], "rank 0 vs rank 1")
    # the ranks trained on different shards (one sample each) but agree on the averaged losses
    assert r0["history"] == r1["history"] and len(r0["history"]) == 1
    # training happened, and rank 0's checkpoint holds those weights
    ck = _load(work / "epoch_1.pth")
    _assert_same_tensors(ck["model"], r0["model"], "epoch_1.pth vs rank 0")
    torch.manual_seed(load_config(TINY).train.seed)
    from sgn_ros.model import build_model

    init = build_model(load_config(TINY)).state_dict()
    changed = [k for k in init if init[k].is_floating_point() and not torch.equal(init[k], r0["model"][k])]
    assert any(k.startswith("diffusion.") for k in changed) and any(k.startswith("encoder.layer3") for k in changed)
    assert ck["training"]["world_size"] == 2 and len(ck["training"]["rng"]) == 2
    assert (work / "train.log").read_text().count("2 process(es)") == 1


# --------------------------------------------------------------------------- (b) SIGKILL + resume
def test_killed_run_resumes_exactly(tiny_root: Path, tmp_path: Path) -> None:
    overrides = ("train.epochs=2", "train.checkpoint_interval_iters=1", "train.lr=1e-3")
    full, cut = tmp_path / "full", tmp_path / "cut"
    proc = subprocess.run(_train_cmd(tiny_root, full, overrides=overrides), env=_env(1), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]

    victim = subprocess.Popen(_train_cmd(tiny_root, cut, overrides=overrides), env=_env(1),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (cut / "iter_1.pth").exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (cut / "epoch_2.pth").exists()
    # latest.pth, or, killed between writing iter_1.pth and pointing latest.pth at it, iter_1.pth
    from sgn_ros.training.checkpointing import CheckpointManager

    assert CheckpointManager(cut).resolve_resume(None).is_file()

    proc = subprocess.run(_train_cmd(tiny_root, cut, "--resume", overrides=overrides), env=_env(1),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    a, b = _load(full / "epoch_2.pth"), _load(cut / "epoch_2.pth")
    _assert_same_tensors(a["model"], b["model"], "uninterrupted vs killed+resumed")
    ta, tb = a["training"], b["training"]
    assert ta["iteration"] == tb["iteration"] == 4 and tb["epoch"] == 2 and tb["step_in_epoch"] == 0
    for pid, st in ta["optimizer"]["state"].items():
        _assert_same_tensors(st, tb["optimizer"]["state"][pid], f"AdamW state {pid}")
    assert ta["optimizer"]["param_groups"] == tb["optimizer"]["param_groups"]
    assert ta["scheduler"] == tb["scheduler"]
    assert "resumed from" in (cut / "train.log").read_text()
    assert not list(cut.glob(".*.tmp")), "stale temporary files of the killed run were not cleaned up"
    # bookkeeping: latest -> the last epoch file; only the newest iteration checkpoint kept
    assert (cut / "latest.pth").resolve() == (cut / "epoch_2.pth").resolve()
    assert [p.name for p in cut.glob("iter_*.pth")] == ["iter_3.pth"]


# --------------------------------------------------------------------------- (c) overfit + evaluate
def test_overfit_loss_falls_iou_rises_and_evaluate_cli(tiny_root: Path, tmp_path: Path) -> None:
    from sgn_ros.cli import build_parser
    from sgn_ros.evaluation.cli import main as evaluate_main
    from sgn_ros.evaluation.network import evaluate_model, make_eval_loader
    from sgn_ros.training.trainer import Trainer

    epochs = 40  # 80 iterations; a short warm-up keeps the first AdamW steps of a toy network stable
    cfg = load_config(
        TINY, overrides={"train": {"epochs": epochs, "lr": 5e-3, "warmup_iters": 10, "eval_interval": epochs}}
    )
    work = tmp_path / "work"
    trainer = Trainer(cfg, tiny_root, work, train_sequences=[SEQ])
    untrained = evaluate_model(trainer.model, make_eval_loader(trainer.val_set, cfg, trainer.info), cfg, trainer.info,
                               progress=False).metrics
    final = trainer.fit()
    losses = [h["loss"] for _, h in trainer.history]
    assert len(losses) == epochs * 2
    first, last = np.mean(losses[:2]), np.mean(losses[-2:])
    assert last < 0.7 * first, f"training loss did not fall: {losses}"
    # untrained: (nearly) everything occupied -> completion IoU = occupied fraction (~0.25), mIoU ~0;
    # after 80 iterations: ~0.52 and ~0.02 (terrain, car and other large classes start to appear)
    assert final["iou_completion"] > untrained["iou_completion"] + 0.15, (untrained, final)
    assert final["iou_mean"] > untrained["iou_mean"] + 0.01, (untrained, final)

    # artefacts: log, config, TensorBoard scalars and pictures, best.pth
    assert "validation after epoch" in (work / "train.log").read_text()
    assert config_from_dict(yaml.safe_load((work / "config.yaml").read_text())) == cfg
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(work / "tb"), size_guidance={"images": 0})
    ea.Reload()
    tags = ea.Tags()
    assert {"train/loss", "train/lr", "train/loss_ssc_ce", "train/loss_seed_lovasz", "val/iou_mean",
            "val/iou_car"} <= set(tags["scalars"])
    assert any(t.startswith("val/bev_") for t in tags["images"])
    best = _load(work / "best.pth")
    assert best["training"]["best_metric"] == pytest.approx(final["iou_mean"])

    # `sgn-ros evaluate --checkpoint` (mode 2) on the best checkpoint: same scores, exported labels
    out_json, export = tmp_path / "scores.json", tmp_path / "export"
    args = build_parser(only="evaluate").parse_args([
        "evaluate", "--checkpoint", str(work / "best.pth"), "--data-root", str(tiny_root), "--split", "val",
        "--json", str(out_json), "--export", str(export), "--device", "cpu", "--num-workers", "0",
    ])
    assert evaluate_main(args) == 0
    scores = json.loads(out_json.read_text())
    assert scores["iou_mean"] == pytest.approx(final["iou_mean"], abs=1e-12)
    assert scores["iou_completion"] == pytest.approx(final["iou_completion"], abs=1e-12)
    labels = sorted((export / "sequences" / SEQ / "predictions").glob("*.label"))
    assert [p.name for p in labels] == ["000000.label", "000005.label"]
    assert labels[0].stat().st_size == 2 * cfg.grid.num_voxels


def test_train_cli_errors_name_the_problem(tiny_root: Path, tmp_path: Path) -> None:
    from sgn_ros.training.cli import parse_overrides

    assert parse_overrides(["train.lr=1e-4", "grid.dims=[64, 64, 8]"]) == {
        "train": {"lr": 1e-4}, "grid": {"dims": [64, 64, 8]}}
    with pytest.raises(ValueError, match="key.sub=value"):
        parse_overrides(["train.lr"])
    cmd = _train_cmd(tiny_root, tmp_path / "w", "--resume", overrides=("train.epochs=1",))
    proc = subprocess.run(cmd, env=_env(1), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "latest.pth" in proc.stderr
    cmd = _train_cmd(tiny_root, tmp_path / "w", overrides=("train.no_such_key=1",))
    proc = subprocess.run(cmd, env=_env(1), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "no_such_key" in proc.stderr


# --------------------------------------------------------------------------- building blocks
def test_sampler_resumes_mid_epoch_in_the_same_order() -> None:
    from sgn_ros.distributed import ResumableDistributedSampler, ShardSampler

    data = list(range(11))
    for rank in range(3):
        full = ResumableDistributedSampler(data, num_replicas=3, rank=rank, shuffle=True, seed=7)
        full.set_epoch(4)
        order = list(full)
        resumed = ResumableDistributedSampler(data, num_replicas=3, rank=rank, shuffle=True, seed=7)
        resumed.set_epoch(4)
        resumed.set_start(2)
        assert list(resumed) == order[2:] and len(resumed) == len(order) - 2
        resumed.set_epoch(5)  # the skip applies to one epoch only
        assert len(list(resumed)) == len(order)
    with pytest.raises(ValueError, match="start index"):
        resumed.set_start(99)
    shards = [list(ShardSampler(11, 3, r)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == data  # evaluation: every sample once, no padding


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    import random

    from sgn_ros.training.checkpointing import atomic_torch_save, capture_rng_state, restore_rng_state

    state = capture_rng_state()
    draws = (random.random(), np.random.rand(3).tolist(), torch.rand(3))  # noqa: NPY002
    atomic_torch_save({"rng": state}, tmp_path / "rng.pth")
    restore_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True)["rng"])
    again = (random.random(), np.random.rand(3).tolist(), torch.rand(3))  # noqa: NPY002
    assert draws[0] == again[0] and draws[1] == again[1] and torch.equal(draws[2], again[2])
    assert [p.name for p in tmp_path.iterdir()] == ["rng.pth"]


def test_non_finite_values_stop_training_with_a_clear_error() -> None:
    from sgn_ros.training.trainer import check_finite

    check_finite({"loss": 1.0, "grad_norm": float("inf")}, 3, amp=True)  # AMP: the scaler skips such steps
    with pytest.raises(FloatingPointError, match="iteration 3.*grad_norm"):
        check_finite({"loss": 1.0, "grad_norm": float("nan")}, 3, amp=False)


# --------------------------------------------------------------------------- fine-tuning, failed runs
def test_fine_tune_from_a_model_only_checkpoint(tiny_root: Path, tmp_path: Path) -> None:
    from sgn_ros.errors import CheckpointError
    from sgn_ros.model import build_model
    from sgn_ros.model.checkpoint import save_checkpoint
    from sgn_ros.training.trainer import Trainer

    cfg = load_config(TINY)
    torch.manual_seed(5)
    src = build_model(cfg)
    path = save_checkpoint(tmp_path / "model_only.pth", src, cfg)
    tuned = load_config(TINY, overrides={"train": {"load_from": str(path), "eval_interval": 0}})
    trainer = Trainer(tuned, tiny_root, tmp_path / "w", train_sequences=[SEQ])
    got = trainer.model.state_dict()
    for k, v in src.state_dict().items():
        assert torch.equal(got[k], v), k
    assert trainer.state.iteration == 0  # weights only: fresh optimiser and schedule
    other_grid = load_config(TINY, overrides={"train": {"load_from": str(path)}, "grid": {"dims": [32, 32, 8],
                                                                                          "voxel_size": 1.6}})
    with pytest.raises(CheckpointError, match=r"model_only\.pth: contradicts the request: grid"):
        Trainer(other_grid, tiny_root, tmp_path / "w2", train_sequences=[SEQ])


@pytest.mark.parametrize("damage", ["missing image", "truncated label"])
def test_a_run_with_a_broken_file_fails_at_start_and_leaves_nothing(damage: str, tiny_root: Path, tmp_path: Path,
                                                                     capsys) -> None:
    """The pre-flight check names the file before the first iteration (not when an epoch reaches
    it); the CLI prints it without a traceback, exits 2 and leaves no config.yaml, tb/ or train.log."""
    import shutil

    from sgn_ros.cli import main as cli_main

    root = tmp_path / "root"
    shutil.copytree(tiny_root, root)
    if damage == "missing image":
        broken = root / "dataset" / "sequences" / SEQ / "image_2" / "000005.png"
        broken.unlink()
        expected = ("files unusable", "missing dataset file: ")
    else:
        broken = next((root / "dataset" / load_config(TINY).data.labels_tag / SEQ).glob("*_1_1.npy"))
        broken.write_bytes(broken.read_bytes()[:-7])
        expected = ("files unusable", "truncated")
    work = tmp_path / "runs" / "w"
    rc = cli_main(["train", "--config", str(TINY), "--data-root", str(root), "--work-dir", str(work),
                   "--train-sequences", SEQ, "--device", "cpu", "--override", "train.eval_interval=0",
                   "train.epochs=1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "sgn-ros train: error: " in err and broken.name in err and "Traceback" not in err
    assert all(e in err for e in expected), err
    assert not (tmp_path / "runs").exists()


def test_resume_finds_a_checkpoint_written_before_latest_was_pointed_at_it(tmp_path: Path) -> None:
    """`save` writes the checkpoint, then points latest.pth at it: a SIGKILL between the two must
    not lose that checkpoint (nor, at the very first one, leave "nothing to resume")."""
    from sgn_ros.training.checkpointing import CheckpointManager, atomic_torch_save, point_latest

    m = CheckpointManager(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        m.resolve_resume(None)
    atomic_torch_save({"i": 1}, m.iter_path(1))  # killed before latest.pth existed
    assert m.resolve_resume(None) == m.iter_path(1)
    point_latest(tmp_path, m.iter_path(1))
    time.sleep(0.01)
    atomic_torch_save({"e": 1}, m.epoch_path(1))  # killed before latest.pth moved on
    assert m.resolve_resume(None) == m.epoch_path(1)
    point_latest(tmp_path, m.epoch_path(1))
    assert m.resolve_resume(None) == m.epoch_path(1)
    assert m.resolve_resume(str(m.iter_path(1))) == m.iter_path(1)  # an explicit file wins
    m.save({"e": 2}, m.epoch_path(2))  # the normal order
    assert m.resolve_resume(None) == m.epoch_path(2)
