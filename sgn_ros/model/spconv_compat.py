# spconv import point for every sparse module of SGN.
#
# spconv 2.x asks CUDA for its current stream unconditionally when it builds indice pairs in
# backward (spconv issue #366), so on a machine without CUDA the backward of a SubMConv3d raises.
# The CPU kernels ignore the stream argument: replacing `get_current_stream` in the spconv
# modules that imported it by a function returning 0 (the null stream) makes CPU training work.
# The patch is applied only when CUDA is unavailable, once, at import of this module; on a GPU
# machine spconv is left untouched.
#
# A second, independent fix: spconv 2.3.8's CPU gather-GEMM-scatter path (`ops.indice_conv` and
# `ops.indice_conv_backward`) gives wrong results, varying from call to call, when torch runs
# several intra-op threads and the sparse tensor is large (seen here: ~130k voxels, 2 threads,
# errors of order 10 against dense conv3d; 1 thread is always right). Those two functions are
# wrapped so that, for CPU tensors only, they run with one torch thread (the previous count is
# restored). CUDA tensors are not affected.
"""Import spconv.pytorch, patched for CPU backward (no CUDA) and CPU multi-thread correctness."""

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

__all__ = ["spconv", "SPCONV_CPU_PATCHED", "apply_cpu_patch", "apply_cpu_thread_guard"]

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


#: True when the CPU backward fix is active in this process.
SPCONV_CPU_PATCHED = apply_cpu_patch()
apply_cpu_thread_guard()
