# Pinhole cameras: checking K, reading the camera's offset and a stereo pair's baseline from
# the projection matrices P = K [I | t] (KITTI's calib P0..P3, ROS CameraInfo.p), and fitting a
# camera image of any size to the network's input size while keeping K consistent (top-left
# crop / pad as the reference does with KITTI images; for other cameras a uniform scale and a
# cut that keeps the scene's geometry and the near road), and plausibility of K for an image.
"""Intrinsics checks, camera offset / baseline from P, image fitting with K."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported only where a tensor image is fitted
    import torch

__all__ = [
    "check_intrinsics",
    "camera_offset_from_P",
    "stereo_baseline_from_P",
    "camera_translation_from_P",
    "crop_or_pad",
    "resize_image",
    "fit_image",
    "fit_intrinsics",
    "FitPlan",
    "FIT_MODES",
]

#: How `fit_image` brings an image to the network size (see `fit_intrinsics`).
FIT_MODES = ("auto", "crop", "fit", "resize")

#: ``auto`` keeps the reference's top-left crop when it cuts at most this share of the rows and
#: of the columns (KITTI: 376 x 1241 -> 370 x 1220 cuts 1.6 % / 1.7 %; the released checkpoints
#: were trained on exactly that crop), and uses ``fit`` for any other camera.
AUTO_CROP_SLACK = 0.05

#: ``fit``: the share of the network rows kept above the principal point (the horizon of a level
#: camera); the rest shows the rows below it, so the near road stays in view (KITTI's own crop
#: keeps 47 % above it and sees the road from 6.5 m; 25 % keeps it from 4.3 m at KITTI's focal
#: length and height, with the same scores on the synthetic world, bench/other_cameras.py).
FIT_HORIZON_SHARE = 0.25

#: Sane intrinsics for an image of size (H, W): focal lengths within these multiples of max(H, W)
#: (a 180 deg fisheye has f ~ 0.3 W, a long telephoto ~ 10 W) and the principal point within
#: PRINCIPAL_POINT_MARGIN image sizes of the image.
FOCAL_RANGE = (0.05, 50.0)
PRINCIPAL_POINT_MARGIN = 1.0


def check_intrinsics(
    K: np.ndarray, name: str = "intrinsics", image_hw: Sequence[int] | None = None
) -> np.ndarray:
    """Validate a pinhole camera matrix; returns it as float64 (3, 3).

    With `image_hw` = (H, W) the values must also be plausible for that image (`FOCAL_RANGE`,
    `PRINCIPAL_POINT_MARGIN`, |skew| <= fx): fx = 1e308 or 1e-300, or cx = -1e6, is a broken
    calibration, and accepting it only postpones the failure to overflow warnings in the projection.

    Raises:
        ValueError: not 3x3, not finite, non-positive focal lengths, a bottom row other than
            (0, 0, 1), or (with `image_hw`) values implausible for the image size.
    """
    try:
        K = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: not a numeric camera matrix ({e})") from None
    if K.shape != (3, 3):
        raise ValueError(f"{name}: expected a 3x3 camera matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{name}: camera matrix has non-finite entries")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise ValueError(f"{name}: not a pinhole camera matrix (need fx, fy > 0 and last row 0 0 1): {K.tolist()}")
    if image_hw is not None:
        h, w = (int(v) for v in image_hw)
        if h <= 0 or w <= 0:
            raise ValueError(f"{name}: image size must be positive (H, W), got {tuple(image_hw)}")
        lo, hi = FOCAL_RANGE[0] * max(h, w), FOCAL_RANGE[1] * max(h, w)
        m = PRINCIPAL_POINT_MARGIN
        if not (lo <= K[0, 0] <= hi and lo <= K[1, 1] <= hi):
            raise ValueError(
                f"{name}: focal lengths fx={K[0, 0]:.6g}, fy={K[1, 1]:.6g} implausible for a {w}x{h} image "
                f"(expected {lo:.6g} .. {hi:.6g} px)"
            )
        if not (-m * w <= K[0, 2] <= (1 + m) * w and -m * h <= K[1, 2] <= (1 + m) * h):
            raise ValueError(
                f"{name}: principal point ({K[0, 2]:.6g}, {K[1, 2]:.6g}) implausible for a {w}x{h} image"
            )
        if abs(K[0, 1]) > K[0, 0]:
            raise ValueError(f"{name}: skew {K[0, 1]:.6g} larger than fx {K[0, 0]:.6g}")
    return K


def _projection(P: np.ndarray, name: str) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64).reshape(3, 4) if np.size(P) == 12 else np.asarray(P)
    if P.shape != (3, 4):
        raise ValueError(f"{name}: expected a (3, 4) projection matrix, got shape {P.shape}")
    if not np.all(np.isfinite(P)) or P[0, 0] <= 0 or P[1, 1] <= 0:
        raise ValueError(f"{name}: projection matrix p is not set (fx, fy <= 0 or non-finite)")
    return P


def camera_offset_from_P(P: np.ndarray, name: str = "P") -> np.ndarray:
    """(t_x, t_y) metres of P = K [I | t]: P[0, 3] / fx and P[1, 3] / fy.

    t is the reference camera's origin in this camera's frame, so the camera itself sits at
    -t in the reference frame (KITTI: image_2 at x = -P2[0, 3] / fx in camera 0; a ROS right
    camera has P[0, 3] = -fx * baseline). P[2, 3] is ignored, as by the reference.
    """
    P = _projection(P, name)
    return np.array([P[0, 3] / P[0, 0], P[1, 3] / P[1, 1]])


def camera_translation_from_P(P: np.ndarray, name: str = "P") -> np.ndarray:
    """t (3,) metres of P = K [I | t], exactly: K^-1 P[:, 3] (the reference camera's origin in
    this camera's frame). `camera_offset_from_P` is the reference's approximation (P[2, 3] ignored)."""
    P = _projection(P, name)
    return np.linalg.solve(P[:, :3], P[:, 3])


def stereo_baseline_from_P(P_left: np.ndarray, P_right: np.ndarray, name: str = "stereo") -> float:
    """Baseline (metres, > 0) of a rectified pair: t_x(left) - t_x(right) of `camera_offset_from_P`.

    Raises:
        ValueError: an unset P, or a baseline <= 0 (left and right swapped?).
    """
    b = camera_offset_from_P(P_left, f"{name}: left P")[0] - camera_offset_from_P(P_right, f"{name}: right P")[0]
    if not b > 0:
        raise ValueError(f"{name}: non-positive baseline {b:.4g} m from P (are left and right swapped?)")
    return float(b)


def _is_tensor(image: object) -> bool:
    """A torch tensor, told without importing torch (this module serves NumPy-only callers too)."""
    return type(image).__module__.startswith("torch")


def crop_or_pad(
    image: np.ndarray | torch.Tensor, size: Sequence[int], fill: float | Sequence[float] = 0
) -> np.ndarray | torch.Tensor:
    """Bring an (H, W, ...) array to `size` = (H', W') anchored at the top-left corner.

    Rows / columns beyond (H', W') are cut (``image[:H', :W']``, the reference's crop of KITTI
    images to 370 x 1220); missing ones are added at the bottom / right with `fill`. Either way
    pixel (u, v) keeps its coordinates, so the intrinsics K stay unchanged. A torch tensor stays
    on its device, padded with the same fill values as an array of its dtype would be.
    """
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"crop_or_pad: size must be positive (H, W), got {tuple(size)}")
    is_tensor = _is_tensor(image)
    if not is_tensor:
        image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"crop_or_pad: expected an (H, W, ...) array, got shape {tuple(image.shape)}")
    out = image[:h, :w]
    if out.shape[0] == h and out.shape[1] == w:
        return out
    if is_tensor:
        import torch

        np_dtype = torch.empty(0, dtype=image.dtype).numpy().dtype
        value = torch.from_numpy(np.full(tuple(image.shape[2:]), fill, dtype=np_dtype).copy()).to(image.device)
        padded = value.expand(h, w, *image.shape[2:]).clone()
    else:
        padded = np.full((h, w, *image.shape[2:]), fill, dtype=image.dtype)
    padded[: out.shape[0], : out.shape[1]] = out
    return padded


def resize_image(image: np.ndarray, K: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize (bilinear, pixel-centre aligned) an (H, W, C) image to `size` = (H', W') and scale K.

    With pixel centres at integer coordinates, u' = (u + 0.5) * W'/W - 0.5, so fx and cx scale by
    sx = W'/W (cx also shifts by 0.5 * (sx - 1)); likewise fy, cy with sy = H'/H.

    Returns:
        (resized image (H', W', C) float32, new K (3, 3) float64)
    """
    K = check_intrinsics(K)
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"resize_image: expected an (H, W, C) image, got shape {image.shape}")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"resize_image: size must be positive (H, W), got {tuple(size)}")
    h0, w0 = image.shape[:2]
    return _bilinear(image, (h, w), (0, h), (0, w)), _scaled_K(K, h / h0, w / w0)


