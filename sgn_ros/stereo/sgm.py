# Semi-global matching (Hirschmüller 2008) in plain torch, so that stereo depth for the network is
# computed on the network's device when no learned stereo network is at hand. It follows OpenCV's
# StereoSGBM (sgn_ros.data.stereo.disparity_sgbm) closely enough to share its parameters
# (StereoParams) and its depth path (disparity_to_depth): Birchfield-Tomasi pixel costs on the
# clipped x-derivative and the intensity, summed over the block, P1 = 8 b^2 and P2 = 32 b^2,
# uniqueness ratio, parabolic subpixel, left-right check, speckle filter. Every stage is a tensor
# operation over the whole image; the only Python loops run over chunks of disparities (cost
# volume) and over one image axis (the SGM scan, each step vectorised across the other axis and all
# disparities). On CUDA that scan is one Triton kernel launch per direction instead
# (sgn_ros.stereo.sgm_triton, same bits): the torch scan's ~46,000 launches per KITTI pair would
# cost hundreds of ms of launch overhead on a GPU.
"""Semi-global stereo matching in torch (CPU or CUDA): disparity and depth."""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from sgn_ros.data.stereo import StereoParams, disparity_to_depth, stereo_baseline_focal

#: the matcher's defaults: those of disparity_sgbm
DEFAULT_PARAMS = StereoParams()
#: grey weights of cv2.COLOR_RGB2GRAY, so both matchers see the same image
_GREY = (0.299, 0.587, 0.114)
#: OpenCV clips the prefiltered x-derivative to +-max(preFilterCap, 15); we use its default
_DERIV_CAP = 15.0
#: OpenCV adds the intensity BT cost scaled down by 4 (>> 2) to the derivative's
_INTENSITY_WEIGHT = 0.25
#: bytes of temporaries per chunk of disparities in cost_volume: on a CPU, chunks that stay in the
#: cache (at KITTI size one disparity: 3x faster than big chunks); on a GPU, few big launches
CHUNK_BYTES = {"cpu": 16 << 20, "cuda": 512 << 20}


def to_grey(image: torch.Tensor) -> torch.Tensor:
    """(B, H, W) float32 grey image, 0..255 scale, from (H, W) or (B, C, H, W) with C = 1 or 3 (RGB).

    Integer images are taken as 0..255; float images must already be on that scale (P1 and P2 are
    in those units).
    """
    if image.ndim == 2:
        image = image[None, None]
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"sgm: expected an (H, W) or (B, 1|3, H, W) image, got shape {tuple(image.shape)}")
    image = image.to(torch.float32)
    if image.shape[1] == 3:
        w = torch.tensor(_GREY, dtype=torch.float32, device=image.device).view(1, 3, 1, 1)
        image = (image * w).sum(1, keepdim=True)
    return image[:, 0]


def _pad_w(t: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Repeat the first / last column of t (any rank) before / after times along the last axis."""
    return torch.cat([t[..., :1].expand(*t.shape[:-1], before), t, t[..., -1:].expand(*t.shape[:-1], after)], -1)


def _bt_bounds(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max of the image and its half-pixel interpolations to the left and right (along W)."""
    left = (img + _pad_w(img[..., :-1], 1, 0)) / 2
    right = (img + _pad_w(img[..., 1:], 0, 1)) / 2
    return torch.minimum(img, torch.minimum(left, right)), torch.maximum(img, torch.maximum(left, right))


def _pixel_features(grey: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W): OpenCV's prefiltered image (clipped 3x3 Sobel x) and the intensity."""
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=grey.device).view(1, 1, 3, 3)
    dx = F.conv2d(F.pad(grey[:, None], (1, 1, 1, 1), mode="replicate"), k)[:, 0]
    # BT is homogeneous, so weighting the intensity here weights its cost
    return torch.stack([dx.clamp(-_DERIV_CAP, _DERIV_CAP), grey * _INTENSITY_WEIGHT], 1)


