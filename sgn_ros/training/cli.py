# `sgn-ros train`: the command-line face of the trainer. The same command runs in one process or,
# unchanged, under torchrun (`torchrun --nproc_per_node N -m sgn_ros train ...`), which sets
# RANK / WORLD_SIZE / LOCAL_RANK; each process then trains on its shard of every epoch.
"""Argument parsing for `sgn-ros train` and the `main` that runs a `Trainer`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml

from sgn_ros.config import load_config


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.epochs=2", "grid.dims=[64,64,8]"]`` -> nested dict; values are parsed as YAML
    (strings that read as a number, e.g. ``1e-4``, become floats).

    Raises:
        ValueError: an item without ``=`` or with an empty key, naming the item.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--override {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"--override {item!r}: empty key component")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ValueError(f"--override {item!r}: value is not valid YAML: {e}") from None
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string; people mean the number
            try:
                value = float(value)
            except ValueError:
                pass
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"--override {item!r}: {p!r} was already given a value")
        node[parts[-1]] = value
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", required=True, help="variant (sgn-t, sgn-s, sgn-l) or config yaml")
    parser.add_argument("--dataset-name", default=None, help="semantickitti or kitti360 (default: the config's)")
    parser.add_argument("--data-root", required=True, help="dataset root (SemanticKITTI: the folder holding dataset/)")
    parser.add_argument(
        "--work-dir", default=None, help="checkpoints, train.log, tb/ (default: work_dirs/<config name>)"
    )
    parser.add_argument(
        "--resume", nargs="?", const="", default=None, metavar="PATH",
        help="continue a run exactly: from PATH, or from WORK_DIR/latest.pth when PATH is omitted",
    )
    parser.add_argument("--amp", action="store_true", help="mixed precision (float16 autocast + GradScaler; CUDA only)")
    parser.add_argument("--max-epochs", type=int, default=None, help="train.epochs (also the cosine length)")
    parser.add_argument(
        "--override", nargs="+", default=None, metavar="KEY=VALUE",
        help="config overrides, e.g. train.lr=1e-4 train.num_workers=0 'grid.dims=[64,64,8]'",
    )
    parser.add_argument("--train-sequences", nargs="+", default=None, help="train on these sequences, not the split's")
    parser.add_argument("--val-sequences", nargs="+", default=None, help="validate on these sequences, not the split's")
    parser.add_argument(
        "--device", default=None, help="cpu or cuda (default: cuda when available; torchrun: cuda:LOCAL_RANK)"
    )
    parser.add_argument(
        "--unsafe-load", action="store_true",
        help="torch.load(weights_only=False) for --resume / train.load_from",
    )


def build_config(args: argparse.Namespace):
    """The SGNConfig of the command line (file, dataset, overrides, --amp, --max-epochs)."""
    overrides = parse_overrides(args.override)
    train = overrides.setdefault("train", {})
    if args.amp:
        train["amp"] = True
    if args.max_epochs is not None:
        if args.max_epochs < 1:
            raise ValueError(f"--max-epochs must be >= 1, got {args.max_epochs}")
        train["epochs"] = args.max_epochs
    if not train:
        overrides.pop("train")
    return load_config(args.config, dataset=args.dataset_name, overrides=overrides or None)


def run_training(args: argparse.Namespace):
    """Build the config, join the torchrun job (if any), train; returns the finished `Trainer`.

    A run that fails before it wrote its first checkpoint leaves nothing that looks like a run:
    what it created in the work directory (config.yaml, tb/, train.log, the directory itself) is
    removed again; a resumed run's earlier files are never touched.
    """
    from sgn_ros.distributed import cleanup_distributed, init_distributed
    from sgn_ros.runtime import setup_logging
    from sgn_ros.training.trainer import Trainer

    cfg = build_config(args)
    work_dir = Path(args.work_dir) if args.work_dir else Path("work_dirs") / cfg.name
    guard = FreshRunGuard(work_dir)
    info = init_distributed(args.device)
    trainer = None
    try:
        setup_logging(work_dir, info)
        trainer = Trainer(
            cfg,
            args.data_root,
            work_dir,
            info=info,
            resume=args.resume,
            train_sequences=args.train_sequences,
            val_sequences=args.val_sequences,
            allow_unsafe_load=args.unsafe_load,
        )
        trainer.fit()
    except BaseException:
        logging.getLogger("sgn_ros.training").debug("training failed (rank %d)", info.rank, exc_info=True)
        if info.is_main:
            guard.undo()
        raise
    finally:
        cleanup_distributed()
    return trainer


class FreshRunGuard:
    """What a run finds in its work directory before it starts, so that a run failing before its
    first checkpoint can remove what it created (`undo`); a resumed run's earlier files stay."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.existed = work_dir.is_dir()
        self.before = set(work_dir.iterdir()) if self.existed else set()
        root = work_dir  # the topmost folder this run would create (mkdir parents=True)
        while not root.parent.exists() and root.parent != root:
            root = root.parent
        self.created_root = None if self.existed else root

    def undo(self) -> None:
        """Remove the new entries (and the folders the run made) unless a new checkpoint exists."""
        if not _wrote_checkpoint(self.work_dir, self.before):
            _remove_new_entries(self.work_dir, self.before, self.created_root)


def _wrote_checkpoint(work_dir: Path, before: set[Path]) -> bool:
    return work_dir.is_dir() and any(p.suffix == ".pth" and p not in before for p in work_dir.iterdir())


def _remove_new_entries(work_dir: Path, before: set[Path], created_root: Path | None) -> None:
    """Undo what a failed run created in `work_dir` (its log handlers closed first); remove the
    folders it made (`created_root`: the topmost one, None when work_dir existed) if left empty."""
    import shutil

    from sgn_ros.runtime import close_file_logging

    close_file_logging()
    if not work_dir.is_dir():
        return
    for p in work_dir.iterdir():
        if p in before:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if created_root is not None:
        d = work_dir
        while True:
            try:
                d.rmdir()
            except OSError:
                break
            if d == created_root:
                break
            d = d.parent


def main(args: argparse.Namespace) -> int:
    run_training(args)
    return 0
