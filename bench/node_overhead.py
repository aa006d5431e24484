#!/usr/bin/env python3
# What sgn_node costs on top of the network. Two parts, printed as markdown tables:
#  1. each message conversion at full size (a 1241 x 376 camera image, a 120k-point cloud, a
#     256 x 256 x 32 prediction with ~5 % occupied voxels) with sgn_ros.ros.decoders / encoders versus the
#     same message built point by point, as simple Python nodes do;
#  2. the real node in this process over DDS: time from an image's arrival to its published
#     outputs, split into waiting, decoding, inference and publishing; the overhead is the latency
#     minus the network's own time.
# Run: source scripts/ros_env.sh && python bench/node_overhead.py [--variant sgn-l] [--frames 4]
"""Benchmark of sgn_node's per-frame overhead and of its message conversions."""

from __future__ import annotations

import argparse
import array
import os
import struct
import sys
import threading
import time
from collections.abc import Callable

import numpy as np


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))


# --------------------------------------------------------------------------- naive versions
def naive_image_to_rgb(msg) -> np.ndarray:
    """Per-pixel loop of a simple node (bgr8 -> rgb)."""
    out = np.empty((msg.height, msg.width, 3), np.uint8)
    data = bytes(msg.data)
    for v in range(msg.height):
        for u in range(msg.width):
            o = v * msg.step + 3 * u
            out[v, u] = (data[o + 2], data[o + 1], data[o])
    return out


def naive_cloud_to_xyz(msg) -> np.ndarray:
    data = bytes(msg.data)
    pts = []
    for i in range(msg.width * msg.height):
        x, y, z = struct.unpack_from("<fff", data, i * msg.point_step)
        if np.isfinite(x) and np.isfinite(y) and np.isfinite(z):
            pts.append((x, y, z))
    return np.array(pts, np.float32)


def naive_pointcloud2(labels, conf, grid, colors, header):
    from sensor_msgs.msg import PointCloud2, PointField

    buf = bytearray()
    n = 0
    X, Y, Z = grid.dims
    for i, j, k in np.argwhere((labels != 0) & (labels != 255)).tolist():
        c = int(labels[i, j, k])
        r, g, b = (int(v) for v in colors[c])
        rgb = struct.unpack("<f", struct.pack("<I", (r << 16) | (g << 8) | b))[0]
        x = grid.origin[0] + (i + 0.5) * grid.voxel_size
        y = grid.origin[1] + (j + 0.5) * grid.voxel_size
        z = grid.origin[2] + (k + 0.5) * grid.voxel_size
        buf += struct.pack("<ffffIf", x, y, z, rgb, c, float(conf[i, j, k]))
        n += 1
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width, msg.point_step, msg.row_step = 1, n, 24, 24 * n
    msg.fields = [PointField(name=nm, offset=4 * o, datatype=t, count=1)
                  for o, (nm, t) in enumerate([("x", 7), ("y", 7), ("z", 7), ("rgb", 7), ("label", 6),
                                               ("confidence", 7)])]
    msg.data = array.array("B", bytes(buf))
    return msg


def naive_markers(labels, grid, colors, header):
    from geometry_msgs.msg import Point
    from visualization_msgs.msg import Marker, MarkerArray

    markers: dict[int, Marker] = {}
    for i, j, k in np.argwhere((labels != 0) & (labels != 255)).tolist():
        c = int(labels[i, j, k])
        if c not in markers:
            m = Marker()
            m.header, m.ns, m.id, m.type = header, "ssc", c, Marker.CUBE_LIST
            m.scale.x = m.scale.y = m.scale.z = grid.voxel_size
            m.color.r, m.color.g, m.color.b, m.color.a = (*(float(v) / 255 for v in colors[c]), 1.0)
            m.pose.orientation.w = 1.0
            markers[c] = m
        markers[c].points.append(Point(x=grid.origin[0] + (i + 0.5) * grid.voxel_size,
                                       y=grid.origin[1] + (j + 0.5) * grid.voxel_size,
                                       z=grid.origin[2] + (k + 0.5) * grid.voxel_size))
    out = MarkerArray()
    out.markers = list(markers.values())
    return out


