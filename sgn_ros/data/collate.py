# Batching of dataset samples into the one network input format, `SSCBatch`. Point clouds differ
# in size per sample and stay a list; targets are stacked only when every sample has them.
"""`collate_ssc`: list of per-sample dicts -> `SSCBatch` (a DataLoader collate_fn)."""

from __future__ import annotations

from typing import Any

import torch

from sgn_ros.batch import SSCBatch


def collate_ssc(samples: list[dict[str, Any]]) -> SSCBatch:
    """Stack B samples of `SSCDataset` into an `SSCBatch`.

    images (B, F, 3, H, W), intrinsics (B, F, 3, 3), lidar_to_cam (B, F, 4, 4) are stacked;
    points stay a list of B (N_i, 3) tensors; target (B, X, Y, Z) and target_half
    (B, X/2, Y/2, Z/2) are stacked when all samples carry them, else None (test split); so are
    the FLoSP tables gather_index / fov_mask (B, F, N).

    Raises:
        ValueError: empty list, or samples whose frame counts / image sizes differ.
    """
    if not samples:
        raise ValueError("collate_ssc: no samples")
    shapes = {tuple(s["images"].shape) for s in samples}
    if len(shapes) != 1:
        where = [s.get("meta", {}).get("frame_id") for s in samples]
        raise ValueError(f"collate_ssc: samples {where} have different image shapes {sorted(shapes)}")

    def stack_optional(key: str) -> torch.Tensor | None:
        values = [s.get(key) for s in samples]
        if any(v is None for v in values):
            return None
        return torch.stack(values)

    return SSCBatch(
        images=torch.stack([s["images"] for s in samples]),
        intrinsics=torch.stack([s["intrinsics"] for s in samples]),
        lidar_to_cam=torch.stack([s["lidar_to_cam"] for s in samples]),
        points=[s["points"] for s in samples],
        target=stack_optional("target"),
        target_half=stack_optional("target_half"),
        meta=[s.get("meta", {}) for s in samples],
        gather_index=stack_optional("gather_index"),
        fov_mask=stack_optional("fov_mask"),
    )
