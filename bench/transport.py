#!/usr/bin/env python3
# How long a multi-megabyte message takes from one process to another over Fast DDS, per transport
# set-up: the sizes sgn_node moves every frame (a KITTI image 1.4 MB in; PointCloud2 / MarkerArray /
# SemanticVoxelGrid of a 100k-200k voxel scene, 2.5-4.6 MB each, out).
# Each row starts two fresh processes of this script on a private localhost domain: a publisher
# that sends --count messages of the size (serialized bytes, reliable, depth 10; 0.25 s apart, so
# each is alone on the wire) with its send time inside, and a raw subscriber that notes the
# arrival; latency = arrival - send (CLOCK_MONOTONIC is system-wide). Set-ups:
#   builtin      Fast DDS's builtin transports (UDPv4 + SHM with its 512 KiB segment)
#   LARGE_DATA   FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (UDP discovery, TCP + SHM data)
#   profile      config/fastdds_profile.xml (SHM with a 32 MiB segment + UDPv4), what sgn_ros uses
# each with glibc's default allocator and with `sgn_ros.allocator.keep_heap()` in both processes.
# Run: source scripts/ros_env.sh && python bench/transport.py [--sizes 1.4,4.2] [--count 10]
"""Process-to-process latency of large messages per Fast DDS transport set-up."""

from __future__ import annotations

import argparse
import os
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETUPS = ("builtin", "LARGE_DATA", "profile")


def _env(setup: str, keep_heap: bool, domain: int) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS"):
        env.pop(k, None)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               SGN_ROS_KEEP_HEAP="1" if keep_heap else "0", PYTHONPATH=str(ROOT))
    if setup == "LARGE_DATA":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    elif setup == "profile":
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(ROOT / "config" / "fastdds_profile.xml")
    return env


def _child(role: str, size: int, count: int) -> int:
    """One side of a measurement; the subscriber prints its latencies (ms) on one line."""
    from sgn_ros.allocator import keep_heap

    keep_heap()  # does nothing with SGN_ROS_KEEP_HEAP=0
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import UInt8MultiArray

    from sgn_ros.ros.processes import RosSession

    session = RosSession(f"transport_{role}_{os.getpid()}")  # ROS_DOMAIN_ID from _env
    node = session.node
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    try:
        if role == "pub":
            pub = node.create_publisher(UInt8MultiArray, "transport_bench", qos)
            end = time.monotonic() + 30.0
            while pub.get_subscription_count() == 0 and time.monotonic() < end:
                session.spin_once(0.05)
            time.sleep(1.0)  # discovery settled on both sides
            buf = bytearray(size)
            buf[0:4] = b"\x00\x01\x00\x00"  # CDR little-endian; a valid UInt8MultiArray: empty layout,
            struct.pack_into("<II", buf, 4, 0, 0)  # no dims, offset 0, then data[] (count + bytes)
            struct.pack_into("<I", buf, 12, size - 16)
            calls = []
            for _ in range(count + 1):  # the first is a warm-up
                struct.pack_into("<d", buf, 16, time.monotonic())
                t0 = time.perf_counter()
                pub.publish(bytes(buf))
                calls.append(1000.0 * (time.perf_counter() - t0))
                time.sleep(0.25)
            print(" ".join(f"{v:.3f}" for v in calls[1:]), flush=True)
            time.sleep(1.0)
        else:
            lat: list[float] = []
            node.create_subscription(UInt8MultiArray, "transport_bench",
                                     lambda raw: lat.append(time.monotonic() - struct.unpack_from("<d", raw, 16)[0]),
                                     qos, raw=True)
            end = time.monotonic() + 60.0
            while len(lat) < count + 1 and time.monotonic() < end:
                session.spin_once(0.05)
            print(" ".join(f"{1000.0 * v:.3f}" for v in lat[1:]), flush=True)
    finally:
        session.close()
    return 0


def measure(setup: str, keep_heap: bool, size: int, count: int) -> tuple[list[float], list[float]]:
    """(latencies ms, publish() call ms) of one set-up and size."""
    env = _env(setup, keep_heap, random.randint(101, 200))
    cmd = [sys.executable, __file__, "--child"]
    sub = subprocess.Popen([*cmd, "sub", str(size), str(count)], env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    pub = subprocess.run([*cmd, "pub", str(size), str(count)], env=env, stdout=subprocess.PIPE, text=True,
                         timeout=120, check=False)
    out, _ = sub.communicate(timeout=120)

    def floats(text: str) -> list[float]:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return [float(v) for v in lines[-1].split()] if lines else []

    return floats(out), floats(pub.stdout)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1.4,4.2", help="message sizes, MB, comma-separated")
    ap.add_argument("--count", type=int, default=10, help="messages per row (after one warm-up)")
    ap.add_argument("--setups", default=",".join(SETUPS), help=f"subset of {SETUPS}")
    args = ap.parse_args()
    sizes = [int(float(s) * 1e6) for s in args.sizes.split(",")]
    setups = [s for s in args.setups.split(",") if s]
    if args.count < 1 or any(s not in SETUPS for s in setups) or any(s < 64 for s in sizes):
        print(f"transport: --count >= 1, --setups from {SETUPS}, sizes of at least 64 bytes", file=sys.stderr)
        return 2
    print(f"# Fast DDS, one publisher process -> one raw subscriber process, reliable; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}\n")
    print("| set-up | heap kept | size MB | received | latency p50 ms | latency max ms | publish() p50 ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for setup in setups:
        for keep in (False, True):
            for size in sizes:
                lat, calls = measure(setup, keep, size, args.count)
                p50 = f"{np.median(lat):.1f}" if lat else "-"
                mx = f"{np.max(lat):.1f}" if lat else "-"
                call = f"{np.median(calls):.1f}" if calls else "-"
                print(f"| {setup} | {'yes' if keep else 'no'} | {size / 1e6:.1f} | {len(lat)} of {args.count} | "
                      f"{p50} | {mx} | {call} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
