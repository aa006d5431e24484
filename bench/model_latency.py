#!/usr/bin/env python3
# Latency and memory of the SGN network at full size, per stage of the paper (image encoder +
# FPN, FLoSP lifting, proposal network, sparse guidance, semantic diffusion, output head) and in
# total, for SGN-T and SGN-L, on the CPU and (when torch sees CUDA) on the GPU in float32 and
# float16 autocast. Each case runs in a fresh process so that its peak memory is its own.
# --compile none default reduce-overhead adds cases with SSCPredictor(compile_dense=...). Prints a
# markdown table. Inputs are synthetic but of the real sizes: a KITTI-sized image
# (cropped by the predictor to cfg.data.image_size), KITTI intrinsics and LiDAR->camera
# transform, and pseudo-LiDAR back-projected from a street-like depth map (road plane, facades).
"""Per-stage latency / peak memory of SGN (markdown table). Usage: python bench/model_latency.py -h"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from collections import defaultdict

import numpy as np
import torch

# Top-level submodules of sgn_ros.model.sgn.SGN -> stage of the paper. Children not listed are
# reported under their own attribute name (so a renamed module shows up instead of vanishing).
STAGE_OF = {
    "encoder": "encoder+neck",
    "neck": "encoder+neck",
    "flosp": "lifting",
    "bottleneck": "lifting",
    "occupancy_head": "geometry guidance",
    "proposal": "proposal",
    "guidance": "sparse guidance",
    "seed_head": "sparse guidance",
    "prior_mlp": "sparse guidance",
    "diffusion": "diffusion",
    "output_head": "head",
}
STAGE_ORDER = ("encoder+neck", "lifting", "geometry guidance", "proposal", "sparse guidance", "diffusion", "head")


def synthetic_inputs(cfg, num_frames: int):
    """KITTI-like uint8 image(s), K, lidar_to_cam per frame and a street depth map (metres)."""
    from sgn_ros.data.synth.world import KITTI_IMAGE_SIZE, kitti_calibration
    from sgn_ros.geometry import camera_offset_from_P

    calib = kitti_calibration(KITTI_IMAGE_SIZE)
    p2 = calib["P2"]
    K = p2[:, :3].copy()
    shift = np.eye(4)
    shift[0, 3] = camera_offset_from_P(p2)[0]  # P2's x offset folded into the camera transform
    lidar_to_cam = shift @ calib["Tr"]
    h, w = KITTI_IMAGE_SIZE
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # depth: road plane 1.73 m below the camera's LiDAR, facades 9 m to each side, sky -> 80 m
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    ray = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    cam_to_lidar = np.linalg.inv(lidar_to_cam)
    ray_l = ray @ cam_to_lidar[:3, :3].T
    origin = cam_to_lidar[:3, 3]
    t = np.full((h, w), 80.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = (-1.73 - origin[2]) / ray_l[..., 2]
        t_wall = (np.sign(ray_l[..., 1]) * 9.0 - origin[1]) / ray_l[..., 1]
    for cand in (t_ground, t_wall):
        t = np.where((cand > 0) & (cand < t), cand, t)
    depth = (t * ray[..., 2]).astype(np.float32)
    frames = [lidar_to_cam]
    for k in range(1, num_frames):  # earlier frames: the car was k * 3 m behind
        back = np.eye(4)
        back[0, 3] = 3.0 * k
        frames.append(lidar_to_cam @ back)
    return [image] * num_frames, K, frames, depth


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stage_times(model, forward, runs: int, sync) -> dict[str, float]:
    """Median seconds per paper stage over `runs` forwards, from synchronising hooks on the
    model's top-level children (the rest of a forward is "other (glue)")."""
    spent: dict[str, float] = defaultdict(float)
    starts: dict[str, float] = {}
    handles = []
    for name, child in model.named_children():
        def pre(_m, _i, name=name):
            sync()
            starts[name] = time.perf_counter()

        def post(_m, _i, _o, name=name):
            sync()
            spent[name] += time.perf_counter() - starts.pop(name)

        handles += [child.register_forward_pre_hook(pre), child.register_forward_hook(post)]
    per_run = []
    try:
        for _ in range(runs):
            spent.clear()
            sync()
            t0 = time.perf_counter()
            forward()
            sync()
            total = time.perf_counter() - t0
            stages: dict[str, float] = defaultdict(float)
            for name, s in spent.items():
                stages[STAGE_OF.get(name, name)] += s
            stages["other (glue)"] = total - sum(stages.values())
            per_run.append(dict(stages))
    finally:
        for h in handles:
            h.remove()
    return {k: statistics.median(r.get(k, 0.0) for r in per_run) for k in per_run[0]}


