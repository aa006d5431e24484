# Keeping large per-frame buffers on the heap (glibc malloc tuning), for processes that move
# multi-megabyte messages every frame: sgn_node, the players, the benchmarks.
#
# Why: glibc returns freed heap memory to the kernel as soon as more than M_TRIM_THRESHOLD
# (128 KiB by default, adjusted upwards only for mmapped chunks) lies free at the top of the heap,
# and serves large requests with fresh mmap()s. A node that publishes ~13 MB of outputs per frame
# (PointCloud2, MarkerArray, SemanticVoxelGrid of a 190k-voxel scene) and receives a 1.4 MB image
# then page-faults every one of those bytes in again on every frame, in Fast DDS's payload
# buffers, rclpy's serialized messages and NumPy's temporaries alike: measured on the 2-core
# machine, 4.2 MB from one process to another took 13 ms, and 5 ms with the heap kept
# (README, "Transport"). Larger trim threshold and top pad keep up to a few hundred MB of freed
# memory mapped for the next frame; the resident size of the process grows by about one
# frame's worth of buffers, not without bound (the pages are reused).
#
# Only glibc has mallopt(); elsewhere (musl, macOS) this does nothing and says so.
"""`keep_heap`: glibc mallopt so that per-frame megabyte buffers are reused, not re-faulted."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["keep_heap"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: glibc's limit for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2)
_MMAP_MAX = 32 << 20

def keep_heap(trim_threshold: int = 512 << 20, top_pad: int = 64 << 20, mmap_threshold: int = _MMAP_MAX) -> bool:
    """Tune this process's glibc allocator to keep freed memory for reuse (see module comment).

    Args:
        trim_threshold: bytes free at the top of the heap before glibc gives them back.
        top_pad: extra bytes requested from the kernel at each heap growth.
        mmap_threshold: requests at least this large are mmapped (at most 32 MiB on 64-bit glibc).

    Returns:
        True when applied; False without glibc (nothing changed) or when
        SGN_ROS_KEEP_HEAP=0 is set (to compare, or where memory is tight).
    Raises:
        ValueError: a negative size, or mmap_threshold above glibc's 32 MiB limit.
    """
    for name, v in (("trim_threshold", trim_threshold), ("top_pad", top_pad), ("mmap_threshold", mmap_threshold)):
        if int(v) < 0:
            raise ValueError(f"{name}: expected bytes >= 0, got {v}")
    if int(mmap_threshold) > _MMAP_MAX:
        raise ValueError(f"mmap_threshold: glibc accepts at most {_MMAP_MAX} bytes, got {mmap_threshold}")
    if os.environ.get("SGN_ROS_KEEP_HEAP", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = True
    for param, value in ((_M_TRIM_THRESHOLD, trim_threshold), (_M_TOP_PAD, top_pad),
                         (_M_MMAP_THRESHOLD, mmap_threshold)):
        ok &= mallopt(param, int(value)) == 1
    return ok
