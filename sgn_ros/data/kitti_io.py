# KITTI / SemanticKITTI / KITTI-360 on-disk formats: calibration, poses, times, voxel label
# files, point clouds, images and .npy arrays, read and written exactly as the benchmark and the
# reference store them. Every read of a dataset file goes through this module, so every error
# names the file and what is wrong (missing, truncated with expected / actual size, missing keys,
# non-finite numbers); `check_*` functions answer the same questions from the file's size and
# header only, for the start-up pre-flight of a whole split (`sgn_ros.data.common.preflight`).
"""Readers and writers of the KITTI odometry, SemanticKITTI and SSCBench file formats."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sgn_ros.errors import DataError

PathLike = str | os.PathLike[str]

CALIB_KEYS = ("P0", "P1", "P2", "P3", "Tr")

#: the last 12 bytes of every complete PNG: the IEND chunk (length 0, type, CRC)
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class DataFormatError(DataError):
    """A data file exists but its content is not what the format requires (`path`, `problem`)."""


def _require(path: PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"missing dataset file: {p}")
    return p


def _check_finite(p: Path, values: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argwhere(bad)[0][0]) + 1
        raise DataFormatError(p, f"non-finite value (NaN or inf) in {what} {row}")


def _loadtxt(p: Path, what: str) -> np.ndarray:
    """np.loadtxt of a whitespace table as float64 (N, C), naming the file on a parse error."""
    try:
        return np.loadtxt(p, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataFormatError(p, f"not a table of numbers ({what}): {e}") from None


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
            raise DataFormatError(p, f"line {n}: expected 'KEY: 12 numbers', got {line[:60]!r}")
        key, values = line.split(":", 1)
        try:
            nums = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError:
            raise DataFormatError(p, f"line {n}: non-numeric value in {key!r}") from None
        if nums.size != 12:
            raise DataFormatError(p, f"line {n}: {key!r} needs 12 numbers, got {nums.size}")
        if not np.isfinite(nums).all():
            raise DataFormatError(p, f"line {n}: non-finite value (NaN or inf) in {key.strip()!r}")
        out[key.strip()] = nums.reshape(3, 4)
    missing = [k for k in ("P2", "Tr") if k not in out]
    if missing:
        raise DataFormatError(p, f"missing calibration key(s) {missing}; found {sorted(out)}")
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
    rows = _loadtxt(p, "poses")
    if rows.shape[1] != 12:
        raise DataFormatError(p, f"each pose line needs 12 numbers, got {rows.shape[1]}")
    _check_finite(p, rows, "pose line")
    poses = np.tile(np.eye(4), (rows.shape[0], 1, 1))
    poses[:, :3, :] = rows.reshape(-1, 3, 4)
    return poses


def read_indexed_poses(path: PathLike) -> dict[int, np.ndarray]:
    """Read an SSCBench-KITTI-360 ``poses.txt`` ("frame" + 12 numbers a row, gaps allowed).

    Returns:
        frame id -> (4, 4) float64 pose as stored (IMU/GPS -> world), in file order.
    """
    p = _require(path)
    rows = _loadtxt(p, "poses")
    if rows.size == 0:
        return {}
    if rows.shape[1] != 13:
        raise DataFormatError(p, f"each pose line needs a frame index and 12 numbers, got {rows.shape[1]} values")
    _check_finite(p, rows, "pose line")
    if (rows[:, 0] != np.round(rows[:, 0])).any() or (rows[:, 0] < 0).any():
        raise DataFormatError(p, "the first column must hold frame indices (integers >= 0)")
    out = {}
    for row in rows:
        pose = np.eye(4)
        pose[:3, :] = row[1:].reshape(3, 4)
        out[int(row[0])] = pose
    return out


def write_poses(path: PathLike, poses: np.ndarray) -> None:
    poses = np.asarray(poses, dtype=np.float64)
    np.savetxt(path, poses[:, :3, :].reshape(len(poses), 12), fmt="%.12e")


def read_times(path: PathLike) -> np.ndarray:
    """Read ``times.txt``: (N,) float64 seconds."""
    p = _require(path)
    times = _loadtxt(p, "times").reshape(-1)
    _check_finite(p, times[:, None], "time line")
    return times


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
        raise DataFormatError(p, f"expected {expected} bytes ({count} x {np.dtype(dtype).name}), got {actual}")
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
    p = Path(path)
    check_points(p)
    return np.fromfile(p, dtype="<f4").reshape(-1, 4)


def write_points(path: PathLike, points: np.ndarray) -> None:
    """Write (N, 3) or (N, 4) points as KITTI ``.bin`` (a 4th column of ones if absent)."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise ValueError(f"write_points({path}): expected (N, 3) or (N, 4), got {pts.shape}")
    if pts.shape[1] == 3:
        pts = np.concatenate([pts, np.ones((len(pts), 1), np.float32)], axis=1)
    pts.astype("<f4").tofile(path)


