# Tests of sgn_ros/ros/launch_plan.py, the decisions of launch/sgn.launch.py: parameter layers
# (checked against real rcl precedence in an rclpy process), the player's wait topic from the
# bag's converter with namespace and remappings, and fallbacks for missing rviz2 / `ros2 bag`.
"""sgn_ros.ros.launch_plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sgn_ros.ros.launch_plan import node_section, parse_remappings, plan_launch, resolve_topic
from sgn_ros.ros.processes import RosSession

ROOT = Path(__file__).resolve().parents[1]


def _plan(**args):
    return plan_launch(args, ROOT, have_executable=lambda exe: False, have_package=lambda pkg: False)


def _final(plan) -> dict:
    out = {}
    for layer in plan.node_parameters:
        out.update(layer)
    return out


def test_params_file_values_kept_unless_an_argument_is_given(tmp_path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text(yaml.safe_dump({"sgn_node": {"ros__parameters": {"variant": "sgn-s", "checkpoint": "/w.pth",
                                                                      "image_topic": "/cam/image"}}}))
    final = _final(_plan(params_file=str(user)))
    assert (final["variant"], final["checkpoint"], final["image_topic"]) == ("sgn-s", "/w.pth", "/cam/image")
    assert final["depth_source"] == node_section(ROOT / "config" / "sgn.yaml")["depth_source"]  # sgn.yaml below
    final = _final(_plan(params_file=str(user), variant="sgn-t", use_sim_time="true"))
    assert (final["variant"], final["checkpoint"], final["use_sim_time"]) == ("sgn-t", "/w.pth", True)
    assert "variant" not in _final(_plan()) or _final(_plan())["variant"] == node_section(
        ROOT / "config" / "sgn.yaml")["variant"]


def test_layers_follow_real_rcl_precedence(tmp_path) -> None:
    """launch_ros passes each dict layer as a `/**` params file, in order: rcl must then give the
    merged values (what `_final` computes) to a node named sgn_node."""
    pytest.importorskip("rclpy")
    user = tmp_path / "mine.yaml"
    user.write_text(yaml.safe_dump({"/**/sgn_node": {"ros__parameters": {"variant": "sgn-s", "device": "cpu"}}}))
    plan = _plan(params_file=str(user), kitti_sequence=str(tmp_path), device="cuda:1")
    args = []
    for i, layer in enumerate(plan.node_parameters):
        f = tmp_path / f"layer{i}.yaml"
        f.write_text(yaml.safe_dump({"/**": {"ros__parameters": layer}}))
        args += ["--params-file", str(f)]
    with RosSession("sgn_node", args=["x", "--ros-args", *args],
                    automatically_declare_parameters_from_overrides=True) as session:
        got = {name: session.node.get_parameter(name).value
               for name in ("variant", "device", "image_topic", "grid_frame")}
    final = _final(plan)
    assert got == {k: final[k] for k in got}
    assert got["variant"] == "sgn-s" and got["device"] == "cuda:1" and got["grid_frame"] == "velo_link"


def test_preset_file_lets_command_line_override(tmp_path) -> None:
    """config/kitti2bag_remap.yaml with `ros2 run ... --params-file ... -p image_topic:=X`: X wins."""
    pytest.importorskip("rclpy")
    args = ["x", "--ros-args", "--params-file", str(ROOT / "config" / "sgn.yaml"), "--params-file",
            str(ROOT / "config" / "kitti2bag_remap.yaml"), "-p", "image_topic:=/mine"]
    with RosSession("sgn_node", args=args, automatically_declare_parameters_from_overrides=True) as session:
        assert session.node.get_parameter("image_topic").value == "/mine"
        assert session.node.get_parameter("grid_frame").value == "velo_link"


def test_names() -> None:
    assert resolve_topic("image", "car1") == "/car1/image"
    assert resolve_topic("/kitti/image", "car1") == "/kitti/image"
    assert resolve_topic("image", "car1", {"image": "/cam/image_raw"}) == "/cam/image_raw"
    assert resolve_topic("image", "", {"image": "cam/image"}) == "/cam/image"
    assert parse_remappings("image:=/a, camera_info:=/b") == {"image": "/a", "camera_info": "/b"}
    with pytest.raises(ValueError, match="remappings"):
        parse_remappings("image=/a")


def test_player_waits_for_the_topic_the_node_subscribes(tmp_path) -> None:
    from sgn_ros.data.synth import generate_sequence
    from sgn_ros.ros.kitti_to_bag import write_bag

    seq = generate_sequence(tmp_path / "s", frames=1, image_size=(16, 48), depth=True)
    bag = tmp_path / "bag"
    write_bag(seq, bag)
    plan = _plan(bag=str(bag))  # no `ros2 bag` here: our player, with a say-so only when asked for ros2
    assert plan.player["kind"] == "sgn" and not plan.warnings
    assert plan.player["parameters"]["wait_topic"] == "/kitti/camera_color_left/image"
    plan = _plan(bag=str(bag), bag_player="ros2", namespace="car1", topic_preset="none")
    assert plan.player["kind"] == "sgn" and "ros2 bag" in plan.warnings[0]
    assert plan.player["parameters"]["wait_topic"] == "/car1/image"  # sgn.yaml's relative default, namespaced
    plan = _plan(bag=str(bag), remappings="/kitti/camera_color_left/image:=/other/image")
    assert plan.player["parameters"]["wait_topic"] == "/other/image"
    ros2 = plan_launch({"bag": str(bag)}, ROOT, have_executable=lambda exe: True, have_package=lambda pkg: True)
    assert ros2.player["kind"] == "ros2" and ros2.player["cmd"][:4] == ["ros2", "bag", "play", str(bag)]


def test_rviz_missing_warns_and_runs_on() -> None:
    plan = _plan(rviz="true")
    assert plan.rviz is False and "rviz2 is not installed" in plan.warnings[0]
    plan = plan_launch({"rviz": "true"}, ROOT, have_executable=lambda exe: True, have_package=lambda pkg: True)
    assert plan.rviz is True and not plan.warnings


def test_bad_arguments_name_themselves(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="params_file"):
        _plan(params_file=str(tmp_path / "none.yaml"))
    with pytest.raises(ValueError, match="bag_player"):
        _plan(bag_player="vlc")
    with pytest.raises(ValueError, match="rviz"):
        _plan(rviz="maybe")
    ros1 = tmp_path / "x.bag"
    from rosbags.rosbag1 import Writer

    with Writer(ros1):
        pass
    with pytest.raises(ValueError, match="sgn-ros replay"):
        _plan(bag=str(ros1))


def test_fastdds_profile_given_to_every_process_unless_the_user_chose_one() -> None:
    profile = str(ROOT / "config" / "fastdds_profile.xml")
    plan = plan_launch({}, ROOT, have_executable=lambda exe: False, have_package=lambda pkg: False, environ={})
    assert plan.environment == {"FASTDDS_DEFAULT_PROFILES_FILE": profile}
    assert any("shared-memory" in line for line in plan.infos)
    mine = plan_launch({}, ROOT, have_executable=lambda exe: False, have_package=lambda pkg: False,
                       environ={"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"})
    assert mine.environment == {} and any("/etc/mine.xml" in line for line in mine.infos)
    cyclone = plan_launch({}, ROOT, have_executable=lambda exe: False, have_package=lambda pkg: False,
                          environ={"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    assert cyclone.environment == {}


def test_fastdds_profile_parses_and_keeps_udp_for_other_machines() -> None:
    """The profile's transports: a shared-memory segment that holds a full-size frame's outputs
    (~13 MB) and UDPv4 beside it (RViz on another machine), replacing the builtin set."""
    import xml.etree.ElementTree as ET

    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(ROOT / "config" / "fastdds_profile.xml").getroot()
    kinds = {d.find("d:transport_id", ns).text: d for d in root.iterfind(".//d:transport_descriptor", ns)}
    used = [t.text for t in root.iterfind(".//d:participant/d:rtps/d:userTransports/d:transport_id", ns)]
    assert sorted(kinds[t].find("d:type", ns).text for t in used) == ["SHM", "UDPv4"]
    shm = next(kinds[t] for t in used if kinds[t].find("d:type", ns).text == "SHM")
    assert int(shm.find("d:segment_size", ns).text) >= 2 * 13_000_000
    assert int(shm.find("d:maxMessageSize", ns).text) <= int(shm.find("d:segment_size", ns).text)
    assert root.find(".//d:participant/d:rtps/d:useBuiltinTransports", ns).text == "false"
