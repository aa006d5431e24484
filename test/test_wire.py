# Tests of sgn_ros/ros/wire.py: the CDR bytes it writes against rclpy's own serialization of the
# message objects sgn_ros.ros.encoders builds from the same prediction (the slow obvious version;
# every byte but Fast CDR's alignment padding, which rclpy leaves uninitialised), against rosbags' independent CDR
# serializer (every byte: it zeroes padding, as wire does), against rclpy's deserializer (field by
# field), and one real publish of the bytes over Fast DDS to a subscriber. Both ways to the bytes
# are tested (`native`): the NumPy passes and the C extension sgn_ros.ros._cdr_fill, which the build
# (make / colcon build / pip install) compiles, so a missing build fails here.
"""sgn_ros.ros.wire: vectorised CDR serialisers of the prediction outputs."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages (requirements/ros.txt) not installed")

from geometry_msgs.msg import Point  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from sgn_ros.geometry import xyz_rpy_to_matrix  # noqa: E402
from sgn_ros.grid import DEFAULT_GRID, VoxelGrid  # noqa: E402
from sgn_ros.labels import load_label_set  # noqa: E402
from sgn_ros.model.predictor import SSCPrediction  # noqa: E402
from sgn_ros.ros import encoders as enc  # noqa: E402
from sgn_ros.ros import wire  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
TYPESTORE.register(
    get_types_from_msg((ROOT / "msg" / "SemanticVoxelGrid.msg").read_text(), "sgn_ros/msg/SemanticVoxelGrid")
)
LS = load_label_set("semantickitti")
STAMP, FRAME = (1234, 567_000_000), "camera_left"
GRIDS = {
    "small": VoxelGrid(origin=DEFAULT_GRID.origin, voxel_size=1.6, dims=(8, 6, 4), scales=(1,)),
    "odd": VoxelGrid(origin=(-1.0, 2.5, -0.7), voxel_size=0.3, dims=(9, 7, 5), scales=(1,)),
    "flat": VoxelGrid(origin=(0.0, 0.0, 0.0), voxel_size=0.5, dims=(13, 1, 3), scales=(1,)),
    "kitti_quarter": DEFAULT_GRID.scaled(4),  # 64 x 64 x 8, power-of-two strides
    # columns longer than one 64-bit word of the surface mask (three words, the last partial), and
    # a single column: every voxel on the grid's border
    "deep": VoxelGrid(origin=(0.0, -1.0, -2.0), voxel_size=0.2, dims=(3, 2, 130), scales=(1,)),
    "needle": VoxelGrid(origin=(0.5, 0.5, 0.5), voxel_size=0.4, dims=(1, 1, 65), scales=(1,)),
}
TRANSFORM = xyz_rpy_to_matrix([0.3, -1.2, 1.7, -1.571, 0.02, -1.569])


# the message-object builders of sgn_ros.ros.encoders, called with wire's arguments
def ref_pointcloud2(labels, grid, colors, header, confidence=None, threshold=0.0, transform=None,
                    include_confidence=True):
    opts = enc.OutputOptions(colors, (), threshold, include_confidence)
    return enc.prediction_to_pointcloud2(SSCPrediction(labels, confidence, grid, transform), opts, header)


def ref_marker_array(labels, grid, colors, header, confidence=None, threshold=0.0, transform=None,
                     previous_classes=(), namespace="ssc", alpha=1.0):
    opts = enc.OutputOptions(colors, (), threshold)
    return enc.prediction_to_marker_array(SSCPrediction(labels, confidence, grid, transform), opts, header,
                                          previous_classes, namespace, alpha)


def ref_voxel_grid(labels, grid, names, colors, header, confidence=None, threshold=0.0, transform=None,
                   include_confidence=True):
    opts = enc.OutputOptions(colors, names, threshold, include_confidence)
    return enc.prediction_to_voxel_grid(SSCPrediction(labels, confidence, grid, transform), opts, header)


def _header() -> Header:
    h = Header(frame_id=FRAME)
    h.stamp.sec, h.stamp.nanosec = STAMP
    return h


def _prediction(grid: VoxelGrid, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.random(grid.dims).astype(np.float32)
    if kind == "empty":
        labels = np.zeros(grid.dims, np.uint8)
    elif kind == "full":  # every voxel occupied (no free interior either)
        labels = rng.integers(1, LS.num_classes, grid.dims).astype(np.uint8)
    else:  # sparse, with unknown voxels and a few large blobs of one class
        labels = rng.integers(1, LS.num_classes, grid.dims).astype(np.uint8)
        labels[rng.random(grid.dims) < 0.7] = 0
        labels[rng.random(grid.dims) < 0.05] = 255
        labels[: grid.dims[0] // 2, :, : max(1, grid.dims[2] // 2)] = 9  # a road slab
    return labels, conf


def _check_bytes(ours: bytes, ref_msg, typename: str) -> None:
    """`ours` == rclpy's bytes of `ref_msg` outside padding, == rosbags' bytes everywhere."""
    ref = bytes(serialize_message(ref_msg))
    assert len(ours) == len(ref)
    assert ours[:4] == b"\x00\x01\x00\x00"
    canonical = bytes(TYPESTORE.serialize_cdr(TYPESTORE.deserialize_cdr(ref, typename), typename))
    assert ours == canonical
    # rosbags read every field from rclpy's bytes and wrote ours: where rclpy's bytes still differ,
    # they are padding nobody reads (rclpy leaves it uninitialised), zero in ours
    diff = np.flatnonzero(np.frombuffer(ours, np.uint8) != np.frombuffer(ref, np.uint8))
    assert not np.frombuffer(ours, np.uint8)[diff].any()


CASES = [(g, k) for g in GRIDS for k in ("random", "empty", "full")]


@pytest.mark.parametrize("transform", [False, True])
@pytest.mark.parametrize(("grid_name", "kind"), CASES)
@pytest.mark.parametrize("native", [False, True], ids=["numpy", "native"])
def test_pointcloud2_bytes_equal_conversions(grid_name: str, kind: str, transform: bool, native: bool) -> None:
    grid = GRIDS[grid_name]
    labels, conf = _prediction(grid, kind)
    T = TRANSFORM if transform else None
    for confidence, thr, with_conf in ((conf, 0.0, True), (conf, 0.3, True), (conf, 0.3, False), (None, 0.5, True)):
        ref = ref_pointcloud2(labels, grid, LS.colors_rgb, _header(), confidence, thr, T, with_conf)
        ours = wire.pointcloud2_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, confidence, thr, T, with_conf,
                                      native=native)
        if T is None:
            _check_bytes(ours, ref, "sensor_msgs/msg/PointCloud2")
        back = deserialize_message(ours, PointCloud2)
        assert (back.header.stamp.sec, back.header.stamp.nanosec, back.header.frame_id) == (*STAMP, FRAME)
        assert back.fields == ref.fields
        assert (back.width, back.point_step, back.row_step, back.is_dense) == (
            ref.width, ref.point_step, ref.row_step, ref.is_dense)
        a = np.frombuffer(back.data, np.float32).reshape(ref.width, ref.point_step // 4)
        b = np.frombuffer(ref.data, np.float32).reshape(ref.width, ref.point_step // 4)
        # with a transform, today's code goes through BLAS (fused multiply-adds): same float32 up to 1 ulp
        np.testing.assert_array_max_ulp(a[:, :3], b[:, :3], maxulp=0 if T is None else 1)
        assert a[:, 3:].tobytes() == b[:, 3:].tobytes()


@pytest.mark.parametrize("transform", [False, True])
@pytest.mark.parametrize(("grid_name", "kind"), CASES)
@pytest.mark.parametrize("native", [False, True], ids=["numpy", "native"])
def test_marker_array_bytes_equal_conversions(grid_name: str, kind: str, transform: bool, native: bool) -> None:
    grid = GRIDS[grid_name]
    labels, conf = _prediction(grid, kind)
    T = TRANSFORM if transform else None
    prev_ref: set[int] = {4, 7, 30}  # 30: a class id beyond the colour table, deleted all the same
    prev_ours = set(prev_ref)
    for confidence, thr in ((conf, 0.0), (conf, 0.6), (None, 0.0), (conf, 0.99)):
        ref, prev_ref = ref_marker_array(labels, grid, LS.colors_rgb, _header(), confidence, thr, T,
                                                    prev_ref, namespace="ssc", alpha=0.8)
        ours, prev_ours = wire.marker_array_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, confidence, thr, T,
                                                  prev_ours, namespace="ssc", alpha=0.8, native=native)
        assert prev_ours == prev_ref
        _check_bytes(ours, ref, "visualization_msgs/msg/MarkerArray")
        back = deserialize_message(ours, MarkerArray)
        # rclpy keeps float32 fields of a built message unrounded: compare after its own round trip
        assert back == deserialize_message(serialize_message(ref), MarkerArray)
        assert [len(m.points) for m in back.markers] == [len(m.points) for m in ref.markers]


@pytest.mark.parametrize("transform", [False, True])
@pytest.mark.parametrize(("grid_name", "kind"), CASES)
@pytest.mark.parametrize("native", [False, True], ids=["numpy", "native"])
def test_voxel_grid_bytes_equal_conversions(grid_name: str, kind: str, transform: bool, native: bool) -> None:
    from sgn_ros.msg import SemanticVoxelGrid

    grid = GRIDS[grid_name]
    labels, conf = _prediction(grid, kind)
    T = TRANSFORM if transform else None
    for confidence, thr, with_conf, colors in ((conf, 0.0, True, LS.colors_rgb), (conf, 0.4, True, None),
                                               (conf, 0.4, False, LS.colors_rgb), (None, 0.0, True, None)):
        ref = ref_voxel_grid(labels, grid, LS.names, colors, _header(), confidence, thr, T, with_conf)
        ours = wire.voxel_grid_bytes(labels, grid, LS.names, colors, STAMP, FRAME, confidence, thr, T, with_conf,
                                     native=native)
        _check_bytes(ours, ref, "sgn_ros/msg/SemanticVoxelGrid")
        back = deserialize_message(ours, SemanticVoxelGrid)
        assert back.origin == ref.origin and list(back.class_names) == list(ref.class_names)
        assert bytes(back.labels) == bytes(ref.labels) and bytes(back.confidence) == bytes(ref.confidence)


def test_header_strings_and_other_label_dtypes() -> None:
    """Non-ASCII frame ids (UTF-8 length), frame ids of every length mod 4, int64 labels."""
    grid = GRIDS["odd"]
    labels, conf = _prediction(grid, "random")
    for frame in ("", "a", "ab", "abc", "grid_ü", "δ" * 5):
        h = Header(frame_id=frame)
        ref = ref_pointcloud2(labels.astype(np.int64), grid, LS.colors_rgb, h, conf)
        _check_bytes(wire.pointcloud2_bytes(labels.astype(np.int64), grid, LS.colors_rgb, (0, 0), frame, conf),
                     ref, "sensor_msgs/msg/PointCloud2")
        ref, _ = ref_marker_array(labels, grid, LS.colors_rgb, h, namespace=frame + "ns")
        ours, _ = wire.marker_array_bytes(labels, grid, LS.colors_rgb, (0, 0), frame, namespace=frame + "ns")
        _check_bytes(ours, ref, "visualization_msgs/msg/MarkerArray")


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # NaN confidence, both versions
@pytest.mark.parametrize("native", [False, True], ids=["numpy", "native"])
def test_quantised_confidence_edge_values(native: bool) -> None:
    """Quantisation at exact halves, 0 and 1, and of NaN and out-of-range values, as today's."""
    grid = VoxelGrid(origin=(0.0, 0.0, 0.0), voxel_size=1.0, dims=(4, 8, 16), scales=(1,))
    halves = (np.arange(256, dtype=np.float32) + np.float32(0.5)) / np.float32(255.0)
    near = np.concatenate([np.nextafter(halves, 0), halves, np.nextafter(halves, 1)]).astype(np.float32)
    vals = np.concatenate([near, np.float32([0.0, 1.0, 1e-9])])
    labels = np.ones(grid.dims, np.uint8)
    for extra in ([], [np.nan], [1.5], [-0.2]):
        c = np.resize(np.concatenate([vals, np.float32(extra)]), grid.dims).astype(np.float32)
        if extra:
            c.reshape(-1)[-1] = extra[0]
        ref = ref_voxel_grid(labels, grid, LS.names, None, _header(), c)
        _check_bytes(wire.voxel_grid_bytes(labels, grid, LS.names, None, STAMP, FRAME, c, native=native), ref,
                     "sgn_ros/msg/SemanticVoxelGrid")


