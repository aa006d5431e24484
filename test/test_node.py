# sgn_node over real DDS: the node runs as its own process (`python -m sgn_ros.ros.node` with
# config/sgn.yaml and a tiny network config + checkpoint), this test process publishes camera
# input and subscribes to the outputs with rclpy in a private context. Each module run uses a
# random ROS_DOMAIN_ID, localhost discovery, the project's Fast DDS profile.
"""End-to-end tests of sgn_node: outputs vs SSCPredictor, parameters, fuzzing, bursts, shutdown."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
IMAGE_HW = (70, 200)  # camera images: larger than the network input (cropped by the node)
NET_HW = (64, 192)
K_CAM = np.array([[110.0, 0.0, 97.0], [0.0, 110.0, 33.0], [0.0, 0.0, 1.0]])
STAMP0 = 1_000_000_000  # seconds: far from 0 so that "newer" stamps are obvious


def _skip_reason() -> str | None:
    try:
        import rclpy  # noqa: F401
        from sgn_ros.msg import SemanticVoxelGrid  # noqa: F401
    except ImportError as e:
        return f"ROS 2 messages not available ({e}): run `make ros-build` and `source scripts/ros_env.sh`"
    return None


if (_reason := _skip_reason()) is not None:
    pytest.skip(_reason, allow_module_level=True)

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from sgn_ros.geometry import apply_transform, invert_transform, xyz_rpy_to_matrix  # noqa: E402
from sgn_ros.ros import decoders as conv  # noqa: E402
from sgn_ros.ros.encoders import matrix_to_pose  # noqa: E402
from sgn_ros.ros.node import PARAMETERS  # noqa: E402
from sgn_ros.ros.processes import RosSession  # noqa: E402
from sgn_ros.ros.wire import surface_mask  # noqa: E402

# --------------------------------------------------------------------------- fixtures
_DOMAINS = itertools.count(random.SystemRandom().randint(1, 60))


def _with_domain(env: dict[str, str]) -> dict[str, str]:
    """`env` with a fresh ROS_DOMAIN_ID: every node process talks only to its own test."""
    return {**env, "ROS_DOMAIN_ID": str(1 + (next(_DOMAINS) - 1) % 100)}


@pytest.fixture(scope="module")
def ros_env() -> dict[str, str]:
    """Environment of this module's DDS traffic (also applied to this process)."""
    env = {
        "ROS_DOMAIN_ID": str(next(_DOMAINS)),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(ROOT / "config" / "fastdds_profile.xml"),
        "OMP_NUM_THREADS": "1",  # node and test predictor bit-identical (single-threaded kernels)
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        yield env


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny SGN-L config (small image, coarse grid, few channels), its checkpoint, a predictor."""
    import torch

    from sgn_ros.grid import DEFAULT_GRID
    from sgn_ros.model import build_model
    from sgn_ros.model.checkpoint import save_checkpoint
    from sgn_ros.model.predictor import SSCPredictor

    d = tmp_path_factory.mktemp("tiny_sgn")
    grid = DEFAULT_GRID.scaled(4)
    cfg_path = d / "sgn-tiny.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "base": str(ROOT / "config" / "sgn-l.yaml"),
                "name": "sgn-tiny",
                "model": {"embed_dims": 16, "proposal_dims": [8, 8, 8, 8]},
                # single-frame (SGN-L itself is temporal; the temporal test below sets its own frames)
                "data": {"image_size": list(NET_HW), "temporal": []},
                "grid": {"origin": list(grid.origin), "voxel_size": grid.voxel_size, "dims": list(grid.dims)},
            }
        )
    )
    torch.manual_seed(0)
    model = build_model(str(cfg_path))
    ckpt = save_checkpoint(d / "sgn-tiny.pth", model, _cfg(cfg_path))
    torch.set_num_threads(1)
    predictor = SSCPredictor(str(cfg_path), checkpoint=ckpt, device="cpu")
    return {"config": cfg_path, "checkpoint": ckpt, "predictor": predictor, "grid": predictor.grid}


def _cfg(path: Path):
    from sgn_ros.config import load_config

    return load_config(str(path))


class NodeProcess:
    """sgn_node as a child process; its log goes to a file shown on failures."""

    def __init__(self, log_path: Path, env: dict[str, str], params: dict[str, object], extra: list[str] = ()) -> None:
        args = [sys.executable, "-m", "sgn_ros.ros.node", "--ros-args",
                "--params-file", str(ROOT / "config" / "sgn.yaml"), *extra]
        for k, v in params.items():
            args += ["-p", f"{k}:={v}"]
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=str(ROOT))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Harness:
    """Publishers of camera input and subscribers of sgn_node's outputs in a private rclpy context."""

    def __init__(self, domain_id: int) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image
        from sgn_ros.msg import SemanticVoxelGrid
        from visualization_msgs.msg import MarkerArray

        self.session = RosSession(f"sgn_test_{os.getpid()}", domain_id)
        self.node, self.executor = self.session.node, self.session.executor
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = {
            "image": self.node.create_publisher(Image, "image", qos),
            "info": self.node.create_publisher(CameraInfo, "camera_info", qos),
            "right_image": self.node.create_publisher(Image, "right/image", qos),
            "right_info": self.node.create_publisher(CameraInfo, "right/camera_info", qos),
            "depth": self.node.create_publisher(Image, "depth", qos),
            "points": self.node.create_publisher(PointCloud2, "points", qos),
        }
        self.received: dict[str, dict[int, object]] = {"points": {}, "markers": {}, "grid": {}}
        self.arrival: dict[int, float] = {}
        self.diagnostics: list = []
        for key, (typ, topic) in {
            "points": (PointCloud2, "ssc/points"),
            "markers": (MarkerArray, "ssc/markers"),
            "grid": (SemanticVoxelGrid, "ssc/grid"),
        }.items():
            self.node.create_subscription(typ, topic, lambda m, k=key: self._store(k, m), qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)

    def _store(self, key: str, msg) -> None:
        stamp = conv.stamp_to_ns(msg.markers[0].header.stamp if key == "markers" else msg.header.stamp)
        self.received[key][stamp] = msg
        self.arrival.setdefault(stamp, time.monotonic())

    def spin_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        return self.session.spin_until(cond, timeout)

    def complete(self, stamp: int) -> bool:
        return all(stamp in r for r in self.received.values())

    def close(self) -> None:
        self.session.close()


def _header(stamp_ns: int, frame: str = "camera") -> Header:
    h = Header()
    h.stamp.sec, h.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    h.frame_id = frame
    return h


def _camera_info(stamp_ns: int, K: np.ndarray = K_CAM, tx: float = 0.0, hw=IMAGE_HW) -> CameraInfo:
    m = CameraInfo()
    m.header = _header(stamp_ns)
    m.height, m.width = hw
    m.k = [float(v) for v in np.asarray(K).reshape(-1)]
    P = np.zeros((3, 4))
    P[:, :3] = K
    P[0, 3] = tx
    m.p = [float(v) for v in P.reshape(-1)]
    return m


def _scene(seed: int, grid) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
    lo, hi = np.asarray(grid.origin), np.asarray(grid.upper)
    points = (lo + rng.random((3000, 3)) * (hi - lo)).astype(np.float32)
    return image, points


def _cloud(points: np.ndarray, stamp_ns: int) -> PointCloud2:
    import pointcloud2

    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    rec = np.empty(len(points), dt)
    rec["x"], rec["y"], rec["z"] = points[:, 0], points[:, 1], points[:, 2]
    msg = PointCloud2()
    cloud = pointcloud2.create_cloud(_header(stamp_ns, "sgn_grid"), pointcloud2.fields_from_dtype(dt), rec)
    msg.header, msg.height, msg.width = cloud.header, cloud.height, cloud.width
    msg.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in cloud.fields]
    msg.is_bigendian = cloud.is_bigendian
    msg.point_step, msg.row_step, msg.is_dense = cloud.point_step, cloud.row_step, cloud.is_dense
    msg.data = bytes(cloud.data)
    return msg


