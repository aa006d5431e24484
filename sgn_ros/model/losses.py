# Training losses of SGN, all in one place: the weighted cross-entropy and MonoScene's
# scene-class affinity losses on the full-scale output, Lovasz-softmax + cross-entropy on the
# sparse seed logits (semantic guidance), and binary cross-entropy of the geometry-guidance
# occupancy head and of the proposal network against binary half-scale occupancy.
#
# Formulas follow the reference implementation term by term (a per-voxel weighted CE averaged
# over valid voxels, not over the weight sum; affinity terms as BCE(x, 1) = -log x clamped at
# 100 as torch's BCE does; classes absent from the target skipped). Differences, all outside the
# cases the reference runs: a batch of B > 1 pools every term over all valid voxels of the batch
# (equal to the reference at B = 1); a term whose valid set is empty gives 0 instead of NaN or
# an exception; the occupancy and proposal BCE work on logits, on purpose (stable, autocast-safe,
# a gradient everywhere), where the reference applies float32 sigmoid then BCE. Gradients agree
# for logits in [-27.63, 16.63], values (to 1e-3) in [-27.63, 12]; see `occupancy_bce_loss`.
# The class loops of the reference are vectorised.
"""SGN losses: weighted CE, scene-class affinity (sem/geo), seed Lovasz + CE, occupancy BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sgn_ros.batch import SSCBatch
from sgn_ros.config import SGNConfig
from sgn_ros.labels import IGNORE_LABEL

__all__ = [
    "weighted_ce_loss",
    "sem_scal_loss",
    "geo_scal_loss",
    "lovasz_softmax_loss",
    "seed_targets",
    "seed_ce_loss",
    "binary_occupancy",
    "occupancy_bce_loss",
    "SGNLoss",
    "LOSS_NAMES",
]

#: The named terms `SGNLoss` returns (each already weighted; the caller sums them).
LOSS_NAMES = (
    "loss_ssc_ce",
    "loss_sem_scal",
    "loss_geo_scal",
    "loss_seed_lovasz",
    "loss_seed_ce",
    "loss_occ_bce",
    "loss_proposal_bce",
)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` holds; 0 (with a graph) where it holds nowhere. No host sync."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1.0)


def _bce_to_one(x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of probabilities `x` against target 1: -log(x), log clamped at -100.

    torch's own BCE, as the reference calls it: its backward stays finite at x = 0 (a class whose
    probability underflows everywhere), where autograd through ``-log(x).clamp(...)`` gives
    0 * inf = NaN. Run outside autocast, which refuses BCE on probabilities.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        return F.binary_cross_entropy(x, torch.ones_like(x), reduction="none")


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where den > 0, else 1 (so that -log gives 0 and no NaN reaches the gradient)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.ones_like(num))


def _class_last(x: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) -> (B * prod(spatial), C)."""
    return x.movedim(1, -1).reshape(-1, x.shape[1])


