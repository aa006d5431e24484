# The SGM path scans as one Triton kernel launch per path direction, for CUDA. The torch scan in
# sgn_ros.stereo.sgm runs a dozen whole-tensor operations per step of a scan; a KITTI pair has
# 2 x 1241 + 2 x 376 steps in 8 directions, i.e. ~46,000 dispatched kernels per pair: on a GPU
# the launch overhead alone (a few us each) is several hundred ms, far over a 10 Hz camera's
# budget. Here each program keeps one tile of scan lines' costs (all disparities) in registers and
# walks the whole scan in a loop: the per-step work is the same arithmetic in the same float32
# order as the torch scan, so the aggregated volume is bit-identical (tested on the CPU through
# Triton's interpreter, TRITON_INTERPRET=1).
"""Fused SGM path aggregation in Triton (CUDA; Triton's interpreter on the CPU for tests)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs without Triton: sgm.aggregate keeps its torch scan
    triton = None
    tl = None

__all__ = ["AVAILABLE", "INTERPRETER", "ScanPlan", "accumulate_path", "disable", "fits", "scan_plan", "usable_on",
           "why_not"]

#: whether Triton imports here (torch's CUDA wheels bring it; CPU development installs it for tests)
AVAILABLE = triton is not None
#: whether Triton was imported with TRITON_INTERPRET=1: it then runs kernels in its interpreter on
#: CPU tensors (NumPy, step by step), and cannot compile them. Triton decides this once, when it is
#: imported (its own library functions are made for one mode or the other), so it is read from
#: what Triton made, not from the environment now.
INTERPRETER = AVAILABLE and type(tl.zeros).__name__ == "InterpretedFunction"
#: scan lines per program: small tiles give a horizontal scan (376 lines) enough programs
LANES = 8
#: warps per program: 8 x 32 threads share the tile (192 disparities: 256 x 8, 8 values each); ptxas gives
#: 128 registers a thread and no spills for sm_80 / sm_90 (4 warps: 237 registers)
NUM_WARPS = 8
#: why the kernel is not used in this process (`disable`): a failed build or launch; None = usable
DISABLED: str | None = None


def usable_on(device: torch.device) -> bool:
    """Whether `accumulate_path` can run on tensors of `device`: CUDA with Triton, or CPU tensors
    under Triton's interpreter."""
    if not AVAILABLE or DISABLED is not None:
        return False
    return device.type == ("cpu" if INTERPRETER else "cuda")


def why_not(device: torch.device) -> str:
    """Why `usable_on(device)` is False, for error messages."""
    if not AVAILABLE:
        return "the triton package is not installed (torch's CUDA wheels bring it)"
    if DISABLED is not None:
        return f"it failed in this process: {DISABLED}"
    if INTERPRETER:
        return f"Triton runs in its interpreter here (TRITON_INTERPRET=1): CPU tensors only, not {device}"
    return f"it runs on CUDA, not on {device} (CPU tensors need TRITON_INTERPRET=1 before triton is imported)"


def fits(volume: torch.Tensor) -> bool:
    """Whether the kernel's 32-bit offsets reach every element of one image of `volume` (B, D, H, W)
    (the batch offset is 64-bit): true up to ~2^31 elements a pair, e.g. 256 disparities of an
    8-megapixel (4K) pair."""
    reach = sum((n - 1) * abs(st) for n, st in zip(volume.shape[1:], volume.stride()[1:]) if n)
    return reach < 2**31