def _camera_to_grid() -> np.ndarray:
    return xyz_rpy_to_matrix(PARAMETERS["camera_to_grid"].default)


def _check_outputs(h: Harness, stamp: int, pred, grid, colors: np.ndarray) -> None:
    """All three outputs of `stamp` agree with the predictor's labels / confidence and each other."""
    import pointcloud2

    g = h.received["grid"][stamp]
    labels, conf, ggrid, corner = conv.voxel_grid_to_arrays(g)
    assert g.header.frame_id == "sgn_grid"
    np.testing.assert_array_equal(labels, pred.labels)
    np.testing.assert_allclose(conf, pred.confidence, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(corner[:3, 3], grid.origin, atol=1e-6)
    assert ggrid.dims == grid.dims and abs(ggrid.voxel_size - grid.voxel_size) < 1e-6

    occupied = (pred.labels != 0) & (pred.labels != 255)
    centres = grid.index_to_center(np.argwhere(occupied))
    pc = h.received["points"][stamp]
    pts = pointcloud2.read_points(pc)
    assert len(pts) == occupied.sum() > 0
    np.testing.assert_allclose(np.stack([pts["x"], pts["y"], pts["z"]], 1), centres, atol=1e-4)
    np.testing.assert_array_equal(pts["label"], pred.labels[occupied])
    np.testing.assert_array_equal(pts["confidence"], pred.confidence[occupied])
    rgb = pts["rgb"].view(np.uint32)
    col = colors[pred.labels[occupied]].astype(np.uint32)
    np.testing.assert_array_equal(rgb, (col[:, 0] << 16) | (col[:, 1] << 8) | col[:, 2])

    # markers_merge_runs (sgn.yaml: true, markers_surface_only false): boxes along x covering
    # exactly the occupied voxels, each in its class's marker
    want = sorted((int(pred.labels[tuple(v)]), *map(int, v)) for v in np.argwhere(occupied))
    assert _marker_voxels(h.received["markers"][stamp], grid) == want


def _marker_voxels(ma, grid) -> list[tuple[int, int, int, int]]:
    """(class, i, j, k) of every voxel the ADD markers of a MarkerArray draw (a CUBE_LIST's points
    are boxes of the marker's scale; merged markers: id = class + 256 * b, boxes of 2^b voxels along x),
    in grid coordinates (the node's grid_frame)."""
    vs, out = grid.voxel_size, []
    for m in ma.markers:
        if m.action != m.ADD:
            continue
        c, b = m.id % 256, m.id // 256
        assert m.type == m.CUBE_LIST and (m.scale.x, m.scale.y, m.scale.z) == pytest.approx((vs * 2 ** b, vs, vs))
        for p in m.points:
            i0 = int(round((p.x - grid.origin[0]) / vs - 2 ** b / 2))
            j, k = (int(round((q - o) / vs - 0.5)) for q, o in zip((p.y, p.z), grid.origin[1:]))
            out += [(c, i, j, k) for i in range(i0, i0 + 2 ** b)]
    return sorted(out)


# --------------------------------------------------------------------------- tests without DDS
def test_yaml_sets_every_declared_parameter() -> None:
    """config/sgn.yaml and PARAMETERS agree key for key and type for type (no option ignored)."""
    data = yaml.safe_load((ROOT / "config" / "sgn.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, spec in PARAMETERS.items():
        assert type(params[name]) is type(spec.default), name
    np.testing.assert_allclose(params["camera_to_grid"], spec_default := PARAMETERS["camera_to_grid"].default)
    T = xyz_rpy_to_matrix(spec_default)
    # optical axes of the default camera in the grid frame: z forward = +x, x right = -y, y down = -z
    np.testing.assert_allclose(T[:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-9)


# --------------------------------------------------------------------------- node process (points)
@pytest.fixture(scope="module")
def points_node(ros_env, tiny, tmp_path_factory):
    env = _with_domain(ros_env)
    node = NodeProcess(
        tmp_path_factory.mktemp("node") / "sgn_node.log",
        env,
        {
            "variant": tiny["config"], "checkpoint": tiny["checkpoint"], "device": "cpu",
            "depth_source": "points", "diagnostics_period": 0.5, "log_throttle": 0.5, "input_timeout": 2.0,
        },
    )
    h = Harness(int(env["ROS_DOMAIN_ID"]))
    yield node, h
    h.close()
    node.stop()


def _publish_frame(h: Harness, stamp: int, image: np.ndarray, points: np.ndarray) -> None:
    h.pub["info"].publish(_camera_info(stamp))
    h.pub["points"].publish(_cloud(points, stamp))
    h.pub["image"].publish(conv.array_to_image(image, "rgb8", _header(stamp)))


def _wait_answer(node: NodeProcess, h: Harness, stamp: int, make: Callable[[], None], timeout: float = 60.0) -> None:
    """Publish (repeatedly, until discovery is done) and wait for all outputs of `stamp`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not h.complete(stamp):
        assert node.proc.poll() is None, "sgn_node died:\n" + node.log()
        make()
        h.spin_until(lambda: h.complete(stamp), 1.0)
    assert h.complete(stamp), f"no answer for stamp {stamp}; node log:\n{node.log()}"


def test_outputs_match_predictor(points_node, tiny) -> None:
    from sgn_ros.labels import load_label_set

    node, h = points_node
    grid, predictor = tiny["grid"], tiny["predictor"]
    image, points = _scene(1, grid)
    stamp = (STAMP0 + 1) * 1_000_000_000
    _wait_answer(node, h, stamp, lambda: _publish_frame(h, stamp, image, points))
    # the node's input_mode default, auto, is the predictor's: a KITTI-like size is cropped
    pred = predictor.predict(image, K_CAM, np.linalg.inv(_camera_to_grid()), points=points)
    _check_outputs(h, stamp, pred, grid, load_label_set("semantickitti").colors_rgb)
    assert "Fast DDS profile from FASTDDS_DEFAULT_PROFILES_FILE" in node.log()  # the transport in use, said once
    assert "outputs serialized by the native passes" in node.log()  # the C extension is built (make / colcon)
    assert "outputs published through rcl directly" in node.log()


def test_marker_options_change_at_runtime(points_node, tiny) -> None:
    """markers_merge_runs false and markers_surface_only true, set on the running node: the next
    MarkerArray has one cube per voxel with a free face, id = class, and DELETE markers for the
    merged boxes' ids of the frame before (RViz would keep showing them otherwise)."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    node, h = points_node
    grid, predictor = tiny["grid"], tiny["predictor"]
    cli = h.node.create_client(SetParameters, "/sgn_node/set_parameters")
    assert h.spin_until(cli.service_is_ready, 20.0)

    def set_markers(merge: bool, surface: bool) -> None:
        params = [Parameter(name=n, value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=v))
                  for n, v in (("markers_merge_runs", merge), ("markers_surface_only", surface))]
        res = _answer(h, cli, lambda: SetParameters.Request(parameters=params), "set_parameters")
        assert all(r.successful for r in res.results), res

    image, points = _scene(7, grid)
    first, second = (STAMP0 + 70) * 1_000_000_000, (STAMP0 + 71) * 1_000_000_000
    try:
        _wait_answer(node, h, first, lambda: _publish_frame(h, first, image, points))
        merged = {m.id for m in h.received["markers"][first].markers if m.action == m.ADD}
        set_markers(False, True)
        _wait_answer(node, h, second, lambda: _publish_frame(h, second, image, points))
    finally:
        set_markers(True, False)
        h.node.destroy_client(cli)
    pred = predictor.predict(image, K_CAM, np.linalg.inv(_camera_to_grid()), points=points)
    shown = surface_mask((pred.labels != 0) & (pred.labels != 255))
    ma = h.received["markers"][second]
    assert _marker_voxels(ma, grid) == sorted((int(pred.labels[tuple(v)]), *map(int, v)) for v in np.argwhere(shown))
    added = {m.id for m in ma.markers if m.action == m.ADD}
    assert max(added) < 256 and max(merged) >= 256  # cubes now; boxes of 2 or more voxels before
    assert {m.id for m in ma.markers if m.action == m.DELETE} == merged - added


def test_parameter_pose_attaches_the_grid_to_the_camera(points_node) -> None:
    """camera_pose_source auto without a TF tree: camera_to_grid is used (the log says so) and the
    grid frame is latched on /tf_static under the image's frame, so RViz can place the outputs."""
    from tf2_msgs.msg import TFMessage

    from sgn_ros.ros.tf_listener import tf_qos, transform_to_matrix

    node, h = points_node
    statics: list = []
    sub = h.node.create_subscription(TFMessage, "/tf_static", statics.append, tf_qos(True))
    try:
        assert h.spin_until(lambda: any(t.child_frame_id == "sgn_grid" for m in statics for t in m.transforms), 10.0)
    finally:
        h.node.destroy_subscription(sub)
    ts = next(t for m in statics for t in m.transforms if t.child_frame_id == "sgn_grid")
    assert ts.header.frame_id == "camera"
    np.testing.assert_allclose(transform_to_matrix(ts.transform), invert_transform(_camera_to_grid()), atol=1e-9)
    assert "camera pose: parameter camera_to_grid (TF has no transform sgn_grid <- camera)" in node.log()


def test_parameters_from_yaml_and_overrides(points_node, tiny) -> None:
    from rcl_interfaces.srv import GetParameters

    _, h = points_node
    cli = h.node.create_client(GetParameters, "/sgn_node/get_parameters")
    assert h.spin_until(cli.service_is_ready, 20.0)
    names = ["output_depth", "sync_tolerance", "input_mode", "depth_source", "checkpoint", "camera_to_grid"]
    got = dict(zip(names, _answer(h, cli, lambda: GetParameters.Request(names=names), "get_parameters").values))
    yaml_params = yaml.safe_load((ROOT / "config" / "sgn.yaml").read_text())["/**"]["ros__parameters"]
    assert got["output_depth"].integer_value == yaml_params["output_depth"]
    assert got["sync_tolerance"].double_value == yaml_params["sync_tolerance"]
    assert got["input_mode"].string_value == yaml_params["input_mode"]
    assert got["depth_source"].string_value == "points"  # -p override
    assert got["checkpoint"].string_value == str(tiny["checkpoint"])
    assert list(got["camera_to_grid"].double_array_value) == yaml_params["camera_to_grid"]
    h.node.destroy_client(cli)


def _malformed_image(rng: np.random.Generator, stamp: int):
    from sensor_msgs.msg import Image

    m = Image()
    m.header = _header(stamp)
    kind = rng.integers(0, 6)
    enc = rng.choice(list(conv.IMAGE_ENCODINGS) + ["bogus", "", "rgb16", "jpeg"])
    m.encoding = str(enc)
    m.height, m.width = int(rng.integers(0, 40)), int(rng.integers(0, 40))
    m.step = int(rng.integers(0, 200))
    if kind == 0:  # claims a huge image, sends a few bytes
        m.height, m.width, m.step = 100000, 100000, 300000
    if kind == 1:  # right size, wrong encoding for the network (depth)
        m.encoding, m.height, m.width, m.step = "32FC1", IMAGE_HW[0], IMAGE_HW[1], IMAGE_HW[1] * 4
    n = int(rng.integers(0, 4000))
    m.data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return m


def _malformed_info(rng: np.random.Generator, stamp: int) -> CameraInfo:
    K = K_CAM.copy()
    kind = rng.integers(0, 4)
    if kind == 0:
        K[:] = 0.0
    elif kind == 1:
        K[0, 0] = np.nan
    elif kind == 2:
        K[2, 2] = 5.0
    else:
        K[1, 1] = -3.0
    return _camera_info(stamp, K)


def _malformed_cloud(rng: np.random.Generator, stamp: int) -> PointCloud2:
    pts = rng.normal(0, 10, (int(rng.integers(1, 200)), 3)).astype(np.float32)
    pts[rng.random(len(pts)) < 0.3] = np.nan
    msg = _cloud(pts, stamp)
    kind = rng.integers(0, 4)
    if kind == 0:
        msg.data = msg.data[: len(msg.data) // 2]
    elif kind == 1:
        msg.point_step = 2
    elif kind == 2:
        msg.fields = msg.fields[:2]
    return msg


def test_fuzzed_input_then_good_frame(points_node, tiny) -> None:
    """Thousands of malformed / out-of-order messages; the node survives and answers a good frame."""
    node, h = points_node
    rng = np.random.default_rng(123)
    base = (STAMP0 + 10) * 1_000_000_000
    good_image, good_points = _scene(2, tiny["grid"])
    warm = base - 2_000_000_000  # discovery done before the fuzzing starts
    _wait_answer(node, h, warm, lambda: _publish_frame(h, warm, good_image, good_points))
    for i in range(3000):
        stamp = base + int(rng.integers(-50, 50)) * 10_000_000  # jittered: many out of order
        what = i % 4
        if what == 0:
            h.pub["image"].publish(_malformed_image(rng, stamp))
            h.pub["info"].publish(_camera_info(stamp))
            h.pub["points"].publish(_cloud(good_points[:10], stamp))
        elif what == 1:
            h.pub["info"].publish(_malformed_info(rng, stamp))
            h.pub["points"].publish(_cloud(good_points[:10], stamp))
            h.pub["image"].publish(conv.array_to_image(good_image, "rgb8", _header(stamp)))
        elif what == 2:
            h.pub["points"].publish(_malformed_cloud(rng, stamp))
            h.pub["info"].publish(_camera_info(stamp))
            h.pub["image"].publish(conv.array_to_image(good_image[:20, :30].copy(), "rgb8", _header(stamp)))
        else:  # good messages whose stamps never pair up (and stale ones)
            h.pub["image"].publish(conv.array_to_image(good_image, "bgr8", _header(stamp - 5_000_000_000)))
        if i % 200 == 0:
            h.executor.spin_once(timeout_sec=0.0)
    assert node.proc.poll() is None, node.log()
    stamp = base + 5 * 1_000_000_000
    _wait_answer(node, h, stamp, lambda: _publish_frame(h, stamp, good_image, good_points))
    pred = tiny["predictor"].predict(good_image, K_CAM, np.linalg.inv(_camera_to_grid()), points=good_points)
    got, _, _, _ = conv.voxel_grid_to_arrays(h.received["grid"][stamp])
    np.testing.assert_array_equal(got, pred.labels)
    # diagnostics saw the problems and the node said so in its log (throttled)
    assert h.spin_until(lambda: any(_diag(d)["messages_malformed"] != "0" for d in h.diagnostics), 5.0)
    last = _diag(h.diagnostics[-1])
    print("diagnostics after fuzzing:", last)
    assert int(last["messages_malformed"]) > 0 and int(last["messages_out_of_order"]) > 0
    log = node.log()
    assert "Traceback" not in log
    assert 0 < log.count("WARN") < 1000  # throttled, not one line per bad message


def _diag(arr) -> dict[str, str]:
    return {kv.key: kv.value for kv in arr.status[0].values}


def test_burst_keeps_memory_and_latency_bounded(points_node, tiny) -> None:
    """10x the camera rate (100 Hz) for a few seconds: newest frames win, RSS and latency stay bounded."""
    node, h = points_node
    image, points = _scene(3, tiny["grid"])
    base = (STAMP0 + 100) * 1_000_000_000
    warm = base - 1_000_000_000
    _wait_answer(node, h, warm, lambda: _publish_frame(h, warm, image, points))
    rss0 = node.rss_mb()
    before = dict(_diag(h.diagnostics[-1])) if h.diagnostics else {"frames_dropped": "0"}
    n, period = 400, 0.01
    t0 = time.monotonic()
    for i in range(n):
        _publish_frame(h, base + i * 10_000_000, image, points)
        h.executor.spin_once(timeout_sec=0.0)
        time.sleep(max(0.0, t0 + (i + 1) * period - time.monotonic()))
    last = base + (n - 1) * 10_000_000
    sent_done = time.monotonic()
    assert h.spin_until(lambda: h.complete(last), 30.0), "newest frame of the burst not answered\n" + node.log()
    final_latency = h.arrival[last] - sent_done
    rss1 = node.rss_mb()
    answered = [s for s in h.received["grid"] if base <= s <= last]
    h.spin_until(lambda: False, 1.2)  # one more diagnostics period
    after = _diag(h.diagnostics[-1])
    print(f"burst: {len(answered)} of {n} answered, final latency {final_latency:.3f} s,",
          f"RSS {rss0:.0f} -> {rss1:.0f} MB, diagnostics:", after)
    assert int(after["frames_dropped"]) > int(before["frames_dropped"])  # the worker skipped old frames
    assert len(answered) < n
    assert final_latency < 5.0, final_latency
    assert float(after["latency_ms_max"]) < 5000.0
    assert rss1 - rss0 < 150.0, (rss0, rss1)


def test_best_effort_and_reliable_publishers_with_default_qos(points_node, tiny) -> None:
    """input_reliability auto (the default): frames from best-effort publishers (camera drivers) are
    received, and once they are gone the node returns to reliable (every frame of a replay)."""
    node, h = points_node
    image, points = _scene(6, tiny["grid"])
    be = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    from sensor_msgs.msg import Image

    pubs = {"image": h.node.create_publisher(Image, "image", be),
            "info": h.node.create_publisher(CameraInfo, "camera_info", be),
            "points": h.node.create_publisher(PointCloud2, "points", be)}
    stamp = (STAMP0 + 120) * 1_000_000_000

    def make() -> None:
        pubs["info"].publish(_camera_info(stamp))
        pubs["points"].publish(_cloud(points, stamp))
        pubs["image"].publish(conv.array_to_image(image, "rgb8", _header(stamp)))

    try:
        _wait_answer(node, h, stamp, make)
        assert "subscribed /image (sensor_msgs/msg/Image) best_effort" in node.log()
    finally:
        for pub in pubs.values():
            h.node.destroy_publisher(pub)
    seen = len(node.log())
    assert h.spin_until(lambda: "subscribed /image (sensor_msgs/msg/Image) reliable" in node.log()[seen:], 10.0), \
        node.log()
    stamp2 = stamp + 1_000_000_000
    _wait_answer(node, h, stamp2, lambda: _publish_frame(h, stamp2, image, points))


def test_frame_without_usable_depth_is_skipped_and_counted(points_node, tiny) -> None:
    """A point cloud with almost nothing in the grid gives no depth-guided frame: the node counts it
    as frames_no_depth, logs "no usable depth" naming the points topic, publishes nothing for it and
    answers the next good frame."""
    node, h = points_node
    image, points = _scene(21, tiny["grid"])
    h.spin_until(lambda: False, 1.2)  # the latest /diagnostics (other tests may have skipped frames)
    before = int(_diag(h.diagnostics[-1]).get("frames_no_depth", 0)) if h.diagnostics else 0
    base = (STAMP0 + 124) * 1_000_000_000  # between the neighbouring tests: stamps rise through the module

    def counted() -> bool:
        return bool(h.diagnostics) and int(_diag(h.diagnostics[-1]).get("frames_no_depth", 0)) > before

    for i in range(20):  # repeated until discovery is done
        stamp = base + i * 100_000_000
        _publish_frame(h, stamp, image, points[:3])
        if h.spin_until(counted, 1.0):
            break
    assert counted(), node.log()
    log = node.log()  # the warning is throttled: it may be an earlier frame's
    assert "no usable depth" in log and "/points" in log
    assert not h.complete(stamp)
    good = base + 50 * 100_000_000
    _wait_answer(node, h, good, lambda: _publish_frame(h, good, image, points))


def test_diagnostics_counters_add_up(points_node, tiny) -> None:
    """Every received message is counted: per input received == matched + dropped + pending, frames
    taken == processed + skipped; N slow complete frames raise received and matched by N."""
    node, h = points_node
    image, points = _scene(7, tiny["grid"])
    h.spin_until(lambda: False, 1.2)
    assert h.spin_until(lambda: bool(h.diagnostics), 10.0), "no /diagnostics\n" + node.log()  # run alone: none yet
    before = _diag(h.diagnostics[-1])
    base = (STAMP0 + 130) * 1_000_000_000
    n = 4
    for i in range(n):
        stamp = base + i * 100_000_000
        _publish_frame(h, stamp, image, points)
        assert h.spin_until(lambda s=stamp: h.complete(s), 30.0), node.log()
    h.spin_until(lambda: False, 1.2)
    after = _diag(h.diagnostics[-1])
    print("diagnostics:", after)
    for key in ("image", "info", "points"):
        received = int(after[f"{key}.received"])
        assert received == int(after[f"{key}.matched"]) + int(after[f"{key}.dropped"]) + int(after[f"{key}.pending"])
        assert received - int(before[f"{key}.received"]) == n
        assert int(after[f"{key}.matched"]) - int(before[f"{key}.matched"]) == n
    assert int(after["frames_complete"]) == int(after["frames_taken"]) + int(after["frames_dropped"])
    skipped = sum(int(after[k]) for k in ("frames_malformed", "frames_failed", "frames_no_transform",
                                          "frames_no_depth"))
    assert int(after["frames_taken"]) == int(after["frames_processed"]) + skipped
    assert int(after["frames_processed"]) - int(before["frames_processed"]) == n
    assert after["output_encoder"] == "native"  # the C extension is built (make / colcon)
    assert after["output_publisher"] == "rcl"  # sgn_ros.ros.rcl_publish: GIL released, no extra copy


def test_diagnostics_carry_the_pipeline_stages(points_node, tiny) -> None:
    """/diagnostics has every stage's counters and timings (decode, infer, publish); a frame answered
    raises each stage's in / out by one and gives finite p50 times."""
    node, h = points_node
    image, points = _scene(8, tiny["grid"])
    h.spin_until(lambda: False, 1.2)
    assert h.spin_until(lambda: bool(h.diagnostics), 10.0), "no /diagnostics\n" + node.log()  # run alone: none yet
    before = _diag(h.diagnostics[-1])
    stamp = (STAMP0 + 140) * 1_000_000_000
    _wait_answer(node, h, stamp, lambda: _publish_frame(h, stamp, image, points))
    h.spin_until(lambda: False, 1.2)
    after = _diag(h.diagnostics[-1])
    for stage in ("decode", "infer", "publish"):
        for key in ("in", "out", "skipped", "dropped", "failed", "p50_ms", "p95_ms", "last_ms", "last_error"):
            assert f"stage.{stage}.{key}" in after, (stage, key, sorted(after))
        assert int(after[f"stage.{stage}.out"]) > int(before.get(f"stage.{stage}.out", "0")), stage
        assert float(after[f"stage.{stage}.p50_ms"]) > 0.0
        assert int(after[f"stage.{stage}.in"]) == int(after[f"stage.{stage}.out"]) + int(
            after[f"stage.{stage}.skipped"]) + int(after[f"stage.{stage}.failed"])
    # where the publish stage's time goes: encoding the bytes and Publisher.publish (all 3 outputs subscribed)
    assert float(after["encode_ms_mean"]) > 0.0 and float(after["send_ms_mean"]) > 0.0
    assert float(after["stage.publish.last_ms"]) > 0.0
    # the newest frame with outputs out is named, with its own network time (node_rate matches by it)
    assert after["last_frame_stamp"] == str(stamp)
    assert float(after["last_frame_inference_ms"]) == pytest.approx(float(after["stage.infer.last_ms"]), abs=1.0)
    # and its own time in the node: complete -> published is the sum of its stages (node_rate splits
    # a frame's overhead into the node's part and the transport's with these)
    own = {k: float(after[f"last_frame_{k}_ms"]) for k in ("latency", "queued", "decode", "waiting", "inference",
                                                            "publish")}
    # (the decode stage's call holds the frame's decode; its publish time adds the hand-over to that stage)
    assert own["decode"] <= float(after["stage.decode.last_ms"]) + 0.2
    assert own["publish"] >= float(after["stage.publish.last_ms"]) - 0.2
    assert all(v >= 0.0 for v in own.values()), own
    assert own["latency"] == pytest.approx(sum(v for k, v in own.items() if k != "latency"), abs=0.5)


def test_missing_topic_is_reported(points_node, tiny) -> None:
    """Images without camera_info / points: no output, a WARN status naming the silent topics, a log line."""
    node, h = points_node
    image, _ = _scene(4, tiny["grid"])
    base = (STAMP0 + 150) * 1_000_000_000
    end = time.monotonic() + 3.5
    i = 0
    while time.monotonic() < end:
        h.pub["image"].publish(conv.array_to_image(image, "rgb8", _header(base + i * 100_000_000)))
        i += 1
        h.spin_until(lambda: False, 0.1)
    assert not any(base <= s for s in h.received["grid"])
    status = h.diagnostics[-1].status[0]
    assert status.level == status.WARN and "camera_info" in status.message and "points" in status.message
    assert "frames cannot be completed" in node.log()
    assert node.proc.poll() is None


def test_clean_shutdown(points_node) -> None:
    node, _ = points_node
    assert node.stop() == 0, node.log()
    assert "Traceback" not in node.log()


# --------------------------------------------------------------------------- other depth sources
@pytest.mark.parametrize("source", ["depth_image", "stereo"])
def test_depth_sources(source, ros_env, tiny, tmp_path) -> None:
    """depth_image (16UC1 mm) and stereo (right image + P baseline) reach the same result as the predictor."""
    from sgn_ros.data.stereo import StereoParams, disparity_sgbm, disparity_to_depth

    rng = np.random.default_rng(7)
    env = _with_domain(ros_env)
    node = NodeProcess(tmp_path / "node.log", env, {
        "variant": tiny["config"], "checkpoint": tiny["checkpoint"], "device": "cpu", "depth_source": source,
        "stereo_num_disparities": 32})
    h = Harness(int(env["ROS_DOMAIN_ID"]))
    try:
        stamp = (STAMP0 + 200) * 1_000_000_000
        left = rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
        baseline, disp = 0.5, 8
        if source == "depth_image":
            depth_mm = rng.integers(0, 30000, IMAGE_HW).astype(np.uint16)
            depth_mm[rng.random(IMAGE_HW) < 0.1] = 0  # invalid pixels

            def make() -> None:
                h.pub["info"].publish(_camera_info(stamp))
                h.pub["depth"].publish(conv.array_to_image(depth_mm, "16UC1", _header(stamp)))
                h.pub["image"].publish(conv.array_to_image(left, "rgb8", _header(stamp)))

            depth = conv.depth_image_to_metres(conv.array_to_image(depth_mm, "16UC1"))
        else:
            right = np.roll(left, -disp, axis=1)  # constant disparity: a fronto-parallel plane

            def make() -> None:
                h.pub["info"].publish(_camera_info(stamp))
                h.pub["right_info"].publish(_camera_info(stamp, tx=-K_CAM[0, 0] * baseline))
                h.pub["right_image"].publish(conv.array_to_image(right, "rgb8", _header(stamp)))
                h.pub["image"].publish(conv.array_to_image(left, "rgb8", _header(stamp)))

            depth = disparity_to_depth(disparity_sgbm(left, right, StereoParams(num_disparities=32)),
                                       baseline, K_CAM[0, 0])
            assert np.nanmedian(np.where(depth > 0, depth, np.nan)) == pytest.approx(K_CAM[0, 0] * baseline / disp,
                                                                                      rel=0.1)
        _wait_answer(node, h, stamp, make)
        pred = tiny["predictor"].predict(left, K_CAM, np.linalg.inv(_camera_to_grid()),
                                         depth=np.where(depth > 0, depth, 0.0).astype(np.float32))
        got, _, _, _ = conv.voxel_grid_to_arrays(h.received["grid"][stamp])
        np.testing.assert_array_equal(got, pred.labels)
    finally:
        h.close()
        assert node.stop() == 0, node.log()


def test_unknown_parameter_is_an_error(ros_env, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"confidence_treshold": 0.5}}}))
    node = NodeProcess(tmp_path / "node.log", _with_domain(ros_env), {}, extra=["--params-file", str(bad)])
    rc = node.proc.wait(60)
    node.stop()
    assert rc == 2
    assert "confidence_treshold" in node.log()


