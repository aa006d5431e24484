# Tests of the KITTI replay messages (sgn_ros/ros/kitti_sequence.py) and the live kitti_player
# node, on a small synthetic KITTI sequence. The messages are built with rosbags' typestore and
# decoded here with rclpy's own deserializer and rosbags-image, so a layout mistake shows up; the
# player runs as a real separate process and is heard over DDS.
"""kitti_sequence + kitti_player tests."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy.serialization import deserialize_message

from sgn_ros.data import kitti_io
from sgn_ros.data.synth import generate_sequence
from sgn_ros.ros.decoders import camera_info_baseline, camera_info_to_K, image_to_rgb, pose_to_matrix
from sgn_ros.ros.kitti_sequence import (
    KITTI_EPOCH_NS,
    KittiMessageBuilder,
    KittiSequence,
    KittiStreams,
    KittiTopics,
)
from sgn_ros.ros.processes import RosSession, ros_environment, start_node, stop_process
from sgn_ros.ros.rosbag_io import message_class

IMAGE_SIZE = (64, 208)  # (H, W): small synthetic frames keep the tests fast


@pytest.fixture(scope="module")
def sequence_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti_replay")
    return generate_sequence(root, sequence="00", frames=6, seed=3, depth=True, image_size=IMAGE_SIZE)


def _decode(topic_msgs):
    """(topic, msgtype, cdr) list -> {topic: rclpy message} via rclpy's deserializer."""
    out = {}
    for topic, msgtype, data in topic_msgs:
        try:
            out[topic] = deserialize_message(data, message_class(msgtype))
        except ImportError:  # tf2_msgs: no wheel; checked with rosbags below
            out[topic] = None
    return out


def test_sequence_geometry(sequence_dir):
    seq = KittiSequence(sequence_dir)
    calib = kitti_io.read_calib(sequence_dir / "calib.txt")
    assert len(seq) == 6 and seq.image_size == IMAGE_SIZE
    # KITTI convention: P = K [I | t]; colour cameras 0.54 m apart (synthetic world: KITTI-like values)
    assert seq.baseline == pytest.approx((calib["P2"][0, 3] - calib["P3"][0, 3]) / calib["P2"][0, 0], rel=1e-9)
    assert 0.4 < seq.baseline < 0.7
    # a LiDAR point projects with K [lidar_to_camera] exactly as with P2 @ Tr
    pts = np.array([[10.0, 1.0, 0.5, 1.0], [30.0, -4.0, 1.0, 1.0]])
    via_p2 = (calib["P2"] @ calib["Tr"] @ pts.T).T
    via_k = (seq.k_left @ (seq.lidar_to_camera("left") @ pts.T)[:3]).T
    np.testing.assert_allclose(via_k[:, :2] / via_k[:, 2:], via_p2[:, :2] / via_p2[:, 2:], rtol=1e-9)
    poses = seq.lidar_poses()
    np.testing.assert_allclose(poses, kitti_io.lidar_poses(kitti_io.read_poses(sequence_dir / "poses.txt"),
                                                           calib["Tr"]))


def test_frame_messages_decode(sequence_dir):
    seq = KittiSequence(sequence_dir)
    builder = KittiMessageBuilder(seq)
    stamp = builder.dataset_stamp_ns(2)
    assert stamp == KITTI_EPOCH_NS + round(seq.times[2] * 1e9)
    raw = builder.frame_messages(2, stamp)
    assert {t for t, _, _ in raw} == set(builder.topic_types()) - {builder.topics.tf_static}
    msgs = _decode(raw)
    t = builder.topics
    left, right = msgs[t.left_image], msgs[t.right_image]
    assert left.encoding == "rgb8" and left.header.frame_id == "camera_color_left"
    assert left.header.stamp.sec * 10**9 + left.header.stamp.nanosec == stamp
    np.testing.assert_array_equal(image_to_rgb(left), seq.left_image(2))
    np.testing.assert_array_equal(image_to_rgb(right), seq.right_image(2))
    # independent decoder: rosbags-image on the typestore message
    from rosbags.image import message_to_cvimage

    ts_img = builder.store.deserialize_cdr(raw[0][2], "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(message_to_cvimage(ts_img, "rgb8"), seq.left_image(2))
    # camera_info: K from P2/P3; the stereo baseline recovered the ROS way from P
    np.testing.assert_allclose(camera_info_to_K(msgs[t.left_info]), seq.k_left)
    np.testing.assert_allclose(camera_info_to_K(msgs[t.right_info]), seq.k_right)
    assert camera_info_baseline(msgs[t.left_info], msgs[t.right_info]) == pytest.approx(seq.baseline)
    assert (msgs[t.left_info].height, msgs[t.left_info].width) == IMAGE_SIZE
    depth = msgs[t.depth]
    assert depth.encoding == "32FC1"
    np.testing.assert_array_equal(np.frombuffer(bytes(depth.data), "<f4").reshape(IMAGE_SIZE), seq.depth(2))
    odom = msgs[t.odom]
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "velo_link")
    np.testing.assert_allclose(pose_to_matrix(odom.pose.pose), seq.lidar_poses()[2], atol=1e-9)
    # /tf (tf2_msgs has no wheel here: decode with the typestore) carries the same pose
    tf_cdr = next(d for topic, _, d in raw if topic == t.tf)
    tf = builder.store.deserialize_cdr(tf_cdr, "tf2_msgs/msg/TFMessage").transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == ("odom", "velo_link")
    np.testing.assert_allclose([tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z],
                               seq.lidar_poses()[2][:3, 3], atol=1e-9)


