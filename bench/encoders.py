#!/usr/bin/env python3
# What each output of sgn_node costs, build + serialization, on a full 256 x 256 x 32 prediction:
# the message objects of sgn_ros.ros.encoders.prediction_to_* (then serialize_message, as publish()
# of an object does) versus the bytes of encoders.encode_outputs / sgn_ros.ros.wire written
# directly, which publish() sends as they are: by its NumPy passes and by its native ones (the C
# extension sgn_ros.ros._cdr_fill, what the node uses; both give the same bytes, checked here).
# The process keeps its heap as sgn_node does (sgn_ros.allocator).
# Three scenes: the node_overhead bench's random ~5 % occupied grid (~105k voxels), a synthetic
# street (sgn_ros.data.synth ground truth: solid ground and buildings) where the markers' free-face
# filter matters, and the network's own prediction on node_rate.py's full-size frame (~190k voxels).
# Last, publishing wire's bytes through Fast DDS to a subscriber in this process: rclpy's publish
# and rcl directly (sgn_ros.ros.rcl_publish), with how long another Python thread waits meanwhile.
# Times: median / minimum wall time and median CPU time of --repeat runs (this machine is shared:
# the wall-time medians wander with the load, the CPU times much less).
# Run: source scripts/ros_env.sh && python bench/encoders.py [--repeat 15] [--no-dds]
"""Benchmark of the prediction outputs: message objects versus wire (CDR bytes)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import numpy as np


def _times_ms(fn: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """Median and minimum wall time, and median CPU time of this process (what the call costs
    without the waiting for a core that a loaded machine adds), milliseconds."""
    fn()  # warm-up (tables, caches, imports)
    t, cpu = [], []
    for _ in range(repeat):
        s, c = time.perf_counter(), time.process_time()
        fn()
        t.append(time.perf_counter() - s)
        cpu.append(time.process_time() - c)
    return 1000.0 * float(np.median(t)), 1000.0 * float(np.min(t)), 1000.0 * float(np.median(cpu))


def random_scene(grid, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """As bench/node_overhead.py: ~5 % of the voxels occupied by random classes."""
    rng = np.random.default_rng(0)
    labels = np.zeros(grid.dims, np.uint8)
    occ = rng.random(grid.dims) < 0.05
    labels[occ] = rng.integers(1, num_classes, int(occ.sum()))
    return labels, rng.random(grid.dims).astype(np.float32)


def street_scene(grid, label_set) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth voxels of frame 0 of the synthetic world (seed 0), in training ids."""
    from sgn_ros.data.synth import SynthWorld
    from sgn_ros.data.synth.voxelize import label_voxels

    world = SynthWorld.generate(0, 1)
    raw, _, _ = label_voxels(world, world.scene_at(world.frame_time(0)), world.lidar_pose(0), grid)
    conf = np.random.default_rng(1).random(grid.dims).astype(np.float32)
    return label_set.to_train_ids(raw), conf