# --------------------------------------------------------------------------- images
def read_image(path: PathLike) -> np.ndarray:
    """Read an image file fully decoded -> (H, W, 3) uint8 RGB.

    A truncated or corrupt file raises `DataFormatError` naming it (Pillow's own message,
    e.g. "image file is truncated", does not say which file).
    """
    from PIL import Image

    p = _require(path)
    try:
        with Image.open(p) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:
        raise DataFormatError(p, f"unreadable image ({e})") from None


def check_image(path: PathLike, min_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """Cheap check of an image file without decoding it: exists, header readable, at least
    `min_size` (H, W), and for PNG complete (ends with the IEND chunk). Returns (H, W)."""
    from PIL import Image

    p = _require(path)
    try:
        with Image.open(p) as im:
            w, h = im.size
            fmt = im.format
    except (OSError, SyntaxError, ValueError) as e:
        raise DataFormatError(p, f"unreadable image ({e})") from None
    if fmt == "PNG":
        with open(p, "rb") as f:
            f.seek(max(0, p.stat().st_size - len(PNG_END)))
            if f.read() != PNG_END:
                raise DataFormatError(p, f"truncated PNG (no IEND chunk at the end of its {p.stat().st_size} bytes)")
    if min_size is not None and (h < min_size[0] or w < min_size[1]):
        raise DataFormatError(p, f"image is {h}x{w}, smaller than {min_size[0]}x{min_size[1]}")
    return h, w


# --------------------------------------------------------------------------- .npy arrays
def npy_header(path: PathLike) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and the file size the header implies of a ``.npy`` file (header only)."""
    p = _require(path)
    try:
        with open(p, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
    except (OSError, ValueError, EOFError) as e:
        raise DataFormatError(p, f"not a .npy file ({e})") from None
    if dtype.hasobject:
        raise DataFormatError(p, f".npy holds Python objects (dtype {dtype}); expected numbers")
    return tuple(shape), dtype, offset + int(np.prod(shape)) * dtype.itemsize


def check_npy(path: PathLike, size: int | None = None) -> tuple[int, ...]:
    """Header-and-size check of a ``.npy`` file: complete, numeric and (optionally) `size` values."""
    p = Path(path)
    shape, dtype, expected = npy_header(p)
    actual = p.stat().st_size
    if actual != expected:
        raise DataFormatError(p, f"truncated .npy: {shape} {dtype.name} needs {expected} bytes, got {actual}")
    if size is not None and int(np.prod(shape)) != size:
        raise DataFormatError(p, f"expected {size} values, got shape {shape}")
    return shape


def read_npy(path: PathLike, size: int | None = None) -> np.ndarray:
    """Load a numeric ``.npy`` (no pickles) checked first as `check_npy` does, naming the file."""
    p = Path(path)
    check_npy(p, size)
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataFormatError(p, f"unreadable .npy ({e})") from None


def read_label_npy(path: PathLike, dims: tuple[int, int, int]) -> np.ndarray:
    """Read a preprocessed SSC label file (``NNNNNN_1_1.npy`` / ``_1_2.npy``) -> int64 `dims`.

    Accepts the reference's float32 and our older uint8 files alike; values must be integral
    training ids 0..254 or 255 (ignore).
    """
    arr = read_npy(path, int(np.prod(dims)))
    if arr.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise DataFormatError(path, f"label values must be whole numbers, found {arr[bad].flat[0]!r}")
    elif arr.dtype.kind not in "iu":
        raise DataFormatError(path, f"labels must be numbers, got dtype {arr.dtype}")
    out = arr.reshape(dims).astype(np.int64)
    if out.size and (out.min() < 0 or out.max() > 255):
        raise DataFormatError(path, f"label values must lie in 0..255, got {out.min()}..{out.max()}")
    return out


def write_npy(path: PathLike, array: np.ndarray) -> None:
    """Write a ``.npy`` atomically (a reader never sees half a file); creates the folder."""
    from sgn_ros.fileio import atomic_path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(p, fsync=False) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def check_points(path: PathLike) -> int:
    """Size check of a KITTI ``.bin`` point cloud; returns the number of points."""
    p = _require(path)
    size = p.stat().st_size
    if size % 16:
        raise DataFormatError(p, f"size {size} bytes is not a multiple of 16 (N x 4 float32)")
    return size // 16