def test_stop_abandons_a_long_inference(ros_env, tiny) -> None:
    """Shutdown (destroy_node = deactivate) while the network is busy for 30 s: the pipeline stops
    within ~3 s, the busy stage is abandoned. The node runs in this process so that its network
    stage can be made to take 30 s; the frame reaches it over DDS like any other."""
    import threading

    from rclpy.parameter import Parameter

    from sgn_ros.ros.node import STOP_TIMEOUT_S, SGNNode

    env = _with_domain(ros_env)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(env["ROS_DOMAIN_ID"]))
    node = SGNNode(context=ctx, parameter_overrides=[
        Parameter("variant", value=str(tiny["config"])), Parameter("checkpoint", value=str(tiny["checkpoint"])),
        Parameter("device", value="cpu"), Parameter("depth_source", value="points"),
        Parameter("input_reliability", value="reliable")])
    busy = threading.Event()

    def long_inference(batch):
        busy.set()
        time.sleep(30.0)

    node.predictor.infer = long_inference
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    h = Harness(int(env["ROS_DOMAIN_ID"]))
    try:
        image, points = _scene(9, tiny["grid"])
        stamp = (STAMP0 + 300) * 1_000_000_000
        end = time.monotonic() + 30.0
        while not busy.is_set() and time.monotonic() < end:
            _publish_frame(h, stamp, image, points)
            h.spin_until(busy.is_set, 0.5)
        assert busy.is_set(), "the frame never reached the network stage"
        t0 = time.monotonic()
        node.destroy_node()
        took = time.monotonic() - t0
    finally:
        h.close()
        executor.shutdown()
        rclpy.try_shutdown(context=ctx)
    assert took < STOP_TIMEOUT_S + 1.0, took