def _slow_free_face(keep: np.ndarray) -> set[tuple[int, int, int]]:
    X, Y, Z = keep.shape
    out = set()
    for i, j, k in np.argwhere(keep).tolist():
        for d in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
            a, b, c = i + d[0], j + d[1], k + d[2]
            if not (0 <= a < X and 0 <= b < Y and 0 <= c < Z) or not keep[a, b, c]:
                out.add((i, j, k))
                break
    return out


@pytest.mark.parametrize("grid_name", list(GRIDS))
@pytest.mark.parametrize("kind", ["random", "full"])
@pytest.mark.parametrize("native", [False, True], ids=["numpy", "native"])
def test_surface_only_keeps_every_visible_voxel(grid_name: str, kind: str, native: bool) -> None:
    grid = GRIDS[grid_name]
    labels, conf = _prediction(grid, kind)
    labels[1:-1, :, 1:-1] = np.where(labels[1:-1, :, 1:-1] == 0, 11, labels[1:-1, :, 1:-1])  # solid inside
    for confidence, thr in ((None, 0.0), (conf, 0.3)):
        keep = (labels != 0) & (labels != 255)
        if thr:
            keep &= conf >= thr
        slow = _slow_free_face(keep)
        assert {tuple(v) for v in np.argwhere(wire.surface_mask(keep)).tolist()} == slow
        flat, lab = wire.occupied_voxels(labels, grid, confidence, thr, surface_only=True)
        assert {tuple(int(x) for x in np.unravel_index(f, grid.dims)) for f in flat} == slow
        np.testing.assert_array_equal(lab, labels.reshape(-1)[flat])
        # the markers: exactly the visible voxels' centres, each in its class's marker
        ours, _ = wire.marker_array_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, confidence, thr,
                                          surface_only=True, native=native)
        got = {(m.id, round(p.x, 6), round(p.y, 6), round(p.z, 6))
               for m in deserialize_message(ours, MarkerArray).markers for p in m.points}
        centres = grid.index_to_center(np.array(sorted(slow)).reshape(-1, 3))
        want = {(int(labels[v]), *(round(float(x), 6) for x in c)) for v, c in zip(sorted(slow), centres)}
        assert got == want


