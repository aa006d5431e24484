"""Tests of sgn_ros.data.preprocess: depth -> pseudo-LiDAR against the reference's formula, the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from sgn_ros.cli import main as cli_main
from sgn_ros.data import kitti_io
from sgn_ros.data.preprocess import depth_map_to_lidar

P2 = np.array([[718.856, 0, 607.1928, 45.38225], [0, 718.856, 185.2157, -0.1130887], [0, 0, 1, 0.003779761]])
TR = np.array(
    [
        [4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02],
        [-7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02],
        [9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01],
        [0, 0, 0, 1],
    ]
)


def reference_style_cloud(depth: np.ndarray, max_high: float) -> np.ndarray:
    """Pixel by pixel: rectified camera point with P2's offsets, then the rigid inverse of Tr."""
    fu, fv, cu, cv = P2[0, 0], P2[1, 1], P2[0, 2], P2[1, 2]
    bx, by = P2[0, 3] / -fu, P2[1, 3] / -fv
    r, t = TR[:3, :3], TR[:3, 3]
    out = []
    for row in range(depth.shape[0]):
        for col in range(depth.shape[1]):
            d = depth[row, col]
            if d < 0 or not np.isfinite(d):
                continue
            cam = np.array([(col - cu) * d / fu + bx, (row - cv) * d / fv + by, d])
            velo = r.T @ cam - r.T @ t
            if velo[0] >= 0 and velo[2] < max_high:
                out.append(velo)
    return np.array(out)


def test_depth_to_lidar_matches_reference_formula() -> None:
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 60, (12, 20)).astype(np.float32)
    depth[0, :5] = 0  # no depth
    calib = {"P2": P2, "Tr": TR}
    max_high = 1.0  # metres of LiDAR height: low enough to cut some points
    cloud = depth_map_to_lidar(depth, calib, max_high)
    ref = reference_style_cloud(depth, max_high)
    assert cloud.shape == (len(ref), 4) and cloud.dtype == np.float32
    np.testing.assert_allclose(cloud[:, :3], ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(cloud[:, 3], 1)
    assert len(ref) < depth.size - 5  # the height limit removed some points


def test_depth_zero_pixels_stay_at_the_camera_like_the_reference() -> None:
    """The reference back-projects every pixel: depth 0 gives the camera's own position, kept."""
    depth = np.full((4, 6), 8.0, np.float32)
    depth[1, 2] = 0.0
    depth[3, 5] = 0.0
    depth[2, 0] = np.nan  # dropped by both (NaN fails the reference's x >= 0 test)
    cloud = depth_map_to_lidar(depth, {"P2": P2, "Tr": TR})
    ref = reference_style_cloud(depth, 80.0)
    assert len(cloud) == len(ref) == 23
    np.testing.assert_allclose(cloud[:, :3], ref, rtol=1e-6, atol=1e-5)
    camera = np.linalg.inv(TR) @ np.array([P2[0, 3] / -P2[0, 0], P2[1, 3] / -P2[1, 1], 0.0, 1.0])
    # row-major order: pixel (1, 2) is the 9th point, (3, 5) the last (NaN pixel (2, 0) is gone)
    np.testing.assert_allclose(cloud[8, :3], camera[:3], atol=1e-6)
    np.testing.assert_allclose(cloud[-1, :3], camera[:3], atol=1e-6)
    assert cloud[0, 0] > 7  # ordinary pixels still 8 m ahead


def test_depth_to_lidar_cli(tmp_path) -> None:
    root = tmp_path / "kitti"
    seq = root / "dataset" / "sequences" / "03"
    (seq / "image_2").mkdir(parents=True)
    kitti_io.write_calib(seq / "calib.txt", {"P0": P2, "P1": P2, "P2": P2, "P3": P2, "Tr": TR})
    ddir = root / "dataset" / "sequences_mydepth_depth" / "sequences" / "03"
    ddir.mkdir(parents=True)
    depth = np.full((6, 8), 10.0, np.float32)
    for f in range(3):
        np.save(ddir / f"{f:06d}.npy", depth * (f + 1))
    assert cli_main(["preprocess", "depth-to-lidar", "--root", str(root), "--tag", "mydepth", "--workers", "2"]) == 0
    out = root / "dataset" / "sequences_mydepth_lidar" / "sequences" / "03"
    assert sorted(p.name for p in out.iterdir()) == ["000000.bin", "000001.bin", "000002.bin"]
    pts = kitti_io.read_points(out / "000002.bin")
    np.testing.assert_allclose(pts, depth_map_to_lidar(depth * 3, {"P2": P2, "Tr": TR}), rtol=1e-6)
    assert 29 < pts[:, 0].mean() < 31  # 30 m ahead
    # a depth map of the wrong rank is named
    np.save(ddir / "000003.npy", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"000003\.npy: expected a depth map"):
        cli_main(["--debug", "preprocess", "depth-to-lidar", "--root", str(root), "--tag", "mydepth"])
    with pytest.raises(FileNotFoundError, match=r"sequences_other_depth/sequences/03"):
        cli_main(["--debug", "preprocess", "depth-to-lidar", "--root", str(root), "--tag", "other"])
    with pytest.raises(FileNotFoundError, match=r"nothing/dataset/sequences"):
        cli_main(["--debug", "preprocess", "labels", "--root", str(tmp_path / "nothing")])


def test_the_config_grid_is_used_by_synth_preprocess_and_evaluate(tmp_path, capsys) -> None:
    # regression: DEFAULT_GRID was used where cfg.grid belongs, so a grid.dims override disagreed with the labels
    import shutil
    from pathlib import Path

    from sgn_ros.config import load_config
    from sgn_ros.data.synth import generate_sequence

    tiny = Path(__file__).resolve().parent / "configs" / "sgn_tiny.yaml"
    grid = load_config(tiny).grid
    seq = generate_sequence(tmp_path, sequence="08", frames=1, seed=1, depth=False, image_size=(32, 96), grid=grid)
    label = seq / "voxels" / "000000.label"
    assert label.stat().st_size == 2 * grid.num_voxels
    assert cli_main(["preprocess", "labels", "--root", str(tmp_path), "--config", str(tiny)]) == 0
    full = np.load(tmp_path / "dataset" / "labels" / "08" / "000000_1_1.npy")
    assert full.size == grid.num_voxels
    preds = tmp_path / "pred" / "sequences" / "08" / "predictions"
    preds.mkdir(parents=True)
    shutil.copy(label, preds / label.name)
    args = ["evaluate", "--dataset", str(tmp_path), "--predictions", str(tmp_path / "pred"), "--split", "val"]
    assert cli_main([*args, "--config", str(tiny)]) == 0
    assert cli_main(args) == 2  # the default grid: the files are the wrong size, said in one line
    assert "expected 4194304 bytes" in capsys.readouterr().err
