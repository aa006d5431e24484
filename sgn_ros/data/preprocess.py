# `sgn-ros preprocess`: prepare a SemanticKITTI tree for training, in the reference's layout.
#   labels          voxels/NNNNNN.label + .invalid -> dataset/<labels_tag>/SS/NNNNNN_1_1.npy, _1_2.npy
#   stereo-depth    image_2 + image_3 (StereoSGBM, or MobileStereoNet with --method msnet3d)
#                   -> dataset/sequences_<tag>_depth/sequences/SS/NNNNNN.npy
#   depth-to-lidar  depth maps (metres, image_2 pixels) -> dataset/sequences_<tag>_lidar/sequences/SS/NNNNNN.bin
# Frames are independent jobs spread over --workers processes with a tqdm progress bar.
"""The `sgn-ros preprocess` command: SSC labels, stereo depth and pseudo-LiDAR files."""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sgn_ros.data import kitti_io
from sgn_ros.data.labels_preprocess import preprocess_frame
from sgn_ros.data.semantic_kitti import camera2_to_lidar
from sgn_ros.fileio import atomic_path
from sgn_ros.grid import DEFAULT_GRID, VoxelGrid
from sgn_ros.labels import load_label_set

#: the reference keeps pseudo-LiDAR points with x >= 0 and z below this height (metres)
DEFAULT_MAX_HEIGHT = 80.0


# --------------------------------------------------------------------------- helpers
def sequences_root(root: Path) -> Path:
    """ROOT/dataset/sequences (ROOT holds dataset/, as the reference's kitti_root)."""
    d = Path(root) / "dataset" / "sequences"
    if not d.is_dir():
        raise FileNotFoundError(f"missing directory {d} (--root must hold dataset/sequences)")
    return d


def list_sequences(root: Path, requested: list[str] | None, need: str) -> list[str]:
    """Requested sequences (zero-padded) or every sequence folder that has `need` (a sub-folder)."""
    base = sequences_root(root)
    if requested:
        seqs = [f"{int(s):02d}" if s.isdigit() else s for s in requested]
        for s in seqs:
            if not (base / s).is_dir():
                raise FileNotFoundError(f"missing sequence directory {base / s}")
        return seqs
    return sorted(p.name for p in base.iterdir() if (p / need).is_dir())


def run_jobs(fn: Callable, jobs: list, workers: int, desc: str) -> list:
    """Run fn(job) for every job, in `workers` processes (0 / 1: in this process), with tqdm."""
    results = []
    if workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
        with ctx.Pool(min(workers, len(jobs))) as pool:
            for r in tqdm(pool.imap_unordered(fn, jobs), total=len(jobs), desc=desc, unit="frame"):
                results.append(r)
    else:
        for job in tqdm(jobs, desc=desc, unit="frame"):
            results.append(fn(job))
    return results


def _atomic_tofile(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=False) as tmp:
        array.tofile(tmp)


# --------------------------------------------------------------------------- labels
def _label_job(job: tuple[str, str, str], labels: str, grid: VoxelGrid) -> int:
    voxel_dir, frame, out_dir = job
    preprocess_frame(voxel_dir, frame, out_dir, load_label_set(labels), grid)
    return 1


def preprocess_labels(
    root: Path,
    sequences: list[str] | None = None,
    out_root: Path | None = None,
    labels_tag: str = "labels",
    label_config: str = "semantickitti",
    workers: int = 0,
    grid: VoxelGrid = DEFAULT_GRID,
) -> int:
    """Write the full- and half-scale labels of every voxels/*.label; returns the frame count.

    `grid`: the config's voxel grid (cfg.grid), which the voxel files and the training use.
    """
    out_root = Path(out_root) if out_root is not None else Path(root) / "dataset"
    base = sequences_root(Path(root))
    jobs = []
    for seq in list_sequences(Path(root), sequences, "voxels"):
        vdir = base / seq / "voxels"
        for lab in sorted(vdir.glob("*.label")):
            jobs.append((str(vdir), lab.stem, str(out_root / labels_tag / seq)))
    if not jobs:
        raise FileNotFoundError(f"no voxels/*.label files under {base}")
    return sum(run_jobs(functools.partial(_label_job, labels=label_config, grid=grid), jobs, workers, "labels"))