def _slow_merged(labels, drawn, grid, header, previous=(), namespace="ssc", alpha=1.0, transform=None):
    """The merged-run MarkerArray as message objects, column by column in plain Python: each
    maximal run of drawn voxels of one class along x cut into boxes by the binary digits of its
    length, the largest first; one CUBE_LIST per class and box size (id class + 256 * b), its
    boxes in the C order of their runs' last voxels."""
    from visualization_msgs.msg import Marker

    X, Y, Z = grid.dims
    levels = X.bit_length()
    boxes: dict[tuple[int, int], list[tuple[int, float, float, float]]] = {}
    for j in range(Y):
        for k in range(Z):
            i = 0
            while i < X:
                if not drawn[i, j, k]:
                    i += 1
                    continue
                c, n = int(labels[i, j, k]), 1
                while i + n < X and drawn[i + n, j, k] and labels[i + n, j, k] == c:
                    n += 1
                _, y, z = grid.index_to_center(np.array([[i, j, k]]))[0]
                off = 0
                for b in reversed(range(levels)):
                    if n >> b & 1:
                        x = grid.origin[0] + (i + off + 2 ** b / 2) * grid.voxel_size
                        boxes.setdefault((c, b), []).append((((i + n - 1) * Y + j) * Z + k, x, y, z))
                        off += 2 ** b
                i += n
    pose = enc.matrix_to_pose(np.eye(4) if transform is None else transform)
    out = MarkerArray()
    for (c, b), found in sorted(boxes.items()):
        m = Marker(header=header, ns=namespace, id=c + 256 * b, type=Marker.CUBE_LIST, action=Marker.ADD, pose=pose)
        m.scale.x, m.scale.y, m.scale.z = grid.voxel_size * 2 ** b, grid.voxel_size, grid.voxel_size
        m.color.r, m.color.g, m.color.b = (float(v) / 255.0 for v in LS.colors_rgb[c])
        m.color.a = float(alpha)
        m.points = [Point(x=x, y=y, z=z) for _, x, y, z in sorted(found)]
        out.markers.append(m)
    present = {m.id for m in out.markers}
    for mid in sorted({int(v) for v in previous} - present):
        out.markers.append(Marker(header=header, ns=namespace, id=mid, action=Marker.DELETE))
    return out, present


