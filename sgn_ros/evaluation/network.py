# Network evaluation over a dataset split: used after every training epoch by the trainer (training
# imports evaluation, never the reverse) and, as `sgn-ros evaluate --checkpoint ...` ("mode 2",
# arguments declared in sgn_ros/evaluation/cli.py), on its own — in one process or under torchrun, where every rank
# scores its shard and the confusion matrices are summed (SSCMetrics.all_reduce).
"""Run SGN over a split: SemanticKITTI-protocol metrics, pictures, optional submission export."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sgn_ros.config import SGNConfig
from sgn_ros.distributed import DistInfo, ShardSampler, cleanup_distributed, init_distributed
from sgn_ros.fileio import atomic_path

log = logging.getLogger("sgn_ros.evaluation.network")


# --------------------------------------------------------------------------- data
def make_eval_loader(dataset: Dataset, cfg: SGNConfig, info: DistInfo, max_samples: int = 0,
                     num_workers: int | None = None) -> DataLoader:
    """Sharded (no padding, no shuffling) loader of batch size 1, as the reference evaluates."""
    from sgn_ros.data.collate import collate_ssc

    sampler = ShardSampler(len(dataset), info.world_size, info.rank, limit=max_samples)
    return DataLoader(
        dataset,
        batch_size=1,
        sampler=sampler,
        num_workers=cfg.train.num_workers if num_workers is None else num_workers,
        collate_fn=collate_ssc,
        pin_memory=info.device.type == "cuda",
    )


# --------------------------------------------------------------------------- the loop
@dataclass
class EvalResult:
    """What `evaluate_model` returns (metrics identical on every rank)."""

    metrics: dict[str, Any]
    num_samples: int  # over all ranks
    has_targets: bool
    pictures: list[tuple[str, np.ndarray]] = field(default_factory=list)  # rank 0: (name, (H, W, 3) uint8)


def bev_picture(pred: np.ndarray, target: np.ndarray | None, colors: np.ndarray) -> np.ndarray:
    """Bird's-eye views of prediction and ground truth side by side, (H, W, 3) uint8.

    `pred`, `target`: (X, Y, Z) training ids (255 = not drawn).
    """
    from sgn_ros.viz.render import render_bev, side_by_side

    views = [render_bev(pred.astype(np.uint8), colors)]
    titles = ["prediction"]
    if target is not None:
        views.append(render_bev(target.astype(np.uint8), colors))
        titles.append("ground truth")
    return side_by_side(views, titles)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: DataLoader,
    cfg: SGNConfig,
    info: DistInfo,
    amp: bool = False,
    export_dir: str | os.PathLike[str] | None = None,
    num_pictures: int = 0,
    progress: bool = True,
) -> EvalResult:
    """Predict every sample of `loader` (this rank's shard) and score by the SemanticKITTI protocol.

    Collective under torch.distributed (every rank must call it): confusion matrices and sample
    counts are summed over ranks. The prediction is argmax over classes of ``ssc_logits``
    (B, C, X, Y, Z); voxels whose target is 255 are not scored.

    Args:
        model: the bare SGN (not DDP-wrapped: ranks may hold different numbers of samples).
        amp: float16 autocast (CUDA only).
        export_dir: also write each prediction in submission format under this folder.
        num_pictures: rank 0 renders this many prediction/ground-truth BEV pictures.
    """
    from sgn_ros.evaluation.export import write_prediction
    from sgn_ros.evaluation.metrics import SSCMetrics
    from sgn_ros.labels import load_label_set

    label_set = load_label_set(cfg.data.label_config)
    metrics = SSCMetrics(cfg.num_classes, label_set.names)
    was_training = model.training
    model.eval()
    device = info.device
    n_local = 0
    n_targets = 0
    pictures: list[tuple[str, np.ndarray]] = []
    ctx = torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp)
    for batch in tqdm(loader, desc="evaluate", unit="sample", disable=not (progress and info.is_main), leave=False):
        batch = batch.to(device, non_blocking=True)
        with ctx:
            out = model(batch)
        pred = out["ssc_logits"].argmax(dim=1)  # (B, X, Y, Z)
        if batch.target is not None:
            metrics.update(pred, batch.target)
            n_targets += pred.shape[0]
        n_local += pred.shape[0]
        need_host = export_dir is not None or (info.is_main and len(pictures) < num_pictures)
        if need_host:
            pred_np = pred.to(torch.uint8).cpu().numpy()
            tgt_np = None if batch.target is None else batch.target.cpu().numpy()
            for b in range(pred_np.shape[0]):
                meta = (batch.meta or [{}] * pred_np.shape[0])[b]
                if export_dir is not None:
                    write_prediction(export_dir, meta["sequence"], meta["frame_id"], pred_np[b], label_set)
                if info.is_main and len(pictures) < num_pictures:
                    tgt = None if tgt_np is None else tgt_np[b].astype(np.uint8)  # 255 stays 255: not drawn
                    name = f"bev_{meta.get('sequence', 'seq')}_{meta.get('frame_id', len(pictures))}"
                    pictures.append((name, bev_picture(pred_np[b], tgt, label_set.colors_rgb)))
    counts = torch.tensor([n_local, n_targets], dtype=torch.int64, device=device)
    if info.distributed:
        torch.distributed.all_reduce(counts)
        metrics.all_reduce()
    n_total, n_with_targets = (int(v) for v in counts.cpu().tolist())
    scores = metrics.compute() if n_with_targets else {}
    if was_training:
        model.train()
    return EvalResult(metrics=scores, num_samples=n_total, has_targets=n_with_targets > 0, pictures=pictures)


def format_metrics(scores: dict[str, Any], class_names: list[str] | tuple[str, ...]) -> str:
    """The metrics table (percent) of `SSCMetrics.compute` output; a note when nothing was scored."""
    from sgn_ros.evaluation.metrics import format_table

    if not scores:
        return "(no ground truth: nothing scored)"
    return format_table(scores, class_names)


# --------------------------------------------------------------------------- `sgn-ros evaluate --checkpoint`
def run_network_evaluation(args: argparse.Namespace) -> int:
    """`sgn-ros evaluate --checkpoint CKPT --data-root ROOT [--config ...] [--split val] [--export DIR]
    [--json OUT]`: score a trained network on a split (one process or torchrun)."""
    from sgn_ros.data.common import preflight
    from sgn_ros.data.registry import build_dataset
    from sgn_ros.evaluation.metrics import scores_for_output
    from sgn_ros.labels import load_label_set
    from sgn_ros.model.checkpoint import load_model
    from sgn_ros.runtime import resolve_amp, setup_logging

    if not args.data_root:
        raise ValueError("sgn-ros evaluate --checkpoint: --data-root is required")
    info = init_distributed(args.device)
    setup_logging(None, info)
    try:
        # One loader: our files define the network by their stored config; --config /
        # --dataset-name may only agree with it (reference files: they choose, or shapes tell).
        loaded = load_model(
            args.checkpoint, variant=getattr(args, "config", None), dataset=getattr(args, "dataset_name", None),
            allow_unsafe=bool(getattr(args, "unsafe_load", False)), device=info.device,
        )
        cfg, model = loaded.cfg, loaded.model
        amp = resolve_amp(bool(getattr(args, "fp16", False)), info.device)
        sequences = getattr(args, "sequences", None)
        dataset = build_dataset(args.data_root, cfg, args.split, sequences=sequences)
        preflight(dataset, progress=info.is_main)  # a broken file fails now, naming it, not mid-run
        loader = make_eval_loader(dataset, cfg, info, max_samples=int(getattr(args, "max_samples", 0) or 0),
                                  num_workers=getattr(args, "num_workers", None))
        result = evaluate_model(model, loader, cfg, info, amp=amp, export_dir=args.export, progress=True)
        label_set = load_label_set(cfg.data.label_config)
        if info.is_main:
            sys.stdout.write(f"{cfg.name} on {cfg.data.dataset} {args.split}: {result.num_samples} sample(s)\n")
            sys.stdout.write(format_metrics(result.metrics, label_set.names) + "\n")
            if args.export:
                sys.stdout.write(f"predictions written under {args.export}\n")
            if args.json:
                if not result.has_targets:
                    raise ValueError(f"--json: split {args.split!r} has no ground truth to score")
                out = Path(args.json)
                out.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(out, fsync=False) as tmp:
                    tmp.write_text(json.dumps(scores_for_output(result.metrics, label_set), indent=2) + "\n")
        return 0
    finally:
        cleanup_distributed()
