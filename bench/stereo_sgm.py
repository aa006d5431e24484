# Stereo matcher figures on one synthetic KITTI-size pair (376 x 1241, rendered with its true
# depth): milliseconds per pair and depth accuracy of OpenCV's StereoSGBM (CPU) and of the torch
# semi-global matcher sgn_ros.stereo.sgm on a chosen device, with each path-aggregation backend
# that runs there (torch's scan anywhere; the fused Triton scan on CUDA), and the number of torch
# operations that launch work per pair (views and allocations left out; a Triton backend adds one
# launch per path): on a GPU each costs a few microseconds of launch overhead whatever its size.
# Prints a markdown table; no assertions (this is a benchmark).
# On a GPU machine: `python bench/stereo_sgm.py --device cuda`.
"""Benchmark: OpenCV StereoSGBM vs the torch SGM, time per pair and depth accuracy."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _time_ms(fn, repeats: int, sync) -> tuple[float, object]:
    out = fn()  # warm-up (allocator, kernels)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times), out


def _accuracy(depth: np.ndarray, truth: np.ndarray, max_range: float) -> tuple[float, float, float]:
    """(median relative error %, valid share of the in-range true pixels %, share of them > 5 % off %)."""
    near = (truth > 0) & (truth < max_range)
    ok = near & (depth > 0)
    rel = np.abs(depth[ok] - truth[ok]) / truth[ok]
    return 100 * float(np.median(rel)), 100 * ok.sum() / near.sum(), 100 * float((rel > 0.05).sum() / near.sum())


def _launches(fn) -> int:
    """Torch operations that launch work during fn() (views and allocations left out)."""
    from sgn_ros.runtime import NO_LAUNCH, recorded_ops

    with recorded_ops() as ops:
        fn()
    return sum(name not in NO_LAUNCH for name, _ in ops)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="torch device of the SGM: cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and OpenCV")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frame", type=int, default=5)
    parser.add_argument("--num-disparities", type=int, default=192)
    parser.add_argument("--max-range", type=float, default=30.0, help="metres: pixels scored (as the tests)")
    parser.add_argument("--data", type=Path, help="an existing synthetic root (else one is generated)")
    parser.add_argument("--backends", default="",
                        help="comma-separated aggregation backends (torch, triton); default: all usable on the device")
    args = parser.parse_args(argv)

    import cv2
    import torch

    from sgn_ros.data import kitti_io
    from sgn_ros.data.stereo import StereoParams, disparity_sgbm, disparity_to_depth, stereo_baseline_focal
    from sgn_ros.data.synth import generate_sequence
    from sgn_ros.stereo import sgm_triton
    from sgn_ros.stereo.sgm import disparity_sgm

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = torch.device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp)
        seq = root / "dataset" / "sequences" / "00"
        if args.data is None:
            generate_sequence(root, sequence="00", frames=args.frame + 1, seed=args.seed, depth=True)
        name = f"{args.frame:06d}"
        left = cv2.imread(str(seq / "image_2" / f"{name}.png"))[..., ::-1].copy()
        right = cv2.imread(str(seq / "image_3" / f"{name}.png"))[..., ::-1].copy()
        truth = np.load(seq / "depth" / f"{name}.npy")
        calib = kitti_io.read_calib(seq / "calib.txt")
    baseline, focal = stereo_baseline_focal(calib["P2"], calib["P3"])
    params = StereoParams(num_disparities=args.num_disparities)
    h, w = left.shape[:2]

    backends = [b for b in args.backends.split(",") if b] or (
        ["triton", "torch"] if sgm_triton.usable_on(device) else ["torch"])
    rows = []
    ms, disp = _time_ms(lambda: disparity_sgbm(left, right, params), args.repeats, lambda: None)
    rows.append((f"OpenCV StereoSGBM 3-way, cpu x{args.threads}", ms, "-", disp))
    pair = [torch.from_numpy(a).permute(2, 0, 1)[None].to(device) for a in (left, right)]
    where = f"{device}" + (f" x{args.threads}" if device.type == "cpu" else f" ({torch.cuda.get_device_name(device)})")
    for backend in backends:
        for paths in (8, 4):
            def run(p=paths, b=backend):
                return disparity_sgm(*pair, params, paths=p, backend=b)

            with torch.no_grad():
                ms, disp = _time_ms(run, args.repeats, sync)
                ops = _launches(run)
            launches = f"{ops:,}" + (f" + {paths} Triton" if backend == "triton" else "")
            rows.append((f"torch SGM {paths} paths, {backend} scan, {where}", ms, launches, disp[0].cpu().numpy()))

    print(
        f"\nStereo on a synthetic {w} x {h} pair, {args.num_disparities} disparities, block {params.block_size}; "
        f"accuracy on true depth < {args.max_range:g} m\n"
    )
    print("| matcher | ms / pair | launches / pair | median depth error % | valid % | > 5 % off, % of pixels |")
    print("|---|---|---|---|---|---|")
    for label, ms, launches, disp in rows:
        med, valid, bad = _accuracy(disparity_to_depth(disp, baseline, focal), truth, args.max_range)
        print(f"| {label} | {ms:.0f} | {launches} | {med:.2f} | {valid:.1f} | {bad:.1f} |")
    if device.type == "cuda":
        print(f"\npeak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    if "triton" in backends and device.type == "cuda":
        _path_times(pair, params, device, args.repeats)
    return 0


def _path_times(pair, params, device, repeats: int) -> None:
    """Where the Triton scan's time goes: each path's launch timed alone (CUDA events, best of
    `repeats`) on the pair's cost volume, with its programs and sequential steps. A path's time is
    about its steps times one step's latency, so this says whether the long horizontal paths
    dominate (and would gain from running side by side)."""
    import torch

    from sgn_ros.stereo import sgm, sgm_triton

    blk = int(params.block_size)
    with torch.no_grad():
        cost = sgm.cost_volume(sgm.to_grey(pair[0]), sgm.to_grey(pair[1]), int(params.num_disparities), blk)
        across = cost.transpose(2, 3).contiguous().transpose(2, 3)
        p1, p2 = 8.0 * blk * blk, 32.0 * blk * blk
        h, w = cost.shape[-2:]
        print("\n| Triton path (dx, dy) | programs | steps each | ms, best of", repeats, "|")
        print("|---|---:|---:|---:|")
        total = 0.0
        for r in sgm.path_order(8):
            src = across if r[0] else cost
            out = torch.zeros_like(src)
            sgm_triton.accumulate_path(src, out, r, p1, p2)  # build / warm
            best = float("inf")
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                sgm_triton.accumulate_path(src, out, r, p1, p2)
                end.record()
                torch.cuda.synchronize(device)
                best = min(best, start.elapsed_time(end))
            plan = sgm_triton.scan_plan(h, w, r)
            print(f"| {r} | {plan.programs} | {plan.steps_per_program} | {best:.2f} |")
            total += best
        print(f"| all 8, one after another | | | {total:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
