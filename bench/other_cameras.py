# Benchmark: SGN on cameras other than KITTI's. The synthetic world is rendered by cameras of other
# resolutions, focal lengths, mount heights and pitches (held-out seed), the bundled sgn-l-synth
# weights run through SSCPredictor with each image-fitting mode, and the SemanticKITTI metrics
# (completion IoU, mIoU over the classes the world has) are printed next to the KITTI rig's.
#
# The grid always sits where the network learnt it: in a level frame 1.73 m above the road, like
# KITTI's velodyne (the world's LiDAR pose), whatever the camera's own height or pitch; only
# lidar_to_cam changes. Depth is the rendered ground-truth depth of each camera (the same source
# for every row), so the rows differ by camera and fitting only.
"""Completion IoU / mIoU of sgn-l-synth on synthetic cameras of other resolution, focal length,
mount height and pitch, per image-fitting mode (`python bench/other_cameras.py --frames 4`)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from sgn_ros.data.labels_preprocess import completion_remap_lut
from sgn_ros.data.synth import SynthWorld, voxelize_frame
from sgn_ros.data.synth.render import camera_to_world, render_camera
from sgn_ros.data.synth.world import LIDAR_HEIGHT
from sgn_ros.evaluation.metrics import SSCMetrics
from sgn_ros.grid import DEFAULT_GRID
from sgn_ros.labels import IGNORE_LABEL, load_label_set
from sgn_ros.model.predictor import SSCPredictor


@dataclass(frozen=True)
class Rig:
    """A forward-looking camera: (H, W), focal length (px, principal point at the centre),
    optical centre `height` m above the road (0.27 m ahead of the grid frame), pitched down by
    `pitch_deg`. name 'kitti' = the synthetic world's own KITTI camera 2."""

    name: str
    size: tuple[int, int]
    focal: float
    height: float
    pitch_deg: float = 0.0


RIGS = (
    Rig("kitti", (376, 1241), 718.856, 1.65),
    Rig("1280x720", (720, 1280), 900.0, 1.65),
    Rig("1920x1080", (1080, 1920), 1400.0, 1.65),
    Rig("640x480", (480, 640), 500.0, 1.65),
    Rig("1280x720 low, pitched 5 deg", (720, 1280), 900.0, 1.20, 5.0),
)


def camera_to_lidar(rig: Rig) -> np.ndarray:
    """(4, 4) optical frame (x right, y down, z forward) -> grid/LiDAR frame (x forward, z up)."""
    th = np.deg2rad(rig.pitch_deg)
    z = np.array([np.cos(th), 0.0, -np.sin(th)])  # optical axis, pitched down
    x = np.array([0.0, -1.0, 0.0])
    T = np.eye(4)
    T[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    T[:3, 3] = (0.27, 0.0, rig.height - LIDAR_HEIGHT)
    return T


def view(world: SynthWorld, frame: int, rig: Rig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rgb, depth (NaN = none), K, lidar_to_cam) of `rig` at `frame`."""
    lidar_to_world = world.lidar_pose(frame)
    if rig.name == "kitti":
        K, cam_to_world = camera_to_world(world, frame, "P2", rig.size)
    else:
        h, w = rig.size
        K = np.array([[rig.focal, 0, (w - 1) / 2], [0, rig.focal, (h - 1) / 2], [0, 0, 1.0]])
        cam_to_world = lidar_to_world @ camera_to_lidar(rig)
    r = render_camera(world, world.scene_at(world.frame_time(frame)), K, cam_to_world, rig.size)
    depth = np.where(r.depth > 0, r.depth, np.nan).astype(np.float32)
    return r.rgb, depth, K, np.linalg.inv(cam_to_world) @ lidar_to_world


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=4, help="labelled frames (every 5th) per camera")
    ap.add_argument("--seed", type=int, default=2008, help="world seed (2008 = the held-out sequence 08)")
    ap.add_argument("--modes", default="auto,crop", help="fitting modes to compare (auto = crop for KITTI)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--coverage-only", action="store_true", help="only the grid-in-view share (no network runs)")
    args = ap.parse_args()

    labels = load_label_set("semantickitti")
    lut = completion_remap_lut(labels)
    frames = [5 * i for i in range(args.frames)]
    world = SynthWorld.generate(args.seed, frames[-1] + 1)
    truth = {}
    for f in frames:
        vox = voxelize_frame(world, f, DEFAULT_GRID)
        gt = lut[vox.label.reshape(-1).astype(np.int64)]
        truth[f] = (gt, (gt != IGNORE_LABEL) & ~vox.invalid.reshape(-1))
    present = np.unique(np.concatenate([g[k] for g, k in truth.values()]))
    classes = [int(c) for c in present if 0 < c < labels.num_classes]
    pred = SSCPredictor("sgn-l-synth", device=args.device)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    if args.coverage_only:
        frames = frames[:1]
    rows = []
    for rig in RIGS:
        views = {f: view(world, f, rig) for f in (frames[:1] if args.coverage_only else frames)}
        f0 = views[frames[0]]
        for mode in modes:
            if rig.name == "kitti" and mode != modes[0]:
                continue  # auto == crop at KITTI's size
            if args.coverage_only:
                print(f"{rig.name} {mode}: grid in view {100 * pred.view_coverage(rig.size, f0[2], f0[3], mode):.1f} %")
                continue
            metrics = SSCMetrics(labels.num_classes, labels.names)
            t0 = time.perf_counter()
            for f in frames:
                rgb, depth, K, l2c = views[f]
                out = pred.predict(rgb, K, l2c, depth=depth, mode=mode)
                gt, keep = truth[f]
                metrics.update(out.labels.reshape(-1)[keep], gt[keep])
            dt = (time.perf_counter() - t0) / len(frames)
            s = metrics.compute()
            miou = 100 * float(np.mean([s["iou_per_class"][c] for c in classes]))
            cover = pred.view_coverage(rig.size, f0[2], f0[3], mode)
            rows.append((rig, mode, 100 * s["iou_completion"], miou, 100 * cover, dt))
            print(f"  {rig.name} {mode}: IoU {rows[-1][2]:.1f} mIoU {miou:.1f} ({dt:.1f} s/frame)", flush=True)

    if args.coverage_only:
        return
    print(f"\nsgn-l-synth, world seed {args.seed}, frames {frames}, ground-truth depth, "
          f"{torch.get_num_threads()} threads; mIoU over the {len(classes)} classes present")
    print("| camera | size (H x W) | focal px | height m | pitch deg | fitting | grid in view % "
          "| completion IoU | mIoU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rig, mode, iou, miou, cover, _ in rows:
        print(f"| {rig.name} | {rig.size[0]} x {rig.size[1]} | {rig.focal:.0f} | {rig.height:.2f} | {rig.pitch_deg:g} "
              f"| {mode} | {cover:.1f} | {iou:.2f} | {miou:.2f} |")


if __name__ == "__main__":
    main()