def box_sum(t: torch.Tensor, size: int) -> torch.Tensor:
    """Sum over the size x size window of the last two axes, clipped at the border and rescaled to
    the full window's area (a border pixel's window mean times size^2). Shifted adds: far cheaper
    on a CPU than avg_pool2d over a deep cost volume."""
    out = t
    for axis in (-1, -2):
        n = t.shape[axis]
        src, out = out, out.clone()
        count = torch.ones(n, device=t.device)
        for k in range(1, size // 2 + 1):
            if k >= n:
                break
            out.narrow(axis, k, n - k).add_(src.narrow(axis, 0, n - k))
            out.narrow(axis, 0, n - k).add_(src.narrow(axis, k, n - k))
            count[k:] += 1
            count[: n - k] += 1
        scale = size / count
        out.mul_(scale if axis == -1 else scale[:, None])
    return out


def cost_volume(left: torch.Tensor, right: torch.Tensor, num_disparities: int, block_size: int) -> torch.Tensor:
    """Matching cost (B, D, H, W) of left pixel (y, x) against right pixel (y, x - d).

    The pixel cost is the Birchfield-Tomasi dissimilarity (sampling-insensitive absolute
    difference) of the clipped x-derivative plus a quarter of the intensity's, as in OpenCV's SGBM;
    it is summed over the block_size x block_size window. Right pixels left of the image repeat the
    border column; where x - d < 0 the cost is set to the largest possible block cost, so those
    disparities only win when nothing else can.

    Args:
        left, right: (B, H, W) float grey images (see to_grey).
    """
    if left.shape != right.shape or left.ndim != 3:
        raise ValueError(f"cost_volume: expected equal (B, H, W) images, got {tuple(left.shape)}, {tuple(right.shape)}")
    b, h, w = left.shape
    n_d = int(num_disparities)
    fl, fr = _pixel_features(left), _pixel_features(right)
    lmin, lmax = _bt_bounds(fl)
    rmin, rmax = _bt_bounds(fr)
    # right pixels left of the image repeat the border column; window k of the padded features is
    # the right image shifted by n_d - k pixels, i.e. disparity d = n_d - k (views, no copies)
    fr, rmin, rmax = (_pad_w(t, n_d, 0).unfold(-1, w, 1).permute(0, 1, 3, 2, 4) for t in (fr, rmin, rmax))
    fl, lmin, lmax = (t[:, :, None] for t in (fl, lmin, lmax))  # (B, 2, 1, H, W)
    by_k = torch.empty(b, n_d, h, w, dtype=torch.float32, device=left.device)  # [:, k - 1] is d = n_d - k
    # disparities in chunks of whole-volume ops (a few launches per chunk, not per disparity), each
    # chunk's temporaries within ~CHUNK_BYTES
    budget = CHUNK_BYTES.get(left.device.type, CHUNK_BYTES["cuda"])
    step = max(1, min(n_d, budget // max(1, 4 * 4 * b * 2 * h * w)))
    for k0 in range(1, n_d + 1, step):
        k1 = min(k0 + step, n_d + 1)
        r, r_lo, r_hi = (t[:, :, k0:k1] for t in (fr, rmin, rmax))  # (B, 2, K, H, W)
        c_left = torch.maximum(fl - r_hi, r_lo - fl).clamp_min_(0)
        c_right = torch.maximum(r - lmax, lmin - r).clamp_min_(0)
        torch.sum(torch.minimum(c_left, c_right), 1, out=by_k[:, k0 - 1 : k1 - 1])
    cost = by_k.flip(1)
    del by_k
    area = block_size * block_size
    cost = box_sum(cost, block_size)
    worst = area * (2 * _DERIV_CAP + 255.0 * _INTENSITY_WEIGHT)
    x = torch.arange(w, device=left.device)
    d = torch.arange(n_d, device=left.device)
    return cost.masked_fill((x[None, :] < d[:, None])[None, :, None, :], worst)


def _scan(seq: torch.Tensor, shifts: tuple[int, ...], p1: float, p2: float, acc: torch.Tensor,
          reverse: bool = False) -> torch.Tensor:
    """Add the SGM path costs along dim 0 of seq (N, B, D, M) to acc (same shape), path by path.

    The scan runs first to last (last to first with `reverse`). Path k's predecessor of (n, m) is
    the previous step's (., m - shifts[k]) (0: straight, +-1: diagonal); where it falls outside
    the image the path starts afresh (L = C). Each step is vectorised over paths, batch,
    disparities and the M axis; each path's cost is added to acc on its own, in the order of
    `shifts`, so the sum over paths has one fixed order (that of `aggregate`).
    """
    n_steps = seq.shape[0]
    order = range(n_steps - 1, -1, -1) if reverse else range(n_steps)
    n_paths, n_d = len(shifts), seq.shape[2]
    first = order[0]
    prev = seq[first].expand(n_paths, *seq.shape[1:]).clone()  # (P, B, D, M)
    for k in range(n_paths):
        acc[first].add_(prev[k])
    # buffers reused at every step; a shifted predecessor outside the image stays 0, so L = C there
    shifted = torch.zeros_like(prev)
    near = torch.empty_like(prev)
    for n in order[1:]:
        if any(shifts):
            for k, s in enumerate(shifts):
                if s > 0:
                    shifted[k, ..., s:] = prev[k, ..., :-s]
                elif s < 0:
                    shifted[k, ..., :s] = prev[k, ..., -s:]
                else:
                    shifted[k] = prev[k]
            prev = shifted
        low = prev.amin(2, keepdim=True)  # (P, B, 1, M)
        # near[d] = min(prev[d - 1], prev[d + 1]) + P1
        if n_d > 2:
            torch.minimum(prev[:, :, :-2], prev[:, :, 2:], out=near[:, :, 1:-1])
        if n_d > 1:
            near[:, :, 0] = prev[:, :, 1]
            near[:, :, -1] = prev[:, :, -2]
        else:
            near.fill_(float("inf"))
        near.add_(p1)
        cur = torch.minimum(prev, near)
        torch.minimum(cur, low + p2, out=cur)
        cur.sub_(low).add_(seq[n])
        prev = cur
        for k in range(n_paths):
            acc[n].add_(cur[k])
    return acc


#: SGM backends of `aggregate`: the torch scan (any device) or one Triton launch per path (CUDA)
BACKENDS = ("auto", "torch", "triton")


def path_order(paths: int) -> list[tuple[int, int]]:
    """The directions r = (dx, dy) (predecessor p - r) whose path costs `aggregate` sums, in the
    order it adds them: rightwards (with the two diagonals for 8 paths), leftwards, down, up."""
    if paths not in (4, 8):
        raise ValueError(f"sgm: paths must be 4 or 8, got {paths}")
    shifts = (-1, 0, 1) if paths == 8 else (0,)
    return [(1, s) for s in shifts] + [(-1, s) for s in shifts] + [(0, 1), (0, -1)]


def resolve_backend(backend: str, device: torch.device) -> str:
    """`auto` -> triton on CUDA where Triton imports, else torch; `triton` is checked to run here."""
    from sgn_ros.stereo import sgm_triton

    if backend not in BACKENDS:
        raise ValueError(f"sgm: backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and sgm_triton.usable_on(device) else "torch"
    if backend == "triton" and not sgm_triton.usable_on(device):
        raise ValueError(f"sgm: backend triton is not usable: {sgm_triton.why_not(device)}")
    return backend


_SLOW_WARNED = False


def _warn_slow(reason: str) -> None:
    """Say once per process why a GPU runs the slow torch scan: a robot user should know why stereo
    costs hundreds of ms a pair (e.g. a torch build without Triton)."""
    global _SLOW_WARNED
    _SLOW_WARNED = True
    warnings.warn(f"sgm: the Triton path scan is not used ({reason}); the torch scan runs ~46,000 launches per "
                  "KITTI pair on the GPU, hundreds of ms. Install triton, or use stereo_method msnet3d",
                  RuntimeWarning, stacklevel=3)


def aggregate(cost: torch.Tensor, p1: float, p2: float, paths: int = 8, backend: str = "auto") -> torch.Tensor:
    """SGM aggregated cost (B, D, H, W): the sum of the path costs along 4 or 8 directions.

    Along each direction r, L_r(p, d) = C(p, d) + min(L_r(p-r, d), L_r(p-r, d+-1) + P1,
    min_k L_r(p-r, k) + P2) - min_k L_r(p-r, k). The paths are added one by one in
    `path_order`, so both backends give the same bits:
    * ``torch``: horizontal and diagonal paths scan the width (vectorised over the rows),
      vertical ones the height; a dozen tensor operations per step (~46,000 per KITTI pair);
    * ``triton``: one launch per path (`sgm_triton.accumulate_path`), the scan looping inside
      (with a transposed copy of the volume for the paths that step along x);
    * ``auto``: triton on CUDA where Triton imports (and the volume fits its 32-bit offsets,
      `sgm_triton.fits`), else torch.
    """
    from sgn_ros.stereo import sgm_triton

    order = path_order(paths)
    chosen = resolve_backend(backend, cost.device)
    unfit = None  # why auto leaves a usable kernel aside for this volume
    if cost.dtype != torch.float32:
        unfit = f"it takes float32 costs, not {cost.dtype}"
    elif not sgm_triton.fits(cost):
        unfit = f"a cost volume of {tuple(cost.shape)} is beyond its 32-bit offsets"
    if chosen == "triton" and backend == "auto" and unfit:
        chosen = "torch"
    if chosen == "torch" and backend == "auto" and cost.is_cuda and not _SLOW_WARNED:
        _warn_slow(unfit if sgm_triton.usable_on(cost.device) else sgm_triton.why_not(cost.device))
    if chosen == "triton":
        try:
            # the paths that step along x walk lines along y: a transposed copy (H axis of stride 1)
            # keeps their loads and stores coalesced; the vertical ones read the volume as it is
            across = cost.transpose(2, 3).contiguous().transpose(2, 3)
            total = torch.zeros_like(across)
            for r in order[:-2]:
                sgm_triton.accumulate_path(across, total, r, p1, p2)
            del across
            total = total.contiguous()
            for r in order[-2:]:
                sgm_triton.accumulate_path(cost, total, r, p1, p2)
            return total
        except (torch.cuda.OutOfMemoryError, ValueError):  # out of memory, or bad input: not the kernel's fault
            raise
        except Exception as e:  # a Triton or driver that cannot build or launch the kernel
            if backend == "triton":
                raise
            _warn_slow(f"it failed on {cost.device}: {sgm_triton.disable(e)}; not tried again in this process")
    shifts = tuple(dy for dx, dy in order if dx == 1)  # the rightward paths' (and leftward) steps in y
    horiz = cost.permute(3, 0, 1, 2).contiguous()  # (W, B, D, H)
    acc = torch.zeros_like(horiz)
    _scan(horiz, shifts, p1, p2, acc)  # rightwards: r = (1, s)
    _scan(horiz, shifts, p1, p2, acc, reverse=True)  # leftwards: r = (-1, s)
    del horiz
    acc = acc.permute(3, 1, 2, 0).contiguous()  # (H, B, D, W)
    vert = cost.permute(2, 0, 1, 3).contiguous()
    _scan(vert, (0,), p1, p2, acc)  # down: r = (0, 1)
    _scan(vert, (0,), p1, p2, acc, reverse=True)  # up: r = (0, -1)
    return acc.permute(1, 2, 0, 3).contiguous()


def path_cost(cost: torch.Tensor, direction: tuple[int, int], p1: float, p2: float) -> torch.Tensor:
    """L_r (B, D, H, W) of one path direction (dx, dy) in {-1, 0, 1}^2 \\ (0, 0), as aggregate sums."""
    dx, dy = direction
    if (dx, dy) == (0, 0) or abs(dx) > 1 or abs(dy) > 1:
        raise ValueError(f"path_cost: direction must be a unit step (dx, dy), got {direction}")
    if dx == 0:  # scan the height; the width is the vectorised axis
        seq = cost.permute(2, 0, 1, 3).contiguous()
        return _scan(seq, (0,), p1, p2, torch.zeros_like(seq), reverse=dy < 0).permute(1, 2, 0, 3)
    seq = cost.permute(3, 0, 1, 2).contiguous()
    return _scan(seq, (dy,), p1, p2, torch.zeros_like(seq), reverse=dx < 0).permute(1, 2, 3, 0)


def right_disparity(aggregated: torch.Tensor) -> torch.Tensor:
    """Integer disparity (B, H, W) of the right image from the left-referenced volume S.

    Right pixel xr matches left pixel xr + d, so its cost for d is S(y, xr + d, d) (OpenCV's disp2);
    disparities with xr + d outside the image do not count. The smallest d wins a tie. One gather
    and one argmin over the volume (a loop over disparities would be ~4 launches per disparity on
    a GPU).
    """
    b, n_d, h, w = aggregated.shape
    x = torch.arange(w, device=aggregated.device)
    d = torch.arange(n_d, device=aggregated.device)
    column = d[:, None] + x[None, :]  # (D, W)
    outside = column >= w
    along = aggregated.gather(3, column.clamp_max(w - 1)[None, :, None, :].expand(b, n_d, h, w))
    return along.masked_fill_(outside[None, :, None, :], float("inf")).argmin(1)


def lr_consistent(disp_left: torch.Tensor, disp_right: torch.Tensor, max_diff: float) -> torch.Tensor:
    """Mask (B, H, W): |d_L(x) - d_R(x - round(d_L(x)))| <= max_diff (False where x - d_L < 0)."""
    w = disp_left.shape[-1]
    x = torch.arange(w, device=disp_left.device)
    xr = x - torch.round(disp_left).long()
    inside = xr >= 0
    d_r = torch.gather(disp_right.to(disp_left.dtype), -1, xr.clamp_min(0))
    return inside & ((disp_left - d_r).abs() <= max_diff)


def _run_ids(join: torch.Tensor) -> torch.Tensor:
    """Flat run index of each pixel of a (B, R, L) grid whose neighbours along L are joined where
    join (B, R, L - 1) is True; runs never cross rows."""
    starts = torch.ones(*join.shape[:-1], join.shape[-1] + 1, dtype=torch.long, device=join.device)
    starts[..., 1:] = (~join).long()
    return starts.reshape(-1).cumsum(0) - 1


def remove_speckles(disp: torch.Tensor, max_size: int, max_diff: float) -> torch.Tensor:
    """Set to 0 the connected regions of <= max_size valid pixels (OpenCV's filterSpeckles).

    Neighbours (4-connected, both > 0) join a region when their disparities differ by at most
    max_diff. Regions are labelled by minimum-label propagation, whole runs of joined pixels along
    rows and columns at once, with pointer jumping; each iteration is a few whole-image ops.
    """
    if max_size <= 0:
        return disp
    b, h, w = disp.shape
    valid = disp > 0
    join_x = valid[..., 1:] & valid[..., :-1] & ((disp[..., 1:] - disp[..., :-1]).abs() <= max_diff)
    join_y = valid[:, 1:] & valid[:, :-1] & ((disp[:, 1:] - disp[:, :-1]).abs() <= max_diff)
    # run ids along rows (W last) and columns (H last): a new run starts where the join breaks
    runs_x = _run_ids(join_x)
    runs_y = _run_ids(join_y.transpose(1, 2)).view(b, w, h).transpose(1, 2).reshape(-1)
    labels = torch.arange(b * h * w, device=disp.device)
    while True:
        new = labels
        for runs in (runs_x, runs_y):  # every pixel takes its run's minimum label
            lows = torch.full((b * h * w,), b * h * w, device=disp.device, dtype=labels.dtype)
            new = lows.scatter_reduce_(0, runs, new, "amin")[runs]
        for _ in range(4):  # pointer jumping: adopt the label of one's label
            new = new[new]
        if torch.equal(new, labels):
            break
        labels = new
    labels = labels.view(b, h, w)
    flat = labels.view(-1)  # region sizes: bincount's counts, without its wait for the largest label
    sizes = torch.zeros_like(flat).index_add_(0, flat, torch.ones_like(flat))
    return torch.where(valid & (sizes[labels] <= max_size), torch.zeros_like(disp), disp)


def median_filter(disp: torch.Tensor, size: int) -> torch.Tensor:
    """size x size median of a (B, H, W) map (replicated border); invalid (0) pixels stay 0."""
    pad = size // 2
    padded = F.pad(disp[:, None], (pad, pad, pad, pad), mode="replicate")
    med = F.unfold(padded, size).median(1).values.view_as(disp)
    return torch.where(disp > 0, med, disp)


def disparity_sgm(
    left: torch.Tensor,
    right: torch.Tensor,
    params: StereoParams = DEFAULT_PARAMS,
    *,
    paths: int = 8,
    median: int = 0,
    backend: str = "auto",
) -> torch.Tensor:
    """Left-image disparity in pixels, float32, 0 where invalid, on the inputs' device.

    Args:
        left, right: rectified (H, W) grey or (B, 1|3, H, W) grey / RGB images on one device,
            0..255 scale (uint8 or float).
        params: as for disparity_sgbm; uniqueness_ratio 0 and disp12_max_diff < 0 turn those
            checks off, speckle_window_size 0 the speckle filter. min_disparity is applied by
            disparity_to_depth, as for SGBM.
        paths: SGM directions, 8 (as OpenCV's full SGBM) or 4 (faster).
        median: odd median-filter size applied last (0: none; OpenCV applies none).
        backend: path aggregation (`aggregate`): auto (Triton on CUDA, else torch) | torch | triton.

    Returns:
        (H, W) or (B, H, W) like the input.
    """
    if not isinstance(left, torch.Tensor) or not isinstance(right, torch.Tensor):
        raise ValueError("disparity_sgm: left and right must be torch tensors (see stereo_depth_sgm for arrays)")
    if left.shape != right.shape:
        shapes = f"left {tuple(left.shape)} and right {tuple(right.shape)}"
        raise ValueError(f"disparity_sgm: {shapes} images differ in size")
    if left.device != right.device:
        raise ValueError(f"disparity_sgm: left on {left.device}, right on {right.device}")
    n_d, blk = int(params.num_disparities), int(params.block_size)
    if n_d <= 0:
        raise ValueError(f"disparity_sgm: num_disparities must be positive, not {n_d}")
    if blk < 1 or blk % 2 == 0:
        raise ValueError(f"disparity_sgm: block_size must be odd and positive, not {blk}")
    if median and (median < 0 or median % 2 == 0):
        raise ValueError(f"disparity_sgm: median must be 0 or an odd size, not {median}")
    if left.ndim < 2 or left.shape[-1] < 2 or left.shape[-2] < 1:
        raise ValueError(f"disparity_sgm: images must be at least 1 x 2 pixels (H x W), got {tuple(left.shape)}")
    squeeze = left.ndim == 2
    gl, gr = to_grey(left), to_grey(right)
    p1, p2 = 8.0 * blk * blk, 32.0 * blk * blk  # as disparity_sgbm gives OpenCV
    agg = aggregate(cost_volume(gl, gr, n_d, blk), p1, p2, paths, backend)
    best_cost, best = agg.min(1)  # (B, H, W)
    valid = torch.ones_like(best, dtype=torch.bool)
    # parabola through the neighbours' costs (OpenCV's formula), none at the range ends
    inner = (best > 0) & (best < n_d - 1)
    near = torch.stack([(best - 1).clamp_min(0), best, (best + 1).clamp_max(n_d - 1)], 1)
    lo, _, hi = agg.gather(1, near).unbind(1)
    denom = (lo + hi - 2 * best_cost).clamp_min(1.0)
    disp = best.to(torch.float32) + torch.where(inner, (lo - hi) / (2 * denom), torch.zeros_like(denom))
    if params.disp12_max_diff >= 0:
        valid &= lr_consistent(best.to(torch.float32), right_disparity(agg), float(params.disp12_max_diff))
    if params.uniqueness_ratio > 0:  # the best cost beyond the winner's neighbours; agg is spent after this
        others = agg.scatter_(1, near, float("inf")).amin(1)
        valid &= others * (100 - params.uniqueness_ratio) >= best_cost * 100
    del agg
    disp = torch.where(valid, disp, torch.zeros_like(disp)).clamp_min(0)
    disp = remove_speckles(disp, int(params.speckle_window_size), float(params.speckle_range))
    if median:
        disp = median_filter(disp, median)
    return disp[0] if squeeze else disp


def stereo_depth_sgm(
    left: np.ndarray,
    right: np.ndarray,
    p2: np.ndarray,
    p3: np.ndarray,
    params: StereoParams = DEFAULT_PARAMS,
    device: str | torch.device = "cpu",
    **sgm_options: int,
) -> np.ndarray:
    """Metric depth (H, W) float32 in the left camera, 0 where matching failed; drop-in for stereo_depth.

    Args:
        left, right: rectified RGB (H, W, 3) or grey (H, W) uint8 arrays, as stereo_depth takes.
        device: where to match ("cuda" on a GPU).
        sgm_options: paths, median (see disparity_sgm).
    """
    left, right = np.asarray(left), np.asarray(right)
    if left.shape != right.shape:
        raise ValueError(f"stereo_depth_sgm: left {left.shape} and right {right.shape} images differ in size")
    baseline, focal = stereo_baseline_focal(p2, p3)

    def tensor(img: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(img)).to(device)
        return t.permute(2, 0, 1)[None] if t.ndim == 3 else t

    with torch.no_grad():
        disp = disparity_sgm(tensor(left), tensor(right), params, **sgm_options)
    disp = disp.reshape(left.shape[:2]).cpu().numpy()
    return disparity_to_depth(disp, baseline, focal, params.min_disparity)
