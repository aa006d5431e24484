# Classical stereo depth for the pseudo-LiDAR input when no learned stereo network
# (MobileStereoNet in the paper) is at hand: OpenCV semi-global block matching on the rectified
# KITTI colour pair image_2 / image_3, disparity -> metric depth with the calibration's focal
# length and baseline. Output is a depth map in image_2's pixels, as the pseudo-LiDAR step wants.
"""StereoSGBM depth maps from KITTI image_2 / image_3 pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgn_ros.geometry.camera import stereo_baseline_from_P


@dataclass(frozen=True)
class StereoParams:
    """StereoSGBM settings (the common KITTI choices; disparities in pixels).

    Attributes:
        num_disparities: search range, multiple of 16 (192 as MobileStereoNet's maxdisp).
        block_size: matching window (odd).
        uniqueness_ratio, speckle_window_size, speckle_range, disp12_max_diff: OpenCV filters.
        min_disparity: pixels; disparities at or below it are invalid (depth 0).
    """

    num_disparities: int = 192
    block_size: int = 5
    uniqueness_ratio: int = 10
    speckle_window_size: int = 100
    speckle_range: int = 2
    disp12_max_diff: int = 1
    min_disparity: float = 0.0


def stereo_baseline_focal(p2: np.ndarray, p3: np.ndarray) -> tuple[float, float]:
    """(baseline metres, focal length pixels) of the rectified pair from P2 and P3 (3, 4).

    Both are K [I | t] with a shared K; P[0, 3] = fx * t_x, so the baseline is
    (P2[0, 3] - P3[0, 3]) / fx (0.54 m for KITTI).
    """
    p2 = np.asarray(p2, dtype=np.float64)
    p3 = np.asarray(p3, dtype=np.float64)
    if p2.shape != (3, 4) or p3.shape != (3, 4):
        raise ValueError(f"stereo_baseline_focal: expected (3, 4) P2 and P3, got {p2.shape}, {p3.shape}")
    baseline = stereo_baseline_from_P(p2, p3, "stereo_baseline_focal: P2 / P3")
    return baseline, float(p2[0, 0])


def disparity_sgbm(left: np.ndarray, right: np.ndarray, params: StereoParams = StereoParams()) -> np.ndarray:
    """Disparity (H, W) float32 pixels of the left image; invalid pixels <= min_disparity.

    Args:
        left, right: rectified RGB (H, W, 3) or grey (H, W) uint8 images of equal size.
    """
    import cv2

    left = np.asarray(left)
    right = np.asarray(right)
    if left.shape != right.shape:
        raise ValueError(f"disparity_sgbm: left {left.shape} and right {right.shape} images differ in size")
    if left.ndim == 3:
        left = cv2.cvtColor(np.ascontiguousarray(left), cv2.COLOR_RGB2GRAY)
        right = cv2.cvtColor(np.ascontiguousarray(right), cv2.COLOR_RGB2GRAY)
    if params.num_disparities % 16 or params.num_disparities <= 0:
        n = params.num_disparities
        raise ValueError(f"disparity_sgbm: num_disparities must be a positive multiple of 16, not {n}")
    b = params.block_size
    matcher = cv2.StereoSGBM_create(
        minDisparity=0,
        numDisparities=params.num_disparities,
        blockSize=b,
        P1=8 * b * b,
        P2=32 * b * b,
        disp12MaxDiff=params.disp12_max_diff,
        uniquenessRatio=params.uniqueness_ratio,
        speckleWindowSize=params.speckle_window_size,
        speckleRange=params.speckle_range,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    )
    return matcher.compute(left, right).astype(np.float32) / 16.0  # fixed point, 4 fractional bits


def disparity_to_depth(disparity, baseline: float, focal: float, min_disparity: float = 0.0):
    """depth = baseline * focal / disparity (metres, float32); invalid disparities -> 0.

    A NumPy array gives a NumPy array; a torch tensor gives a tensor on its device (the stereo
    methods that match on the network's device keep the depth there), with the same float32 result.
    """
    if type(disparity).__module__.startswith("torch"):
        t = disparity.float()
        valid = t > max(min_disparity, 0.0)
        safe = t.masked_fill(~valid, 1.0)
        bf = t.new_tensor(baseline * focal)  # a float32 scalar, as NumPy divides
        return (bf / safe).masked_fill_(~valid, 0.0)
    d = np.asarray(disparity, dtype=np.float32)
    valid = d > max(min_disparity, 0.0)
    depth = np.zeros_like(d)
    depth[valid] = baseline * focal / d[valid]
    return depth


def stereo_depth(
    left: np.ndarray, right: np.ndarray, p2: np.ndarray, p3: np.ndarray, params: StereoParams = StereoParams()
) -> np.ndarray:
    """Metric depth (H, W) float32 in the left (image_2) camera, 0 where matching failed."""
    baseline, focal = stereo_baseline_focal(p2, p3)
    disp = disparity_sgbm(left, right, params)
    return disparity_to_depth(disp, baseline, focal, params.min_disparity)
