#!/usr/bin/env python3
# Speed and peak memory of the stereo depth back ends at KITTI size: OpenCV StereoSGBM
# (sgn_ros.data.stereo) and MobileStereoNet-3D / -2D (sgn_ros.stereo.msnet, reference padding to
# 384 x 1248), on the CPU and, when torch sees CUDA, on the GPU in float32 and float16. Each case
# runs in a fresh process so that its peak memory (ru_maxrss on the CPU, max_memory_allocated on
# the GPU) is its own. Weights are random (speed does not depend on them): this is not a
# correctness check. Prints a markdown table.
"""ms per stereo pair and peak memory: SGBM vs MSNet3D / MSNet2D. Usage: python bench/stereo.py -h"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time

import numpy as np
import torch


def kitti_pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured pair with a disparity ramp (near bottom, far top), like a street."""
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, (h, w + 96, 3), dtype=np.uint8)
    left = tex[:, 96:].copy()
    right = np.empty_like(left)
    for y in range(h):
        d = 5 + int(80 * y / h)
        right[y] = tex[y, 96 - d : 96 - d + w]
    return left, right


def run_case(method: str, device: str, half: bool, h: int, w: int, repeats: int, warmup: int, threads: int,
             q) -> None:
    torch.set_num_threads(threads)
    left, right = kitti_pair(h, w)
    if method == "sgbm":
        from sgn_ros.data.stereo import disparity_sgbm

        fn = lambda: disparity_sgbm(left, right)  # noqa: E731
    else:
        from sgn_ros.stereo.msnet import build_msnet, disparity

        model = build_msnet(method).to(device, torch.float16 if half else torch.float32).eval()

        def fn():
            out = disparity(model, left, right)
            if device == "cuda":
                torch.cuda.synchronize()
            return out

    for _ in range(warmup):  # allocator, cuDNN, OpenCV
        fn()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    q.put((statistics.median(times), peak))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, nargs=2, default=(375, 1242), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per case (after one warm-up)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (0: time a cold run)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--methods", nargs="+", default=["sgbm", "msnet3d", "msnet2d"])
    args = parser.parse_args(argv)
    cases = [(m, "cpu", False) for m in args.methods]
    if torch.cuda.is_available():
        cases += [(m, "cuda", half) for m in args.methods if m != "sgbm" for half in (False, True)]
    ctx = mp.get_context("spawn")
    print(f"stereo pair {args.size[0]}x{args.size[1]}, {args.threads} threads, median of {args.repeats} "
          f"after {args.warmup} warm-up")
    print("| method | device | dtype | ms / pair | peak memory (MiB) |")
    print("|---|---|---|---:|---:|")
    for method, device, half in cases:
        q = ctx.Queue()
        case = (method, device, half, *args.size, args.repeats, args.warmup, args.threads, q)
        p = ctx.Process(target=run_case, args=case)
        p.start()
        p.join()
        if p.exitcode != 0:
            print(f"| {method} | {device} | - | failed (exit {p.exitcode}) | - |")
            continue
        ms, peak = q.get()
        dtype = "uint8" if method == "sgbm" else ("float16" if half else "float32")
        mem_kind = "RSS" if device == "cpu" else "CUDA alloc"
        print(f"| {method} | {device} | {dtype} | {ms:.0f} | {peak:.0f} ({mem_kind}) |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
