# rosbag2 plumbing shared by kitti-to-bag, the bag player and the bag recorder.
#
# Bags are written and read with the `rosbags` library (no ROS installation needed), messages
# are serialized with its typestore for a chosen ROS 2 distro, and rclpy moves the serialized
# bytes over DDS untouched (publish raw / subscribe raw). What lives here: the typestore for a
# distro (with this package's own messages registered), the rclpy class for a type name, and
# the QoS profiles written into a bag's metadata so that `ros2 bag play` offers the same QoS.
"""rosbag2 helpers: typestores, message classes by name, bag QoS metadata."""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import Any

#: `--distro` choices -> rosbags typestore names. The CDR layout of every message used here
#: (sensor_msgs, nav_msgs, tf2_msgs, rosgraph_msgs, visualization_msgs) is the same in all of
#: them; the distro only decides the message definitions/hashes stored in the bag's metadata.
DISTROS: dict[str, str] = {
    "humble": "ros2_humble",
    "jazzy": "ros2_jazzy",
    "kilted": "ros2_kilted",
}
DEFAULT_DISTRO = "humble"

#: rosbag2 storage plugins `rosbags` writes: mcap (default since Iron; Humble needs the
#: ros-humble-rosbag2-storage-mcap package) and sqlite3 (every distro).
STORAGES = ("mcap", "sqlite3")

#: rosbag2 metadata version written. 8 is what Jazzy writes and what Humble/Jazzy/Kilted read.
BAG_VERSION = 8

#: message types this package defines (msg/*.msg), registered into every typestore so that
#: recordings of the node's outputs carry their definitions.
PROJECT_MESSAGES = ("SemanticVoxelGrid",)


def project_msg_dir() -> Path | None:
    """Folder holding this package's ``*.msg`` files: the source tree or the ament share dir."""
    src = Path(__file__).resolve().parents[2] / "msg"
    if src.is_dir():
        return src
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("sgn_ros")) / "msg"
    except (ImportError, LookupError):
        return None
    return share if share.is_dir() else None


@cache
def typestore(distro: str = DEFAULT_DISTRO) -> Any:
    """The rosbags typestore of `distro`, plus sgn_ros's own messages where their files exist."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    if distro not in DISTROS:
        raise ValueError(f"unknown ROS distro {distro!r}; choose from {', '.join(DISTROS)}")
    store = get_typestore(Stores(DISTROS[distro]))
    msg_dir = project_msg_dir()
    if msg_dir is not None:
        types: dict[str, Any] = {}
        for name in PROJECT_MESSAGES:
            path = msg_dir / f"{name}.msg"
            if path.is_file():
                types.update(get_types_from_msg(path.read_text(), f"sgn_ros/msg/{name}"))
        store.register(types)
    return store


def message_class(msgtype: str) -> type:
    """The rclpy (rosidl-generated) class of a type name such as ``sensor_msgs/msg/Image``.

    Raises:
        ImportError: the message package is not installed (e.g. tf2_msgs has no PyPI wheel).
        ValueError: `msgtype` is not of the form ``pkg/msg/Name``.
    """
    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] != "msg":
        raise ValueError(f"message type {msgtype!r} is not of the form 'package/msg/Name'")
    module = importlib.import_module(f"{parts[0]}.msg")
    try:
        return getattr(module, parts[2])
    except AttributeError:
        raise ImportError(f"{parts[0]}.msg has no message {parts[2]!r}") from None


def storage_plugin(storage: str) -> Any:
    """rosbags' StoragePlugin for ``'mcap'`` / ``'sqlite3'``."""
    from rosbags.rosbag2 import StoragePlugin

    if storage not in STORAGES:
        raise ValueError(f"unknown rosbag2 storage {storage!r}; choose from {', '.join(STORAGES)}")
    return StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3


def bag_qos(transient_local: bool = False, depth: int = 10) -> Any:
    """A reliable QoS entry for a bag's ``offered_qos_profiles`` (transient local for /tf_static)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    infinite = QosTime(sec=0, nsec=0)  # rmw "unspecified" = the default (infinite)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=infinite,
        lifespan=infinite,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=infinite,
        avoid_ros_namespace_conventions=False,
    )


def open_writer(path: str | Path, storage: str = "mcap") -> Any:
    """An opened rosbags rosbag2 Writer for a NEW bag folder `path` (it must not exist yet)."""
    from rosbags.rosbag2 import Writer

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"rosbag2 output {path} already exists; choose a new folder")
    writer = Writer(path, version=BAG_VERSION, storage_plugin=storage_plugin(storage))
    writer.open()
    return writer
