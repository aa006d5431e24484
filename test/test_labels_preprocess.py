"""Tests of sgn_ros.data.labels_preprocess: completion remap, the 1/2-scale rule, the labels CLI."""

from __future__ import annotations

import numpy as np
import pytest

from sgn_ros.cli import main as cli_main
from sgn_ros.data import kitti_io
from sgn_ros.data.labels_preprocess import (
    completion_remap_lut,
    downsample_labels,
    full_scale_labels,
    preprocess_frame,
    remap_completion,
)
from sgn_ros.grid import DEFAULT_GRID
from sgn_ros.labels import load_label_set


def slow_downsample(label: np.ndarray, ds: int) -> np.ndarray:
    """The rule written out block by block (what the reference's loop does)."""
    out = np.zeros(tuple(d // ds for d in label.shape), np.uint8)
    for x in range(out.shape[0]):
        for y in range(out.shape[1]):
            for z in range(out.shape[2]):
                b = label[x * ds : (x + 1) * ds, y * ds : (y + 1) * ds, z * ds : (z + 1) * ds].reshape(-1)
                b = b.astype(np.int64)
                n0, n255 = int((b == 0).sum()), int((b == 255).sum())
                if n0 + n255 > 0.95 * ds**3:
                    out[x, y, z] = 0 if n0 > n255 else 255
                else:
                    out[x, y, z] = np.argmax(np.bincount(b[(b > 0) & (b < 255)]))
    return out


@pytest.mark.parametrize("empty_share", [0.2, 0.6, 0.9])
@pytest.mark.parametrize("factor", [2, 4])
def test_downsample_matches_slow_loop(empty_share: float, factor: int) -> None:
    rng = np.random.default_rng(int(empty_share * 10) + factor)
    values = np.array([0, 255, 1, 2, 9, 19])
    p = [empty_share / 2] * 2 + [(1 - empty_share) / 4] * 4
    label = rng.choice(values, size=(16, 12, 8), p=p).astype(np.uint8)
    np.testing.assert_array_equal(downsample_labels(label, factor), slow_downsample(label, factor))


def test_downsample_hand_examples() -> None:
    def block(values: list[int]) -> np.ndarray:
        return np.array(values, np.uint8).reshape(2, 2, 2)

    assert downsample_labels(block([0] * 8))[0, 0, 0] == 0
    assert downsample_labels(block([255] * 8))[0, 0, 0] == 255
    assert downsample_labels(block([0] * 4 + [255] * 4))[0, 0, 0] == 255  # tie -> unknown
    assert downsample_labels(block([0] * 5 + [255] * 3))[0, 0, 0] == 0
    assert downsample_labels(block([0] * 7 + [13]))[0, 0, 0] == 13  # 7 of 8 is not > 95 %
    assert downsample_labels(block([0] * 4 + [9, 9, 1, 1]))[0, 0, 0] == 1  # tie -> smallest id
    assert downsample_labels(block([255, 0, 9, 9, 9, 1, 1, 1]))[0, 0, 0] == 1
    assert downsample_labels(block([255, 0, 9, 9, 9, 1, 1, 5]))[0, 0, 0] == 9


def test_downsample_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="divisible"):
        downsample_labels(np.zeros((3, 4, 4), np.uint8))


def test_completion_remap() -> None:
    ls = load_label_set("semantickitti")
    lut = completion_remap_lut(ls)
    raw = np.array([0, 1, 10, 40, 52, 60, 99, 252, 259, 300])
    # raw 0 stays empty; every other id that learning_map sends to 0 (outlier, other-structure,
    # other-object, ids absent from the map) is unknown in completion
    np.testing.assert_array_equal(remap_completion(raw, lut), [0, 255, 1, 9, 255, 9, 255, 1, 5, 255])
    assert len(lut) == (len(ls.learning_map) - 1) + 100  # the largest raw id + 100, as the api
    with pytest.raises(ValueError, match="voxels/x.label"):
        remap_completion(np.array([len(lut)]), lut, where="voxels/x.label")
    inv = np.zeros((2, 2, 2), bool)
    inv[0, 0, 0] = True
    full = full_scale_labels(np.full((2, 2, 2), 10, np.uint16), inv, lut)
    assert full[0, 0, 0] == 255 and (full.reshape(-1)[1:] == 1).all()


def _write_voxel_frame(vdir, frame: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    raw_ids = np.array([0, 0, 0, 0, 1, 10, 40, 50, 52, 70, 72])
    raw = rng.choice(raw_ids, size=DEFAULT_GRID.dims).astype(np.uint16)
    invalid = rng.random(DEFAULT_GRID.dims) < 0.2
    kitti_io.write_label(vdir / f"{frame}.label", raw)
    kitti_io.write_bitpacked(vdir / f"{frame}.invalid", invalid)
    return raw, invalid


def test_preprocess_frame_and_cli(tmp_path) -> None:
    ls = load_label_set("semantickitti")
    rng = np.random.default_rng(0)
    root = tmp_path / "kitti"
    vdir = root / "dataset" / "sequences" / "04" / "voxels"
    vdir.mkdir(parents=True)
    frames = {f: _write_voxel_frame(vdir, f, rng) for f in ("000000", "000005")}
    raw, invalid = frames["000000"]
    out = preprocess_frame(vdir, "000000", tmp_path / "direct", ls, DEFAULT_GRID)
    full = np.load(out[0])
    half = np.load(out[1])
    assert full.shape == DEFAULT_GRID.dims and half.shape == DEFAULT_GRID.scaled(2).dims
    # the reference's dtypes: float32 full scale (its remap output), uint8 half scale (its
    # downsampling); its trainer derives class weights from these files and expects them
    assert full.dtype == np.float32 and half.dtype == np.uint8
    expected = completion_remap_lut(ls)[raw.astype(np.int64)]
    expected[invalid] = 255
    np.testing.assert_array_equal(full, expected)
    np.testing.assert_array_equal(half, downsample_labels(expected, 2))

    # the CLI writes the reference layout dataset/labels/SS/NNNNNN_1_{1,2}.npy, with workers
    assert cli_main(["preprocess", "labels", "--root", str(root), "--workers", "2"]) == 0
    for f in frames:
        for s in ("1_1", "1_2"):
            assert (root / "dataset" / "labels" / "04" / f"{f}_{s}.npy").is_file()
    np.testing.assert_array_equal(np.load(root / "dataset" / "labels" / "04" / "000000_1_2.npy"), half)


def test_preprocess_names_truncated_file(tmp_path) -> None:
    vdir = tmp_path / "voxels"
    vdir.mkdir()
    (vdir / "000000.label").write_bytes(b"\0" * 100)
    with pytest.raises(kitti_io.DataFormatError, match=r"000000\.label.*expected 4194304 bytes.*got 100"):
        preprocess_frame(vdir, "000000", tmp_path / "out", load_label_set("semantickitti"), DEFAULT_GRID)
