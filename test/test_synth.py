# Tests of the synthetic KITTI world (sgn_ros.data.synth): file layout and formats, determinism,
# the vectorised ray casting and voxel labelling against slow obvious versions, image <-> voxel
# consistency, and stereo matching on the rendered pair.
"""Tests for sgn_ros.data.synth."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SYNTH_FRAMES, SYNTH_SEED

from sgn_ros.data import kitti_io
from sgn_ros.data.synth import VOXEL_EVERY, SynthWorld, generate_sequence, render_view, voxelize_frame
from sgn_ros.data.synth.render import GROUND, NO_HIT, cast_ground, intersect_primitive
from sgn_ros.data.synth.voxelize import label_voxels
from sgn_ros.data.synth.world import (
    BOX,
    CYLINDER,
    ELLIPSOID,
    KERB_HEIGHT,
    RAW,
    Primitives,
    RoadFrame,
    kitti_calibration,
    rot_z,
)
from sgn_ros.grid import DEFAULT_GRID, VoxelGrid
from sgn_ros.labels import load_label_set

SMALL = (94, 310)  # (H, W) for the cheap determinism runs


def _files(seq_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(seq_dir)): p.read_bytes() for p in sorted(seq_dir.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- layout and formats
def test_layout_and_formats(synthetic_root: Path) -> None:
    seq = synthetic_root / "dataset" / "sequences" / "00"
    calib = kitti_io.read_calib(seq / "calib.txt")
    fx = calib["P2"][0, 0]
    assert fx == pytest.approx(718.856)
    assert calib["P2"][0, 2] == pytest.approx(607.1928) and calib["P2"][1, 2] == pytest.approx(185.2157)
    assert (calib["P2"][0, 3] - calib["P3"][0, 3]) / fx == pytest.approx(0.54)  # colour baseline
    assert calib["P2"][0, 3] == pytest.approx(fx * 0.06)  # cam2 0.06 m left of cam0
    # Tr: x_cam = -y_lidar, y_cam = -z_lidar, z_cam = x_lidar
    np.testing.assert_allclose(calib["Tr"][:3, :3], [[0, -1, 0], [0, 0, -1], [1, 0, 0]])
    assert np.abs(calib["Tr"][:3, 3]).max() < 0.5
    poses = kitti_io.read_poses(seq / "poses.txt")
    times = kitti_io.read_times(seq / "times.txt")
    assert poses.shape == (SYNTH_FRAMES, 4, 4) and times.shape == (SYNTH_FRAMES,)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-9)
    np.testing.assert_allclose(np.diff(times), 0.1, atol=1e-6)
    # cam0 moves forward along its +z axis (KITTI camera convention) at the world's speed
    world = SynthWorld.generate(SYNTH_SEED, SYNTH_FRAMES)
    assert poses[-1, 2, 3] == pytest.approx(world.speed * 0.1 * (SYNTH_FRAMES - 1), rel=0.02)
    # LiDAR poses via inv(Tr) @ pose @ Tr match the world's relative LiDAR motion
    lid = kitti_io.lidar_poses(poses, calib["Tr"])
    rel = np.linalg.inv(world.lidar_pose(0)) @ world.lidar_pose(SYNTH_FRAMES - 1)
    np.testing.assert_allclose(lid[-1], rel, atol=1e-6)
    for i in range(SYNTH_FRAMES):
        for cam in ("image_2", "image_3"):
            img = cv2.imread(str(seq / cam / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
            assert img.shape == (376, 1241, 3) and img.dtype == np.uint8
        depth = np.load(seq / "depth" / f"{i:06d}.npy")
        assert depth.shape == (376, 1241) and depth.dtype == np.float32
        assert (depth >= 0).all() and 0.3 < (depth > 0).mean() <= 1.0
    voxel_frames = sorted(p.stem for p in (seq / "voxels").glob("*.label"))
    assert voxel_frames == [f"{i:06d}" for i in range(0, SYNTH_FRAMES, VOXEL_EVERY)]
    label_set = load_label_set("semantickitti")
    dims = DEFAULT_GRID.dims
    for name in voxel_frames:
        base = seq / "voxels" / name
        assert (base.with_suffix(".label")).stat().st_size == 256 * 256 * 32 * 2
        for ext in (".invalid", ".occluded", ".bin"):
            assert (base.with_suffix(ext)).stat().st_size == 256 * 256 * 32 // 8
        label = kitti_io.read_label(base.with_suffix(".label"), dims)
        invalid = kitti_io.read_bitpacked(base.with_suffix(".invalid"), dims)
        occluded = kitti_io.read_bitpacked(base.with_suffix(".occluded"), dims)
        occupancy = kitti_io.read_bitpacked(base.with_suffix(".bin"), dims)
        raws = set(np.unique(label).tolist())
        assert raws <= {0, *RAW.values()}
        train = label_set.to_train_ids(label)
        assert (train != 255).all()
        for cls in ("road", "sidewalk", "building", "vegetation"):
            assert (train == label_set.names.index(cls)).sum() > 200, cls
        assert not (label[invalid] != 0).any()  # invalid voxels carry no label, as in SemanticKITTI
        assert 0.05 < invalid.mean() < 0.95 and 0 < occluded.mean() < 0.5
        assert not (occluded & invalid).any()
        # the single scan sees mostly labelled surfaces (or the ground below them)
        assert occupancy.sum() > 2000
        scan_on_label = (label[occupancy] != 0).mean()
        assert scan_on_label > 0.6


def test_classes_present() -> None:
    """Across a few seeds the street shows every class the world can make."""
    seen: set[int] = set()
    for seed in range(4):
        w = SynthWorld.generate(seed, 20)
        seen |= set(np.unique(w.scene_at(0.0).raw).tolist())
        s = np.linspace(-20, 80, 400)
        d = np.linspace(-15, 15, 300)
        ss, dd = np.meshgrid(s, d)
        x, y, _ = w.road.to_world(ss, dd)
        seen |= set(np.unique(w.ground(x, y)[1]).tolist())
    assert set(RAW.values()) <= seen, set(RAW.values()) - seen


# --------------------------------------------------------------------------- determinism and CLI
def test_determinism_and_cli(tmp_path: Path) -> None:
    from sgn_ros.cli import main

    a = generate_sequence(tmp_path / "a", frames=1, seed=11, depth=True, image_size=SMALL)
    assert main(["synth", "--out", str(tmp_path / "b"), "--frames", "1", "--seed", "11", "--depth",
                 "--image-size", str(SMALL[0]), str(SMALL[1])]) == 0
    c = generate_sequence(tmp_path / "c", frames=1, seed=12, depth=True, image_size=SMALL)
    fa, fb, fc = _files(a), _files(tmp_path / "b" / "dataset" / "sequences" / "00"), _files(c)
    assert sorted(fa) == sorted(fb) == sorted(fc)
    assert "depth/000000.npy" in fa and "voxels/000000.label" in fa
    for name in fa:
        assert fa[name] == fb[name], f"{name} differs for the same seed"
    differs = [n for n in fa if fa[n] != fc[n]]
    assert {"image_2/000000.png", "image_3/000000.png", "voxels/000000.label"} <= set(differs)
    img = cv2.imread(str(a / "image_2" / "000000.png"))
    assert img.shape == (*SMALL, 3)
    calib = kitti_io.read_calib(a / "calib.txt")
    assert calib["P2"][0, 0] == pytest.approx(718.856 * SMALL[1] / 1241)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frames"):
        generate_sequence(tmp_path, frames=0)
    with pytest.raises(ValueError, match="sequence"):
        generate_sequence(tmp_path, sequence="ab", frames=1)
    with pytest.raises(ValueError, match="camera"):
        render_view(SynthWorld.generate(0, 1), 0, camera="P9")


# --------------------------------------------------------------------------- vectorised vs slow
def _inside(prims: Primitives, i: int, p: np.ndarray) -> np.ndarray:
    """Membership of points p (K, 3) in primitive i, straight from its definition."""
    q = (p - prims.center[i]) @ prims.rot[i]
    h = prims.half[i]
    if prims.kind[i] == BOX:
        return np.all(np.abs(q) <= h, axis=1)
    if prims.kind[i] == CYLINDER:
        return (q[:, 0] ** 2 + q[:, 1] ** 2 <= h[0] ** 2) & (np.abs(q[:, 2]) <= h[2])
    return ((q / h) ** 2).sum(axis=1) <= 1.0


def test_ray_primitive_against_marching() -> None:
    """Analytic ray entry vs. stepping along each ray until the first point inside."""
    rng = np.random.default_rng(0)
    tilt = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
    prims = Primitives(
        kind=np.array([BOX, CYLINDER, ELLIPSOID, CYLINDER], np.int8),
        center=np.array([[6.0, 0.5, 0.2], [5.0, -1.0, 0.0], [7.0, 1.0, 1.0], [4.0, 0.0, -0.5]]),
        rot=np.stack([rot_z(0.4), rot_z(-0.3), rot_z(1.0), tilt @ rot_z(0.2)]),
        half=np.array([[1.0, 0.6, 0.8], [0.5, 0.5, 1.2], [1.5, 0.7, 0.9], [0.4, 0.4, 0.3]]),
        raw=np.array([50, 80, 70, 10], np.uint16), color=np.ones((4, 3)), material=np.zeros(4, np.int8),
        seed=np.arange(4))
    origin = np.array([0.0, 0.0, 0.3])
    step = 0.004
    ts = np.arange(0, 12, step)
    for i in range(len(prims)):
        dirs = prims.center[i] + rng.uniform(-1.0, 1.0, (60, 3)) * prims.bounding_radius()[i] - origin
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        t = intersect_primitive(prims, i, origin, dirs)
        assert 10 <= np.isfinite(t).sum() < len(t), i  # both hits and misses are exercised
        for j in range(len(dirs)):
            inside = np.flatnonzero(_inside(prims, i, origin + ts[:, None] * dirs[j]))
            if not len(inside):
                assert not np.isfinite(t[j]) or t[j] > 11.9 or _grazing(prims, i, origin, dirs[j], t[j]), (i, j)
            else:
                assert t[j] == pytest.approx(ts[inside[0]], abs=2 * step), (i, j)


def _grazing(prims: Primitives, i: int, origin: np.ndarray, d: np.ndarray, t: float) -> bool:
    """A hit the marcher can miss: the ray only touches the surface (chord shorter than a step)."""
    fine = np.arange(t, t + 0.01, 0.0002)
    return bool(_inside(prims, i, origin + fine[:, None] * d).any())


def _ground_height(world: SynthWorld, p: np.ndarray) -> float:
    h, _ = world.ground(np.array([p[0]]), np.array([p[1]]))
    return float(h[0])


def test_ground_cast_against_marching() -> None:
    world = SynthWorld.generate(5, 10)
    origin = world.lidar_pose(0)[:3, 3]
    rng = np.random.default_rng(1)
    az = rng.uniform(-1.2, 1.2, 200)
    el = rng.uniform(-0.5, -0.04, 200)
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=1)
    dirs = dirs @ world.lidar_pose(0)[:3, :3].T
    t, raw, _ = cast_ground(world, origin, dirs)
    ts = np.arange(0, 60, 0.005)
    kerb_hits = 0
    for j in range(len(dirs)):
        pts = origin + ts[:, None] * dirs[j]
        h, _ = world.ground(pts[:, 0], pts[:, 1])
        below = np.flatnonzero(pts[:, 2] <= h)
        if not len(below):
            assert not np.isfinite(t[j])
            continue
        t_ref = ts[below[0]]
        # a kerb hit is interpolated in |d|; exact for a straight road, within a few cm on a curve
        assert t[j] == pytest.approx(t_ref, abs=0.06), j
        p = origin + t_ref * dirs[j]
        if abs(p[2] - KERB_HEIGHT / 2) < KERB_HEIGHT / 2 - 0.01:
            kerb_hits += 1
            assert raw[j] == RAW["sidewalk"]
        else:
            _, r = world.ground(np.array([p[0]]), np.array([p[1]]))
            if abs(t[j] - t_ref) < 0.01:
                assert raw[j] == r[0]


def test_label_voxels_against_loop() -> None:
    """Vectorised voxel labelling vs. a per-voxel loop over primitives and the ground rule."""
    world = SynthWorld.generate(2, 10)
    prims = world.scene_at(0.0)
    pose = world.lidar_pose(0)
    # a small grid around the first parked car / pole / tree found ahead of the ego vehicle
    local = (prims.center - pose[:3, 3]) @ pose[:3, :3]
    ahead = np.flatnonzero((local[:, 0] > 5) & (local[:, 0] < 40) & (np.abs(local[:, 1]) < 12)
                           & np.isin(prims.raw, [RAW["car"], RAW["pole"], RAW["trunk"], RAW["traffic-sign"]]))
    assert len(ahead)
    c = local[ahead[0]]
    grid = VoxelGrid(origin=(c[0] - 1.6, c[1] - 1.6, -2.0), voxel_size=0.2, dims=(16, 16, 20), scales=(1,))
    label, ground_k, _ = label_voxels(world, prims, pose, grid)
    centres = grid.voxel_centers()
    ref = np.zeros(grid.dims, np.uint16)
    vs = grid.voxel_size
    # only primitives whose bounding sphere reaches the small grid can label it
    mid = pose[:3, :3] @ (np.asarray(grid.origin) + np.asarray(grid.extent) / 2) + pose[:3, 3]
    near = [i for i in range(len(prims))
            if np.linalg.norm(prims.center[i] - mid) <= prims.bounding_radius()[i] + np.linalg.norm(grid.extent)]
    for ix in range(grid.dims[0]):
        for iy in range(grid.dims[1]):
            pw = pose[:3, :3] @ centres[ix, iy, 0] + pose[:3, 3]
            h, graw = world.ground(np.array([pw[0]]), np.array([pw[1]]))
            for iz in range(grid.dims[2]):
                zc = centres[ix, iy, iz, 2] + pose[2, 3]  # world height of the voxel centre
                if zc - vs / 2 <= h[0] < zc + vs / 2:
                    ref[ix, iy, iz] = graw[0]
                p = pose[:3, :3] @ centres[ix, iy, iz] + pose[:3, 3]
                for i in near:
                    q = (p - prims.center[i]) @ prims.rot[i]
                    half = np.maximum(prims.half[i], vs / 2)
                    if prims.kind[i] == BOX:
                        inside = np.all(np.abs(q) <= half)
                    elif prims.kind[i] == CYLINDER:
                        r = max(prims.half[i, 0], 0.6 * vs)
                        inside = q[0] ** 2 + q[1] ** 2 <= r * r and abs(q[2]) <= half[2]
                    else:
                        inside = ((q / half) ** 2).sum() <= 1
                    if inside:
                        ref[ix, iy, iz] = prims.raw[i]
    np.testing.assert_array_equal(label, ref)
    assert (label != 0).sum() > 50


def test_road_frame_round_trip() -> None:
    rng = np.random.default_rng(3)
    s, d = rng.uniform(-50, 150, 500), rng.uniform(-25, 25, 500)
    for k in (0.0, 1 / 300, -1 / 250):
        road = RoadFrame(k)
        x, y, th = road.to_world(s, d)
        s2, d2 = road.to_road(x, y)
        np.testing.assert_allclose(s2, s, atol=1e-8)
        np.testing.assert_allclose(d2, d, atol=1e-8)
        # heading is the tangent of the centre line
        x2, y2, _ = road.to_world(s + 1e-4, d * 0)
        x1, y1, _ = road.to_world(s, d * 0)
        np.testing.assert_allclose(np.arctan2(y2 - y1, x2 - x1), th, atol=1e-5)


# --------------------------------------------------------------------------- images vs. voxels
def test_image_voxel_consistency(synthetic_root: Path) -> None:
    """Labelled voxels that the left camera sees project onto pixels rendered from the same class."""
    seq = synthetic_root / "dataset" / "sequences" / "00"
    calib = kitti_io.read_calib(seq / "calib.txt")
    world = SynthWorld.generate(SYNTH_SEED, SYNTH_FRAMES)
    label_set = load_label_set("semantickitti")
    for frame in (0, 5):
        label = kitti_io.read_label(seq / "voxels" / f"{frame:06d}.label", DEFAULT_GRID.dims)
        view = render_view(world, frame, "P2")
        np.testing.assert_array_equal(view.depth, np.load(seq / "depth" / f"{frame:06d}.npy"))
        xyz = np.stack(np.nonzero(label), axis=1)
        centres = np.asarray(DEFAULT_GRID.origin) + (xyz + 0.5) * DEFAULT_GRID.voxel_size
        uvw = np.c_[centres, np.ones(len(centres))] @ (calib["P2"] @ calib["Tr"]).T
        z = uvw[:, 2]
        front = z > 1.0
        u = np.rint(uvw[front, 0] / z[front]).astype(int)
        v = np.rint(uvw[front, 1] / z[front]).astype(int)
        inimg = (u >= 0) & (u < 1241) & (v >= 0) & (v < 376)
        vox_cls = label_set.to_train_ids(label[tuple(xyz[front][inimg].T)])
        u, v, zf = u[inimg], v[inimg], z[front][inimg]
        depth = view.depth[v, u]
        visible = np.abs(depth - zf) < 0.25
        pix_cls = label_set.to_train_ids(view.raw[v[visible], u[visible]])
        agree = (pix_cls == vox_cls[visible]).mean()
        assert visible.sum() > 3000
        print(f"frame {frame}: {agree:.3f} of {visible.sum()} camera-visible labelled voxels match their pixel's class")
        assert agree > 0.9, f"frame {frame}: only {agree:.3f} of visible voxels match their pixel's class"
        # every class rendered over a sizeable area also appears in the voxels
        shown = np.unique(label_set.to_train_ids(view.raw[view.index != NO_HIT]))
        assert set(shown.tolist()) - set(np.unique(vox_cls).tolist()) <= {label_set.names.index("pole"),
                                                                           label_set.names.index("traffic-sign")}
        assert (view.index == GROUND).mean() > 0.2


def test_stereo_sgbm_matches_rendered_depth(synthetic_root: Path) -> None:
    seq = synthetic_root / "dataset" / "sequences" / "00"
    calib = kitti_io.read_calib(seq / "calib.txt")
    fx = calib["P2"][0, 0]
    baseline = (calib["P2"][0, 3] - calib["P3"][0, 3]) / fx
    left = cv2.imread(str(seq / "image_2" / "000005.png"), cv2.IMREAD_GRAYSCALE)
    right = cv2.imread(str(seq / "image_3" / "000005.png"), cv2.IMREAD_GRAYSCALE)
    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=128, blockSize=5, P1=8 * 25, P2=32 * 25,
                                 uniquenessRatio=10, speckleWindowSize=100, speckleRange=2)
    disp = sgbm.compute(left, right).astype(np.float32) / 16.0
    gt = np.load(seq / "depth" / "000005.npy")
    ok = (disp > 1.0) & (gt > 2.0) & (gt < 40.0)
    ok[:, :140] = False  # no match possible left of the largest disparity searched
    est = fx * baseline / disp[ok]
    rel = np.abs(est - gt[ok]) / gt[ok]
    assert ok.mean() > 0.3
    med, within = float(np.median(rel)), float((rel < 0.05).mean())
    print(f"StereoSGBM vs rendered depth: median rel. error {med:.4f}, {within:.3f} within 5 %, "
          f"{ok.mean():.3f} of pixels")
    assert med < 0.03 and within > 0.8


def test_speed_per_frame() -> None:
    """Seconds per frame at 1241 x 376 (two cameras + depth; voxel files every 5th frame), printed."""
    world = SynthWorld.generate(4, 5)
    calib = kitti_calibration()
    assert calib["P2"].shape == (3, 4)
    start = time.perf_counter()
    cpu = time.process_time()
    render_view(world, 1, "P2")
    render_view(world, 1, "P3")
    cam = time.perf_counter() - start
    cpu_cam = time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    voxelize_frame(world, 0)
    vox = time.perf_counter() - start
    cpu_vox = time.process_time() - cpu
    per_frame = cam + vox / VOXEL_EVERY
    print(f"synth: cameras {cam:.2f} s (cpu {cpu_cam:.2f}), voxels {vox:.2f} s (cpu {cpu_vox:.2f}) -> "
          f"{per_frame:.2f} s per frame (cpu {cpu_cam + cpu_vox / VOXEL_EVERY:.2f})")
    assert per_frame < 30.0
