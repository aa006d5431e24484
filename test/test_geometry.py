# Tests of sgn_ros.geometry: crop / pad / resize with intrinsics, depth -> pseudo-LiDAR
# back-projection (by hand and against a per-pixel loop), rigid transforms and quaternions,
# camera offset / baseline from P, voxel centres and points in the grid, each against a slow
# obvious version.
import numpy as np
import pytest
import torch

from sgn_ros.geometry import (
    apply_transform,
    camera_offset_from_P,
    camera_translation_from_P,
    check_intrinsics,
    check_transform,
    crop_or_pad,
    depth_to_points,
    fit_image,
    fit_intrinsics,
    invert_transform,
    make_transform,
    matrix_to_quaternion,
    points_in_grid,
    quaternion_to_matrix,
    resize_image,
    stereo_baseline_from_P,
    voxel_centres,
    xyz_rpy_to_matrix,
)
from sgn_ros.grid import DEFAULT_GRID

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
    with pytest.raises(ValueError, match="cam_to_target.*orthonormal"):
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


# --------------------------------------------------------------------------- transforms
def _rot_axis(axis: int, a: float) -> np.ndarray:
    """Elementary rotation about x / y / z, written out by hand."""
    c, s = np.cos(a), np.sin(a)
    if axis == 0:
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == 1:
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_xyz_rpy_against_elementary_rotations():
    rng = np.random.default_rng(2)
    for _ in range(20):
        x, y, z, r, p, yaw = rng.uniform(-3, 3, 6)
        T = xyz_rpy_to_matrix([x, y, z, r, p, yaw])
        R = _rot_axis(2, yaw) @ _rot_axis(1, p) @ _rot_axis(0, r)
        np.testing.assert_allclose(T[:3, :3], R, atol=1e-12)
        np.testing.assert_allclose(T[:3, 3], [x, y, z])
        np.testing.assert_allclose(xyz_rpy_to_matrix(T.reshape(-1)), T)
    with pytest.raises(ValueError, match="6 values"):
        xyz_rpy_to_matrix([1.0, 2.0])


def test_quaternion_round_trip_and_hand_values():
    # 90 degrees about z: q = (0, 0, sin 45, cos 45)
    s = np.sqrt(0.5)
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, s, s]), _rot_axis(2, np.pi / 2), atol=1e-12)
    np.testing.assert_allclose(matrix_to_quaternion(_rot_axis(2, np.pi / 2)), [0, 0, s, s], atol=1e-12)
    rng = np.random.default_rng(3)
    for _ in range(50):  # every Shepperd branch is reached by random rotations incl. near-180 degree ones
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = quaternion_to_matrix(q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        q2 = np.array(matrix_to_quaternion(R))
        assert min(np.abs(q2 - q).max(), np.abs(q2 + q).max()) < 1e-9  # q and -q are one rotation
    for axis in range(3):  # 180 degrees: trace -1, the non-trace branches
        R = _rot_axis(axis, np.pi)
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-12)
    with pytest.raises(ValueError, match="quaternion"):
        quaternion_to_matrix([0, 0, 0, 0])


