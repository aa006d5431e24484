# `sgn-ros demo` (what `make demo` runs): the whole ROS 2 path on a synthetic KITTI sequence, as a
# user would run it. It writes a synthetic SemanticKITTI sequence, starts a REAL sgn_node
# process and a kitti_player process (separate processes over DDS, private local domain),
# records the node's outputs to a rosbag2 (mcap), and then draws what RViz would show: per frame
# the camera image, the predicted semantic voxels seen from the camera and from above, and the
# ground-truth voxels the same way, plus a latency summary (JSON and text).
#
# Without a checkpoint the network has random weights: the log, the summary and every picture
# say "UNTRAINED" so that nobody mistakes the pictures for SGN's quality.
"""End-to-end ROS 2 demo on the synthetic world."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sgn_ros.fileio import atomic_path
from sgn_ros.geometry import invert_transform
from sgn_ros.labels import IGNORE_LABEL
from sgn_ros.ros.processes import REPO_ROOT, RosSession, ros_environment, start_node, stop_process

log = logging.getLogger("sgn_ros.demo")

#: SemanticKITTI has voxel labels every 5th frame; the demo plays those frames.
LABEL_STEP = 5
UNTRAINED_NOTE = "UNTRAINED weights (no checkpoint): random predictions"
#: fragments (pixel x voxel pairs) a camera-view rendering may make: bounds its memory (~1 GB).
FRAGMENT_BUDGET = 30_000_000


@dataclass
class DemoFrame:
    """One prediction received from sgn_node."""

    index: int  # frame index in the sequence
    labels: np.ndarray  # (X, Y, Z) uint8 training ids, 255 = no prediction
    corner: np.ndarray  # (4, 4) grid corner in the message frame
    latency_ms: float  # image stamp (wall clock at kitti_player) -> grid received here


@dataclass
class DemoResult:
    out: Path
    frames: list[DemoFrame] = field(default_factory=list)
    pictures: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _config_file(name: str) -> Path:
    from sgn_ros.config import config_dir

    return config_dir() / name


def _ground_truth(seq_dir: Path, index: int, dataset: str, grid: Any) -> np.ndarray | None:
    """Training ids (X, Y, Z) of frame `index` on `grid` (255 = invalid), or None without voxel labels."""
    from sgn_ros.data import kitti_io
    from sgn_ros.data.labels_preprocess import completion_remap_lut, full_scale_labels
    from sgn_ros.labels import load_label_set

    label = seq_dir / "voxels" / f"{index:06d}.label"
    if not label.is_file():
        return None
    raw = kitti_io.read_label(label, grid.dims)
    invalid = kitti_io.read_bitpacked(label.with_suffix(".invalid"), grid.dims)
    return full_scale_labels(raw, invalid, completion_remap_lut(load_label_set(dataset)), where=str(label))


def visible_shell(labels: np.ndarray) -> np.ndarray:
    """`labels` (X, Y, Z) with every drawn voxel whose six neighbours are all drawn set to 0.

    Such interior voxels can never be seen by a camera outside them; dropping them keeps the
    perspective rendering of dense predictions (an untrained network fills the whole volume)
    to the visible surface. Voxels on the grid border always stay.
    """
    drawn = (labels != 0) & (labels != IGNORE_LABEL)
    p = np.pad(drawn, 1, constant_values=False)
    interior = (p[:-2, 1:-1, 1:-1] & p[2:, 1:-1, 1:-1] & p[1:-1, :-2, 1:-1] & p[1:-1, 2:, 1:-1]
                & p[1:-1, 1:-1, :-2] & p[1:-1, 1:-1, 2:])
    out = labels.copy()
    out[drawn & interior] = 0
    return out


def splat_limit(num_voxels: int) -> int:
    """Largest splat half-size (pixels) that keeps render_perspective near `FRAGMENT_BUDGET` fragments."""
    side = np.sqrt(FRAGMENT_BUDGET / max(num_voxels, 1))
    return int(np.clip((side - 1) // 2, 2, 48))


def _camera_view(labels: np.ndarray, grid: Any, K: np.ndarray, lidar_to_cam: np.ndarray, size: tuple[int, int],
                 colors: np.ndarray) -> np.ndarray:
    from sgn_ros.viz.render import render_perspective

    shell = visible_shell(labels)
    n = int(np.count_nonzero((shell != 0) & (shell != IGNORE_LABEL)))
    return render_perspective(shell, grid, K, lidar_to_cam, size, colors, max_splat=splat_limit(n))


def render_frame(image: np.ndarray, pred: np.ndarray, pred_grid: Any, gt: np.ndarray | None, gt_grid: Any,
                 K: np.ndarray, lidar_to_cam: np.ndarray, colors: np.ndarray, title: str,
                 untrained: bool) -> np.ndarray:
    """The picture of one frame (H', W', 3) uint8: what RViz would show, next to the truth.

    Top row: camera image | predicted voxels seen by the camera | ground truth seen by the camera.
    Bottom row: predicted voxels from above | ground truth from above (vehicle at the bottom).
    """
    import cv2

    from sgn_ros.viz.render import render_bev, side_by_side

    h, w = image.shape[:2]
    warn = " [UNTRAINED]" if untrained else ""
    top = [image, _camera_view(pred, pred_grid, K, lidar_to_cam, (h, w), colors)]
    top_titles = [f"camera {title}", f"SGN prediction (camera view){warn}"]
    bev = [render_bev(pred, colors)]
    bev_titles = [f"SGN prediction (bird's-eye){warn}"]
    if gt is not None:
        top.append(_camera_view(gt, gt_grid, K, lidar_to_cam, (h, w), colors))
        top_titles.append("ground truth (camera view)")
        bev.append(render_bev(gt, colors))
        bev_titles.append("ground truth (bird's-eye)")
    size = max(256, min(h * 2, 512))  # both bird's-eye views at one size, whatever their grids
    bev = [cv2.resize(b, (size, size), interpolation=cv2.INTER_NEAREST) for b in bev]
    rows = [side_by_side(top, top_titles), side_by_side(bev, bev_titles)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    picture = np.concatenate(rows, axis=0)
    if untrained:
        banner = np.zeros((28, width, 3), np.uint8)
        banner[..., 0] = 160
        picture = np.concatenate([banner, picture], axis=0)
        cv2.putText(picture, UNTRAINED_NOTE, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return picture


def run_demo(out: str | Path, frames: int = 3, variant: str = "sgn-l-synth", checkpoint: str = "", device: str = "",
             dataset: str = "semantickitti", image_size: tuple[int, int] | None = None, rate_hz: float = 2.0,
             depth_source: str = "stereo", seed: int = 0, timeout: float = 300.0) -> DemoResult:
    """Run the demo into `out` (created); see the module comment. Returns what was made."""
    from sgn_ros.config import load_config
    from sgn_ros.data.synth import generate_sequence
    from sgn_ros.labels import load_label_set
    from sgn_ros.msg import SemanticVoxelGrid
    from sgn_ros.ros.bag_recorder import BagRecorder
    from sgn_ros.ros.decoders import stamp_to_ns, voxel_grid_to_arrays
    from sgn_ros.ros.kitti_sequence import KittiSequence, KittiTopics
    from sgn_ros.viz.render import save_png

    if frames < 1:
        raise ValueError(f"demo: --frames must be >= 1, got {frames}")
    if checkpoint and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"demo: checkpoint not found: {checkpoint}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    bag_dir = out / "outputs_bag"
    if bag_dir.exists():  # an earlier demo run into the same folder: `make demo` twice must work
        log.info("demo: replacing the recording of an earlier run in %s", bag_dir)
        shutil.rmtree(bag_dir)
    result = DemoResult(out=out)
    cfg = load_config(variant, dataset=dataset)
    checkpoint, weights_note = resolve_weights(cfg.name, checkpoint, "demo")
    untrained = not checkpoint
    t0 = time.monotonic()

    # 1. the synthetic sequence (frames 0, 5, 10, ...: the ones with voxel labels)
    n_frames = (frames - 1) * LABEL_STEP + 1
    synth_kwargs = {} if image_size is None else {"image_size": tuple(image_size)}
    seq_dir = Path(generate_sequence(out / "synthetic", sequence="00", frames=n_frames, seed=seed, depth=True,
                                     grid=cfg.grid, **synth_kwargs))  # ground truth on the grid predicted
    seq = KittiSequence(seq_dir)
    t_synth = time.monotonic() - t0
    log.info("demo: synthetic sequence %s (%d frames, %dx%d) in %.1f s", seq_dir, n_frames, seq.image_size[1],
             seq.image_size[0], t_synth)

    # 2. sgn_node and kitti_player as separate processes on a private local DDS domain
    env = ros_environment()
    topics = KittiTopics()
    camera_to_grid = invert_transform(seq.tr)  # the reference's convention: K of P2 with Tr (cam0)
    node_params = {"variant": str(variant), "dataset": dataset, "checkpoint": str(checkpoint), "device": device,
                   "depth_source": depth_source, "camera_to_grid": [float(v) for v in camera_to_grid.reshape(-1)],
                   "input_reliability": "reliable", "input_depth": 10, "publish_markers": True}
    files = [_config_file("sgn.yaml"), _config_file("kitti2bag_remap.yaml")]
    session = RosSession("sgn_demo", int(env["ROS_DOMAIN_ID"]))
    node, executor = session.node, session.executor
    grids: list[tuple[int, Any, float]] = []
    diagnostics: dict[str, str] = {}

    def on_grid(msg: Any) -> None:
        grids.append((stamp_to_ns(msg.header.stamp), msg, time.time_ns()))

    def on_diag(msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith("sgn_node"):
                diagnostics.update({kv.key: kv.value for kv in status.values})

    from diagnostic_msgs.msg import DiagnosticArray

    from sgn_ros.ros.qos import make_qos

    node.create_subscription(SemanticVoxelGrid, "/ssc/grid", on_grid, make_qos("reliable", 10))
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    recorder = BagRecorder(node, bag_dir, {
        "/ssc/grid": "sgn_ros/msg/SemanticVoxelGrid", "/ssc/points": "sensor_msgs/msg/PointCloud2",
        "/ssc/markers": "visualization_msgs/msg/MarkerArray", "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
        topics.left_image: "sensor_msgs/msg/Image", topics.left_info: "sensor_msgs/msg/CameraInfo",
    })
    node_log = open(logs / "sgn_node.log", "wb")  # noqa: SIM115  closed below
    player_log = open(logs / "kitti_player.log", "wb")  # noqa: SIM115
    procs = []
    stamps: dict[int, int] = {}
    try:
        sgn = start_node("sgn_ros.ros.node", env, params=node_params, params_files=files, log=node_log)
        procs.append(sgn)
        deadline = time.monotonic() + timeout
        t_start = time.monotonic()
        wait_until_ready(node, executor, sgn, deadline, logs / "sgn_node.log")
        t_ready = time.monotonic() - t_start
        log.info("demo: sgn_node ready in %.1f s; playing %d frame(s) at %.2f Hz", t_ready, frames, rate_hz)
        player = start_node("sgn_ros.ros.kitti_player", env, log=player_log, params={
            "sequence_dir": str(seq_dir), "rate_hz": float(rate_hz), "step": LABEL_STEP,
            "wait_for_subscribers": 2,  # sgn_node + the recorder here
            # closed loop: the next frame once sgn_node answered the last, so a slow CPU drops none
            "pace_topic": "/ssc/grid", "pace_timeout_s": float(timeout)
        })
        procs.append(player)
        while len(grids) < frames and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if sgn.poll() is not None:
                raise RuntimeError(f"sgn_node exited with code {sgn.returncode}; see {logs / 'sgn_node.log'}")
            if player.poll() is not None and player.returncode != 0:
                raise RuntimeError(f"kitti_player failed ({player.returncode}); see {logs / 'kitti_player.log'}")
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # last diagnostics / markers
            executor.spin_once(timeout_sec=0.1)
    finally:
        close_session(procs, recorder, session, [node_log, player_log])
    if len(grids) < frames:
        log.warning("demo: %d of %d predictions arrived within %.0f s (--timeout)", len(grids), frames, timeout)

    # 3. match predictions to frames by their image stamp (kitti_player logs wall stamps: read
    #    them back from the recorded camera images)
    from rosbags.rosbag2 import Reader

    with Reader(bag_dir) as reader:
        conns = [c for c in reader.connections if c.topic == topics.left_image]
        store_img = []
        for _, _, raw in reader.messages(connections=conns):
            store_img.append(raw)
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    for i, raw in enumerate(store_img):
        stamps[stamp_to_ns(deserialize_message(bytes(raw), Image).header.stamp)] = i * LABEL_STEP
    for stamp, msg, recv_ns in grids:
        labels, _, msg_grid, corner = voxel_grid_to_arrays(msg)
        if msg_grid.dims != cfg.grid.dims or not np.isclose(msg_grid.voxel_size, cfg.grid.voxel_size):
            raise RuntimeError(f"demo: sgn_node's /ssc/grid is {msg_grid.dims} voxels of {msg_grid.voxel_size} m, "
                               f"but {variant}'s grid is {cfg.grid.dims} of {cfg.grid.voxel_size} m")
        index = stamps.get(stamp, -1)
        result.frames.append(DemoFrame(index=index, labels=labels, corner=corner, latency_ms=(recv_ns - stamp) / 1e6))

    # 4. pictures
    label_set = load_label_set(dataset)
    colors = np.asarray(label_set.colors_rgb, dtype=np.uint8)
    for f in result.frames:
        if f.index < 0:
            continue
        gt = _ground_truth(seq_dir, f.index, dataset, cfg.grid)
        picture = render_frame(seq.left_image(f.index), f.labels, cfg.grid, gt, cfg.grid, seq.k_left, seq.tr, colors,
                               f"frame {f.index:06d}", untrained)
        path = out / f"frame_{f.index:06d}.png"
        save_png(path, picture)
        result.pictures.append(path)

    # 5. latency summary
    lat = np.array([f.latency_ms for f in result.frames])
    result.summary = {
        "untrained": untrained,
        "note": UNTRAINED_NOTE if untrained else weights_note,
        "variant": str(variant),
        "depth_source": depth_source,
        "frames_requested": frames,
        "frames_predicted": len(result.frames),
        "image_size": list(seq.image_size),
        "grid_dims": list(cfg.grid.dims),
        "synthetic_data_s": round(t_synth, 2),
        "node_startup_s": round(t_ready, 2),
        "end_to_end_latency_ms": {
            "per_frame": [round(float(v), 1) for v in lat],
            "mean": round(float(lat.mean()), 1) if lat.size else None,
            "max": round(float(lat.max()), 1) if lat.size else None,
        },
        "node_diagnostics": diagnostics,
        "recorded_messages": recorder.counts,
        "bag": str(bag_dir),
        "pictures": [str(p) for p in result.pictures],
        "total_s": round(time.monotonic() - t0, 2),
    }
    _write_atomic(out / "latency.json", json.dumps(result.summary, indent=2) + "\n")
    text = [f"sgn_ros demo: {result.summary['note']}",
            f"variant {variant}, depth source {depth_source}, image {seq.image_size[1]}x{seq.image_size[0]}, "
            f"grid {'x'.join(map(str, cfg.grid.dims))}",
            f"frames predicted: {len(result.frames)} / {frames}",
            f"node start-up (model build/load): {t_ready:.1f} s",
            "end-to-end latency (image published -> voxel grid received), ms: "
            + ", ".join(f"{v:.0f}" for v in lat)]
    for key in ("inference_ms_mean", "overhead_ms_mean", "latency_ms_mean", "frames_dropped"):
        if key in diagnostics:
            text.append(f"node diagnostics {key}: {diagnostics[key]}")
    text.append(f"outputs recorded to {bag_dir} (mcap): " + ", ".join(f"{k} {v}" for k, v in recorder.counts.items()))
    _write_atomic(out / "latency.txt", "\n".join(text) + "\n")
    log.info("demo: done in %.1f s\n%s", time.monotonic() - t0, "\n".join(text))
    return result


def resolve_weights(config_name: str, checkpoint: str, what: str) -> tuple[str, str]:
    """(checkpoint, note): the given file, else the variant's bundled weights, else "" (UNTRAINED,
    logged as a warning so that nobody mistakes random predictions for SGN's)."""
    if checkpoint:
        return checkpoint, f"checkpoint {checkpoint}"
    from sgn_ros.weights import SYNTHETIC_ONLY_NOTE, bundled_checkpoint

    bundled = bundled_checkpoint(config_name)
    if bundled is not None:
        note = f"{bundled.name}: {SYNTHETIC_ONLY_NOTE}"
        log.info("%s: %s", what, note)
        return str(bundled), note
    log.warning("%s: %s", what, UNTRAINED_NOTE)
    return "", UNTRAINED_NOTE