def test_markers_period_thins_markers_only(ros_env, tiny, tmp_path) -> None:
    """markers_period 60 s: every frame gets points and grid, only the first a MarkerArray. This node
    runs without the project's Fast DDS profile (as `ros2 run` would): it works, and says how to
    get the shared-memory transport."""
    env = {**_with_domain(ros_env), "FASTDDS_DEFAULT_PROFILES_FILE": ""}
    node = NodeProcess(tmp_path / "node.log", env, {
        "variant": tiny["config"], "checkpoint": tiny["checkpoint"], "device": "cpu", "depth_source": "points",
        "markers_period": 60.0})
    h = Harness(int(env["ROS_DOMAIN_ID"]))
    try:
        image, points = _scene(10, tiny["grid"])
        base = (STAMP0 + 400) * 1_000_000_000
        end = time.monotonic() + 60.0
        while time.monotonic() < end and not h.received["markers"]:  # the first frame after discovery
            assert node.proc.poll() is None, node.log()
            _publish_frame(h, base, image, points)
            h.spin_until(lambda: bool(h.received["markers"]), 1.0)
        assert h.received["markers"], node.log()
        later = [base + i * 200_000_000 for i in range(1, 4)]
        for stamp in later:
            _publish_frame(h, stamp, image, points)
            assert h.spin_until(lambda s=stamp: s in h.received["grid"] and s in h.received["points"], 30.0), \
                node.log()
        h.spin_until(lambda: False, 0.5)
        assert not any(s in h.received["markers"] for s in later), sorted(h.received["markers"])
        assert "FASTDDS_DEFAULT_PROFILES_FILE is not set" in node.log() and "fastdds_profile.xml" in node.log()
    finally:
        h.close()
        assert node.stop() == 0, node.log()


