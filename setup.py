"""pip / setuptools install of sgn_ros: the offline tools (train, evaluate, synth, ...) without ROS.

Under ROS 2 the package is built by colcon through CMakeLists.txt (ament_cmake), which also
generates the messages of msg/. Metadata lives in setup.cfg.
"""

from pathlib import Path

from setuptools import setup


def _tree(src: str, dst: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install every file below `src` into `dst`, keeping sub-folders."""
    out: dict[str, list[str]] = {}
    for p in sorted(Path(src).rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            out.setdefault(str(Path(dst) / p.parent.relative_to(src)), []).append(str(p))
    return sorted(out.items())


setup(
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/sgn_ros"]),
        ("share/sgn_ros", ["package.xml"]),
        *_tree("config", "share/sgn_ros/config"),
        *_tree("launch", "share/sgn_ros/launch"),
    ],
)
