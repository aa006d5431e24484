"""Tests of sgn_ros.data.stereo (StereoSGBM depth) and the `preprocess stereo-depth` step."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sgn_ros.cli import main as cli_main
from sgn_ros.data import kitti_io
from sgn_ros.data.stereo import disparity_sgbm, disparity_to_depth, stereo_baseline_focal, stereo_depth

# KITTI odometry sequence 00's colour cameras
P2 = np.array([[718.856, 0, 607.1928, 45.38225], [0, 718.856, 185.2157, -0.1130887], [0, 0, 1, 0.003779761]])
P3 = np.array([[718.856, 0, 607.1928, -337.2877], [0, 718.856, 185.2157, 2.369057], [0, 0, 1, 0.004915215]])


def test_baseline_and_focal_from_calibration() -> None:
    b, f = stereo_baseline_focal(P2, P3)
    assert f == 718.856
    assert b == pytest.approx((45.38225 + 337.2877) / 718.856)
    assert 0.53 < b < 0.54
    with pytest.raises(ValueError, match="non-positive baseline"):
        stereo_baseline_focal(P3, P2)


def test_disparity_to_depth() -> None:
    d = np.array([[0.0, -1.0, 10.0, 20.0]], np.float32)
    np.testing.assert_allclose(disparity_to_depth(d, 0.5, 700.0), [[0, 0, 35.0, 17.5]])


def test_sgbm_recovers_known_shift() -> None:
    # a textured fronto-parallel plane: the right image is the left shifted by 24 px
    rng = np.random.default_rng(0)
    tex = (rng.random((120, 400)) * 255).astype(np.uint8)
    tex = np.repeat(np.repeat(tex, 2, 0), 2, 1)[:200, :400]
    shift = 24
    left = tex[:, :-shift]
    right = tex[:, shift:]
    disp = disparity_sgbm(left, right)
    core = disp[20:-20, 220:-20]  # inside the image, past the search range
    assert np.median(core) == pytest.approx(shift, abs=0.5)
    depth = stereo_depth(np.stack([left] * 3, -1), np.stack([right] * 3, -1), P2, P3)
    b, f = stereo_baseline_focal(P2, P3)
    assert np.median(depth[20:-20, 220:-20]) == pytest.approx(b * f / shift, rel=0.02)
    with pytest.raises(ValueError, match="differ in size"):
        disparity_sgbm(left, right[:, :-1])


def test_stereo_depth_step_on_synthetic_pair(synthetic_root, tmp_path, capsys) -> None:
    """SGBM depth of the rendered pair agrees with the renderer's depth on most pixels."""
    src = synthetic_root / "dataset" / "sequences" / "00"
    dst = tmp_path / "kitti" / "dataset" / "sequences" / "00"
    for sub in ("image_2", "image_3"):
        (dst / sub).mkdir(parents=True)
        shutil.copy(src / sub / "000005.png", dst / sub / "000005.png")
    shutil.copy(src / "calib.txt", dst / "calib.txt")
    assert cli_main(["preprocess", "stereo-depth", "--root", str(tmp_path / "kitti"), "--tag", "sgbm"]) == 0
    out = tmp_path / "kitti" / "dataset" / "sequences_sgbm_depth" / "sequences" / "00" / "000005.npy"
    depth = np.load(out)
    rendered = np.load(src / "depth" / "000005.npy")
    assert depth.shape == rendered.shape and depth.dtype == np.float32
    ok = (depth > 0) & (rendered > 0) & (rendered < 30)
    assert ok.mean() > 0.3
    rel = np.abs(depth[ok] - rendered[ok]) / rendered[ok]
    assert np.median(rel) < 0.05
    # P3 missing from the calibration: named
    calib = kitti_io.read_calib(dst / "calib.txt")
    (dst / "calib.txt").write_text(
        "".join(f"{k}: " + " ".join(f"{v:.6e}" for v in calib[k][:3].reshape(-1)) + "\n" for k in ("P2", "Tr"))
    )
    capsys.readouterr()
    assert cli_main(["preprocess", "stereo-depth", "--root", str(tmp_path / "kitti")]) == 2  # a user error
    err = capsys.readouterr().err
    assert "calib.txt: missing calibration key 'P3'" in err and "Traceback" not in err
