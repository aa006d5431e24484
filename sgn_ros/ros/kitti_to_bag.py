# `sgn-ros kitti-to-bag`: a KITTI odometry sequence folder -> a rosbag2 (mcap or sqlite3).
#
# Same topics, frames and bytes as the live `kitti_player` (both use kitti_sequence.py), with
# dataset stamps (KITTI_EPOCH + times.txt), written by `rosbags` without a ROS installation and
# serialized with the typestore of a chosen distro, so `ros2 bag play --clock BAG` replays it on
# Humble/Jazzy/Kilted (mcap needs ros-humble-rosbag2-storage-mcap on Humble) and our
# `bag_player` replays it where `ros2 bag` is not installed.
"""Write a KITTI sequence as a rosbag2."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from tqdm import tqdm

from sgn_ros.ros.kitti_sequence import KittiMessageBuilder, KittiSequence, KittiStreams
from sgn_ros.ros.rosbag_io import DEFAULT_DISTRO, DISTROS, STORAGES, bag_qos, open_writer

log = logging.getLogger(__name__)


def write_bag(
    sequence_dir: str | Path,
    out: str | Path,
    storage: str = "mcap",
    start: int = 0,
    end: int | None = None,
    streams: KittiStreams | None = None,
    distro: str = DEFAULT_DISTRO,
    progress: bool = True,
) -> dict[str, int]:
    """Write frames [start, end) of `sequence_dir` as a rosbag2 folder `out`.

    Every message is stamped (header and bag time) with ``KITTI_EPOCH_NS + times[i]``;
    /tf_static is written once at the first frame's time with transient-local QoS.

    Returns:
        topic -> number of messages written.
    """
    seq = KittiSequence(sequence_dir)
    end = len(seq) if end is None or end < 0 else min(end, len(seq))
    if not 0 <= start < end:
        raise ValueError(f"kitti-to-bag: empty frame range [{start}, {end}) for {len(seq)} frames in {sequence_dir}")
    builder = KittiMessageBuilder(seq, streams=streams or KittiStreams(), distro=distro)
    counts: dict[str, int] = {}
    writer = open_writer(out, storage)
    ok = False
    try:
        conns = {
            topic: writer.add_connection(
                topic, msgtype, typestore=builder.store,
                offered_qos_profiles=[bag_qos(transient_local=topic == builder.topics.tf_static)],
            )
            for topic, msgtype in builder.topic_types().items()
        }

        def put(topic: str, data: bytes, stamp: int) -> None:
            writer.write(conns[topic], stamp, data)
            counts[topic] = counts.get(topic, 0) + 1

        for i in tqdm(range(start, end), desc=f"kitti-to-bag {Path(sequence_dir).name}", disable=not progress):
            stamp = builder.dataset_stamp_ns(i)
            if i == start and builder.streams.tf:
                topic, _, data = builder.static_tf_message(stamp)
                put(topic, data, stamp)
            for topic, _, data in builder.frame_messages(i, stamp):
                put(topic, data, stamp)
        ok = True
    finally:
        writer.close()
        if not ok:  # no half-written bag left behind
            shutil.rmtree(out, ignore_errors=True)
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sequence-dir", required=True, type=Path,
                        help="KITTI odometry sequence folder (.../dataset/sequences/NN)")
    parser.add_argument("--out", required=True, type=Path, help="rosbag2 folder to create (must not exist)")
    parser.add_argument("--storage", choices=STORAGES, default="mcap", help="rosbag2 storage plugin")
    parser.add_argument("--distro", choices=sorted(DISTROS), default=DEFAULT_DISTRO,
                        help="ROS 2 distro whose message definitions the bag records")
    parser.add_argument("--start", type=int, default=0, help="first frame")
    parser.add_argument("--end", type=int, default=-1, help="one past the last frame (-1: to the end)")
    for name, what in (("right", "right colour camera"), ("depth", "depth maps (depth/*.npy)"),
                       ("points", "velodyne point clouds"), ("odom", "odometry"), ("tf", "/tf and /tf_static")):
        parser.add_argument(f"--no-{name}", action="store_true", help=f"leave out the {what}")


def main(args: argparse.Namespace) -> int:
    streams = KittiStreams(right=not args.no_right, depth=not args.no_depth, points=not args.no_points,
                           odom=not args.no_odom, tf=not args.no_tf)
    counts = write_bag(args.sequence_dir, args.out, storage=args.storage, start=args.start, end=args.end,
                       streams=streams, distro=args.distro)
    width = max(map(len, counts))
    summary = "\n".join(f"  {t:<{width}}  {n:6d}" for t, n in sorted(counts.items()))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("wrote %s (%s):\n%s", args.out, args.storage, summary)
    return 0
