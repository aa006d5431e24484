# Semantic-scene-completion targets from raw SemanticKITTI voxel files: the completion remap
# (raw ids -> training ids, "unlabeled" kept apart from "empty"), invalid voxels -> 255, and the
# 1/2-scale majority labels the network's guidance heads are trained on. Same rule and outputs
# as the reference's label preprocessing, vectorised over all blocks (no per-block Python loop).
"""Full- and reduced-scale SSC labels (the reference's label preprocessing, vectorised)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sgn_ros.data import kitti_io
from sgn_ros.grid import VoxelGrid
from sgn_ros.labels import IGNORE_LABEL, LabelSet

#: fraction of a block's voxels that must be empty (0) or unknown (255) for the block to be
#: empty/unknown (the reference's 0.95 threshold, compared with ">").
EMPTY_FRACTION = 0.95

#: file-name suffix per downscaling factor, as the reference names its label files.
SCALE_SUFFIX = {1: "1_1", 2: "1_2", 4: "1_4", 8: "1_8"}


def completion_remap_lut(label_set: LabelSet) -> np.ndarray:
    """Raw-id -> training-id lookup table for scene completion, (K,) int64.

    Differs from `LabelSet.learning_map` in one way, as semantic-kitti-api's completion
    evaluation and the reference preprocessing do: every raw id that maps to training id 0
    *except raw id 0* ("unlabeled" points, outliers, unknown raw ids) becomes 255 (unknown),
    because in completion 0 means "empty" and must not absorb labelled-but-ignored voxels.
    The table has 100 spare entries past the largest raw id (unknown ids -> 255).
    """
    lut = np.zeros(len(label_set.learning_map) + 99, dtype=np.int64)
    known = label_set.learning_map.astype(np.int64)
    lut[: len(known)] = np.where(known == IGNORE_LABEL, 0, known)
    lut[lut == 0] = IGNORE_LABEL
    lut[0] = 0
    return lut


def remap_completion(raw: np.ndarray, lut: np.ndarray, where: str = "labels") -> np.ndarray:
    """Apply `completion_remap_lut` to raw ids (any shape) -> int64 training ids.

    Raises:
        ValueError: a raw id beyond the table (naming `where`, e.g. the file).
    """
    raw = np.asarray(raw)
    if raw.size and int(raw.max()) >= len(lut):
        raise ValueError(f"{where}: raw label id {int(raw.max())} is outside the label map (max {len(lut) - 1})")
    return lut[raw.astype(np.int64)]


def full_scale_labels(raw: np.ndarray, invalid: np.ndarray, lut: np.ndarray, where: str = "labels") -> np.ndarray:
    """Raw uint16 voxel labels (X, Y, Z) + invalid mask (X, Y, Z) -> uint8 training ids, 255 ignore."""
    out = remap_completion(raw, lut, where).astype(np.uint8)
    out[np.asarray(invalid, dtype=bool)] = IGNORE_LABEL
    return out


def downsample_labels(labels: np.ndarray, factor: int = 2) -> np.ndarray:
    """Reduce (X, Y, Z) training ids by `factor` per axis -> uint8 (X/f, Y/f, Z/f).

    The reference rule, per f x f x f block: if more than 95 % of its voxels are 0 or 255 the
    block is 0 when zeros outnumber 255s, else 255 (a tie gives 255); otherwise it takes the most
    frequent label other than 0 and 255, the smallest such label on a tie (numpy argmax of a
    bincount). Vectorised: pairwise equality of the f^3 values of every block.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or any(d % factor for d in labels.shape):
        raise ValueError(f"downsample_labels: shape {labels.shape} is not divisible by {factor} on each axis")
    if factor == 1:
        return labels.astype(np.uint8)
    x, y, z = (d // factor for d in labels.shape)
    n = factor**3
    blocks = (
        labels.astype(np.int16)
        .reshape(x, factor, y, factor, z, factor)
        .transpose(0, 2, 4, 1, 3, 5)
        .reshape(x, y, z, n)
    )
    zeros = (blocks == 0).sum(-1)
    unknown = (blocks == IGNORE_LABEL).sum(-1)
    empty = (zeros + unknown) > EMPTY_FRACTION * n
    semantic = (blocks != 0) & (blocks != IGNORE_LABEL)
    # count of each entry's value among the block's semantic entries; pick the highest count,
    # smallest value on ties: key = count * 512 - value (values < 512), non-semantic -> -1
    counts = ((blocks[..., :, None] == blocks[..., None, :]) & semantic[..., None, :]).sum(-1)
    key = np.where(semantic, counts.astype(np.int32) * 512 - blocks, -1)
    best = np.take_along_axis(blocks, key.argmax(-1)[..., None], axis=-1)[..., 0]
    fill = np.where(zeros > unknown, 0, IGNORE_LABEL)
    return np.where(empty, fill, best).astype(np.uint8)


#: dtype the reference writes per scale: full scale float32 (its remap output), reduced scales
#: uint8 (its downsampling output). The reference's training casts these dtypes as it expects
#: them (uint8 full-scale files make it compute all-zero class weights), so we write the same.
SCALE_DTYPE = {1: np.float32, 2: np.uint8, 4: np.uint8, 8: np.uint8}


def preprocess_frame(
    voxel_dir: os.PathLike[str] | str,
    frame_id: str,
    out_dir: os.PathLike[str] | str,
    label_set: LabelSet,
    grid: VoxelGrid,
    scales: tuple[int, ...] = (1, 2),
) -> list[Path]:
    """Write ``out_dir/<frame>_1_1.npy`` (and ``_1_2.npy`` ...) from ``voxel_dir/<frame>.label/.invalid``.

    Files hold training ids (255 = unknown) shaped (X, Y, Z) of `grid` scaled by each factor,
    in the reference's dtypes (`SCALE_DTYPE`: float32 full scale, uint8 reduced), so the files
    are interchangeable with the reference's both ways; the dataset readers accept float32 and
    uint8 at every scale. Writes are atomic.
    """
    voxel_dir = Path(voxel_dir)
    label_path = voxel_dir / f"{frame_id}.label"
    raw = kitti_io.read_label(label_path, grid.dims)
    invalid = kitti_io.read_bitpacked(voxel_dir / f"{frame_id}.invalid", grid.dims)
    full = full_scale_labels(raw, invalid, completion_remap_lut(label_set), where=str(label_path))
    written = []
    for s in scales:
        if s not in SCALE_SUFFIX:
            raise ValueError(f"preprocess_frame: unsupported scale {s}; expected one of {sorted(SCALE_SUFFIX)}")
        out = Path(out_dir) / f"{frame_id}_{SCALE_SUFFIX[s]}.npy"
        kitti_io.write_npy(out, downsample_labels(full, s).astype(SCALE_DTYPE[s]))
        written.append(out)
    return written
