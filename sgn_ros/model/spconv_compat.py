# spconv import point for every sparse module of SGN.
#
# spconv 2.x asks CUDA for its current stream unconditionally when it builds indice pairs in
# backward (spconv issue #366), so on a machine without CUDA the backward of a SubMConv3d raises.
# The CPU kernels ignore the stream argument: replacing `get_current_stream` in the spconv
# modules that imported it by a function returning 0 (the null stream) makes CPU training work.
# The patch is applied only when CUDA is unavailable; on a GPU machine spconv is left untouched.
#
# A second, independent fix: spconv 2.3.8's CPU gather-GEMM-scatter path (`ops.indice_conv` and
# `ops.indice_conv_backward`) gives wrong results, varying from call to call, when torch runs
# several intra-op threads and the sparse tensor is large (seen here: ~130k voxels, 2 threads,
# errors of order 10 against dense conv3d; 1 thread is always right). Those two functions are
# wrapped so that, for CPU tensors only, they run with one torch thread (the previous count is
# restored). CUDA tensors are not affected.
#
# Nothing happens at import: `setup_spconv(device)` applies what a device needs, explicitly and
# idempotently (the model calls it when it is built and whenever it is moved, the predictor for
# its device). The convolution algorithm is a property of the device too: `place_sparse_convs`
# sets every sparse conv of a module to Native on the CPU (the only CPU path) and to the build's
# implicit GEMM on CUDA, once per placement - never in a forward.
"""spconv.pytorch and its explicit per-device set-up (CPU backward / threading fixes, conv algorithm)."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import torch

try:
    import spconv.pytorch as spconv
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "sgn_ros.model needs spconv 2.x (pip install spconv==2.3.8 for CPU, spconv-cu12x for CUDA)"
    ) from e

__all__ = [
    "spconv",
    "setup_spconv",
    "conv_algorithm",
    "place_sparse_convs",
    "sparse_convs_to",
    "spconv_cpu_patched",
    "apply_cpu_patch",
    "apply_cpu_thread_guard",
]

#: spconv modules that bind `get_current_stream` at import time (all must be patched).
_STREAM_USERS = ("spconv.pytorch.cppcore", "spconv.pytorch.ops", "spconv.pytorch.hash", "spconv.pytorch.utils")


def _null_stream() -> int:
    """The CUDA null stream handle; CPU kernels accept and ignore it."""
    return 0


def apply_cpu_patch() -> bool:
    """Route spconv's stream queries to the null stream when CUDA is unavailable.

    Idempotent. Returns True if spconv is (now) patched, False when CUDA is available and the
    library is left as it is.
    """
    if torch.cuda.is_available():
        return False
    for name in _STREAM_USERS:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # pragma: no cover - module layout of other spconv releases
            continue
        if getattr(mod, "get_current_stream", None) is not None and mod.get_current_stream is not _null_stream:
            mod.get_current_stream = _null_stream
    return True


def _single_threaded_on_cpu(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(features: torch.Tensor, *args, **kwargs):
        n = torch.get_num_threads()
        if features.is_cuda or n == 1:
            return fn(features, *args, **kwargs)
        torch.set_num_threads(1)
        try:
            return fn(features, *args, **kwargs)
        finally:
            torch.set_num_threads(n)

    wrapper._sgn_ros_guard = True  # type: ignore[attr-defined]
    return wrapper


def apply_cpu_thread_guard() -> None:
    """Run spconv's CPU sparse-conv kernels single-threaded (idempotent; see the module header)."""
    ops = importlib.import_module("spconv.pytorch.ops")
    for name in ("indice_conv", "indice_conv_backward"):
        fn = getattr(ops, name)
        if not getattr(fn, "_sgn_ros_guard", False):
            setattr(ops, name, _single_threaded_on_cpu(fn))


def spconv_cpu_patched() -> bool:
    """True when the CPU backward fix (null stream) is active in this process."""
    ops = importlib.import_module("spconv.pytorch.ops")
    return getattr(ops, "get_current_stream", None) is _null_stream


def setup_spconv(device: torch.device | str) -> None:
    """Prepare spconv for sparse convolutions on `device` (idempotent; call before using it).

    CPU: the thread guard, and the null-stream patch when CUDA is unavailable. CUDA: nothing
    (the library is used as it is).
    """
    if torch.device(device).type == "cpu":
        apply_cpu_patch()
        apply_cpu_thread_guard()


def conv_algorithm(device: torch.device | str, cpu_only_build: bool | None = None) -> spconv.ConvAlgo:
    """The sparse-conv algorithm for `device`: Native on the CPU (the only CPU path), the
    build's default implicit GEMM elsewhere (Native on a CPU-only build of spconv).

    `cpu_only_build` None = this installation's build (an argument so that the choice for a
    CUDA build can be tested on a CPU-only machine).
    """
    from spconv.core import ConvAlgo

    if cpu_only_build is None:
        from spconv.cppconstants import CPU_ONLY_BUILD as cpu_only_build
    if torch.device(device).type == "cpu" or cpu_only_build:
        return ConvAlgo.Native
    return ConvAlgo.MaskImplicitGemm


def place_sparse_convs(
    module: torch.nn.Module, device: torch.device | str, cpu_only_build: bool | None = None
) -> None:
    """Set up spconv for `device` and give every sparse conv of `module` its algorithm there."""
    setup_spconv(device)
    algo = conv_algorithm(device, cpu_only_build)
    for m in module.modules():
        if isinstance(m, spconv.conv.SparseConvolution):
            m.algo = algo


def sparse_convs_to(module: torch.nn.Module, dtype: torch.dtype) -> int:
    """Cast the weights (and biases) of every sparse conv of `module` to `dtype`; returns how many.

    float16 inference on CUDA: spconv runs half kernels only when features and weights are both
    half, and autocast does not cast spconv's weights, so the predictor's fp16 mode casts them
    once here (`SparseResBlock` then feeds them half features). Everything else keeps float32
    parameters under autocast. Never used on the CPU (no float16 sparse kernels there).
    """
    n = 0
    for m in module.modules():
        if isinstance(m, spconv.conv.SparseConvolution):
            m.to(dtype)
            n += 1
    return n
