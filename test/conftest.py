# Shared test fixtures. `synthetic_root`: one small synthetic SemanticKITTI sequence, generated
# once per test session and prepared exactly as real data is (labels + pseudo-LiDAR through the
# `sgn-ros preprocess` code paths), so dataset, trainer and evaluation tests read real files.
"""Session fixtures: a prepared synthetic SemanticKITTI tree."""

from __future__ import annotations

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