def test_compile_dense_compiles_in_the_warmup_and_refuses_without_a_compiler(ros_env, tiny, tmp_path) -> None:
    """compile_dense reduce-overhead (on the CPU: inductor, no CUDA graphs): the node compiles the
    dense parts in its warm-up, before 'ready', and its outputs are the eager predictor's; the
    network runs on the predictor's network thread beside the pipeline's. On a machine without a
    C++ compiler (CXX pointing nowhere, a fresh inductor cache) it refuses to start (exit 2),
    naming compile_dense, instead of failing at the first frame."""
    cache = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    params = {"variant": tiny["config"], "checkpoint": tiny["checkpoint"], "device": "cpu", "depth_source": "points",
              "diagnostics_period": 0.5}
    broken = NodeProcess(tmp_path / "broken.log", {**_with_domain(ros_env), **cache, "CXX": "/nonexistent/c++"},
                         {**params, "compile_dense": "default"})
    rc = broken.proc.wait(180)
    broken.stop()
    assert rc == 2, broken.log()
    assert "cannot start" in broken.log() and "compile_dense='default'" in broken.log(), broken.log()
    assert "run without compile_dense" in broken.log()

    env = {**_with_domain(ros_env), **cache}
    node = NodeProcess(tmp_path / "node.log", env, {**params, "compile_dense": "reduce-overhead"})
    h = Harness(int(env["ROS_DOMAIN_ID"]))
    try:
        image, points = _scene(12, tiny["grid"])
        stamp = (STAMP0 + 420) * 1_000_000_000
        _wait_answer(node, h, stamp, lambda: _publish_frame(h, stamp, image, points), timeout=240.0)
        assert "dense parts compiled: reduce-overhead" in node.log()
        pred = tiny["predictor"].predict(image, K_CAM, np.linalg.inv(_camera_to_grid()), points=points)
        got, conf, _, _ = conv.voxel_grid_to_arrays(h.received["grid"][stamp])
        assert np.mean(got != pred.labels) < 1e-3
        np.testing.assert_allclose(conf, pred.confidence, atol=1.0 / 255.0)
        assert h.spin_until(lambda: bool(h.diagnostics), 10.0), node.log()
        assert _diag(h.diagnostics[-1])["compile_dense"] == "reduce-overhead"
    finally:
        h.close()
        assert node.stop() == 0, node.log()


