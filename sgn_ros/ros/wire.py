# Serialized ROS 2 messages of the prediction, written directly as CDR bytes.
#
# Building rclpy message objects costs what the data is not worth: a MarkerArray needs one Python
# geometry_msgs/Point per cube (~4 us each, 0.5-1 s for 105k voxels), and even array-backed fields
# are copied again by rclpy's C conversion before serialization. rclpy publishes `bytes` as they
# are (Publisher.publish(bytes), or rcl directly: rcl_publish.py), so this module writes the serialized message
# itself: small fixed parts with `struct`, the per-voxel parts as NumPy arrays whose memory *is*
# the wire format, joined once. The bytes equal rclpy.serialization.serialize_message() of the
# message that sgn_ros.ros.conversions builds from the same prediction (tests check every byte).
#
# Wire format: XCDR1 ("plain CDR") little-endian, as Fast DDS / rmw_fastrtps use for ROS 2: a 4-byte
# encapsulation header 00 01 00 00, then the fields in .msg order, each primitive aligned to its own
# size (8 for float64) relative to the first byte after the header; strings are uint32 length
# (including the NUL) + bytes + NUL; sequences are uint32 count + elements; nested messages have no
# framing of their own. Pure module: NumPy only, no rclpy import.
#
# Two ways to the same bytes. The NumPy passes below are the obvious version and the fallback.
# Where the C extension `sgn_ros.ros._cdr_fill` is built (pip install / colcon build compile it),
# each message is instead laid out here with *slots* for its per-voxel arrays and filled by one
# native pass over the label volume that writes into the final `bytes` (no selection arrays, no
# sort, no join copy; the GIL released): 2-3x less time for the three outputs of a predicted
# full-size scene (1.3x on randomly scattered voxels, bench/encoders.py).
# test_wire checks that both give the same bytes.
"""Vectorised CDR serialisers of the prediction outputs (PointCloud2, MarkerArray, SemanticVoxelGrid)."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sgn_ros.grid import VoxelGrid
from sgn_ros.labels import IGNORE_LABEL

try:  # the fused per-voxel passes (sgn_ros/ros/_cdr_fill.c), when the package was built with them
    from sgn_ros.ros import _cdr_fill as _native
except ImportError:  # a source tree without the build step: the NumPy passes give the same bytes
    _native = None

__all__ = [
    "CDR_LE_HEADER",
    "CdrWriter",
    "NATIVE",
    "use_native",
    "GridTables",
    "occupied_voxels",
    "surface_mask",
    "runs",
    "pointcloud2_bytes",
    "marker_array_bytes",
    "voxel_grid_bytes",
]

#: Encapsulation header of little-endian plain CDR (representation id CDR_LE, options 0).
CDR_LE_HEADER = b"\x00\x01\x00\x00"

# sensor_msgs/PointField datatypes; visualization_msgs/Marker constants
_PF_UINT32, _PF_FLOAT32 = 6, 7
_CUBE_LIST, _ADD, _DELETE = 6, 0, 2
_IDENTITY_QUAT = (0.0, 0.0, 0.0, 1.0)

_U32 = struct.Struct("<I")
_TIME = struct.Struct("<iI")
_F64X3 = struct.Struct("<3d")
_F64X4 = struct.Struct("<4d")
_F32X4 = struct.Struct("<4f")
_F32X3 = struct.Struct("<3f")
_F64 = struct.Struct("<d")
_I32 = struct.Struct("<i")
_I32X3 = struct.Struct("<3i")


class CdrWriter:
    """Appends CDR fields to a list of buffers; `bytes()` joins them once.

    Large arrays are appended as buffers (no copy until the final join); the offset is tracked so
    that alignment padding is inserted exactly where Fast CDR puts it.
    """

    __slots__ = ("_parts", "_small", "offset")

    def __init__(self) -> None:
        self._parts: list[Any] = [CDR_LE_HEADER]
        self._small = bytearray()  # pending small fields, flushed before each large buffer
        self.offset = 0  # bytes written after the encapsulation header

    def align(self, n: int) -> None:
        pad = -self.offset % n
        if pad:
            self._small += b"\x00" * pad
            self.offset += pad

    def pack(self, st: struct.Struct, align: int, *values: Any) -> None:
        """Fields of one primitive kind (`align` = its size) packed by `st`."""
        self.align(align)
        self._small += st.pack(*values)
        self.offset += st.size

    def u8(self, v: int) -> None:
        self._small.append(v & 0xFF)
        self.offset += 1

    def u32(self, v: int) -> None:
        self.pack(_U32, 4, v)

    def string(self, s: str) -> None:
        raw = s.encode("utf-8")
        self.u32(len(raw) + 1)
        self._small += raw + b"\x00"
        self.offset += len(raw) + 1

    def time(self, sec: int, nanosec: int) -> None:
        """builtin_interfaces/Time or Duration (int32 sec, uint32 nanosec)."""
        self.pack(_TIME, 4, sec, nanosec)

    def header(self, stamp: tuple[int, int], frame_id: str) -> None:
        """std_msgs/Header."""
        self.time(*stamp)
        self.string(frame_id)

    def pose(self, position: Sequence[float], quat: Sequence[float]) -> None:
        """geometry_msgs/Pose (Point + Quaternion x, y, z, w)."""
        self.pack(_F64X3, 8, *position)
        self._small += _F64X4.pack(*quat)
        self.offset += 32

    def extend(self, data: bytes | bytearray) -> None:
        """Bytes already laid out for the current offset (a template made at the same offset mod 8)."""
        self._small += data
        self.offset += len(data)

    def _flush(self) -> None:
        """Move the pending small fields into the parts, before a large buffer, a slot or the end."""
        if self._small:
            self._parts.append(bytes(self._small))
            self._small = bytearray()

    def raw(self, buf: Any, nbytes: int, align: int = 1) -> None:
        """`nbytes` of an array's memory (already in wire format), after padding to `align`."""
        if not nbytes:
            return
        self.align(align)
        if nbytes < 256:
            self._small += memoryview(buf).cast("B")
        else:
            self._flush()
            self._parts.append(buf)
        self.offset += nbytes

    def slot(self, nbytes: int, align: int = 1) -> None:
        """Room for `nbytes` that the native pass fills (after padding to `align`, exactly where
        `raw` would put the same array: an empty one gets no padding, but still its slot)."""
        if nbytes:
            self.align(align)
        self._flush()
        self._parts.append(int(nbytes))
        self.offset += nbytes

    def parts(self) -> list[Any]:
        """The message so far as bytes and slot sizes (ints), for `_cdr_fill`."""
        self._flush()
        return list(self._parts)

    def byte_seq(self, arr: np.ndarray | None) -> None:
        """uint8[] (or any array's bytes): count + data."""
        if arr is None:
            self.u32(0)
            return
        a = np.ascontiguousarray(arr)
        self.u32(a.nbytes)
        self.raw(a, a.nbytes)

    def bytes(self) -> bytes:
        self._flush()
        return b"".join(self._parts)


