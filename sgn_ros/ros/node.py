# sgn_node: the ROS 2 face of SGN. A thin node: it keeps parameters, publishers and /diagnostics;
# everything else lives in layers below it:
#   inputs.py (InputSubscriptions: QoS matched to the publishers, silent-input warnings) ->
#   assembler.py (FrameAssembler: stamp matching, time resets, temporal history, per-input
#   counters) -> decode (decoders.py / compressed.py; grid_frames.py: sensor poses from TF or the
#   fallback parameters) -> SSCPredictor (fitting, depth -> points, cropping, projection) ->
#   SSCPrediction -> encoders.py -> publishers.
# The per-frame work runs in a staged pipeline (sgn_ros/ros/pipeline.py `node_pipeline`), three
# threads joined by 1-slot newest-wins mailboxes, so that the network runs frame t while frame t+1
# is decoded (messages -> arrays, stereo matching and depth -> points on the predictor's device,
# batch preparation) and frame t-1 is encoded to CDR bytes and published:
#   decode  `_decode_stage`: `decode(item)` -> DecodedFrame -> `SSCPredictor.prepare_batch`
#   infer   `_infer_stage`:  `SSCPredictor.infer(batch)` -> SSCPrediction
#   publish `_publish_stage`: `publish(prediction, frame)`: `encoders.encode_outputs` -> bytes.
# A callback only stamps, assembles and submits (never blocks); a frame superseded while waiting
# at a stage is dropped and counted (/diagnostics `stage.<name>.dropped`); stopping abandons a
# stage busy in a long call (its result is discarded) so that shutdown takes ~3 s at most.
#
# Two node classes: `SGNNode` (plain: configures and activates itself) and `SGNLifecycleNode`
# (rclpy.lifecycle: configure loads the model and warms it up, activate subscribes).
# Works with rclpy of Humble / Jazzy / Kilted.
"""The `sgn_node` ROS 2 node (`SGNNode`, `SGNLifecycleNode`) and its `main()`."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from sgn_ros.geometry import apply_transform, invert_transform, xyz_rpy_to_matrix
from sgn_ros.geometry.camera import FIT_MODES
from sgn_ros.model.predictor import COMPILE_MODES
from sgn_ros.ros import decoders as dec
from sgn_ros.ros import encoders as enc
from sgn_ros.ros import wire
from sgn_ros.ros.assembler import AssembledFrame, FrameAssembler, Neighbour
from sgn_ros.ros.grid_frames import POSE_SOURCES, FrameSkipped, GridFrames, reference_projection
from sgn_ros.ros.inputs import InputSubscriptions
from sgn_ros.ros.pipeline import NODE_STAGES, StagedPipeline, node_pipeline
from sgn_ros.ros.qos import make_qos
from sgn_ros.ros.rcl_publish import SerializedPublisher, rcl_available
from sgn_ros.stereo.pair import StereoPair

DEPTH_SOURCES = ("stereo", "depth_image", "points")
#: stereo_method parameter: auto = sgm (torch, on the device) on CUDA, sgbm (OpenCV) on CPU
STEREO_CHOICES = ("auto", "sgbm", "sgm", "msnet3d")
#: seconds the pipeline may take to stop (deactivate / shutdown); a stage still busy is abandoned
STOP_TIMEOUT_S = 3.0
INPUT_MODES = FIT_MODES  # auto | crop | fit | resize (sgn_ros.geometry.fit_image)
RECTIFIED_CHOICES = ("auto", "true", "false")
INPUT_RELIABILITIES = ("auto", "reliable", "best_effort")
IMAGE_TRANSPORTS = ("raw", "compressed")
#: compile_dense parameter: "" = off, else a torch.compile mode of SSCPredictor
COMPILE_CHOICES = ("", *COMPILE_MODES)

# Pose of KITTI's left colour camera (optical frame: z forward, x right, y down) in the LiDAR-like
# grid frame (x forward, y left, z up): about 0.27 m ahead of and 0.08 m below its origin, as x y z roll
# pitch yaw. Used only where TF has no camera -> grid transform (camera_pose_source).
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
    "compile_dense": ParamSpec(
        "", "torch.compile the network's dense parts: '' (off) | default | reduce-overhead (with CUDA graphs on "
        "CUDA); compiled in the warm-up, tens of seconds at start (cached on disk for the next start)"
    ),
    "warm_up": ParamSpec(True, "run one prediction on dummy input before saying 'ready' (first frame not slow)"),
    "depth_source": ParamSpec("stereo", "geometry input: stereo (right image + info) | depth_image | points"),
    "input_mode": ParamSpec(
        "auto",
        "fit images to the network input: auto (KITTI-size: the reference's top-left crop; any other camera: "
        "fit) | crop (top-left, K kept) | fit (uniform scale to the training focal length, horizon-keeping cut, "
        "K adjusted) | resize (uneven stretch, K scaled)",
    ),
    "camera_rectified": ParamSpec(
        "auto",
        "auto (CameraInfo d all zero: images are undistorted, projected by P and R; non-zero d: refused) | "
        "true (the image topic is rectified: P and R, whatever d says; KITTI sync bags) | false (raw "
        "undistorted images: k)",
    ),
    "min_valid_depth_share": ParamSpec(
        0.01, "least share of depth pixels giving points in the grid (points: 100 in the grid); fewer: frame "
        "skipped as 'no usable depth'"
    ),
    "allow_image_only": ParamSpec(
        False, "run frames without usable depth anyway (image-only prediction) instead of skipping them"
    ),
    "image_topic": ParamSpec("image", "left (reference) camera image, any raw encoding"),
    "image_transport": ParamSpec(
        "raw", "raw (sensor_msgs/Image) | compressed (sensor_msgs/CompressedImage on <image topic>/compressed)"
    ),
    "camera_info_topic": ParamSpec("camera_info", "CameraInfo of image_topic"),
    "right_image_topic": ParamSpec("right/image", "right rectified image (depth_source stereo)"),
    "right_camera_info_topic": ParamSpec("right/camera_info", "right CameraInfo, P gives the baseline (stereo)"),
    "depth_topic": ParamSpec("depth", "depth image registered to image_topic: 32FC1 m or 16UC1 mm (depth_image)"),
    "points_topic": ParamSpec("points", "point cloud (depth_source points); its frame_id is looked up in TF"),
    "odom_topic": ParamSpec("odom", "nav_msgs/Odometry: pose of the grid frame in a fixed frame (temporal variants)"),
    "odom_frame": ParamSpec(
        "", "fixed frame for temporal variants' poses from TF (odom_frame <- grid_frame); empty = odom_topic only"
    ),
    "output_points_topic": ParamSpec("ssc/points", "PointCloud2 of occupied voxel centres (x y z rgb label conf.)"),
    "output_markers_topic": ParamSpec("ssc/markers", "MarkerArray, one CUBE_LIST per class"),
    "output_grid_topic": ParamSpec("ssc/grid", "sgn_ros/SemanticVoxelGrid, the dense prediction"),
    "input_reliability": ParamSpec(
        "auto", "QoS of inputs: auto (match the publishers' offered QoS, as ros2 bag record) | reliable | best_effort"
    ),
    "input_depth": ParamSpec(5, "QoS history depth of inputs"),
    "input_timeout": ParamSpec(3.0, "seconds without messages on an input before a warning names it"),
    "output_reliability": ParamSpec("reliable", "QoS of outputs: reliable | best_effort"),
    "output_depth": ParamSpec(2, "QoS history depth of outputs"),
    "grid_frame": ParamSpec(
        "sgn_grid", "frame_id of the outputs (grid coordinates); empty = the image's frame (outputs transformed)"
    ),
    "grid_parent_frame": ParamSpec(
        "", "robot frame the grid frame is attached to at grid_pose (published on /tf_static); empty = none"
    ),
    "grid_pose": ParamSpec([0.0] * 6, "pose of the grid frame in grid_parent_frame: x y z roll pitch yaw or 4x4"),
    "camera_pose_source": ParamSpec(
        "auto", "camera pose in the grid frame: tf | parameter (camera_to_grid) | auto (TF when it has the frames)"
    ),
    "camera_to_grid": ParamSpec(
        list(_KITTI_CAMERA_TO_GRID),
        "fallback pose of the camera optical frame in the grid frame: x y z roll pitch yaw (m, rad) or 4x4",
    ),
    "points_to_grid": ParamSpec([0.0] * 6, "fallback pose of the points_topic frame in the grid frame (6 or 16)"),
    "tf_tolerance": ParamSpec(0.05, "seconds: a transform this much older or newer than a frame is still used"),
    "confidence_threshold": ParamSpec(0.0, "voxels below this softmax confidence are not published", True),
    "publish_points": ParamSpec(True, "publish ssc/points", True),
    "publish_markers": ParamSpec(True, "publish ssc/markers", True),
    "publish_grid": ParamSpec(True, "publish ssc/grid", True),
    "publish_confidence": ParamSpec(True, "include confidence in ssc/points and ssc/grid", True),
    "markers_period": ParamSpec(
        0.0, "seconds between MarkerArray outputs (RViz needs fewer than the camera gives); 0 = every frame", True
    ),
    "markers_merge_runs": ParamSpec(
        True, "MarkerArray: each run of same-class cubes along the grid's x axis as a few longer boxes (RViz shows "
        "the same opaque scene from ~5-30x fewer points; marker id = class + 256 * log2(box length))", True
    ),
    "markers_surface_only": ParamSpec(
        False, "MarkerArray: only the cubes with a free face (the same opaque scene from fewer points; worth it "
        "without markers_merge_runs: 3.2 instead of 4.6 MB at 190k voxels, with it the face tests cost more than "
        "the ~20 KB they save)", True
    ),
    "sync_tolerance": ParamSpec(0.02, "seconds: max stamp difference of messages forming one frame"),
    "stamp_reset_threshold": ParamSpec(
        2.0, "seconds: a stamp this far behind the last one is a time reset (bag loop), not out-of-order input"
    ),
    "stereo_method": ParamSpec(
        "auto", "stereo matcher (depth_source stereo), run by the predictor on its device: auto (sgm on CUDA, "
        "sgbm on CPU) | sgbm (OpenCV, host) | sgm (torch semi-global matching, a Triton path scan on CUDA: the "
        "GPU choice; ~4.5 s per pair on a CPU) | msnet3d (MobileStereoNet-3D; needs stereo_weights)"
    ),
    "stereo_weights": ParamSpec("", "MobileStereoNet checkpoint for stereo_method msnet3d (required there)"),
    "stereo_num_disparities": ParamSpec(192, "stereo disparity range of sgbm / sgm (multiple of 16)"),
    "stereo_block_size": ParamSpec(5, "StereoSGBM block size (odd)"),
    "diagnostics_period": ParamSpec(1.0, "seconds between /diagnostics messages"),
    "log_throttle": ParamSpec(2.0, "seconds: minimum interval of repeated warnings about bad input"),
}


@dataclass(frozen=True)
class DecodedFrame:
    """Everything `infer` needs, as arrays: images / K / grid -> camera projection per network
    frame (current first) and the merged points in the current grid frame."""

    stamp_ns: int
    images: list[np.ndarray]
    intrinsics: list[np.ndarray]
    lidar_to_cam: list[np.ndarray]
    points: Any
    image_frame: str
    grid_to_camera: np.ndarray  # true pose (outputs in the image frame when grid_frame is empty)


@dataclass(frozen=True)
class _Timing:
    """Seconds spent on one processed frame, from the moment its last message arrived."""

    done: float  # time.monotonic() when the outputs were published
    latency: float  # complete -> published
    queued: float  # complete -> picked up by the decode stage (waiting for the previous frame)
    decode: float  # messages -> arrays -> batch (incl. stereo matching / back-projection)
    waiting: float  # decoded -> network start (the network still busy with the previous frame)
    inference: float  # SSCPredictor.infer (the network)
    publish: float  # arrays -> messages -> publish
    encode: float = 0.0  # of which building the outputs' bytes (summed over outputs and threads)
    send: float = 0.0  # of which handing the bytes to rcl (DDS: copies into shared memory), summed over threads
    stamp_ns: int = 0  # the frame's stamp (/diagnostics: which frame the last outputs were)


@dataclass(frozen=True)
class _InFlight:
    """A frame between the pipeline's stages: its decoded input, the predictor's batch (dropped
    after the network) and when decoding started / ended (time.monotonic())."""

    decoded: DecodedFrame
    batch: Any
    t_start: float
    t_decoded: float
    t_infer: float = 0.0  # when the network started on it


def check_parameters(p: dict[str, Any]) -> None:
    """Raise ValueError naming the first bad parameter of `p` (all of PARAMETERS)."""
    choices = {"depth_source": DEPTH_SOURCES, "input_mode": INPUT_MODES, "camera_rectified": RECTIFIED_CHOICES,
               "camera_pose_source": POSE_SOURCES, "stereo_method": STEREO_CHOICES,
               "input_reliability": INPUT_RELIABILITIES, "image_transport": IMAGE_TRANSPORTS,
               "compile_dense": COMPILE_CHOICES}
    for name, allowed in choices.items():
        if p[name] not in allowed:
            raise ValueError(f"parameter {name}: must be one of {allowed}, got {p[name]!r}")
    for name in ("sync_tolerance", "diagnostics_period", "stamp_reset_threshold", "input_timeout"):
        if not p[name] > 0:
            raise ValueError(f"parameter {name}: must be > 0, got {p[name]}")
    if not p["markers_period"] >= 0:
        raise ValueError(f"parameter markers_period: must be >= 0, got {p['markers_period']}")
    if not p["tf_tolerance"] >= 0:
        raise ValueError(f"parameter tf_tolerance: must be >= 0, got {p['tf_tolerance']}")
    if p["stereo_num_disparities"] <= 0 or p["stereo_num_disparities"] % 16:
        raise ValueError(f"parameter stereo_num_disparities: must be a positive multiple of 16, "
                         f"got {p['stereo_num_disparities']}")
    if p["stereo_block_size"] < 1 or p["stereo_block_size"] % 2 == 0:
        raise ValueError(f"parameter stereo_block_size: must be odd and >= 1, got {p['stereo_block_size']}")
    if not 0.0 <= p["confidence_threshold"] <= 1.0:
        raise ValueError(f"parameter confidence_threshold: must be in [0, 1], got {p['confidence_threshold']}")
    for name in ("camera_to_grid", "points_to_grid", "grid_pose"):
        try:
            xyz_rpy_to_matrix(p[name])
        except (ValueError, TypeError) as e:
            raise ValueError(f"parameter {name}: {e}") from None
    if p["grid_parent_frame"] and not p["grid_frame"]:
        raise ValueError("parameter grid_parent_frame: needs a grid_frame to attach")
    if p["camera_pose_source"] == "tf" and not p["grid_frame"]:
        raise ValueError("parameter camera_pose_source: tf needs a grid_frame to look the camera up in")


class SGNCore:
    """The node's behaviour, shared by `SGNNode` and `SGNLifecycleNode` (mixed into an rclpy Node).

    Stages: `_declare` (parameters), `_configure` (model, warm-up, TF, publishers),
    `_activate` (subscriptions, worker), `_deactivate`, `_cleanup`."""

    # ------------------------------------------------------------------ parameters
    def _declare(self) -> None:
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
        check_parameters(p)
        self._p = p
        self._throttle = float(p["log_throttle"])
        self._log_lock = threading.Lock()
        self._last_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pipeline: StagedPipeline | None = None
        self._encode_worker: ThreadPoolExecutor | None = None  # markers and grid beside points (publish)
        self._pipeline_drops = 0  # frames dropped by pipelines stopped before (deactivate / activate)
        self._stop = False
        self.predictor = None
        self._active = False
        self._timers: list[Any] = []
        self._inputs_subs: InputSubscriptions | None = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        new = dict(self._p)
        for prm in params:
            new[prm.name] = prm.value
        try:
            check_parameters(new)
        except ValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        self._p = new
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ configure
    def _configure(self) -> None:
        """Load the model (seconds), warm it up, set up TF and the publishers."""
        from sgn_ros.labels import load_label_set
        from sgn_ros.model.predictor import SSCPredictor

        p = self._p
        self._camera_to_grid = xyz_rpy_to_matrix(p["camera_to_grid"])
        self._points_to_grid = xyz_rpy_to_matrix(p["points_to_grid"])
        from sgn_ros.data.stereo import StereoParams
        from sgn_ros.model.predictor import select_device

        stereo_method = p["stereo_method"]
        if stereo_method == "auto":
            stereo_method = "sgm" if select_device(p["device"] or None).type == "cuda" else "sgbm"
        self.predictor = SSCPredictor(
            p["variant"], dataset=p["dataset"], checkpoint=p["checkpoint"] or None,
            device=p["device"] or None, fp16=p["fp16"], stereo_method=stereo_method,
            compile_dense=p["compile_dense"] or None,
            stereo_params=StereoParams(num_disparities=int(p["stereo_num_disparities"]),
                                       block_size=int(p["stereo_block_size"])),
            stereo_weights=p["stereo_weights"] or None,
            min_valid_depth_share=float(p["min_valid_depth_share"]), allow_image_only=bool(p["allow_image_only"]),
        )
        self.cfg = self.predictor.cfg
        self.grid = self.cfg.grid
        labels = load_label_set(self.cfg.data.dataset)
        self.class_names, self.colors_rgb = labels.names, labels.colors_rgb
        source = self.predictor.weights_source
        if source == "untrained":
            _warning(self.get_logger())("no checkpoint given: the network has UNTRAINED random weights")
        elif source.startswith("bundled:"):
            _warning(self.get_logger())(f"no checkpoint given: using the {source}")
        self._check_transport()
        self._check_encoder()
        self._temporal = tuple(int(t) for t in self.cfg.data.temporal)
        self._view_checked: set[Any] = set()  # camera geometries whose view of the grid was checked

        # ---- TF: sensor poses in the grid frame, and the grid frame in the tree --------------------
        self._frames = GridFrames(
            self, p["grid_frame"], p["grid_parent_frame"], xyz_rpy_to_matrix(p["grid_pose"]), p["camera_pose_source"],
            log=self.get_logger().info, cache_time_s=max(10.0, 2.0 * p["stamp_reset_threshold"]),
            extrapolation_tolerance_s=float(p["tf_tolerance"]), reset_threshold_s=float(p["stamp_reset_threshold"]),
        )

        # ---- frame assembly -----------------------------------------------------------------------
        self._required = ["info"] + {
            "stereo": ["right_image", "right_info"], "depth_image": ["depth"], "points": ["points"],
        }[p["depth_source"]]
        self._assembler = FrameAssembler(
            "image", self._required, float(p["sync_tolerance"]), float(p["stamp_reset_threshold"]),
            buffer_size=max(8, int(p["input_depth"]) * 2), temporal_offsets=self._temporal,
            pose_lookup=self._odom_from_tf if p["odom_frame"] else None,
            notify=lambda kind, text: self._warn(text, kind),
        )
        self._inputs = self._input_table(p)

        # ---- outputs ------------------------------------------------------------------------------
        from sgn_ros.msg import SemanticVoxelGrid

        qos_out = make_qos(p["output_reliability"], p["output_depth"], what="output_reliability/output_depth")
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._marker_classes: set[int] = set()
        self._markers_at = -1e18  # time.monotonic() of the last MarkerArray (markers_period)
        self._stats = dict.fromkeys(
            ("frames_processed", "frames_malformed", "frames_failed", "frames_no_transform", "frames_no_depth",
             "frames_without_pose",
             "messages_malformed"), 0)
        self._window: deque[_Timing] = deque(maxlen=256)
        self._last_error = ""
        self._last_problem: dict[str, float] = {}
        if p["warm_up"]:
            seconds = self.predictor.warmup(stereo=p["depth_source"] == "stereo")
            compiled = f" (dense parts compiled: {p['compile_dense']})" if p["compile_dense"] else ""
            self.get_logger().info(f"warm-up prediction in {seconds:.2f} s{compiled}")
        elif p["compile_dense"]:
            _warning(self.get_logger())(f"compile_dense {p['compile_dense']} without warm_up: the first frames "
                                        "compile the network (tens of seconds)")
        # outputs last: a subscriber that sees them may rely on the node being ready
        # the outputs' bytes go to rcl directly (GIL released, no std::string copy): rcl_publish.py
        self._senders = {
            k: SerializedPublisher(self.create_publisher(msg_type, p[f"output_{k}_topic"], qos_out))
            for k, msg_type in (("points", PointCloud2), ("markers", MarkerArray), ("grid", SemanticVoxelGrid))
        }
        if self._outputs_native():
            self.get_logger().info("outputs published through rcl directly (GIL released, no extra copy)")
        else:
            _warning(self.get_logger())(f"outputs published through rclpy ({rcl_available()[1]}): one more copy "
                                        "of every output, under the GIL")

    def _outputs_native(self) -> bool:
        """Whether every output goes to rcl directly (rcl_publish; else through rclpy's publish)."""
        return all(snd.native for snd in self._senders.values())

    def _input_table(self, p: dict[str, Any]) -> dict[str, tuple[type, str]]:
        """input key -> (message type, topic) of every input this configuration reads."""

        def image(topic: str) -> tuple[type, str]:
            if topic.endswith("/compressed"):
                return CompressedImage, topic
            if p["image_transport"] == "compressed":
                return CompressedImage, topic.rstrip("/") + "/compressed"
            return Image, topic

        table = {
            "image": image(p["image_topic"]),
            "info": (CameraInfo, p["camera_info_topic"]),
            "right_image": image(p["right_image_topic"]),
            "right_info": (CameraInfo, p["right_camera_info_topic"]),
            "depth": (Image, p["depth_topic"]),
            "points": (PointCloud2, p["points_topic"]),
            "odom": (Odometry, p["odom_topic"]),
        }
        keys = ["image", *self._required] + (["odom"] if self._temporal else [])
        return {k: table[k] for k in keys}

    # ------------------------------------------------------------------ activate
    def _activate(self) -> None:
        """Subscribe the inputs (QoS matched to the publishers with input_reliability auto) and
        start the pipeline and the timers."""
        self._stop = False
        callbacks = {k: (lambda m, k=k: self._on_message(k, m)) for k in self._inputs}
        callbacks["odom"] = self._on_odom
        self._inputs_subs = InputSubscriptions(self, self._inputs, callbacks, self._p["input_reliability"],
                                               self._p["input_depth"], self._warn)
        self._inputs_subs.refresh()
        self._encode_worker = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sgn-encode")
        self._pipeline = node_pipeline(self._decode_stage, self._infer_stage, self._publish_stage,
                                       self._on_stage_error).start()
        self._timers = [
            self.create_timer(float(self._p["diagnostics_period"]), self._publish_diagnostics),
            self.create_timer(0.5, self._watch_inputs),
        ]
        self._active = True
        p = self._p
        self.get_logger().info(
            f"sgn_node ready: {self.cfg.name} on {self.predictor.device}, depth from {p['depth_source']}"
            + (f" ({self.predictor.stereo.method})" if p["depth_source"] == "stereo" else "") + ", "
            f"inputs {[t for _, t in self._inputs.values()]} (QoS {p['input_reliability']}), "
            f"camera pose from {p['camera_pose_source']}, outputs in frame {p['grid_frame'] or '<image frame>'}"
        )

    def _deactivate(self) -> None:
        """Unsubscribe and stop the pipeline within STOP_TIMEOUT_S (a stage busy in a long call, e.g.
        a network forward, is abandoned: it ends with that call and its result is discarded)."""
        self._active = False
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers = []
        if self._inputs_subs is not None:
            self._inputs_subs.close()
        self._stop = True
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            abandoned = pipeline.stop(timeout=STOP_TIMEOUT_S)
            self._pipeline_drops += _drops(pipeline.key_values())
            if abandoned:
                self.get_logger().info(f"stopped; stage(s) {abandoned} still busy were abandoned")
        worker, self._encode_worker = self._encode_worker, None
        if worker is not None:
            worker.shutdown(wait=False)  # a job in progress ends with its frame's publish stage

    def _cleanup(self) -> None:
        """Release the model, TF and the publishers (configure can run again)."""
        if self.predictor is None:
            return
        self._frames.close()
        for pub in (*(snd.publisher for snd in self._senders.values()), self._pub_diag):
            self.destroy_publisher(pub)
        self.predictor.synchronize()  # a decode stage left running may still have side-stream work queued
        self.predictor = None

    def _check_transport(self) -> None:
        """Say which Fast DDS profile carries the megabyte messages; warn where none is set (a
        node started by `ros2 run` rather than sgn.launch.py): each image and output then goes
        out in 64 KiB fragments, ~3x slower, and a lost fragment waits for the next heartbeat."""
        import os

        from sgn_ros.config import config_dir
        from sgn_ros.ros.processes import dds_environment

        try:
            share = config_dir().parent
        except FileNotFoundError:
            return
        missing, line = dds_environment(share, os.environ)
        if missing:
            _warning(self.get_logger())(
                "FASTDDS_DEFAULT_PROFILES_FILE is not set: Fast DDS sends each multi-megabyte image and output in "
                "64 KiB fragments (~3x slower; README 'Transport of the big messages'). Start sgn_node through "
                f"sgn.launch.py, or export FASTDDS_DEFAULT_PROFILES_FILE={missing['FASTDDS_DEFAULT_PROFILES_FILE']} "
                "for every process of the robot")
        else:
            self.get_logger().info(line)

    def _check_encoder(self) -> None:
        """Say how the outputs are serialized: the fused native passes (sgn_ros.ros._cdr_fill,
        built by colcon / pip), or, in a source tree without that build step, the NumPy passes
        (the same bytes, 2-3x slower: a warning, since a full-size frame then costs ~10 ms more)."""
        if wire.NATIVE:
            self.get_logger().info("outputs serialized by the native passes (sgn_ros.ros._cdr_fill)")
        else:
            _warning(self.get_logger())(
                "sgn_ros.ros._cdr_fill is not built: outputs are serialized with NumPy (same messages, 2-3x slower); "
                "build the package (colcon build, or pip install -e .) to get it")

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

    def _count(self, key: str, text: str) -> None:
        with self._lock:
            self._stats[key] += 1
            self._last_error = text
            self._last_problem[key] = time.monotonic()
        self._warn(text, key)

    def _on_message(self, key: str, msg: Any) -> None:
        try:
            stamp = dec.stamp_to_ns(msg.header.stamp)
        except Exception as e:  # noqa: BLE001 - any broken header is input garbage
            self._assembler.reject(key, f"unreadable header stamp ({e})")
            self._count("messages_malformed", f"{self._inputs[key][1]}: unreadable header stamp ({e}); skipped")
            return
        if self._assembler.add(key, stamp, msg) is not None:
            self._submit()

    def _submit(self) -> None:
        """Hand the newest complete frame to the pipeline (never blocks: it replaces a frame the
        decode stage has not started, counted as dropped there)."""
        pipeline = self._pipeline
        if pipeline is None or self._stop:
            return  # not active: the frame stays with the assembler (dropped when a newer one comes)
        item = self._assembler.take()
        if item is not None:
            try:
                pipeline.submit(item)
            except RuntimeError:  # stopped in between (deactivate)
                pass

    def _on_odom(self, msg: Odometry) -> None:
        try:
            stamp = dec.stamp_to_ns(msg.header.stamp)
            pose = dec.pose_to_matrix(msg.pose.pose)
            child = str(msg.child_frame_id)
            grid = self._p["grid_frame"]
            if child and grid and child != grid:  # the odometry of a robot frame: move it to the grid
                try:
                    pose = pose @ self._frames.lookup(child, grid)
                except ValueError as e:
                    self._warn(f"{self._p['odom_topic']}: odometry of '{child}', not of the grid frame '{grid}', "
                               f"and TF has no {child} <- {grid} ({e}); used as the grid's pose", "odom_child")
        except Exception as e:  # noqa: BLE001
            self._assembler.reject("odom", f"bad Odometry ({e})")
            self._count("messages_malformed", f"{self._p['odom_topic']}: bad Odometry ({e}); skipped")
            return
        self._assembler.add_odometry(stamp, pose)

    def _odom_from_tf(self, stamp_ns: int) -> np.ndarray:
        """Pose of the grid frame in odom_frame at `stamp_ns` (TF); raises TransformError."""
        return self._frames.lookup(self._p["odom_frame"], self._p["grid_frame"], stamp_ns)

    # ------------------------------------------------------------------ pipeline stages
    def _decode_stage(self, item: tuple[AssembledFrame, list[Neighbour]]) -> _InFlight:
        """Stage 1: messages -> `DecodedFrame` -> the predictor's batch (fitting, points, crop,
        projection tables), so that the network stage runs the network only."""
        t_start = time.monotonic()
        if self._temporal:  # neighbours as of now: odometry may arrive just after the frame's last message
            self._await_pose(item[0])
            item = (item[0], self._assembler.neighbours(item[0]))
        with self.predictor.preparing():  # on CUDA a side stream: overlaps the previous frame's network
            decoded = self.decode(item)
            batch = self.prepare(decoded)
        return _InFlight(decoded, batch, t_start, time.monotonic())

    def _await_pose(self, frame: AssembledFrame) -> None:
        """Give the frame's odometry up to a short grace period: the image can complete a frame a
        few ms before the Odometry of the same stamp arrives on its own topic, and a frame taken
        without its pose would have the current image stand in for every past frame. This runs on
        the decode stage's thread, never on a callback. Only where poses come at all: with neither
        odometry received yet nor an odom_frame in TF there is nothing to wait for (a camera-only
        replay would otherwise lose the grace period on every frame)."""
        if not self._p["odom_frame"] and not self._assembler.counts()["odom"].received:
            return
        deadline = time.monotonic() + max(0.1, 5.0 * float(self._p["sync_tolerance"]))
        while self._assembler.pose(frame) is None and time.monotonic() < deadline and not self._stop:
            time.sleep(0.002)

    def _infer_stage(self, work: _InFlight) -> tuple[Any, _InFlight, float]:
        """Stage 2: the network on the prepared batch."""
        t_begin = time.monotonic()
        prediction = self.predictor.infer(work.batch)
        return prediction, replace(work, batch=None, t_infer=t_begin), time.monotonic()

    def _publish_stage(self, result: tuple[Any, _InFlight, float],
                       item: tuple[AssembledFrame, list[Neighbour]]) -> None:
        """Stage 3: encode the subscribed outputs to CDR bytes and publish; count and time the frame."""
        prediction, work, t_inferred = result
        frame = item[0]
        encode, send = self.publish(prediction, frame, work.decoded)
        done = time.monotonic()
        with self._lock:
            self._stats["frames_processed"] += 1
            self._window.append(_Timing(
                done=done, latency=done - frame.complete_time, queued=work.t_start - frame.complete_time,
                decode=work.t_decoded - work.t_start, waiting=work.t_infer - work.t_decoded,
                inference=t_inferred - work.t_infer,
                publish=done - t_inferred, encode=encode, send=send, stamp_ns=frame.stamp_ns,
            ))

    def _on_stage_error(self, stage: str, e: BaseException, item: Any) -> None:
        """A frame's failure at any stage: counted by kind, logged (throttled); the node carries on."""
        if self._stop or not self.context.ok():  # shutting down: publishing may fail, that is fine
            return
        # decode gets the assembler's (frame, neighbours); later stages ((frame, neighbours), result)
        frame = item[0][0] if isinstance(item[0], tuple) else item[0]
        where = f"frame {frame.stamp_ns / 1e9:.3f}"
        if isinstance(e, FrameSkipped):
            self._count(f"frames_{e.kind}", f"{where}: {e}; skipped")
        elif isinstance(e, ValueError) and str(e).startswith("no usable depth"):
            self._count("frames_no_depth", f"{where}: {self._depth_topic()}: {e}; skipped")
        elif isinstance(e, ValueError):  # what the decoders and the predictor say about bad input
            self._count("frames_malformed", f"{where}: {e}; skipped")
        else:  # anything else (e.g. out of GPU memory): reported, and the node carries on
            self._count("frames_failed", f"{where}: {stage}: {type(e).__name__}: {e}")

    # ------------------------------------------------------------------ decode
    def _decode_one(self, frame: AssembledFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]:
        """(camera image (H, W, 3) uint8, its K, camera pose in the grid frame, the reference
        projection grid -> camera, grid-frame points) of one frame, cached in the frame.

        Decoding, stereo matching and the camera pose only: fitting to the network, depth ->
        points and cropping are the predictor's."""
        if "decoded" in frame.cache:
            return frame.cache["decoded"]
        p, msgs, topics = self._p, frame.messages, self._inputs
        image_msg, info = msgs["image"], msgs["info"]
        rgb = self._image(image_msg, "image")
        rectified = {"auto": None, "true": True, "false": False}[p["camera_rectified"]]
        camera = dec.camera_info_model(info, rectified=rectified, topic=topics["info"][1])
        K = camera.K
        if (int(info.height), int(info.width)) != rgb.shape[:2]:
            raise ValueError(f"{topics['info'][1]}: CameraInfo is {info.width}x{info.height}, "
                             f"image is {rgb.shape[1]}x{rgb.shape[0]}")
        camera_frame = str(image_msg.header.frame_id)
        cam_to_grid, from_tf = self._frames.to_grid(camera_frame, frame.stamp_ns, self._camera_to_grid, "camera",
                                                    "camera_to_grid")
        if not np.array_equal(camera.R, np.eye(3)):  # rectified images: the frame K projects from is R @ camera
            rect_to_cam = np.eye(4)
            rect_to_cam[:3, :3] = camera.R.T
            cam_to_grid = cam_to_grid @ rect_to_cam
        grid_to_cam = invert_transform(cam_to_grid)
        self._check_view(rgb.shape[:2], K, grid_to_cam, camera_frame)
        # image features: the reference's projection (see reference_projection); the depth
        # back-projection below: the true pose. A parameter pose is used for both, as given.
        projection = reference_projection(grid_to_cam, info.p) if from_tf else grid_to_cam
        depth = points = None
        source = p["depth_source"]
        if source == "points":
            cloud = msgs["points"]
            to_grid, _ = self._frames.to_grid(str(cloud.header.frame_id), frame.stamp_ns, self._points_to_grid,
                                              "points", "points_to_grid")
            points = apply_transform(to_grid, dec.pointcloud2_to_xyz(cloud))
        elif source == "stereo":  # matched by the predictor's stereo_method, on its device
            right = self._image(msgs["right_image"], "right_image")
            if right.shape != rgb.shape:
                raise ValueError(f"{topics['right_image'][1]}: right image {right.shape} and left image "
                                 f"{rgb.shape} differ in size")
            baseline = dec.camera_info_baseline(info, msgs["right_info"])  # from the two P's
            depth = self.predictor.stereo_depth(rgb, K, StereoPair(right, baseline))
        else:
            depth = dec.depth_image_to_metres(msgs["depth"])
            if depth.shape != rgb.shape[:2]:
                raise ValueError(f"{topics['depth'][1]}: depth image {depth.shape} does not match "
                                 f"image {rgb.shape[:2]}")
        pts = self.predictor.camera_points(cam_to_grid, K, depth=depth, points=points)
        frame.cache["decoded"] = (rgb, K, grid_to_cam, projection, pts)
        return frame.cache["decoded"]

    def _depth_topic(self) -> str:
        """The topic(s) the depth of a frame comes from, for log lines."""
        keys = {"points": ("points",), "stereo": ("right_image", "right_info"), "depth_image": ("depth",)}
        return ", ".join(self._inputs[k][1] for k in keys[self._p["depth_source"]] if k in self._inputs)

    def _check_view(self, image_hw: tuple[int, int], K: np.ndarray, grid_to_cam: np.ndarray, camera: str) -> None:
        """Warn (once per camera geometry) when the grid lies mostly outside the camera's view: a
        wrong grid pose or camera_to_grid, a camera pitched away, or a narrow lens."""
        from sgn_ros.model.predictor import LOW_VIEW_COVERAGE

        key = (image_hw, np.round(K, 3).tobytes(), np.round(grid_to_cam, 3).tobytes())
        if key in self._view_checked:
            return
        self._view_checked.add(key)
        share = self.predictor.view_coverage(image_hw, K, grid_to_cam, self._p["input_mode"])
        text = (f"camera '{camera}' ({image_hw[1]}x{image_hw[0]}) sees {100 * share:.0f} % of the grid "
                f"'{self._p['grid_frame'] or camera}'")
        if share < LOW_VIEW_COVERAGE:
            self._warn(f"{text}: the grid lies mostly outside the camera's view; check the grid pose "
                       "(grid_parent_frame / grid_pose, camera_to_grid) - README 'Any camera'", "view")
        else:
            self.get_logger().info(text)

    def _image(self, msg: Any, key: str) -> np.ndarray:
        try:
            if isinstance(msg, CompressedImage):
                from sgn_ros.ros.compressed import compressed_image_to_rgb

                return compressed_image_to_rgb(msg)
            return dec.image_to_rgb(msg)
        except ValueError as e:
            raise ValueError(f"{self._inputs[key][1]}: {e}") from None

    def decode(self, item: tuple[AssembledFrame, list[Neighbour]]) -> DecodedFrame:
        """Messages of one frame (and its temporal neighbours) -> `DecodedFrame`.

        Raises ValueError (bad input) or FrameSkipped (no camera pose / odometry from TF)."""
        frame, neighbours = item
        image, K, grid_to_cam, projection, pts = self._decode_one(frame)
        images, Ks, l2c, clouds = [image], [K], [projection], [pts]
        if self._temporal and self._p["odom_frame"] and self._assembler.pose(frame) is None:
            raise FrameSkipped("no_transform", f"no pose of '{self._p['grid_frame']}' in '{self._p['odom_frame']}' "
                                               "from TF or odometry")
        if self._temporal and self._assembler.pose(frame) is None:
            with self._lock:
                self._stats["frames_without_pose"] += 1
            self._warn(f"no odometry on {self._p['odom_topic']} for frame {frame.stamp_ns / 1e9:.3f}: "
                       "the current image stands in for the past frames", "no_pose")
        for nb in neighbours:
            decoded = None
            if nb.frame is not None:
                try:
                    decoded = self._decode_one(nb.frame)
                except (ValueError, FrameSkipped):
                    decoded = None
            if decoded is None:  # the current frame stands in for a missing neighbour (as the reference)
                images.append(image)
                Ks.append(K)
                l2c.append(projection)
                continue
            p_img, p_K, _, p_proj, p_pts = decoded
            images.append(p_img)
            Ks.append(p_K)
            l2c.append(p_proj @ nb.current_to_past)  # current grid -> past grid -> past camera
            clouds.append(apply_transform(invert_transform(nb.current_to_past), p_pts))
        return DecodedFrame(frame.stamp_ns, images, Ks, l2c, _concatenate(clouds),
                            str(frame.messages["image"].header.frame_id), grid_to_cam)

    # ------------------------------------------------------------------ infer / publish
    def prepare(self, decoded: DecodedFrame) -> Any:
        """`SSCPredictor.prepare_batch` of a decoded frame (the input of `infer`)."""
        mode = self._p["input_mode"]
        if len(decoded.images) == 1:
            return self.predictor.prepare_batch(decoded.images[0], decoded.intrinsics[0], decoded.lidar_to_cam[0],
                                                points=decoded.points, mode=mode)
        return self.predictor.prepare_batch(decoded.images, decoded.intrinsics, decoded.lidar_to_cam,
                                            points=decoded.points, mode=mode)

    def infer(self, decoded: DecodedFrame) -> Any:
        """`SSCPredictor` on a decoded frame, in one call (`prepare` then the network)."""
        return self.predictor.infer(self.prepare(decoded))

    def publish(self, prediction: Any, frame: AssembledFrame, decoded: DecodedFrame | None = None
                ) -> tuple[float, float]:
        """Publish one `SSCPrediction` on the enabled, subscribed outputs as serialized bytes
        (`encode_outputs`), stamped with the image's stamp, in grid_frame (or, with grid_frame
        empty, in the image's frame).

        Returns (seconds encoding, seconds publishing; each summed over the encoder threads):
        /diagnostics encode_ms_mean, send_ms_mean."""
        p = self._p
        image_header = frame.messages["image"].header
        stamp = (int(image_header.stamp.sec), int(image_header.stamp.nanosec))
        if p["grid_frame"]:
            frame_id = p["grid_frame"]
            prediction = replace(prediction, grid_to_frame=None)
        else:
            frame_id = str(image_header.frame_id)
            g2c = decoded.grid_to_camera if decoded is not None else invert_transform(self._camera_to_grid)
            prediction = replace(prediction, grid_to_frame=g2c)
        options = enc.OutputOptions(
            colors_rgb=self.colors_rgb, class_names=self.class_names,
            threshold=float(p["confidence_threshold"]), include_confidence=bool(p["publish_confidence"]),
        )
        # outputs nobody subscribes to are not built; markers at most every markers_period seconds
        senders = self._senders
        want = {k for k, snd in senders.items() if p[f"publish_{k}"] and snd.publisher.get_subscription_count() > 0}
        now = time.monotonic()
        if "markers" in want and now - self._markers_at < float(p["markers_period"]):
            want.discard("markers")
        if not want:
            return 0.0, 0.0
        previous, surface_only = self._marker_classes, bool(p["markers_surface_only"])
        merge_runs = bool(p["markers_merge_runs"])

        def encode_send(kinds: set[str]) -> tuple[set[int] | None, float, float]:
            """Encode `kinds` and publish them: (marker classes present, s encoding, s publishing)."""
            t0 = time.perf_counter()
            out, present = enc.encode_outputs(prediction, options, stamp, frame_id, kinds, previous_classes=previous,
                                              surface_only=surface_only, merge_runs=merge_runs)
            t1 = time.perf_counter()
            for kind, data in out.items():
                senders[kind].publish(data)
            return (present if "markers" in out else None), t1 - t0, time.perf_counter() - t1

        # One output per thread (points, the largest, on this stage thread; markers and grid on the
        # two side workers), each encoded and then published by the thread that encoded it. The
        # native passes (sgn_ros.ros.wire) and rcl's publish (sgn_ros.ros.rcl_publish) both release
        # the GIL, so encoding and the middleware's copies overlap on two or more cores. All
        # published before returning, so the stage's time and the frame's latency stay exact.
        order = [k for k in ("points", "markers", "grid") if k in want]
        worker = self._encode_worker
        if len(order) > 1 and worker is not None:
            futures = [worker.submit(encode_send, {kind}) for kind in order[1:]]
            results = [encode_send({order[0]}), *(f.result() for f in futures)]
        else:
            results = [encode_send(want)]
        present = next((r[0] for r in results if r[0] is not None), None)
        if present is not None:
            self._marker_classes = present
            self._markers_at = now
        return sum(r[1] for r in results), sum(r[2] for r in results)

    # ------------------------------------------------------------------ missing inputs
    def _stale_inputs(self) -> list[str]:
        """Inputs silent for input_timeout (odometry only when it is the only source of poses)."""
        keys = [k for k in self._inputs if k != "odom" or not self._p["odom_frame"]]
        return self._inputs_subs.stale(float(self._p["input_timeout"]), keys) if self._inputs_subs else []

    def _watch_inputs(self) -> None:
        """Re-match input QoS to new publishers; warn about inputs silent for input_timeout,
        naming the existing topics of the same type (did you mean ...)."""
        if self._p["input_reliability"] == "auto":
            self._inputs_subs.refresh()
        stale = self._stale_inputs()
        if not stale:
            return
        head = f"no messages for {self._p['input_timeout']:.1f} s; waiting for: "
        if "image" not in stale:
            head = "images arrive but frames cannot be completed: " + head
        self._warn(head + self._inputs_subs.describe_missing(stale), "missing")

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        period = float(self._p["diagnostics_period"])
        counts = self._assembler.counts()
        frames = dict(self._assembler.frame_counts())
        pipeline = self._pipeline
        stage_values = pipeline.key_values() if pipeline is not None else {}
        # a frame superseded inside the pipeline is dropped there, not taken (counters add up:
        # complete = taken + dropped, taken = processed + skipped + in flight)
        dropped = self._pipeline_drops + _drops(stage_values)
        frames["taken"] -= dropped
        frames["dropped"] += dropped
        with self._lock:
            stats = dict(self._stats)
            recent = [w for w in self._window if now - w.done <= max(5.0, 5 * period)]
            last = self._window[-1] if self._window else None
            last_error = self._last_error or self._assembler.last_problem
            failed_at = self._last_problem.get("frames_failed", -1e18)
        span = (recent[-1].done - recent[0].done) if len(recent) > 1 else 0.0
        rate = (len(recent) - 1) / span if span > 0 else 0.0
        ms = {k: np.array([getattr(w, k) for w in recent]) * 1000.0
              for k in ("latency", "queued", "decode", "waiting", "inference", "publish", "encode", "send")}
        level, message = DiagnosticStatus.OK, "running"
        stale = self._stale_inputs()
        if stale:
            missing = [self._inputs[k][1] for k in stale]
            level, message = DiagnosticStatus.WARN, f"no recent messages on {missing}"
        if now - failed_at <= max(5.0, 5 * period):  # a recent failure (not bad input: see frames_failed)
            level = DiagnosticStatus.ERROR if not stats["frames_processed"] else DiagnosticStatus.WARN
            message = f"{stats['frames_failed']} frame(s) failed so far; last problem: {last_error}"
        elif last_error and (stats["messages_malformed"] or stats["frames_malformed"]) and not stale:
            message = f"running; last input problem: {last_error}"
        rejected = sum(c.dropped["rejected"] for c in counts.values())
        values = {
            "frames_complete": frames["complete"], "frames_taken": frames["taken"],
            "frames_dropped": frames["dropped"], "time_resets": frames["time_resets"],
            "neighbours_missing": frames["neighbours_missing"],
            **stats,
            # bad messages (no stamp) + frames whose content was bad
            "messages_malformed": rejected + stats["frames_malformed"],
            "messages_out_of_order": sum(c.dropped["out_of_order"] for c in counts.values()),
        }
        for key, c in counts.items():
            if key not in self._inputs:
                continue
            values.update({f"{key}.topic": self._inputs[key][1], f"{key}.received": c.received,
                           f"{key}.matched": c.matched, f"{key}.pending": c.pending,
                           f"{key}.dropped": sum(c.dropped.values()),
                           **{f"{key}.dropped.{r}": n for r, n in c.dropped.items()}})
        values.update({
            "rate_hz": f"{rate:.3f}",
            **{f"{k}_ms_mean": f"{v.mean():.1f}" if v.size else "nan" for k, v in ms.items()},
            "latency_ms_max": f"{ms['latency'].max():.1f}" if recent else "nan",
            # the newest frame with outputs out: its stamp (ns), network time and its own time in the
            # node (complete -> published, and per stage), to match outputs to the work behind them and
            # tell the node's part of a frame's latency from the transport's (bench/node_rate.py does)
            "last_frame_stamp": str(last.stamp_ns) if last else "",
            **{f"last_frame_{k}_ms": f"{1000.0 * getattr(last, k):.1f}" if last else "nan"
               for k in ("inference", "latency", "queued", "decode", "waiting", "publish")},
            "tf_backend": self._frames.backend,
            "compile_dense": self.predictor.compile_dense or "off",  # torch.compile of the dense parts
            "output_encoder": "native" if wire.NATIVE else "numpy",  # sgn_ros.ros._cdr_fill built or not
            "output_publisher": "rcl" if self._outputs_native() else "rclpy",  # rcl_publish
            "last_error": last_error,
            **stage_values,
        })
        status = DiagnosticStatus(level=level, name="sgn_node: semantic scene completion", message=message,
                                  hardware_id=str(self.predictor.device))
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self._pub_diag.publish(arr)

    def timings(self) -> list[_Timing]:
        """Timings of the recently processed frames (seconds), oldest first."""
        with self._lock:
            return list(self._window)

    def stats(self) -> dict[str, int]:
        """A copy of the processing counters (per-input counts: `self._assembler.counts()`)."""
        with self._lock:
            return dict(self._stats)


class SGNNode(SGNCore, Node):
    """Semantic scene completion from camera input: configured (model loaded, warmed up) and
    active (subscribed) once constructed. See the module comment and config/sgn.yaml."""

    def __init__(self, **node_kwargs: Any) -> None:
        Node.__init__(self, "sgn_node", **node_kwargs)
        self._declare()
        self._configure()
        self._activate()

    def destroy_node(self) -> None:
        """Stop and join the worker thread (it finishes the frame in progress), then destroy."""
        if self._active:
            self._deactivate()
        super().destroy_node()


class SGNLifecycleNode(SGNCore, LifecycleNode):
    """sgn_node as a managed (lifecycle) node, as yolo_ros: parameters are declared at
    construction; configure loads the model, warms it up and creates the publishers; activate
    subscribes and starts the worker; deactivate unsubscribes; cleanup releases the model."""

    def __init__(self, **node_kwargs: Any) -> None:
        LifecycleNode.__init__(self, "sgn_node", **node_kwargs)
        self._declare()

    def _try(self, what: str, fn: Any) -> Any:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a failed transition is reported, not raised
            reason = e if isinstance(e, (ValueError, FileNotFoundError)) else repr(e)
            self.get_logger().error(f"{what} failed: {reason}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: Any) -> Any:
        self.get_logger().info("configuring: loading the model")
        return self._try("configure", self._configure)

    def on_activate(self, state: Any) -> Any:
        return self._try("activate", self._activate)

    def on_deactivate(self, state: Any) -> Any:
        self.get_logger().info("deactivated: inputs unsubscribed")
        return self._try("deactivate", self._deactivate)

    def on_cleanup(self, state: Any) -> Any:
        return self._try("cleanup", self._cleanup)

    def on_shutdown(self, state: Any) -> Any:
        def down() -> None:
            if self._active:
                self._deactivate()
            self._cleanup()
        return self._try("shutdown", down)

    def destroy_node(self) -> None:
        if self._active:
            self._deactivate()
        super().destroy_node()


def _drops(stage_values: dict[str, str]) -> int:
    """Frames dropped at any stage of a node pipeline, from its key-values."""
    return sum(int(stage_values.get(f"stage.{n}.dropped", 0)) for n in NODE_STAGES)


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
    """Entry point of `sgn_node` / `python -m sgn_ros.ros.node [--lifecycle] --ros-args ...`.

    With --lifecycle the node is a managed node that waits in 'unconfigured' for its transitions
    (`ros2 lifecycle set /sgn_node configure`, then `activate`).
    Returns 0 after a normal shutdown (Ctrl-C / SIGINT / SIGTERM), 2 when the node cannot start
    (bad parameter, config or checkpoint: the reason is logged).
    """
    from rclpy.executors import ExternalShutdownException

    from sgn_ros.allocator import keep_heap

    argv = list(sys.argv if args is None else args)
    lifecycle = "--lifecycle" in argv
    argv = [a for a in argv if a != "--lifecycle"]
    keep_heap()  # per-frame megabyte buffers reused, not page-faulted in again (sgn_ros.allocator)
    rclpy.init(args=argv)
    logger = rclpy.logging.get_logger("sgn_node")
    node = None
    try:
        try:
            node = SGNLifecycleNode() if lifecycle else SGNNode()
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
