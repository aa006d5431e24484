# TFListener over real DDS: another process publishes a transform tree on /tf_static (latched,
# through StaticTransformPublisher) and /tf (a moving odom -> base_link), and a listener here looks
# up camera -> grid and odom -> grid at stamps between the published ones. A second test takes the
# tree from a kitti_player process (its /tf_static and /tf, KITTI's frame names). Without tf2_ros
# (the PyPI wheels) this exercises sgn_ros's own backend; on a ROS installation, tf2_ros'.
"""TFListener / StaticTransformPublisher tests (two processes over DDS)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sgn_ros.ros.processes import RosSession, ros_environment, start_node, stop_process
from sgn_ros.ros.tf_buffer import ExtrapolationError, UnknownFrameError

pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built: run scripts/build_ros.sh")
from sgn_ros.ros.tf_listener import TFListener  # noqa: E402  (needs tf2_msgs)

EPOCH = 1_000 * 10**9
STEP = 50_000_000  # /tf every 50 ms of stamp time

# The publisher process: static base_link -> camera and base_link -> sgn_grid, then odom ->
# base_link along a known motion (the same formulas as _odom_base below), 40 samples.
PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import rclpy
    from tf2_msgs.msg import TFMessage
    from sgn_ros.ros.tf_listener import StaticTransformPublisher, matrix_to_transform_stamped, tf_qos
    sys.path.insert(0, sys.argv[1])
    from test_tf_listener import EPOCH, STEP, CAMERA, GRID, _odom_base

    rclpy.init()
    node = rclpy.create_node("tf_publisher")
    static = StaticTransformPublisher(node)
    static.send("base_link", "camera", CAMERA)
    static.send("base_link", "sgn_grid", GRID)
    pub = node.create_publisher(TFMessage, "/tf", tf_qos(False))
    print("static sent", flush=True)
    while pub.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.3)
    for k in range(40):
        stamp = EPOCH + k * STEP
        pub.publish(TFMessage(transforms=[matrix_to_transform_stamped("odom", "base_link", stamp, _odom_base(stamp))]))
        rclpy.spin_once(node, timeout_sec=0.01)
    print("done", flush=True)
    while rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.1)
    """
)


def _rt(yaw: float, pitch: float, t) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    T = np.eye(4)
    T[:3, :3] = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]]) @ np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    T[:3, 3] = t
    return T


CAMERA = _rt(-np.pi / 2, 0.3, [1.2, 0.1, 1.6]) @ _rt(0.0, -np.pi / 2, [0, 0, 0])  # optical frame, tilted
GRID = _rt(0.0, 0.0, [0.3, 0.0, 1.7])  # the grid frame: a LiDAR-like frame on the roof


def _odom_base(stamp_ns: int) -> np.ndarray:
    """Constant speed and yaw rate: linear interpolation + slerp between samples are exact."""
    t = (stamp_ns - EPOCH) / 1e9
    return _rt(0.1 + 0.4 * t, 0.0, [2.0 + 3.0 * t, -1.0 + 0.5 * t, 0.2])


@pytest.fixture
def ros():
    """(environment of a private DDS domain, a RosSession here on it); torn down after."""
    env = ros_environment()
    with RosSession("test_tf_listener", int(env["ROS_DOMAIN_ID"])) as session:
        yield env, session


