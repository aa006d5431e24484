# What launch/sgn.launch.py starts, decided by pure functions of the launch arguments, so that
# every rule is unit-tested without the `launch` packages (not installable from PyPI) and the
# launch file stays a thin translation into launch actions. The rules (issue: "a launch file
# that never lies"):
#   * sgn_node's parameters are layers, later wins: config/sgn.yaml < topic preset (detected from
#     the bag, or kitti2bag's for kitti_sequence) < the user's params_file < launch arguments that
#     were GIVEN (variant, checkpoint, device, use_sim_time: empty = keep the files' values).
#     Each layer is passed as a plain dict (launch_ros writes it under `/**`), so order alone
#     decides: a params file's `sgn_node:` section can no longer beat a launch argument, and a
#     launch argument no longer silently replaces a params file's value.
#   * the player waits for the topic sgn_node really subscribes: its final image_topic, with
#     namespace and remappings applied.
#   * missing tools (rviz2, `ros2 bag`) give a warning and a fallback, never an aborted launch.
"""Launch decisions for sgn.launch.py (pure, testable)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sgn_ros.ros.processes import dds_environment

NODE_NAME = "sgn_node"
#: launch arguments that override the node's parameters only when given (non-empty).
OVERRIDES = ("variant", "checkpoint", "device")


def _truthy(value: str, name: str) -> bool:
    v = str(value).strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"launch argument {name}:={value!r} is not a boolean (true/false)")


def node_section(path: str | os.PathLike[str], node: str = NODE_NAME, namespace: str = "") -> dict[str, Any]:
    """The ros__parameters a params YAML gives node `node` (keys ``/**``, ``node``, ``/**/node``,
    ``/ns/node``), merged in file order as rcl does.

    Raises:
        ValueError: not a params file (naming the file).
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"params file {path}: expected a mapping of node names to ros__parameters")
    fqn = "/" + "/".join(p for p in (namespace.strip("/"), node) if p)
    out: dict[str, Any] = {}
    for key, section in data.items():
        k = "/" + str(key).lstrip("/")
        if k in ("/**", fqn, "/**/" + node, "/" + node) and isinstance(section, dict):
            params = section.get("ros__parameters", {})
            if not isinstance(params, dict):
                raise ValueError(f"params file {path}: {key}: ros__parameters must be a mapping")
            out.update(_flatten(params))
    return out


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resolve_topic(name: str, namespace: str = "", remappings: Mapping[str, str] | None = None) -> str:
    """The absolute topic a node in `namespace` uses for `name` (ROS 2 name resolution, then remapping)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    full = name if name.startswith("/") else f"{ns}/{name}"
    for src, dst in (remappings or {}).items():
        src_full = src if src.startswith("/") else f"{ns}/{src}"
        if src_full == full or src == name:
            return dst if dst.startswith("/") else f"{ns}/{dst}"
    return full


def parse_remappings(text: str) -> dict[str, str]:
    """``"a:=b c:=d"`` (spaces or commas) -> {"a": "b", "c": "d"}.

    Raises:
        ValueError: an entry without ``:=``.
    """
    out = {}
    for item in text.replace(",", " ").split():
        if ":=" not in item:
            raise ValueError(f"launch argument remappings: {item!r} is not FROM:=TO")
        a, b = item.split(":=", 1)
        out[a] = b
    return out


@dataclass
class LaunchPlan:
    """What to start. `node_parameters`: dict layers, later wins."""

    node_parameters: list[dict[str, Any]]
    namespace: str
    remappings: dict[str, str]
    image_topic: str  # the topic sgn_node subscribes for images (resolved)
    player: dict[str, Any] | None = None  # {"kind": "ros2" | "sgn" | "kitti", ...}
    rviz: bool = False
    grid_frame: str = ""
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)
    #: environment added to every process started (the Fast DDS profile, see `dds_environment`)
    environment: dict[str, str] = field(default_factory=dict)


def plan_launch(args: Mapping[str, str], share: Path, have_executable: Callable[[str], bool] | None = None,
                have_package: Callable[[str], bool] | None = None,
                environ: Mapping[str, str] | None = None) -> LaunchPlan:
    """Decide the launch from the argument values (see the module comment).

    Args:
        args: launch argument -> value (strings, as launch gives them).
        share: the package's share directory (config/ inside).
        have_executable: whether a command is on PATH (default shutil.which).
        have_package: whether a ROS package is installed (default: the ament index).
        environ: the launching environment (default os.environ), for `dds_environment`.

    Raises:
        ValueError / FileNotFoundError: a bad argument, naming it.
    """
    import shutil

    which = have_executable or (lambda exe: shutil.which(exe) is not None)
    has_pkg = have_package or _ament_has
    get = {k: str(v) for k, v in args.items()}.get
    for label in ("params_file", "bag", "kitti_sequence"):
        path = get(label, "")
        if path and not os.path.exists(path):
            raise FileNotFoundError(f"launch argument {label}: {path} does not exist")
    preset_arg = get("topic_preset", "auto")
    if preset_arg not in ("auto", "kitti2bag", "none"):
        raise ValueError(f"launch argument topic_preset:={preset_arg!r}: choose auto, kitti2bag or none")
    player_arg = get("bag_player", "auto")
    if player_arg not in ("auto", "ros2", "sgn"):
        raise ValueError(f"launch argument bag_player:={player_arg!r}: choose auto, ros2 or sgn")
    namespace = get("namespace", "").strip("/")
    remappings = parse_remappings(get("remappings", ""))
    bag, seq = get("bag", ""), get("kitti_sequence", "")
    if bag and seq:
        raise ValueError("launch arguments bag and kitti_sequence: give one input, not both")
    plan = LaunchPlan([], namespace, remappings, "")
    plan.environment, dds_line = dds_environment(share, os.environ if environ is None else environ)
    plan.infos.append(dds_line)

    layers: list[dict[str, Any]] = [node_section(share / "config" / "sgn.yaml", namespace=namespace)]
    preset: dict[str, Any] = {}
    if bag and preset_arg == "auto":
        from sgn_ros.ros.bag_flavour import detect_bag_flavour
        from sgn_ros.ros.replay import inspect_bag, node_parameters

        summary = inspect_bag(bag)
        if summary.ros1 or summary.ros1_layout or summary.zero_k_info:
            raise ValueError(f"launch argument bag: {bag} holds ROS 1 messages or empty CameraInfo K (kitti2bag); "
                             f"run `sgn-ros replay {bag} --out DIR` (it converts them), or convert it with "
                             "`rosbags-convert --src BAG --dst DIR --dst-typestore ros2_humble`")
        flavour = detect_bag_flavour(summary.topics, summary.frames)
        preset = node_parameters(flavour, summary)
        plan.infos.append(f"bag {bag}: {flavour.description}; sgn_node reads {preset['image_topic']}")
    elif preset_arg == "kitti2bag" or (preset_arg == "auto" and seq):
        preset = node_section(share / "config" / "kitti2bag_remap.yaml", namespace=namespace)
    if preset:
        layers.append(preset)
    if get("params_file", ""):
        layers.append(node_section(get("params_file", ""), namespace=namespace))
    given = {k: get(k, "") for k in OVERRIDES if get(k, "")}
    if get("use_sim_time", ""):
        given["use_sim_time"] = _truthy(get("use_sim_time", ""), "use_sim_time")
    if given:
        layers.append(given)
    plan.node_parameters = layers
    final: dict[str, Any] = {}
    for layer in layers:
        final.update(layer)
    plan.grid_frame = str(final.get("grid_frame", ""))
    plan.image_topic = resolve_topic(str(final.get("image_topic", "image")), namespace, remappings)

    plan.rviz = _truthy(get("rviz", "false"), "rviz")
    if plan.rviz and not has_pkg("rviz2"):
        plan.rviz = False
        plan.warnings.append("rviz:=true but rviz2 is not installed (apt install ros-$ROS_DISTRO-rviz2): "
                             "running without RViz")
    readers = 2 if plan.rviz else 1
    sim_time = bool(final.get("use_sim_time", False))
    if seq:
        plan.player = {"kind": "kitti", "parameters": {
            "sequence_dir": seq, "rate_hz": float(get("kitti_rate", "10.0")), "publish_clock": sim_time,
            "wait_for_subscribers": readers}}
    elif bag:
        kind = player_arg
        ros2_bag = which("ros2") and has_pkg("rosbag2_py")
        if kind in ("auto", "ros2") and not ros2_bag:
            if kind == "ros2":
                plan.warnings.append("bag_player:=ros2 but `ros2 bag` is not installed "
                                     "(apt install ros-$ROS_DISTRO-rosbag2): playing with sgn_ros bag_player")
            kind = "sgn"
        elif kind == "auto":
            kind = "ros2"
        if kind == "ros2":
            plan.player = {"kind": "ros2", "cmd": ["ros2", "bag", "play", bag, "--clock", "--rate",
                                                   get("bag_rate", "1.0"), "--delay", get("bag_delay", "8.0")]}
        else:
            plan.player = {"kind": "sgn", "parameters": {
                "bag": bag, "rate": float(get("bag_rate", "1.0")), "publish_clock": True,
                "wait_for_subscribers": readers, "wait_topic": plan.image_topic}}
    return plan


def _ament_has(package: str) -> bool:
    try:
        from ament_index_python.packages import get_package_prefix

        get_package_prefix(package)
        return True
    except (ImportError, LookupError, ValueError):
        return False