def test_make_invert_apply_against_homogeneous_products():
    rng = np.random.default_rng(4)
    T = make_transform(_rot_axis(0, 0.4) @ _rot_axis(2, -1.1), [1.0, -2.0, 0.5])
    pts = rng.uniform(-10, 10, (7, 3))
    hom = np.concatenate([pts, np.ones((7, 1))], axis=1)
    expected = np.array([(T @ h)[:3] for h in hom])
    np.testing.assert_allclose(apply_transform(T, pts), expected, atol=1e-12)
    np.testing.assert_allclose(invert_transform(T) @ T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(apply_transform(invert_transform(T), apply_transform(T, pts)), pts, atol=1e-12)
    # dtype follows the points; tensors stay tensors
    assert apply_transform(T, pts.astype(np.float32)).dtype == np.float32
    out_t = apply_transform(T, torch.from_numpy(pts.astype(np.float32)))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(make_transform(), np.eye(4))


# --------------------------------------------------------------------------- cameras
def test_camera_offset_and_baseline_from_P():
    Kc = np.array([[700.0, 0, 600], [0, 710.0, 180], [0, 0, 1]])
    t = np.array([0.06, -0.002, 0.003])
    P = Kc @ np.concatenate([np.eye(3), t[:, None]], axis=1)  # K [I | t]
    np.testing.assert_allclose(camera_offset_from_P(P), [t[0] + 600 * t[2] / 700, t[1] + 180 * t[2] / 710])
    np.testing.assert_allclose(camera_translation_from_P(P), t, atol=1e-15)
    P_left = np.concatenate([Kc, np.zeros((3, 1))], axis=1)
    P_right = P_left.copy()
    P_right[0, 3] = -700.0 * 0.54  # ROS: right camera P[0, 3] = -fx * B
    assert stereo_baseline_from_P(P_left, P_right) == pytest.approx(0.54)
    assert stereo_baseline_from_P(P_left.reshape(-1), P_right.reshape(-1)) == pytest.approx(0.54)  # CameraInfo.p
    with pytest.raises(ValueError, match="baseline"):
        stereo_baseline_from_P(P_right, P_left)
    with pytest.raises(ValueError, match="not set"):
        stereo_baseline_from_P(np.zeros((3, 4)), P_right)


def test_fit_image_modes():
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    out, K2 = fit_image(img, K, (8, 14), "crop")
    assert out.shape == (8, 14, 3) and np.array_equal(out[:, :12], img[:8]) and not out[:, 12:].any()
    np.testing.assert_array_equal(K2, K)
    out, K2 = fit_image(img, K, (5, 6), "resize")
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8
    assert K2[0, 0] == pytest.approx(1.0) and K2[1, 1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mode"):
        fit_image(img, K, (5, 6), "stretch")


NET = (370, 1220)


def _pinhole(h: int, w: int, f: float) -> np.ndarray:
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2 + 0.1 * h], [0, 0, 1.0]])


@pytest.mark.parametrize("focal", [None, 718.856])
@pytest.mark.parametrize("hw, f", [((720, 1280), 900.0), ((1080, 1920), 1400.0), ((480, 640), 500.0),
                                   ((300, 2000), 800.0), ((480, 640), 150.0)])
