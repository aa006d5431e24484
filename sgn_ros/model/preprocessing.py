# Image normalisation of the network input (ImageNet mean / std), for the predictor (on its
# device) and the datasets (NumPy in CPU workers). The geometry of the input (fitting an image
# with its K, depth -> points, cropping points to the grid) is in sgn_ros.geometry.
"""ImageNet normalisation of camera images."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

try:  # one pass through a per-channel table on the CPU (sgn_ros/model/_pixels.c); else torch's four
    from sgn_ros.model import _pixels as _native
except ImportError:  # a source tree without the build: the torch passes, same values
    _native = None

__all__ = ["normalize_image", "normalization_table"]

#: whether normalize_image has its one-pass native kernel (built with the package)
NATIVE = _native is not None


@functools.lru_cache(maxsize=8)
def _table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    values = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (1, 256, 3))
    out = _normalize_torch(torch.from_numpy(values.copy()), mean, std, None)
    table = np.ascontiguousarray(out.numpy()[:, 0, :])
    table.setflags(write=False)
    return table


def normalization_table(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, 256) float32, read-only: entry [c, v] is what `normalize_image` makes of byte value v
    in channel c, computed by the same float32 torch operations (x / 255 - mean) / std. Each
    output value depends on its pixel's byte and channel only, so looking it up here gives the
    same bits as computing it; made once per (mean, std)."""
    return _table(tuple(float(m) for m in mean), tuple(float(s) for s in std))


def _normalize_torch(x: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                     dst: torch.Tensor | None) -> torch.Tensor:
    """(x / 255 - mean) / std of an (H, W, 3) image into dst (3, H, W) (a new tensor when None):
    one converting copy channel-first, then the arithmetic in place, in the reference's order."""
    h, w = x.shape[:2]
    dst = torch.empty((3, h, w), dtype=torch.float32, device=x.device) if dst is None else dst
    dst.copy_(x.permute(2, 0, 1))
    if x.dtype == torch.uint8:
        dst.div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return dst.sub_(m).div_(s)


def _from_numpy(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing `a`'s memory (a crop view stays a view: no copy), or of a contiguous copy
    where torch cannot view it (negative strides, unaligned)."""
    try:
        return torch.from_numpy(a)
    except (ValueError, TypeError):
        return torch.from_numpy(np.ascontiguousarray(a))


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
    x = _from_numpy(np.asarray(image)) if is_numpy else image
    if x.dim() != 3 or x.shape[2] != 3:
        raise ValueError(f"normalize_image: expected an RGB image (H, W, 3), got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ValueError(f"normalize_image: expected uint8 or float pixels, got {x.dtype}")
    h, w = x.shape[:2]
    if out is not None and (not isinstance(out, torch.Tensor) or out.dtype != torch.float32 or out.dim() != 3
                            or out.shape[0] != 3 or out.shape[1] < h or out.shape[2] < w or out.device != x.device):
        raise ValueError(f"normalize_image: out must be a float32 tensor (3, >={h}, >={w}) on {x.device}, got "
                         f"{getattr(out, 'dtype', type(out))} {tuple(getattr(out, 'shape', ()))}")
    # Channel-first from the start: uint8 pixels on the CPU through `normalization_table` in one
    # pass (native), else one converting copy into the destination and the arithmetic in place
    # there (the same float32 operations in the same order as (x / 255 - mean) / std on the HWC
    # image, so the same values), instead of a float HWC temporary and a transposing copy.
    res = torch.empty((3, h, w), dtype=torch.float32, device=x.device) if out is None else out
    dst = res[:, :h, :w]
    if _native is not None and x.dtype == torch.uint8 and x.device.type == "cpu" and h and w:
        _native.normalize(x.numpy(), normalization_table(mean, std), dst.numpy())
    else:
        _normalize_torch(x, mean, std, dst)
    if out is None:
        return res.numpy() if is_numpy else res
    out[:, h:, :].zero_()
    out[:, :h, w:].zero_()
    return out
