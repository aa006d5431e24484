# Image normalisation of the network input (ImageNet mean / std), for the predictor (on its
# device) and the datasets (NumPy in CPU workers). The geometry of the input (fitting an image
# with its K, depth -> points, cropping points to the grid) is in sgn_ros.geometry.
"""ImageNet normalisation of camera images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["normalize_image"]


def normalize_image(
    image: np.ndarray | torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    out: torch.Tensor | None = None,
):
    """RGB image (H, W, 3), uint8 0..255 (or float 0..1) -> float32 (3, H, W), (x - mean) / std.

    `mean` / `std` are per channel on the 0..1 scale (ImageNet: 0.485 0.456 0.406 / 0.229 0.224 0.225).
    A NumPy array gives a NumPy array; a tensor gives a tensor on its own device (so the predictor
    can upload uint8 pixels and normalise on the GPU).

    `out`: a float32 tensor (3, H', W') with H' >= H, W' >= W on the image's device: the result
    is written to its top-left (3, H, W) and the rest set to 0 (= the mean colour, the padding of
    a smaller image), and `out` is returned. The predictor fills its batch this way, without a
    padded copy and a stacked copy of every image. Same values either way (in-place arithmetic
    in the same order).
    """
    is_numpy = not isinstance(image, torch.Tensor)
    x = torch.from_numpy(np.ascontiguousarray(image)) if is_numpy else image
    if x.dim() != 3 or x.shape[2] != 3:
        raise ValueError(f"normalize_image: expected an RGB image (H, W, 3), got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ValueError(f"normalize_image: expected uint8 or float pixels, got {x.dtype}")
    h, w = x.shape[:2]
    if out is not None and (not isinstance(out, torch.Tensor) or out.dtype != torch.float32 or out.dim() != 3
                            or out.shape[0] != 3 or out.shape[1] < h or out.shape[2] < w or out.device != x.device):
        raise ValueError(f"normalize_image: out must be a float32 tensor (3, >={h}, >={w}) on {x.device}, got "
                         f"{getattr(out, 'dtype', type(out))} {tuple(getattr(out, 'shape', ()))}")
    # Channel-first from the start: one converting copy into the destination, then the arithmetic
    # in place there (the same float32 operations in the same order as (x / 255 - mean) / std on
    # the HWC image, so the same values), instead of a float HWC temporary and a transposing copy.
    res = torch.empty((3, h, w), dtype=torch.float32, device=x.device) if out is None else out
    dst = res[:, :h, :w]
    dst.copy_(x.permute(2, 0, 1))
    if x.dtype == torch.uint8:
        dst.div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    dst.sub_(m).div_(s)
    if out is None:
        return res.numpy() if is_numpy else res
    out[:, h:, :].zero_()
    out[:, :h, w:].zero_()
    return out
