# One stereo frame -> metric depth of its left image, by the method a predictor was built with:
#   sgbm    OpenCV StereoSGBM on the host (NumPy depth; the CPU-only default),
#   sgm     our torch semi-global matcher on the predictor's device (sgn_ros.stereo.sgm),
#   msnet3d MobileStereoNet-3D on the device (sgn_ros.stereo.msnet; refuses without weights).
# The predictor takes the right image with the left one (issue #12/#13) so that disparity ->
# depth -> points -> crop happen where the network runs, once per frame, with no host round trip
# of a full-size depth map on a GPU.
"""`StereoPair` (right image + baseline) and `StereoMatcher` (pair -> depth on a device)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from sgn_ros.data.stereo import StereoParams, disparity_sgbm, disparity_to_depth

__all__ = ["STEREO_METHODS", "StereoPair", "as_stereo_pair", "StereoMatcher"]

STEREO_METHODS = ("sgbm", "sgm", "msnet3d")


@dataclass(frozen=True)
class StereoPair:
    """The right half of a rectified stereo frame, given next to the left (network) image.

    Attributes:
        right: (H, W, 3) uint8 RGB right image, the left image's size.
        baseline_m: distance between the two cameras' centres, metres (> 0).
    """

    right: np.ndarray
    baseline_m: float

    def __post_init__(self) -> None:
        b = float(self.baseline_m)
        if not math.isfinite(b) or b <= 0:
            raise ValueError(f"stereo: baseline_m must be a positive number of metres, got {self.baseline_m!r}")


def as_stereo_pair(value: StereoPair | tuple[np.ndarray, float]) -> StereoPair:
    """A `StereoPair`, or a (right_image, baseline_m) tuple -> `StereoPair`."""
    if isinstance(value, StereoPair):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return StereoPair(np.asarray(value[0]), float(value[1]))
    raise ValueError(f"stereo: expected a StereoPair or (right_image, baseline_m), got {type(value).__name__}")


class StereoMatcher:
    """Rectified pair -> (H, W) float32 metric depth of the left image, 0 where matching failed.

    Args:
        method: one of STEREO_METHODS.
        device: where sgm / msnet3d run (sgbm always runs on the host).
        params: matcher settings for sgbm / sgm (num_disparities, filters, min_disparity).
        msnet_weights: MobileStereoNet checkpoint (msnet3d only; None raises MSNetWeightsMissing
            with the message that says where to get it).
        fp16: run MobileStereoNet in float16 (CUDA).
    """

    def __init__(
        self,
        method: str,
        device: torch.device | str = "cpu",
        params: StereoParams | None = None,
        msnet_weights: str | os.PathLike[str] | None = None,
        fp16: bool = False,
    ) -> None:
        if method not in STEREO_METHODS:
            raise ValueError(f"stereo_method: expected one of {STEREO_METHODS}, got {method!r}")
        self.method = method
        self.device = torch.device(device)
        self.params = params or StereoParams()
        self._msnet = None
        if method == "msnet3d":
            from sgn_ros.stereo.msnet import StereoDepth

            dtype = torch.float16 if fp16 and self.device.type == "cuda" else torch.float32
            self._msnet = StereoDepth(msnet_weights, self.device, dtype=dtype, kind="msnet3d")

    def depth(self, left: np.ndarray, pair: StereoPair, focal: float) -> np.ndarray | torch.Tensor:
        """Depth of `left` (H, W, 3) uint8 from `pair`: NumPy for sgbm, a tensor on the device otherwise."""
        right = np.asarray(pair.right)
        if right.shape != left.shape or right.dtype != np.uint8:
            raise ValueError(f"stereo: right image must be uint8 {left.shape} like the left image, "
                             f"got {right.dtype} {right.shape}")
        baseline = float(pair.baseline_m)
        if self.method == "sgbm":
            return disparity_to_depth(disparity_sgbm(left, right, self.params), baseline, focal,
                                      self.params.min_disparity)
        if self.method == "sgm":
            from sgn_ros.stereo.sgm import disparity_sgm

            def tensor(img: np.ndarray) -> torch.Tensor:
                return torch.from_numpy(np.ascontiguousarray(img)).to(self.device).permute(2, 0, 1)[None]

            with torch.no_grad():
                disp = disparity_sgm(tensor(left), tensor(right), self.params)[0]
            return disparity_to_depth(disp, baseline, focal, self.params.min_disparity)
        with torch.no_grad():
            return self._msnet.depth(left, right, focal, baseline)