@pytest.mark.ros
def test_listener_looks_up_static_and_moving_transforms_over_dds(ros) -> None:
    env, session = ros
    proc = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, str(Path(__file__).parent)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        first = proc.stdout.readline().decode()
        assert "static sent" in first, first + proc.stdout.read().decode(errors="replace")
        # created after the static tree was published: transient-local QoS must still deliver it
        tf = TFListener(session.node, reset_threshold_s=2.0)
        last = EPOCH + 39 * STEP
        assert session.spin_until(lambda: tf.can_transform("odom", "sgn_grid", last), 30.0, 0.02), tf.last_error
        assert tf.backend in ("sgn_ros", "tf2_ros")
        # camera -> grid: static chain camera -> base_link -> sgn_grid, at any stamp
        expected = np.linalg.inv(GRID) @ CAMERA
        np.testing.assert_allclose(tf.lookup("sgn_grid", "camera", EPOCH + 123), expected, atol=1e-9)
        # odom -> grid between two /tf samples: interpolated
        for stamp in (EPOCH + 7 * STEP + STEP // 3, EPOCH + 20 * STEP, last):
            np.testing.assert_allclose(tf.lookup("odom", "sgn_grid", stamp), _odom_base(stamp) @ GRID, atol=1e-7)
        with pytest.raises(ExtrapolationError, match="'sgn_grid' to 'odom'"):
            tf.lookup("odom", "sgn_grid", last + 10 * STEP)  # after the newest /tf: stale
        with pytest.raises(UnknownFrameError, match="'map'"):
            tf.lookup("map", "sgn_grid", last)
        if tf.backend == "sgn_ros":
            assert tf.received == 40 + 2 and tf.malformed == 0
        tf.close()
    finally:
        stop_process(proc)


@pytest.mark.ros
def test_listener_reads_kitti_player_tree(ros, tmp_path) -> None:
    """camera -> LiDAR (the default grid frame) and odom -> LiDAR from a kitti_player process."""
    from sgn_ros.data.synth import generate_sequence
    from sgn_ros.ros.kitti_sequence import KittiMessageBuilder, KittiSequence

    seq_dir = generate_sequence(tmp_path, sequence="00", frames=4, seed=2, depth=False, image_size=(32, 96))
    seq = KittiSequence(seq_dir)
    builder = KittiMessageBuilder(seq)
    env, session = ros
    tf = TFListener(session.node)
    proc = start_node("sgn_ros.ros.kitti_player", env, params={
        # looping: /tf is volatile, so frames sent before discovery completes are lost for good
        "sequence_dir": str(seq_dir), "dataset_stamps": True, "rate_hz": 20.0, "exit_when_done": False,
        "wait_for_subscribers": 0, "loop": True,
    })
    try:
        stamps = [builder.dataset_stamp_ns(i) for i in range(4)]
        poses = seq.lidar_poses()
        # The listener joins the looping player anywhere: after frame 3 and the next loop's frame 0
        # it holds those two samples and interpolates frames 1 and 2 between them (as tf2 would).
        # So wait for the samples themselves: until the looked-up poses are the sequence's. Lookups
        # that never become right (a wrong chain, lost samples) time out here.
        seen: dict[int, np.ndarray] = {}

        def exact() -> bool:
            for i in (1, 3):
                if not tf.can_transform("odom", "velo_link", stamps[i]):
                    return False
                seen[i] = tf.lookup("odom", "velo_link", stamps[i])
            return all(np.allclose(seen[i], poses[i], rtol=0.0, atol=1e-6) for i in (1, 3))

        ok = session.spin_until(exact, 40.0, 0.02)
        player = proc.stdout.read().decode(errors="replace") if not ok and proc.poll() is not None else ""
        assert ok, f"odom -> velo_link looked up {seen}, expected {[poses[1], poses[3]]}; {tf.last_error} {player}"
        np.testing.assert_allclose(
            tf.lookup("velo_link", "camera_color_left", stamps[2]), np.linalg.inv(seq.lidar_to_camera("left")),
            atol=1e-9,
        )
        tf.close()
    finally:
        stop_process(proc)


@pytest.mark.ros
def test_own_backend_time_reset_and_malformed_transforms(ros) -> None:
    """Bag loop on /tf: dynamic transforms are forgotten, the static tree stays; a zero quaternion
    is counted and skipped, the rest of its message is kept."""
    from tf2_msgs.msg import TFMessage

    from sgn_ros.ros.tf_listener import matrix_to_transform_stamped

    _, session = ros
    tf = TFListener(session.node, reset_threshold_s=2.0, use_tf2_ros=False)
    tf._on_tf(TFMessage(transforms=[matrix_to_transform_stamped("base_link", "camera", 0, CAMERA)]), True)
    for k in range(3):
        stamp = EPOCH + 10 * 10**9 + k * STEP
        tf._on_tf(TFMessage(transforms=[matrix_to_transform_stamped("odom", "base_link", stamp,
                                                                    _odom_base(stamp))]), False)
    assert tf.can_transform("odom", "camera", EPOCH + 10 * 10**9 + STEP)
    bad = matrix_to_transform_stamped("odom", "other", EPOCH, np.eye(4))
    bad.transform.rotation.w = 0.0
    good = matrix_to_transform_stamped("odom", "base_link", EPOCH, _odom_base(EPOCH))
    tf._on_tf(TFMessage(transforms=[bad, good]), False)  # 10 s back: the bag started again
    assert tf.time_resets == 1 and tf.malformed == 1 and "quaternion" in tf.last_error
    assert not tf.can_transform("odom", "camera", EPOCH + 10 * 10**9 + STEP)  # old data forgotten
    np.testing.assert_allclose(tf.lookup("odom", "camera", EPOCH), _odom_base(EPOCH) @ CAMERA, atol=1e-9)
    tf.close()


@pytest.mark.ros
def test_tf_from_a_rosbags_bag_deserialises_with_the_built_tf2_msgs(tmp_path) -> None:
    """A bag written by rosbags (kitti-to-bag) with /tf and /tf_static: rclpy deserialises its
    TFMessages with the tf2_msgs built here, and the tree they give is the sequence's."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from tf2_msgs.msg import TFMessage

    from sgn_ros.cli import main as cli_main
    from sgn_ros.data.synth import generate_sequence
    from sgn_ros.ros.kitti_sequence import KittiSequence
    from sgn_ros.ros.tf_buffer import TransformBuffer
    from sgn_ros.ros.tf_listener import add_transform_stamped, stamp_ns

    seq_dir = generate_sequence(tmp_path, sequence="00", frames=3, seed=4, depth=False, image_size=(32, 96))
    bag = tmp_path / "bag"
    assert cli_main(["kitti-to-bag", "--sequence-dir", str(seq_dir), "--out", str(bag)]) == 0
    buf, stamps = TransformBuffer(), []
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic in ("/tf", "/tf_static")]
        assert {c.msgtype for c in conns} == {"tf2_msgs/msg/TFMessage"}
        for c, _, raw in reader.messages(connections=conns):
            for ts in deserialize_message(bytes(raw), TFMessage).transforms:
                assert add_transform_stamped(buf, ts, static=c.topic == "/tf_static")
                stamps += [stamp_ns(ts)] if c.topic == "/tf" else []
    seq = KittiSequence(seq_dir)
    assert len(stamps) == 3
    np.testing.assert_allclose(buf.lookup("velo_link", "camera_color_left", stamps[1]),
                               np.linalg.inv(seq.lidar_to_camera("left")), atol=1e-9)
    np.testing.assert_allclose(buf.lookup("odom", "velo_link", stamps[2]), seq.lidar_poses()[2], atol=1e-9)