def test_fit_keeps_geometry_and_the_near_road(hw, f, focal):
    """`fit`: one scale for both axes (no uneven stretch) to the reference focal length (or, with
    none, the least covering the input), the network size exactly, K following the pixels (checked
    against a slow per-point mapping u' = (u + 0.5) s - 0.5 - left), the principal point
    FIT_HORIZON_SHARE of the rows from the top unless the image has too few rows above or below."""
    h, w = hw
    K0 = _pinhole(h, w, f)
    plan = fit_intrinsics(hw, K0, NET, "auto", focal)
    assert plan.mode == "fit" and plan.scaled_hw is not None
    hs, ws = plan.scaled_hw
    sy, sx = hs / h, ws / w
    assert abs(sy / sx - 1) < 2 / min(h, w)  # uniform up to rounding of the scaled size
    assert plan.K[0, 0] / plan.K[1, 1] == pytest.approx(K0[0, 0] / K0[1, 1], rel=2 / min(h, w))
    if focal is None:
        assert hs >= NET[0] and ws >= NET[1] and 0 <= plan.top <= hs - NET[0] and 0 <= plan.left <= ws - NET[1]
    else:
        assert plan.K[0, 0] == pytest.approx(focal, rel=2 / min(h, w))
        assert plan.left == (ws - NET[1]) // 2  # centred: cut or padded equally
    # slow version: project camera points with K0, map the pixel, compare with K_fit's projection
    rng = np.random.default_rng(0)
    X = np.stack([rng.uniform(-5, 5, 50), rng.uniform(-2, 2, 50), rng.uniform(2, 40, 50)], axis=1)
    for x in X:
        u, v = (K0 @ x)[:2] / x[2]
        expect = ((u + 0.5) * sx - 0.5 - plan.left, (v + 0.5) * sy - 0.5 - plan.top)
        np.testing.assert_allclose((plan.K @ x)[:2] / x[2], expect, atol=1e-9)
    # the horizon row: at the chosen share unless clamped at the image's top or bottom edge
    share_row = np.ceil(0.25 * NET[0])
    assert abs(plan.K[1, 2] - share_row) <= 1 or plan.top in (0, hs - NET[0])
    # pixels follow K: a smooth image's fitted pixel at K_fit's projection equals the source's
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (np.arange(w) * 255 // (w - 1))[None]
    img[..., 1] = (np.arange(h) * 255 // (h - 1))[:, None]
    out, K2 = fit_image(img, K0, NET, "auto", focal, fill=(1, 2, 3))
    assert out.shape == (*NET, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(K2, plan.K)
    for x in X[:10]:
        u0, v0 = np.rint((K0 @ x)[:2] / x[2]).astype(int)
        u1, v1 = np.rint((K2 @ x)[:2] / x[2]).astype(int)
        if 0 <= u0 < w and 0 <= v0 < h and 0 <= u1 < NET[1] and 0 <= v1 < NET[0]:
            assert np.all(np.abs(out[v1, u1, :2].astype(int) - img[v0, u0, :2]) <= 255 / min(h, w) * 2 + 2)
    r0, r1, c0, c1 = plan.box  # the network pixels showing the camera; the rest is fill
    assert (c0, c1) == (max(0, -plan.left), min(NET[1], ws - plan.left))
    assert (r0, r1) == (max(0, -plan.top), min(NET[0], hs - plan.top))
    if plan.left < 0:  # narrower than the network after scaling: padded with the fill colour
        assert np.all(out[:, 0] == (1, 2, 3)) and np.all(out[:, c1:] == (1, 2, 3))


def test_fit_auto_keeps_the_reference_crop_at_kitti_size():
    """The released checkpoints were trained on the top-left crop of KITTI images: `auto` keeps it
    bit for bit (K unchanged) for every KITTI size, and uses `fit` for any other camera."""
    rng = np.random.default_rng(1)
    for hw in ((376, 1241), (375, 1242), (370, 1226), (370, 1220)):
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        Kk = _pinhole(*hw, 718.0)
        out, K2 = fit_image(img, Kk, NET, "auto")
        np.testing.assert_array_equal(out, img[:370, :1220])
        np.testing.assert_array_equal(K2, Kk)
    assert fit_intrinsics((720, 1280), _pinhole(720, 1280, 900.0), NET).mode == "fit"
    assert fit_intrinsics((360, 1200), _pinhole(360, 1200, 700.0), NET).mode == "fit"  # smaller: scaled up
    with pytest.raises(ValueError, match="mode"):
        fit_intrinsics((720, 1280), _pinhole(720, 1280, 900.0), NET, "stretch")


@pytest.mark.parametrize("change, match", [
    ({(0, 0): 1e308}, "focal"), ({(0, 0): 1e-300}, "focal"), ({(1, 1): 1e-3}, "focal"),
    ({(0, 2): -1e6}, "principal"), ({(1, 2): 1e7}, "principal"), ({(0, 1): 1e5}, "skew"),
])
def test_intrinsics_plausible_for_the_image(change, match):
    Kk = _pinhole(376, 1241, 718.0)
    check_intrinsics(Kk, "K", (376, 1241))
    for (i, j), v in change.items():
        Kk[i, j] = v
    check_intrinsics(Kk, "K")  # finite and positive: only the size check can tell
    with pytest.raises(ValueError, match=match):
        check_intrinsics(Kk, "K", (376, 1241))


# --------------------------------------------------------------------------- voxels
def test_voxel_centres_against_loop():
    from sgn_ros.grid import VoxelGrid

    grid = VoxelGrid(origin=(1.0, -2.0, -0.5), voxel_size=0.4, dims=(3, 4, 2), scales=(1,))
    loop = np.array([[1.0 + 0.4 * (i + 0.5), -2.0 + 0.4 * (j + 0.5), -0.5 + 0.4 * (k + 0.5)]
                     for i in range(3) for j in range(4) for k in range(2)])
    np.testing.assert_allclose(grid.voxel_centers().reshape(-1, 3), loop, atol=1e-12)
    ijk = np.array([[0, 0, 0], [2, 3, 1], [1, 2, 0]])
    np.testing.assert_allclose(voxel_centres(grid, ijk), loop[ijk[:, 0] * 8 + ijk[:, 1] * 2 + ijk[:, 2]])
    all_t = voxel_centres(grid)
    assert isinstance(all_t, torch.Tensor) and all_t.dtype == torch.float32 and all_t.shape == (24, 3)
    np.testing.assert_allclose(all_t.numpy(), loop, atol=1e-6)
    np.testing.assert_array_equal(voxel_centres(grid, torch.from_numpy(ijk)).numpy(), all_t.numpy()[[0, 23, 12]])
    # points at the centres are inside; the upper faces are outside (half-open)
    assert points_in_grid(loop, grid).all()
    assert not points_in_grid(np.array([grid.upper]), grid).any()


def test_fit_image_computes_only_the_kept_window_with_the_same_pixels():
    """fit_image resizes only the window it keeps: equal, pixel for pixel, to the slow obvious
    version (resize_image of the whole image, round, then cut the window), for a camera scaled up
    (a small image with a short focal length) and one scaled down, with padding where it is short."""
    rng = np.random.default_rng(3)
    for hw, f in (((70, 200), 110.0), ((720, 1280), 900.0), ((200, 300), 150.0)):
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        K0 = _pinhole(*hw, f)
        plan = fit_intrinsics(hw, K0, NET, "fit", 707.0)
        out, K2 = fit_image(img, K0, NET, "fit", 707.0, fill=(9, 8, 7))
        scaled, _ = resize_image(img, K0, plan.scaled_hw)
        scaled = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        expect = np.empty((*NET, 3), np.uint8)
        expect[...] = (9, 8, 7)
        for r in range(NET[0]):
            y = r + plan.top
            if 0 <= y < plan.scaled_hw[0]:
                x0, x1 = max(plan.left, 0), min(plan.left + NET[1], plan.scaled_hw[1])
                expect[r, x0 - plan.left : x1 - plan.left] = scaled[y, x0:x1]
        np.testing.assert_array_equal(out, expect)
        np.testing.assert_array_equal(K2, plan.K)


def test_fit_image_of_a_tensor_equals_the_numpy_fit():
    """A torch image is fitted on its own device by the same taps and float64 arithmetic: equal to
    the NumPy result up to one grey level (fused multiply-adds may round differently), K
    identical, for the crop / pad rule, a scale-up and a scale-down with padding."""
    import torch

    rng = np.random.default_rng(4)
    cases = (((376, 1241), 718.0, "auto"), ((300, 1000), 718.0, "crop"), ((70, 200), 110.0, "fit"),
             ((720, 1280), 900.0, "fit"), ((200, 300), 150.0, "resize"))
    for hw, f, mode in cases:
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        K0 = _pinhole(*hw, f)
        ref, K_ref = fit_image(img, K0, NET, mode, 707.0, fill=(9, 8, 7))
        out, K_t = fit_image(torch.from_numpy(img), K0, NET, mode, 707.0, fill=(9, 8, 7))
        assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8 and tuple(out.shape) == (*NET, 3)
        np.testing.assert_array_equal(K_t, K_ref)
        diff = np.abs(out.numpy().astype(int) - ref.astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999, (hw, mode, diff.max(), (diff == 0).mean())
