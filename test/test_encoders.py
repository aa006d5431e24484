# Tests of sgn_ros/ros/encoders.py: prediction -> PointCloud2 / MarkerArray / SemanticVoxelGrid
# against slow per-voxel Python versions, read back through an independent CDR deserializer
# (rosbags) and the `pointcloud2` package; pose messages round trip. No DDS traffic.
"""sgn_ros.ros.encoders: one prediction value out as ROS messages."""

from __future__ import annotations

import math
import struct
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages (requirements/ros.txt) not installed")

import pointcloud2  # noqa: E402
from ros_messages import SMALL_GRID  # noqa: E402
from ros_messages import header as _header  # noqa: E402
from ros_messages import to_rosbags as _to_rosbags  # noqa: E402

from sgn_ros.geometry import xyz_rpy_to_matrix  # noqa: E402
from sgn_ros.grid import DEFAULT_GRID, VoxelGrid  # noqa: E402
from sgn_ros.labels import load_label_set  # noqa: E402
from sgn_ros.model.predictor import SSCPrediction  # noqa: E402
from sgn_ros.ros import decoders as dec  # noqa: E402
from sgn_ros.ros import encoders as enc  # noqa: E402


def _pred(labels, conf=None, grid=SMALL_GRID, T=None) -> SSCPrediction:
    return SSCPrediction(labels=labels, confidence=conf, grid=grid, grid_to_frame=T)


def _opts(threshold: float = 0.0, include_confidence: bool = True) -> enc.OutputOptions:
    ls = load_label_set("semantickitti")
    return enc.OutputOptions(ls.colors_rgb, ls.names, threshold, include_confidence)


def test_transforms_round_trip() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        v = [*rng.normal(0, 3, 3), *rng.uniform(-math.pi, math.pi, 3)]
        T = xyz_rpy_to_matrix(v)
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(dec.pose_to_matrix(enc.matrix_to_pose(T)), T, atol=1e-12)
        np.testing.assert_allclose(xyz_rpy_to_matrix(T.reshape(-1)), T)
    # yaw of 90 degrees turns x into y
    np.testing.assert_allclose(xyz_rpy_to_matrix([0, 0, 0, 0, 0, math.pi / 2])[:3, 0], [0, 1, 0], atol=1e-12)
    with pytest.raises(ValueError, match="6 values"):
        xyz_rpy_to_matrix([1.0, 2.0])
    with pytest.raises(ValueError, match="orthonormal"):
        xyz_rpy_to_matrix(np.diag([2.0, 1, 1, 1]).reshape(-1))


# --------------------------------------------------------------------------- prediction out
def _prediction(rng: np.random.Generator, grid: VoxelGrid = SMALL_GRID) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 20, grid.dims).astype(np.uint8)
    labels[rng.random(grid.dims) < 0.4] = 0
    labels[rng.random(grid.dims) < 0.05] = 255
    return labels, rng.random(grid.dims).astype(np.float32)


def _slow_voxels(labels, conf, grid, threshold, T):
    """Obvious per-voxel loop: [(x, y, z, label, confidence)] of occupied voxels in C order."""
    out = []
    X, Y, Z = grid.dims
    for i in range(X):
        for j in range(Y):
            for k in range(Z):
                c = int(labels[i, j, k])
                if c in (0, 255) or conf[i, j, k] < threshold:
                    continue
                p = np.array([grid.origin[0] + (i + 0.5) * grid.voxel_size,
                              grid.origin[1] + (j + 0.5) * grid.voxel_size,
                              grid.origin[2] + (k + 0.5) * grid.voxel_size, 1.0])
                out.append(((T @ p)[:3], c, float(conf[i, j, k])))
    return out


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_prediction_to_pointcloud2_vs_slow_loop(threshold: float) -> None:
    rng = np.random.default_rng(6)
    labels, conf = _prediction(rng)
    colors = load_label_set("semantickitti").colors_rgb
    T = xyz_rpy_to_matrix([1.0, -2.0, 0.5, 0.1, -0.2, 0.3])
    msg = enc.prediction_to_pointcloud2(_pred(labels, conf, T=T), _opts(threshold), _header())
    slow = _slow_voxels(labels, conf, SMALL_GRID, threshold, T)
    assert msg.header.frame_id == "lidar" and msg.width == len(slow) > 0
    rec = pointcloud2.read_points(_to_rosbags(msg, "sensor_msgs/msg/PointCloud2"))  # wire round trip
    for n, (p, c, cf) in enumerate(slow):
        np.testing.assert_allclose([rec["x"][n], rec["y"][n], rec["z"][n]], p, atol=1e-5)
        assert rec["label"][n] == c and rec["confidence"][n] == np.float32(cf)
        r, g, b = (int(v) for v in colors[c])
        assert struct.unpack("<I", struct.pack("<f", rec["rgb"][n]))[0] == (r << 16) | (g << 8) | b
    plain = enc.prediction_to_pointcloud2(_pred(labels, conf), _opts(include_confidence=False))
    assert [f.name for f in plain.fields] == ["x", "y", "z", "rgb", "label"] and plain.point_step == 20


