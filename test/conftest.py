# Shared test fixtures. `synthetic_root`: one small synthetic SemanticKITTI sequence, generated
# once per test session and prepared exactly as real data is (labels + pseudo-LiDAR through the
# `sgn-ros preprocess` code paths), so dataset, trainer and evaluation tests read real files.
# `from_install_tree`: Python code run in a process that imports sgn_ros from the colcon install
# tree alone, as `ros2 run` / `ros2 launch` do (the C extensions must be built there too).
"""Session fixtures: a prepared synthetic SemanticKITTI tree; runs from the colcon install tree."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

#: frames of the synthetic sequence: voxel labels every 5th frame -> 4 samples (0, 5, 10, 15)
SYNTH_FRAMES = 16
SYNTH_SEED = 0
#: pseudo-LiDAR tag; the configs' default data.depth_model, so default configs read it as is
SYNTH_DEPTH_TAG = "msnet3d"


@pytest.fixture(scope="session", autouse=True)
def _limit_threads() -> None:
    """The test machine has 2 cores shared by many processes."""
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def from_install_tree() -> Callable[[str], tuple[str, str]]:
    """`run(code)` -> (the install tree's site-packages, stdout of `python -c code` run with that
    folder first on sys.path, without PYTHONPATH and outside the repository). Skips the test
    where there is no install tree (make ros-build makes it)."""
    root = Path(__file__).resolve().parents[1]
    sites = sorted((root / "install" / "sgn_ros" / "lib").glob("python3*/site-packages"))
    if not sites:
        pytest.skip("no colcon install tree: make ros-build")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(code: str) -> tuple[str, str]:
        out = subprocess.run([sys.executable, "-c", "import sys; sys.path[:0] = [sys.argv[1]]; " + code,
                              str(sites[0])], env=env, cwd="/", capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return str(sites[0]), out.stdout

    return run


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a SemanticKITTI-layout tree (``root/dataset/...``) with sequence "00":

    image_2/image_3 (376 x 1241), calib.txt, poses.txt, times.txt, voxels/ every 5th frame
    (frames 0, 5, 10, 15), depth maps ``sequences/00/depth/*.npy`` from the renderer,
    preprocessed labels ``dataset/labels/00/NNNNNN_1_1.npy, _1_2.npy`` and pseudo-LiDAR
    ``dataset/sequences_msnet3d_lidar/sequences/00/NNNNNN.bin`` for every frame.
    Read-only for tests: copy it before changing anything.
    """
    from sgn_ros.data.preprocess import preprocess_depth_to_lidar, preprocess_labels
    from sgn_ros.data.synth import generate_sequence

    root = tmp_path_factory.mktemp("synthetic_kitti")
    seq_dir = Path(generate_sequence(root, sequence="00", frames=SYNTH_FRAMES, seed=SYNTH_SEED, depth=True))
    preprocess_labels(root, ["00"])
    depth_dir = str(seq_dir.parent / "{seq}" / "depth")
    preprocess_depth_to_lidar(root, SYNTH_DEPTH_TAG, depth_dir=depth_dir, sequences=["00"])
    return root