def test_msnet3d_without_weights_refuses_to_start(ros_env, tiny, tmp_path) -> None:
    """stereo_method msnet3d with no stereo_weights: exit 2 with MSNetWeightsMissing's message (where
    to get the weights), never an untrained depth network."""
    from sgn_ros.stereo.msnet import MSNetWeightsMissing

    node = NodeProcess(tmp_path / "node.log", _with_domain(ros_env), {
        "variant": tiny["config"], "checkpoint": tiny["checkpoint"], "device": "cpu", "depth_source": "stereo",
        "stereo_method": "msnet3d"})
    rc = node.proc.wait(120)
    node.stop()
    assert rc == 2, node.log()
    assert "cannot start" in node.log() and str(MSNetWeightsMissing("no MobileStereoNet weights given")) in node.log()


# --------------------------------------------------------------------------- SGN-T: temporal frames
def test_temporal_frames_use_odometry(ros_env, tiny, tmp_path) -> None:
    """A temporal config (frames -2, -1): earlier images join with their odometry-derived extrinsics and
    their points moved into the current frame, exactly as SSCPredictor is given them here."""
    import torch
    from nav_msgs.msg import Odometry

    from sgn_ros.model import build_model
    from sgn_ros.model.checkpoint import save_checkpoint
    from sgn_ros.model.predictor import SSCPredictor

    cfg_path = tmp_path / "sgn-tiny-t.yaml"
    cfg = yaml.safe_load(Path(tiny["config"]).read_text())
    cfg["name"] = "sgn-tiny-t"
    cfg["data"]["temporal"] = [-2, -1]
    cfg_path.write_text(yaml.safe_dump(cfg))
    torch.manual_seed(1)
    ckpt = save_checkpoint(tmp_path / "t.pth", build_model(str(cfg_path)), _cfg(cfg_path))
    predictor = SSCPredictor(str(cfg_path), checkpoint=ckpt, device="cpu")
    grid = predictor.grid

    env = _with_domain(ros_env)
    node = NodeProcess(tmp_path / "node.log", env, {
        "variant": cfg_path, "checkpoint": ckpt, "device": "cpu", "depth_source": "points"})
    h = Harness(int(env["ROS_DOMAIN_ID"]))
    odom_pub = h.node.create_publisher(Odometry, "odom", 10)
    try:
        poses, scenes, stamps = [], [], []
        for f in range(3):
            P = xyz_rpy_to_matrix([1.5 * f, 0.1 * f, 0.0, 0.0, 0.0, 0.05 * f])
            poses.append(conv.pose_to_matrix(matrix_to_pose(P)))  # what the node reads back
            scenes.append(_scene(10 + f, grid))
            stamps.append((STAMP0 + 300 + f) * 1_000_000_000)

            def make(f=f, P=P) -> None:
                od = Odometry()
                od.header = _header(stamps[f], "odom")
                od.child_frame_id = "sgn_grid"
                od.pose.pose = matrix_to_pose(P)
                odom_pub.publish(od)
                _publish_frame(h, stamps[f], *scenes[f])

            _wait_answer(node, h, stamps[f], make)
        g2c = invert_transform(_camera_to_grid())
        images, l2c = [scenes[2][0]], [g2c]
        clouds = [scenes[2][1]]
        for past in (0, 1):  # config order: -2, -1
            cur_to_past = invert_transform(poses[past]) @ poses[2]
            images.append(scenes[past][0])
            l2c.append(g2c @ cur_to_past)
            # every frame's points move into the current grid frame, cropped there once (as the datasets)
            clouds.append(apply_transform(invert_transform(cur_to_past), scenes[past][1]))
        # the camera images as the node got them: both fit them by input_mode auto
        pred = predictor.predict(images, [K_CAM] * 3, l2c, points=np.concatenate(clouds))
        got, _, _, _ = conv.voxel_grid_to_arrays(h.received["grid"][stamps[2]])
        np.testing.assert_array_equal(got, pred.labels)
        # without the history the answer differs (the earlier frames really are used)
        alone = predictor.predict(images[0], K_CAM, g2c, points=clouds[0][grid.contains(clouds[0])])
        assert not np.array_equal(alone.labels, pred.labels)
    finally:
        h.close()
        assert node.stop() == 0, node.log()


