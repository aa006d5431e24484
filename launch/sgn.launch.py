# ROS 2 launch file of sgn_ros: the SGN semantic scene completion node, with optional input
# (a rosbag2 played with `ros2 bag play --clock` or sgn_ros's bag_player, or a KITTI sequence
# folder played by kitti_player) and optional RViz.
#
#   ros2 launch sgn_ros sgn.launch.py checkpoint:=/path/sgn-l.pth rviz:=true \
#       kitti_sequence:=/data/kitti/dataset/sequences/08
#   ros2 launch sgn_ros sgn.launch.py bag:=/data/kitti_08_bag use_sim_time:=true
#   ros2 launch sgn_ros sgn.launch.py params_file:=my.yaml namespace:=car1 remappings:="image:=/cam/image_raw"
#
# Every decision is made by sgn_ros.ros.launch_plan.plan_launch (unit-tested without `launch`):
# parameter layers (sgn.yaml < topic preset < params_file < launch arguments that were given),
# the topic preset detected from the bag (kitti2bag, kitti2mcap, kitti-to-bag), the player's
# wait topic (what sgn_node really subscribes), fallbacks when rviz2 or `ros2 bag` are missing.
# sgn_node exiting ends the launch (player included); a non-zero exit makes `ros2 launch` fail.
"""Launch sgn_node (+ bag / KITTI player, + RViz)."""

from __future__ import annotations

from pathlib import Path

from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription

PACKAGE = "sgn_ros"
#: SIGINT -> SIGTERM -> SIGKILL escalation (launch's default is 5 s + 5 s): Ctrl-C ends within 3 s.
STOP_TIMEOUTS = {"sigterm_timeout": "2", "sigkill_timeout": "1"}

#: name -> (default, description) of every launch argument.
ARGUMENTS: dict[str, tuple[str, str]] = {
    "params_file": ("", "sgn_node parameters YAML, applied over config/sgn.yaml and the topic preset"),
    "checkpoint": ("", "SGN checkpoint (.pth); empty = keep the params files' value (none: untrained, said so)"),
    "variant": ("", "network variant: sgn-t | sgn-s | sgn-l (or a config YAML); empty = the params files' value"),
    "device": ("", "torch device (cuda, cuda:1, cpu); empty = the params files' value (CUDA when available)"),
    "use_sim_time": ("", "follow /clock (true with bag or kitti_sequence to run on dataset time); empty = files'"),
    "namespace": ("", "namespace of sgn_node (relative topics move into it)"),
    "remappings": ("", "sgn_node topic remappings, 'from:=to' separated by spaces, e.g. image:=/cam/image_raw"),
    "rviz": ("false", "open RViz with config/sgn.rviz (warns and runs on without rviz2)"),
    "bag": ("", "rosbag2 to play (folder or .mcap/.db3; empty: none); its converter picks the topic preset"),
    "bag_rate": ("1.0", "playback rate of `bag`"),
    "bag_player": ("auto", "who plays `bag`: auto (ros2 bag if installed, else sgn) | ros2 | sgn"),
    "bag_delay": ("8.0", "seconds `ros2 bag play` waits before playing (sgn_node loads its model first); "
                         "bag_player and kitti_player wait for sgn_node's subscription instead"),
    "kitti_sequence": ("", "KITTI odometry sequence folder to play with kitti_player (empty: none)"),
    "kitti_rate": ("10.0", "kitti_player frame rate, Hz"),
    "topic_preset": ("auto", "auto (detected from the bag; kitti2bag's for kitti_sequence) | kitti2bag | none"),
}


def _share_dir() -> Path:
    """The installed share/sgn_ros, or the source tree when launched from a checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError):
        return Path(__file__).resolve().parents[1]


def _on_node_exit(event, context: LaunchContext) -> list:  # noqa: ANN001  (launch's ProcessExited)
    """sgn_node ended: end the launch (players, RViz); fail it when the node failed."""
    rc = event.returncode
    actions = [EmitEvent(event=Shutdown(reason=f"sgn_node exited with code {rc}"))]
    if rc not in (0, -2, 130):  # SIGINT from Ctrl-C is a normal end

        def fail(_context: LaunchContext) -> None:
            raise RuntimeError(f"sgn_node exited with code {rc}")

        actions.insert(0, OpaqueFunction(function=fail))
    return actions


def _actions(context: LaunchContext) -> list:
    """Build the actions from the resolved argument values (decisions: launch_plan.plan_launch)."""
    from sgn_ros.ros.launch_plan import plan_launch

    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    share = _share_dir()
    plan = plan_launch(arg, share)
    actions: list = [LogInfo(msg=f"sgn_ros: {text}") for text in plan.infos]
    actions += [LogInfo(msg=f"WARNING sgn_ros: {text}") for text in plan.warnings]
    node = Node(package=PACKAGE, executable="sgn_node", name="sgn_node", namespace=plan.namespace or None,
                output="screen", parameters=plan.node_parameters, remappings=list(plan.remappings.items()),
                additional_env=plan.environment, **STOP_TIMEOUTS)
    actions += [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_on_node_exit))]
    player = plan.player or {}
    if player.get("kind") == "kitti":
        actions.append(Node(package=PACKAGE, executable="kitti_player", name="kitti_player", output="screen",
                            parameters=[player["parameters"]], additional_env=plan.environment,
                            **STOP_TIMEOUTS))
    elif player.get("kind") == "sgn":
        actions.append(Node(package=PACKAGE, executable="bag_player", name="bag_player", output="screen",
                            parameters=[player["parameters"]], additional_env=plan.environment,
                            **STOP_TIMEOUTS))
    elif player.get("kind") == "ros2":
        actions.append(ExecuteProcess(cmd=player["cmd"], output="screen", additional_env=plan.environment,
                                      **STOP_TIMEOUTS))
    if plan.rviz:
        actions.append(Node(
            package="rviz2", executable="rviz2", name="rviz2", output="screen",
            arguments=["-d", str(share / "config" / "sgn.rviz"), *(["-f", plan.grid_frame] if plan.grid_frame else [])],
            parameters=[{"use_sim_time": any(layer.get("use_sim_time") for layer in plan.node_parameters)}],
            additional_env=plan.environment, **STOP_TIMEOUTS,
        ))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_actions)]
    )