def _drawn(labels, confidence, threshold, surface):
    keep = wire._keep_mask(labels, confidence, threshold)
    return wire.surface_mask(keep) if surface else keep


@pytest.mark.parametrize("transform", [False, True])
@pytest.mark.parametrize(("grid_name", "kind"), CASES)
@pytest.mark.parametrize("native", [False, True], ids=["numpy", "native"])
def test_merged_markers_equal_the_slow_version(grid_name: str, kind: str, transform: bool, native: bool) -> None:
    """merge_runs: every byte as rclpy / rosbags serialize the column-by-column message objects,
    with and without surface_only, thresholds, DELETE markers for ids gone and both passes."""
    grid = GRIDS[grid_name]
    labels, conf = _prediction(grid, kind)
    T = TRANSFORM if transform else None
    prev_ref: set[int] = {4, 9 + 256, 30 + 512}
    prev_ours = set(prev_ref)
    for confidence, thr, surface in ((conf, 0.0, True), (conf, 0.6, False), (None, 0.0, False), (conf, 0.3, True)):
        ref, prev_ref = _slow_merged(labels, _drawn(labels, confidence, thr, surface), grid, _header(), prev_ref,
                                     "ssc", 0.8, T)
        ours, prev_ours = wire.marker_array_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, confidence, thr, T,
                                                  prev_ours, alpha=0.8, surface_only=surface, native=native,
                                                  merge_runs=True)
        assert prev_ours == prev_ref
        _check_bytes(ours, ref, "visualization_msgs/msg/MarkerArray")


