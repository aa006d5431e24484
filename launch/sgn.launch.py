# ROS 2 launch file of sgn_ros: the SGN semantic scene completion node, with optional input
# (a rosbag2 played with `ros2 bag play --clock`, or a KITTI sequence folder played by
# kitti_player) and optional RViz.
#
#   ros2 launch sgn_ros sgn.launch.py checkpoint:=/path/sgn-l.pth rviz:=true \
#       kitti_sequence:=/data/kitti/dataset/sequences/08
#   ros2 launch sgn_ros sgn.launch.py bag:=/data/kitti_08_bag use_sim_time:=true
#
# With `bag` or `kitti_sequence`, the node also loads config/kitti2bag_remap.yaml (topic names of
# kitti2bag recordings, which kitti_player and `sgn-ros kitti-to-bag` use too) unless
# `topic_preset:=none`. `bag_player:=sgn` plays the bag with sgn_ros's own bag_player (for
# installations without `ros2 bag`).
"""Launch sgn_node (+ bag / KITTI player, + RViz)."""

from __future__ import annotations

import os
from pathlib import Path

from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription

PACKAGE = "sgn_ros"
#: the camera topic of kitti2bag recordings (sgn_ros.ros.kitti_sequence.KittiTopics.left_image);
#: bag_player holds playback until sgn_node subscribes to it.
KITTI_IMAGE_TOPIC = "/kitti/camera_color_left/image"

#: name -> (default, description) of every launch argument.
ARGUMENTS: dict[str, tuple[str, str]] = {
    "params_file": ("", "sgn_node parameters YAML (default: the package's config/sgn.yaml)"),
    "checkpoint": ("", "SGN checkpoint (.pth); empty = untrained weights (the node says so)"),
    "variant": ("sgn-l", "network variant: sgn-t | sgn-s | sgn-l (or a config YAML)"),
    "device": ("", "torch device (cuda, cuda:1, cpu); empty = CUDA when available"),
    "use_sim_time": ("false", "follow /clock (set with bag or kitti_sequence to run on dataset time)"),
    "rviz": ("false", "open RViz with config/sgn.rviz"),
    "bag": ("", "rosbag2 to play with `ros2 bag play BAG --clock` (empty: none)"),
    "bag_rate": ("1.0", "playback rate of `bag`"),
    "bag_player": ("ros2", "who plays `bag`: ros2 (ros2 bag play) | sgn (sgn_ros bag_player)"),
    "bag_delay": ("8.0", "seconds `ros2 bag play` waits before playing (sgn_node loads its model first); "
                         "bag_player and kitti_player wait for sgn_node's subscription instead"),
    "kitti_sequence": ("", "KITTI odometry sequence folder to play with kitti_player (empty: none)"),
    "kitti_rate": ("10.0", "kitti_player frame rate, Hz"),
    "topic_preset": ("auto", "auto | kitti2bag | none: load config/kitti2bag_remap.yaml (auto: with bag or "
                             "kitti_sequence)"),
}


def _share_dir() -> Path:
    """The installed share/sgn_ros, or the source tree when launched from a checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError):
        return Path(__file__).resolve().parents[1]


def _truthy(value: str, name: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"launch argument {name}:={value!r} is not a boolean (true/false)")


def _actions(context: LaunchContext) -> list:
    """Build the actions from the resolved argument values."""
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    share = _share_dir()
    sim_time = _truthy(arg["use_sim_time"], "use_sim_time")
    params_file = arg["params_file"] or str(share / "config" / "sgn.yaml")
    for label, path in (("params_file", params_file), ("bag", arg["bag"]), ("kitti_sequence", arg["kitti_sequence"])):
        if path and not os.path.exists(path):
            raise FileNotFoundError(f"launch argument {label}: {path} does not exist")
    if arg["topic_preset"] not in ("auto", "kitti2bag", "none"):
        raise ValueError(f"launch argument topic_preset:={arg['topic_preset']!r}: choose auto, kitti2bag or none")
    if arg["bag_player"] not in ("ros2", "sgn"):
        raise ValueError(f"launch argument bag_player:={arg['bag_player']!r}: choose ros2 or sgn")
    replay = bool(arg["bag"] or arg["kitti_sequence"])
    rviz = _truthy(arg["rviz"], "rviz")
    image_readers = 2 if rviz else 1  # players start once sgn_node (and RViz) subscribe to the camera
    preset = arg["topic_preset"] == "kitti2bag" or (arg["topic_preset"] == "auto" and replay)

    node_params: list = [params_file]
    if preset:
        node_params.append(str(share / "config" / "kitti2bag_remap.yaml"))
    node_params.append({"variant": arg["variant"], "checkpoint": arg["checkpoint"], "device": arg["device"],
                        "use_sim_time": sim_time})
    actions: list = [
        LogInfo(msg=f"sgn_node parameters: {', '.join(str(p) for p in node_params[:-1])}"),
        Node(package=PACKAGE, executable="sgn_node", name="sgn_node", output="screen", parameters=node_params),
    ]
    if arg["kitti_sequence"]:
        actions.append(Node(
            package=PACKAGE, executable="kitti_player", name="kitti_player", output="screen",
            parameters=[{"sequence_dir": arg["kitti_sequence"], "rate_hz": float(arg["kitti_rate"]),
                         "publish_clock": sim_time, "wait_for_subscribers": image_readers}],
        ))
    if arg["bag"]:
        if arg["bag_player"] == "ros2":
            actions.append(ExecuteProcess(
                cmd=["ros2", "bag", "play", arg["bag"], "--clock", "--rate", arg["bag_rate"], "--delay",
                     arg["bag_delay"]],
                output="screen",
            ))
        else:
            actions.append(Node(
                package=PACKAGE, executable="bag_player", name="bag_player", output="screen",
                parameters=[{"bag": arg["bag"], "rate": float(arg["bag_rate"]), "publish_clock": True,
                             "wait_for_subscribers": image_readers, "wait_topic": KITTI_IMAGE_TOPIC}],
            ))
    if rviz:
        actions.append(Node(
            package="rviz2", executable="rviz2", name="rviz2", output="screen",
            # the preset's grid frame is KITTI's LiDAR frame (config/sgn.rviz: the node's default sgn_grid)
            arguments=["-d", str(share / "config" / "sgn.rviz"), *(["-f", "velo_link"] if preset else [])],
            parameters=[{"use_sim_time": sim_time}],
        ))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_actions)]
    )