def network_scene() -> tuple[np.ndarray, np.ndarray]:
    """What sgn-l-synth (the bundled weights) predicts on bench/node_rate.py's full-size frame: the
    labels and confidence the node encodes in that benchmark (~190k clustered voxels)."""
    from node_rate import FULL_HW, FULL_K, Frames

    from sgn_ros.model.predictor import SSCPredictor

    predictor = SSCPredictor("sgn-l-synth", device="cpu")
    frames = Frames(FULL_HW, FULL_K, predictor.grid)
    lidar_to_cam = np.eye(4)
    lidar_to_cam[:3, :3] = [[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]
    lidar_to_cam[1, 3] = 1.7
    pred = predictor.predict(frames.left, frames.K, lidar_to_cam, points=frames.points)
    return pred.labels, pred.confidence


def bench_scene(name: str, labels: np.ndarray, conf: np.ndarray, repeat: int) -> list[tuple]:
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from sgn_ros.grid import DEFAULT_GRID as grid
    from sgn_ros.labels import load_label_set
    from sgn_ros.model.predictor import SSCPrediction
    from sgn_ros.ros import encoders as enc
    from sgn_ros.ros import wire

    ls = load_label_set("semantickitti")
    header = Header(frame_id="sgn_grid")
    stamp = (header.stamp.sec, header.stamp.nanosec)
    occupied = int(np.count_nonzero((labels != 0) & (labels != 255)))
    cache = enc.MarkerPointCache(grid)
    pred = SSCPrediction(labels, conf, grid)
    opts = enc.OutputOptions(ls.colors_rgb, ls.names)
    rows = []

    def row(output, old, new, note=""):
        """`new(native)`: the wire bytes by the NumPy passes (False) and the native ones (True)."""
        o = _times_ms(old, repeat) if old is not None else None
        n, c = _times_ms(lambda: new(False), repeat), _times_ms(lambda: new(True), repeat)
        assert new(False) == new(True), f"{output}: the native bytes differ"
        rows.append((name, occupied, output, o, n, c, len(new(True)), note))

    row("PointCloud2",
        lambda: serialize_message(enc.prediction_to_pointcloud2(pred, opts, header)),
        lambda nat: wire.pointcloud2_bytes(labels, grid, ls.colors_rgb, stamp, "sgn_grid", conf, native=nat))
    row("SemanticVoxelGrid",
        lambda: serialize_message(enc.prediction_to_voxel_grid(pred, opts, header)),
        lambda nat: wire.voxel_grid_bytes(labels, grid, ls.names, ls.colors_rgb, stamp, "sgn_grid", conf, native=nat))
    row("MarkerArray",
        lambda: serialize_message(enc.prediction_to_marker_array(pred, opts, header, cache=cache)[0]),
        lambda nat: wire.marker_array_bytes(labels, grid, ls.colors_rgb, stamp, "sgn_grid", conf, native=nat)[0],
        "objects: Point objects cached")

    def all_three(nat):
        out, _ = enc.encode_outputs(pred, opts, stamp, "sgn_grid", native=nat)
        return b"".join(out.values())

    def all_three_today():
        serialize_message(enc.prediction_to_pointcloud2(pred, opts, header))
        serialize_message(enc.prediction_to_marker_array(pred, opts, header, cache=cache)[0])
        return serialize_message(enc.prediction_to_voxel_grid(pred, opts, header))

    row("all three", all_three_today, all_three, "encode_outputs, one thread")
    surface = len(wire.occupied_voxels(labels, grid, conf, surface_only=True)[0])
    row("MarkerArray, surface_only", None,
        lambda nat: wire.marker_array_bytes(labels, grid, ls.colors_rgb, stamp, "sgn_grid", conf, surface_only=True,
                                            native=nat)[0],
        f"{surface} cubes with a free face")
    occupied_mask = wire._keep_mask(labels, None, 0.0)
    for surf, what in ((False, "occupied"), (True, "free-face")):
        _, lengths = wire.runs(wire.surface_mask(occupied_mask) if surf else occupied_mask, labels)
        boxes = sum(bin(n).count("1") for n in lengths.tolist())  # one box per binary digit of a run's length
        row(f"MarkerArray, merge_runs{', surface_only' if surf else ''}", None,
            lambda nat, surf=surf: wire.marker_array_bytes(labels, grid, ls.colors_rgb, stamp, "sgn_grid", conf,
                                                           surface_only=surf, native=nat, merge_runs=True)[0],
            f"{len(lengths)} runs of {what} voxels along x: {boxes} boxes")
    return rows


def _gil_wait_ms(publish: Callable[[], object], repeat: int) -> float:
    """Longest wait of another Python thread while `publish` runs `repeat` times (a ticker thread
    notes the time as often as it can; the switch interval is 0.1 ms meanwhile): about the whole
    call where the call holds the GIL, near 0 where it releases it."""
    import threading

    done, ticks = threading.Event(), []

    def ticker() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    t = threading.Thread(target=ticker)
    t.start()
    try:
        time.sleep(0.01)
        for _ in range(repeat):
            publish()
    finally:
        done.set()
        t.join()
        sys.setswitchinterval(old)
    return 1000 * float(np.max(np.diff(ticks))) if len(ticks) > 1 else float("nan")


def bench_dds(repeat: int) -> list[tuple[str, str, float, float, float, int]]:
    """publish(bytes) time of each output, one subscriber in the same process (through Fast DDS):
    rclpy's Publisher.publish and sgn_ros.ros.rcl_publish (rcl directly, what sgn_node uses), each
    with the longest wait it imposes on another Python thread (`_gil_wait_ms`)."""
    from sensor_msgs.msg import PointCloud2
    from sgn_ros.msg import SemanticVoxelGrid
    from visualization_msgs.msg import MarkerArray

    from sgn_ros.grid import DEFAULT_GRID as grid
    from sgn_ros.labels import load_label_set
    from sgn_ros.ros import wire
    from sgn_ros.ros.processes import RosSession
    from sgn_ros.ros.rcl_publish import SerializedPublisher

    ls = load_label_set("semantickitti")
    labels, conf = random_scene(grid, ls.num_classes)
    data = {
        "PointCloud2": (PointCloud2, wire.pointcloud2_bytes(labels, grid, ls.colors_rgb, (0, 0), "g", conf)),
        "SemanticVoxelGrid": (SemanticVoxelGrid,
                              wire.voxel_grid_bytes(labels, grid, ls.names, ls.colors_rgb, (0, 0), "g", conf)),
        "MarkerArray": (MarkerArray, wire.marker_array_bytes(labels, grid, ls.colors_rgb, (0, 0), "g", conf)[0]),
    }
    out = []
    with RosSession("bench_encoders", int(os.environ.get("ROS_DOMAIN_ID", "57"))) as session:
        node = session.node
        for name, (typ, raw) in data.items():
            got = []
            pub = node.create_publisher(typ, f"bench/{name}", 5)
            node.create_subscription(typ, f"bench/{name}", got.append, 5, raw=True)
            end = time.monotonic() + 10
            while pub.get_subscription_count() < 1 and time.monotonic() < end:
                session.spin_once(0.05)
            for how, send in (("rclpy", pub.publish), ("rcl direct", SerializedPublisher(pub, native=True).publish)):
                got.clear()
                times = []
                for _ in range(repeat):
                    s = time.perf_counter()
                    send(raw)
                    times.append(time.perf_counter() - s)
                    session.spin_once(0.5)
                received = len(got)
                wait = _gil_wait_ms(lambda send=send, raw=raw: send(raw), 5)
                for _ in range(10):
                    session.spin_once(0.05)
                out.append((name, how, 1000 * float(np.median(times)), 1000 * float(np.min(times)), wait, received))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--no-street", action="store_true", help="skip the synthetic street scene")
    ap.add_argument("--no-network", action="store_true",
                    help="skip the network's own prediction (sgn-l-synth on node_rate's frame; ~10 s to make)")
    ap.add_argument("--no-dds", action="store_true", help="skip publishing through Fast DDS")
    args = ap.parse_args()

    from sgn_ros.allocator import keep_heap
    from sgn_ros.grid import DEFAULT_GRID

    keep_heap()  # as sgn_node: megabyte buffers reused, not page-faulted in again
    from sgn_ros.labels import load_label_set

    ls = load_label_set("semantickitti")
    print(f"# prediction outputs, build + serialize, {DEFAULT_GRID.dims} grid ({os.uname().machine}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}), ms: wall median / wall min / CPU median "
          f"of {args.repeat}\n")
    rows = bench_scene("random 5 %", *random_scene(DEFAULT_GRID, ls.num_classes), args.repeat)
    if not args.no_street:
        rows += bench_scene("synthetic street", *street_scene(DEFAULT_GRID, ls), args.repeat)
    if not args.no_network:
        rows += bench_scene("network prediction", *network_scene(), args.repeat)
    print("| scene | occupied | output | message objects: prediction_to_* + serialize_message "
          "| wire bytes, NumPy passes | wire bytes, native passes | speed-up (CPU, objects / native) | MiB | note |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    for scene, occ, output, old, numpy_t, native_t, size, note in rows:
        o = " / ".join(f"{v:.1f}" for v in old) if old is not None else "-"
        x = f"{old[2] / native_t[2]:.0f}x" if old is not None else "-"
        a, b = (" / ".join(f"{v:.1f}" for v in t) for t in (numpy_t, native_t))
        print(f"| {scene} | {occ} | {output} | {o} | {a} | {b} | {x} | {size / 2**20:.2f} | {note} |")
    if not args.no_dds:
        print("\n| publish(wire bytes), subscriber in this process | through | ms median / min | "
              "another Python thread waits up to, ms | received |")
        print("|---|---|---:|---:|---:|")
        for name, how, med, mn, wait, got in bench_dds(args.repeat):
            print(f"| {name} | {how} | {med:.1f} / {mn:.1f} | {wait:.1f} | {got} of {args.repeat} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
