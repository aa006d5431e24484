# `sgn-ros demo` end to end, as `make demo` runs it but on a reduced network (test/configs/
# sgn_tiny.yaml: the real SGN-L code at toy size) and small synthetic images: a real sgn_node
# process and a kitti_player process over DDS, the outputs recorded to mcap, pictures drawn.
"""sgn-ros demo test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from sgn_ros.ros.processes import ros_environment

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "test" / "configs" / "sgn_tiny.yaml"


@pytest.mark.slow
@pytest.mark.ros
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "sgn_ros", "demo", "--out", str(out), "--frames", "2", "--variant", str(TINY),
           "--image-size", "96", "320", "--rate-hz", "1.0", "--timeout", "150", "--depth-source", "depth_image"]
    proc = subprocess.run(cmd, env=ros_environment(), capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "UNTRAINED" in proc.stderr + proc.stdout  # said plainly in the log

    summary = json.loads((out / "latency.json").read_text())
    assert summary["untrained"] is True and summary["frames_predicted"] == 2
    assert summary["grid_dims"] == [64, 64, 8]
    lat = summary["end_to_end_latency_ms"]["per_frame"]
    assert len(lat) == 2 and all(0 < v < 120_000 for v in lat)
    assert "end-to-end latency" in (out / "latency.txt").read_text()

    # pictures of the labelled frames 0 and 5: camera, prediction and ground truth, UNTRAINED banner
    pictures = sorted(out.glob("frame_*.png"))
    assert [p.name for p in pictures] == ["frame_000000.png", "frame_000005.png"]
    for p in pictures:
        img = np.asarray(PILImage.open(p).convert("RGB"))
        assert img.shape[0] > 96 * 2 and img.shape[1] >= 320 * 3  # two rows; three panels on top
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # not a blank or single-colour picture
        banner = img[2:20, :40].reshape(-1, 3)
        assert np.median(banner[:, 0]) >= 150 and np.median(banner[:, 2]) < 60  # the red UNTRAINED banner

    # the recorded node outputs read back and decode as the node's messages
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from sgn_ros.msg import SemanticVoxelGrid

    from sgn_ros.ros.decoders import voxel_grid_to_arrays

    bag = out / "outputs_bag"
    assert list(bag.glob("*.mcap"))
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == "/ssc/grid"]
        grids = [deserialize_message(bytes(raw), SemanticVoxelGrid) for _, _, raw in reader.messages(connections=conns)]
        topics = {c.topic for c in reader.connections}
        markers = [c for c in reader.connections if c.topic == "/ssc/markers"]
        n_markers = sum(1 for _ in reader.messages(connections=markers))
    assert len(grids) == 2 and {"/ssc/points", "/diagnostics", "/kitti/camera_color_left/image"} <= topics
    assert n_markers >= 1 and markers[0].msgtype == "visualization_msgs/msg/MarkerArray"  # RViz's view recorded
    assert summary["recorded_messages"]["/ssc/markers"] == n_markers
    labels, _, grid, _ = voxel_grid_to_arrays(grids[0])
    assert labels.shape == (64, 64, 8) and grids[0].header.frame_id == "velo_link"
