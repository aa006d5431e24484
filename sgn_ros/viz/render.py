# Pictures of semantic voxel grids: bird's-eye views, camera-view splats and labelled panels.
#
# Used by the trainer (TensorBoard images of prediction vs. ground truth), the ROS demo (PNG files
# people look at) and the synthetic-data tools. Everything returns uint8 RGB arrays (H, W, 3) so a
# caller can hand them to TensorBoard, OpenCV or `save_png`. Training id 255 (ignored / no
# prediction) and 0 (empty) are never drawn.
"""Semantic voxel renderings (BEV, perspective) and PNG helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sgn_ros.fileio import atomic_path
from sgn_ros.grid import VoxelGrid

IGNORE = 255  # training id that is never drawn
BACKGROUND = (255, 255, 255)


def _check_labels(labels: np.ndarray, colors: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    colors = np.asarray(colors, dtype=np.uint8)
    if labels.ndim != 3:
        raise ValueError(f"{where}: labels must be (X, Y, Z), got shape {labels.shape}")
    if colors.ndim != 2 or colors.shape[1] != 3:
        raise ValueError(f"{where}: colors must be (C, 3), got shape {colors.shape}")
    drawn = (labels != 0) & (labels != IGNORE)
    if drawn.any() and int(labels[drawn].max()) >= len(colors):
        raise ValueError(f"{where}: label {int(labels[drawn].max())} has no colour (only {len(colors)} colours)")
    return labels, colors


def render_bev(labels: np.ndarray, colors: np.ndarray, height_shading: bool = True,
               background: tuple[int, int, int] = BACKGROUND) -> np.ndarray:
    """Top view of a semantic grid: the colour of the highest drawn voxel of every column.

    Args:
        labels: (X, Y, Z) training ids (x forward, y left, z up; 0 empty, 255 not drawn).
        colors: (C, 3) uint8 RGB per training id.
        height_shading: darken lower voxels (factor 0.55 at the bottom layer, 1.0 at the top) so
            that heights read at a glance.
    Returns:
        (X, Y, 3) uint8 with the vehicle at the bottom centre looking up: row 0 is the farthest x,
        column 0 the leftmost y (largest y).
    """
    labels, colors = _check_labels(labels, colors, "render_bev")
    nz = labels.shape[2]
    drawn = (labels != 0) & (labels != IGNORE)
    has = drawn.any(axis=2)
    top = nz - 1 - np.argmax(drawn[:, :, ::-1], axis=2)  # (X, Y) index of the highest drawn voxel
    cls = np.take_along_axis(labels, top[..., None], axis=2)[..., 0]
    img = np.empty(labels.shape[:2] + (3,), np.uint8)
    img[:] = np.asarray(background, np.uint8)
    col = colors[np.where(has, cls, 0)].astype(np.float32)
    if height_shading:
        col *= (0.55 + 0.45 * (top + 1) / nz)[..., None]
    img[has] = np.clip(col[has] + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[::-1, ::-1])


def render_perspective(labels: np.ndarray, grid: VoxelGrid, k: np.ndarray, lidar_to_cam: np.ndarray,
                       image_size: tuple[int, int], colors: np.ndarray, background: np.ndarray | None = None,
                       max_splat: int = 48) -> np.ndarray:
    """Camera view of the drawn voxels, z-buffered (nearest voxel wins at every pixel).

    Each voxel centre is projected with `k` (3, 3) after `lidar_to_cam` (4, 4, metres) and drawn
    as a square of side 1.5 * fx * voxel_size / z pixels (capped at 2 * max_splat + 1) so that
    neighbouring voxels close up; borders between different voxels are darkened so that the
    voxel structure stays visible.

    Args:
        labels: (X, Y, Z) training ids on `grid`; 0 and 255 are not drawn.
        image_size: (H, W) pixels.
        background: optional (H, W, 3) uint8 image drawn behind (e.g. the camera image);
            white otherwise.
    Returns:
        (H, W, 3) uint8.
    """
    labels, colors = _check_labels(labels, colors, "render_perspective")
    if tuple(labels.shape) != tuple(grid.dims):
        raise ValueError(f"render_perspective: labels shape {labels.shape} != grid dims {grid.dims}")
    k = np.asarray(k, np.float64)
    t = np.asarray(lidar_to_cam, np.float64)
    if k.shape != (3, 3) or t.shape != (4, 4):
        raise ValueError(f"render_perspective: need K (3, 3) and lidar_to_cam (4, 4), got {k.shape}, {t.shape}")
    h, w = int(image_size[0]), int(image_size[1])
    if background is None:
        img = np.empty((h, w, 3), np.uint8)
        img[:] = np.asarray(BACKGROUND, np.uint8)
    else:
        img = np.array(background, dtype=np.uint8, copy=True)
        if img.shape != (h, w, 3):
            raise ValueError(f"render_perspective: background shape {img.shape} != {(h, w, 3)}")
    pix, vox, depth = splat_voxels(labels, grid, k, t, (h, w), max_splat)
    if not len(pix):
        return img
    first = _nearest_per_pixel(pix, depth)
    pix, vox, depth = pix[first], vox[first], depth[first]
    xyz = np.stack(np.nonzero((labels != 0) & (labels != IGNORE)), axis=1)
    cls = labels[xyz[vox, 0], xyz[vox, 1], xyz[vox, 2]]
    shade = 1.0 - 0.35 * np.clip(depth / 60.0, 0.0, 1.0)
    ids = np.full(h * w, -1, np.int64)
    ids[pix] = vox
    ids = ids.reshape(h, w)
    edge = np.zeros((h, w), bool)
    edge[:, 1:] |= (ids[:, 1:] != ids[:, :-1]) & (ids[:, 1:] >= 0) & (ids[:, :-1] >= 0)
    edge[1:, :] |= (ids[1:, :] != ids[:-1, :]) & (ids[1:, :] >= 0) & (ids[:-1, :] >= 0)
    shade = shade * np.where(edge.reshape(-1)[pix], 0.7, 1.0)
    flat = img.reshape(-1, 3)
    flat[pix] = np.clip(colors[cls].astype(np.float32) * shade[:, None] + 0.5, 0, 255).astype(np.uint8)
    return img


def splat_voxels(labels: np.ndarray, grid: VoxelGrid, k: np.ndarray, lidar_to_cam: np.ndarray,
                 image_size: tuple[int, int], max_splat: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (pixel, voxel, depth) fragments of the drawn voxels' splats (before z-buffering).

    Returns flat pixel indices (F,), indices (F,) into the drawn voxels in `np.nonzero` order and
    camera depths (F,) in metres.
    """
    h, w = image_size
    xyz = np.stack(np.nonzero((labels != 0) & (labels != IGNORE)), axis=1)
    centres = grid.index_to_center(xyz)
    rot = lidar_to_cam[:3, :3]
    cam = np.stack([centres[:, 0] * rot[j, 0] + centres[:, 1] * rot[j, 1] + centres[:, 2] * rot[j, 2]
                    + lidar_to_cam[j, 3] for j in range(3)], axis=1)  # explicit sums: no BLAS threads
    z = cam[:, 2]
    front = z > 0.1
    ids = np.flatnonzero(front)
    z = z[front]
    u = k[0, 0] * cam[front, 0] / z + k[0, 2]
    v = k[1, 1] * cam[front, 1] / z + k[1, 2]
    radius = np.minimum(np.ceil(0.75 * k[0, 0] * grid.voxel_size / z - 0.5), max_splat).astype(np.int64)
    radius = np.maximum(radius, 0)
    ui, vi = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
    # drop splats that cannot touch the image
    touch = (ui + radius >= 0) & (ui - radius < w) & (vi + radius >= 0) & (vi - radius < h)
    ids, z, ui, vi, radius = ids[touch], z[touch], ui[touch], vi[touch], radius[touch]
    pix_parts, vox_parts, dep_parts = [], [], []
    for r in np.unique(radius):
        sel = radius == r
        off = np.arange(-r, r + 1)
        du, dv = np.meshgrid(off, off)
        pu = (ui[sel, None] + du.reshape(1, -1)).reshape(-1)
        pv = (vi[sel, None] + dv.reshape(1, -1)).reshape(-1)
        n = du.size
        inside = (pu >= 0) & (pu < w) & (pv >= 0) & (pv < h)
        pix_parts.append((pv * w + pu)[inside])
        vox_parts.append(np.repeat(ids[sel], n)[inside])
        dep_parts.append(np.repeat(z[sel], n)[inside])
    if not pix_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(pix_parts), np.concatenate(vox_parts), np.concatenate(dep_parts)


