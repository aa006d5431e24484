"""pip / setuptools install of sgn_ros: the offline tools (train, evaluate, synth, ...) without ROS.

Under ROS 2 the package is built by colcon through CMakeLists.txt (ament_cmake), which also
generates the messages of msg/. Metadata lives in setup.cfg.
"""

from pathlib import Path

import sys

from setuptools import Extension, setup


def _tree(src: str, dst: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install every file below `src` into `dst`, keeping sub-folders."""
    out: dict[str, list[str]] = {}
    for p in sorted(Path(src).rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            out.setdefault(str(Path(dst) / p.parent.relative_to(src)), []).append(str(p))
    return sorted(out.items())


# The fused per-voxel passes of sgn_ros.ros.wire (sgn_ros/ros/_cdr_fill.c, plain C on the CPython
# API). Without fused multiply-adds, so that its arithmetic equals the NumPy passes bit for bit.
# A source tree where it is not built falls back to NumPy (same bytes, slower).
_CDR_FILL = Extension(
    "sgn_ros.ros._cdr_fill",
    sources=["sgn_ros/ros/_cdr_fill.c"],
    extra_compile_args=[] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"],
)

# Camera pixels -> the network's normalised input through a per-channel table, one pass
# (sgn_ros/model/_pixels.c); without the build, torch's four passes give the same values.
_PIXELS = Extension(
    "sgn_ros.model._pixels",
    sources=["sgn_ros/model/_pixels.c"],
    extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
)

setup(
    ext_modules=[_CDR_FILL, _PIXELS],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/sgn_ros"]),
        ("share/sgn_ros", ["package.xml"]),
        *_tree("config", "share/sgn_ros/config"),
        *_tree("launch", "share/sgn_ros/launch"),
    ],
)