# --------------------------------------------------------------------------- selection
class GridTables:
    """Per-axis voxel-centre coordinates of a grid (float64 and float32), made once per grid.

    A centre is origin[a] + (index + 0.5) * voxel_size per axis, computed exactly as
    `VoxelGrid.index_to_center` does, so a table lookup gives the same float64 bits; three small
    tables (X + Y + Z values) instead of an (X*Y*Z, 3) one.
    """

    def __init__(self, grid: VoxelGrid) -> None:
        self.grid = grid
        o = np.asarray(grid.origin, dtype=np.float64)
        self.axes64 = [o[a] + (np.arange(grid.dims[a], dtype=np.float64) + 0.5) * grid.voxel_size for a in range(3)]
        self.axes32 = [ax.astype(np.float32) for ax in self.axes64]
        _, Y, Z = grid.dims
        pow2 = (Y & (Y - 1)) == 0 and (Z & (Z - 1)) == 0
        self._shifts = (Y.bit_length() - 1, Z.bit_length() - 1) if pow2 else None
        self._runs: dict[int, np.ndarray] = {}

    def run_table(self, levels: int) -> np.ndarray:
        """(levels * X,) float64: entry b * X + i is the x centre (grid coordinates) of a box of
        2^b voxels starting at voxel i, origin + (i + 2^b / 2) * voxel_size (for b = 0 the voxel
        centres of axes64[0], bit for bit); the merged markers' table, made once per size."""
        table = self._runs.get(levels)
        if table is None:
            X = self.grid.dims[0]
            half = np.float64(2.0) ** np.arange(levels, dtype=np.float64)[:, None] / 2
            table = (self.grid.origin[0] + (np.arange(X, dtype=np.float64) + half) * self.grid.voxel_size).reshape(-1)
            self._runs[levels] = table
        return table

    def ijk(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat C-order voxel indices -> (i, j, k)."""
        if self._shifts is not None:  # power-of-two Y and Z (SemanticKITTI): shifts, not divisions
            sy, sz = self._shifts
            return flat >> (sy + sz), (flat >> sz) & ((1 << sy) - 1), flat & ((1 << sz) - 1)
        _, Y, Z = self.grid.dims
        ij, k = np.divmod(flat, Z)
        i, j = np.divmod(ij, Y)
        return i, j, k

    def centres64(self, flat: np.ndarray) -> np.ndarray:
        """(M, 3) float64 centres (grid coordinates) of flat voxel indices."""
        i, j, k = self.ijk(flat)
        out = np.empty((len(flat), 3), np.float64)
        out[:, 0] = self.axes64[0][i]
        out[:, 1] = self.axes64[1][j]
        out[:, 2] = self.axes64[2][k]
        return out

    def point_tables(self, T: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(A0, A1, A2, t): per axis a the table R[:, a] * centre_a (float64 (dims[a], 3)) and the
        translation of the 4x4 `T` (grid -> frame; None: identity), so that a centre in the frame is
        ((A0[i] + A1[j]) + A2[k]) + t, summed in that order by `transformed` and the native pass."""
        T = np.eye(4) if T is None else np.asarray(T, dtype=np.float64)
        return (*(np.ascontiguousarray(self.axes64[a][:, None] * T[:3, a]) for a in range(3)),
                np.ascontiguousarray(T[:3, 3]))

    def transformed(self, flat: np.ndarray, T: np.ndarray) -> np.ndarray:
        """(M, 3) float64 centres in the frame of the 4x4 `T` (grid -> frame).

        R c + t summed per axis from `point_tables` (no BLAS: a (M, 3) @ (3, 3) matmul through
        OpenBLAS costs 2-90 ms on a loaded 2-core machine). Equal to `c @ R.T + t` up to float64
        rounding (BLAS may fuse multiply-adds), the same float32 values in practice.
        """
        a0, a1, a2, t = self.point_tables(T)
        i, j, k = self.ijk(flat)
        out = a0[i]
        out += a1[j]
        out += a2[k]
        out += t
        return out


_TABLES: dict[VoxelGrid, GridTables] = {}


def _tables(grid: VoxelGrid) -> GridTables:
    t = _TABLES.get(grid)
    if t is None:
        if len(_TABLES) > 8:  # a node has one or two grids; never grow without bound
            _TABLES.clear()
        t = _TABLES[grid] = GridTables(grid)
    return t


def _check(labels: np.ndarray, confidence: np.ndarray | None, grid: VoxelGrid) -> None:
    if tuple(labels.shape) != tuple(grid.dims):
        raise ValueError(f"labels: expected grid shape {grid.dims}, got {labels.shape}")
    if confidence is not None and np.shape(confidence) != labels.shape:
        raise ValueError(f"confidence: expected shape {labels.shape}, got {np.shape(confidence)}")


def _keep_mask(labels: np.ndarray, confidence: np.ndarray | None, threshold: float) -> np.ndarray:
    if labels.dtype == np.uint8:  # 1..254 <=> (label - 1) mod 256 < 254: one pass fewer
        keep = np.subtract(labels, np.uint8(1)) < np.uint8(254)
    else:
        keep = (labels != 0) & (labels != IGNORE_LABEL)
    if confidence is not None and threshold > 0:
        keep &= np.asarray(confidence) >= threshold
    return keep


def surface_mask(keep: np.ndarray) -> np.ndarray:
    """Occupied voxels (bool (X, Y, Z)) with at least one free face: a 6-neighbour that is not
    occupied or lies outside the grid. The others are hidden by their neighbours' opaque cubes.

    Whole-volume version (seven passes over the grid); `occupied_voxels(surface_only=True)` tests
    only the occupied voxels' neighbours, which is what the hot path uses.
    """
    inner = np.zeros_like(keep)
    c = keep[1:-1, 1:-1, 1:-1]
    inner[1:-1, 1:-1, 1:-1] = (
        c & keep[:-2, 1:-1, 1:-1] & keep[2:, 1:-1, 1:-1] & keep[1:-1, :-2, 1:-1] & keep[1:-1, 2:, 1:-1]
        & keep[1:-1, 1:-1, :-2] & keep[1:-1, 1:-1, 2:]
    )
    return keep & ~inner


def _has_free_face(keep: np.ndarray, flat: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """(M,) bool: which of the occupied voxels `flat` (of the mask `keep`) have a free face."""
    dims = grid.dims
    strides = (dims[1] * dims[2], dims[2], 1)
    kf = keep.reshape(-1)
    last = kf.size - 1
    free = np.zeros(len(flat), bool)
    for c, d, s in zip(_tables(grid).ijk(flat), dims, strides):
        free |= (c == 0) | ~kf[np.maximum(flat - s, 0)]
        free |= (c == d - 1) | ~kf[np.minimum(flat + s, last)]
    return free


def occupied_voxels(
    labels: np.ndarray,
    grid: VoxelGrid,
    confidence: np.ndarray | None = None,
    threshold: float = 0.0,
    surface_only: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat C-order indices (M,) int64 and labels (M,) uint8 of the voxels that are published.

    Occupied = class not 0 (empty) and not 255 (no prediction), and confidence >= threshold when
    threshold > 0 — the selection of `conversions.select_voxels`, in the same order.
    `surface_only` keeps only those with a free face (`surface_mask`).
    """
    labels = np.asarray(labels)
    _check(labels, confidence, grid)
    keep = _keep_mask(labels, confidence, threshold)
    flat = np.flatnonzero(keep)
    if surface_only:
        flat = flat[_has_free_face(keep, flat, grid)]
    lab = labels.reshape(-1)[flat].astype(np.uint8)
    return flat, lab


def _selection(labels: np.ndarray, grid: VoxelGrid, confidence: np.ndarray | None, threshold: float,
               selected: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    if selected is None:
        return occupied_voxels(labels, grid, confidence, threshold)
    _check(labels, confidence, grid)
    flat, lab = selected
    if len(flat) != len(lab) or (len(flat) and int(flat[-1]) >= grid.num_voxels):
        raise ValueError(f"selected: expected (flat indices, labels) of one {grid.dims} prediction from "
                         f"occupied_voxels, got {len(flat)} indices and {len(lab)} labels")
    return np.asarray(flat), np.asarray(lab, dtype=np.uint8)


def _quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    from sgn_ros.geometry import matrix_to_quaternion as rotation_to_quaternion

    return rotation_to_quaternion(R)


def _pose_of(T: np.ndarray | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(position, quaternion) of a 4x4, as conversions.matrix_to_pose gives them."""
    T = np.eye(4) if T is None else np.asarray(T, dtype=np.float64)
    return tuple(float(v) for v in T[:3, 3]), _quaternion(T[:3, :3])


def _check_colors(colors: np.ndarray, lab: np.ndarray) -> None:
    if lab.size and int(lab.max()) >= len(colors):
        raise ValueError(f"labels: class id {int(lab.max())} has no colour ({len(colors)} classes)")


#: whether the fused native passes (sgn_ros.ros._cdr_fill) are built into this installation
NATIVE = _native is not None


def use_native(labels: np.ndarray, confidence: np.ndarray | None, native: bool | None = None) -> bool:
    """Whether a prediction is serialized by the native passes: `native` None = when built and the
    arrays are as the predictor makes them (uint8 labels, float32 confidence, C-contiguous);
    True = required (ValueError naming what is missing); False = the NumPy passes."""
    fits = (isinstance(labels, np.ndarray) and labels.dtype == np.uint8 and labels.flags.c_contiguous
            and (confidence is None or (isinstance(confidence, np.ndarray) and confidence.dtype == np.float32
                                        and confidence.flags.c_contiguous)))
    if native is None:
        return NATIVE and fits
    if native and not NATIVE:
        raise ValueError("native: sgn_ros.ros._cdr_fill is not built (reinstall the package: pip install -e . "
                         "or colcon build)")
    if native and not fits:
        raise ValueError("native: expected C-contiguous uint8 labels and float32 confidence (or none), got "
                         f"{getattr(labels, 'dtype', type(labels))} and {getattr(confidence, 'dtype', None)}")
    return bool(native)


def _native_counts(labels: np.ndarray, grid: VoxelGrid, confidence: np.ndarray | None, threshold: float,
                   colors: np.ndarray, surface: bool) -> tuple[list[int], bytes | None]:
    """Per-class counts of the cubes drawn (all occupied voxels, or with `surface` those with a
    free face), with the colour check of `_check_colors`; with `surface` also the bit mask of
    those voxels, which the fill pass then reads instead of testing every face again."""
    per_class, per_surface, mask = _native.count(labels, grid.dims, confidence, float(threshold), surface)
    counts = per_surface if surface else per_class
    top = max((c for c in range(256) if counts[c]), default=-1)
    if top >= len(colors):
        raise ValueError(f"labels: class id {top} has no colour ({len(colors)} classes)")
    return counts, mask


# --------------------------------------------------------------------------- PointCloud2
def pointcloud2_bytes(
    labels: np.ndarray,
    grid: VoxelGrid,
    colors_rgb: np.ndarray,
    stamp: tuple[int, int] = (0, 0),
    frame_id: str = "",
    confidence: np.ndarray | None = None,
    threshold: float = 0.0,
    transform: np.ndarray | None = None,
    include_confidence: bool = True,
    selected: tuple[np.ndarray, np.ndarray] | None = None,
    native: bool | None = None,
) -> bytes:
    """Serialized sensor_msgs/PointCloud2 of the occupied voxels, one point per voxel centre.

    Same message as `conversions.labels_to_pointcloud2` (fields x, y, z, rgb FLOAT32, label UINT32,
    confidence FLOAT32 when given and `include_confidence`; height 1, dense, little-endian), with
    header (stamp = (sec, nanosec), frame_id). `transform`: 4x4 grid -> frame_id. `selected`: the
    result of `occupied_voxels(labels, grid, confidence, threshold)` when the caller already has
    it (the NumPy path: `encode_outputs` shares one selection between PointCloud2 and MarkerArray).
    `native`: see `use_native` (a given `selected` means the NumPy path).
    """
    labels = np.asarray(labels)
    _check(labels, confidence, grid)
    with_conf = confidence is not None and include_confidence
    cols = 6 if with_conf else 5
    c = np.asarray(colors_rgb, dtype=np.uint8).astype(np.uint32)
    packed = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]  # 0x00RRGGBB per class
    tab = _tables(grid)
    if selected is None and use_native(labels, confidence, native):
        n = _native.occupied(labels, grid.dims, confidence, float(threshold))  # colours checked in the pass
        w = _pointcloud2_layout(stamp, frame_id, n, with_conf)
        w.slot(4 * cols * n)
        w.u8(1)  # is_dense
        return _native.points(w.parts(), labels, grid.dims, confidence, float(threshold),
                              tab.point_tables(transform), packed, with_conf)
    flat, lab = _selection(labels, grid, confidence, threshold, selected)
    _check_colors(packed, lab)
    n = len(flat)
    rec = np.empty((n, cols), np.float32)
    if transform is None:
        i, j, k = tab.ijk(flat)
        rec[:, 0] = tab.axes32[0][i]
        rec[:, 1] = tab.axes32[1][j]
        rec[:, 2] = tab.axes32[2][k]
    else:
        rec[:, :3] = tab.transformed(flat, transform)
    u = rec.view(np.uint32)
    u[:, 3] = packed[lab]
    u[:, 4] = lab
    if with_conf:
        rec[:, 5] = np.asarray(confidence).reshape(-1)[flat]
    w = _pointcloud2_layout(stamp, frame_id, n, with_conf)
    w.raw(rec, rec.nbytes)
    w.u8(1)  # is_dense
    return w.bytes()


def _pointcloud2_layout(stamp: tuple[int, int], frame_id: str, n: int, with_conf: bool) -> CdrWriter:
    """PointCloud2 up to its data bytes (the caller adds n points and is_dense)."""
    cols = 6 if with_conf else 5
    w = CdrWriter()
    w.header(stamp, frame_id)
    w.pack(struct.Struct("<II"), 4, 1, n)  # height, width
    names = ["x", "y", "z", "rgb", "label"] + (["confidence"] if with_conf else [])
    types = [_PF_FLOAT32] * 4 + [_PF_UINT32] + ([_PF_FLOAT32] if with_conf else [])
    w.u32(len(names))
    for f, (name, dt) in enumerate(zip(names, types)):
        w.string(name)
        w.u32(4 * f)
        w.u8(dt)
        w.u32(1)
    w.u8(0)  # is_bigendian
    w.pack(struct.Struct("<II"), 4, 4 * cols, 4 * cols * n)  # point_step, row_step
    w.u32(4 * cols * n)
    return w


# --------------------------------------------------------------------------- MarkerArray
def _marker_head(w: CdrWriter, stamp: tuple[int, int], frame_id: str, ns: str, mid: int, mtype: int,
                 action: int, position: Sequence[float], quat: Sequence[float], scale: Sequence[float],
                 color: Sequence[float]) -> tuple[int, int, int]:
    """visualization_msgs/Marker up to (not including) `points`. Returns where its id, scale and
    colour went: their offsets from the writer's offset at the call."""
    start = w.offset
    w.header(stamp, frame_id)
    w.string(ns)
    w.align(4)
    id_at = w.offset - start
    w.pack(_I32X3, 4, mid, mtype, action)
    w.pose(position, quat)
    w.align(8)
    scale_at = w.offset - start
    w.pack(_F64X3, 8, *scale)
    color_at = w.offset - start
    w.pack(_F32X4, 4, *color)
    w.time(0, 0)  # lifetime: forever
    w.u8(0)  # frame_locked
    return id_at, scale_at, color_at


def _cube_list_head(stamp: tuple[int, int], frame_id: str, ns: str, position: Sequence[float],
                    quat: Sequence[float], voxel_size: float, alpha: float, phase: int) -> tuple[bytes, int, int, int]:
    """An ADD CUBE_LIST marker's fields before `points`, laid out from an offset = phase (mod 8),
    with id, scale x and colour r, g, b zero: (bytes, where the id, the scale x and the colour go)."""
    w = CdrWriter()
    w.offset = phase
    at = _marker_head(w, stamp, frame_id, ns, 0, _CUBE_LIST, _ADD, position, quat, (0.0, voxel_size, voxel_size),
                      (0.0, 0.0, 0.0, float(alpha)))
    return (bytes(w._small), *at)


def _marker_tail(w: CdrWriter) -> None:
    """visualization_msgs/Marker after `points`: all fields empty."""
    w.u32(0)  # colors
    w.string("")  # texture_resource
    w.header((0, 0), "")  # texture (sensor_msgs/CompressedImage): header, format, data
    w.string("")
    w.u32(0)
    w.u32(0)  # uv_coordinates
    w.string("")  # text
    w.string("")  # mesh_resource
    w.string("")  # mesh_file: filename, data
    w.u32(0)
    w.u8(0)  # mesh_use_embedded_materials


def marker_array_bytes(
    labels: np.ndarray,
    grid: VoxelGrid,
    colors_rgb: np.ndarray,
    stamp: tuple[int, int] = (0, 0),
    frame_id: str = "",
    confidence: np.ndarray | None = None,
    threshold: float = 0.0,
    transform: np.ndarray | None = None,
    previous_classes: Iterable[int] = (),
    namespace: str = "ssc",
    alpha: float = 1.0,
    surface_only: bool = False,
    selected: tuple[np.ndarray, np.ndarray] | None = None,
    native: bool | None = None,
    merge_runs: bool = False,
) -> tuple[bytes, set[int]]:
    """Serialized visualization_msgs/MarkerArray: one CUBE_LIST per present class.

    Same message as `conversions.labels_to_marker_array`: marker id = class id, colour = class
    colour (alpha `alpha`), scale = voxel size, points = voxel centres in grid coordinates in C
    order, pose = `transform` (grid -> frame_id); a DELETE marker for each id of
    `previous_classes` that is absent now. `surface_only` (off by default) leaves out the cubes
    whose six faces all touch other cubes: RViz shows the same opaque scene from fewer points
    (with alpha < 1 the hidden cubes would show through, so keep it off there). `selected`: as in
    `pointcloud2_bytes` (without `surface_only`). `native`: see `use_native`.

    `merge_runs` draws each run of same-class cubes along the grid's x axis (consecutive drawn
    voxels (i..i+L-1, j, k)) as boxes of 2^b voxels, the binary digits of L from the largest, first
    at i (`runs`): one CUBE_LIST per class and size, id = class + 256 * b, scale (2^b voxels, 1, 1),
    points = box centres in the C order of their runs' last voxels. RViz draws a CUBE_LIST's points
    as boxes of the marker's scale, so the boxes cover exactly the voxels the cubes would: the same
    opaque scene from about 5x (a street) to 30x (smooth predictions) fewer points. As with
    `surface_only`, the faces between the cubes of a box are gone, which shows only with alpha < 1.

    Returns:
        (bytes, the set of marker ids published now — pass it as `previous_classes` next time;
        without `merge_runs` these are the class ids)
    """
    labels = np.asarray(labels)
    _check(labels, confidence, grid)
    colors = np.asarray(colors_rgb, dtype=np.float64) / 255.0
    vs = float(grid.voxel_size)
    levels = int(grid.dims[0]).bit_length()  # box sizes 2^0 .. 2^(levels-1): a run is at most X long
    if selected is None and use_native(labels, confidence, native):
        if not merge_runs:
            counts, mask = _native_counts(labels, grid, confidence, threshold, colors, surface_only)
            classes = [c for c in range(256) if counts[c]]
            markers = [(c, c, vs, counts[c]) for c in classes]
            w = _marker_array_layout(markers, previous_classes, stamp, frame_id, transform, namespace, alpha,
                                     colors, vs, fill=None)
            data = _native.markers(w.parts(), classes, labels, grid.dims, confidence, float(threshold),
                                   tuple(_tables(grid).axes64), surface_only, mask)
            return data, set(classes)
        # the surface voxels' bit mask from count's face tests, else the runs of all occupied voxels
        mask = _native.count(labels, grid.dims, confidence, float(threshold), True)[2] if surface_only else None
        boxes, runs_found = _native.box_count(labels, grid.dims, confidence, float(threshold), mask, levels)
        keys = [key for key, n in enumerate(boxes) if n]
        if len(keys) > _native.MAX_SLOTS:  # more classes x sizes than one native layout holds: NumPy
            return marker_array_bytes(labels, grid, colors_rgb, stamp, frame_id, confidence, threshold, transform,
                                      previous_classes, namespace, alpha, surface_only, native=False, merge_runs=True)
        top = max((key // levels for key in keys), default=-1)
        if top >= len(colors):
            raise ValueError(f"labels: class id {top} has no colour ({len(colors)} classes)")
        markers = [(key % levels * 256 + key // levels, key // levels, vs * (1 << key % levels), boxes[key])
                   for key in keys]
        w = _marker_array_layout(markers, previous_classes, stamp, frame_id, transform, namespace, alpha, colors,
                                 vs, fill=None)
        tab = _tables(grid)
        data = _native.boxes(w.parts(), keys, runs_found, labels, grid.dims, tab.run_table(levels), tab.axes64[1],
                             tab.axes64[2])
        return data, {m[0] for m in markers}
    flat, lab = _selection(labels, grid, confidence, threshold, selected)
    if surface_only:
        keep = np.zeros(grid.num_voxels, bool)
        keep[flat] = True
        free = _has_free_face(keep, flat, grid)
        flat, lab = flat[free], lab[free]
    _check_colors(colors, lab)
    if merge_runs:
        markers, fill = _box_markers(flat, labels, grid, levels)
    else:
        order = np.argsort(lab, kind="stable")
        lab_sorted = lab[order]
        classes_np, starts = np.unique(lab_sorted, return_index=True)
        ends = np.append(starts[1:], len(lab_sorted))
        pts = _tables(grid).centres64(flat[order])  # (M, 3) float64 = geometry_msgs/Point[] on the wire
        markers = [(c, c, vs, e - s) for c, s, e in zip(classes_np.tolist(), starts.tolist(), ends.tolist())]
        fill = {c: pts[s:e] for c, s, e in zip(classes_np.tolist(), starts.tolist(), ends.tolist())}
    w = _marker_array_layout(markers, previous_classes, stamp, frame_id, transform, namespace, alpha, colors, vs,
                             fill=fill)
    return w.bytes(), {m[0] for m in markers}


def runs(drawn: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The runs along axis 0 of a drawn-voxel mask: maximal lines of drawn voxels (i..i+L-1, j, k)
    of one class. Returns (flat C-order index of each run's first voxel, its length L), both
    int64, in the C order of the runs' LAST voxels (the order `marker_array_bytes(merge_runs=True)`
    lists the boxes in: the native pass finds a run complete at its end).

    Vectorised: a voxel starts a run unless the one before it on axis 0 is drawn with its class;
    the first and last voxels of each column's runs, listed column by column, pair up in turn.
    """
    drawn = np.asarray(drawn, dtype=bool)
    labels = np.asarray(labels)
    X, Y, Z = drawn.shape
    cont = np.zeros_like(drawn)  # continues the run of the voxel before it on axis 0
    cont[1:] = drawn[1:] & drawn[:-1] & (labels[1:] == labels[:-1])
    first = drawn & ~cont
    last = drawn.copy()
    last[:-1] &= ~cont[1:]
    f = np.flatnonzero(first.transpose(1, 2, 0))  # (j, k, i) order: each column's runs in turn
    e = np.flatnonzero(last.transpose(1, 2, 0))
    order = np.argsort((e % X) * (Y * Z) + e // X, kind="stable")
    return ((f % X) * (Y * Z) + f // X)[order], (e - f + 1)[order]


def _box_markers(flat: np.ndarray, labels: np.ndarray, grid: VoxelGrid,
                 levels: int) -> tuple[list[tuple[int, int, float, int]], dict[int, np.ndarray]]:
    """The merged-run markers (`marker_array_bytes(merge_runs=True)`) of the drawn voxels `flat`:
    ([(id, class, scale x, boxes)] by class, then size), {id: (boxes, 3) float64 centres})."""
    X, Y, Z = grid.dims
    drawn = np.zeros(grid.num_voxels, bool)
    drawn[flat] = True
    lab_all = np.asarray(labels).reshape(grid.dims).astype(np.uint8, copy=False)
    first, length = runs(drawn.reshape(grid.dims), lab_all)
    i0, rest = np.divmod(first, Y * Z)
    j, k = np.divmod(rest, Z)
    cls = lab_all.reshape(-1)[first]
    tab = _tables(grid)
    xt = tab.run_table(levels).reshape(levels, X)
    per_class: dict[int, list[tuple[int, np.ndarray]]] = {}
    for b in range(levels):
        sel = np.flatnonzero((length >> b) & 1)
        if not sel.size:
            continue
        # the box of 2^b voxels comes after the larger ones of its run: at the sum of L's higher digits
        xi = i0[sel] + ((length[sel] >> (b + 1)) << (b + 1))
        pts = np.empty((sel.size, 3), np.float64)
        pts[:, 0] = xt[b][xi]
        pts[:, 1] = tab.axes64[1][j[sel]]
        pts[:, 2] = tab.axes64[2][k[sel]]
        c_sel = cls[sel]
        order = np.argsort(c_sel, kind="stable")
        classes, starts = np.unique(c_sel[order], return_index=True)
        ends = np.append(starts[1:], sel.size)
        for c, s, e in zip(classes.tolist(), starts.tolist(), ends.tolist()):
            per_class.setdefault(c, []).append((b, pts[order[s:e]]))
    markers, fill = [], {}
    for c in sorted(per_class):
        for b, pts in per_class[c]:
            mid = c + 256 * b
            markers.append((mid, c, float(grid.voxel_size) * (1 << b), len(pts)))
            fill[mid] = pts
    return markers, fill


def _marker_array_layout(markers: list[tuple[int, int, float, int]], previous_classes: Iterable[int],
                         stamp: tuple[int, int], frame_id: str, transform: np.ndarray | None, namespace: str,
                         alpha: float, colors: np.ndarray, voxel_size: float,
                         fill: dict[int, np.ndarray] | None) -> CdrWriter:
    """The MarkerArray of `markers` ((id, class, scale x, cubes) each: a CUBE_LIST of that many
    cubes of scale (scale x, voxel_size, voxel_size) in the class colour) and DELETE markers for the
    previous ids gone now; the cube centres from `fill` ({id: (n, 3) float64}) or, with fill None,
    as slots for the native pass."""
    position, quat = _pose_of(transform)
    gone = sorted({int(v) for v in previous_classes} - {m[0] for m in markers})
    w = CdrWriter()
    w.u32(len(markers) + len(gone))
    # Every ADD marker has the same fields but id, scale x, colour and count: its head is laid out
    # once per phase (the offset mod 8 where it starts: the pose and scale are float64) and patched
    # per marker; the all-empty tail after the (8-aligned) points is the same bytes every time.
    heads: dict[int, tuple[bytes, int, int, int]] = {}
    tail = CdrWriter()
    _marker_tail(tail)
    tail_bytes = bytes(tail._small)
    for mid, c, sx, n in markers:
        phase = w.offset % 8
        if phase not in heads:
            heads[phase] = _cube_list_head(stamp, frame_id, namespace, position, quat, voxel_size, alpha, phase)
        template, id_at, scale_at, color_at = heads[phase]
        head = bytearray(template)
        _I32.pack_into(head, id_at, int(mid))
        _F64.pack_into(head, scale_at, float(sx))
        _F32X3.pack_into(head, color_at, *(float(v) for v in colors[c]))
        w.extend(head)
        w.u32(n)
        if fill is None:
            w.slot(n * 24, 8)
        else:
            w.raw(fill[mid], n * 24, 8)
        if n and w.offset % 8 == 0:
            w.extend(tail_bytes)
        else:
            _marker_tail(w)
    for mid in gone:
        _marker_head(w, stamp, frame_id, namespace, mid, 0, _DELETE, (0.0, 0.0, 0.0), _IDENTITY_QUAT,
                     (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0))
        w.u32(0)
        _marker_tail(w)
    return w


# --------------------------------------------------------------------------- SemanticVoxelGrid
def _quantise(confidence: np.ndarray) -> np.ndarray:
    """Confidence -> uint8 rint(255 * c) clipped to 0..255, as conversions.labels_to_voxel_grid,
    computed in place in one float32 buffer (the temporaries of the plain expression cost as much
    again on this machine)."""
    buf = np.multiply(np.asarray(confidence, dtype=np.float32), np.float32(255.0))
    np.rint(buf, out=buf)
    np.clip(buf, 0, 255, out=buf)
    return buf.astype(np.uint8).reshape(-1)


def voxel_grid_bytes(
    labels: np.ndarray,
    grid: VoxelGrid,
    class_names: Sequence[str],
    colors_rgb: np.ndarray | None = None,
    stamp: tuple[int, int] = (0, 0),
    frame_id: str = "",
    confidence: np.ndarray | None = None,
    threshold: float = 0.0,
    transform: np.ndarray | None = None,
    include_confidence: bool = True,
    native: bool | None = None,
) -> bytes:
    """Serialized sgn_ros/SemanticVoxelGrid (msg/SemanticVoxelGrid.msg) of a dense prediction.

    Same message as `conversions.labels_to_voxel_grid`: voxels with confidence below `threshold`
    sent as 255; confidence quantised to 0..255 (empty without `include_confidence`); `transform`
    (grid -> frame_id) gives `origin`. `native`: see `use_native`.
    """
    labels = np.asarray(labels)
    _check(labels, confidence, grid)
    with_conf = confidence is not None and include_confidence
    T = np.eye(4) if transform is None else np.asarray(transform, dtype=np.float64)
    corner = np.eye(4)
    corner[:3, 3] = grid.origin
    position, quat = _pose_of(T @ corner)
    w = CdrWriter()
    w.header(stamp, frame_id)
    w.pose(position, quat)
    w.pack(struct.Struct("<f3I"), 4, float(grid.voxel_size), *(int(d) for d in grid.dims))
    n = grid.num_voxels
    fill = use_native(labels, confidence, native)
    if fill:  # labels and quantised confidence as slots of the native pass
        w.u32(n)
        w.slot(n)
        w.u32(n if with_conf else 0)
        if with_conf:
            w.slot(n)
    else:
        if confidence is not None and threshold > 0:
            lab = labels.astype(np.uint8, copy=True)
            lab[np.asarray(confidence) < threshold] = IGNORE_LABEL
        else:
            lab = labels if labels.dtype == np.uint8 else labels.astype(np.uint8)
        w.byte_seq(lab)
        q = _quantise(confidence) if with_conf else np.zeros(0, np.uint8)
        w.u32(q.size)
        w.raw(q, q.size)
    w.u32(len(class_names))
    for name in class_names:
        w.string(str(name))
    w.byte_seq(None if colors_rgb is None else np.asarray(colors_rgb, dtype=np.uint8).reshape(-1))
    if fill:
        return _native.grid(w.parts(), labels, grid.dims, confidence if with_conf or threshold > 0 else None,
                            float(threshold))
    return w.bytes()
