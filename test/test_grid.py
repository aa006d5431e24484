"""Tests of the one voxel-grid description (sgn_ros.grid)."""

import numpy as np
import pytest

from sgn_ros.grid import DEFAULT_GRID, VoxelGrid


def test_default_grid_is_the_reference_volume():
    g = DEFAULT_GRID
    assert g.dims == (256, 256, 32)
    assert g.extent == pytest.approx((51.2, 51.2, 6.4))
    assert g.point_cloud_range == pytest.approx((0.0, -25.6, -2.0, 51.2, 25.6, 4.4))
    half = g.scaled(2)
    assert half.dims == (128, 128, 16)
    assert half.voxel_size == pytest.approx(0.4)
    assert half.origin == g.origin


def test_voxel_centers_match_slow_loop():
    g = VoxelGrid(origin=(1.0, -2.0, 0.5), voxel_size=0.5, dims=(4, 6, 2), scales=(1, 2))
    c = g.voxel_centers()
    assert c.shape == (4, 6, 2, 3)
    for i in range(4):
        for j in range(6):
            for k in range(2):
                expected = [1.0 + (i + 0.5) * 0.5, -2.0 + (j + 0.5) * 0.5, 0.5 + (k + 0.5) * 0.5]
                np.testing.assert_allclose(c[i, j, k], expected)
    # every centre maps back to its own index and lies inside
    idx = g.point_to_index(c.reshape(-1, 3))
    np.testing.assert_array_equal(idx, np.stack(np.meshgrid(*[np.arange(d) for d in g.dims], indexing="ij"), -1)
                                  .reshape(-1, 3))
    assert g.contains(c.reshape(-1, 3)).all()


def test_contains_is_half_open():
    g = DEFAULT_GRID
    pts = np.array([g.origin, g.upper, [10.0, 0.0, 0.0], [-0.01, 0.0, 0.0]])
    np.testing.assert_array_equal(g.contains(pts), [True, False, True, False])


@pytest.mark.parametrize(
    "kwargs",
    [dict(voxel_size=0.0), dict(dims=(256, 256)), dict(dims=(256, 256, 31), scales=(1, 2)), dict(dims=(0, 1, 1))],
)
def test_invalid_grids_raise(kwargs):
    with pytest.raises(ValueError, match="VoxelGrid"):
        VoxelGrid(**kwargs)


def test_scaled_rejects_non_divisor():
    with pytest.raises(ValueError, match="factor 3"):
        DEFAULT_GRID.scaled(3)
