"""Tests of `sgn-ros evaluate` (file mode): the semantic-kitti-api protocol on generated files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from sgn_ros.cli import build_parser
from sgn_ros.cli import main as cli_main
from sgn_ros.data import kitti_io
from sgn_ros.grid import DEFAULT_GRID
from sgn_ros.labels import load_label_set

SK_YAML_RAW_IDS = [0, 0, 0, 1, 10, 11, 15, 18, 20, 30, 40, 44, 48, 49, 50, 51, 52, 70, 71, 72, 80, 81, 99, 252, 256]


def api_like_scores(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], yaml_path) -> dict:
    """evaluate_completion.py's computation written out independently of sgn_ros."""
    with open(yaml_path) as f:
        data = yaml.safe_load(f)
    remap = data["learning_map"]
    inv = data["learning_map_inv"]
    lut = np.zeros(max(remap) + 100, dtype=np.int32)
    lut[list(remap.keys())] = list(remap.values())
    lut[lut == 0] = 255
    lut[0] = 0
    n = len(inv)
    conf = np.zeros((n, n), np.int64)
    for pred, gt, invalid in pairs:
        p, t = lut[pred], lut[gt]
        mask = (t != 255) & (invalid != 1)
        np.add.at(conf, (p[mask], t[mask]), 1)
    tp = np.diag(conf)
    fp = conf.sum(1) - tp
    fn = conf.sum(0) - tp
    iou = tp / (tp + fp + fn + 1e-15)
    eps = np.finfo(np.float32).eps
    out = {
        "iou_completion": float(np.sum(conf[1:, 1:]) / (np.sum(conf) - conf[0, 0])),
        "iou_mean": float(iou[1:].mean()),
    }
    for i in range(1, n):
        out["iou_" + data["labels"][inv[i]]] = float(iou[i])
    out["precision"] = float(np.sum(conf[1:, 1:]) / (np.sum(conf[1:, :]) + eps))
    out["recall"] = float(np.sum(conf[1:, 1:]) / (np.sum(conf[:, 1:]) + eps))
    return out


@pytest.fixture()
def eval_tree(tmp_path):
    """sequences/08/voxels (2 frames) + predictions that are right on ~60 % of voxels."""
    rng = np.random.default_rng(8)
    ls = load_label_set("semantickitti")
    n = DEFAULT_GRID.num_voxels
    pairs = []
    for frame in ("000000", "000005"):
        gt = rng.choice(SK_YAML_RAW_IDS, n).astype(np.uint16)
        invalid = rng.random(n) < 0.15
        # predictions use valid raw ids only: a class's inverse id, or another raw id of the class
        pred_raw = ls.learning_map_inv[rng.integers(0, 20, n)]
        pred_raw[rng.random(n) < 0.05] = 252  # moving-car -> car
        keep_gt = rng.random(n) < 0.6
        gt_class_raw = ls.learning_map_inv[ls.to_train_ids(gt)[keep_gt].clip(0, 19)]
        pred_raw[keep_gt] = gt_class_raw
        pred_raw = pred_raw.astype(np.uint16)
        vdir = tmp_path / "gt" / "sequences" / "08" / "voxels"
        pdir = tmp_path / "pred" / "sequences" / "08" / "predictions"
        vdir.mkdir(parents=True, exist_ok=True)
        pdir.mkdir(parents=True, exist_ok=True)
        kitti_io.write_label(vdir / f"{frame}.label", gt)
        kitti_io.write_bitpacked(vdir / f"{frame}.invalid", invalid)
        kitti_io.write_label(pdir / f"{frame}.label", pred_raw)
        pairs.append((pred_raw, gt, invalid.astype(np.uint8)))
    return tmp_path, pairs


def test_scores_equal_api_computation(eval_tree, capsys) -> None:
    root, pairs = eval_tree
    out_json = root / "scores.json"
    rc = cli_main(
        [
            "evaluate",
            "--dataset", str(root / "gt"),
            "--predictions", str(root / "pred"),
            "--split", "valid",
            "--json", str(out_json),
            "--output", str(root / "api_out"),
        ]
    )  # fmt: skip
    assert rc == 0
    ours = json.loads(out_json.read_text())
    from sgn_ros.config import config_dir

    expected = api_like_scores(pairs, config_dir() / "labels" / "semantic-kitti.yaml")
    assert list(ours) == list(expected)
    for k, v in expected.items():
        assert ours[k] == v, k  # bit-identical floats: same formulas, same epsilons
    assert 0.3 < ours["iou_completion"] < 1.0 and 0.2 < ours["iou_mean"] < 0.8
    # scores.txt: the api's keys exactly (no precision / recall), YAML
    api_scores = yaml.safe_load((root / "api_out" / "scores.txt").read_text())
    assert set(api_scores) == set(expected) - {"precision", "recall"}
    assert "iou_car" in api_scores and "iou_traffic-sign" in api_scores
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "traffic-sign" in printed


def test_missing_and_bad_prediction_files(eval_tree, capsys) -> None:
    root, _ = eval_tree
    pdir = root / "pred" / "sequences" / "08" / "predictions"
    args = ["evaluate", "--dataset", str(root / "gt"), "--predictions", str(root / "pred"), "--split", "val"]
    (pdir / "000005.label").rename(pdir / "keep.bin")
    with pytest.raises(FileNotFoundError, match=r"predictions/000005\.label"):
        cli_main(["--debug", *args])
    (pdir / "000005.label").write_bytes(b"\0\0" * 10)
    with pytest.raises(kitti_io.DataFormatError, match=r"000005\.label: expected 4194304 bytes"):
        cli_main([*args, "--debug"])
    # a raw id that is no class (outlier, 1) where the ground truth is evaluated
    kitti_io.write_label(pdir / "000005.label", np.ones(DEFAULT_GRID.num_voxels, np.uint16))
    assert cli_main(args) == 2  # without --debug: one line on stderr, exit status 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # (the progress bar writes to stderr before it)
    assert re.search(r"^sgn-ros evaluate: error: .*000005\.label: .* raw ids \[1\]", last) and "Traceback" not in err


def test_network_mode_arguments_are_declared() -> None:
    args = build_parser(only="evaluate").parse_args(
        ["evaluate", "--config", "sgn-l", "--checkpoint", "c.pth", "--data-root", "/data", "--split", "val",
         "--export", "out", "--json", "s.json", "--device", "cpu", "--sequences", "00"]
    )  # fmt: skip
    assert (args.config, args.checkpoint, args.data_root, args.split) == ("sgn-l", "c.pth", "/data", "val")
    assert (args.export, args.json, args.device, args.dataset) == ("out", "s.json", "cpu", None)
    assert args.sequences == ["00"] and not args.unsafe_load and args.max_samples == 0 and not args.fp16
    with pytest.raises(ValueError, match="--dataset"):
        cli_main(["evaluate", "--split", "val", "--debug"])