@pytest.mark.parametrize("scene", ["random", "street"])
@pytest.mark.parametrize("native", [False, True], ids=["numpy", "native"])
def test_merged_boxes_cover_exactly_the_cubes(scene: str, native: bool) -> None:
    """What RViz draws: a CUBE_LIST's points are boxes of the marker's scale, so the boxes of the
    merged markers, cut back into voxels, are exactly the cubes of the plain markers, each once,
    in its class's colour; and far fewer points where the scene has runs."""
    grid = GRIDS["kitti_quarter"]
    labels, conf = _street(grid, 5) if scene == "street" else _prediction(grid, "random", 5)
    vs = grid.voxel_size
    for surface in (False, True):
        cubes, _ = wire.marker_array_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, conf, 0.2,
                                           surface_only=surface, native=native)
        merged, ids = wire.marker_array_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, conf, 0.2,
                                              surface_only=surface, native=native, merge_runs=True)
        want = sorted((m.id, *np.rint((np.array([p.x, p.y, p.z]) - grid.origin) / vs - 0.5).astype(int))
                      for m in deserialize_message(cubes, MarkerArray).markers for p in m.points)
        got, points = [], 0
        for m in deserialize_message(merged, MarkerArray).markers:
            c, b = m.id % 256, m.id // 256
            assert m.type == 6 and (m.scale.x, m.scale.y, m.scale.z) == (vs * 2 ** b, vs, vs)
            assert (m.color.r, m.color.g, m.color.b) == pytest.approx(LS.colors_rgb[c] / 255.0)
            for p in m.points:
                i0 = int(round((p.x - grid.origin[0]) / vs - 2 ** b / 2))
                j, k = np.rint((np.array([p.y, p.z]) - grid.origin[1:]) / vs - 0.5).astype(int)
                got += [(c, i, j, k) for i in range(i0, i0 + 2 ** b)]
            points += len(m.points)
        assert sorted(got) == want and ids == {m.id for m in deserialize_message(merged, MarkerArray).markers}
        if scene == "street":
            assert points * 2 < len(want)


def test_runs_against_a_loop() -> None:
    """wire.runs (the NumPy passes' run finder): every maximal one-class line along axis 0, in
    the C order of its last voxel, as a loop over the columns finds them."""
    grid = GRIDS["odd"]
    labels, conf = _prediction(grid, "random", 2)
    drawn = _drawn(labels, conf, 0.3, False)
    X, Y, Z = grid.dims
    slow = []
    for j in range(Y):
        for k in range(Z):
            i = 0
            while i < X:
                n = 0
                while drawn[i, j, k] and i + n < X and drawn[i + n, j, k] and labels[i + n, j, k] == labels[i, j, k]:
                    n += 1
                if n:
                    slow.append((((i + n - 1) * Y + j) * Z + k, (i * Y + j) * Z + k, n))
                i += max(n, 1)
    first, length = wire.runs(drawn, labels)
    assert list(zip(first.tolist(), length.tolist())) == [(f, n) for _, f, n in sorted(slow)]


def test_shared_selection_gives_the_same_bytes() -> None:
    """The node selects the occupied voxels once per frame for PointCloud2 and MarkerArray."""
    grid = GRIDS["kitti_quarter"]
    labels, conf = _prediction(grid, "random")
    sel = wire.occupied_voxels(labels, grid, conf, 0.2)
    assert wire.pointcloud2_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, conf, 0.2, selected=sel) == \
        wire.pointcloud2_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, conf, 0.2)
    for surface in (False, True):
        assert wire.marker_array_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, conf, 0.2, selected=sel,
                                       surface_only=surface) == \
            wire.marker_array_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, conf, 0.2, surface_only=surface)
    with pytest.raises(ValueError, match="selected: expected"):
        wire.pointcloud2_bytes(labels, grid, LS.colors_rgb, selected=(sel[0], sel[1][:-1]))


