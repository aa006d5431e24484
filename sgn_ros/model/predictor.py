# Inference front end of SGN for plain Python callers (the ROS node, the demo, notebooks): takes
# camera images as they come (uint8 RGB, any size), their intrinsics and LiDAR->camera
# transforms, plus LiDAR points or a metric depth map, and returns the semantic scene completion
# of the current frame as NumPy arrays. The model is built and placed once; per-camera tables
# (the FLoSP projection) are cached inside the model between calls.
"""`SSCPredictor`: images (+ points or depth) -> per-voxel labels and confidence."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sgn_ros.batch import SSCBatch
from sgn_ros.config import SGNConfig, load_config
from sgn_ros.model.preprocessing import (
    check_intrinsics,
    check_transform,
    depth_to_points,
    normalize_image,
    points_in_grid,
)

__all__ = ["SSCPrediction", "SSCPredictor", "select_device"]

log = logging.getLogger(__name__)


@dataclass
class SSCPrediction:
    """The completed scene of one frame on the full-scale grid (cfg.grid.dims, indexed [x, y, z]).

    Attributes:
        labels: (X, Y, Z) uint8 training class ids (0 = empty).
        confidence: (X, Y, Z) float32 in [0, 1], the softmax probability of the chosen class.
    """

    labels: np.ndarray
    confidence: np.ndarray


def select_device(device: str | torch.device | None) -> torch.device:
    """`device` if given (checked to exist), else CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: cannot parse {device!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return dev


def _frames(value, name: str, shape: tuple[int, ...]) -> list[np.ndarray]:
    """One array of `shape`, a stacked (F, *shape) array, or a sequence of them -> list of arrays."""
    if isinstance(value, (list, tuple)):
        arrays = [np.asarray(v) for v in value]
    else:
        arr = np.asarray(value)
        arrays = [arr] if arr.shape == shape else list(arr) if arr.ndim == len(shape) + 1 else [arr]
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise ValueError(f"{name}[{i}]: expected shape {shape}, got {a.shape}")
    if not arrays:
        raise ValueError(f"{name}: no values given")
    return arrays


class SSCPredictor:
    """Build an SGN model once and run it on raw camera input.

    Args:
        cfg_or_variant: an `SGNConfig`, a variant name (``sgn-t`` / ``sgn-s`` / ``sgn-l``) or a YAML path.
        dataset: ``semantickitti`` or ``kitti360`` (used when a name / path is given).
        checkpoint: weights file (ours or a converted reference checkpoint); None loads the
            bundled weights of the config when it has some (sgn_ros.weights: `sgn-l-synth`, trained
            on the synthetic world only), else keeps the random initialisation (tests, timing).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...; None picks CUDA when present, else CPU.
        fp16: run the network under float16 autocast. CUDA only: on CPU it raises ValueError
            (CPU float16 kernels are slow or missing; silently running float32 would hide a
            misconfiguration).

    Images are cropped from the top-left corner (as the reference crops KITTI to 370 x 1220) or
    padded at the bottom / right with the mean colour to cfg.data.image_size; either way K is
    unchanged. Pseudo-LiDAR from a depth map uses the full depth map and the original K.
    """

    def __init__(
        self,
        cfg_or_variant: SGNConfig | str | os.PathLike[str] = "sgn-l",
        dataset: str | None = "semantickitti",
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        fp16: bool = False,
    ) -> None:
        from sgn_ros.model import build_model  # late: keeps `import sgn_ros.model.predictor` light

        self.cfg = cfg_or_variant if isinstance(cfg_or_variant, SGNConfig) else load_config(cfg_or_variant, dataset)
        self.device = select_device(device)
        if fp16 and self.device.type != "cuda":
            raise ValueError(f"fp16: float16 inference needs a CUDA device, got device {self.device}")
        self.fp16 = bool(fp16)
        #: where the weights came from: a path, "bundled:<file>" or "untrained"
        self.weights_source = "untrained"
        if checkpoint is None:
            from sgn_ros.weights import SYNTHETIC_ONLY_NOTE, bundled_checkpoint

            bundled = bundled_checkpoint(self.cfg.name)
            if bundled is not None:
                checkpoint = bundled
                self.weights_source = f"bundled:{bundled.name} ({SYNTHETIC_ONLY_NOTE})"
        if checkpoint is not None:
            # The one loader: our files define the network by their stored config (which then
            # replaces self.cfg); a variant / grid / dataset contradicting the file is an error.
            from sgn_ros.model.checkpoint import load_model

            path = os.fspath(checkpoint)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"checkpoint: file not found: {path}")
            loaded = load_model(path, expect=self.cfg)
            self.cfg, model = loaded.cfg, loaded.model
            if self.weights_source == "untrained":
                self.weights_source = path
        else:
            model = build_model(self.cfg)
        self.grid = self.cfg.grid
        self.model = model.to(self.device).eval()

    @property
    def num_frames(self) -> int:
        return self.cfg.data.num_frames

    # ----------------------------------------------------------------- input preparation
    def prepare_batch(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        intrinsics: np.ndarray | Sequence[np.ndarray],
        lidar_to_cam: np.ndarray | Sequence[np.ndarray],
        points: np.ndarray | None = None,
        depth: np.ndarray | None = None,
    ) -> SSCBatch:
        """Validate and convert raw inputs into a one-sample `SSCBatch` on the predictor's device.

        A single image for a temporal variant stands in for every frame (as the reference does
        where neighbours are missing); several images need one lidar_to_cam per image.
        """
        imgs = [np.asarray(i) for i in images] if isinstance(images, (list, tuple)) else [np.asarray(images)]
        for i, im in enumerate(imgs):
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"images[{i}]: expected a uint8 RGB image (H, W, 3), got {im.dtype} {im.shape}")
        f = self.num_frames
        if len(imgs) not in (1, f):
            raise ValueError(f"images: {self.cfg.name} takes 1 or {f} frame(s), got {len(imgs)}")
        ks = [check_intrinsics(k, f"intrinsics[{i}]") for i, k in enumerate(_frames(intrinsics, "intrinsics", (3, 3)))]
        ts = [check_transform(t, f"lidar_to_cam[{i}]")
              for i, t in enumerate(_frames(lidar_to_cam, "lidar_to_cam", (4, 4)))]
        if len(ks) == 1:
            ks = ks * len(imgs)
        if len(ts) == 1 and len(imgs) == 1:
            ts = ts * len(imgs)
        if len(ks) != len(imgs) or len(ts) != len(imgs):
            raise ValueError(
                f"got {len(imgs)} image(s), {len(ks)} intrinsics and {len(ts)} lidar_to_cam: give one per image "
                "(one intrinsics matrix may serve all)"
            )
        if len(imgs) == 1 and f > 1:
            imgs, ks, ts = imgs * f, ks * f, ts * f

        # crop the uint8 pixels on the host (a view), normalise on the device, then pad with
        # 0 = the mean colour; a top-left crop / pad keeps K
        h, w = self.cfg.data.image_size
        mean, std = self.cfg.data.image_mean, self.cfg.data.image_std
        done: dict[int, torch.Tensor] = {}  # a repeated image is converted once
        tensors = []
        for im in imgs:
            if id(im) not in done:
                pixels = torch.from_numpy(np.ascontiguousarray(im[:h, :w])).to(self.device, non_blocking=True)
                x = normalize_image(pixels, mean, std)
                done[id(im)] = F.pad(x, (0, w - x.shape[2], 0, h - x.shape[1]))
            tensors.append(done[id(im)])
        pts = self._points(points, depth, imgs[0].shape[:2], ks[0], ts[0])
        batch = SSCBatch(
            images=torch.stack(tensors)[None],
            intrinsics=torch.from_numpy(np.stack(ks)[None].astype(np.float32)),
            lidar_to_cam=torch.from_numpy(np.stack(ts)[None].astype(np.float32)),
            points=[pts],
        )
        return batch.to(self.device)

    def _points(
        self, points: np.ndarray | None, depth: np.ndarray | None, image_hw: tuple[int, int],
        K: np.ndarray, lidar_to_cam: np.ndarray,
    ) -> torch.Tensor:
        """LiDAR-frame points (N, 3) float32 inside the grid volume, from `points` or `depth`,
        computed on the predictor's device (back-projection and cropping are cheap there)."""
        if points is not None and depth is not None:
            raise ValueError("give either points or depth, not both")
        if points is None and depth is None:
            if self.cfg.model.guidance:
                raise ValueError(f"{self.cfg.name} (guidance enabled) needs points (N, 3) or a depth map (H, W)")
            return torch.zeros((0, 3), dtype=torch.float32, device=self.device)
        on_host = self.device.type == "cpu"  # NumPy there (faster than CPU torch), else torch on the device
        if depth is not None:
            depth = np.asarray(depth)
            if depth.ndim != 2 or depth.shape != tuple(image_hw):
                raise ValueError(
                    f"depth: expected an (H, W) map of frame 0's image size {tuple(image_hw)}, got {depth.shape}"
                )
            if not on_host:
                depth = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)).to(self.device)
            pts = depth_to_points(depth, K, np.linalg.inv(lidar_to_cam))
        else:
            arr = np.asarray(points)
            if arr.ndim != 2 or arr.shape[1] < 3 or not np.issubdtype(arr.dtype, np.number):
                raise ValueError(f"points: expected an (N, 3) array of LiDAR-frame metres, got {arr.dtype} {arr.shape}")
            pts = np.ascontiguousarray(arr[:, :3], dtype=np.float32)
            pts = pts[np.isfinite(pts).all(axis=1)]
            if not on_host:
                pts = torch.from_numpy(pts).to(self.device)
        if on_host:
            return torch.from_numpy(np.ascontiguousarray(pts[self.grid.contains(pts)]))
        return pts[points_in_grid(pts, self.grid)]

    # ----------------------------------------------------------------- inference
    @torch.inference_mode()
    def predict(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        intrinsics: np.ndarray | Sequence[np.ndarray],
        lidar_to_cam: np.ndarray | Sequence[np.ndarray],
        points: np.ndarray | None = None,
        depth: np.ndarray | None = None,
    ) -> SSCPrediction:
        """Complete the scene of the current frame (frame 0).

        Args:
            images: uint8 RGB (H, W, 3), or a list: current frame first, then the temporal frames
                in config order (SGN-T: -12, -9, -6, -3).
            intrinsics: K (3, 3) of the given images (one for all, or one per image).
            lidar_to_cam: (4, 4) current LiDAR frame -> camera (one per image when several).
            points: (N, 3) LiDAR-frame points, metres; or
            depth: (H, W) metric depth of frame 0's image (back-projected to pseudo-LiDAR).

        Returns:
            `SSCPrediction` with labels uint8 and confidence float32, both cfg.grid.dims.
        """
        batch = self.prepare_batch(images, intrinsics, lidar_to_cam, points, depth)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.fp16):
            out = self.model(batch)
        logits = out["ssc_logits"][0].float()  # (C, X, Y, Z)
        conf, labels = torch.softmax(logits, dim=0).max(dim=0)
        return SSCPrediction(
            labels=labels.to(torch.uint8).cpu().numpy(),
            confidence=conf.cpu().numpy().astype(np.float32, copy=False),
        )