def _path_kernel(
    cost, out, scratch,
    D, n_steps, n_pos, shift, start,
    s_cb, s_cd, s_cs, s_cl,
    s_ob, s_od, s_os, s_ol,
    p1, p2,
    FORWARD: tl.constexpr, BLOCK_D: tl.constexpr, LANES: tl.constexpr,
):
    """out += L_r, the path cost of one direction r, for one tile of LANES scan lines of image b.

    The scan walks one image axis (the "step" axis, n_steps long: first to last if FORWARD, else
    last to first); the lines lie along the other (the "lane" axis, n_pos long). Line j is at lane
    position j + shift * i + start at step i (shift = r's component along the lane axis: 0 for a
    straight path, +-1 for a diagonal, whose lines enter and leave the image). Where a line is
    outside, its state is reset to 0, so that the path starts afresh (L = C) where it enters; a
    program walks only the steps where one of its lines is inside. Strides are in elements:
    (batch, disparity, step axis, lane axis) of cost and of out.
    Each step, for every disparity d of a line whose predecessor state is S:
        L = (min(S[d], min(S[d-1], S[d+1]) + p1, min(S) + p2) - min(S)) + C[d]
    in exactly that float32 order (sgm._scan's), S[-1] = S[D] = +inf.
    """
    tile = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    j = tl.arange(0, LANES)
    first = tile * LANES + start  # lane position of the tile's first line at step 0
    ds = tl.arange(0, BLOCK_D)
    d_ok = ds < D
    # this program's two scratch buffers (BLOCK_D + 2 rows each; rows 0 and BLOCK_D + 1 stay +inf):
    # the state goes through them to read each disparity's neighbours d - 1 and d + 1
    prog = tl.program_id(1) * tl.num_programs(0) + tile
    base = scratch + prog.to(tl.int64) * (2 * (BLOCK_D + 2) * LANES)
    rows = (ds[:, None] + 1) * LANES + j[None, :]
    # the steps where any line of the tile is inside: 0 <= first + j + shift * i < n_pos
    i_lo = 0
    i_hi = n_steps
    if shift > 0:
        i_lo = tl.maximum(i_lo, -(first + LANES - 1))
        i_hi = tl.minimum(i_hi, n_pos - first)
    if shift < 0:
        i_lo = tl.maximum(i_lo, first - n_pos + 1)
        i_hi = tl.minimum(i_hi, first + LANES)
    state = tl.where(d_ok[:, None], tl.full((BLOCK_D, LANES), 0.0, tl.float32), float("inf"))
    for i in range(i_lo, i_hi):
        step = i if FORWARD else n_steps - 1 - i
        pos = first + j + shift * i
        m = d_ok[:, None] & ((pos >= 0) & (pos < n_pos))[None, :]
        # this step's costs and sums first: their latency overlaps the state's round trip below
        c = tl.load(cost + b * s_cb + ds[:, None] * s_cd + step * s_cs + pos[None, :] * s_cl, mask=m, other=0.0)
        o = out + b * s_ob + ds[:, None] * s_od + step * s_os + pos[None, :] * s_ol
        acc = tl.load(o, mask=m, other=0.0)
        buf = base + (i % 2) * ((BLOCK_D + 2) * LANES)
        tl.store(buf + rows, state)
        tl.debug_barrier()
        below = tl.load(buf + rows - LANES)  # S[d - 1]
        above = tl.load(buf + rows + LANES)  # S[d + 1]
        low = tl.min(state, axis=0)
        cur = tl.minimum(state, tl.minimum(below, above) + p1)
        cur = tl.minimum(cur, low[None, :] + p2)
        cur = (cur - low[None, :]) + c
        tl.store(o, acc + cur, mask=m)
        # outside the image: a path re-entering starts afresh (S = 0); the padded disparities stay +inf
        state = tl.where(m, cur, tl.where(d_ok[:, None], 0.0, float("inf")))


def disable(error: BaseException) -> str:
    """Stop using the kernel in this process after `error` (Triton or the driver could not build or
    launch it), so that sgm.aggregate's `auto` falls back to the torch scan once, not per call."""
    global DISABLED
    DISABLED = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    return DISABLED


_KERNEL: list[Any] = []


def _kernel() -> Any:
    """The kernel, compiled by Triton (CUDA) or run by its interpreter (`INTERPRETER`); made once."""
    if not _KERNEL:
        if INTERPRETER:
            from triton.runtime.interpreter import InterpretedFunction

            _KERNEL.append(InterpretedFunction(_path_kernel))
        else:
            # sizes and the outer strides not specialised: a warm-up at the network's input size
            # (sgn_ros' predictor) and any camera's pair then share one build per direction kind
            # (the lane strides, 1 for both volumes, stay specialised: contiguous lines)
            _KERNEL.append(triton.jit(_path_kernel, do_not_specialize=[
                "D", "n_steps", "n_pos", "start", "s_cb", "s_cd", "s_cs", "s_ob", "s_od", "s_os"]))
    return _KERNEL[0]


