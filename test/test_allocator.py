# Tests of sgn_ros.allocator: glibc keeps freed per-frame buffers mapped after keep_heap(), so the
# next frame does not page-fault them in again. Measured on real processes (RSS from /proc), each
# in its own interpreter so that this test process's allocator is left alone.
"""sgn_ros.allocator.keep_heap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sgn_ros.allocator import keep_heap

ROOT = Path(__file__).resolve().parents[1]

# allocate and touch five 20 MB buffers (a frame's outputs and temporaries), free them, report
# the resident size before, while they are held and after they are freed (MiB)
_PROBE = """
import sys
sys.path.insert(0, {root!r})
from sgn_ros.allocator import keep_heap
applied = keep_heap() if {keep} else False

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0

before = rss()
bufs = [bytearray(20_000_000) for _ in range(5)]
for b in bufs:
    b[::4096] = b"x" * len(b[::4096])
held = rss()
del bufs, b
print(applied, before, held, rss())
"""


def _probe(keep: bool, env: dict[str, str] | None = None) -> tuple[bool, float, float, float]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(root=str(ROOT), keep=keep)], capture_output=True,
                         text=True, check=True, env={**os.environ, **(env or {})}, timeout=60)
    applied, before, held, after = out.stdout.split()
    return applied == "True", float(before), float(held), float(after)


@pytest.mark.skipif(not Path("/proc/self/status").exists() or sys.platform != "linux", reason="needs Linux /proc")
def test_freed_frame_buffers_stay_mapped_only_with_keep_heap() -> None:
    applied, before, held, after = _probe(keep=True)
    assert applied
    assert held - before > 90  # the buffers were really touched
    assert held - after < 10, (before, held, after)  # kept for the next frame
    applied, before, held, after = _probe(keep=False)
    assert not applied
    assert held - after > 90, (before, held, after)  # glibc's default: given back at once


def test_switch_and_bad_values() -> None:
    applied, *_ = _probe(keep=True, env={"SGN_ROS_KEEP_HEAP": "0"})
    assert not applied  # turned off by the environment: nothing changed
    with pytest.raises(ValueError, match="trim_threshold"):
        keep_heap(trim_threshold=-1)
    with pytest.raises(ValueError, match="mmap_threshold: glibc accepts at most"):
        keep_heap(mmap_threshold=64 << 20)
