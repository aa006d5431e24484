# SGN assembled (the reference's one-stage "guidance" model: ResNet + FPN + SGNHeadOne with the
# depth-based proposal network), batched, and a pure function of the batch (no cache: FLoSP's
# projection tables come with the batch):
#
#   images (B, F, 3, H, W) -> encoder -> neck -> (B*F, D, H/16, W/16)
#   FLoSP (frame average) -> (B, D, X, Y, Z) at 1/2 scale -> bottleneck 3x3x3 conv
#   occupancy_head -> occ_logits (B, 1, X, Y, Z)                  [geometry guidance]
#   proposal(points) -> proposal_logits (B, 1, X, Y, Z), guidance (B, 8, X, Y, Z)
#   seeds = proposal_logits > 0 (a sample with < 2 seeds uses all its voxels)
#   seeds -> guidance block -> seed_head -> seed_logits (S, C)   [sparse semantic guidance]
#   other voxels -> prior_mlp
#   [completed features, guidance] -> diffusion -> output_head -> ssc_logits (B, C, 2X, 2Y, 2Z)
#
# Every size comes from cfg.grid / cfg.model. The network works at 1/FEATURE_SCALE of cfg.grid,
# a factor fixed by the proposal U-Net's structure.
#
# Host round trips: no .item() / .cpu() / NumPy, but sparse convolution is inherently
# data-dependent: torch.nonzero (seed selection here) and torch.unique (voxelisation in the
# proposal) size their outputs by the data and so wait for the device, as do spconv's indice-pair
# builds. A forward on CUDA therefore synchronises a few times; it never copies tensors back.
"""The SGN network: `SGN(cfg)`, forward(SSCBatch) -> dict of logits."""

from __future__ import annotations

import torch
from torch import nn

from sgn_ros.batch import SSCBatch
from sgn_ros.config import SGNConfig
from sgn_ros.model.diffusion import SemanticDiffusionBlock
from sgn_ros.model.encoder import ENCODER_OUT_CHANNELS, ENCODER_STRIDE, ResNetEncoder
from sgn_ros.model.flosp import FLoSP
from sgn_ros.model.guidance import SparseGuidanceBlock
from sgn_ros.model.heads import GeometryGuidanceHead, OutputHead, make_prior_mlp, make_seed_head
from sgn_ros.model.neck import FPNNeck
from sgn_ros.model.projection import FEATURE_SCALE, projection_tables
from sgn_ros.model.proposal import SparseVoxelProposal
from sgn_ros.model.spconv_compat import place_sparse_convs

__all__ = ["SGN", "FEATURE_SCALE", "BACKBONE_DEPTHS", "MIN_SEEDS"]

#: Resolution of the network's 3-D features relative to cfg.grid (1/2).
#: cfg.model.backbone -> ResNet depth.
BACKBONE_DEPTHS = {"resnet18": 18, "resnet50": 50}
#: A sample with fewer seeds than this takes all voxels as seeds (reference behaviour).
MIN_SEEDS = 2