def naive_grid(labels, conf, grid, names, header):
    from sgn_ros.msg import SemanticVoxelGrid

    msg = SemanticVoxelGrid()
    msg.header = header
    msg.size_x, msg.size_y, msg.size_z = grid.dims
    msg.voxel_size = grid.voxel_size
    msg.labels = [int(v) for v in labels.reshape(-1)]
    msg.confidence = [int(round(float(v) * 255)) for v in conf.reshape(-1)]
    msg.class_names = list(names)
    return msg


# --------------------------------------------------------------------------- part 1
def bench_conversions(repeat: int, naive: bool) -> list[tuple[str, float, float | None, str]]:
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import PointCloud2, PointField
    from std_msgs.msg import Header

    from sgn_ros.grid import DEFAULT_GRID
    from sgn_ros.labels import load_label_set
    from sgn_ros.model.predictor import SSCPrediction
    from sgn_ros.ros import decoders as conv
    from sgn_ros.ros import encoders as encs

    rng = np.random.default_rng(0)
    grid = DEFAULT_GRID
    ls = load_label_set("semantickitti")
    labels = np.zeros(grid.dims, np.uint8)
    occ = rng.random(grid.dims) < 0.05
    labels[occ] = rng.integers(1, ls.num_classes, int(occ.sum()))
    conf = rng.random(grid.dims).astype(np.float32)
    header = Header(frame_id="sgn_grid")
    pred = SSCPrediction(labels=labels, confidence=conf, grid=grid)
    opts = encs.OutputOptions(colors_rgb=ls.colors_rgb, class_names=ls.names)
    rows: list[tuple[str, float, float | None, str]] = []
    nocc = int(occ.sum())

    img = rng.integers(0, 256, (376, 1241, 3), np.uint8)
    for enc in ("rgb8", "bgr8", "bayer_rggb8", "yuv422"):
        px = img if enc in ("rgb8", "bgr8") else img[..., 0] if enc.startswith("bayer") else img[:, :-1, :2]
        msg = conv.array_to_image(np.ascontiguousarray(px), enc)
        slow = _median_ms(lambda m=msg: naive_image_to_rgb(m), 1) if naive and enc == "bgr8" else None
        rows.append((f"Image {enc} 1241x376 -> RGB", _median_ms(lambda m=msg: conv.image_to_rgb(m), repeat), slow, ""))

    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    rec = np.zeros(120_000, dt)
    for n in "xyz":
        rec[n] = rng.normal(0, 10, len(rec))
    cloud = PointCloud2()
    cloud.height, cloud.width, cloud.point_step, cloud.row_step = 1, len(rec), 16, 16 * len(rec)
    cloud.fields = [PointField(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate(dt.names)]
    cloud.data = array.array("B", rec.tobytes())
    rows.append(("PointCloud2 120k points -> xyz", _median_ms(lambda: conv.pointcloud2_to_xyz(cloud), repeat),
                 _median_ms(lambda: naive_cloud_to_xyz(cloud), 1) if naive else None, ""))
    depth = conv.array_to_image((rng.random((376, 1241)) * 40000).astype(np.uint16), "16UC1")
    rows.append(("depth 16UC1 1241x376 -> metres", _median_ms(lambda: conv.depth_image_to_metres(depth), repeat),
                 None, ""))

    out_pc = encs.prediction_to_pointcloud2(pred, opts, header)
    rows.append((f"prediction -> PointCloud2 ({nocc} voxels)",
                 _median_ms(lambda: encs.prediction_to_pointcloud2(pred, opts, header), repeat),
                 _median_ms(lambda: naive_pointcloud2(labels, conf, grid, ls.colors_rgb, header), 1) if naive else None,
                 f"{len(out_pc.data) / 2**20:.1f} MiB"))
    out_ma, _ = encs.prediction_to_marker_array(pred, opts, header)
    rows.append((f"prediction -> MarkerArray ({nocc} cubes), first frame",
                 _median_ms(lambda: encs.prediction_to_marker_array(pred, opts, header), repeat),
                 _median_ms(lambda: naive_markers(labels, grid, ls.colors_rgb, header), 1) if naive else None, ""))
    cache = encs.MarkerPointCache(grid)
    encs.prediction_to_marker_array(pred, opts, header, cache=cache)
    rows.append((f"prediction -> MarkerArray ({nocc} cubes), Point objects cached",
                 _median_ms(lambda: encs.prediction_to_marker_array(pred, opts, header, cache=cache), repeat),
                 None, ""))
    out_grid = encs.prediction_to_voxel_grid(pred, opts, header)
    rows.append(("prediction -> SemanticVoxelGrid (dense)",
                 _median_ms(lambda: encs.prediction_to_voxel_grid(pred, opts, header), repeat),
                 _median_ms(lambda: naive_grid(labels, conf, grid, ls.names, header), 1) if naive else None,
                 f"{(len(out_grid.labels) + len(out_grid.confidence)) / 2**20:.1f} MiB"))
    for name, m in (("PointCloud2", out_pc), ("MarkerArray", out_ma), ("SemanticVoxelGrid", out_grid)):
        rows.append((f"serialize {name} (what publish() does)", _median_ms(lambda m=m: serialize_message(m), repeat),
                     None, ""))
    return rows


# --------------------------------------------------------------------------- part 2
def bench_node(
    variant: str, frames: int, depth_source: str, outputs: tuple[str, ...], occupancy: float | None
) -> dict[str, float]:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
    from sgn_ros.msg import SemanticVoxelGrid
    from std_msgs.msg import Header
    from visualization_msgs.msg import MarkerArray

    from sgn_ros.config import load_config
    from sgn_ros.ros import decoders as conv
    from sgn_ros.ros.node import SGNNode

    cfg = load_config(variant)
    h, w = 376, 1241
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (h, w, 3), np.uint8)
    K = np.array([[707.0, 0, 604.0], [0, 707.0, 180.5], [0, 0, 1]])
    depth = np.full((h, w), 12.0, np.float32)
    depth[: h // 3] = np.nan  # sky
    grid = cfg.grid
    lo, hi = np.asarray(grid.origin), np.asarray(grid.upper)
    points = (lo + rng.random((60_000, 3)) * (hi - lo)).astype(np.float32)

    cloud = PointCloud2(height=1, width=len(points), point_step=12, row_step=12 * len(points), is_dense=True)
    cloud.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    cloud.data = array.array("B", points.tobytes())

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = SGNNode(context=ctx, parameter_overrides=[
        Parameter("variant", value=variant), Parameter("depth_source", value=depth_source),
        Parameter("diagnostics_period", value=1.0)])
    if occupancy is not None:
        # Untrained weights label nearly every voxel non-empty; outputs then cost what no real scene
        # does. Keep the real inference, then thin its labels to a realistic occupied fraction.
        # (the node's network stage calls SSCPredictor.infer on the batch its decode stage prepared)
        real_infer = node.predictor.infer
        thin = np.random.default_rng(2).random(grid.dims) >= occupancy

        def infer(*a, **k):
            pred = real_infer(*a, **k)
            pred.labels[thin] = 0
            return pred

        node.predictor.infer = infer
    io = rclpy.create_node("bench_io", context=ctx)
    pubs = {"image": io.create_publisher(Image, "image", 5), "info": io.create_publisher(CameraInfo, "camera_info", 5),
            "depth": io.create_publisher(Image, "depth", 5), "points": io.create_publisher(PointCloud2, "points", 5)}
    got: dict[int, float] = {}
    io.create_subscription(SemanticVoxelGrid, "ssc/grid",
                           lambda m: got.setdefault(conv.stamp_to_ns(m.header.stamp), time.monotonic()), 5)
    occupied: list[int] = []
    # the node builds only outputs somebody subscribes to (RViz would subscribe to what it shows)
    if "points" in outputs:
        io.create_subscription(PointCloud2, "ssc/points", lambda m: occupied.append(m.width), 5)
    if "markers" in outputs:
        io.create_subscription(MarkerArray, "ssc/markers", lambda m: None, 5)
    ex = MultiThreadedExecutor(num_threads=2, context=ctx)
    ex.add_node(node)
    ex.add_node(io)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    sent: dict[int, float] = {}
    try:
        for f in range(frames + 1):  # frame 0: warm-up (discovery, projection tables)
            stamp = (1000 + f) * 1_000_000_000
            hdr = Header(frame_id="camera")
            hdr.stamp.sec = 1000 + f
            info = CameraInfo(header=hdr, height=h, width=w, k=[float(v) for v in K.reshape(-1)])
            pubs["info"].publish(info)
            if depth_source == "depth_image":
                pubs["depth"].publish(conv.array_to_image(depth, "32FC1", hdr))
            else:
                cloud.header = hdr
                pubs["points"].publish(cloud)
            img_msg = conv.array_to_image(image, "rgb8", hdr)
            sent[stamp] = time.monotonic()
            pubs["image"].publish(img_msg)
            end = time.monotonic() + 120
            resend = time.monotonic() + 2.0
            while stamp not in got and time.monotonic() < end:
                time.sleep(0.01)
                if f == 0 and time.monotonic() > resend:  # warm-up: published before discovery ended
                    resend = time.monotonic() + 2.0
                    pubs["info"].publish(info)
                    pubs["depth" if depth_source == "depth_image" else "points"].publish(
                        conv.array_to_image(depth, "32FC1", hdr) if depth_source == "depth_image" else cloud)
                    pubs["image"].publish(img_msg)
            if stamp not in got:
                raise RuntimeError(f"no output for frame {f} (stamp {stamp})")
        timings = node.timings()[1:]  # drop warm-up
    finally:
        ex.shutdown()
        node.destroy_node()
        io.destroy_node()
        rclpy.shutdown(context=ctx)
    e2e = [1000 * (got[s] - sent[s]) for s in sorted(sent)[1:]]
    med = {k: 1000 * float(np.median([getattr(t, k) for t in timings]))
           for k in ("latency", "queued", "decode", "waiting", "inference", "publish")}
    med["end_to_end"] = float(np.median(e2e))
    med["overhead"] = med["end_to_end"] - med["inference"]
    med["occupied_voxels"] = float(np.median(occupied)) if occupied else float("nan")
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="sgn-l")
    ap.add_argument("--frames", type=int, default=2, help="timed frames through the node (plus one warm-up)")
    ap.add_argument("--depth-source", default="points", choices=["points", "depth_image"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-naive", action="store_true", help="skip the slow point-by-point versions")
    ap.add_argument("--no-node", action="store_true", help="conversions only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--outputs", default="grid,points,markers",
                    help="outputs subscribed to (the node builds only these): grid, points, markers")
    ap.add_argument("--occupancy", type=float, default=0.05,
                    help="thin the (untrained) network's labels to this occupied fraction before publishing, "
                         "as a real scene (~5 %% of the grid); negative: publish them as they are")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"# sgn_node overhead ({os.uname().machine}, {torch.get_num_threads()} torch threads, "
          f"cuda={torch.cuda.is_available()})\n")
    rows = bench_conversions(args.repeat, not args.no_naive)
    print("| conversion (full size) | sgn_ros ms | point by point ms | speed-up | size |")
    print("|---|---:|---:|---:|---|")
    for name, fast, slow, note in rows:
        s = f"{slow:.0f}" if slow is not None else "-"
        x = f"{slow / fast:.0f}x" if slow is not None else "-"
        print(f"| {name} | {fast:.1f} | {s} | {x} | {note} |")
    if not args.no_node:
        outs = tuple(o.strip() for o in args.outputs.split(",") if o.strip())
        med = bench_node(args.variant, args.frames, args.depth_source, outs,
                         args.occupancy if args.occupancy >= 0 else None)
        print(f"\n| sgn_node, {args.variant}, depth from {args.depth_source}, outputs {'+'.join(outs)}, "
              f"median of {args.frames} frames, {med['occupied_voxels']:.0f} occupied voxels | ms |")
        print("|---|---:|")
        for k in ("end_to_end", "inference", "overhead", "queued", "decode", "waiting", "publish", "latency"):
            label = {"end_to_end": "image published -> ssc/grid received",
                     "overhead": "overhead (end to end - inference)",
                     "latency": "node: frame complete -> outputs published"}.get(k, f"node: {k}")
            print(f"| {label} | {med[k]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
