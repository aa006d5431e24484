#!/usr/bin/env python3
# Can sgn_node keep pace with the camera? Replays N synthetic frames at a fixed rate (default
# 10 Hz, as KITTI's cameras) through the REAL sgn_node process over DDS (started as test_node.py
# and the demo start it: `python -m sgn_ros.ros.node` with config/sgn.yaml on a private localhost
# domain), subscribes to all three outputs and prints a table: frames sent / answered, achieved
# output rate, end-to-end latency p50 / p95 (this process publishes the image -> the last of the
# three outputs with that stamp arrives here), the node's per-stage times read from its
# /diagnostics key-values (the pipeline's `stage.<name>.p50_ms` when the node publishes them, else
# the node's `<part>_ms_mean`), and drops. The last line reads
#     node overhead p50: N ms, output rate: R Hz
# where overhead = end-to-end latency minus the network and depth stage times (per frame from the
# first /diagnostics report after its outputs, then the median over frames): what the node
# itself (transport, decoding, encoding, publishing, waiting) adds around the work it must do.
# A warm-up frame (not counted) is answered first, so start-up and first-call costs are excluded.
# Each frame's input messages are serialized before its send time is taken and then published as
# bytes, as a (C++) camera driver has its message ready; --inputs-timed counts building them too.
# Run: source scripts/ros_env.sh && python bench/node_rate.py [--config tiny|full] [--frames 20]
#      [--rate 10] [--device cpu] [--depth-source points|depth_image|stereo] [--stereo-method sgm]
#      [--param NAME=VALUE ...] (any other node parameter, e.g. markers_merge_runs=false)
"""Output rate and latency of the real sgn_node process under a camera-rate replay."""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STAMP0 = 1_000_000_000  # seconds: far from 0
#: full size: a KITTI colour camera (P2 of sequence 00) and its 0.54 m stereo baseline
FULL_HW, FULL_K = (376, 1241), np.array([[718.856, 0.0, 607.1928], [0.0, 718.856, 185.2157], [0.0, 0.0, 1.0]])
TINY_HW, TINY_K = (70, 200), np.array([[110.0, 0.0, 97.0], [0.0, 110.0, 33.0], [0.0, 0.0, 1.0]])
BASELINE = 0.54
OUTPUTS = ("points", "markers", "grid")
#: the newest frame's own times in the node, from /diagnostics `last_frame_<key>_ms`
SPLIT = ("latency", "queued", "decode", "waiting", "publish")


def tiny_config(out_dir: Path) -> tuple[str, str]:
    """A tiny SGN-L (64 x 192 images, 64 x 64 x 8 grid, few channels) and a random checkpoint,
    as test_node.py uses: (config path, checkpoint path)."""
    import torch
    import yaml

    from sgn_ros.config import load_config
    from sgn_ros.grid import DEFAULT_GRID
    from sgn_ros.model import build_model
    from sgn_ros.model.checkpoint import save_checkpoint

    grid = DEFAULT_GRID.scaled(4)
    cfg_path = out_dir / "sgn-tiny.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "base": str(ROOT / "config" / "sgn-l.yaml"), "name": "sgn-tiny",
        "model": {"embed_dims": 16, "proposal_dims": [8, 8, 8, 8]},
        "data": {"image_size": [64, 192]},
        "grid": {"origin": list(grid.origin), "voxel_size": grid.voxel_size, "dims": list(grid.dims)},
    }))
    torch.manual_seed(0)
    ckpt = save_checkpoint(out_dir / "sgn-tiny.pth", build_model(str(cfg_path)), load_config(str(cfg_path)))
    return str(cfg_path), str(ckpt)


