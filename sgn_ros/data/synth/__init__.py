# Synthetic KITTI world: a seeded procedural street scene written in SemanticKITTI's own on-disk
# layout, so that every tool of the project (datasets, preprocessing, training, evaluation, the
# ROS players and node) can be exercised end to end without downloading anything.
"""Synthetic SemanticKITTI sequences.

`generate_sequence(out_root, sequence, frames, seed, depth, image_size)` writes::

    out_root/dataset/sequences/<sequence>/
        calib.txt             P0..P3 (3 x 4, relative to cam0) and Tr (velodyne -> cam0)
        poses.txt             cam0 pose of every frame in cam0 of frame 0 (KITTI convention)
        times.txt             seconds, 10 Hz
        image_2/NNNNNN.png    left colour camera (RGB, 1241 x 376 unless image_size says otherwise)
        image_3/NNNNNN.png    right colour camera (baseline 0.54 m)
        voxels/NNNNNN.label   every 5th frame: uint16 raw SemanticKITTI ids, 256 x 256 x 32 (x, y, z)
        voxels/NNNNNN.invalid         bit-packed, never observed by the accumulated scans
        voxels/NNNNNN.occluded        bit-packed, valid but not observed by this frame's scan
        voxels/NNNNNN.bin             bit-packed occupancy of this frame's single LiDAR scan
        depth/NNNNNN.npy      with depth=True, every frame: float32 (H, W) z-depth in metres of
                              image_2 (0 = sky / no surface), the rendered ground-truth depth

The grid is `sgn_ros.grid.DEFAULT_GRID` in the LiDAR frame of each frame. See world.py for the
scene, render.py for images and depth, voxelize.py for the voxel files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sgn_ros.data import kitti_io
from sgn_ros.data.synth.render import CameraRender, render_view
from sgn_ros.data.synth.voxelize import VoxelFrame, voxelize_frame
from sgn_ros.data.synth.world import KITTI_IMAGE_SIZE, SynthWorld, kitti_calibration
from sgn_ros.fileio import atomic_path
from sgn_ros.grid import DEFAULT_GRID, VoxelGrid

__all__ = ["generate_sequence", "SynthWorld", "CameraRender", "VoxelFrame", "render_view", "voxelize_frame",
           "VOXEL_EVERY"]

VOXEL_EVERY = 5  # SemanticKITTI stores voxel ground truth for every 5th frame


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then move it over `path`."""
    with atomic_path(path, fsync=False) as tmp:
        write(tmp)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    _atomic(path, lambda p: p.write_bytes(buf.tobytes()))


def _write_npy(path: Path, array: np.ndarray) -> None:
    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.save(f, array)

    _atomic(path, write)


def generate_sequence(out_root: str | os.PathLike[str], sequence: str = "00", frames: int = 20, seed: int = 0,
                      depth: bool = True, image_size: tuple[int, int] = KITTI_IMAGE_SIZE,
                      progress: bool = False, grid: VoxelGrid = DEFAULT_GRID) -> Path:
    """Write a synthetic SemanticKITTI sequence (layout in the module docstring); returns its folder.

    Args:
        out_root: root folder; files go to out_root/dataset/sequences/<sequence>/.
        sequence: sequence name, e.g. "00" (digits, as SemanticKITTI).
        frames: number of camera frames (>= 1); voxel files for frames 0, 5, 10, ...
        seed: scene seed; the same seed gives byte-identical files.
        depth: also write depth/NNNNNN.npy for every frame.
        image_size: (H, W) of the images; the intrinsics scale with it (KITTI's for 376 x 1241).
        progress: show a tqdm bar.
        grid: the voxel grid of the labels (a config's cfg.grid; SemanticKITTI's by default).
    """
    if frames < 1:
        raise ValueError(f"generate_sequence: frames must be >= 1, got {frames}")
    if not str(sequence).isdigit():
        raise ValueError(f"generate_sequence: sequence must be digits like '00', got {sequence!r}")
    h, w = int(image_size[0]), int(image_size[1])
    if h < 8 or w < 8:
        raise ValueError(f"generate_sequence: image_size (H, W) too small: {image_size}")
    world = SynthWorld.generate(int(seed), int(frames))
    seq_dir = Path(out_root) / "dataset" / "sequences" / str(sequence)
    for sub in ("image_2", "image_3", "voxels") + (("depth",) if depth else ()):
        (seq_dir / sub).mkdir(parents=True, exist_ok=True)
    _atomic(seq_dir / "calib.txt", lambda p: kitti_io.write_calib(p, kitti_calibration((h, w))))
    _atomic(seq_dir / "poses.txt", lambda p: kitti_io.write_poses(p, world.kitti_poses()))
    _atomic(seq_dir / "times.txt", lambda p: kitti_io.write_times(p, np.arange(frames) * world.dt))
    for i in tqdm(range(frames), desc=f"synth seq {sequence}", disable=not progress):
        name = f"{i:06d}"
        left = render_view(world, i, "P2", (h, w))
        _write_png(seq_dir / "image_2" / f"{name}.png", left.rgb)
        _write_png(seq_dir / "image_3" / f"{name}.png", render_view(world, i, "P3", (h, w)).rgb)
        if depth:
            _write_npy(seq_dir / "depth" / f"{name}.npy", left.depth)
        if i % VOXEL_EVERY == 0:
            vox = voxelize_frame(world, i, grid)
            base = seq_dir / "voxels" / name
            _atomic(base.with_suffix(".label"), lambda p, v=vox: kitti_io.write_label(p, v.label))
            _atomic(base.with_suffix(".invalid"), lambda p, v=vox: kitti_io.write_bitpacked(p, v.invalid))
            _atomic(base.with_suffix(".occluded"), lambda p, v=vox: kitti_io.write_bitpacked(p, v.occluded))
            _atomic(base.with_suffix(".bin"), lambda p, v=vox: kitti_io.write_bitpacked(p, v.occupancy))
    return seq_dir
