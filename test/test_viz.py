# Tests of the voxel pictures (sgn_ros.viz): BEV and perspective renderings against slow obvious
# versions, orientation, "255 is never drawn", panels with titles and atomic PNG files.
"""Tests for sgn_ros.viz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sgn_ros.grid import VoxelGrid
from sgn_ros.labels import load_label_set
from sgn_ros.viz import render_bev, render_perspective, save_png, side_by_side
from sgn_ros.viz.render import BACKGROUND

COLORS = load_label_set("semantickitti").colors_rgb


def _random_grid(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = rng.integers(1, 20, shape).astype(np.uint8)
    lab[rng.random(shape) < 0.7] = 0
    lab[rng.random(shape) < 0.1] = 255
    return lab


def test_bev_against_loop() -> None:
    lab = _random_grid((12, 10, 6), 0)
    img = render_bev(lab, COLORS, height_shading=True)
    nx, ny, nz = lab.shape
    assert img.shape == (nx, ny, 3) and img.dtype == np.uint8
    for x in range(nx):
        for y in range(ny):
            expect = np.array(BACKGROUND, np.uint8)
            for z in reversed(range(nz)):
                if lab[x, y, z] not in (0, 255):
                    f = 0.55 + 0.45 * (z + 1) / nz
                    expect = np.clip(COLORS[lab[x, y, z]].astype(np.float32) * f + 0.5, 0, 255).astype(np.uint8)
                    break
            # vehicle at the bottom centre looking up: x grows upwards, y (left) grows leftwards
            np.testing.assert_array_equal(img[nx - 1 - x, ny - 1 - y], expect, err_msg=f"{x},{y}")


def test_bev_orientation_and_ignore() -> None:
    lab = np.zeros((8, 6, 4), np.uint8)
    lab[7, 5, 0] = 1  # far ahead, far left
    lab[0, 0, 3] = 255  # ignored: not drawn
    img = render_bev(lab, COLORS, height_shading=False)
    np.testing.assert_array_equal(img[0, 0], COLORS[1])
    np.testing.assert_array_equal(img[7, 5], BACKGROUND)
    assert (img != np.array(BACKGROUND, np.uint8)).any(axis=2).sum() == 1
    with pytest.raises(ValueError, match="colour"):
        render_bev(np.full((2, 2, 2), 30, np.uint8), COLORS)
    with pytest.raises(ValueError, match="X, Y, Z"):
        render_bev(np.zeros((2, 2), np.uint8), COLORS)


def _perspective_loop(lab: np.ndarray, grid: VoxelGrid, k: np.ndarray, t: np.ndarray, size: tuple[int, int],
                      max_splat: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Painter's algorithm, one voxel at a time, near to far, a pixel kept by its nearest voxel."""
    h, w = size
    cls = np.zeros((h, w), np.int64)
    depth = np.full((h, w), np.inf)
    items = []
    for x, y, z in zip(*np.nonzero((lab != 0) & (lab != 255))):
        c = np.asarray(grid.origin) + (np.array([x, y, z]) + 0.5) * grid.voxel_size
        p = t[:3, :3] @ c + t[:3, 3]
        if p[2] <= 0.1:
            continue
        items.append((p[2], p, lab[x, y, z]))
    for zc, p, c in sorted(items, key=lambda it: it[0]):
        u = int(np.rint(k[0, 0] * p[0] / zc + k[0, 2]))
        v = int(np.rint(k[1, 1] * p[1] / zc + k[1, 2]))
        r = int(min(max(np.ceil(0.75 * k[0, 0] * grid.voxel_size / zc - 0.5), 0), max_splat))
        for vv in range(v - r, v + r + 1):
            for uu in range(u - r, u + r + 1):
                if 0 <= uu < w and 0 <= vv < h and zc < depth[vv, uu]:  # ties: first voxel wins
                    depth[vv, uu] = zc
                    cls[vv, uu] = c
    return cls, depth


def test_perspective_against_painter() -> None:
    grid = VoxelGrid(origin=(2.0, -1.6, -1.0), voxel_size=0.2, dims=(16, 16, 8), scales=(1,))
    lab = _random_grid(grid.dims, 1)
    k = np.array([[60.0, 0, 40], [0, 60.0, 30], [0, 0, 1]])
    tr = np.eye(4)
    tr[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]  # LiDAR -> camera axes
    size = (60, 80)
    img = render_perspective(lab, grid, k, tr, size, COLORS)
    cls, depth = _perspective_loop(lab, grid, k, tr, size)
    drawn = np.isfinite(depth)
    assert drawn.mean() > 0.3
    np.testing.assert_array_equal((img != np.array(BACKGROUND, np.uint8)).any(axis=2), drawn)
    # the hue of each pixel is its class colour (up to depth shading and edge darkening)
    col = img[drawn].astype(np.float32)
    ref = COLORS[cls[drawn]].astype(np.float32)
    scale = (col * ref).sum(1) / np.maximum((ref * ref).sum(1), 1)
    assert np.median(np.abs(col - ref * scale[:, None])) <= 2.0
    assert (scale > 0.4).all() and (scale <= 1.01).all()


def test_perspective_single_voxel_centre_and_background() -> None:
    grid = VoxelGrid(origin=(0.0, -0.8, -0.8), voxel_size=0.2, dims=(50, 8, 8), scales=(1,))
    lab = np.zeros(grid.dims, np.uint8)
    lab[49, 3:5, 3:5] = 13  # a 0.4 m block straight ahead, 10 m away
    k = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    tr = np.eye(4)
    tr[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    bg = np.zeros((80, 100, 3), np.uint8)
    img = render_perspective(lab, grid, k, tr, (80, 100), COLORS, background=bg)
    ys, xs = np.nonzero(img.any(axis=2))
    assert abs(xs.mean() - 49.5) < 1.0 and abs(ys.mean() - 39.5) < 1.0
    assert 3 <= xs.max() - xs.min() + 1 <= 7  # about 0.4 m * 100 px / 9.9 m
    with pytest.raises(ValueError, match="grid dims"):
        render_perspective(lab[:10], grid, k, tr, (80, 100), COLORS)
    with pytest.raises(ValueError, match="background"):
        render_perspective(lab, grid, k, tr, (80, 100), COLORS, background=bg[:10])


def test_side_by_side_titles() -> None:
    a = np.zeros((40, 30, 3), np.uint8)
    b = np.full((20, 50), 128, np.uint8)
    out = side_by_side([a, b], ["ground truth", "prediction"], gap=4, title_height=16)
    assert out.shape == (16 + 40, 30 + 4 + 50, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[16:56, :30], a)
    np.testing.assert_array_equal(out[16:36, 34:], 128)
    assert (out[16 + 20:, 34:] == 255).all()  # shorter panel padded with white
    assert (out[:16, :30] < 128).any() and (out[:16, 34:] < 128).any()  # titles drawn
    plain = side_by_side([a, b])
    assert plain.shape == (40, 86, 3)
    with pytest.raises(ValueError, match="titles"):
        side_by_side([a, b], ["one"])
    with pytest.raises(ValueError, match="no images"):
        side_by_side([])


def test_save_png_round_trip(tmp_path: Path) -> None:
    img = np.random.default_rng(2).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    out = save_png(tmp_path / "sub" / "x.png", img)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), img)
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.png"]  # no temporary file left
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "y.png", img.astype(np.float32))
