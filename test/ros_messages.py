# Helpers shared by the ROS message tests (test_decoders.py, test_encoders.py): an independent
# CDR deserializer (rosbags, with sgn_ros's own message registered), a stamped header and a
# small voxel grid. Imported only after the tests checked that the ROS packages are installed.
"""Test helpers: rosbags round trips of rclpy messages."""

from __future__ import annotations

from pathlib import Path

from rclpy.serialization import serialize_message
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from std_msgs.msg import Header

from sgn_ros.grid import DEFAULT_GRID, VoxelGrid

ROOT = Path(__file__).resolve().parents[1]
TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
TYPESTORE.register(
    get_types_from_msg((ROOT / "msg" / "SemanticVoxelGrid.msg").read_text(), "sgn_ros/msg/SemanticVoxelGrid")
)
SMALL_GRID = VoxelGrid(origin=DEFAULT_GRID.origin, voxel_size=DEFAULT_GRID.voxel_size * 8, dims=(8, 6, 4), scales=(1,))


def to_rosbags(msg, typename: str):
    """An rclpy message -> CDR bytes -> rosbags' message object (independent deserializer)."""
    return TYPESTORE.deserialize_cdr(bytes(serialize_message(msg)), typename)


def header() -> Header:
    h = Header()
    h.frame_id = "lidar"
    h.stamp.sec, h.stamp.nanosec = 12, 345
    return h