# --------------------------------------------------------------------------- depth -> pseudo-LiDAR
def depth_map_to_lidar(
    depth: np.ndarray, calib: dict[str, np.ndarray], max_height: float = DEFAULT_MAX_HEIGHT
) -> np.ndarray:
    """Depth map (H, W) metres in image_2 pixels -> (N, 4) float32 pseudo-LiDAR (x, y, z, 1).

    Back-projection with P2's K from the image_2 camera (offset from camera 0 by P2's translation)
    into the LiDAR frame through inv(Tr); keeps x >= 0 and z < max_height as the reference does.
    Like the reference's depth2lidar, every pixel with depth 0 ("no depth") stays, as a point at
    the camera's position (z = 0 back-projects there), in row-major pixel order, so the files are
    interchangeable with the reference's. Negative and non-finite depths are dropped (the
    reference keeps a negative depth whose point lands at x >= 0, i.e. within the camera's
    ~0.27 m ahead of the LiDAR; depth networks do not produce them).
    """
    from sgn_ros.geometry import depth_to_points

    depth = np.asarray(depth)
    cam_to_lidar = camera2_to_lidar(calib)
    pts = depth_to_points(depth, calib["P2"][:3, :3], cam_to_lidar)  # depth > 0, row-major
    flat = depth.reshape(-1)
    zero = flat == 0
    if zero.any():
        with np.errstate(invalid="ignore"):
            kept = zero | (np.isfinite(flat) & (flat > 0))
        at_camera = zero[kept]
        merged = np.empty((int(kept.sum()), 3), np.float32)
        merged[~at_camera] = pts
        merged[at_camera] = cam_to_lidar[:3, 3].astype(np.float32)
        pts = merged
    pts = pts[(pts[:, 0] >= 0) & (pts[:, 2] < max_height)]
    return np.concatenate([pts, np.ones((len(pts), 1), np.float32)], axis=1).astype(np.float32)


def _lidar_job(job: tuple[str, str, str], max_height: float) -> int:
    depth_path, calib_path, out_path = job
    p = Path(depth_path)
    depth = kitti_io.read_npy(p)
    if depth.ndim != 2:
        raise ValueError(f"{p}: expected a depth map (H, W) in metres, got shape {depth.shape}")
    cloud = depth_map_to_lidar(depth, kitti_io.read_calib(calib_path), max_height)
    _atomic_tofile(Path(out_path), cloud.astype("<f4"))
    return 1


def depth_dir_for(template: str | None, root: Path, tag: str, seq: str) -> Path:
    """Depth folder of a sequence: `template` with ``{seq}`` filled in, ``template/SS``, or the
    reference's ``dataset/sequences_<tag>_depth/sequences/SS``."""
    if template is None:
        return Path(root) / "dataset" / f"sequences_{tag}_depth" / "sequences" / seq
    if "{seq}" in template:
        return Path(template.format(seq=seq))
    return Path(template) / seq


def preprocess_depth_to_lidar(
    root: Path,
    tag: str,
    depth_dir: str | None = None,
    sequences: list[str] | None = None,
    workers: int = 0,
    max_height: float = DEFAULT_MAX_HEIGHT,
) -> int:
    """Write ``dataset/sequences_<tag>_lidar/sequences/SS/NNNNNN.bin`` for every depth map."""
    base = sequences_root(Path(root))
    jobs = []
    for seq in list_sequences(Path(root), sequences, "image_2"):
        ddir = depth_dir_for(depth_dir, Path(root), tag, seq)
        if not ddir.is_dir():
            raise FileNotFoundError(f"missing depth directory {ddir} (sequence {seq})")
        out_dir = Path(root) / "dataset" / f"sequences_{tag}_lidar" / "sequences" / seq
        for d in sorted(ddir.glob("*.npy")):
            jobs.append((str(d), str(base / seq / "calib.txt"), str(out_dir / f"{d.stem}.bin")))
    if not jobs:
        raise FileNotFoundError(f"no depth maps (*.npy) found for tag {tag!r} under {root}")
    return sum(run_jobs(functools.partial(_lidar_job, max_height=max_height), jobs, workers, "depth-to-lidar"))