def _one_hot_valid(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat target (N,) with 255 = ignore -> (one-hot (N, C) with zero rows where ignored, valid (N,) as dtype)."""
    valid = target != IGNORE_LABEL
    onehot = F.one_hot(torch.where(valid, target, torch.zeros_like(target)).long(), num_classes).to(dtype)
    v = valid.to(dtype)
    return onehot * v[:, None], v


def weighted_ce_loss(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    """Class-weighted cross-entropy averaged over valid voxels (reference `CE_ssc_loss`).

    loss = mean over voxels with target != 255 of  w[y] * (-log softmax(logits)[y]); the mean
    divides by the number of valid voxels (not by the sum of their weights, unlike torch's
    weighted 'mean').

    Args:
        logits: (B, C, X, Y, Z) class logits.
        target: (B, X, Y, Z) int64 class ids, 255 = ignore.
        class_weights: (C,) or None (all ones).
    """
    per_voxel = F.cross_entropy(
        logits.float(), target.long(), weight=None if class_weights is None else class_weights.float(),
        ignore_index=IGNORE_LABEL, reduction="none",
    )
    return _masked_mean(per_voxel, target != IGNORE_LABEL)


def sem_scal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MonoScene's semantic scene-class affinity loss (reference `sem_scal_loss`).

    With p_c the softmax probability of class c and t_c = [y == c] over valid voxels (y != 255),
    for every class present in the target (sum t_c > 0):
        precision_c = sum(p_c t_c) / sum(p_c)            (term only if sum p_c > 0)
        recall_c    = sum(p_c t_c) / sum(t_c)
        spec_c      = sum((1 - p_c)(1 - t_c)) / sum(1 - t_c)  (term only if sum(1 - t_c) > 0)
        L_c = -log precision_c - log recall_c - log spec_c
    and the loss is the mean of L_c over present classes (0 if none).

    Args:
        logits: (B, C, X, Y, Z); target: (B, X, Y, Z) int64, 255 = ignore.
    """
    c = logits.shape[1]
    p = _class_last(F.softmax(logits.float(), dim=1))  # (N, C)
    t, v = _one_hot_valid(target.reshape(-1), c, p.dtype)  # (N, C), (N,)
    p = p * v[:, None]
    neg = (1 - t) * v[:, None]
    n_pos = t.sum(0)
    nominator = (p * t).sum(0)
    loss_c = (
        _bce_to_one(_safe_div(nominator, p.sum(0)))
        + _bce_to_one(_safe_div(nominator, n_pos))
        + _bce_to_one(_safe_div(((1 - p) * neg).sum(0), neg.sum(0)))
    )
    return _masked_mean(loss_c, n_pos > 0)


def geo_scal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MonoScene's geometric scene-class affinity loss (reference `geo_scal_loss`).

    Occupancy = any class but 0. Over valid voxels, with q = 1 - softmax(logits)[:, 0] (occupied
    probability) and o = [y != 0]:
        precision = sum(q o) / sum(q),  recall = sum(q o) / sum(o),
        spec = sum((1 - q)(1 - o)) / sum(1 - o),
        loss = -log precision - log recall - log spec
    (a term whose denominator is 0 is left out; the reference would give NaN there).
    """
    v = (target != IGNORE_LABEL).to(torch.float32)
    empty = F.softmax(logits.float(), dim=1)[:, 0] * v
    q = (1 - empty) * v
    o = (target != 0).to(torch.float32) * v
    free = (1 - o) * v
    inter = (q * o).sum()
    return (
        _bce_to_one(_safe_div(inter, q.sum()))
        + _bce_to_one(_safe_div(inter, o.sum()))
        + _bce_to_one(_safe_div((free * empty).sum(), free.sum()))
    )


def lovasz_softmax_loss(probs: torch.Tensor, labels: torch.Tensor, ignore: int = IGNORE_LABEL) -> torch.Tensor:
    """Lovasz-softmax loss (Berman et al. 2018), classes 'present', over flat predictions.

    For each class c present among the valid labels: errors e_i = |[y_i == c] - p_ic| sorted
    descending, g = the Lovasz extension gradient of the Jaccard loss at the sorted ground truth
    (g_1 = J_1, g_k = J_k - J_(k-1), J_k = 1 - (G - cumsum fg)_k / (G + cumsum(1 - fg))_k), and
    loss_c = e_sorted . g. The loss is the mean over present classes (0 if none).

    Ignored rows are kept with error 0 and no foreground: they sort behind every positive error,
    so they only touch terms whose error is 0 and the value equals dropping them (no host sync).

    Args:
        probs: (P, C) class probabilities (softmax output).
        labels: (P,) int64 class ids; `ignore` entries are left out.
    """
    if probs.dim() != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"lovasz_softmax_loss: expected probs (P, C) and labels (P,), got "
                         f"{tuple(probs.shape)} and {tuple(labels.shape)}")
    c = probs.shape[1]
    valid = labels != ignore
    fg = F.one_hot(torch.where(valid, labels, torch.zeros_like(labels)).long(), c).to(probs.dtype)
    fg = fg * valid[:, None].to(probs.dtype)
    errors = (fg - probs).abs() * valid[:, None].to(probs.dtype)
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True, stable=True)
    fg_sorted = torch.gather(fg, 0, perm)
    gts = fg_sorted.sum(0, keepdim=True)
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union.clamp(min=1.0)
    grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)
    per_class = (errors_sorted * grad).sum(0)
    return _masked_mean(per_class, gts[0] > 0)


def seed_targets(target_half: torch.Tensor, seed_index: torch.Tensor) -> torch.Tensor:
    """Half-scale labels at the seeds: target_half[b, x, y, z] for each row (b, x, y, z) of `seed_index` (S, 4)."""
    if seed_index.dim() != 2 or seed_index.shape[1] != 4:
        raise ValueError(f"seed_index: expected (S, 4) rows (batch, x, y, z), got {tuple(seed_index.shape)}")
    idx = seed_index.long()
    return target_half[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]]


def seed_ce_loss(seed_logits: torch.Tensor, seed_labels: torch.Tensor) -> torch.Tensor:
    """Unweighted cross-entropy of seed logits (S, C) against labels (S,), mean over labels != 255."""
    per_seed = F.cross_entropy(seed_logits.float(), seed_labels.long(), ignore_index=IGNORE_LABEL, reduction="none")
    return _masked_mean(per_seed, seed_labels != IGNORE_LABEL)


def binary_occupancy(target: torch.Tensor) -> torch.Tensor:
    """Class ids -> occupancy: 0 stays 0 (empty), 255 stays 255 (ignore), every other class becomes 1."""
    return torch.where((target == 0) | (target == IGNORE_LABEL), target, torch.ones_like(target))


def occupancy_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE of occupancy logits (B, 1, X, Y, Z) or (B, X, Y, Z) against binary occupancy of class ids
    `target` (B, X, Y, Z), mean over voxels whose target is not 255 (reference `loss_occ` / `loss_pts`).

    Computed on logits, not as the reference's float32 ``sigmoid`` + ``binary_cross_entropy``, on
    purpose: the reference saturates, ours keeps the true loss and a gradient. Per voxel the
    gradients agree (to 1e-3) for logits in [-27.63, 16.63] and the values in [-27.63, 12];
    outside (pinned by `test_losses.test_occupancy_bce_range_where_reference_differs`):

    * empty voxel (target 0): above logit 6.8 the reference's value carries the float32 rounding
      of 1 - sigmoid (relative error 1e-5 at 6.8, 1e-3 near 12, 4 % at 16.6); above 16.6356
      sigmoid rounds to 1 and its loss is the constant 100 with zero gradient (ours: about the
      logit, gradient 1);
    * occupied voxel (target 1), logit < -27.63: torch's BCE backward clamps p (1 - p) at 1e-12,
      so the reference's gradient shrinks towards 0 (ours: -1); below -88.72 sigmoid underflows
      to 0 and its loss is the constant 100.
    """
    if logits.dim() == target.dim() + 1:
        logits = logits.squeeze(1)
    if logits.shape != target.shape:
        raise ValueError(f"occupancy_bce_loss: logits {tuple(logits.shape)} do not match target {tuple(target.shape)}")
    valid = target != IGNORE_LABEL
    occ = ((target != 0) & valid).to(torch.float32)
    per_voxel = F.binary_cross_entropy_with_logits(logits.float(), occ, reduction="none")
    return _masked_mean(per_voxel, valid)


class SGNLoss(nn.Module):
    """All SGN training losses as named terms (each with weight 1, as the reference).

    Call: ``loss(outputs, batch) -> {name: scalar tensor}`` with names `LOSS_NAMES`; the caller
    sums the values. `outputs` is SGN.forward's dict: ssc_logits (B, C, X, Y, Z), occ_logits and
    proposal_logits (B, 1, X/2, Y/2, Z/2), seed_logits (S, C), seed_index (S, 4); `batch` needs
    target (B, X, Y, Z) and target_half (B, X/2, Y/2, Z/2). Without guidance (cfg.model.guidance
    False) the proposal and seed terms are absent.
    """

    def __init__(self, cfg: SGNConfig) -> None:
        super().__init__()
        c = cfg.num_classes
        w = cfg.data.class_weights
        if w and len(w) != c:
            raise ValueError(f"SGNLoss: data.class_weights has {len(w)} values for {c} classes (config {cfg.name})")
        weights = torch.tensor(w if w else [1.0] * c, dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)
        self.num_classes = c
        self.guidance = cfg.model.guidance
        self.full_dims = tuple(cfg.grid.dims)
        self.half_dims = tuple(cfg.grid.scaled(2).dims)

    def forward(self, outputs: dict[str, torch.Tensor], batch: SSCBatch) -> dict[str, torch.Tensor]:
        if batch.target is None or batch.target_half is None:
            raise ValueError("SGNLoss: batch.target and batch.target_half are required for the losses")
        for key in ("ssc_logits", "occ_logits") + (("proposal_logits", "seed_logits", "seed_index") * self.guidance):
            if key not in outputs:
                raise ValueError(f"SGNLoss: model outputs lack '{key}' (have {sorted(outputs)})")
        ssc = outputs["ssc_logits"]
        target = batch.target.to(ssc.device)
        target_half = batch.target_half.to(ssc.device)
        if ssc.shape[1] != self.num_classes or tuple(ssc.shape[2:]) != tuple(target.shape[1:]):
            raise ValueError(f"SGNLoss: ssc_logits {tuple(ssc.shape)} do not match {self.num_classes} classes "
                             f"and batch.target {tuple(target.shape)}")
        weights = self.class_weights.to(ssc.device)
        losses = {
            "loss_ssc_ce": weighted_ce_loss(ssc, target, weights),
            "loss_sem_scal": sem_scal_loss(ssc, target),
            "loss_geo_scal": geo_scal_loss(ssc, target),
        }
        if "seed_logits" in outputs:
            seed_logits = outputs["seed_logits"]
            labels = seed_targets(target_half, outputs["seed_index"])
            losses["loss_seed_lovasz"] = lovasz_softmax_loss(F.softmax(seed_logits.float(), dim=1), labels)
            losses["loss_seed_ce"] = seed_ce_loss(seed_logits, labels)
        losses["loss_occ_bce"] = occupancy_bce_loss(outputs["occ_logits"], target_half)
        if "proposal_logits" in outputs:
            losses["loss_proposal_bce"] = occupancy_bce_loss(outputs["proposal_logits"], target_half)
        return losses
