# The recipe of the bundled demo weights (sgn_ros/weights/sgn-l-synth.pth), as one command:
#   python -m sgn_ros.training.demo_weights --work-dir work_dirs/demo_weights   (`make demo-weights`)
# Synthetic sequences 00-07, 09, 10 train and 08 is held out (SemanticKITTI's own split, so
# `--split val` is the held-out sequence); pseudo-LiDAR comes from OpenCV stereo, the node's default depth
# source; training is the ordinary `sgn-ros train` on config/sgn-l-synth.yaml; the last
# checkpoint is exported compact (float16, unused layer4 left out) with its provenance.
"""Reproduce the bundled demo weights: data generation, preprocessing, training, export."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

#: sequence -> scene seed: SemanticKITTI's train split (00-07, 09, 10) and its validation sequence 08.
TRAIN_SEEDS = {f"{i:02d}": 1000 + i for i in (0, 1, 2, 3, 4, 5, 6, 7, 9, 10)}
HELDOUT_SEEDS = {"08": 2008}
CONFIG = "sgn-l-synth"
DEPTH_TAG = "sgbm"


def _generate(job: tuple[str, str, int, int]) -> str:
    from sgn_ros.data.synth import generate_sequence

    root, seq, seed, frames = job
    done = Path(root) / "dataset" / "sequences" / seq / ".complete"
    if not done.is_file():
        generate_sequence(root, sequence=seq, frames=frames, seed=seed, depth=False)
        done.write_text(f"seed {seed} frames {frames}\n")
    return seq


def generate_data(data: Path, frames: int, val_frames: int, jobs: int, heldout_only: bool = False) -> None:
    """Synthetic sequences plus labels, stereo depth and pseudo-LiDAR under `data`."""
    todo = [] if heldout_only else [(str(data), s, seed, frames) for s, seed in TRAIN_SEEDS.items()]
    todo += [(str(data), s, seed, val_frames) for s, seed in HELDOUT_SEEDS.items()]
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        for seq in pool.map(_generate, todo):
            print(f"[demo-weights] sequence {seq} written", flush=True)
    seqs = [j[1] for j in todo]
    for step in (
        ["labels"],
        ["stereo-depth", "--tag", DEPTH_TAG],
        ["depth-to-lidar", "--tag", DEPTH_TAG],
    ):
        _run(["preprocess", *step, "--root", str(data), "--workers", str(jobs), "--sequences", *seqs])


def _run(sgn_args: list[str], timeout: float | None = None) -> None:
    cmd = [sys.executable, "-m", "sgn_ros", *sgn_args]
    print("[demo-weights] $ sgn-ros " + " ".join(sgn_args), flush=True)
    subprocess.run(cmd, check=True, timeout=timeout)


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("SGN_ROS_COMMIT", "unknown")


def export_weights(checkpoint: Path, out: Path, provenance: dict) -> Path:
    """Write `checkpoint`'s model as compact bundled weights with `provenance`."""
    from sgn_ros.model.checkpoint import load_model, save_checkpoint

    loaded = load_model(checkpoint)
    provenance = {**provenance, "epoch": loaded.meta.get("epoch"), "iteration": loaded.meta.get("iteration")}
    return save_checkpoint(out, loaded.model, loaded.cfg, compact=True, **provenance)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sgn_ros.training.demo_weights", description=__doc__)
    ap.add_argument("--work-dir", default="work_dirs/demo_weights", type=Path)
    ap.add_argument("--frames", type=int, default=75, help="frames per training sequence (a label every 5th)")
    ap.add_argument("--val-frames", type=int, default=40, help="frames of the held-out sequence 08")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=Path("sgn_ros/weights/sgn-l-synth.pth"))
    ap.add_argument("--skip-data", action="store_true", help="reuse WORK_DIR/data as it is")
    ap.add_argument("--heldout-only", action="store_true", help="only write the held-out sequence (evaluation)")
    ap.add_argument("--data-only", action="store_true", help="stop after writing the data")
    ap.add_argument(
        "--train-timeout", type=float, default=0.0,
        help="seconds; stop training then and export the last epoch's checkpoint (0: no limit)",
    )
    ap.add_argument("--train-args", nargs=argparse.REMAINDER, default=[], help="extra `sgn-ros train` arguments")
    args = ap.parse_args(argv)
    data = args.work_dir / "data"
    t0 = time.time()
    if not args.skip_data:
        generate_data(data, args.frames, args.val_frames, args.jobs, heldout_only=args.heldout_only)
    if args.heldout_only or args.data_only:
        return 0
    t_data = time.time() - t0
    train_dir = args.work_dir / "train"
    train_cmd = [
        "train", "--config", CONFIG, "--data-root", str(data), "--work-dir", str(train_dir),
        "--train-sequences", *TRAIN_SEEDS, "--val-sequences", *HELDOUT_SEEDS, *args.train_args,
    ]
    stopped_early = False
    try:
        _run(train_cmd, timeout=args.train_timeout or None)
    except subprocess.TimeoutExpired:
        stopped_early = True
        print(f"[demo-weights] training stopped after {args.train_timeout:.0f} s (time limit)", flush=True)
    t_train = time.time() - t0 - t_data
    import torch

    machine = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    provenance = {
        "recipe": f"python -m sgn_ros.training.demo_weights --frames {args.frames} --val-frames {args.val_frames} "
        + " ".join(args.train_args),
        "config_name": CONFIG,
        "train_sequences": TRAIN_SEEDS,
        "heldout_sequences": HELDOUT_SEEDS,
        "depth": f"OpenCV StereoSGBM (tag {DEPTH_TAG})",
        "commit": _git_commit(),
        "machine": machine,
        "data_seconds": round(t_data, 1),
        "train_seconds": round(t_train, 1),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "stopped_by_time_limit": stopped_early,
        "note": "trained on the synthetic world only; not for real driving data",
    }
    out = export_weights(train_dir / "latest.pth", args.out, provenance)
    print(f"[demo-weights] wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
