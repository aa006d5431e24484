#!/usr/bin/env python3
# Where one SGN forward spends its time, from torch.profiler: the wall time per forward, how much of
# it the device is busy (kernel time / wall time: a launch-bound network keeps a GPU idle while
# Python launches the next kernels), the kernel launches and device -> host waits per forward, the
# time per top-level module (the paper's stages) and the most expensive operators by device and
# by host time. Made for the one GPU run a session may get (scripts/device_check.sh): it tells
# which of SGN-L's ~40 ms are kernels, launches or waits, so that the next change can be aimed.
# On the CPU it profiles host operators only (the busy share is then 100 % by definition).
# Run: PYTHONPATH=. python bench/model_profile.py [--variant sgn-l-synth] [--device cuda] [--fp16]
"""torch.profiler summary of SGN forwards: busy share, launches, waits, per stage, top operators."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_latency import STAGE_OF, synthetic_inputs  # noqa: E402

#: CUDA runtime / driver calls that launch a kernel, and those that make the host wait for the device
LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")
WAIT_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy",
              "cuStreamSynchronize", "cuCtxSynchronize")  # (a copy to the host is an async copy + a stream sync)


def _device_us(evt) -> float:
    """Self time of a profiler event on the device, µs (the attribute's name changed across torch)."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(evt, name):
            return float(getattr(evt, name))
    return 0.0


def profile(variant: str, device: str, fp16: bool, warmup: int, runs: int, top: int) -> str:
    """Markdown summary of `runs` profiled forwards after `warmup` unprofiled ones."""
    from torch.profiler import ProfilerActivity, record_function

    from sgn_ros.model.predictor import SSCPredictor

    torch.manual_seed(0)
    pred = SSCPredictor(variant, "semantickitti", device=device, fp16=fp16)
    dev = pred.device
    cuda = dev.type == "cuda"
    images, K, l2c, depth = synthetic_inputs(pred.cfg, pred.num_frames)
    batch = pred.prepare_batch(images, K, l2c, depth=depth)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    # each top-level module in a labelled range, so that its host and device time add up per stage
    ranges: dict[str, object] = {}
    for name, child in pred.model.named_children():
        label = f"stage: {STAGE_OF.get(name, name)} ({name})"

        def pre(_m, _i, label=label) -> None:
            ranges[label] = record_function(label)
            ranges[label].__enter__()

        def post(_m, _i, _o, label=label) -> None:
            ranges.pop(label).__exit__(None, None, None)

        child.register_forward_pre_hook(pre)
        child.register_forward_hook(post)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.float16, enabled=fp16):
            pred.model(batch)

    for _ in range(warmup):
        forward()
    sync()
    walls = []
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(runs):
            t0 = time.perf_counter()
            forward()
            sync()
            walls.append(time.perf_counter() - t0)
    events = prof.key_averages()
    wall_ms = statistics.median(walls) * 1e3

    kernel_us = sum(_device_us(e) for e in events if not e.key.startswith("stage: ")) / runs if cuda else 0.0
    counts: dict[str, int] = defaultdict(int)
    for e in events:
        if e.key in LAUNCH_CALLS:
            counts["launches"] += e.count
        if e.key in WAIT_CALLS:
            counts["waits"] += e.count
    aten = sum(e.count for e in events if e.key.startswith("aten::"))

    lines = [f"# {variant} on {torch.cuda.get_device_name(dev) if cuda else 'CPU'}, "
             f"{'fp16 autocast' if fp16 else 'fp32'}"
             f"{', cudnn.benchmark' if torch.backends.cudnn.benchmark else ''}, {runs} profiled forwards after "
             f"{warmup}; "
             f"torch {torch.__version__}", ""]
    lines += ["| forward wall ms (median) | device busy ms | busy share | kernel launches | device -> host waits "
              "| aten operators |", "|---:|---:|---:|---:|---:|---:|"]
    busy = f"{kernel_us / 1e3:.1f}" if cuda else "–"
    share = f"{100.0 * kernel_us / 1e3 / wall_ms:.0f} %" if cuda else "–"
    lines.append(f"| {wall_ms:.1f} | {busy} | {share} | {counts['launches'] / runs:.0f} | "
                 f"{counts['waits'] / runs:.0f} | {aten / runs:.0f} |")
    lines += ["", "Per stage (per forward; host = the stage's wall time on the host, device = its kernels):", "",
              "| stage | host ms | device ms |", "|---|---:|---:|"]
    for e in sorted((e for e in events if e.key.startswith("stage: ")), key=lambda e: -e.cpu_time_total):
        device_ms = (getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0.0)) / 1e3 / runs
        lines.append(f"| {e.key[7:]} | {e.cpu_time_total / 1e3 / runs:.2f} | {device_ms:.2f} |")
    ops = [e for e in events if not e.key.startswith("stage: ")]
    for title, key in ((("Top operators and kernels by device time", _device_us) if cuda else (None, None)),
                       ("Top operators by host self time", lambda e: float(e.self_cpu_time_total))):
        if title is None:
            continue
        lines += ["", f"{title} (per forward):", "", "| name | calls | self ms |", "|---|---:|---:|"]
        for e in sorted(ops, key=key, reverse=True)[:top]:
            lines.append(f"| `{e.key[:90]}` | {e.count / runs:.0f} | {key(e) / 1e3 / runs:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="sgn-l-synth")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--fp16", action="store_true", help="float16 autocast (CUDA)")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--top", type=int, default=25, help="operators listed per table")
    ap.add_argument("--threads", type=int, default=min(torch.get_num_threads(), 16))
    ap.add_argument("--out", default=None, help="also write the summary to this markdown file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark  # autotuned in the warm-up forwards
    text = profile(args.variant, args.device, args.fp16, args.warmup, args.runs, args.top)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