def _bilinear_taps(
    hw0: tuple[int, int], size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]
) -> tuple[np.ndarray, ...]:
    """The source rows / columns and float64 weights of the bilinear resize of an (H, W) image to
    `size` (H', W'), for output rows [r0, r1) and columns [c0, c1): (y0, y1, wy, x0, x1, wx).
    The one description of the resize; NumPy (`_bilinear`) and torch (`_bilinear_tensor`) apply it.
    Each output pixel depends only on its own index, so a window costs only its own pixels
    (`fit_image` keeps a network-size window of an image scaled up several times)."""
    h0, w0 = hw0
    h, w = size
    sy, sx = h / h0, w / w0
    # source coordinates of target pixel centres, clamped at the borders
    ys = np.clip((np.arange(rows[0], rows[1]) + 0.5) / sy - 0.5, 0, h0 - 1)
    xs = np.clip((np.arange(cols[0], cols[1]) + 0.5) / sx - 0.5, 0, w0 - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    return y0, np.minimum(y0 + 1, h0 - 1), ys - y0, x0, np.minimum(x0 + 1, w0 - 1), xs - x0


def _bilinear(image: np.ndarray, size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Rows [r0, r1) and columns [c0, c1) of `image` resized to `size`, float32 (see `_bilinear_taps`)."""
    y0, y1, wy, x0, x1, wx = _bilinear_taps(image.shape[:2], size, rows, cols)
    wy, wx = wy[:, None, None], wx[None, :, None]
    img = image.astype(np.float32)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def _bilinear_tensor(
    image: torch.Tensor, size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]
) -> torch.Tensor:
    """`_bilinear` of a torch image (H, W, C) on its own device: the same taps and the same
    float64 arithmetic in the same order, so a GPU predictor fits camera images where the
    pixels already are (equal to the NumPy result up to fused multiply-adds: at most one grey
    level after rounding, test_geometry)."""
    import torch

    dev = image.device
    y0, y1, wy, x0, x1, wx = (torch.from_numpy(np.ascontiguousarray(a)).to(dev)
                              for a in _bilinear_taps(tuple(image.shape[:2]), size, rows, cols))
    wy, wx = wy[:, None, None], wx[None, :, None]
    img = image.to(torch.float64)
    r0, r1 = img.index_select(0, y0), img.index_select(0, y1)
    top = r0.index_select(1, x0) * (1 - wx) + r0.index_select(1, x1) * wx
    bottom = r1.index_select(1, x0) * (1 - wx) + r1.index_select(1, x1) * wx
    return (top * (1 - wy) + bottom * wy).to(torch.float32)


@dataclass(frozen=True)
class FitPlan:
    """How `fit_image` maps a camera image onto the network input: scale to `scaled_hw` (H, W)
    (None: no resize), then keep the `size` window whose top-left corner is (`top`, `left`) in
    the scaled image (negative or short: padded). `K` is the intrinsics of the result; `box`
    (row0, row1, col0, col1) the network pixels that show the camera image (the rest is padding)."""

    mode: str
    scaled_hw: tuple[int, int] | None
    top: int
    left: int
    K: np.ndarray
    box: tuple[int, int, int, int]


def fit_intrinsics(
    image_hw: Sequence[int], K: np.ndarray, size: Sequence[int], mode: str = "auto",
    focal: float | None = None,
) -> FitPlan:
    """Plan how an (H, W) image with intrinsics K reaches the network size (H', W'), without pixels.

    Modes:
        ``crop``: the reference's top-left crop (pad at the bottom / right); K unchanged.
        ``resize``: stretch to (H', W'), fx and fy scale unevenly (kept for compatibility).
        ``fit``: one scale for both axes, so the scene's geometry (angles, aspect) is kept: the one
            that brings the focal length to `focal` (the training images', so that objects have
            the pixel size the network learnt), or with `focal` None the least that covers
            (H', W'). The scaled image is then cut or padded to (H', W'): centred horizontally;
            vertically with `FIT_HORIZON_SHARE` of the rows above the principal point and the
            rest (the near road) below it. K scales by s and shifts by the cut.
        ``auto``: ``crop`` for KITTI-size images (`AUTO_CROP_SLACK`), else ``fit``.

    On the synthetic world, scaling to the training focal length beats covering the input for a
    640 x 480 f = 500 camera by 3 points of completion IoU and 6 of mIoU (README, "Any camera").
    """
    h0, w0 = (int(v) for v in image_hw)
    h, w = (int(v) for v in size)
    if min(h0, w0, h, w) <= 0:
        raise ValueError(f"fit_intrinsics: sizes must be positive, got image {tuple(image_hw)}, network {tuple(size)}")
    K = check_intrinsics(K, "fit_intrinsics: K")
    if mode not in FIT_MODES:
        raise ValueError(f"fit_image: mode must be one of {FIT_MODES}, got {mode!r}")
    if mode == "auto":
        kitti_like = h <= h0 <= h * (1 + AUTO_CROP_SLACK) and w <= w0 <= w * (1 + AUTO_CROP_SLACK)
        mode = "crop" if kitti_like else "fit"
    if mode == "crop" or (h0, w0) == (h, w):
        return FitPlan(mode, None, 0, 0, K, (0, min(h, h0), 0, min(w, w0)))
    if mode == "resize":
        return FitPlan(mode, (h, w), 0, 0, _scaled_K(K, h / h0, w / w0), (0, h, 0, w))
    if focal is None:
        s = max(h / h0, w / w0)
        hs, ws = max(h, int(round(h0 * s))), max(w, int(round(w0 * s)))
    else:
        if not (np.isfinite(focal) and focal > 0):
            raise ValueError(f"fit_intrinsics: focal must be a positive number of pixels, got {focal}")
        s = float(focal) / float(np.sqrt(K[0, 0] * K[1, 1]))
        hs, ws = max(1, int(round(h0 * s))), max(1, int(round(w0 * s)))
    K_s = _scaled_K(K, hs / h0, ws / w0)
    left = (ws - w) // 2  # negative: padded on both sides
    top = int(np.floor(K_s[1, 2])) - int(np.ceil(FIT_HORIZON_SHARE * h))
    if hs >= h:  # enough rows: stay inside the image (no padding rows while image rows are cut)
        top = int(np.clip(top, 0, hs - h))
    K_fit = K_s.copy()
    K_fit[0, 2] -= left
    K_fit[1, 2] -= top
    box = (max(0, -top), min(h, hs - top), max(0, -left), min(w, ws - left))
    return FitPlan("fit", (hs, ws), top, left, K_fit, box)


def _scaled_K(K: np.ndarray, sy: float, sx: float) -> np.ndarray:
    """K of an image resized by (sy, sx) with pixel centres at integer coordinates:
    u' = (u + 0.5) sx - 0.5."""
    K2 = K.copy()
    K2[0, 0] *= sx
    K2[0, 1] *= sx
    K2[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K2[1, 1] *= sy
    K2[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K2


def fit_image(
    image: np.ndarray | torch.Tensor, K: np.ndarray, size: Sequence[int], mode: str = "auto",
    focal: float | None = None, fill: float | Sequence[float] = 0,
) -> tuple[np.ndarray | torch.Tensor, np.ndarray]:
    """Bring a uint8 camera image (H, W, 3) and its K to the network input size (H', W').

    The modes are `fit_intrinsics`'s (``auto`` = the reference's top-left crop for KITTI-size
    images, else ``fit``: uniform scale to `focal`, a centred / horizon-keeping cut, K adjusted).
    Pixels outside the camera image get `fill` (a value or a colour). `image` is a NumPy array,
    or a torch tensor that is fitted on its own device (a GPU predictor uploads the camera's
    pixels once and fits them there: ~38 ms of host time for a 720p camera otherwise).

    Returns:
        (fitted image (H', W', 3) uint8, of the input's kind and device; its K (3, 3) float64)
    """
    is_tensor = _is_tensor(image)
    if not is_tensor:
        image = np.asarray(image)
    plan = fit_intrinsics(tuple(image.shape[:2]), K, size, mode, focal)
    if plan.scaled_hw is None:
        return crop_or_pad(image, size, fill), plan.K
    h, w = int(size[0]), int(size[1])
    fill_u8 = np.broadcast_to(np.asarray(fill, dtype=np.float64).round().clip(0, 255).astype(np.uint8),
                              image.shape[2:])
    if is_tensor:
        import torch

        out = torch.empty((h, w, *image.shape[2:]), dtype=torch.uint8, device=image.device)
        out[...] = torch.tensor(fill_u8.tolist(), dtype=torch.uint8, device=image.device)
    else:
        out = np.empty((h, w, *image.shape[2:]), np.uint8)
        out[...] = fill_u8
    hs, ws = plan.scaled_hw
    y0, y1 = max(plan.top, 0), min(plan.top + h, hs)
    x0, x1 = max(plan.left, 0), min(plan.left + w, ws)
    if y1 > y0 and x1 > x0:  # only the kept window of the scaled image is computed
        dst = out[y0 - plan.top : y1 - plan.top, x0 - plan.left : x1 - plan.left]
        if is_tensor:
            window = _bilinear_tensor(image, (hs, ws), (y0, y1), (x0, x1))
            dst[...] = torch.round(window).clamp_(0, 255).to(torch.uint8)
        else:
            dst[...] = np.clip(np.rint(_bilinear(image, (hs, ws), (y0, y1), (x0, x1))), 0, 255)
    return out, plan.K
