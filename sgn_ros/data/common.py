# What the SemanticKITTI and SSCBench-KITTI-360 readers share: sample discovery (frames with
# voxel files), temporal neighbour selection, image loading (top-left crop + ImageNet
# normalisation), camera geometry per frame (K and current-LiDAR -> frame-camera transforms
# from the LiDAR poses), pseudo-LiDAR aggregation into the current LiDAR frame and SSC targets
# with the near-range masks. A subclass only says where the files are and how poses and
# calibration are read.
"""Shared base of the SSC dataset readers (one sample = one frame with voxel ground truth)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from sgn_ros.config import SGNConfig
from sgn_ros.data import kitti_io
from sgn_ros.data.registry import dataset_spec
from sgn_ros.geometry import apply_transform, crop_or_pad, invert_transform
from sgn_ros.grid import VoxelGrid
from sgn_ros.labels import IGNORE_LABEL, LabelSet, load_label_set, normalize_split
from sgn_ros.model.preprocessing import normalize_image
from sgn_ros.model.projection import network_tables

PathLike = str | os.PathLike[str]


def near_range_mask(grid: VoxelGrid, eval_range: float | None) -> np.ndarray | None:
    """Bool (X, Y, Z) mask of voxels OUTSIDE the near range, or None for the full volume
    (`eval_range` None or at least the grid's extent ahead).

    The reference evaluates 25.6 m / 12.8 m ranges by ignoring voxels beyond `eval_range` metres
    ahead of the sensor (x) and beyond eval_range / 2 to either side (y); the sensor sits at x = 0,
    y = 0 of the LiDAR frame. Indices derive from `grid` (25.6 m on the default grid: x >= 128,
    y < 64 or y >= 192).
    """
    vs = grid.voxel_size
    if eval_range is None:
        return None
    if eval_range <= 0:
        raise ValueError(f"data.eval_range must be > 0 m, got {eval_range}")
    if eval_range >= grid.extent[0] - 1e-6:
        return None
    n_x = eval_range / vs
    n_half = eval_range / 2 / vs
    if abs(n_x - round(n_x)) > 1e-6 or abs(n_half - round(n_half)) > 1e-6:
        raise ValueError(f"data.eval_range {eval_range} m is not a multiple of 2 voxels ({2 * vs} m)")
    x_end = round((0.0 - grid.origin[0]) / vs + n_x)
    y_mid = (0.0 - grid.origin[1]) / vs
    y_lo, y_hi = round(y_mid - n_half), round(y_mid + n_half)
    mask = np.ones(grid.dims, dtype=bool)
    mask[:x_end, y_lo:y_hi, :] = False
    return mask


def temporal_frame_ids(frame: int, offsets: tuple[int, ...], available: set[int] | range) -> list[int]:
    """Frame ids of the temporal neighbours, by the reference's rule (both datasets).

    `available` holds the frame ids that have a pose (one per row of poses.txt). The neighbour
    ``frame + o`` is used when it lies in 0 .. len(available) - 1 (the reference compares with the
    number of pose rows, not with the frame ids) and both it and `frame` have a pose; otherwise the
    current frame stands in. With KITTI-360's gapped poses.txt a frame id beyond the row count
    therefore falls back even when it has a pose.
    """
    last = len(available) - 1
    if frame not in available:
        return [frame] * len(offsets)
    out = []
    for o in offsets:
        t = frame + o
        out.append(t if 0 <= t <= last and t in available else frame)
    return out


@dataclass(frozen=True)
class SequenceInfo:
    """Per-sequence geometry, read once.

    Attributes:
        name: directory name of the sequence.
        K: (3, 3) float64 intrinsics of the network camera (P2[:3, :3] / image_00).
        lidar_to_cam: (4, 4) float64 LiDAR -> camera transform (``Tr``).
        poses: frame id -> (4, 4) LiDAR pose (LiDAR -> world).
    """

    name: str
    K: np.ndarray
    lidar_to_cam: np.ndarray
    poses: dict[int, np.ndarray]


class SSCDataset(Dataset):
    """Base dataset: samples are the frames with voxel files of the split's sequences.

    Each item is a dict::

        images        (F, 3, H, W) float32, cropped to cfg.data.image_size, ImageNet-normalised
        intrinsics    (F, 3, 3) float32, pixels (a top-left crop leaves K unchanged)
        lidar_to_cam  (F, 4, 4) float32, current LiDAR frame -> camera of frame f
        points        (N, 3) float32, pseudo-LiDAR of all F frames in the current LiDAR frame, m
        target        (X, Y, Z) int64 training ids, 255 ignore (None where no labels exist)
        target_half   (X/2, Y/2, Z/2) int64 (None where no labels exist)
        meta          dict: sequence, frame_id, image_paths, frame_ids

    Frame 0 is the current frame, frames 1.. follow cfg.data.temporal (SGN-T and SGN-L: -12, -9,
    -6, -3); a neighbour outside 0 .. (pose rows - 1) or without a pose is replaced by the current
    frame (`temporal_frame_ids`), whose image and points then appear again, as in the reference.
    A neighbour's points are moved with inv(T_current) @ T_neighbour of the LiDAR poses (the
    reference multiplies the file's 4th column, which pseudo-LiDAR files set to 1, as the
    homogeneous coordinate; we use 1). Where
    the current frame stands in, we use the exact identity; the reference multiplies by
    inv(T) @ T, which differs from it by float64 rounding (below 1e-12 m).
    Samples are the frames that have ``voxels/*.bin`` (the reference's scan) or ``*.label``.
    """

    #: subclasses: name of the dataset in messages
    dataset_name = "ssc"
    #: subclasses: folder below `root` that the layout must have (checked first, named if missing)
    required_dir = ""

    def __init__(
        self,
        root: PathLike,
        cfg: SGNConfig,
        split: str,
        sequences: list[str] | None = None,
        preprocess_root: PathLike | None = None,
        load_points: bool = True,
        check_files: bool = False,
    ) -> None:
        self.root = Path(root)
        if self.required_dir and not (self.root / self.required_dir).is_dir():
            raise FileNotFoundError(f"{self.dataset_name}: missing directory {self.root / self.required_dir}")
        self.cfg = cfg
        self.grid = cfg.grid
        self.split = normalize_split(split)
        self.label_set: LabelSet = load_label_set(cfg.data.label_config)
        if self.label_set.num_classes != cfg.num_classes:
            raise ValueError(
                f"{cfg.data.label_config}: {self.label_set.num_classes} classes, but data.num_classes is "
                f"{cfg.num_classes}"
            )
        self.preprocess_root = Path(preprocess_root) if preprocess_root is not None else self.default_preprocess_root()
        self.load_points = load_points
        self.image_size = tuple(cfg.data.image_size)
        self.offsets = tuple(cfg.data.temporal)
        self._range_mask = near_range_mask(self.grid, cfg.data.eval_range)
        if sequences is None:
            sequences = [self.sequence_name(s) for s in self.label_set.splits[self.split]]
        names = list(sequences)
        self.sequences: dict[str, SequenceInfo] = {}
        self.samples: list[tuple[str, int]] = []
        for name in names:
            info = self.read_sequence(name)
            self.sequences[name] = info
            self.samples.extend((name, f) for f in self.find_frames(name))
        if check_files:
            preflight(self)

    # ------------------------------------------------------------------ layout (subclasses)
    def default_preprocess_root(self) -> Path:
        raise NotImplementedError

    def sequence_name(self, number: int) -> str:
        """Directory name of sequence `number` (the registry's naming of this dataset)."""
        return dataset_spec(self.dataset_name).sequence_name(number)

    def sequence_dir(self, seq: str) -> Path:
        raise NotImplementedError

    def image_path(self, seq: str, frame: int) -> Path:
        raise NotImplementedError

    def points_path(self, seq: str, frame: int) -> Path:
        raise NotImplementedError

    def read_sequence(self, seq: str) -> SequenceInfo:
        raise NotImplementedError

    def voxel_dir(self, seq: str) -> Path:
        return self.sequence_dir(seq) / "voxels"

    def label_path(self, seq: str, frame: int, scale: str) -> Path:
        return self.preprocess_root / self.cfg.data.labels_tag / seq / f"{frame:06d}_{scale}.npy"

    def neighbours_available(self, seq: str) -> set[int] | range:
        """Frame ids a temporal neighbour may take (SemanticKITTI: 0 .. number of poses - 1)."""
        return set(self.sequences[seq].poses)

    # ------------------------------------------------------------------ discovery
    def find_frames(self, seq: str) -> list[int]:
        """Frames with voxel files (``voxels/*.bin`` as the reference; ``*.label`` also counts)."""
        vdir = self.voxel_dir(seq)
        if not vdir.is_dir():
            raise FileNotFoundError(f"{self.dataset_name}: missing voxel directory {vdir}")
        frames = set()
        for p in vdir.iterdir():
            if p.suffix in (".bin", ".label") and p.stem.isdigit():
                frames.add(int(p.stem))
        return sorted(frames)

    def __len__(self) -> int:
        return len(self.samples)

    def sample_frames(self, seq: str, frame: int) -> list[int]:
        """Frame ids a sample reads: the current frame, then one per cfg.data.temporal offset."""
        return [frame, *temporal_frame_ids(frame, self.offsets, self.neighbours_available(seq))]

    # ------------------------------------------------------------------ loading
    def load_image(self, path: Path) -> np.ndarray:
        """PNG -> (3, H, W) float32, top-left crop to cfg.data.image_size, normalised."""
        rgb = kitti_io.read_image(path)
        h, w = self.image_size
        if rgb.shape[0] < h or rgb.shape[1] < w:
            raise ValueError(
                f"{path}: image is {rgb.shape[0]}x{rgb.shape[1]}, smaller than the crop data.image_size {h}x{w}"
            )
        return normalize_image(crop_or_pad(rgb, (h, w)), self.cfg.data.image_mean, self.cfg.data.image_std)

    def load_points_file(self, path: Path) -> np.ndarray:
        return kitti_io.read_points(path)[:, :3].astype(np.float64)

    def load_target(self, seq: str, frame: int, scale: str, dims: tuple[int, int, int]) -> np.ndarray | None:
        path = self.label_path(seq, frame, scale)
        if not path.is_file():
            if self.split == "test":
                return None
            raise FileNotFoundError(
                f"missing dataset file: {path} (preprocessed labels; run `sgn-ros preprocess labels`)"
            )
        return kitti_io.read_label_npy(path, dims)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq, frame = self.samples[index]
        info = self.sequences[seq]
        frames = self.sample_frames(seq, frame)
        ref = info.poses.get(frame)
        images, l2c, pts = [], [], []
        loaded_images: dict[int, np.ndarray] = {}  # a stand-in frame is decoded once
        loaded_points: dict[int, np.ndarray] = {}
        for f in frames:
            if f not in loaded_images:
                loaded_images[f] = self.load_image(self.image_path(seq, f))
            images.append(loaded_images[f])
            if f == frame or ref is None or f not in info.poses:
                ref_to_f = np.eye(4)
            else:
                # current LiDAR -> world -> LiDAR of frame f
                ref_to_f = invert_transform(info.poses[f]) @ ref
            l2c.append(info.lidar_to_cam @ ref_to_f)
            if self.load_points:
                if f not in loaded_points:
                    loaded_points[f] = self.load_points_file(self.points_path(seq, f))
                p = loaded_points[f]
                if f != frame:  # inv(T_current) @ T_f, the reference's product (not inv(ref_to_f))
                    p = apply_transform(invert_transform(ref) @ info.poses[f], p)
                pts.append(p)
        target = self.load_target(seq, frame, "1_1", self.grid.dims)
        if target is not None and self._range_mask is not None:
            target[self._range_mask] = IGNORE_LABEL
        target_half = self.load_target(seq, frame, "1_2", self.grid.scaled(2).dims)
        k = np.repeat(info.K[None].astype(np.float32), len(frames), axis=0)
        points = np.concatenate(pts).astype(np.float32) if pts else np.zeros((0, 3), np.float32)
        # FLoSP tables from the float64 geometry, here in the CPU worker (the network never projects)
        gather_index, fov_mask = network_tables(
            self.grid, self.cfg.model.feature_stride, np.repeat(info.K[None], len(frames), axis=0), np.stack(l2c),
            self.image_size,
        )
        return {
            "images": torch.from_numpy(np.stack(images)),
            "intrinsics": torch.from_numpy(k),
            "lidar_to_cam": torch.from_numpy(np.stack(l2c).astype(np.float32)),
            "points": torch.from_numpy(points),
            "target": None if target is None else torch.from_numpy(target),
            "target_half": None if target_half is None else torch.from_numpy(target_half),
            "gather_index": gather_index,
            "fov_mask": fov_mask,
            "meta": {
                "dataset": self.dataset_name,
                "sequence": seq,
                "frame_id": f"{frame:06d}",
                "frame_ids": [f"{f:06d}" for f in frames],
                "image_paths": [str(self.image_path(seq, f)) for f in frames],
            },
        }


def preflight(dataset: SSCDataset, progress: bool = True) -> int:
    """Check every file the dataset's samples will read, before training or evaluation starts.

    Sizes and headers only (no decoding), so a whole split takes seconds: images exist, are
    complete PNGs (IEND present) and at least the crop; pseudo-LiDAR ``.bin`` files are whole
    points; label ``.npy`` files are complete and hold the grid's number of values (absent ones
    are allowed on the test split). Every problem is collected; one `DataError` lists them (the
    first 20), each naming its file, so a missing file fails at start-up rather than hours in.

    Returns:
        the number of distinct files checked.
    """
    checks: dict[Path, tuple[str, Any]] = {}
    for seq, frame in dataset.samples:
        for f in dataset.sample_frames(seq, frame):
            checks.setdefault(dataset.image_path(seq, f), ("image", dataset.image_size))
            if dataset.load_points:
                checks.setdefault(dataset.points_path(seq, f), ("points", None))
        for scale, grid in (("1_1", dataset.grid), ("1_2", dataset.grid.scaled(2))):
            checks.setdefault(dataset.label_path(seq, frame, scale), ("label", int(np.prod(grid.dims))))
    problems: list[str] = []
    for path, (kind, arg) in tqdm(checks.items(), desc=f"pre-flight {dataset.dataset_name}", unit="file",
                                  disable=not progress):
        try:
            if kind == "image":
                kitti_io.check_image(path, arg)
            elif kind == "points":
                kitti_io.check_points(path)
            elif dataset.split == "test" and not path.is_file():
                continue
            else:
                kitti_io.check_npy(path, arg)
        except (FileNotFoundError, kitti_io.DataFormatError) as e:
            problems.append(str(e))
    if problems:
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise kitti_io.DataFormatError(
            None,
            f"{dataset.dataset_name} {dataset.split}: {len(problems)} of {len(checks)} files unusable:\n  "
            + "\n  ".join(problems[:20]) + more,
        )
    return len(checks)

