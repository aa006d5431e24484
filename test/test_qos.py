# Tests of sgn_ros/ros/qos.py: parameter strings -> rclpy QoS profiles, errors naming the parameter.
"""sgn_ros.ros.qos.make_qos."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="rclpy (requirements/ros.txt) not installed")

from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy  # noqa: E402

from sgn_ros.ros.qos import make_qos  # noqa: E402


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
