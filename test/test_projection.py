# Tests of the FLoSP geometry (sgn_ros/model/projection.py) and of FLoSP lifting
# (sgn_ros/model/flosp.py), each against a slow per-voxel version on small grids.
"""Tests for voxel -> pixel projection, FOV masks, gather indices and FLoSP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgn_ros.geometry.voxels import voxel_centres
from sgn_ros.grid import VoxelGrid
from sgn_ros.model.flosp import FLoSP
from sgn_ros.model.projection import (
    feature_gather_index,
    feature_size,
    fov_mask,
    projection_tables,
    voxel_to_pixel,
)

GRID = VoxelGrid(origin=(0.0, -6.4, -2.0), voxel_size=0.8, dims=(16, 16, 8))
K = np.array([[120.0, 0.0, 95.5], [0.0, 120.0, 31.7], [0.0, 0.0, 1.0]])
# LiDAR (x forward, y left, z up) -> camera (x right, y down, z forward), camera 0.3 m behind.
TR = np.array([[0.0, -1.0, 0.0, 0.05], [0.0, 0.0, -1.0, -0.1], [1.0, 0.0, 0.0, 0.3], [0.0, 0.0, 0.0, 1.0]])
IMAGE = (64, 192)


def rotated(t: np.ndarray, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    r = np.eye(4)
    r[:2, :2] = [[c, -s], [s, c]]
    return t @ r


def slow_projection(grid: VoxelGrid, k: np.ndarray, t: np.ndarray, image: tuple[int, int]):
    """One voxel at a time, in float64 from float32 centres (the reference's arithmetic)."""
    pix, vis = [], []
    for i in range(grid.dims[0]):
        for j in range(grid.dims[1]):
            for m in range(grid.dims[2]):
                c = np.float32(grid.origin) + np.float32(grid.voxel_size) * (np.float32([i, j, m]) + np.float32(0.5))
                cam = t @ np.r_[c.astype(np.float64), 1.0]
                uvw = k.astype(np.float32).astype(np.float64) @ cam[:3]
                uv = np.round(uvw[:2] / max(uvw[2], 1e-6)).astype(np.int64)
                pix.append(uv)
                vis.append(0 <= uv[0] < image[1] and 0 <= uv[1] < image[0] and cam[2] > 0)
    return np.array(pix), np.array(vis)


def test_voxel_centres_match_grid_and_float32_formula():
    c = voxel_centres(GRID)
    assert c.dtype == torch.float32 and c.shape == (GRID.num_voxels, 3)
    np.testing.assert_allclose(c.numpy(), GRID.voxel_centers().reshape(-1, 3), atol=1e-5)
    idx = np.stack(np.meshgrid(*[np.arange(d) for d in GRID.dims], indexing="ij"), -1).reshape(-1, 3)
    ref = np.float32(GRID.origin) + np.float32(GRID.voxel_size) * (idx.astype(np.float32) + np.float32(0.5))
    assert np.array_equal(c.numpy(), ref)


@pytest.mark.parametrize("yaw", [0.0, 0.4, -1.2])
def test_projection_and_fov_match_slow_version(yaw):
    t = rotated(TR, yaw)
    pixels, depth = voxel_to_pixel(
        voxel_centres(GRID), torch.tensor(K, dtype=torch.float32)[None], torch.tensor(t)[None]
    )
    visible = fov_mask(pixels, depth, IMAGE)
    ref_pix, ref_vis = slow_projection(GRID, K, t, IMAGE)
    assert np.array_equal(visible[0].numpy(), ref_vis)
    assert ref_vis.any() and not ref_vis.all()
    assert np.array_equal(pixels[0][visible[0]].numpy(), ref_pix[ref_vis])


def test_rounding_is_half_to_even_and_behind_camera_is_invisible():
    k = torch.eye(3, dtype=torch.float32)[None]
    t = torch.eye(4, dtype=torch.float64)[None]
    pts = torch.tensor([[2.5, 3.5, 1.0], [-0.5, 0.5, 1.0], [1.0, 1.0, -2.0], [1.0, 1.0, 0.0]])
    pixels, depth = voxel_to_pixel(pts, k, t)
    assert pixels[0, :2].tolist() == [[2, 4], [0, 0]]
    visible = fov_mask(pixels, depth, (10, 10))
    assert visible[0].tolist() == [True, True, False, False]


def test_feature_gather_index():
    pixels = torch.tensor([[[0, 0], [15, 15], [16, 0], [40, 33], [5, 5]]])
    visible = torch.tensor([[True, True, True, True, False]])
    idx = feature_gather_index(pixels, visible, 16, (3, 4))
    assert idx.tolist() == [[0, 0, 1, 2 * 4 + 2, 12]]


def slow_flosp(features: torch.Tensor, k: np.ndarray, ts: list[np.ndarray], image: tuple[int, int]) -> torch.Tensor:
    """Per voxel: average over the frames that see it of the feature at its (v // 16, u // 16) cell."""
    f, c, fh, fw = features.shape
    out = torch.zeros(c, GRID.num_voxels)
    projections = [slow_projection(GRID, k, t, image) for t in ts]
    for n in range(GRID.num_voxels):
        acc, seen = torch.zeros(c), 0
        for i, (pix, vis) in enumerate(projections):
            if vis[n]:
                acc += features[i, :, pix[n, 1] // 16, pix[n, 0] // 16]
                seen += 1
        out[:, n] = acc / max(seen, 1)
    return out.reshape(c, *GRID.dims)


@pytest.mark.parametrize("frames", [1, 3])
def test_flosp_matches_slow_lifting(frames):
    torch.manual_seed(0)
    ts = [rotated(TR, 0.3 * i) for i in range(frames)]
    feats = torch.randn(1, frames, 5, IMAGE[0] // 16, IMAGE[1] // 16)
    flosp = FLoSP(GRID, 16)
    k = torch.tensor(K, dtype=torch.float32).expand(frames, 3, 3)
    t = torch.tensor(np.stack(ts), dtype=torch.float32).to(torch.float64)  # float32-rounded, as slow_flosp
    index, visible = projection_tables(GRID, 16, k, t, IMAGE)
    out = flosp(feats, index[None], visible[None], IMAGE)
    # pure: no state outside the state dict, the same inputs give the same output
    assert not list(flosp.buffers()) and not flosp.state_dict()
    torch.testing.assert_close(flosp(feats, index[None], visible[None], IMAGE), out, atol=0, rtol=0)
    assert out.shape == (1, 5, *GRID.dims)
    torch.testing.assert_close(out[0], slow_flosp(feats[0], K, ts, IMAGE), atol=1e-6, rtol=1e-6)


def test_flosp_rejects_feature_map_smaller_than_image():
    flosp = FLoSP(GRID, 16)
    index, visible = projection_tables(GRID, 16, torch.eye(3)[None], torch.eye(4, dtype=torch.float64)[None], (64, 64))
    index, visible = index[None], visible[None]
    with pytest.raises(ValueError, match="does not cover"):
        flosp(torch.zeros(1, 1, 2, 2, 2), index, visible, (64, 64))
    with pytest.raises(ValueError, match="stride-16 map"):
        flosp(torch.zeros(1, 1, 2, 5, 5), index, visible, (64, 64))
    with pytest.raises(ValueError, match="do not match"):
        flosp(torch.zeros(1, 1, 2, 4, 4), index[:, :, :5], visible[:, :, :5], (64, 64))


def test_feature_size_is_the_resnet_stride_16_map():
    """ceil(n / 16): what four padded stride-2 stages (conv 7x7, max pool, two 3x3 convs) give."""
    for n in (1, 15, 16, 17, 64, 370, 1220):
        m = n
        for _ in range(4):
            m = (m - 1) // 2 + 1  # floor((m + 2p - k) / 2) + 1 with k = 2p + 1
        assert feature_size((n, n), 16) == (m, m)