def test_static_tf_and_streams(sequence_dir):
    seq = KittiSequence(sequence_dir)
    builder = KittiMessageBuilder(seq, streams=KittiStreams(right=False, depth=False, odom=False))
    topics = builder.topic_types()
    assert builder.topics.right_image not in topics and builder.topics.depth not in topics
    assert builder.topics.tf not in topics and builder.topics.tf_static in topics  # static TF needs no poses
    _, _, cdr = builder.static_tf_message(KITTI_EPOCH_NS)
    tfs = builder.store.deserialize_cdr(cdr, "tf2_msgs/msg/TFMessage").transforms
    assert [(x.header.frame_id, x.child_frame_id) for x in tfs] == [("velo_link", "camera_color_left"),
                                                                    ("velo_link", "camera_color_right")]
    cam_in_lidar = np.linalg.inv(seq.lidar_to_camera("left"))[:3, 3]
    got = tfs[0].transform.translation
    np.testing.assert_allclose([got.x, got.y, got.z], cam_in_lidar, atol=1e-9)


def test_missing_sequence_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        KittiSequence(tmp_path / "nowhere")
    (tmp_path / "seq").mkdir()
    with pytest.raises(FileNotFoundError, match="calib.txt"):
        KittiSequence(tmp_path / "seq")


@pytest.mark.ros
def test_player_publishes_over_dds(sequence_dir):
    """A kitti_player process plays frames 1, 3, 5 with /clock; a subscriber here gets them all."""
    env = ros_environment()
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image

    topics = KittiTopics()
    session = RosSession("test_kitti_player", int(env["ROS_DOMAIN_ID"]))
    node, executor = session.node, session.executor
    images, infos, clocks = [], [], []
    node.create_subscription(Image, topics.left_image, images.append, 10)
    node.create_subscription(CameraInfo, topics.right_info, infos.append, 10)
    node.create_subscription(Clock, "/clock", clocks.append, 10)
    proc = start_node("sgn_ros.ros.kitti_player", env, params={
        "sequence_dir": str(sequence_dir), "rate_hz": 20.0, "start": 1, "end": 6, "step": 2, "publish_clock": True,
        "wait_for_subscribers": 1,
    })
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        for _ in range(20):
            executor.spin_once(timeout_sec=0.02)
        out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
        assert proc.returncode == 0, out
    finally:
        stop_process(proc)
        session.close()
    seq = KittiSequence(sequence_dir)
    builder = KittiMessageBuilder(seq)
    assert len(images) == 3 and len(infos) == 3, out
    for msg, index in zip(images, (1, 3, 5)):
        np.testing.assert_array_equal(image_to_rgb(msg), seq.left_image(index))
        # publish_clock -> dataset stamps, and /clock runs on the same time line
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == builder.dataset_stamp_ns(index)
    assert [c.clock.sec * 10**9 + c.clock.nanosec for c in clocks] == [builder.dataset_stamp_ns(i) for i in (1, 3, 5)]
    assert -infos[0].p[3] / infos[0].p[0] == pytest.approx(seq.baseline)


@pytest.mark.ros
def test_player_bad_parameters_exit_with_message(tmp_path):
    env = ros_environment()
    proc = start_node("sgn_ros.ros.kitti_player", env, params={"sequence_dir": str(tmp_path / "missing_seq")})
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        stop_process(proc)
    assert proc.returncode == 2
    assert "missing_seq" in out.decode(errors="replace")


@pytest.mark.ros
def test_player_paced_by_consumer(sequence_dir):
    """pace_topic: the next frame goes out only after the consumer answered the last one."""
    env = ros_environment()
    from sensor_msgs.msg import Image
    from std_msgs.msg import Empty

    session = RosSession("test_kitti_pacer", int(env["ROS_DOMAIN_ID"]))
    node, executor = session.node, session.executor
    pace = node.create_publisher(Empty, "/pace", 10)
    arrivals, answers = [], []
    node.create_subscription(Image, KittiTopics().left_image, lambda m: arrivals.append(time.monotonic()), 10)
    proc = start_node("sgn_ros.ros.kitti_player", env, params={
        "sequence_dir": str(sequence_dir), "rate_hz": 50.0, "end": 3, "wait_for_subscribers": 1,
        "pace_topic": "/pace", "pace_type": "std_msgs/msg/Empty",
    })
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
            if len(answers) < len(arrivals) and time.monotonic() - arrivals[len(answers)] > 0.4:
                pace.publish(Empty())  # a slow consumer: answers each frame 0.4 s after it arrived
                answers.append(time.monotonic())
        out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
        assert proc.returncode == 0, out
    finally:
        stop_process(proc)
        session.close()
    assert len(arrivals) == 3
    gaps = np.diff(arrivals)
    assert np.all(gaps >= 0.4), gaps  # at 50 Hz unpaced they would be 0.02 s apart
