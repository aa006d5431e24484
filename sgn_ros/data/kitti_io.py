# KITTI / SemanticKITTI on-disk formats: calibration, poses, times, voxel label files and
# point clouds, read and written exactly as the benchmark stores them. Every reader names the
# file and what is wrong (missing, truncated with expected / actual size, missing keys).
"""Readers and writers for the KITTI odometry and SemanticKITTI voxel file formats."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike[str]

CALIB_KEYS = ("P0", "P1", "P2", "P3", "Tr")


class DataFormatError(ValueError):
    """A data file exists but its content is not what the format requires."""


def _require(path: PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"missing dataset file: {p}")
    return p


# --------------------------------------------------------------------------- calibration
def read_calib(path: PathLike) -> dict[str, np.ndarray]:
    """Read a KITTI odometry ``calib.txt``.

    Returns:
        ``P0``..``P3``: (3, 4) float64 projection matrices; ``Tr``: (4, 4) velodyne -> left
        grey camera (cam0) transform. SemanticKITTI's P2 is relative to cam0 too.
    """
    p = _require(path)
    out: dict[str, np.ndarray] = {}
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if ":" not in line:
            raise DataFormatError(f"{p}:{n}: expected 'KEY: 12 numbers', got {line[:60]!r}")
        key, values = line.split(":", 1)
        try:
            nums = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError:
            raise DataFormatError(f"{p}:{n}: non-numeric value in {key!r}") from None
        if nums.size != 12:
            raise DataFormatError(f"{p}:{n}: {key!r} needs 12 numbers, got {nums.size}")
        out[key.strip()] = nums.reshape(3, 4)
    missing = [k for k in ("P2", "Tr") if k not in out]
    if missing:
        raise DataFormatError(f"{p}: missing calibration key(s) {missing}; found {sorted(out)}")
    tr = np.eye(4)
    tr[:3, :] = out["Tr"]
    out["Tr"] = tr
    return out


def write_calib(path: PathLike, calib: dict[str, np.ndarray]) -> None:
    """Write ``calib.txt`` (keys P0..P3 as (3, 4), Tr as (3, 4) or (4, 4))."""
    lines = []
    for key in CALIB_KEYS:
        if key not in calib:
            raise ValueError(f"write_calib({path}): missing key {key!r}")
        m = np.asarray(calib[key], dtype=np.float64)[:3, :4]
        lines.append(f"{key}: " + " ".join(f"{v:.12e}" for v in m.reshape(-1)))
    Path(path).write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- poses, times
def read_poses(path: PathLike) -> np.ndarray:
    """Read ``poses.txt``: (N, 4, 4) float64 camera-0 poses (camera -> world of frame 0)."""
    p = _require(path)
    rows = np.loadtxt(p, dtype=np.float64, ndmin=2)
    if rows.shape[1] != 12:
        raise DataFormatError(f"{p}: each pose line needs 12 numbers, got {rows.shape[1]}")
    poses = np.tile(np.eye(4), (rows.shape[0], 1, 1))
    poses[:, :3, :] = rows.reshape(-1, 3, 4)
    return poses


def write_poses(path: PathLike, poses: np.ndarray) -> None:
    poses = np.asarray(poses, dtype=np.float64)
    np.savetxt(path, poses[:, :3, :].reshape(len(poses), 12), fmt="%.12e")


def read_times(path: PathLike) -> np.ndarray:
    """Read ``times.txt``: (N,) float64 seconds."""
    return np.loadtxt(_require(path), dtype=np.float64, ndmin=1)


def write_times(path: PathLike, times: np.ndarray) -> None:
    np.savetxt(path, np.asarray(times, dtype=np.float64), fmt="%.6e")


def lidar_poses(cam_poses: np.ndarray, tr: np.ndarray) -> np.ndarray:
    """Camera poses -> LiDAR poses: ``inv(Tr) @ pose @ Tr`` for each (4, 4) pose."""
    return np.linalg.inv(tr) @ np.asarray(cam_poses) @ tr


# --------------------------------------------------------------------------- voxel files
def pack_bits(mask: np.ndarray) -> np.ndarray:
    """Bool array -> bit-packed uint8, 8 voxels a byte, most significant bit first."""
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1), bitorder="big")


def unpack_bits(packed: np.ndarray, count: int) -> np.ndarray:
    """Bit-packed uint8 -> (count,) bool (the inverse of `pack_bits`)."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), count=count, bitorder="big").astype(bool)


def _read_exact(p: Path, dtype: np.dtype, count: int) -> np.ndarray:
    expected = count * np.dtype(dtype).itemsize
    actual = p.stat().st_size
    if actual != expected:
        raise DataFormatError(f"{p}: expected {expected} bytes ({count} x {np.dtype(dtype).name}), got {actual}")
    return np.fromfile(p, dtype=dtype)


def read_label(path: PathLike, dims: tuple[int, int, int]) -> np.ndarray:
    """Read a SemanticKITTI voxel ``.label`` file: uint16 raw ids shaped `dims` (x, y, z)."""
    n = int(np.prod(dims))
    return _read_exact(_require(path), np.dtype("<u2"), n).reshape(dims)


def write_label(path: PathLike, labels: np.ndarray) -> None:
    np.asarray(labels, dtype="<u2").reshape(-1).tofile(path)


def read_bitpacked(path: PathLike, dims: tuple[int, int, int]) -> np.ndarray:
    """Read a bit-packed ``.invalid`` / ``.occluded`` / ``.bin`` voxel file -> bool `dims`."""
    n = int(np.prod(dims))
    packed = _read_exact(_require(path), np.dtype(np.uint8), (n + 7) // 8)
    return unpack_bits(packed, n).reshape(dims)


def write_bitpacked(path: PathLike, mask: np.ndarray) -> None:
    pack_bits(mask).tofile(path)


# --------------------------------------------------------------------------- point clouds
def read_points(path: PathLike) -> np.ndarray:
    """Read a KITTI ``.bin`` point cloud: (N, 4) float32 (x, y, z, intensity / 1)."""
    p = _require(path)
    size = p.stat().st_size
    if size % 16:
        raise DataFormatError(f"{p}: size {size} bytes is not a multiple of 16 (N x 4 float32)")
    return np.fromfile(p, dtype="<f4").reshape(-1, 4)


def write_points(path: PathLike, points: np.ndarray) -> None:
    """Write (N, 3) or (N, 4) points as KITTI ``.bin`` (a 4th column of ones if absent)."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise ValueError(f"write_points({path}): expected (N, 3) or (N, 4), got {pts.shape}")
    if pts.shape[1] == 3:
        pts = np.concatenate([pts, np.ones((len(pts), 1), np.float32)], axis=1)
    pts.astype("<f4").tofile(path)
