# Data-pipeline figures on the synthetic world: how fast SemanticKittiDataset delivers samples
# for SGN-S (1 frame) and SGN-T (5 frames), and what label preprocessing / pseudo-LiDAR
# conversion cost per frame. Prints a markdown table; no assertions (this is a benchmark).
"""Benchmark: dataset samples/s (SGN-S, SGN-T) and preprocessing time per frame."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader


def _time_dataset(root: Path, variant: str, repeats: int, workers: int) -> tuple[float, int, float]:
    from sgn_ros.config import load_config
    from sgn_ros.data.collate import collate_ssc
    from sgn_ros.data.semantic_kitti import SemanticKittiDataset

    cfg = load_config(variant)
    ds = SemanticKittiDataset(root, cfg, "train", sequences=["00"])
    loader = DataLoader(ds, batch_size=1, collate_fn=collate_ssc, num_workers=workers, shuffle=False)
    n = 0
    points = 0
    t0 = time.perf_counter()
    for _ in range(repeats):
        for batch in loader:
            n += 1
            points += int(batch.points[0].shape[0])
    dt = time.perf_counter() - t0
    return n / dt, n, points / max(n, 1)


def _time_depth_to_lidar(root: Path) -> float:
    """Seconds per depth map of the conversion itself (no file writing)."""
    import numpy as np

    from sgn_ros.data import kitti_io
    from sgn_ros.data.preprocess import depth_map_to_lidar

    seq = root / "dataset" / "sequences" / "00"
    calib = kitti_io.read_calib(seq / "calib.txt")
    maps = sorted((seq / "depth").glob("*.npy"))[:8]
    if not maps:
        return float("nan")
    t0 = time.perf_counter()
    for m in maps:
        depth_map_to_lidar(np.load(m), calib)
    return (time.perf_counter() - t0) / len(maps)


def _time_stereo(root: Path, frames: int = 3) -> float:
    """Seconds per frame of StereoSGBM depth on the pair (PNG decoding included)."""
    from PIL import Image

    from sgn_ros.data import kitti_io
    from sgn_ros.data.stereo import stereo_depth

    seq = root / "dataset" / "sequences" / "00"
    calib = kitti_io.read_calib(seq / "calib.txt")
    lefts = sorted((seq / "image_2").glob("*.png"))[:frames]
    t0 = time.perf_counter()
    for left in lefts:
        a = np.asarray(Image.open(left).convert("RGB"))
        b = np.asarray(Image.open(seq / "image_3" / left.name).convert("RGB"))
        stereo_depth(a, b, calib["P2"], calib["P3"])
    return (time.perf_counter() - t0) / max(len(lefts), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=None, help="prepared synthetic root (default: generate one in a tmp dir)")
    parser.add_argument("--frames", type=int, default=31, help="frames to generate (labels every 5th)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the samples per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to time")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    from sgn_ros.data.preprocess import preprocess_depth_to_lidar, preprocess_labels

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.root is None:
            from sgn_ros.data.synth import generate_sequence

            root = Path(tmp)
            t0 = time.perf_counter()
            seq_dir = Path(generate_sequence(root, sequence="00", frames=args.frames, seed=0, depth=True))
            rows.append(("synthetic world generation", f"{(time.perf_counter() - t0) / args.frames:.3f} s/frame"))
            preprocess_labels(root, ["00"])
            preprocess_depth_to_lidar(root, "msnet3d", str(seq_dir.parent / "{seq}" / "depth"), ["00"])
        else:
            root = Path(args.root)
        # preprocessing cost per frame, written to a scratch folder (the tree is left as it is)
        t0 = time.perf_counter()
        n_labels = preprocess_labels(root, ["00"], out_root=Path(tmp) / "bench_labels")
        rows.append(("label preprocessing (1_1 + 1_2)", f"{(time.perf_counter() - t0) / n_labels:.3f} s/frame"))
        rows.append(("depth -> pseudo-LiDAR", f"{_time_depth_to_lidar(root):.3f} s/frame"))
        rows.append(("StereoSGBM depth (image_2 + image_3)", f"{_time_stereo(root):.3f} s/frame"))
        for variant, label in (("sgn-s", "SGN-S (1 frame)"), ("sgn-t", "SGN-T (5 frames)")):
            for w in args.workers:
                rate, n, pts = _time_dataset(root, variant, args.repeats, w)
                rows.append((f"{label}, {w} workers", f"{rate:.2f} samples/s ({n} samples, {pts:.0f} points/sample)"))
    sys.stdout.write("| measurement | value |\n|---|---|\n")
    for k, v in rows:
        sys.stdout.write(f"| {k} | {v} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