# --------------------------------------------------------------------------- stereo depth
def _stereo_job(job: tuple[str, str, str, str]) -> int:
    from sgn_ros.data.stereo import stereo_depth

    left_path, right_path, calib_path, out_path = job
    calib = kitti_io.read_calib(calib_path)
    if "P3" not in calib:
        raise kitti_io.DataFormatError(calib_path, "missing calibration key 'P3' (needed for the stereo baseline)")
    left, right = kitti_io.read_image(left_path), kitti_io.read_image(right_path)
    depth = stereo_depth(left, right, calib["P2"], calib["P3"])
    kitti_io.write_npy(Path(out_path), depth.astype(np.float32))
    return 1


def _stereo_jobs(root: Path, tag: str, sequences: list[str] | None) -> list[tuple[str, str, str, str]]:
    base = sequences_root(Path(root))
    jobs = []
    for seq in list_sequences(Path(root), sequences, "image_3"):
        out_dir = depth_dir_for(None, Path(root), tag, seq)
        for left in sorted((base / seq / "image_2").glob("*.png")):
            right = base / seq / "image_3" / left.name
            jobs.append((str(left), str(right), str(base / seq / "calib.txt"), str(out_dir / f"{left.stem}.npy")))
    if not jobs:
        raise FileNotFoundError(f"no image_2/*.png with image_3 under {base}")
    return jobs


def preprocess_stereo_depth(
    root: Path, tag: str = "sgbm", sequences: list[str] | None = None, workers: int = 0
) -> int:
    """Write ``dataset/sequences_<tag>_depth/sequences/SS/NNNNNN.npy`` for every image_2 frame (StereoSGBM)."""
    return sum(run_jobs(_stereo_job, _stereo_jobs(root, tag, sequences), workers, "stereo-depth"))


