"""Stereo input of SSCPredictor (sgn_ros.stereo.pair): a pair given to the predictor gives the
same points as the stereo depth computed separately and passed as depth, for sgm and sgbm, on a
small synthetic pair; msnet3d refuses without weights; bad stereo input is named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_predictor import _camera, _tiny_cfg

from sgn_ros.data.stereo import StereoParams, disparity_to_depth, stereo_depth
from sgn_ros.model.predictor import SSCPredictor
from sgn_ros.stereo.msnet import MSNetWeightsMissing
from sgn_ros.stereo.pair import StereoMatcher, StereoPair, as_stereo_pair
from sgn_ros.stereo.sgm import stereo_depth_sgm

H, W = 72, 180
BASELINE = 0.54
PARAMS = StereoParams(num_disparities=16, block_size=5)


@pytest.fixture(scope="module")
def pair():
    """Random texture; row bands at disparities 5..10 px (depth 0.54 * 80 / d = 4.3 .. 8.6 m)."""
    rng = np.random.default_rng(3)
    left = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    left = ((left.astype(np.uint16) + np.roll(left, 1, 1) + np.roll(left, 1, 0)) // 3).astype(np.uint8)
    right = np.empty_like(left)
    for v in range(H):
        right[v] = np.roll(left[v], -(5 + v * 6 // H), axis=0)  # right(x) = left(x + d)
    K, T = _camera(H, W)
    p2 = np.hstack([K, np.zeros((3, 1))])
    p3 = np.hstack([K, [[-K[0, 0] * BASELINE], [0.0], [0.0]]])
    return left, right, K, T, p2, p3


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the 2-core CI machine; and bit-repeatable forwards
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("method", ["sgm", "sgbm"])
def test_stereo_input_equals_separate_stereo_depth(pair, method) -> None:
    left, right, K, T, p2, p3 = pair
    torch.manual_seed(0)
    pred = SSCPredictor(_tiny_cfg(), device="cpu", stereo_method=method, stereo_params=PARAMS)
    if method == "sgm":
        depth = stereo_depth_sgm(left, right, p2, p3, PARAMS)
    else:
        depth = stereo_depth(left, right, p2, p3, PARAMS)
    valid = depth > 0
    assert valid.mean() > 0.5  # the matcher found the bands
    np.testing.assert_allclose(np.median(depth[valid]), BASELINE * 80.0 / 7.5, rtol=0.15)

    by_stereo = pred.prepare_batch(left, K, T, stereo=StereoPair(right, BASELINE)).points[0]
    by_depth = pred.prepare_batch(left, K, T, depth=depth).points[0]
    assert len(by_depth) > 100
    torch.testing.assert_close(by_stereo, by_depth, rtol=0, atol=0)
    # the tuple form and the whole predict() path agree too
    a = pred.predict(left, K, T, stereo=(right, BASELINE))
    b = pred.predict(left, K, T, depth=depth)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.confidence, b.confidence)


def test_sgm_depth_on_device_is_a_tensor_with_the_host_values(pair) -> None:
    left, right, K, _, p2, p3 = pair
    depth = StereoMatcher("sgm", "cpu", PARAMS).depth(left, StereoPair(right, BASELINE), float(K[0, 0]))
    assert isinstance(depth, torch.Tensor) and depth.dtype == torch.float32
    np.testing.assert_array_equal(depth.numpy(), stereo_depth_sgm(left, right, p2, p3, PARAMS))


def test_disparity_to_depth_torch_equals_numpy() -> None:
    d = np.random.default_rng(0).uniform(-1, 100, (40, 60)).astype(np.float32)
    a = disparity_to_depth(d, 0.54, 721.5, 0.5)
    b = disparity_to_depth(torch.from_numpy(d), 0.54, 721.5, 0.5)
    np.testing.assert_array_equal(b.numpy(), a)
    assert (a[d <= 0.5] == 0).all()


def test_msnet3d_refuses_without_weights() -> None:
    with pytest.raises(MSNetWeightsMissing, match="MobileStereoNet"):
        SSCPredictor(_tiny_cfg(), device="cpu", stereo_method="msnet3d")


def test_bad_stereo_input_is_named(pair) -> None:
    left, right, K, T, _, _ = pair
    with pytest.raises(ValueError, match="stereo_method"):
        SSCPredictor(_tiny_cfg(), device="cpu", stereo_method="census")
    pred = SSCPredictor(_tiny_cfg(), device="cpu", stereo_method="sgbm", stereo_params=PARAMS)
    with pytest.raises(ValueError, match="one geometry cue"):
        pred.prepare_batch(left, K, T, depth=np.ones((H, W), np.float32), stereo=(right, BASELINE))
    with pytest.raises(ValueError, match="right image"):
        pred.prepare_batch(left, K, T, stereo=(right[:, :-1], BASELINE))
    with pytest.raises(ValueError, match="baseline_m"):
        as_stereo_pair((right, -0.5))
    with pytest.raises(ValueError, match="StereoPair"):
        as_stereo_pair(right)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sgm_stereo_points_stay_on_the_device_and_match_cpu(pair) -> None:
    left, right, K, T, _, _ = pair
    cpu = SSCPredictor(_tiny_cfg(), device="cpu", stereo_method="sgm", stereo_params=PARAMS)
    gpu = SSCPredictor(_tiny_cfg(), device="cuda", stereo_method="sgm", stereo_params=PARAMS)
    depth = gpu.stereo_depth(left, K, (right, BASELINE))
    assert isinstance(depth, torch.Tensor) and depth.is_cuda
    a = cpu.prepare_batch(left, K, T, stereo=(right, BASELINE)).points[0]
    b = gpu.prepare_batch(left, K, T, stereo=(right, BASELINE)).points[0]
    assert b.is_cuda and len(b) == len(a)
    torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=0)
