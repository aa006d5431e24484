# Prediction -> ROS message encoders of sgn_node: the completed scene as PointCloud2 (one point
# per occupied voxel), MarkerArray (one CUBE_LIST per class) and sgn_ros/SemanticVoxelGrid (the
# dense grid). The last step of the one data path (messages -> decoders -> predictor ->
# prediction -> encoders -> publishers): every encoder takes ONE value, the predictor's
# `SSCPrediction` (labels, confidence, grid, grid -> output frame transform), plus the header and
# `OutputOptions`.
#
# Two forms of the same three messages:
#   * `encode_outputs`: the serialized CDR bytes (sgn_ros.ros.wire) of the outputs a node wants,
#     from ONE voxel selection shared by PointCloud2 and MarkerArray: what the node publishes
#     (publisher.publish(bytes)), at memory speed, no Python object per voxel;
#   * `prediction_to_*`: rclpy message objects, the slow obvious version the wire bytes are tested
#     against (and what code wanting message objects can still use).
# Pure, vectorised functions: no rclpy import at module level, no node state.
"""Vectorised encoders of a prediction into ROS 2 messages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sgn_ros.geometry import apply_transform, make_transform, matrix_to_quaternion
from sgn_ros.grid import VoxelGrid
from sgn_ros.labels import IGNORE_LABEL
from sgn_ros.ros import wire
from sgn_ros.ros.decoders import PF_TO_DTYPE, byte_array

if TYPE_CHECKING:  # the encoders need no torch: a prediction is read by attribute
    from sgn_ros.model.predictor import SSCPrediction

__all__ = [
    "OUTPUT_KINDS",
    "OutputOptions",
    "encode_outputs",
    "matrix_to_pose",
    "select_voxels",
    "pack_rgb",
    "prediction_to_pointcloud2",
    "MarkerPointCache",
    "prediction_to_marker_array",
    "prediction_to_voxel_grid",
]

# sensor_msgs/PointField datatypes
_PF_UINT32, _PF_FLOAT32 = 6, 7


@dataclass(frozen=True)
class OutputOptions:
    """What the encoders publish of a prediction.

    Attributes:
        colors_rgb: (C, 3) uint8 class colours. class_names: the label set's names (grid message).
        threshold: voxels with confidence below it are not published (sent as 255 in the grid).
        include_confidence: add the confidence field / array when the prediction has one.
    """

    colors_rgb: np.ndarray
    class_names: Sequence[str] = ()
    threshold: float = 0.0
    include_confidence: bool = True


#: what `encode_outputs` can make: PointCloud2, MarkerArray, SemanticVoxelGrid
OUTPUT_KINDS = frozenset({"points", "markers", "grid"})


def _stamp(stamp: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(stamp, (int, np.integer)):  # nanoseconds
        return int(stamp) // 1_000_000_000, int(stamp) % 1_000_000_000
    sec, nanosec = stamp
    return int(sec), int(nanosec)


def encode_outputs(
    prediction: SSCPrediction,
    options: OutputOptions,
    stamp: tuple[int, int] | int,
    frame_id: str,
    want: Iterable[str] = OUTPUT_KINDS,
    previous_classes: Iterable[int] = (),
    namespace: str = "ssc",
    alpha: float = 1.0,
    surface_only: bool = False,
    native: bool | None = None,
    merge_runs: bool = False,
) -> tuple[dict[str, bytes], set[int]]:
    """The serialized messages of one prediction, ready for publisher.publish(bytes).

    Args:
        stamp: the image stamp, (sec, nanosec) or integer nanoseconds. frame_id: the output frame
            (the prediction's grid_to_frame maps the grid into it).
        want: a subset of OUTPUT_KINDS (a node asks only for outputs somebody subscribes to).
        previous_classes: the marker ids of the last MarkerArray (DELETE markers for those gone now).
        surface_only: markers keep only voxels with a free face (RViz draws the same picture).
        merge_runs: markers draw each run of same-class cubes along the grid's x axis as a few
            longer boxes (`wire.marker_array_bytes`; RViz draws the same picture).
        native: the fused C passes (None: when built, `wire.use_native`) or the NumPy ones.

    Returns:
        ({kind: CDR bytes}, the marker ids the markers hold now: pass as previous_classes next time;
        `previous_classes` unchanged when no markers were made). The occupied voxels are selected
        once and shared by points and markers (or, with the native passes built, by each message's
        own pass); the bytes equal rclpy's serialization of the `prediction_to_*` messages (test_wire).
    """
    want = set(want)
    if not want <= OUTPUT_KINDS:
        raise ValueError(f"want: expected a subset of {sorted(OUTPUT_KINDS)}, got {sorted(want)}")
    labels, confidence, grid = _check_prediction(prediction)
    st = _stamp(stamp)
    T = prediction.grid_to_frame
    out: dict[str, bytes] = {}
    present = set(int(c) for c in previous_classes)
    selected = None  # the native passes select per message, in one pass each; NumPy selects once for both
    native = wire.use_native(labels, confidence, native)
    if want & {"points", "markers"} and not native:
        selected = wire.occupied_voxels(labels, grid, confidence, options.threshold)
    if "points" in want:
        out["points"] = wire.pointcloud2_bytes(
            labels, grid, options.colors_rgb, st, frame_id, confidence, options.threshold, T,
            options.include_confidence, selected=selected, native=native,
        )
    if "markers" in want:
        out["markers"], present = wire.marker_array_bytes(
            labels, grid, options.colors_rgb, st, frame_id, confidence, options.threshold, T, present,
            namespace=namespace, alpha=alpha, surface_only=surface_only, selected=selected, native=native,
            merge_runs=merge_runs,
        )
    if "grid" in want:
        out["grid"] = wire.voxel_grid_bytes(
            labels, grid, options.class_names, options.colors_rgb, st, frame_id, confidence, options.threshold, T,
            options.include_confidence, native=native,
        )
    return out, present


def matrix_to_pose(T: np.ndarray) -> Any:
    """4x4 homogeneous transform -> geometry_msgs/Pose."""
    from geometry_msgs.msg import Pose

    T = np.asarray(T, dtype=np.float64)
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    qx, qy, qz, qw = matrix_to_quaternion(T[:3, :3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = qx, qy, qz, qw
    return p


# --------------------------------------------------------------------------- prediction out
def _check_prediction(prediction: SSCPrediction) -> tuple[np.ndarray, np.ndarray | None, VoxelGrid]:
    labels, confidence, grid = np.asarray(prediction.labels), prediction.confidence, prediction.grid
    if tuple(labels.shape) != tuple(grid.dims):
        raise ValueError(f"labels: expected grid shape {grid.dims}, got {labels.shape}")
    if confidence is not None and confidence.shape != labels.shape:
        raise ValueError(f"confidence: expected shape {labels.shape}, got {confidence.shape}")
    return labels, confidence, grid


def _grid_to_frame(prediction: SSCPrediction) -> np.ndarray:
    T = prediction.grid_to_frame
    return np.eye(4) if T is None else np.asarray(T, dtype=np.float64)


def select_voxels(
    prediction: SSCPrediction, threshold: float = 0.0, centres: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None, np.ndarray]:
    """The occupied voxels of a prediction: class not 0 (empty) and not 255, confidence >= threshold.

    Returns:
        (centres (M, 3) float32 metres in the prediction's output frame (None without `centres`),
        labels (M,) uint8, confidence (M,) float32 or None, indices (M, 3) int64), in C order.
    """
    labels, confidence, grid = _check_prediction(prediction)
    keep = (labels != 0) & (labels != IGNORE_LABEL)
    if confidence is not None and threshold > 0:
        keep &= confidence >= threshold
    ijk = np.argwhere(keep)
    xyz = None
    if centres:
        xyz = grid.index_to_center(ijk)
        if prediction.grid_to_frame is not None:
            xyz = apply_transform(prediction.grid_to_frame, xyz)
        xyz = xyz.astype(np.float32)
    lab = labels[keep].astype(np.uint8)
    conf = None if confidence is None else np.asarray(confidence[keep], dtype=np.float32)
    return xyz, lab, conf, ijk


def pack_rgb(colors_rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) float32 carrying 0x00RRGGBB in its bits (PCL / RViz 'rgb')."""
    c = np.asarray(colors_rgb, dtype=np.uint32)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).astype(np.uint32).view(np.float32)


