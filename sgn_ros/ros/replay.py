# `sgn-ros replay BAG --out DIR`: any KITTI bag through a real sgn_node in one command. It reads
# the bag (rosbag2 folder, a bare .mcap/.db3 file, or a ROS 1 .bag), recognises the converter
# that wrote it (bag_flavour.py), derives the node's topics, depth source and camera pose from
# the bag's topics and /tf_static, then runs sgn_node and bag_player as separate processes over
# DDS on a private local domain (as `sgn-ros demo` does), records the node's outputs to
# DIR/outputs_bag, and draws one picture per prediction. The player waits for the topic the
# node really subscribes (its image topic), never a hard-coded name.
#
# ROS 1 bags (kitti2bag) are converted to a rosbag2 in DIR/input_bag first (CDR messages, /tf_static
# offered latched); kitti2bag's odometry mode leaves CameraInfo K all zeros, which is filled in
# from P on the way (the images are rectified, so K = P[:, :3]). Other bags play as they are.
"""Replay a KITTI rosbag through sgn_node and record + draw its predictions."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sgn_ros.ros.bag_flavour import BagPreset, detect_bag_flavour, static_transform, transform_matrix
from sgn_ros.ros.processes import RosSession, ros_environment, start_node

log = logging.getLogger("sgn_ros.replay")

TF_TOPICS = ("/tf", "/tf_static")


@dataclass
class BagSummary:
    """What `inspect_bag` found: types, message counts, TF frames and static edges."""

    path: Path
    ros1: bool
    topics: dict[str, str]
    counts: dict[str, int]
    frames: set[str] = field(default_factory=set)
    static_edges: list[tuple[str, str, np.ndarray]] = field(default_factory=list)
    zero_k_info: set[str] = field(default_factory=set)  # CameraInfo topics whose K is all zeros
    ros1_layout: bool = False  # ROS 1 message definitions (header.seq) in a rosbag2: plain rosbags-convert


def _is_ros1(path: Path) -> bool:
    return path.is_file() and path.suffix == ".bag"


def inspect_bag(path: str | Path) -> BagSummary:
    """Read a bag's connections and its TF messages (all of /tf_static, the first /tf ones)."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"replay: bag not found: {path}")
    with AnyReader([path]) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        counts: dict[str, int] = {}
        for c in reader.connections:
            counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
        s = BagSummary(path, _is_ros1(path), topics, counts)
        tf_conns = [c for c in reader.connections if c.topic in TF_TOPICS]
        info_conns = [c for c in reader.connections if c.msgtype == "sensor_msgs/msg/CameraInfo"]
        seen_dynamic = 0
        for conn, _, raw in reader.messages(connections=tf_conns + info_conns):
            msg = reader.deserialize(raw, conn.msgtype)
            s.ros1_layout = s.ros1_layout or hasattr(getattr(msg, "header", None), "seq") or hasattr(msg, "K")
            if conn.msgtype == "sensor_msgs/msg/CameraInfo":
                if not np.any(np.asarray(getattr(msg, "k", getattr(msg, "K", None)))):
                    s.zero_k_info.add(conn.topic)
                continue
            if conn.topic == "/tf":
                seen_dynamic += 1
                if seen_dynamic > 50:
                    continue
            for t in msg.transforms:
                s.frames.update((t.header.frame_id, t.child_frame_id))
                if conn.topic == "/tf_static":
                    tr, q = t.transform.translation, t.transform.rotation
                    s.static_edges.append((t.header.frame_id, t.child_frame_id,
                                           transform_matrix((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))))
    return s


