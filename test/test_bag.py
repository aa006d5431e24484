# Tests of the rosbag2 tools: `sgn-ros kitti-to-bag` (read back with rosbags, decoded with rclpy's
# deserializer, both storages), the bag_player node (a real process replaying to a subscriber
# here over DDS, bytes and timing checked) and BagRecorder (what it records reads back).
"""kitti-to-bag, bag_player and BagRecorder tests."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader

from sgn_ros.cli import main as cli_main
from sgn_ros.data.synth import generate_sequence
from sgn_ros.ros.decoders import camera_info_to_K, image_to_rgb
from sgn_ros.ros.kitti_sequence import KittiMessageBuilder, KittiSequence, KittiTopics
from sgn_ros.ros.processes import RosSession, ros_environment, start_node, stop_process
from sgn_ros.ros.rosbag_io import message_class

FRAMES = 5


@pytest.fixture(scope="module")
def sequence_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti_bag")
    return generate_sequence(root, sequence="00", frames=FRAMES, seed=5, depth=True, image_size=(64, 208))


@pytest.fixture(scope="module")
def mcap_bag(sequence_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bags") / "seq00"
    assert cli_main(["kitti-to-bag", "--sequence-dir", str(sequence_dir), "--out", str(out)]) == 0
    return out


def _read(bag):
    with Reader(bag) as reader:
        conns = {c.topic: c for c in reader.connections}
        msgs = [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]
    return conns, msgs


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_kitti_to_bag_reads_back(sequence_dir, mcap_bag, tmp_path, storage):
    if storage == "mcap":
        bag = mcap_bag
    else:
        bag = tmp_path / "seq00_sqlite"
        assert cli_main(["kitti-to-bag", "--sequence-dir", str(sequence_dir), "--out", str(bag),
                         "--storage", "sqlite3", "--start", "1", "--end", "3"]) == 0
    assert (bag / "metadata.yaml").is_file()
    assert list(bag.glob("*.mcap" if storage == "mcap" else "*.db3"))
    conns, msgs = _read(bag)
    seq = KittiSequence(sequence_dir)
    builder = KittiMessageBuilder(seq)
    frames = range(FRAMES) if storage == "mcap" else range(1, 3)
    t = KittiTopics()
    assert set(conns) == set(builder.topic_types())
    counts = {topic: sum(1 for m in msgs if m[0] == topic) for topic in conns}
    assert counts[t.tf_static] == 1 and counts[t.left_image] == counts[t.odom] == len(frames)
    assert all(c.msgdef.data for c in conns.values())  # definitions stored: `ros2 bag play` needs them
    images = [m for m in msgs if m[0] == t.left_image]
    for (_, msgtype, stamp, raw), i in zip(images, frames):
        msg = deserialize_message(raw, message_class(msgtype))  # rclpy's own CDR reader
        assert stamp == builder.dataset_stamp_ns(i)
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp
        np.testing.assert_array_equal(image_to_rgb(msg), seq.left_image(i))
    info_cdr = next(m[3] for m in msgs if m[0] == t.left_info)
    info = deserialize_message(info_cdr, message_class("sensor_msgs/msg/CameraInfo"))
    np.testing.assert_allclose(camera_info_to_K(info), seq.k_left)
    stamps = [m[2] for m in msgs]
    assert stamps == sorted(stamps)


def test_kitti_to_bag_refuses_existing_output(sequence_dir, mcap_bag):
    with pytest.raises(FileExistsError, match="already exists"):
        cli_main(["kitti-to-bag", "--sequence-dir", str(sequence_dir), "--out", str(mcap_bag)])


@pytest.mark.ros
def test_bag_player_replays_over_dds(mcap_bag):
    """bag_player (own process, x2 speed, /clock) -> raw subscriber here: same bytes, same order, timing."""
    env = ros_environment()
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    t = KittiTopics()
    _, msgs = _read(mcap_bag)
    recorded = [m for m in msgs if m[0] == t.left_image]
    session = RosSession("test_bag_player", int(env["ROS_DOMAIN_ID"]))
    node, executor = session.node, session.executor
    got, clocks = [], []
    # (source timestamp ns = when bag_player published it, bytes); a 2-argument callback gets the info
    node.create_subscription(Image, t.left_image, lambda raw, info: got.append((info["source_timestamp"], raw)),
                             10, raw=True)
    node.create_subscription(Clock, "/clock", clocks.append, 50)
    proc = start_node("sgn_ros.ros.bag_player", env, params={
        "bag": str(mcap_bag), "rate": 2.0, "publish_clock": True, "wait_for_subscribers": 1,
        "wait_topic": t.left_image,
    })
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
        for _ in range(20):
            executor.spin_once(timeout_sec=0.02)
        out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
        assert proc.returncode == 0, out
    finally:
        stop_process(proc)
        session.close()
    assert [raw for _, raw in got] == [m[3] for m in recorded]
    # recorded spacing / rate: 4 gaps of 0.1 s at x2 -> 0.2 s (loose: 2 shared CPU cores)
    span = (got[-1][0] - got[0][0]) / 1e9
    expected = (recorded[-1][2] - recorded[0][2]) / 1e9 / 2.0
    assert expected * 0.7 < span < expected + 0.5, (span, expected)
    clock_ns = [c.clock.sec * 10**9 + c.clock.nanosec for c in clocks]
    assert clock_ns == sorted(clock_ns) and clock_ns[-1] == msgs[-1][2]


@pytest.mark.ros
def test_bag_recorder_round_trip(sequence_dir, tmp_path):
    """kitti_player process -> BagRecorder here -> the bag holds exactly what was published."""
    from sgn_ros.ros.bag_recorder import BagRecorder

    env = ros_environment()
    t = KittiTopics()
    session = RosSession("test_bag_recorder", int(env["ROS_DOMAIN_ID"]))
    node, executor = session.node, session.executor
    out = tmp_path / "recorded"
    recorder = BagRecorder(node, out, {t.left_image: "sensor_msgs/msg/Image", t.odom: "nav_msgs/msg/Odometry"})
    proc = start_node("sgn_ros.ros.kitti_player", env, params={
        "sequence_dir": str(sequence_dir), "rate_hz": 20.0, "dataset_stamps": True, "wait_for_subscribers": 1,
    })
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.02)
        for _ in range(20):
            executor.spin_once(timeout_sec=0.02)
        recorder.close()
        assert proc.returncode == 0
    finally:
        stop_process(proc)
        session.close()
    assert recorder.counts == {t.left_image: FRAMES, t.odom: FRAMES}
    builder = KittiMessageBuilder(KittiSequence(sequence_dir))
    _, msgs = _read(out)
    images = [m[3] for m in msgs if m[0] == t.left_image]
    expected = [builder.frame_messages(i, builder.dataset_stamp_ns(i))[0][2] for i in range(FRAMES)]
    assert images == expected  # byte-identical to what kitti_sequence builds