# --------------------------------------------------------------------------- TF, compressed images
def _tf_pub(h: Harness):
    from tf2_msgs.msg import TFMessage

    from sgn_ros.ros.tf_listener import tf_qos

    return h.node.create_publisher(TFMessage, "/tf", tf_qos(False))


def test_tf_camera_pose_odometry_and_compressed_images(ros_env, tiny, tmp_path) -> None:
    """Camera pose and the temporal frames' poses from TF (a /tf_static base_link -> camera and
    base_link -> sgn_grid tree, a moving odom -> base_link on /tf), images as CompressedImage (PNG),
    depth images: the outputs equal SSCPredictor's given the same transforms. The image features use
    the reference's projection (P's offset removed), the depth back-projection the true pose. A frame
    with no odometry in TF is skipped, counted and logged naming both frames."""
    import cv2
    import torch
    from sensor_msgs.msg import CompressedImage, Image
    from tf2_msgs.msg import TFMessage

    from sgn_ros.geometry import camera_translation_from_P, make_transform
    from sgn_ros.model import build_model
    from sgn_ros.model.checkpoint import save_checkpoint
    from sgn_ros.model.predictor import SSCPredictor
    from sgn_ros.ros.tf_listener import StaticTransformPublisher, matrix_to_transform_stamped, transform_to_matrix

    cfg_path = tmp_path / "sgn-tiny-t1.yaml"
    cfg = yaml.safe_load(Path(tiny["config"]).read_text())
    cfg["name"], cfg["data"]["temporal"] = "sgn-tiny-t1", [-1]
    cfg_path.write_text(yaml.safe_dump(cfg))
    torch.manual_seed(2)
    ckpt = save_checkpoint(tmp_path / "t1.pth", build_model(str(cfg_path)), _cfg(cfg_path))
    predictor = SSCPredictor(str(cfg_path), checkpoint=ckpt, device="cpu")

    env = _with_domain(ros_env)
    node = NodeProcess(tmp_path / "node.log", env, {
        "variant": cfg_path, "checkpoint": ckpt, "device": "cpu", "depth_source": "depth_image",
        "camera_pose_source": "tf", "odom_frame": "odom", "image_transport": "compressed",
        "diagnostics_period": 0.5, "log_throttle": 0.5})
    h = Harness(int(env["ROS_DOMAIN_ID"]))
    tf_pub = _tf_pub(h)
    comp_pub = h.node.create_publisher(CompressedImage, "image/compressed", 10)
    rng = np.random.default_rng(5)

    def through_tf(T: np.ndarray) -> np.ndarray:  # what the node reads back from a TransformStamped
        return transform_to_matrix(matrix_to_transform_stamped("a", "b", 0, T).transform)

    base_cam = xyz_rpy_to_matrix([0.3, 0.05, 1.2, -np.pi / 2, 0.0, -np.pi / 2 + 0.03])
    base_grid = xyz_rpy_to_matrix([0.1, 0.0, 1.0, 0.0, 0.0, 0.02])
    static = StaticTransformPublisher(h.node)
    static.send("base_link", "camera", base_cam)
    static.send("base_link", "sgn_grid", base_grid)
    cam_to_grid = invert_transform(through_tf(base_grid)) @ through_tf(base_cam)
    P_offset = 0.5  # as KITTI's image_2 (P[0, 3] = fx * 0.06: camera 0 -> camera 2), larger to be seen
    try:
        stamps, scenes, poses = [], [], []
        for f in range(2):
            stamp = (STAMP0 + 400 + f) * 1_000_000_000
            odom_base = xyz_rpy_to_matrix([1.5 * f, 0.2 * f, 0.0, 0.0, 0.0, 0.1 * f])
            image = rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
            depth_mm = rng.integers(2000, 30000, IMAGE_HW).astype(np.uint16)
            stamps.append(stamp)
            scenes.append((image, depth_mm))
            poses.append(through_tf(odom_base) @ through_tf(base_grid))

            def make(stamp=stamp, odom_base=odom_base, image=image, depth_mm=depth_mm) -> None:
                tf_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped("odom", "base_link", stamp,
                                                                                 odom_base)]))
                h.pub["info"].publish(_camera_info(stamp, tx=K_CAM[0, 0] * P_offset))
                h.pub["depth"].publish(conv.array_to_image(depth_mm, "16UC1", _header(stamp)))
                ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                assert ok
                m = CompressedImage(header=_header(stamp), format="rgb8; png compressed bgr8")
                m.data = png.tobytes()
                comp_pub.publish(m)

            _wait_answer(node, h, stamp, make)

        P = np.zeros((3, 4))
        P[:, :3], P[0, 3] = K_CAM, K_CAM[0, 0] * P_offset
        projection = make_transform(translation=-camera_translation_from_P(P)) @ invert_transform(cam_to_grid)
        clouds = []
        for _image, depth_mm in scenes:
            depth = conv.depth_image_to_metres(conv.array_to_image(depth_mm, "16UC1"))
            clouds.append(np.asarray(predictor.camera_points(cam_to_grid, K_CAM, depth=depth)))
        cur_to_past = invert_transform(poses[0]) @ poses[1]
        pred = predictor.predict([scenes[1][0], scenes[0][0]], [K_CAM, K_CAM],
                                 [projection, projection @ cur_to_past],
                                 points=np.concatenate([clouds[1], apply_transform(invert_transform(cur_to_past),
                                                                                   clouds[0])]))
        got, _, _, _ = conv.voxel_grid_to_arrays(h.received["grid"][stamps[1]])
        np.testing.assert_array_equal(got, pred.labels)
        # the true pose for the projection too would give another answer (the offset matters)
        other = predictor.predict([scenes[1][0], scenes[0][0]], [K_CAM, K_CAM],
                                  [invert_transform(cam_to_grid), invert_transform(cam_to_grid) @ cur_to_past],
                                  points=np.concatenate([clouds[1], apply_transform(invert_transform(cur_to_past),
                                                                                    clouds[0])]))
        assert not np.allclose(other.confidence, pred.confidence)
        log = node.log()
        assert "camera pose: 'camera' in 'sgn_grid' from TF" in log

        # no odometry in TF at this stamp: skipped, counted, a warning naming both frames
        late = (STAMP0 + 460) * 1_000_000_000
        for _ in range(10):
            h.pub["info"].publish(_camera_info(late))
            h.pub["depth"].publish(conv.array_to_image(scenes[0][1], "16UC1", _header(late)))
            ok, png = cv2.imencode(".png", scenes[0][0])
            comp_pub.publish(CompressedImage(header=_header(late), format="png", data=png.tobytes()))
            h.spin_until(lambda: False, 0.2)
        assert h.spin_until(lambda: h.diagnostics and int(_diag(h.diagnostics[-1])["frames_no_transform"]) > 0, 5.0)
        assert late not in h.received["grid"]
        log = node.log()
        assert "'sgn_grid'" in log and "'odom'" in log and "skipped" in log
        assert "Traceback" not in log
        assert Image  # raw images are not subscribed with image_transport compressed
        assert h.node.count_subscribers("/image") == 0 and h.node.count_subscribers("/image/compressed") == 1
    finally:
        h.close()
        assert node.stop() == 0, node.log()


