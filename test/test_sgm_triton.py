"""Tests of sgn_ros.stereo.sgm_triton: the fused SGM path scan gives the torch scan's exact bits
(without a GPU in Triton's interpreter, which conftest turns on), builds for NVIDIA GPUs (compiled
ahead of time in a child process, no GPU needed), and keeps the number of launches of a stereo
pair independent of the image size."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sgn_ros.data.stereo import StereoParams
from sgn_ros.runtime import NO_LAUNCH, recorded_ops
from sgn_ros.stereo import sgm, sgm_triton

triton = pytest.importorskip("triton", reason="Triton has wheels for Linux x86_64 only")
#: tests that run the kernel on CPU tensors (a GPU session checks the same on CUDA below)
interpreted = pytest.mark.skipif(not sgm_triton.INTERPRETER, reason="runs in Triton's interpreter (CPU sessions)")

DIRECTIONS = [(dx, dy) for dx, dy in itertools.product((-1, 0, 1), repeat=2) if (dx, dy) != (0, 0)]
P1, P2 = 3.0, 20.0


def _cost(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 50


# (B, D, H, W): D not a power of two, D = 1 (both neighbours out of range), wider than high,
# higher than wide (diagonals leave through the sides), one row, more lines than one tile (LANES)
SHAPES = [(1, 5, 6, 9), (1, 1, 3, 4), (2, 16, 9, 4), (1, 3, 1, 7), (1, 4, 11, 3)]


@interpreted
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_each_path_is_the_torch_scan_bit_for_bit(shape: tuple[int, ...]) -> None:
    cost = _cost(shape, 0)
    for r in DIRECTIONS:
        out = torch.zeros_like(cost)
        sgm_triton.accumulate_path(cost, out, r, P1, P2)
        want = sgm.path_cost(cost, r, P1, P2)
        assert torch.equal(out, want), (r, float((out - want).abs().max()))


@interpreted
def test_adds_to_a_strided_output_and_reads_a_strided_cost() -> None:
    """out += L_r in place, whatever the strides of both volumes."""
    base = _cost((1, 9, 6, 4), 1)  # laid out (B, W, H, D) ...
    cost = base.permute(0, 3, 2, 1)  # ... seen as (B, D, H, W)
    out_store = _cost((1, 6, 9, 4), 2)
    out = out_store.permute(0, 3, 1, 2)  # (B, D, H, W) view of another layout
    before = out.clone()
    sgm_triton.accumulate_path(cost, out, (1, -1), P1, P2)
    assert torch.equal(out, before + sgm.path_cost(cost.contiguous(), (1, -1), P1, P2))


@interpreted
@pytest.mark.parametrize("paths", [4, 8])
def test_aggregate_backends_give_the_same_bits(paths: int) -> None:
    cost = _cost((2, 6, 7, 12), 3).flip(-1)[..., 1:]  # odd width, a sliced volume
    got = sgm.aggregate(cost, P1, P2, paths, backend="triton")
    want = sgm.aggregate(cost, P1, P2, paths, backend="torch")
    assert got.shape == want.shape and torch.equal(got, want)
    # and the fixed order of the sum is the one path_order states
    total = torch.zeros_like(cost)
    for r in sgm.path_order(paths):
        total += sgm.path_cost(cost, r, P1, P2)
    assert torch.equal(total, want)


def _pair(h: int, w: int, shift: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(4)
    tex = np.repeat(rng.integers(0, 256, (h, (w + shift) // 2 + 1), dtype=np.uint8), 2, 1)
    return torch.from_numpy(tex[:, :w].copy()), torch.from_numpy(tex[:, shift : shift + w].copy())


@interpreted
def test_disparity_is_the_same_and_its_launches_do_not_grow_with_the_image() -> None:
    """The whole matcher gives the same disparities with either backend; with the Triton scan the
    number of torch operations per pair stays the same for a twice wider image (the torch scan
    adds a dozen per column)."""
    params = StereoParams(num_disparities=8)
    counts = {}
    for w in (20, 40):
        left, right = _pair(16, w)
        for backend in ("torch", "triton"):
            with recorded_ops() as seen, torch.no_grad():
                disp = sgm.disparity_sgm(left, right, params, backend=backend)
            counts[backend, w] = sum(name not in NO_LAUNCH for name, _ in seen)
            if backend == "torch":
                want = disp
        assert torch.equal(disp, want), w
        assert (disp > 0).float().mean() > 0.5  # it matched something: not two empty maps
    assert counts["triton", 20] == counts["triton", 40], counts
    assert counts["torch", 40] - counts["torch", 20] > 10 * 20, counts  # >10 more per extra column
    assert counts["triton", 40] < counts["torch", 40] / 4, counts


@pytest.mark.slow
def test_kernel_builds_for_nvidia_gpus() -> None:
    """The kernel compiles to PTX and a cubin (through Triton's bundled ptxas) for A100 (sm_80)
    and H100 / H200 (sm_90), in every specialisation aggregate launches: what the interpreter
    runs is also what a GPU can build. Compiling needs Triton imported without its interpreter:
    in a CPU session, a child process does it."""
    if not sgm_triton.INTERPRETER:
        _build_for_nvidia_gpus()
        return
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    code = "import test_sgm_triton as t; t._build_for_nvidia_gpus(); print('built')"
    run = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("built"), run.stdout + run.stderr


def _build_for_nvidia_gpus() -> None:
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler import ASTSource

    assert not sgm_triton.INTERPRETER
    fn = triton.jit(sgm_triton._path_kernel)
    ints = ["D", "n_steps", "n_pos", "shift", "start", "s_cb", "s_cd", "s_cs", "s_cl", "s_ob", "s_od", "s_os", "s_ol"]
    # every run-time integer as such, and as a launch specialises them: a straight or +1 diagonal
    # path (shift 1 becomes a constant) over volumes whose lines are contiguous (lane strides 1)
    specialised = {"shift": 1, "s_cl": 1, "s_ol": 1}
    for arch, forward, special in itertools.product((80, 90), (True, False), (False, True)):
        constexprs = {"FORWARD": forward, "BLOCK_D": 256, "LANES": sgm_triton.LANES, **(specialised if special else {})}
        signature = {"cost": "*fp32", "out": "*fp32", "scratch": "*fp32",
                     **{n: "constexpr" if n in constexprs else "i32" for n in ints},
                     "p1": "fp32", "p2": "fp32", **dict.fromkeys(["FORWARD", "BLOCK_D", "LANES"], "constexpr")}
        kernel = triton.compile(ASTSource(fn, signature, constexprs=constexprs),
                                target=GPUTarget("cuda", arch, 32), options={"num_warps": sgm_triton.NUM_WARPS})
        where = (arch, forward, special)
        assert len(kernel.asm["cubin"]) > 1000, where
        # the one barrier in Triton's IR is tl.debug_barrier's (PTX has more, from reductions and
        # layout changes), and it sits between the state's store to the scratch and its loads
        ir = kernel.asm["ttir"].splitlines()
        barriers = [k for k, line in enumerate(ir) if "barrier" in line]
        assert len(barriers) == 1, where
        assert any("tt.store" in line for line in ir[: barriers[0]]), where
        assert any("tt.load" in line for line in ir[barriers[0]:]), where
        # the tile fits the registers: a spilling kernel would go through local memory every step
        with tempfile.TemporaryDirectory() as tmp:
            ptx = Path(tmp) / "sgm.ptx"
            ptx.write_text(kernel.asm["ptx"])
            report = subprocess.run([get_ptxas(arch).path, "-v", f"--gpu-name=sm_{arch}{'a' if arch == 90 else ''}",
                                     str(ptx), "-o", str(Path(tmp) / "sgm.cubin")], capture_output=True, text=True)
        assert report.returncode == 0, report.stderr
        assert " 0 bytes spill stores" in report.stderr + report.stdout, report.stderr + report.stdout


def test_backend_choice_and_bad_input_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sgm_triton, "DISABLED", None)
    cost = _cost((1, 4, 3, 5), 5)
    assert sgm.resolve_backend("auto", torch.device("cpu")) == "torch"  # never the interpreter by itself
    meta = torch.device("meta")
    with pytest.raises(ValueError, match="backend triton is not usable: .*not (on )?meta"):
        sgm.resolve_backend("triton", meta)
    with pytest.raises(ValueError, match="backend must be one of auto, torch, triton"):
        sgm.aggregate(cost, P1, P2, backend="cuda")
    left, right = _pair(8, 16)
    with pytest.raises(ValueError, match="backend must be one of"):
        sgm.disparity_sgm(left, right, StereoParams(num_disparities=8), backend="fast")
    if sgm_triton.INTERPRETER:  # the launcher's own checks (before any launch)
        out = torch.zeros_like(cost)
        with pytest.raises(ValueError, match="unit step"):
            sgm_triton.accumulate_path(cost, out, (0, 0), P1, P2)
        with pytest.raises(ValueError, match="unit step"):
            sgm_triton.accumulate_path(cost, out, (2, 1), P1, P2)
        with pytest.raises(ValueError, match="float32"):
            sgm_triton.accumulate_path(cost.double(), out, (1, 0), P1, P2)
        with pytest.raises(ValueError, match="alike"):
            sgm_triton.accumulate_path(cost, out[..., :-1], (1, 0), P1, P2)
    # 32-bit offsets within one image: a KITTI pair's volume fits, 384 disparities of 4K do not
    assert sgm_triton.fits(torch.empty(4, 192, 376, 1241, device="meta"))
    assert not sgm_triton.fits(torch.empty(1, 384, 2160, 3840, device="meta"))
    assert not sgm_triton.fits(torch.empty(1, 8, 4, 5, device="meta").as_strided((1, 8, 4, 5), (1, 2**29, 5, 1)))
    # a kernel that failed to build is not tried again, and the reason is given
    sgm_triton.disable(RuntimeError("PTX .version 8.7 does not support .target sm_120\nmore"))
    assert not sgm_triton.usable_on(torch.device("cpu")) and not sgm_triton.usable_on(torch.device("cuda"))
    with pytest.raises(ValueError, match="not usable: it failed in this process: RuntimeError: PTX .version 8.7"):
        sgm.aggregate(cost, P1, P2, backend="triton")
    assert torch.equal(sgm.aggregate(cost, P1, P2), sgm.aggregate(cost, P1, P2, backend="torch"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_kernel_is_the_torch_scan_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU: the compiled kernel equals the torch scan on the same device, at KITTI-like width."""
    monkeypatch.setattr(sgm_triton, "DISABLED", None)
    # KITTI-like width with D = 64 (no padded disparities), and the node's D = 192 (padded to 256)
    for shape in ((1, 64, 48, 620), (1, 192, 24, 100)):
        cost = _cost(shape, 6).cuda()
        assert sgm.resolve_backend("auto", cost.device) == "triton"
        for paths in (4, 8):
            got = sgm.aggregate(cost, P1, P2, paths, backend="triton")
            want = sgm.aggregate(cost, P1, P2, paths, backend="torch")
            assert torch.equal(got, want), (shape, paths, float((got - want).abs().max()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_auto_falls_back_to_the_torch_scan_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel Triton cannot build (here: a launcher that raises as a failed build does) costs one
    warning; the torch scan's result comes back, and the kernel is not tried again."""
    monkeypatch.setattr(sgm_triton, "DISABLED", None)
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("ptxas fatal: unsupported GPU architecture")

    monkeypatch.setattr(sgm_triton, "_kernel", broken)
    monkeypatch.setattr(sgm, "_SLOW_WARNED", False)
    cost = _cost((1, 8, 6, 10), 7).cuda()
    with pytest.warns(RuntimeWarning, match="Triton path scan is not used .*failed on cuda.*ptxas fatal"):
        got = sgm.aggregate(cost, P1, P2)
    assert torch.equal(got, sgm.aggregate(cost, P1, P2, backend="torch"))
    assert sgm.resolve_backend("auto", cost.device) == "torch" and len(calls) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: no second warning
        sgm.aggregate(cost, P1, P2)
    assert len(calls) == 1