class Frames:
    """Synthetic camera input of one size: a textured image, its right partner (row bands of
    constant disparity), a road-plane depth map and grid-frame points (plane + random clutter)."""

    def __init__(self, hw: tuple[int, int], K: np.ndarray, grid, seed: int = 0) -> None:
        self.hw, self.K, self.grid = hw, K, grid
        rng = np.random.default_rng(seed)
        h, w = hw
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8).astype(np.uint16)
        self.left = ((noise + np.roll(noise, 1, 1) + np.roll(noise, 1, 0)) // 3).astype(np.uint8)
        disp = 4 + (np.arange(h) * 40 // h)  # pixels, larger lower in the image (nearer)
        self.right = np.stack([np.roll(self.left[v], -int(disp[v]), axis=0) for v in range(h)])
        self.depth = (BASELINE * K[0, 0] / disp[:, None].repeat(w, 1)).astype(np.float32)
        lo, hi = np.asarray(grid.origin), np.asarray(grid.upper)
        clutter = lo + rng.random((6000, 3)) * (hi - lo)
        plane = lo + rng.random((14000, 3)) * (hi - lo)
        plane[:, 2] = -1.7
        self.points = np.concatenate([clutter, plane]).astype(np.float32)


class Replay:
    """Publishers of camera input, subscribers of sgn_node's outputs and /diagnostics."""

    def __init__(self, domain_id: int) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from sgn_ros.msg import SemanticVoxelGrid
        from visualization_msgs.msg import MarkerArray

        from sgn_ros.ros.processes import RosSession
        from sgn_ros.ros.rcl_publish import SerializedPublisher

        self.session = RosSession(f"node_rate_{os.getpid()}", domain_id)
        self.node, self.executor = self.session.node, self.session.executor
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        topics = {"image": (Image, "image"), "info": (CameraInfo, "camera_info"),
                  "right_image": (Image, "right/image"), "right_info": (CameraInfo, "right/camera_info"),
                  "depth": (Image, "depth"), "points": (PointCloud2, "points")}
        self.pub = {k: self.node.create_publisher(t, topic, qos) for k, (t, topic) in topics.items()}
        self.senders = {k: SerializedPublisher(pub) for k, pub in self.pub.items()}
        self.arrivals: dict[str, dict[int, float]] = {k: {} for k in OUTPUTS}
        self.voxels: list[int] = []  # occupied voxels per frame (PointCloud2 width)
        self.bytes: dict[str, int] = {}  # the last message's size per output
        self.diagnostics: dict[str, str] = {}  # the last report
        self.timed: list[dict[str, str]] = []  # reports holding stage times (each covers recent frames only)
        self.timed_at: list[float] = []  # when each of them arrived
        for key, (typ, topic) in {"points": (PointCloud2, "ssc/points"), "markers": (MarkerArray, "ssc/markers"),
                                  "grid": (SemanticVoxelGrid, "ssc/grid")}.items():
            # raw: the arrival time is not the time this process takes to build Python objects
            # (a MarkerArray of 100k cubes takes seconds to deserialize)
            self.node.create_subscription(typ, topic, lambda m, k=key: self._arrived(k, m), qos, raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 10)

    def _arrived(self, key: str, raw: bytes) -> None:
        """The stamp read from the CDR bytes: after the 4-byte encapsulation header comes
        header.stamp (sec int32, nanosec uint32); a MarkerArray first has its marker count."""
        now = time.monotonic()
        off = 4
        if key == "markers":
            if len(raw) < 16 or struct.unpack_from("<I", raw, 4)[0] == 0:
                return
            off = 8
        sec, nanosec = struct.unpack_from("<iI", raw, off)
        self.arrivals[key].setdefault(sec * 1_000_000_000 + nanosec, now)
        if key == "points":  # header.frame_id (uint32 length + bytes), padding to 4, height, width
            end = 16 + struct.unpack_from("<I", raw, 12)[0]
            end += -end % 4
            self.voxels.append(struct.unpack_from("<I", raw, end + 4)[0])
        self.bytes[key] = len(raw)

    def _diag(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("sgn_node"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                if any(k.endswith("ms") or k.endswith("_ms_mean") for k, v in self.diagnostics.items()
                       if v not in ("nan", "")):
                    self.timed.append(self.diagnostics)
                    self.timed_at.append(time.monotonic())

    def done(self, stamp: int) -> float | None:
        """When the last of the three outputs of `stamp` arrived (None: not all yet)."""
        t = [a.get(stamp) for a in self.arrivals.values()]
        return None if any(v is None for v in t) else max(t)

    def spin_until(self, cond, timeout: float, proc=None) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"sgn_node exited with code {proc.returncode}")
            self.executor.spin_once(timeout_sec=0.01)
        return cond()

    def serialized(self, frames: Frames, stamp_ns: int, depth_source: str) -> list[tuple[str, bytes]]:
        """One frame's input messages, serialized, in publishing order (the image last: it
        completes the frame). Built before the frame's send time is taken: a camera driver
        (C++) writes its message in well under a millisecond, while building a 1.4 MB Image
        object here and serializing it takes 1-2 ms of this process, which is not the node's."""
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import CameraInfo, Image

        def header(frame: str):
            from std_msgs.msg import Header

            h = Header(frame_id=frame)
            h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            return h

        def image(arr: np.ndarray, encoding: str) -> Image:
            m = Image(header=header("camera"), height=arr.shape[0], width=arr.shape[1], encoding=encoding)
            m.step = arr.strides[0]
            m.data = arr.tobytes()
            return m

        def info(tx: float) -> CameraInfo:
            m = CameraInfo(header=header("camera"), height=frames.hw[0], width=frames.hw[1])
            m.k = [float(v) for v in frames.K.reshape(-1)]
            P = np.zeros((3, 4))
            P[:, :3] = frames.K
            P[0, 3] = tx
            m.p = [float(v) for v in P.reshape(-1)]
            return m

        if depth_source == "stereo":
            out = [("right_image", image(frames.right, "rgb8")), ("right_info", info(-frames.K[0, 0] * BASELINE))]
        elif depth_source == "depth_image":
            out = [("depth", image(frames.depth, "32FC1"))]
        else:
            out = [("points", _cloud(frames.points, header("sgn_grid")))]
        out += [("info", info(0.0)), ("image", image(frames.left, "rgb8"))]
        return [(k, serialize_message(m)) for k, m in out]

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        """Publish serialized input messages (through rcl directly, as sgn_node publishes)."""
        for key, data in messages:
            self.senders[key].publish(data)

    def publish(self, frames: Frames, stamp_ns: int, depth_source: str) -> None:
        self.send(self.serialized(frames, stamp_ns, depth_source))


    def close(self) -> None:
        self.session.close()


def _cloud(points: np.ndarray, header):
    from sensor_msgs.msg import PointCloud2, PointField

    m = PointCloud2(header=header, height=1, width=len(points), is_bigendian=False, point_step=12,
                    row_step=12 * len(points), is_dense=True)
    m.fields = [PointField(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")]
    m.data = np.ascontiguousarray(points, "<f4").tobytes()
    return m


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB from /proc (NaN where unreadable)."""
    out = {"VmRSS": float("nan"), "VmHWM": float("nan")}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in out:
                out[key] = int(value.split()[0]) / 1024.0
    except (OSError, ValueError):
        pass
    return out["VmRSS"], out["VmHWM"]


def _pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _f(d: dict[str, str], key: str) -> float:
    try:
        return float(d[key])
    except (KeyError, ValueError):
        return float("nan")


def _delta(after: dict[str, str], before: dict[str, str], key: str) -> str:
    try:
        return str(int(after[key]) - int(before.get(key, 0)))
    except (KeyError, ValueError):
        return "-"


def merged_times(reports: list[dict[str, str]]) -> dict[str, str]:
    """One report from those seen during the replay: the pipeline's cumulative `stage.*` values
    from the last; each `<part>_ms_mean` (a mean over the last few seconds only) as the median of
    its values across reports, so that one slow or fast window does not stand for the run."""
    out = dict(reports[-1])
    for key in {k for r in reports for k in r if k.endswith("_ms_mean")}:
        vals = [_f(r, key) for r in reports]
        vals = [v for v in vals if np.isfinite(v)]
        out[key] = f"{np.median(vals):.1f}" if vals else "nan"
    return out


def stage_rows(diag: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(stage, p50 ms, p95 ms, dropped) from the node's /diagnostics: the pipeline's per-stage
    keys when present, else the node's mean times per part."""
    names = sorted({k.split(".")[1] for k in diag if k.startswith("stage.")})
    if names:
        return [(n, diag.get(f"stage.{n}.p50_ms", "nan"), diag.get(f"stage.{n}.p95_ms", "nan"),
                 diag.get(f"stage.{n}.dropped", "-")) for n in names]
    return [(p, diag.get(f"{p}_ms_mean", "nan") + " (median of windowed means)", "-", "-")
            for p in ("queued", "decode", "inference", "publish") if f"{p}_ms_mean" in diag]


def work_ms(diag: dict[str, str], depth_source: str, stat: str = "p50_ms") -> tuple[float, float, str]:
    """(network ms, depth ms, how they were read) from /diagnostics: the stages' `stat`
    (p50_ms over recent frames, or last_ms: the latest frame alone)."""
    stage = {k.split(".")[1] for k in diag if k.startswith("stage.")}
    net_key = next((f"stage.{n}.{stat}" for n in ("infer", "inference", "network") if n in stage), None)
    depth_key = next((f"stage.{n}.{stat}" for n in ("depth", "stereo") if n in stage), None)
    if depth_key is None and depth_source == "stereo" and "decode" in stage:
        depth_key = f"stage.decode.{stat}"  # sgn_node matches the pair in its decode stage (predictor.stereo_depth)
    if net_key is not None:
        net = _f(diag, net_key)
        depth = _f(diag, depth_key) if depth_key else 0.0
        return net, depth, f"{net_key}" + (f" + {depth_key}" if depth_key else "")
    net = _f(diag, "inference_ms_mean")
    if depth_source == "stereo":  # this node matches stereo inside its decode step
        return net, _f(diag, "decode_ms_mean"), "inference_ms_mean + decode_ms_mean (stereo matching is decoded)"
    return net, 0.0, "inference_ms_mean (depth from the input: no depth stage)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", choices=["tiny", "full"], default="tiny",
                    help="tiny: test-size network, random weights; full: sgn-l-synth (bundled weights), KITTI size")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--rate", type=float, default=10.0, help="Hz of the replayed camera")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--inputs-timed", action="store_true",
                    help="build and serialize each frame's input messages after taking its send time (the "
                         "1-2 ms this process takes for that then count as latency; by default they are built "
                         "beforehand, as a camera driver has its message ready when it publishes)")
    ap.add_argument("--depth-source", choices=["points", "depth_image", "stereo"], default="points")
    ap.add_argument("--stereo-method", choices=["sgbm", "sgm", "msnet3d"], default=None,
                    help="node parameter stereo_method (refused when the node has no such parameter)")
    ap.add_argument("--fp16", action="store_true")
    from sgn_ros.model.predictor import COMPILE_MODES

    ap.add_argument("--compile-dense", choices=["", *COMPILE_MODES], default="",
                    help="node parameter compile_dense: torch.compile of the network's dense parts")
    ap.add_argument("--confidence-threshold", type=float, default=0.0,
                    help="node parameter confidence_threshold: points and markers keep the voxels at or above "
                         "it (0.77 leaves ~105k of the ~190k voxels sgn-l-synth predicts on full-size frames)")
    ap.add_argument("--no-confidence", action="store_true",
                    help="node parameter publish_confidence false: no confidence in ssc/points and ssc/grid "
                         "(~2.9 MB less per full-size frame)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="any other node parameter (VALUE read as YAML), e.g. markers_merge_runs=false; repeatable")
    ap.add_argument("--startup-timeout", type=float, default=900.0, help="s: model load + warm-up frame")
    ap.add_argument("--drain", type=float, default=None, help="s to wait for outputs after the last frame")
    args = ap.parse_args()
    if args.frames < 1 or args.rate <= 0:
        print("node_rate: --frames must be >= 1 and --rate > 0", file=sys.stderr)
        return 2

    from sgn_ros.grid import DEFAULT_GRID
    from sgn_ros.ros.demo import wait_until_ready
    from sgn_ros.ros.node import PARAMETERS
    from sgn_ros.ros.processes import ros_environment, start_node, stop_process

    params: dict[str, object] = {"device": args.device, "depth_source": args.depth_source, "fp16": args.fp16,
                                 "compile_dense": args.compile_dense,
                                 "input_reliability": "reliable", "input_depth": 10,
                                 "diagnostics_period": 0.5, "sync_tolerance": 0.001,
                                 "confidence_threshold": args.confidence_threshold,
                                 "publish_confidence": not args.no_confidence}
    import yaml

    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or name not in PARAMETERS:
            print(f"node_rate: --param {item!r}: expected NAME=VALUE with NAME a node parameter", file=sys.stderr)
            return 2
        params[name] = yaml.safe_load(value)
    if args.stereo_method is not None:
        if "stereo_method" not in PARAMETERS:
            print("node_rate: this sgn_node has no stereo_method parameter (it matches with OpenCV SGBM)",
                  file=sys.stderr)
            return 2
        params["stereo_method"] = args.stereo_method
    tmp = tempfile.TemporaryDirectory(prefix="node_rate_")
    if args.config == "tiny":
        cfg, ckpt = tiny_config(Path(tmp.name))
        params.update(variant=cfg, checkpoint=ckpt)
        grid, hw, K = DEFAULT_GRID.scaled(4), TINY_HW, TINY_K
    else:
        params.update(variant="sgn-l-synth", checkpoint="")
        grid, hw, K = DEFAULT_GRID, FULL_HW, FULL_K
    frames = Frames(hw, K, grid)

    env = ros_environment()
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                           "FASTDDS_DEFAULT_PROFILES_FILE") if k in env})
    # this process stands for the outputs' consumer and the camera driver: the node's allocator
    # set-up here too (sgn_ros.allocator; SGN_ROS_KEEP_HEAP=0 to compare)
    from sgn_ros.allocator import keep_heap

    heap = keep_heap()
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    log_path = Path(tmp.name) / "sgn_node.log"
    replay = Replay(int(env["ROS_DOMAIN_ID"]))
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = start_node("sgn_ros.ros.node", env, params, [ROOT / "config" / "sgn.yaml"], log=log)
    sent: dict[int, float] = {}
    try:
        t_start = time.monotonic()
        wait_until_ready(replay.node, replay.executor, proc, t_start + args.startup_timeout, log_path)
        replay.spin_until(lambda: replay.pub["image"].get_subscription_count() > 0, 60, proc)
        # warm-up frames (not counted), new stamps every 5 s until one is answered (discovery may
        # lose the first); then the last one sent is awaited: the node has nothing left to do
        warm: list[int] = []
        while not any(replay.done(w) for w in warm):
            if time.monotonic() > t_start + args.startup_timeout:
                raise TimeoutError("no answer to the warm-up frame")
            warm.append(STAMP0 * 1_000_000_000 - 10_000_000_000 + len(warm) * 1_000_000)
            replay.publish(frames, warm[-1], args.depth_source)
            replay.spin_until(lambda: any(replay.done(w) for w in warm), 5.0, proc)
        if not replay.spin_until(lambda: replay.done(warm[-1]) is not None, args.startup_timeout, proc):
            raise TimeoutError("the last warm-up frame was not answered")
        warm_s = replay.done(warm[-1]) - t_start
        replay.diagnostics = {}
        replay.spin_until(lambda: bool(replay.diagnostics), 5.0, proc)
        before = dict(replay.diagnostics)  # counters after the warm-up: the replay's are the difference
        replay.timed.clear()
        replay.timed_at.clear()
        period = 1.0 / args.rate
        publish_ms: list[float] = []  # this process publishing one frame's inputs
        t0 = time.monotonic()
        for i in range(args.frames):
            stamp = STAMP0 * 1_000_000_000 + int(i * period * 1e9)
            # the camera driver's work, before the send time unless --inputs-timed (as until round 4)
            inputs = None if args.inputs_timed else replay.serialized(frames, stamp, args.depth_source)
            replay.spin_until(lambda i=i: time.monotonic() >= t0 + i * period, period + 1.0, proc)
            sent[stamp] = time.monotonic()
            replay.send(inputs or replay.serialized(frames, stamp, args.depth_source))
            publish_ms.append(1000.0 * (time.monotonic() - sent[stamp]))
        drain = args.drain if args.drain is not None else max(10.0, 3.0 * warm_s)
        replay.spin_until(lambda: all(replay.done(s) is not None for s in sent), drain, proc)
        diag_seen = len(replay.diagnostics)
        replay.diagnostics = {}
        replay.spin_until(lambda: bool(replay.diagnostics), 5.0, proc)  # one report after the last frame
        if not replay.diagnostics and diag_seen:
            print("node_rate: no /diagnostics after the replay", file=sys.stderr)
    finally:
        rss = _rss_mb(proc.pid)  # the node's resident and peak memory, before it stops
        code = stop_process(proc, 30.0)
        log.close()
        if code != 0:  # the node's own words on why (its log goes with the temporary directory)
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            print(f"node_rate: sgn_node exited with code {code}; the end of its log:", *tail, sep="\n  ",
                  file=sys.stderr)
        replay.close()
    answered = {s: replay.done(s) for s in sent if replay.done(s) is not None}
    lat = [1000.0 * (answered[s] - sent[s]) for s in answered]
    done_t = sorted(answered.values())
    rate = (len(done_t) - 1) / (done_t[-1] - done_t[0]) if len(done_t) > 1 else float("nan")
    diag = replay.diagnostics
    timed = merged_times(replay.timed) if replay.timed else diag
    net, depth, how = work_ms(timed, args.depth_source)
    # per frame: the first report after its outputs arrived. Where the node names the frame
    # behind its last outputs (`last_frame_stamp`), the first report naming this frame is taken
    # (a report made just before the outputs went out can arrive after them, on another topic,
    # with the previous frame's times), and its `last_frame_inference_ms` is this frame's own
    # network time. Otherwise, and for the depth stage, the `last_ms` stage times are the frame's
    # own when the node took no later frame before this one was answered (the next frame was
    # sent after it), else the p50 over recent frames. Overhead: the p50 over frames.
    per_frame = []
    split: list[dict[str, float]] = []  # per frame: its own times in the node, and outside it
    order = sorted(sent)
    for s_, t_done in answered.items():
        after = [r for r, t in zip(replay.timed, replay.timed_at) if t > t_done]
        named = [r for r in after if r.get("last_frame_stamp") == str(s_)]
        after = named or after
        if after:
            i_ = order.index(s_)
            alone = i_ + 1 == len(order) or sent[order[i_ + 1]] > t_done
            own = alone and "stage.infer.last_ms" in after[0]
            n_, d_, _ = work_ms(after[0], args.depth_source, "last_ms" if own else "p50_ms")
            if named and named[0].get("last_frame_inference_ms", "nan") != "nan":
                n_ = float(named[0]["last_frame_inference_ms"])
            per_frame.append(1000.0 * (t_done - sent[s_]) - n_ - d_)
            if named and named[0].get("last_frame_latency_ms", "nan") != "nan":  # the frame's own time in the node
                in_node = {k: float(named[0].get(f"last_frame_{k}_ms", "nan")) for k in SPLIT}
                in_node["outside"] = 1000.0 * (t_done - sent[s_]) - in_node["latency"]
                split.append(in_node)
    overhead = _pct(per_frame, 50) if per_frame else _pct(lat, 50) - net - depth

    print(f"# sgn_node at {args.rate:g} Hz: config {args.config} ({hw[1]} x {hw[0]} images, grid {grid.dims}), "
          f"device {args.device}, depth_source {args.depth_source}"
          + (f", stereo_method {args.stereo_method}" if args.stereo_method else "")
          + (f", confidence_threshold {args.confidence_threshold:g}" if args.confidence_threshold else "")
          + (", publish_confidence false" if args.no_confidence else "")
          + (", fp16" if args.fp16 else "") + (f", compile_dense {args.compile_dense}" if args.compile_dense else "")
          + f"; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; warm-up answered after {warm_s:.1f} s; "
          f"node exit code {code}; Fast DDS profile {os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE', 'none')}; "
          f"heap kept: {heap}; sgn_node memory at the end: RSS {rss[0]:.0f} MiB, peak {rss[1]:.0f} MiB\n")
    if replay.voxels:
        print(f"occupied voxels per frame p50 {int(np.median(replay.voxels))}; message sizes MB: "
              + ", ".join(f"{k} {v / 1e6:.2f}" for k, v in replay.bytes.items()) + "\n")
    print("| frames sent | answered (all 3 outputs) | output rate Hz | latency p50 ms | latency p95 ms | "
          "node frames_dropped | node frames_processed |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {len(sent)} | {len(answered)} | {rate:.2f} | {_pct(lat, 50):.0f} | {_pct(lat, 95):.0f} | "
          f"{_delta(diag, before, 'frames_dropped')} | {_delta(diag, before, 'frames_processed')} |")
    print("\n| node stage (/diagnostics) | p50 ms | p95 ms | dropped |")
    print("|---|---:|---:|---:|")
    for row in stage_rows(timed):
        print("| " + " | ".join(row) + " |")
    parts = [(p, _f(timed, f"{p}_ms_mean")) for p in ("queued", "decode", "waiting", "inference", "publish",
                                                      "encode", "send")]
    if any(np.isfinite(v) for _, v in parts):  # where a frame's time in the node goes
        print("\nnode time per frame (windowed means, ms): "
              + ", ".join(f"{p} {v:.0f}" for p, v in parts if np.isfinite(v)))
    inside = _f(timed, "latency_ms_mean")
    if np.isfinite(inside) and not split:  # a node without the per-frame times: windowed mean against p50
        print(f"\nin the node, frame complete -> published (latency_ms_mean): {inside:.0f} ms; outside it "
              f"(transport both ways, this process): {_pct(lat, 50) - inside:.0f} ms")
    if split:  # a frame's overhead = outside + queued + decode + waiting + publish (less depth, if any)
        med = {k: _pct([f[k] for f in split], 50) for k in ("outside",) + SPLIT}
        print(f"per frame, p50 over {len(split)} frames (ms): outside the node (image published -> frame complete "
              f"there, outputs published -> the last one here) {med['outside']:.1f}; in the node: queued "
              f"{med['queued']:.1f}, decode {med['decode']:.1f}, waiting {med['waiting']:.1f}, publish "
              f"{med['publish']:.1f}")
    per_output = {k: [1000.0 * (a[s] - sent[s]) for s in answered if s in a] for k, a in replay.arrivals.items()}
    print("latency p50 per output (image published -> arrived here), ms: "
          + ", ".join(f"{k} {_pct(v, 50):.0f}" for k, v in per_output.items())
          + f"; publishing the inputs here took p50 {_pct(publish_ms, 50):.0f} ms")
    print(f"network + depth time: {net + depth:.0f} ms ({how})")
    print(f"node overhead p50: {overhead:.0f} ms, output rate: {rate:.2f} Hz")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
