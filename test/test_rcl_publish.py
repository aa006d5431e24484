# Tests of sgn_ros/ros/rcl_publish.py: serialized bytes published through rcl directly arrive at a
# real subscriber (Fast DDS, a private domain) byte for byte as rclpy's own Publisher.publish sends
# them, large ones included; a destroyed publisher and an invalid rcl publisher fail with clear
# errors instead of crashing the process. That the call releases the GIL is measured, not asserted
# (a timing): bench/encoders.py prints how long other Python threads wait during each publish.
"""sgn_ros.ros.rcl_publish: GIL-free publishing of serialized messages through rcl."""

from __future__ import annotations

import ctypes
import os
import random
import time

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages (requirements/ros.txt) not installed")

from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from sgn_ros.ros.processes import RosSession  # noqa: E402
from sgn_ros.ros.rcl_publish import SerializedPublisher, publish_at, rcl_available  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture
def session():
    domain = int(os.environ.get("SGN_TEST_DOMAIN", random.SystemRandom().randint(1, 100)))
    with RosSession("rcl_publish_test", domain) as s:
        yield s


def _cloud(n: int, seed: int) -> bytes:
    """A serialized PointCloud2 of n random xyz points (12 bytes each)."""
    m = PointCloud2(height=1, width=n, point_step=12, row_step=12 * n, is_dense=True)
    m.header.frame_id = "grid"
    m.header.stamp.sec = seed
    m.fields = [PointField(name=c, offset=4 * i, datatype=7, count=1) for i, c in enumerate("xyz")]
    m.data = np.random.default_rng(seed).random(3 * n, dtype=np.float32).tobytes()
    return serialize_message(m)


def _exchange(session, sender, topic: str, messages: list[bytes], msg_type=PointCloud2) -> list[bytes]:
    """Publish `messages` with `sender` once a raw subscriber is matched; what it received."""
    got: list[bytes] = []
    session.node.create_subscription(msg_type, topic, lambda m: got.append(bytes(m)), 10, raw=True)
    end = time.monotonic() + 30
    while sender.publisher.get_subscription_count() < 1 and time.monotonic() < end:
        session.spin_once(0.05)
    for data in messages:
        sender.publish(data)
    while len(got) < len(messages) and time.monotonic() < end:
        session.spin_once(0.05)
    return got


def test_rcl_is_found_beside_rclpy() -> None:
    ok, why = rcl_available()
    assert ok, why


@pytest.mark.parametrize("native", [True, False])
def test_bytes_arrive_unchanged(session, native: bool) -> None:
    """Small and multi-megabyte messages (a 190k-voxel output is ~4.6 MB), direct and through rclpy."""
    pub = session.node.create_publisher(PointCloud2, f"cloud_{native}", 10)
    sender = SerializedPublisher(pub, native=native)
    assert sender.native is native
    messages = [_cloud(3, 1), _cloud(400_000, 2), _cloud(0, 3)]
    assert _exchange(session, sender, f"cloud_{native}", messages) == messages


def test_wrong_input_and_destroyed_publisher(session) -> None:
    pub = session.node.create_publisher(String, "chatter", 10)
    sender = SerializedPublisher(pub)
    with pytest.raises(TypeError, match="chatter: expected serialized bytes, got bytearray"):
        sender.publish(bytearray(serialize_message(String(data="x"))))
    session.node.destroy_publisher(pub)
    with pytest.raises(RuntimeError, match="destruction"):  # rclpy's InvalidHandle, not a crash
        sender.publish(serialize_message(String(data="x")))


def test_invalid_rcl_publisher_is_an_error() -> None:
    """rcl validates the publisher: a zero-initialised rcl_publisher_t is refused with its reason,
    and the thread's rcl error state is left clean."""
    zero = ctypes.create_string_buffer(64)
    for _ in range(2):
        with pytest.raises(RuntimeError, match=r"topic_x: rcl_publish_serialized_message failed \(rcl_ret_t \d+\)"):
            publish_at(ctypes.addressof(zero), b"\x00\x01\x00\x00", "topic_x")


def test_rclpy_fallback_when_asked(session) -> None:
    pub = session.node.create_publisher(String, "fallback", 10)
    assert SerializedPublisher(pub, native=False).native is False
    assert SerializedPublisher(pub).native is True
