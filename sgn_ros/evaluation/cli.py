# `sgn-ros evaluate`: two ways to score SSC.
#  1. files: --dataset ROOT --predictions DIR --split valid [--json OUT] [--output DIR]
#     scores ROOT/sequences/SS/voxels/NNNNNN.label (+ .invalid) against
#     DIR/sequences/SS/predictions/NNNNNN.label exactly as semantic-kitti-api's
#     evaluate_completion.py: both remapped with the completion map (raw ids mapping to 0, except
#     0 itself, become 255), voxels with ground truth 255 or marked invalid are skipped; --json
#     writes its scores.txt keys (iou_completion, iou_mean, iou_<class>) plus precision, recall.
#  2. network: --checkpoint CKPT --config ... --data-root ... --split val [--export DIR]
#     is run by sgn_ros.evaluation.network.run_network_evaluation (imported only then).
"""The `sgn-ros evaluate` command (SemanticKITTI protocol)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from sgn_ros.config import load_config
from sgn_ros.data import kitti_io
from sgn_ros.data.labels_preprocess import completion_remap_lut
from sgn_ros.data.registry import spec_for_labels, split_sequences
from sgn_ros.evaluation.metrics import SSCMetrics, format_table, scores_for_output
from sgn_ros.fileio import atomic_path
from sgn_ros.grid import VoxelGrid
from sgn_ros.labels import IGNORE_LABEL, LabelSet, load_label_set, normalize_split


def add_arguments(parser: argparse.ArgumentParser) -> None:
    files = parser.add_argument_group("score prediction files (semantic-kitti-api protocol)")
    files.add_argument("--dataset", "-d", default=None, help="folder holding sequences/SS/voxels/*.label, *.invalid")
    files.add_argument(
        "--predictions", "-p", default=None, help="folder holding sequences/SS/predictions/*.label (default: --dataset)"
    )
    files.add_argument(
        "--labels", "--datacfg", default="semantickitti", help="label set: semantickitti, kitti360 or a yaml"
    )
    files.add_argument("--output", default=None, help="also write scores.txt (YAML, as the api) into this folder")
    net = parser.add_argument_group("evaluate a checkpoint (network over a split)")
    net.add_argument("--checkpoint", default=None, help="model checkpoint; selects network evaluation")
    parser.add_argument(
        "--config", default=None,
        help="variant (sgn-t, sgn-s, sgn-l) or config yaml; default: the checkpoint's stored config (reference "
        "files: inferred from shapes); prediction files: the voxel grid comes from it (default sgn-s)",
    )
    net.add_argument("--dataset-name", default=None, help="semantickitti or kitti360 (default: the config's)")
    net.add_argument("--data-root", default=None, help="dataset root (SemanticKITTI: holds dataset/)")
    net.add_argument("--export", default=None, help="write predictions in submission format under this folder")
    net.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    net.add_argument("--num-workers", type=int, default=None, help="data loader workers (default: the config's)")
    net.add_argument("--fp16", action="store_true", help="half-precision inference on CUDA")
    net.add_argument("--max-samples", type=int, default=0, help="stop after this many samples (0: all)")
    net.add_argument("--sequences", nargs="+", default=None, help="sequences instead of the split's (e.g. 00)")
    net.add_argument(
        "--unsafe-load", action="store_true", help="allow full unpickling of a trusted checkpoint (weights_only=False)"
    )
    parser.add_argument("--split", "-s", default="valid", help="train, val (valid) or test")
    parser.add_argument("--json", default=None, help="write the scores as JSON (fractions, api key names)")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def evaluation_pairs(dataset: Path, predictions: Path, sequences: list[str]) -> list[tuple[Path, Path]]:
    """(ground-truth .label, prediction .label) pairs of the sequences, sorted.

    Raises:
        FileNotFoundError: a sequence's voxel folder or any prediction file is missing (all named).
    """
    pairs, missing = [], []
    for seq in sequences:
        gt_dir = dataset / "sequences" / seq / "voxels"
        if not gt_dir.is_dir():
            raise FileNotFoundError(f"missing ground-truth directory {gt_dir}")
        for gt in sorted(gt_dir.glob("*.label")):
            pred = predictions / "sequences" / seq / "predictions" / gt.name
            if not pred.is_file():
                missing.append(str(pred))
            pairs.append((gt, pred))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"missing prediction file(s): {shown}")
    if not pairs:
        raise FileNotFoundError(f"no ground-truth voxels/*.label under {dataset}/sequences/{{{','.join(sequences)}}}")
    return pairs


def score_files(
    dataset: Path,
    predictions: Path,
    sequences: list[str],
    label_set: LabelSet,
    grid: VoxelGrid,
    progress: bool = True,
) -> SSCMetrics:
    """Accumulate the confusion matrix of all prediction files of `sequences` (see module doc).

    `grid` is the config's voxel grid (cfg.grid): its dims say how many voxels each file holds.
    """
    lut = completion_remap_lut(label_set)
    metrics = SSCMetrics(label_set.num_classes, label_set.names)
    pairs = evaluation_pairs(dataset, predictions, sequences)
    for gt_path, pred_path in tqdm(pairs, desc="evaluate", unit="frame", disable=not progress):
        raw_gt = kitti_io.read_label(gt_path, grid.dims).reshape(-1)
        invalid = kitti_io.read_bitpacked(gt_path.with_suffix(".invalid"), grid.dims).reshape(-1)
        raw_pred = kitti_io.read_label(pred_path, grid.dims).reshape(-1)
        if int(raw_pred.max()) >= len(lut):
            raise ValueError(f"{pred_path}: raw label id {int(raw_pred.max())} is not in the label map")
        gt = lut[raw_gt.astype(np.int64)]
        pred = lut[raw_pred.astype(np.int64)]
        keep = (gt != IGNORE_LABEL) & ~invalid
        bad = keep & (pred == IGNORE_LABEL)
        if bad.any():
            ids = np.unique(raw_pred[bad])[:10].tolist()
            raise ValueError(
                f"{pred_path}: {int(bad.sum())} evaluated voxels carry raw ids {ids} that are no class "
                "(map them with learning_map_inv)"
            )
        metrics.update(pred[keep], gt[keep])
    return metrics


def main(args: argparse.Namespace) -> int:
    if args.checkpoint is not None:
        from sgn_ros.evaluation.network import run_network_evaluation

        return int(run_network_evaluation(args) or 0)
    if args.dataset is None:
        raise ValueError("sgn-ros evaluate: give --dataset (prediction files) or --checkpoint (network)")
    label_set = load_label_set(args.labels)
    dataset = Path(args.dataset)
    if not (dataset / "sequences").is_dir() and (dataset / "dataset" / "sequences").is_dir():
        dataset = dataset / "dataset"
    predictions = Path(args.predictions) if args.predictions else dataset
    split = normalize_split(args.split)
    sequences = split_sequences(label_set, split)
    grid = load_config(args.config or "sgn-s", dataset=spec_for_labels(label_set).name).grid
    metrics = score_files(dataset, predictions, sequences, label_set, grid)
    result = metrics.compute()
    sys.stdout.write(f"{label_set.name} {split} ({', '.join(sequences)})\n")
    sys.stdout.write(format_table(result, label_set.names) + "\n")
    if args.json:
        _atomic_write_text(Path(args.json), json.dumps(scores_for_output(result, label_set), indent=2) + "\n")
    if args.output:
        api_scores = scores_for_output(result, label_set, precision_recall=False)
        _atomic_write_text(Path(args.output) / "scores.txt", yaml.dump(api_scores, default_flow_style=False))
    return 0
