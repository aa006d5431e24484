# Synthetic KITTI world, part 3: SemanticKITTI voxel ground truth.
#
# Labels come from the same primitives the images are rendered from: a voxel of the grid (placed
# in the LiDAR frame of the frame, sgn_ros.grid.DEFAULT_GRID) takes the raw id of a primitive
# that holds its centre (thin parts are thickened to half a voxel so that poles, signs and fences
# leave a trace), and the ground surface marks the voxel of each column that it passes through.
#
# Visibility mimics how SemanticKITTI built its masks from the LiDAR scans of the sequence:
#   * a voxel is OBSERVED from a scan position when it lies in the HDL-64E field of view and in
#     front of (or within a voxel of) the first surface along the beam; the range image used for
#     that test holds the objects only, the ground is handled exactly (voxels under the ground
#     surface are never observed);
#   * `.invalid`  = observed from none of the scan positions along the trajectory (a few past and
#     future positions, the scene frozen at the current time): building interiors, space behind
#     facades and above the scanner's +2 degree field of view, ground interior. Labels of invalid
#     voxels are 0, as in SemanticKITTI where only scanned surfaces carry labels;
#   * `.occluded` = valid voxels that this frame's scan does not observe;
#   * `.bin`      = occupancy of this frame's own scan (its points voxelised).
"""Voxel labels and invalid / occluded / single-scan masks of the synthetic world."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sgn_ros.data.synth.render import (
    LIDAR_ELEVATION,
    LIDAR_MAX_RANGE,
    lidar_directions,
    lidar_scan,
)
from sgn_ros.data.synth.world import BOX, CYLINDER, Primitives, SynthWorld, apply_linear
from sgn_ros.grid import DEFAULT_GRID, VoxelGrid

#: scan positions (metres along the ego lane, relative to the current frame) whose scans decide
#: which voxels were ever observed, as SemanticKITTI accumulates past and future scans.
VIEW_OFFSETS = (-40.0, -15.0, 0.0, 15.0, 35.0, 60.0)
#: range images of the other scan positions: rows x columns over a wider vertical field of view
#: than one HDL-64E scan (+25 to -25 degrees), standing in for the many pitched, accumulated scans
#: that let SemanticKITTI label facades up to the top of the volume
VIEW_ROWS, VIEW_COLS = 100, 1024
VIEW_ELEVATION = (np.deg2rad(25.0), np.deg2rad(-25.0))
#: range (m) up to which the accumulated scans count a voxel as observed (HDL-64E: ~120 m)
VIEW_MAX_RANGE = 120.0


@dataclass
class VoxelFrame:
    """Ground truth of one frame on `grid` (arrays shaped grid.dims, indexed [x, y, z]).

    label: uint16 raw SemanticKITTI ids (0 = empty / unlabeled); invalid, occluded, occupancy
    (the `.bin` single-scan occupancy): bool; points: (N, 3) float32 this frame's LiDAR scan in
    the LiDAR frame (metres).
    """

    label: np.ndarray
    invalid: np.ndarray
    occluded: np.ndarray
    occupancy: np.ndarray
    points: np.ndarray


@lru_cache(maxsize=2)
def _centers(grid: VoxelGrid) -> np.ndarray:
    return grid.voxel_centers().astype(np.float32)


def _to_world(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    return apply_linear(points, pose[:3, :3], pose[:3, 3])


def ground_columns(world: SynthWorld, lidar_to_world: np.ndarray, grid: VoxelGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per grid column (X, Y): z index of the voxel holding the ground surface (may be < 0 or
    >= Z when the surface is outside the volume) and the ground's raw label."""
    c = _centers(grid)[:, :, 0, :].reshape(-1, 3).astype(np.float64)
    w = _to_world(c, lidar_to_world)
    height, raw = world.ground(w[:, 0], w[:, 1])
    # ground height in the LiDAR frame: the LiDAR is level, so only its z offset matters
    z_local = height - lidar_to_world[2, 3]
    k = np.floor((z_local - grid.origin[2]) / grid.voxel_size).astype(np.int64)
    return k.reshape(grid.dims[:2]), raw.reshape(grid.dims[:2])


