# Training throughput of SGN at full size: iterations per second and peak memory of one training
# iteration (forward, all losses, backward, gradient clipping, AdamW step, schedule step), as the
# trainer runs it (`sgn_ros.training.trainer.optimisation_step`), on one synthetic SemanticKITTI
# frame (370 x 1220 crop, 256 x 256 x 32 labels, pseudo-LiDAR from the rendered depth).
# CPU always; CUDA too when torch.cuda.is_available() (float32 and, with --amp, float16 autocast).
# Each (variant, device, precision) runs in its own process so that peak memory is its own.
"""Benchmark: SGN training iterations/s and peak memory (prints a markdown table)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _prepare_data(root: Path) -> None:
    from sgn_ros.data.preprocess import preprocess_depth_to_lidar, preprocess_labels
    from sgn_ros.data.synth import generate_sequence

    seq_dir = Path(generate_sequence(root, sequence="00", frames=1, seed=0, depth=True))
    preprocess_labels(root, ["00"])
    preprocess_depth_to_lidar(root, "msnet3d", depth_dir=str(seq_dir.parent / "{seq}" / "depth"), sequences=["00"])


def _measure(variant: str, device: str, amp: bool, iters: int, warmup: int, root: Path) -> dict:
    import torch

    from sgn_ros.config import load_config
    from sgn_ros.data.collate import collate_ssc
    from sgn_ros.data.semantic_kitti import SemanticKittiDataset
    from sgn_ros.model import build_model
    from sgn_ros.model.losses import SGNLoss
    from sgn_ros.training.schedule import WarmupCosineLR
    from sgn_ros.training.trainer import optimisation_step, trainable_parameters

    cfg = load_config(variant)
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(cfg).to(dev).train()
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = WarmupCosineLR(optimizer, 1000, cfg.train.epochs, cfg.train.warmup_iters, cfg.train.warmup_ratio,
                               cfg.train.min_lr_ratio)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    criterion = SGNLoss(cfg).to(dev)
    dataset = SemanticKittiDataset(root, cfg, "train", sequences=["00"])
    batch = collate_ssc([dataset[0]]).to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(warmup + iters):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        optimisation_step(model, criterion, optimizer, scheduler, scaler, params, batch, cfg.train.grad_clip, amp)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    peak = (
        torch.cuda.max_memory_allocated(dev) / 2**20
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    )
    return {
        "variant": variant,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)",
        "precision": "fp16 autocast" if amp else "fp32",
        "sec_per_iter": med,
        "iters_per_sec": 1.0 / med,
        "peak_mib": peak,
        "peak_kind": "max allocated (CUDA)" if dev.type == "cuda" else "process max RSS",
        "timed_iters": iters,
        "trainable_params": sum(p.numel() for p in params),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=["sgn-l", "sgn-t"])
    parser.add_argument("--cpu-iters", type=int, default=2, help="timed iterations on the CPU (slow: keep few)")
    parser.add_argument("--gpu-iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU runs")
    parser.add_argument("--data-root", default=None, help="prepared synthetic root (default: generate one)")
    parser.add_argument("--one", nargs=4, metavar=("VARIANT", "DEVICE", "AMP", "ITERS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        variant, device, amp, iters = args.one
        res = _measure(variant, device, amp == "1", int(iters), args.warmup, Path(args.data_root))
        sys.stdout.write("RESULT " + json.dumps(res) + "\n")
        return 0

    import torch

    with tempfile.TemporaryDirectory(prefix="sgn_bench_") as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp)
        if not args.data_root:
            _prepare_data(root)
        runs = []
        if not args.no_cpu:
            runs += [(v, "cpu", False, args.cpu_iters) for v in args.variants]
        if torch.cuda.is_available():
            for v in args.variants:
                runs += [(v, "cuda", False, args.gpu_iters), (v, "cuda", True, args.gpu_iters)]
        results = []
        for variant, device, amp, iters in runs:
            cmd = [sys.executable, os.path.abspath(__file__), "--data-root", str(root), "--warmup", str(args.warmup),
                   "--one", variant, device, "1" if amp else "0", str(iters)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.stderr.write(proc.stderr[-4000:])
                sys.stdout.write(f"{variant} {device} amp={amp}: FAILED (exit {proc.returncode})\n")
                continue
            results.append(json.loads(line[len("RESULT "):]))
    sys.stdout.write("\n| variant | device | precision | s/iter | iter/s | peak memory [MiB] | trainable params |\n")
    sys.stdout.write("|---|---|---|---|---|---|---|\n")
    for r in results:
        sys.stdout.write(
            f"| {r['variant']} | {r['device']} | {r['precision']} | {r['sec_per_iter']:.3f} | "
            f"{r['iters_per_sec']:.3f} | {r['peak_mib']:.0f} ({r['peak_kind']}) | {r['trainable_params']:,} |\n"
        )
    sys.stdout.write(f"\nmedian of timed iterations after {args.warmup} warm-up; batch 1, one synthetic frame\n")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
