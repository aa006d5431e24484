# sgn_node: the ROS 2 face of SGN. A thin rclpy node: it matches a camera image with its
# CameraInfo and the depth cue of the chosen source (stereo pair, depth image or point cloud) by
# stamp, hands the NEWEST complete frame to one inference worker thread (older frames are dropped
# and counted; callbacks never block), runs `SSCPredictor`, and publishes the completed scene as
# PointCloud2 (ssc/points), MarkerArray (ssc/markers) and sgn_ros/SemanticVoxelGrid (ssc/grid),
# stamped with the image stamp, plus /diagnostics (rate, latency, dropped and malformed input).
#
# Works with rclpy of Humble / Jazzy / Kilted. One data path: messages -> decoders.py -> arrays ->
# SSCPredictor (fitting, depth -> points, cropping, projection: all there) -> SSCPrediction ->
# encoders.py -> publishers.
"""The `sgn_node` ROS 2 node (`SGNNode`) and its `main()`."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from sgn_ros.geometry import apply_transform, invert_transform, xyz_rpy_to_matrix
from sgn_ros.ros import decoders as dec
from sgn_ros.ros import encoders as enc
from sgn_ros.ros.qos import make_qos

DEPTH_SOURCES = ("stereo", "depth_image", "points")
INPUT_MODES = ("crop", "resize")

# Pose of KITTI's left colour camera (optical frame: z forward, x right, y down) in the LiDAR-like
# grid frame (x forward, y left, z up): about 0.27 m ahead of and 0.08 m below its origin, as x y z roll
# pitch yaw. Set it for your robot.
_KITTI_CAMERA_TO_GRID = [0.27, 0.0, -0.08, -np.pi / 2, 0.0, -np.pi / 2]


def _warning(logger: Any) -> Any:
    """The logger's WARN method: `warning` (its `warn` alias is deprecated, and the deprecation
    wrapper makes every call site look the same to rclpy's per-call-site throttling)."""
    return getattr(logger, "warning", None) or logger.warn


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: default value (gives its type), description, runtime-changeable."""

    default: Any
    description: str
    dynamic: bool = False


#: Every parameter of sgn_node (config/sgn.yaml sets each of them; the test checks they agree).
PARAMETERS: dict[str, ParamSpec] = {
    "variant": ParamSpec("sgn-l", "SGN variant (sgn-t | sgn-s | sgn-l) or a config YAML path"),
    "dataset": ParamSpec("semantickitti", "label set and dataset defaults: semantickitti | kitti360"),
    "checkpoint": ParamSpec(
        "",
        "weights file (sgn_ros or converted reference checkpoint); empty = the variant's bundled weights "
        "(sgn-l-synth: synthetic world only) or, without those, UNTRAINED",
    ),
    "device": ParamSpec("", "torch device (cpu, cuda, cuda:1); empty = CUDA when available, else CPU"),
    "fp16": ParamSpec(False, "float16 autocast inference (CUDA only)"),
    "depth_source": ParamSpec("stereo", "geometry input: stereo (right image + info) | depth_image | points"),
    "input_mode": ParamSpec("crop", "fit images to the network input: crop (top-left, K kept) | resize (K scaled)"),
    "image_topic": ParamSpec("image", "left (reference) camera image, any raw encoding"),
    "camera_info_topic": ParamSpec("camera_info", "CameraInfo of image_topic"),
    "right_image_topic": ParamSpec("right/image", "right rectified image (depth_source stereo)"),
    "right_camera_info_topic": ParamSpec("right/camera_info", "right CameraInfo, P gives the baseline (stereo)"),
    "depth_topic": ParamSpec("depth", "depth image registered to image_topic: 32FC1 m or 16UC1 mm (depth_image)"),
    "points_topic": ParamSpec("points", "point cloud (depth_source points), frame given by points_to_grid"),
    "odom_topic": ParamSpec("odom", "nav_msgs/Odometry: pose of the grid frame in a fixed frame (SGN-T only)"),
    "output_points_topic": ParamSpec("ssc/points", "PointCloud2 of occupied voxel centres (x y z rgb label conf.)"),
    "output_markers_topic": ParamSpec("ssc/markers", "MarkerArray, one CUBE_LIST per class"),
    "output_grid_topic": ParamSpec("ssc/grid", "sgn_ros/SemanticVoxelGrid, the dense prediction"),
    "input_reliability": ParamSpec("best_effort", "QoS of inputs: best_effort (matches any publisher) | reliable"),
    "input_depth": ParamSpec(5, "QoS history depth of inputs"),
    "output_reliability": ParamSpec("reliable", "QoS of outputs: reliable | best_effort"),
    "output_depth": ParamSpec(2, "QoS history depth of outputs"),
    "grid_frame": ParamSpec(
        "sgn_grid", "frame_id of the outputs (grid coordinates); empty = the image's frame (outputs transformed)"
    ),
    "camera_to_grid": ParamSpec(
        list(_KITTI_CAMERA_TO_GRID),
        "pose of the camera optical frame in the grid frame: x y z roll pitch yaw (m, rad) or 16 values (4x4)",
    ),
    "points_to_grid": ParamSpec([0.0] * 6, "pose of the points_topic frame in the grid frame (6 or 16 values)"),
    "confidence_threshold": ParamSpec(0.0, "voxels below this softmax confidence are not published", True),
    "publish_points": ParamSpec(True, "publish ssc/points", True),
    "publish_markers": ParamSpec(True, "publish ssc/markers", True),
    "publish_grid": ParamSpec(True, "publish ssc/grid", True),
    "publish_confidence": ParamSpec(True, "include confidence in ssc/points and ssc/grid", True),
    "sync_tolerance": ParamSpec(0.02, "seconds: max stamp difference of messages forming one frame"),
    "stamp_reset_threshold": ParamSpec(
        2.0, "seconds: a stamp this far behind the last one is a time reset (bag loop), not out-of-order input"
    ),
    "stereo_num_disparities": ParamSpec(192, "StereoSGBM disparity range (multiple of 16)"),
    "stereo_block_size": ParamSpec(5, "StereoSGBM block size (odd)"),
    "diagnostics_period": ParamSpec(1.0, "seconds between /diagnostics messages"),
    "log_throttle": ParamSpec(2.0, "seconds: minimum interval of repeated warnings about bad input"),
}


@dataclass
class _Frame:
    """The messages of one camera frame (decoded lazily on the worker thread)."""

    stamp_ns: int
    header: Any
    image: Any
    info: Any
    extra: dict[str, Any] = field(default_factory=dict)  # right_image, right_info, depth, points
    pose: np.ndarray | None = None  # grid frame in the fixed (odom) frame, SGN-T
    complete_time: float = 0.0  # time.monotonic() when the frame became complete
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Timing:
    """Seconds spent on one processed frame, from the moment its last message arrived."""

    done: float  # time.monotonic() when the outputs were published
    latency: float  # complete -> published
    queued: float  # complete -> picked up by the worker (waiting for the previous frame)
    decode: float  # messages -> arrays (incl. stereo matching / back-projection)
    inference: float  # SSCPredictor.predict
    publish: float  # arrays -> messages -> publish


class SGNNode(Node):
    """Semantic scene completion from camera input; see the module comment and config/sgn.yaml."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("sgn_node", **node_kwargs)
        for name, spec in PARAMETERS.items():
            desc = ParameterDescriptor(
                description=spec.description,
                read_only=not spec.dynamic,
                dynamic_typing=isinstance(spec.default, list),
            )
            self.declare_parameter(name, spec.default, desc)
        overrides = set(getattr(self, "_parameter_overrides", {}) or {})
        unknown = sorted(overrides - set(PARAMETERS) - {"use_sim_time"})
        if unknown:
            raise ValueError(f"sgn_node: unknown parameter(s) {unknown}; known: {sorted(PARAMETERS)}")
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._p = p
        self._check_parameters(p)
        self._camera_to_grid = xyz_rpy_to_matrix(p["camera_to_grid"])
        self._grid_to_camera = invert_transform(self._camera_to_grid)
        self._points_to_grid = xyz_rpy_to_matrix(p["points_to_grid"])
        self._tol_ns = int(p["sync_tolerance"] * 1e9)
        self._reset_ns = int(p["stamp_reset_threshold"] * 1e9)
        self._throttle = float(p["log_throttle"])
        self._log_lock = threading.Lock()
        self._last_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

        # ---- model (slow: seconds) -----------------------------------------------------------
        from sgn_ros.labels import load_label_set
        from sgn_ros.model.predictor import SSCPredictor

        self.predictor = SSCPredictor(
            p["variant"],
            dataset=p["dataset"],
            checkpoint=p["checkpoint"] or None,
            device=p["device"] or None,
            fp16=p["fp16"],
        )
        self.cfg = self.predictor.cfg
        self.grid = self.cfg.grid
        labels = load_label_set(self.cfg.data.dataset)
        self.class_names = labels.names
        self.colors_rgb = labels.colors_rgb
        source = self.predictor.weights_source
        if source == "untrained":
            _warning(self.get_logger())("no checkpoint given: the network has UNTRAINED random weights")
        elif source.startswith("bundled:"):
            _warning(self.get_logger())(f"no checkpoint given: using the {source}")
        temporal = self.cfg.data.temporal
        self._temporal = tuple(int(t) for t in temporal)
        self._history: deque[_Frame] = deque(maxlen=1 + max((-t for t in self._temporal), default=0))

        # ---- inputs ---------------------------------------------------------------------------
        qos_in = make_qos(p["input_reliability"], p["input_depth"], what="input_reliability/input_depth")
        qos_out = make_qos(p["output_reliability"], p["output_depth"], what="output_reliability/output_depth")
        self._lock = threading.Lock()
        self._buffers: dict[str, deque[tuple[int, Any]]] = {}
        self._last_stamp: dict[str, int] = {}
        self._last_arrival: dict[str, float] = {}
        self._required = ["info"] + {
            "stereo": ["right_image", "right_info"],
            "depth_image": ["depth"],
            "points": ["points"],
        }[p["depth_source"]]
        topics = {
            "image": (Image, p["image_topic"]),
            "info": (CameraInfo, p["camera_info_topic"]),
            "right_image": (Image, p["right_image_topic"]),
            "right_info": (CameraInfo, p["right_camera_info_topic"]),
            "depth": (Image, p["depth_topic"]),
            "points": (PointCloud2, p["points_topic"]),
        }
        self._topic_names = {k: v[1] for k, v in topics.items()}
        self._subs = []
        for key in ["image", *self._required]:
            msg_type, topic = topics[key]
            self._buffers[key] = deque(maxlen=max(8, int(p["input_depth"]) * 2))
            self._subs.append(
                self.create_subscription(msg_type, topic, lambda m, k=key: self._on_message(k, m), qos_in)
            )
        if self._temporal:
            self._buffers["odom"] = deque(maxlen=64)
            self._topic_names["odom"] = p["odom_topic"]
            self._subs.append(self.create_subscription(Odometry, p["odom_topic"], self._on_odom, qos_in))

        # ---- outputs --------------------------------------------------------------------------
        from sgn_ros.msg import SemanticVoxelGrid

        self._pub_points = self.create_publisher(PointCloud2, p["output_points_topic"], qos_out)
        self._pub_markers = self.create_publisher(MarkerArray, p["output_markers_topic"], qos_out)
        self._pub_grid = self.create_publisher(SemanticVoxelGrid, p["output_grid_topic"], qos_out)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._marker_classes: set[int] = set()
        self._marker_points = enc.MarkerPointCache(self.grid)

        # ---- statistics (guarded by _lock) ---------------------------------------------------
        self._stats = {
            "frames_complete": 0,
            "frames_processed": 0,
            "frames_dropped": 0,
            "frames_unmatched": 0,
            "frames_failed": 0,
            "messages_malformed": 0,
            "messages_out_of_order": 0,
            "time_resets": 0,
        }
        self._window: deque[_Timing] = deque(maxlen=256)
        self._last_error = ""
        self._last_problem: dict[str, float] = {}  # stats key -> time.monotonic() of its last increment
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # ---- worker ---------------------------------------------------------------------------
        self._cond = threading.Condition(self._lock)
        self._pending: _Frame | None = None
        self._stop = False
        self._worker = threading.Thread(target=self._work, name="sgn_inference", daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(float(p["diagnostics_period"]), self._publish_diagnostics)
        self.get_logger().info(
            f"sgn_node ready: {self.cfg.name} on {self.predictor.device}, depth from {p['depth_source']}, "
            f"inputs {[self._topic_names[k] for k in ['image', *self._required]]}, "
            f"outputs in frame {p['grid_frame'] or '<image frame>'}"
        )

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def _check_parameters(p: dict[str, Any]) -> None:
        if p["depth_source"] not in DEPTH_SOURCES:
            raise ValueError(f"parameter depth_source: must be one of {DEPTH_SOURCES}, got {p['depth_source']!r}")
        if p["input_mode"] not in INPUT_MODES:
            raise ValueError(f"parameter input_mode: must be one of {INPUT_MODES}, got {p['input_mode']!r}")
        for name in ("sync_tolerance", "diagnostics_period", "stamp_reset_threshold"):
            if not p[name] > 0:
                raise ValueError(f"parameter {name}: must be > 0, got {p[name]}")
        if p["stereo_num_disparities"] <= 0 or p["stereo_num_disparities"] % 16:
            raise ValueError(f"parameter stereo_num_disparities: must be a positive multiple of 16, "
                             f"got {p['stereo_num_disparities']}")
        if p["stereo_block_size"] < 1 or p["stereo_block_size"] % 2 == 0:
            raise ValueError(f"parameter stereo_block_size: must be odd and >= 1, got {p['stereo_block_size']}")
        if not 0.0 <= p["confidence_threshold"] <= 1.0:
            raise ValueError(f"parameter confidence_threshold: must be in [0, 1], got {p['confidence_threshold']}")
        for name in ("camera_to_grid", "points_to_grid"):
            try:
                xyz_rpy_to_matrix(p[name])
            except (ValueError, TypeError) as e:
                raise ValueError(f"parameter {name}: {e}") from None

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        new = dict(self._p)
        for prm in params:
            new[prm.name] = prm.value
        try:
            self._check_parameters(new)
        except ValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        self._p = new
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ callbacks (never block)
    def _warn(self, text: str, kind: str = "input") -> None:
        """Log a warning at most once per `log_throttle` seconds per kind of problem."""
        now = time.monotonic()
        with self._log_lock:
            if now - self._last_log.get(kind, -1e18) < self._throttle:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            self._last_log[kind] = now
            skipped = self._suppressed.pop(kind, 0)
        _warning(self.get_logger())(text + (f" ({skipped} similar messages suppressed)" if skipped else ""))

    def _on_message(self, key: str, msg: Any) -> None:
        try:
            stamp = dec.stamp_to_ns(msg.header.stamp)
        except Exception as e:  # noqa: BLE001 - any broken header is input garbage
            self._count("messages_malformed", f"{self._topic_names[key]}: unreadable header stamp ({e})")
            return
        with self._lock:
            self._last_arrival[key] = time.monotonic()
            last = self._last_stamp.get(key)
            if last is not None and stamp < last:
                if last - stamp >= self._reset_ns:
                    self._reset_locked(f"{self._topic_names[key]}: time jumped back {(last - stamp) / 1e9:.3f} s")
                else:
                    self._stats["messages_out_of_order"] += 1
                    self._last_error = f"{self._topic_names[key]}: stamp out of order ({(last - stamp) / 1e9:.3f} s)"
                    self._warn(self._last_error + "; message skipped", "out_of_order")
                    return
            self._last_stamp[key] = stamp
            self._buffers[key].append((stamp, msg))
            self._assemble_locked()

    def _on_odom(self, msg: Odometry) -> None:
        try:
            stamp = dec.stamp_to_ns(msg.header.stamp)
            pose = dec.pose_to_matrix(msg.pose.pose)
        except Exception as e:  # noqa: BLE001
            self._count("messages_malformed", f"{self._topic_names['odom']}: bad Odometry ({e})")
            return
        with self._lock:
            self._buffers["odom"].append((stamp, pose))

    def _count(self, key: str, text: str) -> None:
        with self._lock:
            self._stats[key] += 1
            self._last_error = text
            self._last_problem[key] = time.monotonic()
        self._warn(text, key)

    def _reset_locked(self, why: str) -> None:
        for buf in self._buffers.values():
            buf.clear()
        self._last_stamp.clear()
        self._history.clear()
        self._stats["time_resets"] += 1
        self._warn(f"{why}: time reset, input buffers cleared", "time_reset")

    @staticmethod
    def _nearest(buf: deque[tuple[int, Any]], stamp: int, tol: int) -> Any | None:
        best, best_dt = None, tol + 1
        for s, m in buf:
            dt = abs(s - stamp)
            if dt < best_dt:
                best, best_dt = m, dt
        return best

    def _assemble_locked(self) -> None:
        """Form the newest frame whose messages are all there; older images are dropped."""
        images = self._buffers["image"]
        for i in range(len(images) - 1, -1, -1):
            stamp, img = images[i]
            parts = {}
            for key in self._required:
                m = self._nearest(self._buffers[key], stamp, self._tol_ns)
                if m is None:
                    break
                parts[key] = m
            else:
                self._stats["frames_unmatched"] += i  # older images that never completed
                for _ in range(i + 1):
                    images.popleft()
                frame = _Frame(
                    stamp_ns=stamp,
                    header=img.header,
                    image=img,
                    info=parts.pop("info"),
                    extra=parts,
                    complete_time=time.monotonic(),
                )
                self._stats["frames_complete"] += 1
                if self._history.maxlen and self._history.maxlen > 1:
                    if self._history and self._history[-1].stamp_ns == stamp:
                        self._history.pop()  # the same frame sent again: keep one entry per camera frame
                    self._history.append(frame)
                if self._pending is not None:
                    self._stats["frames_dropped"] += 1
                self._pending = frame
                self._cond.notify()
                return

    # ------------------------------------------------------------------ worker thread
    def _work(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                frame, self._pending = self._pending, None
                history = list(self._history)
            try:
                self._process(frame, history)
            except Exception as e:  # noqa: BLE001 - the node must survive anything a frame does
                if self._stop or not self.context.ok():  # shutting down: publishing may fail, that is fine
                    return
                if isinstance(e, ValueError):  # what the conversions and the predictor say about bad input
                    self._count("messages_malformed", f"frame {frame.stamp_ns / 1e9:.3f}: {e}; skipped")
                else:  # anything else (e.g. out of GPU memory): reported, and the node carries on
                    self._count("frames_failed", f"frame {frame.stamp_ns / 1e9:.3f}: {type(e).__name__}: {e}")

    def _decode(self, frame: _Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(camera image (H, W, 3) uint8, its K, grid-frame points (N, 3)) of a frame, cached.

        Decoding only (and stereo matching): fitting to the network, depth -> points and
        cropping are the predictor's (`SSCPredictor.camera_points` / `prepare_batch`).
        """
        if "decoded" in frame.cache:
            return frame.cache["decoded"]
        p = self._p
        rgb = dec.image_to_rgb(frame.image)
        K = dec.camera_info_to_K(frame.info)
        if (int(frame.info.height), int(frame.info.width)) != rgb.shape[:2]:
            raise ValueError(
                f"{self._topic_names['info']}: CameraInfo is {frame.info.width}x{frame.info.height}, "
                f"image is {rgb.shape[1]}x{rgb.shape[0]}"
            )
        source = p["depth_source"]
        depth = points = None
        if source == "points":
            points = apply_transform(self._points_to_grid, dec.pointcloud2_to_xyz(frame.extra["points"]))
        elif source == "stereo":
            from sgn_ros.data.stereo import StereoParams, disparity_sgbm, disparity_to_depth

            right = dec.image_to_rgb(frame.extra["right_image"])
            if right.shape != rgb.shape:
                raise ValueError(f"stereo: right image {right.shape} and left image {rgb.shape} differ in size")
            baseline = dec.camera_info_baseline(frame.info, frame.extra["right_info"])
            sp = StereoParams(num_disparities=int(p["stereo_num_disparities"]), block_size=int(p["stereo_block_size"]))
            depth = disparity_to_depth(disparity_sgbm(rgb, right, sp), baseline, float(K[0, 0]))
        else:
            depth = dec.depth_image_to_metres(frame.extra["depth"])
            if depth.shape != rgb.shape[:2]:
                raise ValueError(
                    f"{self._topic_names['depth']}: depth image {depth.shape} does not match image {rgb.shape[:2]}"
                )
        pts = self.predictor.camera_points(self._camera_to_grid, K, depth=depth, points=points)
        frame.cache["decoded"] = (rgb, K, pts)
        return frame.cache["decoded"]

    def _pose(self, frame: _Frame) -> np.ndarray | None:
        """The frame's odometry pose (looked up when first needed: odometry may arrive late)."""
        if frame.pose is None:
            with self._lock:
                buf = self._buffers.get("odom")
                frame.pose = self._nearest(buf, frame.stamp_ns, self._tol_ns) if buf else None
        return frame.pose

    def _inputs(self, frame: _Frame, history: list[_Frame]) -> tuple[list, list, list, Any]:
        """Images, K, lidar_to_cam per network frame (current first) and the merged points (all in
        the current grid frame; the predictor crops them to the grid once)."""
        image, K, pts = self._decode(frame)
        images, Ks, l2c, clouds = [image], [K], [self._grid_to_camera], [pts]
        for offset in self._temporal:
            idx = len(history) - 1 + offset  # history[-1] is the current frame
            past = history[idx] if 0 <= idx < len(history) and history[-1] is frame else None
            decoded = None
            if past is not None and self._pose(past) is not None and self._pose(frame) is not None:
                try:
                    decoded = self._decode(past)
                except ValueError:
                    decoded = None
            if decoded is None:  # the current frame stands in for a missing neighbour (as the reference)
                images.append(image)
                Ks.append(K)
                l2c.append(self._grid_to_camera)
                continue
            p_img, p_K, p_pts = decoded
            # current grid frame -> past grid frame -> past camera
            cur_to_past = invert_transform(past.pose) @ frame.pose
            images.append(p_img)
            Ks.append(p_K)
            l2c.append(self._grid_to_camera @ cur_to_past)
            clouds.append(apply_transform(invert_transform(cur_to_past), p_pts))
        return images, Ks, l2c, _concatenate(clouds)

    def _process(self, frame: _Frame, history: list[_Frame]) -> None:
        t_start = time.monotonic()
        images, Ks, l2c, points = self._inputs(frame, history)
        t_decoded = time.monotonic()
        mode = self._p["input_mode"]
        if len(images) == 1:
            pred = self.predictor.predict(images[0], Ks[0], l2c[0], points=points, mode=mode)
        else:
            pred = self.predictor.predict(images, Ks, l2c, points=points, mode=mode)
        t_inferred = time.monotonic()
        self.publish_prediction(pred, frame.header)
        done = time.monotonic()
        with self._lock:
            self._stats["frames_processed"] += 1
            self._window.append(
                _Timing(
                    done=done,
                    latency=done - frame.complete_time,
                    queued=t_start - frame.complete_time,
                    decode=t_decoded - t_start,
                    inference=t_inferred - t_decoded,
                    publish=done - t_inferred,
                )
            )

    def timings(self) -> list[_Timing]:
        """Timings of the recently processed frames (seconds), oldest first."""
        with self._lock:
            return list(self._window)

    def publish_prediction(self, prediction: Any, image_header: Any) -> None:
        """Publish one `SSCPrediction` on the enabled outputs, stamped with the image's stamp, in
        grid_frame (or, with grid_frame empty, in the image's frame)."""
        from dataclasses import replace

        p = self._p
        header = Header()
        header.stamp = image_header.stamp
        if p["grid_frame"]:
            header.frame_id = p["grid_frame"]
            prediction = replace(prediction, grid_to_frame=None)
        else:
            header.frame_id = image_header.frame_id
            prediction = replace(prediction, grid_to_frame=self._grid_to_camera)
        options = enc.OutputOptions(
            colors_rgb=self.colors_rgb, class_names=self.class_names,
            threshold=float(p["confidence_threshold"]), include_confidence=bool(p["publish_confidence"]),
        )
        # outputs nobody subscribes to are not built (MarkerArray costs ~4 us per occupied voxel)
        if p["publish_points"] and self._pub_points.get_subscription_count() > 0:
            self._pub_points.publish(enc.prediction_to_pointcloud2(prediction, options, header))
        if p["publish_markers"] and self._pub_markers.get_subscription_count() > 0:
            markers, self._marker_classes = enc.prediction_to_marker_array(
                prediction, options, header, self._marker_classes, cache=self._marker_points
            )
            self._pub_markers.publish(markers)
        if p["publish_grid"] and self._pub_grid.get_subscription_count() > 0:
            self._pub_grid.publish(enc.prediction_to_voxel_grid(prediction, options, header))

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        period = float(self._p["diagnostics_period"])
        with self._lock:
            stats = dict(self._stats)
            recent = [w for w in self._window if now - w.done <= max(5.0, 5 * period)]
            last_error = self._last_error
            arrivals = dict(self._last_arrival)
            failed_at = self._last_problem.get("frames_failed", -1e18)
        span = (recent[-1].done - recent[0].done) if len(recent) > 1 else 0.0
        rate = (len(recent) - 1) / span if span > 0 else 0.0
        ms = {k: np.array([getattr(w, k) for w in recent]) * 1000.0
              for k in ("latency", "queued", "decode", "inference", "publish")}
        level, message = DiagnosticStatus.OK, "running"
        stale = [k for k in ["image", *self._required] if now - arrivals.get(k, -1e9) > max(2.0, 2 * period)]
        if stale:
            missing = [self._topic_names[k] for k in stale]
            level, message = DiagnosticStatus.WARN, f"no recent messages on {missing}"
            if "image" not in stale:
                self._warn(f"images arrive but nothing on {missing}: frames cannot be completed", "missing")
        if now - failed_at <= max(5.0, 5 * period):  # a recent failure (not bad input: see frames_failed)
            level = DiagnosticStatus.ERROR if not stats["frames_processed"] else DiagnosticStatus.WARN
            message = f"{stats['frames_failed']} frame(s) failed so far; last problem: {last_error}"
        elif last_error and stats["messages_malformed"] and not stale:
            message = f"running; last input problem: {last_error}"
        status = DiagnosticStatus(
            level=level, name="sgn_node: semantic scene completion", message=message,
            hardware_id=str(self.predictor.device),
        )
        values = {
            **{k: str(v) for k, v in stats.items()},
            "rate_hz": f"{rate:.3f}",
            **{f"{k}_ms_mean": f"{v.mean():.1f}" if v.size else "nan" for k, v in ms.items()},
            "latency_ms_max": f"{ms['latency'].max():.1f}" if recent else "nan",
            "last_error": last_error,
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self._pub_diag.publish(arr)

    def stats(self) -> dict[str, int]:
        """A copy of the input / processing counters."""
        with self._lock:
            return dict(self._stats)

    # ------------------------------------------------------------------ shutdown
    def destroy_node(self) -> None:
        """Stop and join the worker thread (it finishes the frame in progress), then destroy."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=60.0)
        super().destroy_node()


def _concatenate(clouds: list[Any]) -> Any:
    """Point clouds (NumPy, or tensors on the predictor's device for depth on a GPU) -> one."""
    if len(clouds) == 1:
        return clouds[0]
    tensors = [c for c in clouds if not isinstance(c, np.ndarray)]
    if not tensors:
        return np.concatenate(clouds, axis=0)
    import torch

    dev = tensors[0].device
    return torch.cat([torch.as_tensor(c, device=dev) for c in clouds], dim=0)


def main(args: list[str] | None = None) -> int:
    """Entry point of `sgn_node` / `python -m sgn_ros.ros.node --ros-args ...`.

    Returns 0 after a normal shutdown (Ctrl-C / SIGINT / SIGTERM), 2 when the node cannot start
    (bad parameter, config or checkpoint: the reason is logged).
    """
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    logger = rclpy.logging.get_logger("sgn_node")
    node = None
    try:
        try:
            node = SGNNode()
        except KeyboardInterrupt:
            return 0
        except Exception as e:  # noqa: BLE001 - bad parameters (incl. rclpy's type errors), config, checkpoint
            logger.fatal(f"cannot start: {e if isinstance(e, (ValueError, FileNotFoundError)) else repr(e)}")
            return 2
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
