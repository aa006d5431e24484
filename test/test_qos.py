# Tests of sgn_ros/ros/qos.py: parameter strings -> rclpy QoS profiles, errors naming the parameter.
"""sgn_ros.ros.qos.make_qos."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="rclpy (requirements/ros.txt) not installed")

from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy  # noqa: E402

from sgn_ros.ros.qos import did_you_mean, make_qos, subscription_qos_for  # noqa: E402


def test_profiles() -> None:
    q = make_qos("best_effort", 3)
    assert (q.reliability, q.depth, q.history, q.durability) == (
        ReliabilityPolicy.BEST_EFFORT, 3, HistoryPolicy.KEEP_LAST, DurabilityPolicy.VOLATILE)
    q = make_qos("RELIABLE", 1, "transient_local")
    assert q.reliability == ReliabilityPolicy.RELIABLE and q.durability == DurabilityPolicy.TRANSIENT_LOCAL


@pytest.mark.parametrize(
    "args, match",
    [(("sometimes", 1), "input_reliability: reliability"), (("reliable", 0), "depth must be >= 1"),
     (("reliable", 1, "forever"), "durability")],
)
def test_errors_name_the_parameter(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_qos(*args, what="input_reliability")


@pytest.mark.parametrize(
    "offered, expected",
    [([], ("reliable", "volatile")),
     ([("reliable", "volatile")], ("reliable", "volatile")),
     ([("reliable", "transient_local")], ("reliable", "transient_local")),
     ([("best_effort", "volatile"), ("reliable", "volatile")], ("best_effort", "volatile")),
     ([("reliable", "transient_local"), ("RELIABLE", "volatile")], ("reliable", "volatile"))],
)
def test_subscription_qos_matches_every_publisher(offered, expected) -> None:
    assert subscription_qos_for(offered) == expected
    # the chosen profile is compatible with each publisher: DDS's request-vs-offered rules
    rank_rel = {"best_effort": 0, "reliable": 1}
    rank_dur = {"volatile": 0, "transient_local": 1}
    rel, dur = expected
    for orel, odur in offered:
        assert rank_rel[rel] <= rank_rel[orel.lower()] and rank_dur[dur] <= rank_dur[odur.lower()]


def test_subscription_qos_rejects_unknown_policy() -> None:
    with pytest.raises(ValueError, match="offered QoS"):
        subscription_qos_for([("sometimes", "volatile")])


def test_did_you_mean() -> None:
    available = ["/kitti/camera_color_left/image_raw", "/kitti/camera_color_left/camera_info",
                 "/kitti/velodyne_points", "/tf", "/tf_static"]
    assert did_you_mean("/kitti/camera_color_left/image", available)[0] == "/kitti/camera_color_left/image_raw"
    assert did_you_mean("/kitti/velo/pointcloud", available)[0] == "/kitti/velodyne_points"
    assert did_you_mean("/sensors/camera_color_left/camera_info", available)[0] == \
        "/kitti/camera_color_left/camera_info"
    assert did_you_mean("/something/else/entirely", available) == []
    assert "/tf" not in did_you_mean("/tf", available)  # never the topic itself
