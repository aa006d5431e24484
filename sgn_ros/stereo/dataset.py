# Stereo training data for MobileStereoNet: rectified pairs (image_2 / image_3) and the true
# disparity of the left image, from a KITTI-layout tree whose sequences carry true depth
# (`depth/NNNNNN.npy`, float32 metres, 0 = no surface: the synthetic world writes them). The
# disparity is baseline * fx / depth with the baseline and focal length of calib.txt's P2 / P3, so
# the network learns the geometry our pseudo-LiDAR step inverts. Training samples are random crops
# (the reference trains on 256 x 512 crops of KITTI), drawn from a generator seeded by
# (seed, epoch, index): a resumed run sees exactly the crops the interrupted one would have,
# whatever the worker count and the global RNG state.
"""`StereoDisparityDataset`: left/right uint8 crops and true disparity from KITTI-layout sequences."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sgn_ros.data import kitti_io
from sgn_ros.data.kitti_sequence import KittiSequence
from sgn_ros.geometry.camera import stereo_baseline_from_P

__all__ = ["StereoDisparityDataset", "depth_to_disparity", "sequence_dir"]


def sequence_dir(root: str | os.PathLike[str], sequence: str) -> Path:
    """``root/dataset/sequences/<sequence>`` (the SemanticKITTI layout the synthetic world writes)."""
    return Path(root) / "dataset" / "sequences" / str(sequence)


def depth_to_disparity(depth: np.ndarray, baseline_focal: float) -> np.ndarray:
    """Disparity (pixels, float32) = baseline * fx / depth where depth > 0, else 0 (no truth)."""
    d = np.asarray(depth, dtype=np.float32)
    out = np.zeros_like(d)
    valid = np.isfinite(d) & (d > 0)
    out[valid] = baseline_focal / d[valid]
    return out


class StereoDisparityDataset(Dataset):
    """Every frame of `sequences` under `root` that has a right image and a depth map.

    Items are dicts of ``left``, ``right`` (H, W, 3) uint8 RGB tensors, ``disparity`` (H, W) float32
    (0 where there is no truth), ``baseline_focal`` (float, metres x pixels), ``depth`` (H, W)
    float32 metres and ``frame`` ("SS/NNNNNN"). With `crop` (H, W) every item is a random crop of
    that size (training); without, the full frame (evaluation).

    Raises:
        FileNotFoundError / DataError: a missing sequence folder, calib.txt, image or depth file,
            named; a sequence without depth maps (generate it with depth=True / ``sgn-ros synth --depth``).
    """

    def __init__(self, root: str | os.PathLike[str], sequences: list[str] | tuple[str, ...],
                 crop: tuple[int, int] | None = None, seed: int = 0) -> None:
        if not sequences:
            raise ValueError("StereoDisparityDataset: no sequences given")
        self.root = Path(root)
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        if self.crop is not None and min(self.crop) < 1:
            raise ValueError(f"StereoDisparityDataset: crop (H, W) must be positive, got {crop}")
        self.seed = int(seed)
        self.epoch = 0
        self.sequences: dict[str, KittiSequence] = {}
        self.baseline_focal: dict[str, float] = {}
        self.items: list[tuple[str, int]] = []
        for seq in sequences:
            s = KittiSequence(sequence_dir(self.root, seq))
            if not (s.root / "depth").is_dir():
                raise kitti_io.DataFormatError(s.root / "depth", "no true depth maps (the folder is missing); write "
                                               "the sequence with `sgn-ros synth --depth`")
            if self.crop is not None and (s.image_size[0] < self.crop[0] or s.image_size[1] < self.crop[1]):
                raise ValueError(f"{s.root}: images of {tuple(s.image_size)} are smaller than the crop {self.crop}")
            self.sequences[str(seq)] = s
            baseline = stereo_baseline_from_P(s.calib["P2"], s.calib["P3"], str(s.root / "calib.txt"))
            self.baseline_focal[str(seq)] = baseline * float(s.calib["P2"][0, 0])
            self.items += [(str(seq), i) for i in range(len(s))]

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Crops of epoch `epoch` (a pure function of seed, epoch and index)."""
        self.epoch = int(epoch)

    def files(self, index: int) -> list[Path]:
        seq, i = self.items[index]
        root = self.sequences[seq].root
        return [root / "image_2" / f"{i:06d}.png", root / "image_3" / f"{i:06d}.png", root / "depth" / f"{i:06d}.npy"]

    def preflight(self) -> None:
        """Check every file's header and size now (seconds), not when an epoch reaches it."""
        for index in range(len(self)):
            seq, _ = self.items[index]
            h, w = self.sequences[seq].image_size
            left, right, depth = self.files(index)
            for img in (left, right):
                if kitti_io.check_image(img) != (h, w):
                    raise kitti_io.DataFormatError(img, f"image size differs from the sequence's {h}x{w}")
            kitti_io.check_npy(depth, h * w)

    def __getitem__(self, index: int) -> dict[str, object]:
        seq, i = self.items[index]
        s = self.sequences[seq]
        left, right = s.left_image(i), s.right_image(i)
        if right.shape != left.shape:
            raise kitti_io.DataFormatError(s.root / "image_3" / f"{i:06d}.png",
                                           f"right image {right.shape} differs from the left {left.shape}")
        depth = s.depth(i)
        bf = self.baseline_focal[seq]
        disp = depth_to_disparity(depth, bf)
        if self.crop is not None:
            ch, cw = self.crop
            rng = np.random.default_rng((self.seed, self.epoch, index))
            y = int(rng.integers(0, left.shape[0] - ch + 1))
            x = int(rng.integers(0, left.shape[1] - cw + 1))
            left, right = left[y : y + ch, x : x + cw], right[y : y + ch, x : x + cw]
            disp, depth = disp[y : y + ch, x : x + cw], depth[y : y + ch, x : x + cw]
        return {
            "left": torch.from_numpy(np.require(left, requirements=["C", "W"])),
            "right": torch.from_numpy(np.require(right, requirements=["C", "W"])),
            "disparity": torch.from_numpy(np.require(disp, requirements=["C", "W"])),
            "depth": torch.from_numpy(np.require(depth, requirements=["C", "W"])),
            "baseline_focal": bf,
            "frame": f"{seq}/{i:06d}",
        }