def test_prediction_to_marker_array_vs_slow_loop() -> None:
    rng = np.random.default_rng(7)
    labels, conf = _prediction(rng)
    colors = load_label_set("semantickitti").colors_rgb
    T = xyz_rpy_to_matrix([0.3, 0.0, -0.1, 0.0, 0.0, 1.0])
    ma, present = enc.prediction_to_marker_array(_pred(labels, conf, T=T), _opts(), _header())
    slow = _slow_voxels(labels, conf, SMALL_GRID, 0.0, np.eye(4))  # marker points are in grid coordinates
    by_class: dict[int, list] = {}
    for p, c, _ in slow:
        by_class.setdefault(c, []).append(p)
    assert present == set(by_class)
    assert [m.id for m in ma.markers] == sorted(by_class)
    for m in ma.markers:
        assert m.type == m.CUBE_LIST and m.action == m.ADD and m.ns == "ssc"
        assert m.scale.x == m.scale.y == m.scale.z == pytest.approx(SMALL_GRID.voxel_size)
        np.testing.assert_allclose([m.color.r, m.color.g, m.color.b], colors[m.id] / 255.0)
        np.testing.assert_allclose([[p.x, p.y, p.z] for p in m.points], by_class[m.id], atol=1e-5)
        np.testing.assert_allclose(dec.pose_to_matrix(m.pose), T, atol=1e-9)
    # next frame: one class disappears -> DELETE with its id, others re-sent with the same ids
    gone = sorted(by_class)[0]
    labels2 = labels.copy()
    labels2[labels2 == gone] = 0
    ma2, present2 = enc.prediction_to_marker_array(_pred(labels2), _opts(), previous_classes=present)
    assert present2 == present - {gone}
    deletes = [m for m in ma2.markers if m.action == m.DELETE]
    assert [m.id for m in deletes] == [gone]
    assert sorted(m.id for m in ma2.markers if m.action == m.ADD) == sorted(present2)


def test_prediction_to_voxel_grid_layout_and_round_trip() -> None:
    rng = np.random.default_rng(8)
    labels, conf = _prediction(rng)
    names = load_label_set("semantickitti").names
    T = xyz_rpy_to_matrix([1.0, 2.0, 3.0, 0.0, 0.0, math.pi / 2])
    msg = enc.prediction_to_voxel_grid(_pred(labels, conf, T=T), _opts(0.3), _header())
    raw = _to_rosbags(msg, "sgn_ros/msg/SemanticVoxelGrid")  # msg/ file parsed by rosbags: wire compatible
    X, Y, Z = SMALL_GRID.dims
    assert (msg.size_x, msg.size_y, msg.size_z) == (X, Y, Z)
    flat = np.frombuffer(bytes(raw.labels), np.uint8)
    for i, j, k in [(0, 0, 1), (1, 0, 0), (0, 1, 0), (X - 1, Y - 1, Z - 1), (3, 2, 1)]:  # z fastest
        expect = labels[i, j, k] if conf[i, j, k] >= 0.3 else 255
        assert flat[(i * Y + j) * Z + k] == expect
    lab, c, grid, corner = dec.voxel_grid_to_arrays(msg)
    np.testing.assert_array_equal(lab, np.where(conf >= 0.3, labels, 255))
    np.testing.assert_allclose(c, np.round(conf * 255) / 255, atol=1e-6)
    # origin = grid corner moved by T; centres agree with the PointCloud2 path
    np.testing.assert_allclose(corner[:3, 3], (T @ [*SMALL_GRID.origin, 1.0])[:3], atol=1e-9)
    ijk = np.argwhere((lab != 0) & (lab != 255))
    via_msg = (np.c_[grid.index_to_center(ijk), np.ones(len(ijk))] @ corner.T)[:, :3]
    centres, _, _, _ = enc.select_voxels(_pred(labels, conf, T=T), 0.3)
    np.testing.assert_allclose(via_msg, centres, atol=1e-5)
    assert list(msg.class_names) == list(names) and len(msg.class_colors) == 3 * len(names)
    assert len(enc.prediction_to_voxel_grid(_pred(labels, conf), _opts(include_confidence=False)).confidence) == 0
    assert len(enc.prediction_to_voxel_grid(replace(_pred(labels, conf), confidence=None), _opts()).confidence) == 0