@pytest.mark.parametrize("native", [False, True], ids=["numpy", "native"])
def test_bad_input_names_what(native: bool) -> None:
    grid = GRIDS["small"]
    labels, conf = _prediction(grid, "random")
    with pytest.raises(ValueError, match="labels: expected grid shape"):
        wire.pointcloud2_bytes(labels[:, :, :2], grid, LS.colors_rgb, native=native)
    with pytest.raises(ValueError, match="confidence: expected shape"):
        wire.voxel_grid_bytes(labels, grid, LS.names, None, confidence=conf[:2], native=native)
    with pytest.raises(ValueError, match="has no colour"):
        wire.marker_array_bytes(labels, grid, LS.colors_rgb[:3], native=native)
    with pytest.raises(ValueError, match="has no colour"):
        wire.pointcloud2_bytes(labels, grid, LS.colors_rgb[:3], native=native)
    if native:  # what the native passes take: the predictor's arrays, else a clear refusal
        with pytest.raises(ValueError, match="native: expected C-contiguous uint8 labels"):
            wire.pointcloud2_bytes(labels.astype(np.int64), grid, LS.colors_rgb, native=True)
        with pytest.raises(ValueError, match="native: expected"):
            wire.voxel_grid_bytes(labels, grid, LS.names, confidence=conf.astype(np.float64), native=True)


def test_native_passes_are_built() -> None:
    """make / colcon build / pip install compile sgn_ros.ros._cdr_fill; the node uses it by default."""
    assert wire.NATIVE, "sgn_ros.ros._cdr_fill is not built: run make venv (pip install -e .) or colcon build"
    labels, conf = _prediction(GRIDS["small"], "random")
    assert wire.use_native(labels, conf) and not wire.use_native(np.asfortranarray(labels), conf)


def test_colcon_install_tree_has_the_native_passes(from_install_tree) -> None:
    """colcon build (CMakeLists.txt) compiles the extension into the install tree too: a process
    that imports sgn_ros from there alone (as `ros2 run` / `ros2 launch` do) gets the native passes."""
    site, stdout = from_install_tree("import sgn_ros.ros.wire as w; "
                                     "print(w.NATIVE, w.__file__, w._native.__file__ if w._native else None)")
    native, module, ext = stdout.split()
    assert native == "True" and module.startswith(site) and ext.startswith(site), stdout


