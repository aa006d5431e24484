# Pinhole cameras: checking K, reading the camera's offset and a stereo pair's baseline from
# the projection matrices P = K [I | t] (KITTI's calib P0..P3, ROS CameraInfo.p), and fitting a
# camera image to the network's input size while keeping K consistent (top-left crop / pad as
# the reference does with KITTI images, or a bilinear resize that scales K).
"""Intrinsics checks, camera offset / baseline from P, image fitting with K."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "check_intrinsics",
    "camera_offset_from_P",
    "stereo_baseline_from_P",
    "camera_translation_from_P",
    "crop_or_pad",
    "resize_image",
    "fit_image",
    "FIT_MODES",
]

#: How `fit_image` brings an image to the network size.
FIT_MODES = ("crop", "resize")


def check_intrinsics(K: np.ndarray, name: str = "intrinsics") -> np.ndarray:
    """Validate a pinhole camera matrix; returns it as float64 (3, 3).

    Raises:
        ValueError: not 3x3, not finite, non-positive focal lengths, or a bottom row other than (0, 0, 1).
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{name}: expected a 3x3 camera matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{name}: camera matrix has non-finite entries")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise ValueError(f"{name}: not a pinhole camera matrix (need fx, fy > 0 and last row 0 0 1): {K.tolist()}")
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


def crop_or_pad(image: np.ndarray, size: Sequence[int], fill: float = 0) -> np.ndarray:
    """Bring an (H, W, ...) array to `size` = (H', W') anchored at the top-left corner.

    Rows / columns beyond (H', W') are cut (``image[:H', :W']``, the reference's crop of KITTI
    images to 370 x 1220); missing ones are added at the bottom / right with `fill`. Either way
    pixel (u, v) keeps its coordinates, so the intrinsics K stay unchanged.
    """
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"crop_or_pad: size must be positive (H, W), got {tuple(size)}")
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"crop_or_pad: expected an (H, W, ...) array, got shape {image.shape}")
    out = image[:h, :w]
    if out.shape[0] == h and out.shape[1] == w:
        return out
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
    h0, w0 = image.shape[:2]
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"resize_image: size must be positive (H, W), got {tuple(size)}")
    sy, sx = h / h0, w / w0
    # source coordinates of target pixel centres, clamped at the borders
    ys = np.clip((np.arange(h) + 0.5) / sy - 0.5, 0, h0 - 1)
    xs = np.clip((np.arange(w) + 0.5) / sx - 0.5, 0, w0 - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, h0 - 1)
    x1 = np.minimum(x0 + 1, w0 - 1)
    wy = (ys - y0)[:, None, None]
    wx = (xs - x0)[None, :, None]
    img = image.astype(np.float32)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    out = (top * (1 - wy) + bottom * wy).astype(np.float32)
    K2 = K.copy()
    K2[0, 0] *= sx
    K2[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K2[1, 1] *= sy
    K2[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    K2[0, 1] *= sx
    return out, K2


def fit_image(
    image: np.ndarray, K: np.ndarray, size: Sequence[int], mode: str = "crop"
) -> tuple[np.ndarray, np.ndarray]:
    """Bring a uint8 camera image (H, W, 3) and its K to the network input size (H', W').

    mode ``crop``: keep the top-left (H', W') (zero-padded if smaller), K unchanged — the
    reference's handling of KITTI images. ``resize``: scale the whole image (bilinear, rounded
    back to uint8) and K, for cameras whose resolution differs from the training data's.
    """
    if mode == "crop":
        return crop_or_pad(image, size), np.asarray(K, dtype=np.float64)
    if mode == "resize":
        if tuple(image.shape[:2]) == tuple(int(s) for s in size):
            return image, np.asarray(K, dtype=np.float64)
        out, K2 = resize_image(image, K, size)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8), K2
    raise ValueError(f"fit_image: mode must be one of {FIT_MODES}, got {mode!r}")
