# sgn_ros.ros.processes: the environment and command lines of node processes, and RosSession,
# the private rclpy context + node + executor the tests and tools use. RosSession is exercised for
# real: two sessions on a random private domain exchange a message over Fast DDS.
"""Tests of sgn_ros.ros.processes."""

from __future__ import annotations

import pytest

from sgn_ros.ros.processes import RosSession, ros_args, ros_environment


def test_ros_args_formats_parameters_files_and_remaps() -> None:
    got = ros_args({"flag": True, "ids": [1, 2], "name": "", "rate": 2.5}, ["a.yaml"], {"image": "/cam/image"})
    assert got == ["--ros-args", "--params-file", "a.yaml", "-p", "flag:=true", "-p", "ids:=[1,2]",
                   "-p", "name:=''", "-p", "rate:=2.5", "-r", "image:=/cam/image"]


def test_ros_environment_private_local_domain() -> None:
    env = ros_environment(domain_id=17, base={"ROS_LOCALHOST_ONLY": "1"})
    assert env["ROS_DOMAIN_ID"] == "17" and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "ROS_LOCALHOST_ONLY" not in env
    assert 1 <= int(ros_environment()["ROS_DOMAIN_ID"]) <= 200


@pytest.mark.ros
def test_two_sessions_talk_over_dds_on_a_private_domain() -> None:
    """Publisher in one session, subscriber in another, same random domain: the message arrives;
    close() twice is harmless; rclpy's global default context is left as it was."""
    import rclpy
    from rclpy.utilities import get_default_context
    from std_msgs.msg import String

    default_ok = get_default_context().ok()
    domain = int(ros_environment()["ROS_DOMAIN_ID"])
    got: list[str] = []
    with RosSession("test_processes_talker", domain) as talker, RosSession("test_processes_listener", domain) as ear:
        assert talker.context is not get_default_context() and talker.context is not ear.context
        assert talker.context.ok() and ear.context.ok()
        pub = talker.node.create_publisher(String, "processes_test/chatter", 10)
        ear.node.create_subscription(String, "processes_test/chatter", lambda m: got.append(m.data), 10)
        assert ear.spin_until(lambda: pub.get_subscription_count() >= 1, 30.0), "the sessions never met"
        for _ in range(60):  # volatile QoS: publish again until the subscriber's side is matched too
            pub.publish(String(data="hello"))
            if ear.spin_until(lambda: bool(got), 0.5):
                break
    assert got and set(got) == {"hello"}
    assert not talker.context.ok() and not ear.context.ok()
    talker.close()  # a second close: nothing happens, nothing raises
    ear.close()
    assert get_default_context().ok() == default_ok
    assert rclpy.ok() == default_ok


@pytest.mark.ros
@pytest.mark.filterwarnings("ignore:Failed to fini rosout publisher")  # rclpy's own, on the bad name
def test_session_cleans_up_when_start_up_fails() -> None:
    """A bad node name fails after rclpy.init: the context it made is shut down again."""
    from rclpy.exceptions import InvalidNodeNameException

    made: list[RosSession] = []

    class Probe(RosSession):
        def __init__(self, *a, **k) -> None:
            made.append(self)
            super().__init__(*a, **k)

    with pytest.raises(InvalidNodeNameException):
        Probe("not a valid name!", int(ros_environment()["ROS_DOMAIN_ID"]))
    assert made and made[0].node is None and not made[0].context.ok()
    made[0].close()  # closing the half-made session again is still fine