def prepare_bag(summary: BagSummary, out: Path, distro: str = "humble") -> Path:
    """The bag bag_player plays: the input itself, or a rosbag2 (mcap) in `out` for ROS 1 bags, for
    rosbag2s holding ROS 1 message layouts (`rosbags-convert` without ``--dst-typestore``: DDS
    subscribers would misread them) and for bags whose CameraInfo K is empty (kitti2bag odom).
    /tf_static is offered latched."""
    if not summary.ros1 and not summary.ros1_layout and not summary.zero_k_info:
        return summary.path
    from rosbags.highlevel import AnyReader

    from sgn_ros.ros.rosbag_io import bag_qos, open_writer, typestore

    if out.exists():
        shutil.rmtree(out)
    store = typestore(distro)
    writer = open_writer(out)
    with AnyReader([summary.path]) as reader:
        conns = {}
        for c in reader.connections:
            if c.topic in conns:
                continue
            if c.msgtype not in store.types:
                log.warning("replay: not converting %s: no ROS 2 definition of %s", c.topic, c.msgtype)
                continue
            conns[c.topic] = writer.add_connection(c.topic, c.msgtype, typestore=store, offered_qos_profiles=[
                bag_qos(transient_local=c.topic == "/tf_static")])
        for c, stamp, raw in reader.messages(connections=[c for c in reader.connections if c.topic in conns]):
            msg = _ros2(reader.deserialize(raw, c.msgtype), c.msgtype, store)
            if c.topic in summary.zero_k_info:
                msg.k = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)[:, :3].reshape(-1).copy()
            writer.write(conns[c.topic], stamp, store.serialize_cdr(msg, c.msgtype))
    writer.close()
    return out


def _ros2(msg: Any, msgtype: str, store: Any) -> Any:
    """`msg` (deserialized from a ROS 1 bag by rosbags) as the ROS 2 class of `msgtype`: ROS 1
    headers carry `seq`, which ROS 2 dropped (nested headers, e.g. in TFMessage, included), and
    some ROS 1 fields are upper case (CameraInfo's D, K, R, P)."""
    from dataclasses import fields, is_dataclass

    def conv(value: Any, cls: Any) -> Any:
        if not is_dataclass(value):
            if isinstance(value, list):
                return [conv(v, None) for v in value]
            return value
        name = getattr(value, "__msgtype__", "")
        target = store.types.get(name) if name else None
        target = target or cls or type(value)
        if not is_dataclass(target):
            return value
        have = {f.name.lower(): f.name for f in fields(value)}
        kwargs = {f.name: conv(getattr(value, have[f.name.lower()]), None) for f in fields(target)
                  if f.name.lower() in have}
        return target(**kwargs)

    return conv(msg, store.types[msgtype])


def node_parameters(preset: BagPreset, summary: BagSummary, depth_source: str = "") -> dict[str, Any]:
    """sgn_node parameters for a bag: the preset's topics and frames, plus the camera pose in the
    grid frame (and the LiDAR's, for points) from /tf_static where the bag has them."""
    params = preset.node_parameters(depth_source)
    if preset.camera_frame and summary.static_edges:
        try:
            pose = static_transform(summary.static_edges, preset.grid_frame, preset.camera_frame)
            params["camera_to_grid"] = [float(v) for v in pose.reshape(-1)]
        except ValueError as exc:
            log.warning("replay: %s; using sgn.yaml's camera_to_grid (KITTI's typical camera pose)", exc)
    if preset.lidar_frame and preset.lidar_frame != preset.grid_frame and summary.static_edges:
        pose = static_transform(summary.static_edges, preset.grid_frame, preset.lidar_frame)
        params["points_to_grid"] = [float(v) for v in pose.reshape(-1)]
    elif preset.lidar_frame == preset.grid_frame:
        params["points_to_grid"] = [0.0] * 6
    return params


def _image_rgb(msg: Any, msgtype: str) -> np.ndarray:
    if msgtype.endswith("CompressedImage"):
        from sgn_ros.ros.compressed import compressed_image_to_rgb

        return compressed_image_to_rgb(msg)
    from rosbags.image import message_to_cvimage

    img = message_to_cvimage(msg, "rgb8")
    return np.ascontiguousarray(img)