class SGN(nn.Module):
    """Sparse Guidance Network for camera-based semantic scene completion.

    Forward: `SSCBatch` -> dict with
        ssc_logits (B, C, X, Y, Z) full-scale class logits,
        occ_logits (B, 1, X/2, Y/2, Z/2) geometry-guidance occupancy logits,
        proposal_logits (B, 1, X/2, Y/2, Z/2) proposal-network occupancy logits,
        seed_logits (S, C) class logits of the seed voxels,
        seed_index (S, 4) int64 (batch, x, y, z) of the seeds on the 1/2-scale grid,
    where (X, Y, Z) = cfg.grid.dims and C = cfg.num_classes.
    """

    def __init__(self, cfg: SGNConfig) -> None:
        super().__init__()
        m = cfg.model
        if m.backbone not in BACKBONE_DEPTHS:
            raise ValueError(f"SGN: model.backbone must be one of {sorted(BACKBONE_DEPTHS)}, got {m.backbone!r}")
        if m.feature_stride != ENCODER_STRIDE:
            raise ValueError(
                f"SGN: model.feature_stride must be {ENCODER_STRIDE} (ResNet layer3), got {m.feature_stride}"
            )
        if FEATURE_SCALE not in cfg.grid.scales:
            raise ValueError(f"SGN: grid.scales {cfg.grid.scales} must include {FEATURE_SCALE}")
        if m.embed_dims % 4:
            raise ValueError(f"SGN: model.embed_dims must be divisible by 4, got {m.embed_dims}")
        self.cfg = cfg
        self.grid = cfg.grid
        self.feature_grid = cfg.grid.scaled(FEATURE_SCALE)
        depth = BACKBONE_DEPTHS[m.backbone]
        d = m.embed_dims
        g = m.guidance_channels if m.guidance else 0

        self.encoder = ResNetEncoder(
            depth=depth,
            frozen_stages=m.encoder_frozen_stages,
            norm_eval=m.encoder_norm_eval,
            bn_requires_grad=not m.encoder_norm_eval,
        )
        self.neck = FPNNeck(ENCODER_OUT_CHANNELS[depth], d)
        self.flosp = FLoSP(self.feature_grid, m.feature_stride)
        self.bottleneck = nn.Conv3d(d, d, 3, padding=1)
        self.occupancy_head = GeometryGuidanceHead(d)
        self.proposal = SparseVoxelProposal(cfg.grid, m.proposal_dims, g)
        self.guidance = SparseGuidanceBlock(d, self.feature_grid.dims)
        self.seed_head = make_seed_head(d, cfg.num_classes)
        self.prior_mlp = make_prior_mlp(d)
        self.diffusion = SemanticDiffusionBlock(d + g, d // 2, depth=m.sdb_depth)
        self.output_head = OutputHead(d // 2, cfg.num_classes, cfg.grid.dims)
        # Parameters present for the reference checkpoint layout but never used in forward:
        # frozen so that optimisers and DistributedDataParallel ignore them.
        for p in self.unused_parameters():
            p.requires_grad_(False)
        place_sparse_convs(self, torch.device("cpu"))  # built on the CPU

    def _apply(self, fn, recurse: bool = True):
        """Every device move (.to / .cuda / .cpu) also places the sparse convs on the new device:
        spconv is set up for it and the conv algorithm chosen there, once (see spconv_compat)."""
        out = super()._apply(fn, recurse)
        place_sparse_convs(self, self.parameter_device())
        return out

    def parameter_device(self) -> torch.device:
        """The device of the model's parameters."""
        return next(self.parameters()).device

    def unused_parameters(self) -> list[nn.Parameter]:
        """Parameters that the forward never touches (ResNet layer4, two U-Net deconvs, scale_selection)."""
        mods: list[nn.Module] = [
            self.encoder.layer4,
            self.proposal.bev_unet.up_1_8_to_1_1,
            self.proposal.bev_unet.up_1_4_to_1_1,
            self.proposal.point_attention.scale_selection,
            self.guidance.attention1.scale_selection,
            self.guidance.attention2.scale_selection,
        ]
        return [p for mod in mods for p in mod.parameters()]

    # ------------------------------------------------------------------ forward
    def lift(self, batch: SSCBatch) -> torch.Tensor:
        """Images -> bottlenecked 1/2-scale volume (B, D, X/2, Y/2, Z/2)."""
        b, f, _, h, w = batch.images.shape
        feats = self.neck(self.encoder(batch.images.reshape(b * f, *batch.images.shape[2:])))
        feats = feats.reshape(b, f, *feats.shape[1:])
        index, visible = batch.gather_index, batch.fov_mask
        if index is None or visible is None:
            index, visible = self.projection_tables(batch)
        return self.bottleneck(self.flosp(feats, index, visible, (h, w)))

    def projection_tables(self, batch: SSCBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """FLoSP tables (B, F, N) of a batch that came without them (hand-built batches, tests).

        Pure (nothing is cached) and made from the batch's float32 transforms; the datasets and
        the predictor attach tables made once from float64 geometry instead (the reference's
        precision), see `projection.network_tables`.
        """
        b, f, _, h, w = batch.images.shape
        index, visible = projection_tables(
            self.feature_grid,
            self.flosp.stride,
            batch.intrinsics.reshape(b * f, 3, 3),
            batch.lidar_to_cam.reshape(b * f, 4, 4).to(torch.float64),
            (h, w),
        )
        return index.reshape(b, f, -1), visible.reshape(b, f, -1)

    def select_seeds(self, proposal_logits: torch.Tensor) -> torch.Tensor:
        """(B, 1, X, Y, Z) logits -> (B, X, Y, Z) bool seeds: logit > 0, or all voxels of a sample
        with fewer than MIN_SEEDS (decided on the device with torch.where)."""
        seeds = proposal_logits[:, 0].detach() > 0
        few = seeds.flatten(1).sum(1) < MIN_SEEDS  # (B,)
        return torch.where(few.view(-1, 1, 1, 1), torch.ones_like(seeds), seeds)

    def forward(self, batch: SSCBatch) -> dict[str, torch.Tensor]:
        b = batch.batch_size
        x3d = self.lift(batch)  # (B, D, X, Y, Z)
        d = x3d.shape[1]
        dims = self.feature_grid.dims
        n = dims[0] * dims[1] * dims[2]
        occ_logits = self.occupancy_head(x3d)
        proposal_logits, guide = self.proposal(batch.points, b)

        seeds = self.select_seeds(proposal_logits).reshape(-1)  # (B*N,)
        seed_flat = torch.nonzero(seeds).squeeze(1)  # ascending (b, x, y, z)
        rest_flat = torch.nonzero(~seeds).squeeze(1)
        voxels = x3d.permute(0, 2, 3, 4, 1).reshape(b * n, d)
        seed_index = torch.stack(
            [
                torch.div(seed_flat, n, rounding_mode="floor"),
                torch.div(seed_flat, dims[1] * dims[2], rounding_mode="floor") % dims[0],
                torch.div(seed_flat, dims[2], rounding_mode="floor") % dims[1],
                seed_flat % dims[2],
            ],
            dim=1,
        )
        seed_feats = voxels[seed_flat]
        guided = self.guidance(seed_feats, seed_index, b)
        seed_logits = self.seed_head(guided)
        prior = self.prior_mlp(voxels[rest_flat])
        # (casts: under autocast LayerNorm/Linear outputs may differ in dtype from the conv features)
        completed = voxels.new_zeros(b * n, d)
        completed = completed.index_copy(0, seed_flat, guided.to(voxels.dtype)).index_copy(
            0, rest_flat, prior.to(voxels.dtype)
        )
        completed = completed.reshape(b, *dims, d).permute(0, 4, 1, 2, 3)
        if guide is not None:
            completed = torch.cat([completed, guide], dim=1)
        ssc_logits = self.output_head(self.diffusion(completed))
        return {
            "ssc_logits": ssc_logits,
            "occ_logits": occ_logits,
            "proposal_logits": proposal_logits,
            "seed_logits": seed_logits,
            "seed_index": seed_index,
        }