@dataclass(frozen=True)
class ScanPlan:
    """How one direction's scan is laid out over an H x W image (what `accumulate_path` launches).

    Paths with dx != 0 step along x (n_steps = W) with their lines along y (n_pos = H), shifted
    by dy per step; vertical ones step along y with lines along x. `forward`: first to last step.
    A line j sits at lane position j + shift * i + start at step i; there are n_lanes lines (a
    diagonal's lines enter and leave the image), LANES to a program. `steps_per_program`: the
    most steps one program walks (a diagonal's program only walks where its lines are inside).
    """

    forward: bool
    n_steps: int
    n_pos: int
    shift: int
    start: int
    n_lanes: int
    programs: int
    steps_per_program: int


def scan_plan(h: int, w: int, direction: tuple[int, int]) -> ScanPlan:
    """The `ScanPlan` of direction r = (dx, dy) over an h x w image."""
    dx, dy = direction
    forward, n_steps, n_pos, shift = (dx > 0, w, h, dy) if dx != 0 else (dy > 0, h, w, 0)
    n_lanes = n_pos + (n_steps - 1) * abs(shift)
    steps = min(n_steps, n_pos + LANES - 1) if shift else n_steps
    return ScanPlan(forward, n_steps, n_pos, shift, -(n_steps - 1) * max(shift, 0), n_lanes,
                    -(-n_lanes // LANES), steps)


def accumulate_path(cost: torch.Tensor, out: torch.Tensor, direction: tuple[int, int], p1: float,
                    p2: float) -> torch.Tensor:
    """out += L_r for the direction r = (dx, dy) (a unit step, (0, 0) excluded): one launch.

    cost, out: float32 (B, D, H, W) on one device, any strides (out written in place). Paths with
    dx != 0 scan the width (lines along the rows: give volumes whose H axis has stride 1, e.g. a
    transposed copy, for coalesced access), vertical ones the height. Launches on one stream run
    in order, so a sequence of calls adds the paths in the order given (see sgm.aggregate).
    """
    if not usable_on(cost.device):
        raise ValueError(f"sgm: backend triton is not usable: {why_not(cost.device)}")
    dx, dy = (int(v) for v in direction)
    if (dx, dy) == (0, 0) or abs(dx) > 1 or abs(dy) > 1:
        raise ValueError(f"sgm: direction must be a unit step (dx, dy), got {direction}")
    if cost.dtype != torch.float32 or out.dtype != torch.float32 or cost.shape != out.shape or cost.ndim != 4:
        raise ValueError(f"sgm: cost and out must be float32 (B, D, H, W) alike, got {cost.dtype} "
                         f"{tuple(cost.shape)} and {out.dtype} {tuple(out.shape)}")
    if out.device != cost.device:
        raise ValueError(f"sgm: cost on {cost.device}, out on {out.device}")
    if not (fits(cost) and fits(out)):
        raise ValueError(f"sgm: a cost volume of {tuple(cost.shape)} is too large for the Triton scan's 32-bit "
                         "offsets; use backend='torch'")
    b, n_d, h, w = cost.shape
    if not (b and n_d and h and w):
        return out
    plan = scan_plan(h, w, (dx, dy))
    (cb, cd, cy, cx), (ob, od, oy, ox) = cost.stride(), out.stride()
    # (batch, disparity, step axis, lane axis) strides of both volumes
    strides = (cb, cd, cx, cy, ob, od, ox, oy) if dx != 0 else (cb, cd, cy, cx, ob, od, oy, ox)
    forward, n_steps, n_pos, shift, start, tiles = (plan.forward, plan.n_steps, plan.n_pos, plan.shift,
                                                    plan.start, plan.programs)
    block_d = triton.next_power_of_2(n_d)
    scratch = torch.full((b * tiles * 2 * (block_d + 2) * LANES,), float("inf"), dtype=torch.float32,
                         device=cost.device)
    # Triton launches on the current CUDA device (and its current stream): make that the volume's
    # own, or a cuda:1 volume would be read by a kernel on cuda:0
    with torch.cuda.device(cost.device) if cost.is_cuda else contextlib.nullcontext():
        _kernel()[(tiles, b)](
            cost, out, scratch,
            n_d, n_steps, n_pos, shift, start,
            *strides,
            float(p1), float(p2),
            FORWARD=forward, BLOCK_D=block_d, LANES=LANES,
            num_warps=NUM_WARPS,
        )
    return out
