# QoS profiles of sgn_ros's topics from plain parameter values (strings and ints in YAML), with
# errors that name the parameter. Shared by sgn_node and the replay nodes.
"""QoS profile construction from node parameters."""

from __future__ import annotations

from typing import Any

RELIABILITIES = ("reliable", "best_effort")
DURABILITIES = ("volatile", "transient_local")


def make_qos(reliability: str, depth: int, durability: str = "volatile", what: str = "qos") -> Any:
    """A KEEP_LAST QoSProfile.

    Args:
        reliability: ``reliable`` or ``best_effort``. Sensor inputs default to best_effort, which
            matches publishers of either kind; outputs to reliable.
        depth: history depth (>= 1).
        durability: ``volatile`` or ``transient_local`` (latched).
        what: parameter name used in error messages.

    Raises:
        ValueError: unknown reliability / durability or depth < 1.
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    rel = str(reliability).lower()
    if rel not in RELIABILITIES:
        raise ValueError(f"{what}: reliability must be one of {RELIABILITIES}, got {reliability!r}")
    dur = str(durability).lower()
    if dur not in DURABILITIES:
        raise ValueError(f"{what}: durability must be one of {DURABILITIES}, got {durability!r}")
    if int(depth) < 1:
        raise ValueError(f"{what}: depth must be >= 1, got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE if rel == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE if dur == "volatile" else DurabilityPolicy.TRANSIENT_LOCAL,
    )