def run_replay(bag: str | Path, out: str | Path, variant: str = "sgn-l", checkpoint: str = "", device: str = "",
               dataset: str = "semantickitti", depth_source: str = "", rate: float = 1.0, frames: int = 0,
               timeout: float = 300.0) -> dict[str, Any]:
    """Replay `bag` through sgn_node into `out` (module comment); returns the summary written to
    out/replay.json. `frames` > 0: stop after that many predictions."""
    from rosbags.highlevel import AnyReader

    from sgn_ros.config import load_config
    from sgn_ros.labels import load_label_set
    from sgn_ros.msg import SemanticVoxelGrid
    from sgn_ros.ros.bag_recorder import BagRecorder
    from sgn_ros.ros.decoders import stamp_to_ns, voxel_grid_to_arrays
    from sgn_ros.ros.demo import (
        _config_file,
        _write_atomic,
        close_session,
        render_frame,
        resolve_weights,
        wait_until_ready,
    )
    from sgn_ros.ros.qos import make_qos
    from sgn_ros.viz.render import save_png

    if rate <= 0:
        raise ValueError(f"replay: --rate must be > 0, got {rate}")
    if checkpoint and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"replay: checkpoint not found: {checkpoint}")
    t0 = time.monotonic()
    out = Path(out)
    summary = inspect_bag(bag)
    preset = detect_bag_flavour(summary.topics, summary.frames)
    params = node_parameters(preset, summary, depth_source)
    log.info("replay: %s is a %s bag; sgn_node reads %s", summary.path, preset.description,
             ", ".join(f"{k}={v}" for k, v in params.items() if k.endswith("_topic") or k == "depth_source"))
    for note in preset.notes:
        log.info("replay: note: %s", note)
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    play = prepare_bag(summary, out / "input_bag")
    if play != summary.path:
        log.info("replay: converted to rosbag2 %s", play)
    bag_dir = out / "outputs_bag"
    if bag_dir.exists():
        shutil.rmtree(bag_dir)

    cfg = load_config(variant, dataset=dataset)
    checkpoint, weights_note = resolve_weights(cfg.name, checkpoint, "replay")
    untrained = not checkpoint
    params.update({"variant": str(variant), "dataset": dataset, "checkpoint": str(checkpoint), "device": device,
                   "input_reliability": "reliable", "input_depth": 10})
    image_topic = params["image_topic"]
    n_images = summary.counts.get(image_topic, 0)
    wanted = min(frames, n_images) if frames > 0 else n_images

    env = ros_environment()
    session = RosSession("sgn_replay", int(env["ROS_DOMAIN_ID"]))
    node, executor = session.node, session.executor
    grids: list[Any] = []
    node.create_subscription(SemanticVoxelGrid, "/ssc/grid", grids.append, make_qos("reliable", 10))
    recorder = BagRecorder(node, bag_dir, {"/ssc/grid": "sgn_ros/msg/SemanticVoxelGrid",
                                           "/ssc/points": "sensor_msgs/msg/PointCloud2",
                                           "/ssc/markers": "visualization_msgs/msg/MarkerArray",
                                           "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"})
    node_log = open(logs / "sgn_node.log", "wb")  # noqa: SIM115  closed below
    player_log = open(logs / "bag_player.log", "wb")  # noqa: SIM115
    procs = []
    t_ready = 0.0
    try:
        sgn = start_node("sgn_ros.ros.node", env, params=params, params_files=[_config_file("sgn.yaml")],
                         log=node_log)
        procs.append(sgn)
        deadline = time.monotonic() + timeout
        wait_until_ready(node, executor, sgn, deadline, logs / "sgn_node.log")
        t_ready = time.monotonic() - t0
        player = start_node("sgn_ros.ros.bag_player", env, log=player_log, params={
            "bag": str(play), "rate": float(rate), "wait_topic": image_topic, "wait_for_subscribers": 1})
        procs.append(player)
        quiet_until = None
        while len(grids) < wanted and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if sgn.poll() is not None:
                raise RuntimeError(f"sgn_node exited with code {sgn.returncode}; see {logs / 'sgn_node.log'}")
            if player.poll() is not None:
                if player.returncode != 0:
                    raise RuntimeError(f"bag_player failed ({player.returncode}); see {logs / 'bag_player.log'}")
                quiet_until = quiet_until or time.monotonic() + 30.0  # the node finishes its queue
                if time.monotonic() > quiet_until:
                    break
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
    finally:
        close_session(procs, recorder, session, [node_log, player_log])
    if len(grids) < wanted:
        log.warning("replay: %d of %d frames predicted; see %s", len(grids), wanted, logs)

    # pictures: the bag's image and camera_info at each prediction's stamp
    colors = np.asarray(load_label_set(dataset).colors_rgb, dtype=np.uint8)
    stamps = {stamp_to_ns(g.header.stamp): g for g in grids}
    cam_to_grid = np.asarray(params.get("camera_to_grid", np.eye(4).reshape(-1)), dtype=float)
    lidar_to_cam = np.linalg.inv(cam_to_grid.reshape(4, 4)) if cam_to_grid.size == 16 else None
    pictures = []
    with AnyReader([Path(play)]) as reader:
        infos = {}  # stamp -> K (CameraInfo may come after its image in the bag)
        for c, _, raw in reader.messages(connections=[c for c in reader.connections
                                                      if c.topic == params["camera_info_topic"]]):
            msg = reader.deserialize(raw, c.msgtype)
            infos[stamp_to_ns(msg.header.stamp)] = np.asarray(msg.k, dtype=float).reshape(3, 3)
        for c, _, raw in reader.messages(connections=[c for c in reader.connections if c.topic == image_topic]):
            msg = reader.deserialize(raw, c.msgtype)
            stamp = stamp_to_ns(msg.header.stamp)
            k = infos.get(stamp, next(iter(infos.values()), None))
            g = stamps.get(stamp)
            if g is None or k is None or lidar_to_cam is None:
                continue
            labels, _, _, _ = voxel_grid_to_arrays(g)
            index = len(pictures)
            picture = render_frame(_image_rgb(msg, c.msgtype), labels, cfg.grid, None, None, k, lidar_to_cam,
                                   colors, f"{image_topic} #{index}", untrained)
            path = out / f"frame_{index:06d}.png"
            save_png(path, picture)
            pictures.append(str(path))
    result = {
        "bag": str(summary.path), "converter": preset.name, "description": preset.description,
        "played": str(play), "node_parameters": {k: v for k, v in params.items() if k != "camera_to_grid"},
        "camera_to_grid": params.get("camera_to_grid"), "untrained": untrained,
        "note": weights_note, "images_in_bag": n_images,
        "frames_predicted": len(grids), "node_startup_s": round(t_ready, 2),
        "recorded_messages": recorder.counts, "outputs_bag": str(bag_dir), "pictures": pictures,
        "total_s": round(time.monotonic() - t0, 2),
    }
    _write_atomic(out / "replay.json", json.dumps(result, indent=2) + "\n")
    log.info("replay: %d prediction(s) of %d image(s); outputs in %s, pictures: %d", len(grids), n_images, bag_dir,
             len(pictures))
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 folder, .mcap / .db3 file, or ROS 1 .bag (kitti2bag)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (outputs_bag, pictures, replay.json)")
    parser.add_argument("--variant", default="sgn-l", help="sgn-t | sgn-s | sgn-l | sgn-l-synth or a config YAML")
    parser.add_argument("--checkpoint", default="", help="weights (.pth); without: bundled weights or UNTRAINED")
    parser.add_argument("--device", default="", help="torch device for sgn_node (default: CUDA if available)")
    parser.add_argument("--dataset", default="semantickitti", help="label set")
    parser.add_argument("--depth-source", default="", choices=("", "stereo", "depth_image", "points"),
                        help="sgn_node depth input (default: the best the bag has: stereo, depth_image, points)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--frames", type=int, default=0, help="stop after this many predictions (0: whole bag)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole replay")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        result = run_replay(args.bag, args.out, variant=args.variant, checkpoint=args.checkpoint, device=args.device,
                            dataset=args.dataset, depth_source=args.depth_source, rate=args.rate, frames=args.frames,
                            timeout=args.timeout)
    except (FileNotFoundError, ValueError) as exc:
        print(f"sgn-ros replay: {exc}")
        return 2
    return 0 if result["frames_predicted"] > 0 else 1
