"""Tests of sgn_ros.data.kitti_io: round trips of every format and errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest

from sgn_ros.data import kitti_io
from sgn_ros.data.kitti_io import DataFormatError

DIMS = (8, 4, 2)


def _calib() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {f"P{i}": rng.normal(size=(3, 4)) for i in range(4)}
    out["Tr"] = np.vstack([rng.normal(size=(3, 4)), [0, 0, 0, 1]])
    return out


def test_calib_round_trip(tmp_path) -> None:
    calib = _calib()
    path = tmp_path / "calib.txt"
    kitti_io.write_calib(path, calib)
    back = kitti_io.read_calib(path)
    for k in ("P0", "P1", "P2", "P3"):
        np.testing.assert_allclose(back[k], calib[k], rtol=1e-11)
    assert back["Tr"].shape == (4, 4)
    np.testing.assert_allclose(back["Tr"], calib["Tr"], rtol=1e-11)


def test_calib_errors_name_file_and_key(tmp_path) -> None:
    path = tmp_path / "calib.txt"
    path.write_text("P0: " + " ".join(["1"] * 12) + "\nP2: " + " ".join(["1"] * 12) + "\n")
    with pytest.raises(DataFormatError, match=r"calib\.txt: missing calibration key\(s\) \['Tr'\]"):
        kitti_io.read_calib(path)
    path.write_text("P2: 1 2 3\n")
    with pytest.raises(DataFormatError, match=r"calib\.txt:1: 'P2' needs 12 numbers, got 3"):
        kitti_io.read_calib(path)
    path.write_text("no colon here\n")
    with pytest.raises(DataFormatError, match=r"calib\.txt:1"):
        kitti_io.read_calib(path)
    with pytest.raises(FileNotFoundError, match=r"missing dataset file: .*nothere\.txt"):
        kitti_io.read_calib(tmp_path / "nothere.txt")
    with pytest.raises(ValueError, match="missing key 'P3'"):
        kitti_io.write_calib(tmp_path / "c2.txt", {k: v for k, v in _calib().items() if k != "P3"})


def test_poses_times_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(1)
    poses = np.tile(np.eye(4), (5, 1, 1))
    poses[:, :3, :] = rng.normal(size=(5, 3, 4))
    kitti_io.write_poses(tmp_path / "poses.txt", poses)
    np.testing.assert_allclose(kitti_io.read_poses(tmp_path / "poses.txt"), poses, rtol=1e-11)
    times = np.arange(5) * 0.1037
    kitti_io.write_times(tmp_path / "times.txt", times)
    np.testing.assert_allclose(kitti_io.read_times(tmp_path / "times.txt"), times, rtol=1e-6)
    (tmp_path / "bad.txt").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt: each pose line needs 12 numbers, got 3"):
        kitti_io.read_poses(tmp_path / "bad.txt")
    # LiDAR poses: inv(Tr) @ pose @ Tr
    tr = _calib()["Tr"]
    lp = kitti_io.lidar_poses(poses, tr)
    np.testing.assert_allclose(lp[2], np.linalg.inv(tr) @ poses[2] @ tr)


def test_voxel_files_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 260, DIMS).astype(np.uint16)
    kitti_io.write_label(tmp_path / "a.label", labels)
    assert (tmp_path / "a.label").stat().st_size == 2 * labels.size
    np.testing.assert_array_equal(kitti_io.read_label(tmp_path / "a.label", DIMS), labels)
    mask = rng.random(DIMS) < 0.5
    kitti_io.write_bitpacked(tmp_path / "a.invalid", mask)
    assert (tmp_path / "a.invalid").stat().st_size == mask.size // 8
    np.testing.assert_array_equal(kitti_io.read_bitpacked(tmp_path / "a.invalid", DIMS), mask)
    # most significant bit first: voxel 0 is bit 7 of byte 0
    one = np.zeros(DIMS, bool)
    one.reshape(-1)[0] = True
    assert kitti_io.pack_bits(one)[0] == 0x80
    one.reshape(-1)[0], one.reshape(-1)[7] = False, True
    assert kitti_io.pack_bits(one)[0] == 0x01


def test_truncated_voxel_files_name_sizes(tmp_path) -> None:
    (tmp_path / "t.label").write_bytes(b"\0" * 10)
    with pytest.raises(DataFormatError, match=r"t\.label: expected 128 bytes \(64 x uint16\), got 10"):
        kitti_io.read_label(tmp_path / "t.label", DIMS)
    (tmp_path / "t.invalid").write_bytes(b"\0" * 3)
    with pytest.raises(DataFormatError, match=r"t\.invalid: expected 8 bytes .* got 3"):
        kitti_io.read_bitpacked(tmp_path / "t.invalid", DIMS)
    with pytest.raises(FileNotFoundError, match=r"missing dataset file: .*none\.label"):
        kitti_io.read_label(tmp_path / "none.label", DIMS)


def test_points_round_trip_and_errors(tmp_path) -> None:
    pts = np.random.default_rng(3).normal(size=(7, 3)).astype(np.float32)
    kitti_io.write_points(tmp_path / "p.bin", pts)
    back = kitti_io.read_points(tmp_path / "p.bin")
    assert back.shape == (7, 4)
    np.testing.assert_array_equal(back[:, :3], pts)
    np.testing.assert_array_equal(back[:, 3], 1)
    (tmp_path / "q.bin").write_bytes(b"\0" * 20)
    with pytest.raises(DataFormatError, match=r"q\.bin: size 20 bytes is not a multiple of 16"):
        kitti_io.read_points(tmp_path / "q.bin")
    with pytest.raises(ValueError, match=r"expected \(N, 3\) or \(N, 4\)"):
        kitti_io.write_points(tmp_path / "r.bin", np.zeros((2, 5)))
