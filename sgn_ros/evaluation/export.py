# Benchmark submission format: one uint16 raw-label file per frame at
# sequences/SS/predictions/NNNNNN.label (training ids mapped back with learning_map_inv), and the
# zip the SemanticKITTI CodaLab server takes: explicit directory entries "sequences/",
# "sequences/SS/", "sequences/SS/predictions/", one .label per voxels/*.bin input, nothing else
# but an optional description.txt (what semantic-kitti-api's validate_submission.py checks).
"""Write predictions in submission format and pack the submission zip (`sgn-ros export`)."""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from sgn_ros.data.kitti_io import DataFormatError
from sgn_ros.fileio import atomic_path
from sgn_ros.labels import LabelSet, load_label_set

PathLike = str | os.PathLike[str]


def prediction_path(root: PathLike, sequence: str | int, frame_id: str | int) -> Path:
    """``root/sequences/SS/predictions/NNNNNN.label`` (SS two digits for numeric sequences)."""
    seq = f"{int(sequence):02d}" if str(sequence).isdigit() else str(sequence)
    return Path(root) / "sequences" / seq / "predictions" / f"{int(frame_id):06d}.label"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_prediction(
    root: PathLike,
    sequence: str | int,
    frame_id: str | int,
    labels_train_ids: np.ndarray,
    label_set: LabelSet,
) -> Path:
    """Write one frame's prediction in submission format; returns the file path.

    Args:
        root: output root (gets ``sequences/SS/predictions/``).
        sequence, frame_id: e.g. "08", "000005" (or ints).
        labels_train_ids: (X, Y, Z) training ids in [0, C) (C order, as the voxel labels).
        label_set: maps training ids back to raw ids (uint16, learning_map_inv).
    """
    labels = np.asarray(labels_train_ids)
    if labels.ndim != 3:
        raise ValueError(f"write_prediction: expected (X, Y, Z) labels, got shape {labels.shape}")
    raw = label_set.to_raw_ids(labels).astype("<u2")
    path = prediction_path(root, sequence, frame_id)
    _atomic_write_bytes(path, raw.reshape(-1).tobytes())
    return path


def find_predictions(pred_root: PathLike) -> dict[str, list[Path]]:
    """sequence -> sorted prediction files under ``pred_root/sequences/*/predictions/``."""
    base = Path(pred_root) / "sequences"
    if not base.is_dir():
        raise FileNotFoundError(f"no predictions: missing directory {base}")
    out = {}
    for seq_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        files = sorted((seq_dir / "predictions").glob("*.label"))
        if files:
            out[seq_dir.name] = files
    if not out:
        raise FileNotFoundError(f"no predictions: no {base}/SS/predictions/*.label files")
    return out


def make_submission_zip(
    pred_root: PathLike,
    zip_path: PathLike,
    dataset_root: PathLike | None = None,
    sequences: list[str] | None = None,
    num_voxels: int | None = None,
    description: str | None = None,
) -> Path:
    """Pack ``pred_root/sequences/SS/predictions/*.label`` into a CodaLab submission zip.

    With `dataset_root` (the folder holding ``sequences/``), every ``voxels/*.bin`` input of
    `sequences` must have its prediction and only those are packed; each file must hold the
    input's voxel count (or `num_voxels`) uint16 values. Written atomically.

    Raises:
        FileNotFoundError: a prediction is missing (named).
        DataFormatError: a prediction has the wrong size (named, expected and actual bytes).
    """
    zip_path = Path(zip_path)
    if zip_path.suffix != ".zip":
        raise ValueError(f"submission file must end with .zip, got {zip_path}")
    found = find_predictions(pred_root)
    if sequences is None:
        sequences = sorted(found)
    members: list[tuple[str, Path]] = []
    for seq in sequences:
        if dataset_root is not None:
            vdir = Path(dataset_root) / "sequences" / seq / "voxels"
            if not vdir.is_dir():
                raise FileNotFoundError(f"missing voxel directory {vdir}")
            frames = sorted(p.stem for p in vdir.glob("*.bin"))
            files = [prediction_path(pred_root, seq, f) for f in frames]
        else:
            files = found.get(seq, [])
        if not files:
            raise FileNotFoundError(f"no predictions for sequence {seq} under {pred_root}")
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"missing prediction file: {f}")
            expected = 2 * num_voxels if num_voxels is not None else None
            if expected is None and dataset_root is not None:
                packed = Path(dataset_root) / "sequences" / seq / "voxels" / f"{f.stem}.bin"
                expected = 2 * 8 * packed.stat().st_size
            if expected is not None and f.stat().st_size != expected:
                raise DataFormatError(f, f"expected {expected} bytes (uint16 per voxel), got {f.stat().st_size}")
            members.append((f"sequences/{seq}/predictions/{f.name}", f))
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(zip_path, fsync=False) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("sequences/", b"")
            for seq in sequences:
                z.writestr(f"sequences/{seq}/", b"")
                z.writestr(f"sequences/{seq}/predictions/", b"")
            for name, f in members:
                z.write(f, name)
            if description:
                z.writestr("description.txt", description)
    return zip_path


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", required=True, help="folder holding sequences/SS/predictions/*.label")
    parser.add_argument("--zip", required=True, dest="zip_path", help="submission zip to write (.zip)")
    parser.add_argument(
        "--dataset", default=None, help="folder holding sequences/SS/voxels/*.bin: check every input has a prediction"
    )
    parser.add_argument(
        "--split", default=None, help="pack this split's sequences (train, val, test) instead of all found"
    )
    parser.add_argument("--labels", default="semantickitti", help="label set (semantickitti, kitti360, or a yaml)")
    parser.add_argument("--description", default=None, help="text (or a file) stored as description.txt")


def main(args: argparse.Namespace) -> int:
    from sgn_ros.data.registry import split_sequences

    sequences = None
    if args.split is not None:
        sequences = split_sequences(load_label_set(args.labels), args.split)
    description = args.description
    if description and Path(description).is_file():
        description = Path(description).read_text()
    out = make_submission_zip(args.predictions, args.zip_path, args.dataset, sequences, description=description)
    n = sum(1 for _ in zipfile.ZipFile(out).namelist())
    sys.stdout.write(f"wrote {out} ({n} entries)\n")
    return 0