def test_prediction_shape_and_class_checks() -> None:
    with pytest.raises(ValueError, match="grid shape"):
        enc.prediction_to_pointcloud2(_pred(np.zeros((2, 2, 2), np.uint8)), _opts())
    bad = np.full(SMALL_GRID.dims, 40, np.uint8)
    with pytest.raises(ValueError, match="no colour"):
        enc.prediction_to_pointcloud2(_pred(bad), _opts())


@pytest.mark.slow
def test_full_grid_conversions_are_vectorised() -> None:
    """The full 256 x 256 x 32 grid converts in well under a second (no per-voxel Python loop)."""
    import time

    rng = np.random.default_rng(9)
    labels, conf = _prediction(rng, DEFAULT_GRID)
    labels[rng.random(DEFAULT_GRID.dims) < 0.9] = 0  # ~10 % occupied, like a real scene
    t = time.perf_counter()
    pc = enc.prediction_to_pointcloud2(_pred(labels, conf, DEFAULT_GRID), _opts())
    grid_msg = enc.prediction_to_voxel_grid(_pred(labels, conf, DEFAULT_GRID), _opts())
    assert time.perf_counter() - t < 2.0
    assert pc.width == int(((labels != 0) & (labels != 255)).sum())
    assert len(grid_msg.labels) == DEFAULT_GRID.num_voxels


def test_marker_point_cache_reuses_points() -> None:
    rng = np.random.default_rng(10)
    labels, _ = _prediction(rng)
    cache = enc.MarkerPointCache(SMALL_GRID)
    a, _ = enc.prediction_to_marker_array(_pred(labels), _opts(), cache=cache)
    b, _ = enc.prediction_to_marker_array(_pred(labels), _opts(), cache=cache)
    c, _ = enc.prediction_to_marker_array(_pred(labels), _opts())  # no cache: fresh objects, same values
    for ma, mb, mc in zip(a.markers, b.markers, c.markers):
        assert all(p is q for p, q in zip(ma.points, mb.points))
        assert [(p.x, p.y, p.z) for p in ma.points] == [(p.x, p.y, p.z) for p in mc.points]
    other = VoxelGrid(origin=SMALL_GRID.origin, voxel_size=SMALL_GRID.voxel_size, dims=(4, 4, 4), scales=(1,))
    with pytest.raises(ValueError, match="cache is for"):
        enc.prediction_to_marker_array(_pred(np.zeros(other.dims, np.uint8), grid=other), _opts(), cache=cache)


def test_encode_outputs_bytes_are_the_message_objects_serialized() -> None:
    """encode_outputs (wire bytes, one shared voxel selection) == the prediction_to_* messages."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import PointCloud2
    from sgn_ros.msg import SemanticVoxelGrid
    from visualization_msgs.msg import MarkerArray

    rng = np.random.default_rng(11)
    labels, conf = _prediction(rng)
    T = xyz_rpy_to_matrix([1.0, -2.0, 0.5, 0.0, 0.0, 0.3])
    h = _header()
    for pred, opts in ((_pred(labels, conf), _opts(0.3)), (_pred(labels, conf, T=T), _opts(0.0, False))):
        stamp = h.stamp.sec * 1_000_000_000 + h.stamp.nanosec  # integer nanoseconds
        out, present = enc.encode_outputs(pred, opts, stamp, h.frame_id, previous_classes={4, 30})
        assert set(out) == {"points", "markers", "grid"}
        ref_pc = enc.prediction_to_pointcloud2(pred, opts, h)
        ref_ma, ref_present = enc.prediction_to_marker_array(pred, opts, h, previous_classes={4, 30})
        ref_grid = enc.prediction_to_voxel_grid(pred, opts, h)
        assert present == ref_present
        for kind, ref, typ in (("points", ref_pc, PointCloud2), ("markers", ref_ma, MarkerArray),
                               ("grid", ref_grid, SemanticVoxelGrid)):
            back = deserialize_message(out[kind], typ)
            want = deserialize_message(serialize_message(ref), typ)
            if kind == "points" and pred.grid_to_frame is not None:  # BLAS vs wire's tables: 1 ulp
                a = np.frombuffer(back.data, np.float32).reshape(ref.width, -1)
                b = np.frombuffer(want.data, np.float32).reshape(ref.width, -1)
                np.testing.assert_array_max_ulp(a, b, maxulp=1)
                back.data, want.data = want.data, want.data
            assert back == want, kind
    only, prev = enc.encode_outputs(_pred(labels, conf), _opts(), (3, 4), "map", want={"grid"}, previous_classes={2})
    assert set(only) == {"grid"} and prev == {2}
    with pytest.raises(ValueError, match="want"):
        enc.encode_outputs(_pred(labels, conf), _opts(), 0, "map", want={"cloud"})