def _nearest_per_pixel(pix: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Index of the nearest fragment of every covered pixel (ties: first in input order)."""
    order = np.lexsort((np.arange(len(pix)), depth, pix))
    first = np.ones(len(order), bool)
    first[1:] = pix[order[1:]] != pix[order[:-1]]
    return order[first]


def side_by_side(images: list[np.ndarray], titles: list[str] | None = None, gap: int = 6,
                 title_height: int = 18) -> np.ndarray:
    """Panels (H_i, W_i, 3) or (H_i, W_i) uint8 side by side on white, each under its title.

    Shorter panels are padded at the bottom; titles use PIL's default font.
    """
    if not images:
        raise ValueError("side_by_side: no images")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"side_by_side: {len(images)} images but {len(titles)} titles")
    panels = []
    for i, im in enumerate(images):
        a = np.asarray(im)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"side_by_side: image {i} must be (H, W, 3) or (H, W), got {a.shape}")
        panels.append(a.astype(np.uint8, copy=False))
    top = title_height if titles is not None else 0
    height = top + max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.full((height, width, 3), 255, np.uint8)
    x = 0
    xs = []
    for p in panels:
        canvas[top:top + p.shape[0], x:x + p.shape[1]] = p
        xs.append(x)
        x += p.shape[1] + gap
    if titles is not None:
        pil = Image.fromarray(canvas)
        draw = ImageDraw.Draw(pil)
        font = ImageFont.load_default()
        for x0, title in zip(xs, titles):
            draw.text((x0 + 2, 2), str(title), fill=(0, 0, 0), font=font)
        canvas = np.asarray(pil).copy()
    return canvas


def save_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write an (H, W, 3) or (H, W) uint8 image as PNG atomically (tmp file + os.replace)."""
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"save_png({path}): need uint8 (H, W), (H, W, 3) or (H, W, 4), got {a.dtype} {a.shape}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, fsync=False) as tmp:
        with open(tmp, "wb") as f:
            Image.fromarray(a).save(f, format="PNG")
    return out
