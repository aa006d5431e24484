#!/usr/bin/env python3
# What pipelining buys, without ROS: the same synthetic frames at camera rate through the real
# SSCPredictor and encoders, once with the three steps one after another in one worker (what
# sgn_node did: 1 stage) and once as sgn_ros.ros.pipeline's three stages (prepare: stereo / depth
# -> points -> crop -> tables; infer: the network; encode: encode_outputs -> CDR bytes), each
# behind a newest-wins mailbox. Prints output rate, latency p50 / p95 (submit -> bytes ready) and
# per-stage p50 / drops. On a GPU the stages overlap device and host work; on a 2-core CPU they
# compete for the same cores, so expect little there.
# Run: PYTHONPATH=. python bench/pipeline_rate.py [--config tiny|full] [--frames 20] [--rate 10]
#      [--device cpu] [--depth-source points|depth|stereo] [--stereo-method sgbm|sgm]
#      [--fp16] [--compile-dense default|reduce-overhead]
"""Sequential vs staged processing of camera-rate frames with the real predictor and encoders."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from node_rate import BASELINE, FULL_HW, FULL_K, TINY_HW, TINY_K, Frames, tiny_config  # noqa: E402


def run(stages, frames: int, rate: float) -> tuple[list[float], float, list]:
    from sgn_ros.ros.pipeline import StagedPipeline

    done: dict[int, float] = {}
    lock = threading.Lock()

    def sink(item):
        with lock:
            done[item] = time.monotonic()
        return item

    pipe = StagedPipeline([*stages[:-1], (stages[-1][0], lambda x, f=stages[-1][1]: sink(f(x)))]).start()
    sent: dict[int, float] = {}
    t0 = time.monotonic()
    for i in range(frames):
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        sent[i] = time.monotonic()
        pipe.submit(i)
    end = time.monotonic() + 600
    while not pipe.idle() and time.monotonic() < end:
        time.sleep(0.01)
    pipe.stop()
    lat = [1000 * (done[i] - sent[i]) for i in done]
    t = sorted(done.values())
    out_rate = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else float("nan")
    return lat, out_rate, pipe.stats()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fp16", action="store_true")
    from sgn_ros.model.predictor import COMPILE_MODES

    ap.add_argument("--compile-dense", choices=COMPILE_MODES, default=None,
                    help="SSCPredictor compile_dense: torch.compile of the network's dense parts")
    ap.add_argument("--depth-source", choices=["points", "depth", "stereo"], default="points")
    ap.add_argument("--stereo-method", choices=["sgbm", "sgm", "msnet3d"], default="sgbm")
    ap.add_argument("--stereo-weights", default=None)
    args = ap.parse_args()

    from sgn_ros.data.stereo import StereoParams
    from sgn_ros.grid import DEFAULT_GRID
    from sgn_ros.labels import load_label_set
    from sgn_ros.model.predictor import SSCPredictor
    from sgn_ros.ros.encoders import OutputOptions, encode_outputs

    tmp = tempfile.TemporaryDirectory(prefix="pipeline_rate_")
    if args.config == "tiny":
        cfg, ckpt = tiny_config(Path(tmp.name))
        grid, hw, K, params = DEFAULT_GRID.scaled(4), TINY_HW, TINY_K, StereoParams(num_disparities=48)
    else:
        cfg, ckpt = "sgn-l-synth", None
        grid, hw, K, params = DEFAULT_GRID, FULL_HW, FULL_K, StereoParams()
    pred = SSCPredictor(cfg, checkpoint=ckpt, device=args.device, fp16=args.fp16, stereo_method=args.stereo_method,
                        stereo_params=params, stereo_weights=args.stereo_weights, compile_dense=args.compile_dense)
    warm_s = pred.warmup()
    f = Frames(hw, K, grid)
    lidar_to_cam = np.eye(4)  # grid / LiDAR x forward, y left, z up -> camera z forward, x right, y down
    lidar_to_cam[:3, :3] = [[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]
    ls = load_label_set("semantickitti")
    opts = OutputOptions(ls.colors_rgb, ls.names)
    geometry = {"points": dict(points=f.points), "depth": dict(depth=f.depth),
                "stereo": dict(stereo=(f.right, BASELINE))}[args.depth_source]

    def prepare(i):
        with pred.preparing():  # CUDA: a side stream, overlapping the previous frame's network
            return i, pred.prepare_batch(f.left, K, lidar_to_cam, **geometry)

    def infer(item):
        return item[0], pred.infer(item[1])

    def encode(item):
        encode_outputs(item[1], opts, 1_000_000_000 + item[0], "sgn_grid")
        return item[0]

    print(f"# {args.config} ({hw[1]} x {hw[0]}, grid {grid.dims}), device {args.device}, depth {args.depth_source}"
          + (f" ({args.stereo_method})" if args.depth_source == "stereo" else "")
          + (", fp16" if args.fp16 else "") + (f", compiled {args.compile_dense}" if args.compile_dense else "")
          + f", {args.frames} frames at {args.rate:g} Hz; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"warmup {warm_s:.1f} s\n")
    print("| mode | answered | output Hz | latency p50 ms | p95 ms | stage p50 ms (dropped) |")
    print("|---|---:|---:|---:|---:|---|")
    modes = {
        "sequential (1 stage)": [("all", lambda i: encode(infer(prepare(i))))],
        "pipelined (3 stages)": [("prepare", prepare), ("infer", infer), ("encode", encode)],
    }
    for name, stages in modes.items():
        lat, rate, stats = run(stages, args.frames, args.rate)
        st = ", ".join(f"{s.name} {s.p50_ms:.0f} ({s.dropped})" for s in stats)
        p50, p95 = (np.percentile(lat, [50, 95]) if lat else (float("nan"),) * 2)
        print(f"| {name} | {len(lat)} of {args.frames} | {rate:.2f} | {p50:.0f} | {p95:.0f} | {st} |")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