def close_session(procs: list, recorder: Any, session: RosSession, logs: list) -> None:
    """Stop the child nodes (SIGINT, newest first), finish the recording, end this process's ROS."""
    for p in reversed(procs):
        stop_process(p)
    recorder.close()
    session.close()
    for f in logs:
        f.close()


def wait_until_ready(node: Any, executor: Any, sgn: Any, deadline: float, node_log: Path) -> None:
    """Spin until sgn_node publishes /ssc/grid (it does once its model is loaded).

    Raises:
        RuntimeError: sgn_node exited first; TimeoutError: not ready by `deadline` (monotonic).
    """
    while node.count_publishers("/ssc/grid") < 1:
        executor.spin_once(timeout_sec=0.1)
        if sgn.poll() is not None:
            raise RuntimeError(f"sgn_node exited with code {sgn.returncode}; see {node_log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"sgn_node not ready in time; see {node_log}")


def _write_atomic(path: Path, text: str) -> None:
    with atomic_path(path, fsync=False) as tmp:
        tmp.write_text(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (pictures, bag, summary)")
    parser.add_argument("--frames", type=int, default=3, help="labelled frames to predict (0, 5, 10, ...)")
    parser.add_argument("--variant", default="sgn-l-synth",
                        help="sgn-l-synth (bundled weights) | sgn-t | sgn-s | sgn-l or a config YAML")
    parser.add_argument("--dataset", default="semantickitti", help="label set")
    parser.add_argument("--checkpoint", default="",
                        help="weights; without: the variant's bundled weights, else UNTRAINED random weights")
    parser.add_argument("--device", default="", help="torch device for sgn_node (default: CUDA if available)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="synthetic image size (default: KITTI's 376 x 1241)")
    parser.add_argument("--rate-hz", type=float, default=2.0,
                        help="kitti_player's highest rate; it also waits for each prediction before the next frame")
    parser.add_argument("--depth-source", choices=("depth_image", "stereo"), default="stereo",
                        help="sgn_node depth input: the synthetic depth maps or stereo from the image pair")
    parser.add_argument("--seed", type=int, default=0, help="synthetic world seed")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the node's predictions")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if os.environ.get("AMENT_PREFIX_PATH") is None:
        log.warning("demo: AMENT_PREFIX_PATH is not set: `source scripts/ros_env.sh` first (see %s)", REPO_ROOT)
    result = run_demo(args.out, frames=args.frames, variant=args.variant, checkpoint=args.checkpoint,
                      device=args.device, dataset=args.dataset, image_size=args.image_size, rate_hz=args.rate_hz,
                      depth_source=args.depth_source, seed=args.seed, timeout=args.timeout)
    return 0 if result.frames and len(result.pictures) == len(result.frames) else 1
