# Static checks of launch/sgn.launch.py that run without the `launch` packages (not installable
# from PyPI): the file parses, declares the documented arguments, starts executables that the
# package installs, and every file it refers to exists; the RViz config shows the node's topics
# in the node's grid frame; the kitti2bag preset only sets parameters sgn_node declares and names
# the topics kitti_player publishes. The launch file's decisions live in sgn_ros/ros/launch_plan.py
# (test_launch_plan.py). (The real `ros2 launch` run is a manual check; `launch` is not
# installable in CI.)
"""launch/sgn.launch.py, config/sgn.rviz and config/kitti2bag_remap.yaml checks."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import yaml

from sgn_ros.ros.kitti_sequence import KittiFrames, KittiTopics

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "sgn.launch.py"
PLAN = ROOT / "sgn_ros" / "ros" / "launch_plan.py"
EXPECTED_ARGS = {"params_file", "checkpoint", "variant", "device", "use_sim_time", "rviz", "bag", "kitti_sequence",
                 "namespace", "remappings"}


def _tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def _arguments() -> dict[str, tuple[str, str]]:
    """The ARGUMENTS table of the launch file, evaluated as a literal."""
    for node in _tree().body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "ARGUMENTS":
            return ast.literal_eval(node.value)
    raise AssertionError("launch file has no ARGUMENTS table")


def _node_calls() -> list[dict[str, object]]:
    """Keyword arguments (literal ones) of every Node(...) call in the launch file."""
    calls = []
    for node in ast.walk(_tree()):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node":
            kw = {}
            for k in node.keywords:
                try:
                    kw[k.arg] = ast.literal_eval(k.value)
                except ValueError:
                    kw[k.arg] = None
            calls.append(kw)
    return calls


def test_launch_file_parses_and_declares_arguments():
    tree = _tree()
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    args = _arguments()
    assert EXPECTED_ARGS <= set(args), EXPECTED_ARGS - set(args)
    assert all(isinstance(d, str) and text for d, text in args.values())  # launch defaults are strings
    assert args["rviz"][0] == "false" and args["bag"][0] == "" and args["kitti_sequence"][0] == ""
    # arguments that set node parameters default to empty: a params file's values are kept unless given
    assert all(args[name][0] == "" for name in ("variant", "checkpoint", "device", "use_sim_time"))
    # every declared argument is read (a DeclareLaunchArgument per ARGUMENTS entry, values performed
    # and handed to launch_plan.plan_launch, which reads each one)
    src, plan = LAUNCH.read_text(), PLAN.read_text()
    assert "DeclareLaunchArgument(name" in src and "for name in ARGUMENTS" in src and "plan_launch(arg" in src
    for name in args:
        assert f'get("{name}"' in plan or name in plan.split("OVERRIDES = ")[1].split(")")[0], \
            f"launch argument {name} is declared but never used"


def test_launch_file_starts_installed_executables():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = {line.split("=")[0].strip() for line in cfg["options.entry_points"]["console_scripts"].splitlines()
               if line.strip()}
    cmake = (ROOT / "CMakeLists.txt").read_text()
    calls = _node_calls()
    ours = [c for c in calls if c.get("package") == "PACKAGE" or c.get("package") is None]
    execs = {c["executable"] for c in calls if c.get("executable")}
    assert {"sgn_node", "kitti_player", "bag_player", "rviz2"} <= execs
    for exe in execs - {"rviz2"}:
        assert exe in scripts, f"{exe} is not a console script in setup.cfg"
        assert (ROOT / "scripts" / exe).is_file() and exe in cmake, f"{exe} is not installed into lib/sgn_ros"
    assert ours  # the package's own nodes use the PACKAGE constant
    src = PLAN.read_text()
    assert '"ros2", "bag", "play"' in src and '"--clock"' in src  # bag path first: --clock takes an optional value


def test_referenced_files_exist():
    src = LAUNCH.read_text() + PLAN.read_text()
    for name in ("sgn.yaml", "kitti2bag_remap.yaml", "sgn.rviz"):
        assert f'"{name}"' in src
        assert (ROOT / "config" / name).is_file()
    # config/ and launch/ are installed to share/sgn_ros (colcon and pip installs)
    assert 'install(DIRECTORY launch config' in (ROOT / "CMakeLists.txt").read_text()
    assert '_tree("launch", "share/sgn_ros/launch")' in (ROOT / "setup.py").read_text()


def test_rviz_config_shows_node_outputs():
    from sgn_ros.ros.node import PARAMETERS

    rviz = yaml.safe_load((ROOT / "config" / "sgn.rviz").read_text())
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == PARAMETERS["grid_frame"].default
    displays = {d["Class"]: d for d in manager["Displays"]}
    cloud = displays["rviz_default_plugins/PointCloud2"]
    assert cloud["Topic"]["Value"] == "/" + PARAMETERS["output_points_topic"].default
    assert cloud["Color Transformer"] == "RGB8"
    markers = displays["rviz_default_plugins/MarkerArray"]
    assert markers["Topic"]["Value"] == "/" + PARAMETERS["output_markers_topic"].default
    assert displays["rviz_default_plugins/Image"]["Topic"]["Value"] == KittiTopics().left_image


def test_kitti2bag_preset_matches_node_and_player():
    from sgn_ros.ros.node import PARAMETERS

    preset = yaml.safe_load((ROOT / "config" / "kitti2bag_remap.yaml").read_text())
    (key, section), = preset.items()
    assert key == "/**"  # a `/**/sgn_node` key would beat `-p` on the command line (test_launch_plan.py)
    params = section["ros__parameters"]
    assert set(params) <= set(PARAMETERS), set(params) - set(PARAMETERS)  # sgn_node rejects unknown keys
    topics = KittiTopics()
    assert params["image_topic"] == topics.left_image
    assert params["camera_info_topic"] == topics.left_info
    assert params["right_image_topic"] == topics.right_image
    assert params["right_camera_info_topic"] == topics.right_info
    assert params["depth_topic"] == topics.depth
    assert params["points_topic"] == topics.points
    assert params["odom_topic"] == topics.odom
    assert params["grid_frame"] == KittiFrames().lidar
    # the documented remaps say the same as the parameters
    text = (ROOT / "config" / "kitti2bag_remap.yaml").read_text()
    for name in ("image_topic", "camera_info_topic", "right_image_topic", "right_camera_info_topic", "depth_topic",
                 "points_topic", "odom_topic"):
        assert f"-r {PARAMETERS[name].default}:={params[name]}" in text