# --------------------------------------------------------------------------- lifecycle, QoS, missing input
def _answer(h: Harness, cli, request, what: str, tries: int = 12, wait: float = 10.0):
    """The answer to a request that changes nothing, sent again until one is answered.

    A service's answer can be lost: Fast DDS sends a response only once the server has matched
    the client's response reader, and gives up after a short wait ("failed to send response
    (timeout)") when discovery lags on a loaded machine; the first requests of a new client are
    the ones at risk."""
    for _ in range(tries):
        fut = cli.call_async(request())
        if h.spin_until(fut.done, wait):
            return fut.result()
        cli.remove_pending_request(fut)
    raise AssertionError(f"{what}: no answer to {tries} requests")


def _lifecycle_call(h: Harness, name: str, transition: int | None = None):
    """Call the node's lifecycle service `name` (get_state, or change_state with `transition`).
    Each client is made once and first sends requests that change nothing (GetState; ChangeState
    with an unknown label, which the node refuses) until one is answered (`_answer`), so the real
    request's answer cannot be lost to discovery."""
    from lifecycle_msgs.srv import ChangeState, GetState

    srv = ChangeState if transition is not None else GetState
    clients = h.__dict__.setdefault("lifecycle_clients", {})
    cli = clients.get(name)
    if cli is None:
        cli = h.node.create_client(srv, f"/sgn_node/{name}")
        assert h.spin_until(cli.service_is_ready, 30.0), name
        if transition is None:
            _answer(h, cli, srv.Request, name)
        else:
            def probe():
                r = srv.Request()
                r.transition.label = "sgn_test_no_such_transition"
                return r

            assert _answer(h, cli, probe, name).success is False  # the probe changed nothing
        clients[name] = cli
    req = srv.Request()
    if transition is not None:
        req.transition.id = transition
    fut = cli.call_async(req)
    assert h.spin_until(fut.done, 120.0), name
    return fut.result()


def test_lifecycle_qos_and_missing_input(ros_env, tiny, tmp_path) -> None:
    """--lifecycle: unconfigured -> configure (model, warm-up, outputs, grid frame on /tf_static) ->
    activate (subscribes; a misnamed input gets a 'did you mean' warning; a reliable-only input
    reports the best-effort publisher as a QoS mismatch by name) -> deactivate (unsubscribed)."""
    from lifecycle_msgs.msg import State, Transition
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage

    from sgn_ros.ros.tf_listener import tf_qos, transform_to_matrix

    env = _with_domain(ros_env)
    node = NodeProcess(tmp_path / "node.log", env, {
        "variant": tiny["config"], "checkpoint": tiny["checkpoint"], "device": "cpu", "depth_source": "points",
        "image_topic": "camera/image_rect", "input_reliability": "reliable", "input_timeout": 1.0,
        "log_throttle": 0.5, "grid_parent_frame": "base_link", "grid_pose": "[1.0, 0.0, 0.5, 0.0, 0.0, 0.1]"},
        extra=["--lifecycle"])
    h = Harness(int(env["ROS_DOMAIN_ID"]))
    be = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    be_pub = h.node.create_publisher(PointCloud2, "points", be)  # reliable node input: incompatible
    h.node.create_publisher(Image, "camera/image_raw", 5)  # what the user meant
    statics: list = []
    h.node.create_subscription(TFMessage, "/tf_static", statics.append, tf_qos(True))
    try:
        assert _lifecycle_call(h, "get_state").current_state.id == State.PRIMARY_STATE_UNCONFIGURED
        assert h.node.count_publishers("/ssc/grid") == 0
        assert _lifecycle_call(h, "change_state", Transition.TRANSITION_CONFIGURE).success
        assert h.node.count_publishers("/ssc/grid") == 1
        assert "warm-up prediction" in node.log()
        assert h.spin_until(lambda: any(t.child_frame_id == "sgn_grid" for m in statics for t in m.transforms), 10.0)
        ts = next(t for m in statics for t in m.transforms if t.child_frame_id == "sgn_grid")
        assert ts.header.frame_id == "base_link"
        np.testing.assert_allclose(transform_to_matrix(ts.transform), xyz_rpy_to_matrix([1.0, 0.0, 0.5, 0.0, 0.0, 0.1]),
                                   atol=1e-9)
        assert h.node.count_subscribers("/points") == 0  # not active yet
        assert _lifecycle_call(h, "change_state", Transition.TRANSITION_ACTIVATE).success
        assert h.spin_until(lambda: h.node.count_subscribers("/points") == 1, 10.0)
        be_pub.publish(_cloud(np.zeros((3, 3), np.float32), STAMP0 * 1_000_000_000))
        assert h.spin_until(lambda: "did you mean /camera/image_raw" in node.log(), 15.0), node.log()
        assert h.spin_until(lambda: "incompatible" in node.log(), 10.0), node.log()
        assert "/points" in node.log() and "RELIABILITY" in node.log()
        assert _lifecycle_call(h, "change_state", Transition.TRANSITION_DEACTIVATE).success
        assert h.spin_until(lambda: h.node.count_subscribers("/points") == 0, 10.0)
        assert _lifecycle_call(h, "get_state").current_state.id == State.PRIMARY_STATE_INACTIVE
    finally:
        h.close()
        assert node.stop() == 0, node.log()
    assert "Traceback" not in node.log()