def _street(grid: VoxelGrid, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A clustered full-size scene like the network's: ground, blocks of classes, air above."""
    rng = np.random.default_rng(seed)
    X, Y, Z = grid.dims
    labels = np.zeros(grid.dims, np.uint8)
    labels[:, :, :3] = 9  # road
    for _ in range(60):
        i, j, k = rng.integers(0, X - 8), rng.integers(0, Y - 8), rng.integers(0, Z - 6)
        labels[i:i + rng.integers(2, 9), j:j + rng.integers(2, 9), k:k + rng.integers(1, 7)] = rng.integers(1, 20)
    labels[rng.random(grid.dims) < 0.01] = 255
    return labels, rng.random(grid.dims).astype(np.float32)


@pytest.mark.parametrize("grid_name", ["odd", "deep", "needle"])
@pytest.mark.parametrize("native", [False, True], ids=["numpy", "native"])
def test_surface_mask_of_count_is_the_visible_voxels(native: bool, grid_name: str) -> None:
    """count's bit mask (what the markers' fill pass reads instead of testing faces again) holds
    exactly the occupied voxels with a free face, with a threshold and NaN confidence too (NaN:
    not occupied, so its neighbours have a free face there); rows of one, two and three words."""
    from sgn_ros.ros import _cdr_fill

    grid = GRIDS[grid_name]
    labels, conf = _prediction(grid, "random", 5)
    labels[1:-1, :, 1:-1] = np.where(labels[1:-1, :, 1:-1] == 0, 7, labels[1:-1, :, 1:-1])
    conf = conf.copy()
    conf.reshape(-1)[::97] = np.nan
    X, Y, Z = grid.dims
    wpr = (Z + 63) // 64
    for c, thr in ((None, 0.0), (conf, 0.0), (conf, 0.4)):
        keep = (labels != 0) & (labels != 255)
        if thr:
            keep &= conf >= thr
        _, surf, mask = _cdr_fill.count(labels, grid.dims, c, thr, True)
        words = np.frombuffer(mask, "<u8").reshape(X * Y, wpr)
        bits = (words[:, :, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
        got = bits.reshape(X, Y, wpr * 64)[:, :, :Z].astype(bool)
        assert {tuple(v) for v in np.argwhere(got).tolist()} == _slow_free_face(keep)
        assert sum(surf) == int(got.sum())
        args = (labels, grid, LS.colors_rgb, STAMP, FRAME, c, thr, TRANSFORM, {2, 60})
        assert wire.marker_array_bytes(*args, surface_only=True, native=native) == \
            wire.marker_array_bytes(*args, surface_only=True, native=False)


@pytest.mark.parametrize("scene", ["street", "random"])
def test_native_equals_numpy_at_full_size(scene: str) -> None:
    """The full 256 x 256 x 32 grid (rows of 32 voxels: the native passes' 8-voxel words), every
    option: the same bytes either way; other layouts (Fortran order) take the NumPy passes."""
    grid = DEFAULT_GRID
    labels, conf = _street(grid, 3) if scene == "street" else _prediction(grid, "random", 3)
    for thr, T, surface in ((0.0, None, True), (0.5, TRANSFORM, False), (0.5, None, True)):
        for c in (conf, None):
            args = (labels, grid, LS.colors_rgb, STAMP, FRAME, c, thr, T)
            assert wire.pointcloud2_bytes(*args, native=True) == wire.pointcloud2_bytes(*args, native=False)
            for merge in (False, True):
                assert wire.marker_array_bytes(*args, {3, 40}, surface_only=surface, native=True, merge_runs=merge) \
                    == wire.marker_array_bytes(*args, {3, 40}, surface_only=surface, native=False, merge_runs=merge)
            g = (labels, grid, LS.names, LS.colors_rgb, STAMP, FRAME, c, thr, T)
            assert wire.voxel_grid_bytes(*g, native=True) == wire.voxel_grid_bytes(*g, native=False)
    f = np.asfortranarray(labels)
    assert wire.pointcloud2_bytes(f, grid, LS.colors_rgb, confidence=conf) == \
        wire.pointcloud2_bytes(labels, grid, LS.colors_rgb, confidence=conf, native=True)


def test_native_checks_the_layout_it_fills() -> None:
    """Slots that do not match the voxels, unknown classes or wrong array types are ValueErrors
    (never memory written out of bounds)."""
    from sgn_ros.ros import _cdr_fill

    grid = GRIDS["odd"]
    labels, conf = _prediction(grid, "random")
    n = int(((labels != 0) & (labels != 255)).sum())
    tables = wire._tables(grid).point_tables(None)
    rgb = np.zeros(len(LS.colors_rgb), np.uint32)
    axes = tuple(wire._tables(grid).axes64)
    for slot in (24 * (n - 1), 24 * (n + 1), 24 * n + 4):
        with pytest.raises(ValueError, match="slot"):
            _cdr_fill.points([b"head", slot], labels, grid.dims, conf, 0.0, tables, rgb, True)
    with pytest.raises(ValueError, match="marker slots"):  # a class left out
        _cdr_fill.markers([b"head", 24 * int((labels == 1).sum())], [1], labels, grid.dims, None, 0.0, axes, False)
    with pytest.raises(ValueError, match="labels: expected"):
        _cdr_fill.grid([b"h", grid.num_voxels], labels.astype(np.int16), grid.dims, None, 0.0)
    with pytest.raises(ValueError, match="confidence: expected"):
        _cdr_fill.grid([b"h", grid.num_voxels], labels, grid.dims, conf.astype(np.float64), 0.0)
    with pytest.raises(ValueError, match="labels: expected"):
        _cdr_fill.count(labels[:-1], grid.dims, None, 0.0, False)
    with pytest.raises(TypeError, match="parts"):
        _cdr_fill.grid([b"h", "x"], labels, grid.dims, None, 0.0)
    # the surface mask of count(..., surface=True): only with surface, of the grid's size, and
    # naming occupied voxels only
    counts, surf, mask = _cdr_fill.count(labels, grid.dims, None, 0.0, True)
    classes = [c for c in range(256) if surf[c]]
    parts = [b"h"] + [24 * surf[c] for c in classes]
    assert len(_cdr_fill.markers(parts, classes, labels, grid.dims, None, 0.0, axes, True, mask)) == \
        1 + 24 * sum(surf)
    with pytest.raises(ValueError, match="mask: only with surface"):
        _cdr_fill.markers(parts, classes, labels, grid.dims, None, 0.0, axes, False, mask)
    with pytest.raises(ValueError, match="mask: expected"):
        _cdr_fill.markers(parts, classes, labels, grid.dims, None, 0.0, axes, True, mask[:-8])
    air = np.argwhere(labels == 0)[0]  # a bit set on an empty voxel
    bad = bytearray(mask)
    row, k = air[0] * grid.dims[1] + air[1], air[2]
    wpr = (grid.dims[2] + 63) // 64
    bad[8 * (row * wpr + k // 64) + (k % 64) // 8] |= 1 << (k % 8)
    with pytest.raises(ValueError, match="mask: names a voxel"):
        _cdr_fill.markers(parts, classes, labels, grid.dims, None, 0.0, axes, True, bytes(bad))
    # the merged markers' passes (box_count, boxes): sizes and runs as box_count gives them, or a ValueError
    with pytest.raises(ValueError, match="mask: names a voxel"):
        _cdr_fill.box_count(labels, grid.dims, None, 0.0, bytes(bad), 4)
    with pytest.raises(ValueError, match="levels: expected 4..62"):  # runs of up to 9 voxels need 4 sizes
        _cdr_fill.box_count(labels, grid.dims, None, 0.0, None, 3)
    boxes, runs = _cdr_fill.box_count(labels, grid.dims, None, 0.0, None, 4)
    keys = [key for key, n in enumerate(boxes) if n]
    tab = wire._tables(grid)
    box_args = (labels, grid.dims, tab.run_table(4), tab.axes64[1], tab.axes64[2])
    parts = [b"h"] + [24 * boxes[key] for key in keys]
    assert len(_cdr_fill.boxes(parts, keys, runs, *box_args)) == 1 + 24 * sum(boxes)
    with pytest.raises(ValueError, match="box slots do not match"):  # one class and size left out
        _cdr_fill.boxes(parts[:-1], keys[:-1], runs, *box_args)
    with pytest.raises(ValueError, match="keys: bad"):
        _cdr_fill.boxes(parts, [keys[0]] * len(keys), runs, *box_args)
    with pytest.raises(ValueError, match="xtable: expected"):
        _cdr_fill.boxes(parts, keys, runs, labels, grid.dims, tab.run_table(4)[:-1], tab.axes64[1], tab.axes64[2])
    with pytest.raises(ValueError, match="runs: expected int32 pairs"):
        _cdr_fill.boxes(parts, keys, runs[:-4], *box_args)
    too_long = np.frombuffer(runs, np.int32).copy()
    too_long[1] = grid.dims[0] + 1  # beyond the grid's end
    with pytest.raises(ValueError, match="runs: a run outside the grid"):
        _cdr_fill.boxes(parts, keys, too_long.tobytes(), *box_args)


def test_publish_bytes_over_dds() -> None:
    """rclpy (Kilted) publishes the bytes as they are; a subscriber gets the same message."""
    from sgn_ros.msg import SemanticVoxelGrid

    from sgn_ros.ros.processes import RosSession

    grid = GRIDS["kitti_quarter"]
    labels, conf = _prediction(grid, "random")
    out = {
        "points": (PointCloud2, wire.pointcloud2_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, conf)),
        "markers": (MarkerArray, wire.marker_array_bytes(labels, grid, LS.colors_rgb, STAMP, FRAME, conf)[0]),
        "grid": (SemanticVoxelGrid, wire.voxel_grid_bytes(labels, grid, LS.names, LS.colors_rgb, STAMP, FRAME, conf)),
    }
    domain = int(os.environ.get("SGN_TEST_DOMAIN", random.SystemRandom().randint(1, 100)))
    with RosSession("wire_test", domain) as session:
        node = session.node
        got: dict[str, object] = {}
        raw: dict[str, bytes] = {}
        pubs = {k: node.create_publisher(t, f"wire/{k}", 1) for k, (t, _) in out.items()}
        for k, (t, _) in out.items():
            node.create_subscription(t, f"wire/{k}", lambda m, k=k: got.setdefault(k, m), 1)
            node.create_subscription(t, f"wire/{k}", lambda m, k=k: raw.setdefault(k, m), 1, raw=True)
        end = time.monotonic() + 30
        while (len(got) < 3 or len(raw) < 3) and time.monotonic() < end:
            for k, (_, data) in out.items():
                if pubs[k].get_subscription_count() >= 2 and k not in got:
                    pubs[k].publish(data)
            session.spin_once(0.1)
        assert set(got) == set(out) and set(raw) == set(out)
        for k, (t, data) in out.items():
            assert got[k] == deserialize_message(data, t)
            assert bytes(raw[k]) == data  # the bytes travel unchanged


@pytest.mark.slow
def test_native_passes_under_the_sanitizers(sanitized) -> None:
    """This file's and test_encoders' cases once more, against `_cdr_fill` built with
    AddressSanitizer and UndefinedBehaviorSanitizer: every pass stays inside its buffers (the
    message it fills, the labels, confidence and mask it reads) and does nothing undefined."""
    out = sanitized("sgn_ros.ros._cdr_fill", ["test_wire.py", "test_encoders.py"])
    assert " passed" in out and " failed" not in out
