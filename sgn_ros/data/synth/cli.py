# `sgn-ros synth`: write a synthetic SemanticKITTI sequence from the command line.
"""Command-line front end of the synthetic KITTI world."""

from __future__ import annotations

import argparse
import logging
import time

from sgn_ros.config import load_config
from sgn_ros.data.synth import generate_sequence
from sgn_ros.data.synth.world import KITTI_IMAGE_SIZE
from sgn_ros.grid import DEFAULT_GRID

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output root; writes OUT/dataset/sequences/SEQ/")
    parser.add_argument("--sequence", default="00", help="sequence name (digits), default 00")
    parser.add_argument("--frames", type=int, default=20, help="number of camera frames (10 Hz), default 20")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (same seed -> identical files)")
    parser.add_argument("--depth", action="store_true", help="also write depth/NNNNNN.npy (float32 metres)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=list(KITTI_IMAGE_SIZE),
                        help="image height and width, default 376 1241 (KITTI odometry 00-02)")
    parser.add_argument("--config", default=None,
                        help="variant or config yaml whose voxel grid the labels use (default: SemanticKITTI's)")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    try:
        grid = load_config(args.config).grid if args.config else DEFAULT_GRID
        out = generate_sequence(args.out, sequence=args.sequence, frames=args.frames, seed=args.seed,
                                depth=args.depth, image_size=tuple(args.image_size), progress=True, grid=grid)
    except ValueError as e:
        log.error("sgn-ros synth: %s", e)
        return 2
    secs = time.perf_counter() - start
    log.info("wrote %s (%d frames, %.2f s/frame)", out, args.frames, secs / args.frames)
    return 0
