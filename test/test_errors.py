# A corpus of bad inputs for the checkpoint loaders and the CLIs: each case asserts the message
# (the path and what is wrong), the exit status 2 of the CLI with one line and no traceback, and
# that nothing was written. Real files, real torch.save / torch.load, the tiny network.
"""Checkpoint and CLI error corpus (sgn_ros.errors, model.checkpoint, training.checkpointing, cli)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sgn_ros.cli import main as cli_main
from sgn_ros.config import load_config
from sgn_ros.errors import CheckpointError
from sgn_ros.model import build_model
from sgn_ros.model.checkpoint import load_model, read_checkpoint, save_checkpoint
from sgn_ros.training.checkpointing import check_optimizer_state, load_training_checkpoint

TINY = Path(__file__).resolve().parent / "configs" / "sgn_tiny.yaml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """(cfg, model, path of our checkpoint of it)."""
    cfg = load_config(TINY)
    torch.manual_seed(0)
    model = build_model(cfg)
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pth", model, cfg, source="test")
    return cfg, model, path


def _bad_files(dirpath: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, regex its message must match)."""
    data = good.read_bytes()
    files = {
        "empty": (b"", r"empty file \(0 bytes\)"),
        "truncated": (data[: len(data) // 2], r"truncated or corrupt"),
        "text": (b"hello, not a checkpoint\n", r"not a checkpoint"),
    }
    out = {}
    for name, (content, msg) in files.items():
        p = dirpath / f"{name}.pth"
        p.write_bytes(content)
        out[name] = (p, msg)
    p = dirpath / "list.pth"
    torch.save([1, 2, 3], p)
    out["list"] = (p, r"not a checkpoint: expected a dict, the file holds a list")
    p = dirpath / "legacy_truncated.pth"
    torch.save({"a": torch.zeros(100)}, p, _use_new_zipfile_serialization=False)
    p.write_bytes(p.read_bytes()[:40])
    out["legacy_truncated"] = (p, r"truncated or corrupt")
    p = dirpath / "not_sgn.pth"
    torch.save({"state_dict": {"backbone.conv.weight": torch.zeros(1)}}, p)
    out["not_sgn"] = (p, r"not an SGN checkpoint")
    return out


def test_read_checkpoint_names_the_file_and_the_defect(tiny, tmp_path: Path) -> None:
    _, _, good = tiny
    for name, (path, msg) in _bad_files(tmp_path, good).items():
        with pytest.raises(CheckpointError, match=msg) as e:
            load_model(path)
        assert str(path) in str(e.value), name
        assert "unsafe" not in str(e.value), f"{name}: a corrupt file must not suggest --unsafe-load"
        assert e.value.path == str(path)


def test_only_a_file_needing_unpickling_suggests_unsafe_load(tmp_path: Path) -> None:
    p = tmp_path / "numpy_meta.pth"
    torch.save({"meta": np.array([1, 2])}, p)
    with pytest.raises(CheckpointError, match=r"--unsafe-load"):
        read_checkpoint(p)
    assert isinstance(read_checkpoint(p, allow_unsafe=True)["meta"], np.ndarray)


@pytest.mark.parametrize("case", ["empty", "truncated", "text", "list", "legacy_truncated", "not_sgn"])
def test_cli_prints_one_line_exits_2_and_writes_nothing(case, tiny, tmp_path: Path, capsys) -> None:
    _, _, good = tiny
    path, msg = _bad_files(tmp_path, good)[case]
    out = tmp_path / "out"
    commands = [
        ["convert-checkpoint", str(path), str(out / "converted.pth")],
        ["evaluate", "--checkpoint", str(path), "--data-root", str(tmp_path), "--device", "cpu",
         "--export", str(out / "export"), "--json", str(out / "s.json")],
        ["train", "--config", str(TINY), "--data-root", str(tmp_path), "--work-dir", str(out / "work"),
         "--device", "cpu", "--resume", str(path)],
    ]
    for argv in commands:
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"sgn-ros {argv[0]}: error: ") and str(path) in last, err
        assert "Traceback" not in err
        assert not out.exists(), f"{argv[0]} left {list(out.rglob('*'))}"
    if case != "not_sgn":
        import re

        assert re.search(msg, last)


def test_debug_shows_the_exception(tiny, tmp_path: Path) -> None:
    p = tmp_path / "empty.pth"
    p.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        cli_main(["--debug", "convert-checkpoint", str(p), str(tmp_path / "x.pth")])


def test_stored_config_is_honoured_and_contradictions_are_errors(tiny) -> None:
    cfg, model, path = tiny
    loaded = load_model(path)
    assert loaded.cfg == cfg and loaded.meta["kind"] == "sgn_ros" and loaded.meta["provenance"] == {"source": "test"}
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    # settings that do not define the network may be overridden
    assert load_model(path, overrides={"train": {"epochs": 3}}).cfg.train.epochs == 3
    with pytest.raises(CheckpointError, match=r"contradicts the request: model settings .* differ"):
        load_model(path, variant="sgn-l")
    with pytest.raises(CheckpointError, match=r"grid: file .*requested"):
        load_model(path, overrides={"grid": {"dims": [32, 32, 8]}})
    with pytest.raises(CheckpointError, match=r"dataset: file 'semantickitti', requested 'kitti360'"):
        load_model(path, dataset="kitti360")
    with pytest.raises(CheckpointError, match=r"contradicts"):
        load_model(path, expect=load_config("sgn-s"))


def test_predictor_uses_the_stored_config(tiny) -> None:
    from sgn_ros.model.predictor import SSCPredictor

    cfg, _, path = tiny
    other = load_config(TINY, overrides={"data": {"eval_range": 25.6}})  # not a network setting
    pred = SSCPredictor(other, checkpoint=path, device="cpu")
    assert pred.cfg == cfg and pred.weights_source == str(path)
    with pytest.raises(CheckpointError, match=r"contradicts"):
        SSCPredictor("sgn-l", checkpoint=path, device="cpu")


def _training_ckpt(model: torch.nn.Module, cfg, path: Path, **training) -> Path:
    from sgn_ros.training.checkpointing import build_training_checkpoint

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    base = {"optimizer": opt.state_dict(), "scheduler": {"iters_per_epoch": 1}, "epoch": 0, "step_in_epoch": 0,
            "iteration": 0}
    base.update(training)
    base = {k: v for k, v in base.items() if v is not None}
    torch.save(build_training_checkpoint(model.state_dict(), cfg.to_dict(), base), path)
    return path


def test_training_checkpoint_defects_are_named(tiny, tmp_path: Path) -> None:
    cfg, model, path = tiny
    with pytest.raises(CheckpointError, match=r"model-only checkpoint .* train\.load_from"):
        load_training_checkpoint(path)
    p = _training_ckpt(model, cfg, tmp_path / "noopt.pth", optimizer=None)
    with pytest.raises(CheckpointError, match=r"noopt\.pth: training checkpoint lacks optimizer"):
        load_training_checkpoint(p)
    p = _training_ckpt(model, cfg, tmp_path / "noepoch.pth", epoch=None, iteration=None)
    with pytest.raises(CheckpointError, match=r"lacks epoch, iteration"):
        load_training_checkpoint(p)
    p = _training_ckpt(model, cfg, tmp_path / "strepoch.pth", epoch="three")
    with pytest.raises(CheckpointError, match=r"malformed training state: epoch \(str, expected int\)"):
        load_training_checkpoint(p)
    p = _training_ckpt(model, cfg, tmp_path / "good.pth")
    assert load_training_checkpoint(p)["training"]["epoch"] == 0


def test_optimizer_state_of_the_wrong_shape_is_refused_before_a_step() -> None:
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(5, 3)
    opt_a = torch.optim.AdamW(a.parameters())
    a(torch.ones(2, 4)).sum().backward()
    opt_a.step()
    opt_b = torch.optim.AdamW(b.parameters())
    with pytest.raises(CheckpointError, match=r"run\.pth: optimizer state does not match the model: param 0 exp_avg"):
        check_optimizer_state(opt_a.state_dict(), opt_b, "run.pth")
    check_optimizer_state(opt_a.state_dict(), torch.optim.AdamW(torch.nn.Linear(4, 3).parameters()), "ok")
    with pytest.raises(CheckpointError, match="parameter group"):
        check_optimizer_state({"param_groups": [], "state": {}}, opt_b, "run.pth")


def test_evaluate_with_a_cuda_index_on_a_machine_without_it(tiny, tmp_path: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    _, _, path = tiny
    assert cli_main(["evaluate", "--checkpoint", str(path), "--data-root", str(tmp_path), "--device", "cuda:1"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_kitti360_file_scoring_names_kitti360_sequences(tmp_path: Path, capsys) -> None:
    (tmp_path / "sequences").mkdir()
    assert cli_main(["evaluate", "--dataset", str(tmp_path), "--labels", "kitti360", "--split", "val"]) == 2
    assert "2013_05_28_drive_0006_sync/voxels" in capsys.readouterr().err