def run_case(
    variant: str, device: str, fp16: bool, warmup: int, runs: int, threads: int, checkpoint: str | None,
    compile_mode: str | None = None, cudnn_benchmark: bool = False,
) -> dict:
    """Build the model, time `runs` forwards after `warmup`, per stage (hooks) and in total.

    With `compile_mode` (SSCPredictor's compile_dense) the predictor's own warm-up compiles first
    (its time is reported), and there are no stage times: hooks added to compiled modules would be
    traced into them and force a recompilation."""
    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = cudnn_benchmark  # this case's own process (run_isolated)
    torch.manual_seed(0)  # same random weights (hence the same seed count) in every case
    from sgn_ros.model.predictor import WARMUP_CALLS, SSCPredictor

    pred = SSCPredictor(variant, "semantickitti", checkpoint=checkpoint, device=device, fp16=fp16,
                        compile_dense=compile_mode)
    dev = pred.device
    compile_s = None
    if compile_mode is not None:
        compile_s = pred.warmup(stereo=False)  # compiles (and records CUDA graphs on its network thread)
        warmup = max(warmup, WARMUP_CALLS[compile_mode])  # this thread's own CUDA graph tree, too
    images, K, l2c, depth = synthetic_inputs(pred.cfg, pred.num_frames)
    batch = pred.prepare_batch(images, K, l2c, depth=depth)
    n_points = int(batch.points[0].shape[0])
    params = sum(p.numel() for p in pred.model.parameters())

    def forward():
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.float16, enabled=fp16):
            return pred.model(batch)

    for _ in range(warmup):
        out = forward()
    _sync(dev)
    n_seeds = int(out["seed_index"].shape[0])
    prepare = []
    for _ in range(runs):
        t0 = time.perf_counter()
        pred.prepare_batch(images, K, l2c, depth=depth)
        _sync(dev)
        prepare.append(time.perf_counter() - t0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)

    totals = []
    for _ in range(runs):
        _sync(dev)
        t0 = time.perf_counter()
        forward()
        _sync(dev)
        totals.append(time.perf_counter() - t0)
    e2e = []
    for _ in range(runs):
        _sync(dev)
        t0 = time.perf_counter()
        pred.predict(images, K, l2c, depth=depth)
        e2e.append(time.perf_counter() - t0)

    # per-stage: hooks on the top-level children (synchronising around each; separate runs); not
    # for compiled modules, which would trace the hooks and recompile
    stage_median = {} if compile_mode is not None else _stage_times(pred.model, forward, runs, lambda: _sync(dev))

    if dev.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
        weights = base / 2**20
        mem = f"{peak:.0f} MiB activations (+{weights:.0f} MiB resident)"
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        mem = f"{rss:.0f} MiB peak RSS (+{max(0.0, rss - rss_before):.0f} after warm-up)"
    return {
        "variant": variant,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({threads} threads)",
        "dtype": ("fp16 autocast" if fp16 else "fp32") + (f", compiled {compile_mode}" if compile_mode else "")
        + (", cudnn.benchmark" if cudnn_benchmark else ""),
        "compile_s": compile_s,
        "params": params,
        "points": n_points,
        "seeds": n_seeds,
        "prepare_ms": statistics.median(prepare) * 1e3,
        "total_ms": statistics.median(totals) * 1e3,
        "e2e_ms": statistics.median(e2e) * 1e3,
        "stages_ms": {k: v * 1e3 for k, v in stage_median.items()},
        "memory": mem,
    }


