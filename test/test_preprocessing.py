# Tests of sgn_ros.model.preprocessing: crop / pad / resize with intrinsics, normalisation,
# depth -> pseudo-LiDAR back-projection (by hand and against a per-pixel loop).
import numpy as np
import pytest
import torch

from sgn_ros.grid import DEFAULT_GRID
from sgn_ros.model.preprocessing import (
    check_transform,
    crop_or_pad,
    depth_to_points,
    normalize_image,
    points_in_grid,
    resize_image,
)

K = np.array([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]])


def _project(K, p):
    uvw = K @ p
    return uvw[:2] / uvw[2]


def test_crop_or_pad_top_left():
    img = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    crop = crop_or_pad(img, (3, 4))
    assert crop.shape == (3, 4, 3) and np.array_equal(crop, img[:3, :4])
    pad = crop_or_pad(img, (6, 9), fill=9)
    assert pad.shape == (6, 9, 3)
    assert np.array_equal(pad[:5, :7], img) and np.all(pad[5:] == 9) and np.all(pad[:, 7:] == 9)
    mixed = crop_or_pad(img, (4, 8))
    assert np.array_equal(mixed[:, :7], img[:4]) and np.all(mixed[:, 7] == 0)
    with pytest.raises(ValueError, match="positive"):
        crop_or_pad(img, (0, 3))


def test_resize_scales_intrinsics():
    # a horizontal ramp I(u, v) = u is reproduced exactly by bilinear sampling inside the image,
    # so the resized image at K2's projection of a 3D point holds that point's original u.
    h, w = 20, 30
    ramp = np.repeat(np.arange(w, dtype=np.float32)[None, :, None], h, axis=0)
    Kc = np.array([[25.0, 0.0, 14.5], [0.0, 24.0, 9.5], [0.0, 0.0, 1.0]])
    out, K2 = resize_image(ramp, Kc, (40, 60))
    assert out.shape == (40, 60, 1)
    assert K2[0, 0] == pytest.approx(50.0) and K2[1, 1] == pytest.approx(48.0)
    # pixel-centre convention: cx' = (cx + 0.5) * s - 0.5
    assert K2[0, 2] == pytest.approx(15.0 * 2 - 0.5) and K2[1, 2] == pytest.approx(10.0 * 2 - 0.5)
    for p in ([0.5, 0.2, 4.0], [-1.0, 0.3, 5.0]):
        u, _ = _project(Kc, np.array(p))
        u2, v2 = _project(K2, np.array(p))
        # sample the output at integer pixels around (u2, v2) by linear interpolation along u
        lo = int(np.floor(u2))
        val = out[int(round(v2)), lo, 0] * (lo + 1 - u2) + out[int(round(v2)), lo + 1, 0] * (u2 - lo)
        assert val == pytest.approx(u, abs=1e-4)


def test_normalize_by_hand():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = (255, 0, 51)
    out = normalize_image(img, (0.5, 0.25, 0.2), (0.5, 0.25, 0.1))
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    assert out[:, 0, 0] == pytest.approx([1.0, -1.0, 0.0])
    assert out[:, 1, 2] == pytest.approx([-1.0, -1.0, -2.0])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        normalize_image(np.zeros((2, 3), np.uint8), (0, 0, 0), (1, 1, 1))


def test_depth_to_points_by_hand():
    depth = np.zeros((2, 3), np.float32)
    depth[0, 2] = 4.0  # u=2, v=0
    depth[1, 1] = 2.0  # u=1, v=1 (the principal point)
    depth[1, 0] = np.nan
    pts = depth_to_points(depth, K)
    assert pts.dtype == np.float32
    np.testing.assert_allclose(pts, [[(2 - 1) * 4 / 2, (0 - 1) * 4 / 2, 4.0], [0.0, 0.0, 2.0]])
    assert len(depth_to_points(depth, K, max_depth=3.0)) == 1
    # camera -> LiDAR: KITTI axes (x right, y down, z forward) -> (x forward, y left, z up), plus a shift
    cam_to_lidar = np.eye(4)
    cam_to_lidar[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
    cam_to_lidar[:3, 3] = [0.5, 0.0, -1.0]
    pts_l = depth_to_points(depth, K, cam_to_lidar)
    np.testing.assert_allclose(pts_l, [[4.0 + 0.5, -2.0, 2.0 - 1.0], [2.0 + 0.5, 0.0, -1.0]], atol=1e-6)


def test_depth_to_points_against_loop():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 30, (6, 8)).astype(np.float32)
    depth[2, 3] = 0
    Kc = np.array([[7.0, 0.0, 3.9], [0.0, 6.5, 2.7], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    c, s = np.cos(0.3), np.sin(0.3)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = [1.0, 2.0, 3.0]
    expected = []
    for v in range(6):
        for u in range(8):
            z = float(depth[v, u])
            if 0 < z <= 25:
                cam = np.linalg.inv(Kc) @ np.array([u, v, 1.0]) * z
                expected.append(T[:3, :3] @ cam + T[:3, 3])
    got = depth_to_points(depth, Kc, T, max_depth=25)
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"K: expected a 3x3"):
        depth_to_points(np.ones((2, 2)), np.eye(4))
    with pytest.raises(ValueError, match=r"depth map \(H, W\)"):
        depth_to_points(np.ones((2, 2, 1)), K)
    with pytest.raises(ValueError, match="cam_to_lidar.*orthonormal"):
        bad = np.eye(4)
        bad[0, 0] = 2
        depth_to_points(np.ones((2, 2)), K, bad)
    with pytest.raises(ValueError, match="4x4"):
        check_transform(np.eye(3))


def test_tensor_paths_match_numpy():
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 30, (5, 7)).astype(np.float32)
    depth[0, 0] = -1
    out_np = depth_to_points(depth, K)
    out_t = depth_to_points(torch.from_numpy(depth), K)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_array_equal(out_t.numpy(), out_np)
    grid = DEFAULT_GRID
    pts = rng.uniform(-60, 60, (500, 3)).astype(np.float32)
    pts[0] = (grid.origin[0], 0.0, grid.origin[2])  # lower bounds (exact in float32) are inside,
    pts[1] = (grid.upper[0], 0.0, 0.0)  # the upper bound is outside (half-open)
    mask = points_in_grid(torch.from_numpy(pts), grid).numpy()
    np.testing.assert_array_equal(mask, grid.contains(pts))
    assert mask[0] and not mask[1] and 0 < mask.sum() < len(pts)