def preprocess_msnet_depth(
    root: Path,
    weights: str | None,
    tag: str = "msnet3d",
    sequences: list[str] | None = None,
    device: str = "cpu",
    kind: str = "msnet3d",
    pad_to: tuple[int, int] | None = None,
) -> int:
    """MobileStereoNet depth maps as the reference writes them (VoxFormer preprocess/mobilestereonet):
    ImageNet-normalised pair zero-padded top/right to 384 x 1248, disparity cropped back, and
    depth = 0.54 m * fx(P2) / max(disparity, 1e-8) saved as float32 .npy in
    ``dataset/sequences_<tag>_depth/sequences/SS``. One process: the network holds the device.

    Raises:
        MSNetWeightsMissing: `weights` is None or missing (the message says where to get them).
    """
    from PIL import Image

    from sgn_ros.stereo.msnet import REFERENCE_BASELINE_M, REFERENCE_PAD_SIZE, StereoDepth

    stereo = StereoDepth(weights, device, kind=kind, min_size=REFERENCE_PAD_SIZE if pad_to is None else pad_to)
    jobs = _stereo_jobs(root, tag, sequences)
    for left_path, right_path, calib_path, out_path in tqdm(jobs, desc=f"stereo-depth ({kind})", unit="frame"):
        for p in (left_path, right_path):
            if not Path(p).is_file():
                raise FileNotFoundError(f"missing dataset file: {p}")
        focal = float(kitti_io.read_calib(calib_path)["P2"][0, 0])
        with Image.open(left_path) as a, Image.open(right_path) as b:
            left, right = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
        if left.shape != right.shape:
            raise ValueError(f"{left_path} {left.shape} and {right_path} {right.shape} differ in size")
        depth = stereo.depth(left, right, focal, REFERENCE_BASELINE_M).cpu().numpy()
        kitti_io.write_npy(out_path, depth.astype(np.float32))
    return len(jobs)


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="step", metavar="STEP", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root", required=True, help="SemanticKITTI root (holds dataset/sequences)")
        p.add_argument("--sequences", nargs="+", default=None, help="sequences (default: all found)")
        p.add_argument("--workers", type=int, default=0, help="worker processes (0: in this process)")

    p = sub.add_parser("labels", help="full- and half-scale SSC labels from voxels/*.label + *.invalid")
    common(p)
    p.add_argument("--out", default=None, help="preprocess root (default ROOT/dataset): writes <tag>/SS/*.npy")
    p.add_argument("--labels-tag", default="labels", help="output folder name (cfg data.labels_tag)")
    p.add_argument("--labels", default="semantickitti", help="label set: semantickitti or a yaml")
    p.add_argument("--config", default="sgn-s", help="variant or config yaml whose voxel grid (grid.dims) to use")

    p = sub.add_parser("depth-to-lidar", help="pseudo-LiDAR .bin files from depth maps")
    common(p)
    p.add_argument("--tag", default="msnet3d", help="depth model tag: writes sequences_<tag>_lidar")
    p.add_argument(
        "--depth-dir",
        default=None,
        help="depth maps: a folder with SS/ sub-folders, or a path with {seq} "
        "(default ROOT/dataset/sequences_<tag>_depth/sequences)",
    )
    p.add_argument("--max-height", type=float, default=DEFAULT_MAX_HEIGHT, help="drop points with z >= this (m)")

    p = sub.add_parser("stereo-depth", help="depth maps from image_2 / image_3 (StereoSGBM or MobileStereoNet)")
    common(p)
    p.add_argument("--method", choices=("sgbm", "msnet3d", "msnet2d"), default="sgbm",
                   help="sgbm: OpenCV StereoSGBM; msnet3d / msnet2d: MobileStereoNet (needs --weights)")
    p.add_argument("--tag", default=None, help="writes sequences_<tag>_depth (default: the method)")
    p.add_argument("--weights", default=None, help="MobileStereoNet checkpoint (released .ckpt or converted)")
    p.add_argument("--device", default=None, help="torch device for MobileStereoNet (default cpu)")
    p.add_argument("--pad-to", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="MobileStereoNet minimum padded size (default 384 1248, the reference's)")


def main(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if args.step == "labels":
        from sgn_ros.config import load_config

        grid = load_config(args.config).grid
        n = preprocess_labels(root, args.sequences, args.out, args.labels_tag, args.labels, args.workers, grid=grid)
    elif args.step == "depth-to-lidar":
        n = preprocess_depth_to_lidar(root, args.tag, args.depth_dir, args.sequences, args.workers, args.max_height)
    elif args.step == "stereo-depth":
        tag = args.tag or args.method
        if args.method == "sgbm":
            for opt in ("weights", "pad_to", "device"):
                if getattr(args, opt) is not None:
                    flag = "--" + opt.replace("_", "-")
                    raise ValueError(f"preprocess stereo-depth: {flag} applies to msnet3d / msnet2d only")
            n = preprocess_stereo_depth(root, tag, args.sequences, args.workers)
        else:
            pad = None if args.pad_to is None else (args.pad_to[0], args.pad_to[1])
            n = preprocess_msnet_depth(root, args.weights, tag, args.sequences, args.device or "cpu", args.method, pad)
    else:  # argparse restricts the choices
        raise ValueError(f"unknown preprocess step {args.step!r}")
    sys.stdout.write(f"{args.step}: {n} frames written\n")
    return 0