def _worker(queue, args):
    try:
        queue.put(run_case(*args))
    except Exception as e:  # reported in the table's stead
        queue.put({"error": f"{type(e).__name__}: {e}", "args": args})


def run_isolated(*args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_worker, args=(q, args))
    p.start()
    result = q.get()
    p.join()
    return result


def markdown(results: list[dict]) -> str:
    ok = [r for r in results if "error" not in r]
    extra = sorted({k for r in ok for k in r["stages_ms"]} - set(STAGE_ORDER) - {"other (glue)"})
    cols = [s for s in STAGE_ORDER if any(s in r["stages_ms"] for r in ok)] + extra + ["other (glue)"]
    head = ["variant", "device", "dtype", "params", "points", "seeds", *cols, "forward total", "prepare_batch",
            "predict() e2e", "memory", "warm-up (compile) s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in ok:
        cells = [r["variant"], r["device"], r["dtype"], f"{r['params'] / 1e6:.2f} M", str(r["points"]), str(r["seeds"])]
        cells += [f"{r['stages_ms'][c]:.1f}" if c in r["stages_ms"] else "" for c in cols]
        cells += [f"{r['total_ms']:.1f}", f"{r['prepare_ms']:.1f}", f"{r['e2e_ms']:.1f}", r["memory"],
                  "" if r.get("compile_s") is None else f"{r['compile_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for r in results:
        if "error" in r:
            lines.append(f"\nFAILED {r['args']}: {r['error']}")
    lines.append("\nTimes in ms, median over the timed runs; stage times come from separate runs with "
                 "synchronising forward hooks on the model's top-level modules. points: pseudo-LiDAR points in "
                 "the volume; seeds: proposal voxels > 0 (random weights unless --checkpoint is given). "
                 "prepare_batch: host-side input preparation (normalisation, depth -> points, upload); "
                 "predict() e2e adds it and the softmax / argmax / copy back to the forward. Compiled rows "
                 "(compile_dense: torch.compile of the dense parts) have no stage times (hooks would be "
                 "traced into the compiled modules); their last column is the predictor's warm-up, which "
                 "compiles (a later process finds the compiled kernels in inductor's on-disk cache).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variants", nargs="+", default=["sgn-t", "sgn-l"])
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    ap.add_argument("--cpu-variants", nargs="+", default=None,
                    help="variants to time on the CPU (default: sgn-l only; a CPU forward takes seconds)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=min(torch.get_num_threads(), 16))
    ap.add_argument("--checkpoint", default=None, help="weights to load (a trained model gives realistic seed counts)")
    ap.add_argument("--out", default=None, help="also write the table to this markdown file")
    ap.add_argument("--dtypes", nargs="+", choices=["fp32", "fp16"], default=["fp32", "fp16"],
                    help="on CUDA: float32 and/or float16 autocast (the CPU runs float32)")
    from sgn_ros.model.predictor import COMPILE_MODES

    ap.add_argument("--compile", nargs="+", default=[], choices=["none", *COMPILE_MODES],
                    help="also time SSCPredictor(compile_dense=MODE) cases (none = the eager network)")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="torch.backends.cudnn.benchmark = True in every case (cuDNN autotunes each conv shape at "
                         "its first call, in the warm-up)")
    args = ap.parse_args(argv)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    cpu_variants = args.cpu_variants or ["sgn-l"]
    modes = [None if m == "none" else m for m in (args.compile or ["none"])]
    cases = []
    for dev in devices:
        for v in args.variants:
            if dev == "cpu" and v not in cpu_variants:
                continue
            for fp16 in ([False] if not dev.startswith("cuda") else [d == "fp16" for d in args.dtypes]):
                cases += [(v, dev, fp16, mode) for mode in modes]
    results = []
    for v, dev, fp16, mode in cases:
        print(f"[model_latency] {v} on {dev} {'fp16' if fp16 else 'fp32'}{' compiled ' + mode if mode else ''} ...",
              file=sys.stderr, flush=True)
        results.append(run_isolated(v, dev, fp16, args.warmup, args.runs, args.threads, args.checkpoint, mode,
                                    args.cudnn_benchmark))
    table = markdown(results)
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