def label_voxels(world: SynthWorld, prims: Primitives, lidar_to_world: np.ndarray,
                 grid: VoxelGrid = DEFAULT_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw labels (X, Y, Z) uint16 of everything in the volume, the ground index (X, Y) and the
    solid-interior mask (X, Y, Z) (centres more than a voxel inside a box: never observable).

    Primitives are written in order (later ones win: a crown over its trunk, a sign over its
    pole); each only touches the voxel block its bounding box covers.
    """
    dims = grid.dims
    label = np.zeros(dims, np.uint16)
    solid = np.zeros(dims, bool)
    k, graw = ground_columns(world, lidar_to_world, grid)
    ok = (k >= 0) & (k < dims[2])
    xi, yi = np.nonzero(ok)
    label[xi, yi, k[ok]] = graw[ok]
    vs = grid.voxel_size
    world_to_lidar = np.linalg.inv(lidar_to_world)
    corners = prims.corners() @ world_to_lidar[:3, :3].T + world_to_lidar[:3, 3]  # (N, 8, 3)
    lo = np.floor((corners.min(axis=1) - grid.origin) / vs).astype(np.int64)
    hi = np.floor((corners.max(axis=1) - grid.origin) / vs).astype(np.int64) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.asarray(dims))
    centers = _centers(grid)
    for i in range(len(prims)):
        (x0, y0, z0), (x1, y1, z1) = lo[i], hi[i]
        if x1 <= x0 or y1 <= y0 or z1 <= z0:
            continue
        block = centers[x0:x1, y0:y1, z0:z1].astype(np.float64)
        local = apply_linear(_to_world(block, lidar_to_world) - prims.center[i], prims.rot[i].T)
        half = np.maximum(prims.half[i], vs / 2)
        kind = int(prims.kind[i])
        if kind == BOX:
            inside = np.all(np.abs(local) <= half, axis=-1)
            if np.all(prims.half[i] > 2 * vs):
                solid[x0:x1, y0:y1, z0:z1] |= np.all(np.abs(local) <= prims.half[i] - vs, axis=-1)
        elif kind == CYLINDER:
            r = max(prims.half[i, 0], 0.6 * vs)
            inside = (local[..., 0] ** 2 + local[..., 1] ** 2 <= r * r) & (np.abs(local[..., 2]) <= half[2])
        else:
            inside = ((local / half) ** 2).sum(axis=-1) <= 1.0
        label[x0:x1, y0:y1, z0:z1][inside] = prims.raw[i]
    return label, k, solid


def _inside_any(prims: Primitives, point: np.ndarray, pad: float) -> bool:
    """Whether `point` (3,) lies inside any primitive grown by `pad` metres."""
    local = np.abs(np.einsum("ni,nij->nj", point - prims.center, prims.rot))
    half = prims.half + pad
    box = np.all(local <= half, axis=1)
    cyl = (np.hypot(local[:, 0], local[:, 1]) <= half[:, 0]) & (local[:, 2] <= half[:, 2])
    ell = ((local / half) ** 2).sum(axis=1) <= 1.0
    inside = np.where(prims.kind == BOX, box, np.where(prims.kind == CYLINDER, cyl, ell))
    return bool(inside.any())


def observed_from(points_world: np.ndarray, lidar_to_world: np.ndarray, ranges: np.ndarray,
                  margin: float, max_range: float = LIDAR_MAX_RANGE,
                  elevation: tuple[float, float] = LIDAR_ELEVATION) -> tuple[np.ndarray, np.ndarray]:
    """Which points (M, 3) a LiDAR at `lidar_to_world` observes, given its object range image
    `ranges` (rows, cols) (inf = no object): (observed (M,), in field of view (M,)).

    A point is observed when it is inside the vertical field of view and range limit and not
    farther than `margin` metres behind the first object along the beam nearest to it.
    """
    rows, cols = ranges.shape
    el_top, el_bot = elevation
    f32 = np.float32
    v = apply_linear(points_world.astype(f32) - lidar_to_world[:3, 3].astype(f32), lidar_to_world[:3, :3].T)
    rxy = np.sqrt(v[:, 0] * v[:, 0] + v[:, 1] * v[:, 1])
    r = np.sqrt(rxy * rxy + v[:, 2] * v[:, 2])
    el = np.arctan2(v[:, 2], rxy)
    row = np.rint((f32(el_top) - el) * f32((rows - 1) / (el_top - el_bot))).astype(np.int64)
    col = np.rint(np.arctan2(v[:, 1], v[:, 0]) * f32(cols / (2 * np.pi))).astype(np.int64) % cols
    fov = (row >= 0) & (row < rows) & (r <= max_range)
    depth = ranges[np.clip(row, 0, rows - 1), col]
    return fov & (r <= depth + f32(margin)), fov


def voxelize_frame(world: SynthWorld, frame: int, grid: VoxelGrid = DEFAULT_GRID) -> VoxelFrame:
    """All SemanticKITTI voxel files' content for camera frame `frame`."""
    t = world.frame_time(frame)
    prims = world.scene_at(t)
    pose = world.lidar_pose(frame)
    label, ground_k, solid = label_voxels(world, prims, pose, grid)
    dims = grid.dims
    below = np.arange(dims[2])[None, None, :] < ground_k[:, :, None]
    margin = 0.5 * grid.voxel_size * np.sqrt(3.0) + 0.05
    # this frame's scan: points for .bin and the object range image for visibility
    scan = lidar_scan(world, prims, pose, ground=True)
    hit = np.isfinite(scan.t)
    points = (lidar_directions()[hit] * scan.t[hit][:, None]).astype(np.float32)
    occupancy = np.zeros(dims, bool)
    inside = grid.contains(points)
    idx = grid.point_to_index(points[inside])
    occupancy[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    cand = ~(below | solid).reshape(-1)
    pts = _to_world(_centers(grid).reshape(-1, 3)[cand], pose)
    obj_range = np.where(scan.index >= 0, scan.t, np.inf)
    seen_now, _ = observed_from(pts, pose, obj_range, margin)
    seen = seen_now.copy()
    s_now = world.speed * t
    for off in VIEW_OFFSETS:
        if off == 0.0:
            continue
        vp = world.lidar_pose_at_s(s_now + off)
        # a scan position inside a moving car (the leader, an oncoming car) would see it from within
        if _inside_any(prims, vp[:3, 3], pad=0.3):
            continue
        vscan = lidar_scan(world, prims, vp, ground=False, rows=VIEW_ROWS, cols=VIEW_COLS,
                           max_range=VIEW_MAX_RANGE, elevation=VIEW_ELEVATION)
        todo = np.flatnonzero(~seen)
        if not len(todo):
            break
        obs, _ = observed_from(pts[todo], vp, vscan.t, margin, VIEW_MAX_RANGE, VIEW_ELEVATION)
        seen[todo[obs]] = True
    observed = np.zeros(grid.num_voxels, bool)
    observed[cand] = seen
    observed = observed.reshape(dims)
    current = np.zeros(grid.num_voxels, bool)
    current[cand] = seen_now
    invalid = ~observed
    label[invalid] = 0
    occluded = observed & ~current.reshape(dims)
    return VoxelFrame(label=label, invalid=invalid, occluded=occluded, occupancy=occupancy, points=points)


__all__ = ["VoxelFrame", "label_voxels", "observed_from", "voxelize_frame", "ground_columns"]
