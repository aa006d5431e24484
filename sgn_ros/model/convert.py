# `sgn-ros convert-checkpoint IN OUT`: turn a released SGN checkpoint (mmcv .pth of the
# reference code) into an sgn_ros checkpoint: our parameter names, the config it was built with,
# and where it came from. Loading goes through the strict mapping of `checkpoint.py`, so a file
# that does not fit the chosen variant is rejected with the list of what does not fit.
"""CLI: convert a reference SGN checkpoint into the sgn_ros format."""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

from sgn_ros.config import DATASETS, VARIANTS

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="released checkpoint (.pth, mmcv format)")
    parser.add_argument("output", type=Path, help="sgn_ros checkpoint to write")
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default=None,
        help="SGN variant (default: inferred from shapes; SGN-T and SGN-S share all tensors, so "
        "ResNet-50 files default to sgn-s - pass sgn-t for the temporal model)",
    )
    parser.add_argument(
        "--kind",
        choices=("auto", "sgn", "msnet"),
        default="auto",
        help="sgn: a released SGN checkpoint; msnet: a released MobileStereoNet .ckpt (depth network); "
        "auto: msnet when the file holds MobileStereoNet tensors",
    )
    parser.add_argument("--dataset", choices=DATASETS, default=None, help="default: inferred from the class count")
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="allow full unpickling (mmcv meta with NumPy objects); only for files you trust",
    )
    parser.add_argument(
        "--sparse-layout",
        choices=("RSKC", "RSCK"),
        default="RSKC",
        help="layout of 3x3x3 sparse conv weights saved by old spconv releases when it cannot be told "
        "from the shape (RSKC: spconv 2.1 native, RSCK: spconv 1.x)",
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert(
    input_path: Path,
    output_path: Path,
    variant: str | None = None,
    dataset: str | None = None,
    allow_unsafe: bool = False,
    sparse_layout: str = "RSKC",
) -> Path:
    """Convert `input_path` (reference format) to `output_path` (sgn_ros format); returns the output path."""
    from sgn_ros.errors import CheckpointError
    from sgn_ros.model.checkpoint import checkpoint_kind, load_model, read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(input_path, allow_unsafe=allow_unsafe)
    if checkpoint_kind(ckpt, input_path) != "reference":
        raise CheckpointError(input_path, "already an sgn_ros checkpoint; nothing to convert")
    # the one loader (variant / dataset inferred from shapes unless given; strict weight check)
    loaded = load_model(ckpt, variant=variant, dataset=dataset, legacy_sparse_layout=sparse_layout, where=input_path)
    model, cfg = loaded.model, loaded.cfg
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    provenance = {
        "source": str(input_path),
        "source_sha256": _sha256(input_path),
        "source_format": "Jieqianyu/SGN (mmcv)",
        **{k: meta[k] for k in ("epoch", "iter") if isinstance(meta.get(k), int)},
    }
    return save_checkpoint(output_path, model, cfg, **provenance)


def _is_msnet_file(path: Path) -> bool:
    """Auto-detection for --kind auto: a weights-only readable file with MobileStereoNet tensors."""
    from sgn_ros.stereo.msnet import is_msnet_checkpoint, read_msnet_checkpoint

    try:
        return is_msnet_checkpoint(read_msnet_checkpoint(Path(path)))
    except (OSError, ValueError):  # unreadable as weights-only: left to the SGN path's own errors
        return False


def main(args: argparse.Namespace) -> int:
    kind = getattr(args, "kind", "auto")
    if kind == "msnet" or (kind == "auto" and _is_msnet_file(args.input)):
        from sgn_ros.stereo.msnet import convert_msnet_checkpoint

        log.info("wrote %s", convert_msnet_checkpoint(args.input, args.output))
        return 0
    out = convert(args.input, args.output, args.variant, args.dataset, args.unsafe_load, args.sparse_layout)
    log.info("wrote %s", out)
    return 0
