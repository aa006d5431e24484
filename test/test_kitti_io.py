"""Tests of sgn_ros.data.kitti_io: round trips of every format and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sgn_ros.data import kitti_io
from sgn_ros.data.kitti_io import DataFormatError
from sgn_ros.errors import DataError

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
    with pytest.raises(DataFormatError, match=r"calib\.txt: line 1: 'P2' needs 12 numbers, got 3"):
        kitti_io.read_calib(path)
    path.write_text("no colon here\n")
    with pytest.raises(DataFormatError, match=r"calib\.txt: line 1"):
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


# --------------------------------------------------------------------------- broken-file corpus
def _png(path, h=8, w=12) -> bytes:
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def test_broken_files_are_named(tmp_path) -> None:
    """Every reader names the file and the problem: truncated PNG / npy, wrong-size bin, NaN in
    poses / calibration / times, missing files."""
    good = _png(tmp_path / "good.png")
    assert kitti_io.read_image(tmp_path / "good.png").shape == (8, 12, 3)
    assert kitti_io.check_image(tmp_path / "good.png", (8, 12)) == (8, 12)
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFormatError, match=r"cut\.png: unreadable image") as e:
        kitti_io.read_image(tmp_path / "cut.png")
    assert Path(e.value.path) == tmp_path / "cut.png" and isinstance(e.value, DataError)
    with pytest.raises(DataFormatError, match=r"cut\.png: truncated PNG"):
        kitti_io.check_image(tmp_path / "cut.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match=r"junk\.png: unreadable image"):
        kitti_io.read_image(tmp_path / "junk.png")
    with pytest.raises(DataFormatError, match=r"good\.png: image is 8x12, smaller than 9x12"):
        kitti_io.check_image(tmp_path / "good.png", (9, 12))

    np.save(tmp_path / "lab.npy", np.arange(64, dtype=np.float32))
    whole = (tmp_path / "lab.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(whole[:-10])
    for fn in (kitti_io.read_npy, kitti_io.check_npy):
        with pytest.raises(
            DataFormatError, match=r"cut\.npy: truncated \.npy: \(64,\) float32 needs 384 bytes, got 374"
        ):
            fn(tmp_path / "cut.npy")
    with pytest.raises(DataFormatError, match=r"cut\.npy: truncated"):
        kitti_io.read_label_npy(tmp_path / "cut.npy", (4, 4, 4))
    with pytest.raises(DataFormatError, match=r"lab\.npy: expected 27 values, got shape \(64,\)"):
        kitti_io.read_label_npy(tmp_path / "lab.npy", (3, 3, 3))
    (tmp_path / "head.npy").write_bytes(whole[:5])
    with pytest.raises(DataFormatError, match=r"head\.npy: not a \.npy file"):
        kitti_io.read_npy(tmp_path / "head.npy")

    (tmp_path / "p.bin").write_bytes(b"\0" * 36)
    with pytest.raises(DataFormatError, match=r"p\.bin: size 36 bytes is not a multiple of 16"):
        kitti_io.check_points(tmp_path / "p.bin")

    pose = np.eye(4)[None].repeat(3, 0)
    kitti_io.write_poses(tmp_path / "poses.txt", pose)
    text = (tmp_path / "poses.txt").read_text().splitlines()
    text[1] = text[1].replace(text[1].split()[3], "nan", 1)
    (tmp_path / "poses.txt").write_text("\n".join(text) + "\n")
    with pytest.raises(DataFormatError, match=r"poses\.txt: non-finite value \(NaN or inf\) in pose line 2"):
        kitti_io.read_poses(tmp_path / "poses.txt")
    (tmp_path / "p360.txt").write_text("0 " + " ".join(["1"] * 12) + "\n7 " + " ".join(["inf"] * 12) + "\n")
    with pytest.raises(DataFormatError, match=r"p360\.txt: non-finite value \(NaN or inf\) in pose line 2"):
        kitti_io.read_indexed_poses(tmp_path / "p360.txt")
    (tmp_path / "p360.txt").write_text("0.5 " + " ".join(["1"] * 12) + "\n")
    with pytest.raises(DataFormatError, match=r"p360\.txt: the first column must hold frame indices"):
        kitti_io.read_indexed_poses(tmp_path / "p360.txt")
    (tmp_path / "word.txt").write_text("1 2 x\n")
    with pytest.raises(DataFormatError, match=r"word\.txt: not a table of numbers"):
        kitti_io.read_poses(tmp_path / "word.txt")
    (tmp_path / "times.txt").write_text("0.0\nnan\n")
    with pytest.raises(DataFormatError, match=r"times\.txt: non-finite value .* time line 2"):
        kitti_io.read_times(tmp_path / "times.txt")

    calib = {k: np.arange(12.0).reshape(3, 4) for k in kitti_io.CALIB_KEYS}
    calib["P2"] = calib["P2"].copy()
    calib["P2"][1, 1] = np.nan
    kitti_io.write_calib(tmp_path / "calib.txt", calib)
    with pytest.raises(DataFormatError, match=r"calib\.txt: line 3: non-finite value \(NaN or inf\) in 'P2'") as e:
        kitti_io.read_calib(tmp_path / "calib.txt")
    assert Path(e.value.path) == tmp_path / "calib.txt"

    for fn in (kitti_io.read_image, kitti_io.read_npy, kitti_io.read_points, kitti_io.read_poses,
               kitti_io.read_indexed_poses, kitti_io.read_calib, kitti_io.read_times, kitti_io.check_image):
        with pytest.raises(FileNotFoundError, match=r"missing dataset file: .*absent\.x"):
            fn(tmp_path / "absent.x")


def test_label_npy_reads_float32_and_uint8(tmp_path) -> None:
    """Label files are interchangeable both ways: the reference's float32 and older uint8 files
    read to the same int64 ids; values that are not label ids are refused, naming the file."""
    ids = np.random.default_rng(1).choice([0, 1, 7, 19, 255], size=(4, 4, 2)).astype(np.uint8)
    np.save(tmp_path / "u8.npy", ids)
    np.save(tmp_path / "f32.npy", ids.astype(np.float32))
    a = kitti_io.read_label_npy(tmp_path / "u8.npy", (4, 4, 2))
    b = kitti_io.read_label_npy(tmp_path / "f32.npy", (4, 4, 2))
    assert a.dtype == b.dtype == np.int64
    np.testing.assert_array_equal(a, ids)
    np.testing.assert_array_equal(b, ids)
    np.save(tmp_path / "half.npy", np.full((4, 4, 2), 0.5, np.float32))
    with pytest.raises(DataFormatError, match=r"half\.npy: label values must be whole numbers"):
        kitti_io.read_label_npy(tmp_path / "half.npy", (4, 4, 2))
    np.save(tmp_path / "big.npy", np.full((4, 4, 2), 300, np.int32))
    with pytest.raises(DataFormatError, match=r"big\.npy: label values must lie in 0\.\.255"):
        kitti_io.read_label_npy(tmp_path / "big.npy", (4, 4, 2))
