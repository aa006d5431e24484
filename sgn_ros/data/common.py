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
from PIL import Image
from torch.utils.data import Dataset

from sgn_ros.config import SGNConfig
from sgn_ros.data import kitti_io
from sgn_ros.data.registry import dataset_spec
from sgn_ros.grid import VoxelGrid
from sgn_ros.labels import IGNORE_LABEL, LabelSet, load_label_set, normalize_split
from sgn_ros.model.preprocessing import crop_or_pad, normalize_image

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


def rigid_transform(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) rigid transform to (N, 3) points -> (N, 3).

    Written as (R @ P^T)^T: numpy's (N, 3) @ (3, 3) path is ~10x slower for large N.
    """
    return (transform[:3, :3] @ points.T).T + transform[:3, 3]


def temporal_frame_ids(frame: int, offsets: tuple[int, ...], available: set[int] | range) -> list[int]:
    """Frame ids of the temporal neighbours; the current frame stands in for a missing one.

    Where the current frame itself has no pose (KITTI-360 gaps), every neighbour is the current frame.
    """
    if frame not in available:
        return [frame] * len(offsets)
    return [frame + o if (frame + o) in available else frame for o in offsets]


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

    Frame 0 is the current frame, frames 1.. follow cfg.data.temporal (SGN-T: -12, -9, -6, -3);
    a neighbour outside the sequence (or without a pose) is replaced by the current frame, whose
    image and points then appear again, as in the reference. A neighbour's points are moved with
    inv(T_current) @ T_neighbour of the LiDAR poses (the reference multiplies the file's 4th
    column, which pseudo-LiDAR files set to 1, as the homogeneous coordinate; we use 1).
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

    # ------------------------------------------------------------------ loading
    def load_image(self, path: Path) -> np.ndarray:
        """PNG -> (3, H, W) float32, top-left crop to cfg.data.image_size, normalised."""
        if not path.is_file():
            raise FileNotFoundError(f"missing dataset file: {path}")
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
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
        arr = np.load(path)
        if arr.size != int(np.prod(dims)):
            n = int(np.prod(dims))
            raise kitti_io.DataFormatError(f"{path}: expected {dims} = {n} labels, got shape {arr.shape}")
        return arr.reshape(dims).astype(np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq, frame = self.samples[index]
        info = self.sequences[seq]
        frames = [frame, *temporal_frame_ids(frame, self.offsets, self.neighbours_available(seq))]
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
                ref_to_f = np.linalg.inv(info.poses[f]) @ ref
            l2c.append(info.lidar_to_cam @ ref_to_f)
            if self.load_points:
                if f not in loaded_points:
                    loaded_points[f] = self.load_points_file(self.points_path(seq, f))
                p = loaded_points[f]
                if f != frame:
                    p = rigid_transform(p, np.linalg.inv(ref_to_f))
                pts.append(p)
        target = self.load_target(seq, frame, "1_1", self.grid.dims)
        if target is not None and self._range_mask is not None:
            target[self._range_mask] = IGNORE_LABEL
        target_half = self.load_target(seq, frame, "1_2", self.grid.scaled(2).dims)
        k = np.repeat(info.K[None].astype(np.float32), len(frames), axis=0)
        points = np.concatenate(pts).astype(np.float32) if pts else np.zeros((0, 3), np.float32)
        return {
            "images": torch.from_numpy(np.stack(images)),
            "intrinsics": torch.from_numpy(k),
            "lidar_to_cam": torch.from_numpy(np.stack(l2c).astype(np.float32)),
            "points": torch.from_numpy(points),
            "target": None if target is None else torch.from_numpy(target),
            "target_half": None if target_half is None else torch.from_numpy(target_half),
            "meta": {
                "dataset": self.dataset_name,
                "sequence": seq,
                "frame_id": f"{frame:06d}",
                "frame_ids": [f"{f:06d}" for f in frames],
                "image_paths": [str(self.image_path(seq, f)) for f in frames],
            },
        }
