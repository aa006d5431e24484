# Synthetic-world figures: seconds (wall and CPU) per frame for each part of `generate_sequence`
# at KITTI size (1241 x 376): left and right camera renders, voxel ground truth (every 5th frame)
# and the whole sequence writer. Prints a markdown table; no assertions (this is a benchmark).
"""Benchmark: synthetic SemanticKITTI generation time per frame."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time


def _timed(fn, repeats: int) -> tuple[float, float]:
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=10, help="frames of the full-writer run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from sgn_ros.data.synth import VOXEL_EVERY, SynthWorld, generate_sequence, render_view, voxelize_frame

    world = SynthWorld.generate(args.seed, max(args.frames, 10))
    render_view(world, 0, "P2")  # warm-up
    rows = [
        ("camera image_2 (render + depth + labels)", _timed(lambda: render_view(world, 3, "P2"), args.repeats)),
        ("camera image_3", _timed(lambda: render_view(world, 3, "P3"), args.repeats)),
        ("voxel ground truth (one frame in 5)", _timed(lambda: voxelize_frame(world, 5), args.repeats)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = _timed(lambda: generate_sequence(tmp, frames=args.frames, seed=args.seed, depth=True), 1)
    print("| part | wall s | cpu s |")
    print("|---|---|---|")
    for name, (w, c) in rows:
        print(f"| {name} | {w:.3f} | {c:.3f} |")
    per = rows[0][1][0] + rows[1][1][0] + rows[2][1][0] / VOXEL_EVERY
    per_cpu = rows[0][1][1] + rows[1][1][1] + rows[2][1][1] / VOXEL_EVERY
    print(f"| per frame (2 cameras + voxels / {VOXEL_EVERY}) | {per:.3f} | {per_cpu:.3f} |")
    print(f"| generate_sequence, {args.frames} frames with depth, per frame | {wall / args.frames:.3f} | "
          f"{cpu / args.frames:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