def _class_colors(colors_rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    colors = np.asarray(colors_rgb, dtype=np.uint8)
    if labels.size and int(labels.max()) >= len(colors):
        raise ValueError(f"labels: class id {int(labels.max())} has no colour ({len(colors)} classes)")
    return colors[labels]


def prediction_to_pointcloud2(prediction: SSCPrediction, options: OutputOptions, header: Any = None) -> Any:
    """Occupied voxels -> sensor_msgs/PointCloud2, one point per voxel centre.

    Fields (little-endian, point_step 20 or 24): x, y, z FLOAT32 (metres, output frame), rgb
    FLOAT32 (packed class colour, RViz's RGB8 transformer), label UINT32 (class id), confidence
    FLOAT32 (when the prediction has confidence and options.include_confidence). Unordered
    cloud: height 1, dense.
    """
    from sensor_msgs.msg import PointCloud2, PointField

    centres, lab, conf, _ = select_voxels(prediction, options.threshold)
    if not options.include_confidence:
        conf = None
    names = ["x", "y", "z", "rgb", "label"] + (["confidence"] if conf is not None else [])
    types = [_PF_FLOAT32] * 4 + [_PF_UINT32] + ([_PF_FLOAT32] if conf is not None else [])
    dt = np.dtype({"names": names, "formats": ["<" + PF_TO_DTYPE[t] for t in types]})
    rec = np.empty(len(lab), dtype=dt)
    rec["x"], rec["y"], rec["z"] = centres[:, 0], centres[:, 1], centres[:, 2]
    rec["rgb"] = pack_rgb(_class_colors(options.colors_rgb, lab))
    rec["label"] = lab
    if conf is not None:
        rec["confidence"] = conf
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = 1, len(lab)
    msg.fields = [
        PointField(name=n, offset=int(dt.fields[n][1]), datatype=t, count=1) for n, t in zip(names, types)
    ]
    msg.is_bigendian = False
    msg.point_step = dt.itemsize
    msg.row_step = dt.itemsize * len(lab)
    msg.is_dense = True
    msg.data = byte_array(rec)
    return msg


class MarkerPointCache:
    """geometry_msgs/Point objects of voxel centres (grid coordinates), made once per voxel, reused.

    A CUBE_LIST needs one Python Point object per cube, and making them is what a MarkerArray
    costs (microseconds each). The centres never change for a grid, and an ego-centric scene
    keeps most occupied voxels from frame to frame, so the node keeps one cache per grid: a
    (X*Y*Z,) object array (8 bytes per voxel) filled as voxels first become occupied.
    """

    def __init__(self, grid: VoxelGrid) -> None:
        self.grid = grid
        self._points = np.empty(grid.num_voxels, dtype=object)

    def get(self, ijk: np.ndarray) -> np.ndarray:
        """Points (object array (M,)) of the voxels with indices `ijk` (M, 3)."""
        from geometry_msgs.msg import Point

        flat = np.ravel_multi_index(tuple(np.asarray(ijk, dtype=np.int64).T), self.grid.dims)
        objs = self._points[flat]
        missing = np.flatnonzero(np.equal(objs, None))
        if missing.size:
            made = np.empty(missing.size, dtype=object)
            made[:] = [Point(x=p[0], y=p[1], z=p[2]) for p in self.grid.index_to_center(ijk[missing]).tolist()]
            self._points[flat[missing]] = made
            objs[missing] = made
        return objs


def prediction_to_marker_array(
    prediction: SSCPrediction,
    options: OutputOptions,
    header: Any = None,
    previous_classes: Iterable[int] = (),
    namespace: str = "ssc",
    alpha: float = 1.0,
    cache: MarkerPointCache | None = None,
) -> tuple[Any, set[int]]:
    """Occupied voxels -> visualization_msgs/MarkerArray: one CUBE_LIST per present class.

    Marker id = class id (stable, so RViz replaces a class's cubes in place), colour = the class
    colour, scale = voxel size; points are voxel centres in grid coordinates and the marker pose
    is the prediction's grid -> output frame transform. Classes in `previous_classes` but absent now get a
    DELETE marker. With a `cache` (of this grid), Point objects are reused between calls.

    Returns:
        (MarkerArray, the set of class ids published now — pass it as `previous_classes` next time)
    """
    from visualization_msgs.msg import Marker, MarkerArray

    _, lab, _, ijk = select_voxels(prediction, options.threshold, centres=False)
    grid = prediction.grid
    if cache is None:
        cache = MarkerPointCache(grid)
    elif cache.grid != grid:
        raise ValueError(f"prediction_to_marker_array: cache is for {cache.grid}, not {grid}")
    colors = np.asarray(options.colors_rgb, dtype=np.float64) / 255.0
    if lab.size and int(lab.max()) >= len(colors):
        raise ValueError(f"labels: class id {int(lab.max())} has no colour ({len(colors)} classes)")
    pose = matrix_to_pose(_grid_to_frame(prediction))
    order = np.argsort(lab, kind="stable")
    lab_sorted = lab[order]
    classes, starts = np.unique(lab_sorted, return_index=True)
    ends = np.append(starts[1:], len(lab_sorted))
    pts_sorted = cache.get(ijk[order])
    out = MarkerArray()
    present: set[int] = set()
    for c, s, e in zip(classes.tolist(), starts.tolist(), ends.tolist()):
        m = Marker()
        if header is not None:
            m.header = header
        m.ns, m.id, m.type, m.action = namespace, int(c), Marker.CUBE_LIST, Marker.ADD
        m.pose = pose
        m.scale.x = m.scale.y = m.scale.z = float(grid.voxel_size)
        m.color.r, m.color.g, m.color.b = (float(v) for v in colors[c])
        m.color.a = float(alpha)
        m.points = pts_sorted[s:e].tolist()
        out.markers.append(m)
        present.add(int(c))
    for c in sorted(set(int(v) for v in previous_classes) - present):
        m = Marker()
        if header is not None:
            m.header = header
        m.ns, m.id, m.action = namespace, c, Marker.DELETE
        out.markers.append(m)
    return out, present


def prediction_to_voxel_grid(prediction: SSCPrediction, options: OutputOptions, header: Any = None) -> Any:
    """Dense prediction -> sgn_ros/SemanticVoxelGrid (see msg/SemanticVoxelGrid.msg).

    Voxels whose confidence is below `threshold` are sent as 255 (no prediction); confidence is
    quantised to 0..255 (left empty without options.include_confidence). The prediction's grid ->
    output frame transform gives `origin`.
    """
    from sgn_ros.msg import SemanticVoxelGrid

    labels, confidence, grid = _check_prediction(prediction)
    lab = labels.astype(np.uint8, copy=True)
    if confidence is not None and options.threshold > 0:
        lab[confidence < options.threshold] = IGNORE_LABEL
    msg = SemanticVoxelGrid()
    if header is not None:
        msg.header = header
    msg.origin = matrix_to_pose(_grid_to_frame(prediction) @ make_transform(translation=grid.origin))
    msg.voxel_size = float(grid.voxel_size)
    msg.size_x, msg.size_y, msg.size_z = (int(d) for d in grid.dims)
    msg.labels = byte_array(lab)
    if confidence is not None and options.include_confidence:
        q = np.clip(np.rint(np.asarray(confidence, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
        msg.confidence = byte_array(q)
    msg.class_names = [str(n) for n in options.class_names]
    if options.colors_rgb is not None:
        msg.class_colors = byte_array(np.asarray(options.colors_rgb, dtype=np.uint8).reshape(-1))
    return msg
