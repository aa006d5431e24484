# `sgn-ros replay` end to end on each KITTI bag format, with default settings (only the network
# reduced: test/configs/sgn_tiny.yaml, and a slow playback rate so that a CPU keeps up):
#   * kitti2mcap (the real PyPI tool) on a synthetic raw drive      -> MCAP file, LiDAR points
#   * kitti2bag raw_sync (ROS 1; format written with rosbags, see kitti2bag_format.py), read
#     directly, and through the real `rosbags-convert`              -> stereo
#   * kitti2bag odom (ROS 1, CameraInfo K empty), read directly      -> stereo, K from P
#   * sgn-ros kitti-to-bag                                          -> stereo
# Each runs a real sgn_node and bag_player over DDS and must record predictions and draw pictures.
"""sgn-ros replay."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sgn_ros.ros.processes import ros_environment

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "test" / "configs" / "sgn_tiny.yaml"
sys.path.insert(0, str(ROOT / "test"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sgn_ros.data.synth import generate_sequence
    from sgn_ros.data.synth.raw_drive import write_raw_drive

    root = tmp_path_factory.mktemp("replay")
    seq_dir = generate_sequence(root / "odo", frames=2, image_size=(96, 320), depth=True)
    write_raw_drive(seq_dir, root / "raw", point_step=3)
    return root, seq_dir


def _replay(bag: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "sgn_ros", "replay", str(bag), "--out", str(out), "--variant", str(TINY),
           "--rate", "0.1", "--timeout", "200"]
    proc = subprocess.run(cmd, env=ros_environment(), capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "UNTRAINED" in proc.stdout + proc.stderr
    result = json.loads((out / "replay.json").read_text())
    assert result["frames_predicted"] == 2 and len(result["pictures"]) == 2, result
    assert result["recorded_messages"]["/ssc/grid"] == 2
    assert result["recorded_messages"].get("/ssc/markers", 0) >= 1  # markers on, recorded
    assert list((out / "outputs_bag").glob("*.mcap"))
    return result


@pytest.mark.slow
@pytest.mark.ros
def test_kitti2mcap(world, tmp_path) -> None:
    exe = shutil.which("kitti2mcap", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("kitti2mcap (requirements/dev.txt) not installed")
    root, _ = world
    mcap = tmp_path / "drive.mcap"
    subprocess.run([exe, "--date", "2011_09_26", "--drive", "0001", "--kitti-dir", str(root / "raw"),
                    "--output", str(mcap)], check=True, capture_output=True, timeout=120)
    r = _replay(mcap, tmp_path / "out")
    assert r["converter"] == "kitti2mcap" and r["node_parameters"]["depth_source"] == "points"
    assert r["node_parameters"]["image_topic"] == "/kitti/camera_color_left/image_raw"
    assert r["camera_to_grid"] is not None  # from the MCAP's /tf_static


@pytest.mark.slow
@pytest.mark.ros
def test_kitti2bag_raw_direct_and_converted(world, tmp_path) -> None:
    pytest.importorskip("pykitti")
    from kitti2bag_format import write_kitti2bag_raw

    root, _ = world
    bag = write_kitti2bag_raw(root / "raw", tmp_path / "kitti_2011_09_26_drive_0001_sync.bag")
    r = _replay(bag, tmp_path / "direct")
    assert r["converter"] == "kitti2bag-raw" and r["node_parameters"]["depth_source"] == "stereo"
    assert Path(r["played"]).name == "input_bag"
    converted = tmp_path / "converted"
    exe = shutil.which("rosbags-convert", path=str(Path(sys.executable).parent))
    subprocess.run([exe, "--src", str(bag), "--dst", str(converted)], check=True, capture_output=True, timeout=120)
    r = _replay(converted, tmp_path / "via_rosbags_convert")
    # plain rosbags-convert keeps ROS 1 layouts (header.seq) in the rosbag2: replay converts them
    assert r["converter"] == "kitti2bag-raw" and Path(r["played"]).name == "input_bag"


@pytest.mark.slow
@pytest.mark.ros
def test_kitti2bag_odom_direct(world, tmp_path) -> None:
    from kitti2bag_format import write_kitti2bag_odom

    _, seq_dir = world
    bag = write_kitti2bag_odom(seq_dir, tmp_path / "kitti_data_odometry_color_sequence_00.bag")
    r = _replay(bag, tmp_path / "out")
    assert r["converter"] == "kitti2bag-odom"


@pytest.mark.slow
@pytest.mark.ros
def test_kitti_to_bag(world, tmp_path) -> None:
    _, seq_dir = world
    bag = tmp_path / "ours"
    subprocess.run([sys.executable, "-m", "sgn_ros", "kitti-to-bag", "--sequence-dir", str(seq_dir), "--out", str(bag)],
                   check=True, capture_output=True, timeout=120, env=ros_environment())
    r = _replay(bag, tmp_path / "out")
    assert r["converter"] == "sgn-kitti" and r["node_parameters"]["odom_topic"] == "/kitti/odom"


def test_bad_bag_is_one_line_and_exit_2(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sgn_ros", "replay", str(tmp_path / "nope"), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "bag not found" in proc.stdout and not (tmp_path / "o").exists()
