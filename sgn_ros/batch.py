# The one batch format between the datasets / ROS predictor and the network.
"""`SSCBatch`: what the SGN network's forward takes (and what the losses need)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class SSCBatch:
    """A batch of B samples, each with F frames (frame 0 = the current one).

    Attributes:
        images: (B, F, 3, H, W) float32, cropped and ImageNet-normalised. Frame 0 is the current
            frame; frames 1.. are the temporal ones in the config's order (SGN-T: -12, -9, -6, -3).
        intrinsics: (B, F, 3, 3) float32 camera matrices K of the cropped images, pixels.
        lidar_to_cam: (B, F, 4, 4) float32 transforms from the *current* LiDAR frame to each
            frame's camera frame (metres).
        points: list of B float32 tensors (N_i, 3): pseudo-LiDAR points of all frames, moved into
            the current LiDAR frame, metres (x forward, y left, z up).
        target: (B, X, Y, Z) int64 full-scale training ids, 255 = ignore (training / eval only).
        target_half: (B, X/2, Y/2, Z/2) int64 half-scale training ids, 255 = ignore.
        meta: per-sample dicts (sequence, frame id, ...); never moved to a device.
        gather_index: (B, F, N) int64 FLoSP gather index into each frame's stride-16 feature map
            (N = voxels of the 1/2-scale grid), or None (the network then computes it from
            intrinsics / lidar_to_cam). Made from float64 geometry by the datasets and the predictor.
        fov_mask: (B, F, N) bool, voxel seen by frame f; given together with gather_index.
        ready: on CUDA, an event recorded on the stream that made the tensors, right after it made
            them (SSCPredictor.prepare_batch); the consumer's stream waits for it before reading
            them, so a batch prepared on a side stream (a pipeline's decode stage, overlapping the
            previous frame's network on the GPU) is safe to use on another. None elsewhere.
    """

    images: torch.Tensor
    intrinsics: torch.Tensor
    lidar_to_cam: torch.Tensor
    points: list[torch.Tensor]
    target: torch.Tensor | None = None
    target_half: torch.Tensor | None = None
    meta: list[dict] | None = None
    gather_index: torch.Tensor | None = None
    fov_mask: torch.Tensor | None = None
    ready: torch.cuda.Event | None = None

    def __post_init__(self) -> None:
        if self.images.dim() != 5 or self.images.shape[2] != 3:
            raise ValueError(f"SSCBatch.images: expected (B, F, 3, H, W), got {tuple(self.images.shape)}")
        b, f = self.images.shape[:2]
        if tuple(self.intrinsics.shape) != (b, f, 3, 3):
            raise ValueError(f"SSCBatch.intrinsics: expected {(b, f, 3, 3)}, got {tuple(self.intrinsics.shape)}")
        if tuple(self.lidar_to_cam.shape) != (b, f, 4, 4):
            raise ValueError(
                f"SSCBatch.lidar_to_cam: expected {(b, f, 4, 4)}, got {tuple(self.lidar_to_cam.shape)}"
            )
        if len(self.points) != b:
            raise ValueError(f"SSCBatch.points: expected {b} tensors, got {len(self.points)}")
        if (self.gather_index is None) != (self.fov_mask is None):
            raise ValueError("SSCBatch: gather_index and fov_mask come together (both or neither)")
        if self.gather_index is not None:
            gi, fm = self.gather_index, self.fov_mask
            if gi.dim() != 3 or tuple(gi.shape[:2]) != (b, f) or gi.dtype != torch.int64:
                raise ValueError(
                    f"SSCBatch.gather_index: expected ({b}, {f}, N) int64, got {tuple(gi.shape)} {gi.dtype}"
                )
            if tuple(fm.shape) != tuple(gi.shape) or fm.dtype != torch.bool:
                raise ValueError(
                    f"SSCBatch.fov_mask: expected {tuple(gi.shape)} bool, got {tuple(fm.shape)} {fm.dtype}"
                )
        for i, p in enumerate(self.points):
            if p.dim() != 2 or p.shape[1] < 3:
                raise ValueError(f"SSCBatch.points[{i}]: expected (N, >=3), got {tuple(p.shape)}")

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[1])

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor of the batch (points included)."""
        out = [v for f in fields(self) if isinstance(v := getattr(self, f.name), torch.Tensor)]
        return out + list(self.points)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SSCBatch:
        """A copy with every tensor on `device` (meta stays on the host; `ready` is kept)."""
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                moved[f.name] = v.to(device, non_blocking=non_blocking)
            elif f.name == "points":
                moved[f.name] = [p.to(device, non_blocking=non_blocking) for p in v]
        return replace(self, **moved)
