# The SemanticKITTI scene-completion metrics, accumulated as one confusion matrix so that any
# split, any batch order and any number of processes give the numbers semantic-kitti-api's
# evaluate_completion.py prints (same matrix orientation, same epsilons, same formulas).
"""`SSCMetrics`: completion IoU / precision / recall and per-class SSC IoU, mIoU."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sgn_ros.labels import IGNORE_LABEL, LabelSet

#: the epsilon semantic-kitti-api adds to precision / recall denominators
EPS_FLOAT32 = float(np.finfo(np.float32).eps)
#: the epsilon its iouEval adds to every class IoU denominator
EPS_IOU = 1e-15

ArrayLike = torch.Tensor | np.ndarray


class SSCMetrics:
    """Confusion-matrix accumulator over a split.

    ``conf[p, g]`` counts voxels predicted `p` with ground truth `g` (rows = prediction, as
    semantic-kitti-api's iouEval). Voxels whose ground truth is 255 (or that `invalid` marks)
    are skipped. Class 0 is "empty"; completion treats every other class as occupied; the SSC
    mIoU averages classes 1..C-1.

    Args:
        num_classes: C (20 for SemanticKITTI, 19 for KITTI-360).
        class_names: optional names by training id; adds ``iou_<name>`` keys to `compute`.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        if num_classes < 2:
            raise ValueError(f"SSCMetrics: num_classes must be >= 2, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"SSCMetrics: {len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = tuple(class_names) if class_names is not None else None
        self.conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.conf = torch.zeros_like(self.conf)

    @torch.no_grad()
    def update(self, pred: ArrayLike, target: ArrayLike, invalid: ArrayLike | None = None) -> None:
        """Add predictions and ground truth of any (matching) shape, e.g. (B, X, Y, Z).

        Args:
            pred: integer training ids in [0, C).
            target: integer training ids, 255 = ignore.
            invalid: optional bool mask of voxels to skip as well.

        Raises:
            ValueError: shape mismatch, or ids outside [0, C) where the target is valid.
        """
        p = torch.as_tensor(pred)
        t = torch.as_tensor(target, device=p.device)
        if p.shape != t.shape:
            raise ValueError(f"SSCMetrics.update: prediction shape {tuple(p.shape)} != target {tuple(t.shape)}")
        p = p.reshape(-1).long()
        t = t.reshape(-1).long()
        keep = t != IGNORE_LABEL
        if invalid is not None:
            inv = torch.as_tensor(invalid, device=p.device).reshape(-1)
            if inv.numel() != t.numel():
                raise ValueError(f"SSCMetrics.update: invalid mask has {inv.numel()} values, target {t.numel()}")
            keep &= ~inv.bool()
        p, t = p[keep], t[keep]
        c = self.num_classes
        bad = (p < 0) | (p >= c) | (t < 0) | (t >= c)
        if bool(bad.any()):
            raise ValueError(
                f"SSCMetrics.update: class ids must be in [0, {c}) (255 = ignore in the target); got prediction "
                f"range [{int(p.min())}, {int(p.max())}], target range [{int(t.min())}, {int(t.max())}]"
            )
        counts = torch.bincount(p * c + t, minlength=c * c).reshape(c, c)
        if self.conf.device != counts.device:
            self.conf = self.conf.to(counts.device)
        self.conf += counts

    def update_confusion(self, conf: ArrayLike) -> None:
        """Add a (C, C) confusion matrix computed elsewhere (rows = prediction)."""
        m = torch.as_tensor(conf, dtype=torch.int64, device=self.conf.device)
        if tuple(m.shape) != (self.num_classes, self.num_classes):
            raise ValueError(f"SSCMetrics.update_confusion: expected {(self.num_classes,) * 2}, got {tuple(m.shape)}")
        self.conf += m

    def all_reduce(self) -> None:
        """Sum the confusion matrix over all torch.distributed ranks (no-op when not initialised).

        Call once on every rank after the last `update`; each rank then holds the total.
        """
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        backend = torch.distributed.get_backend()
        conf = self.conf
        if backend == "nccl" and not conf.is_cuda:
            conf = conf.cuda()
        torch.distributed.all_reduce(conf, op=torch.distributed.ReduceOp.SUM)
        self.conf = conf

    def confusion(self) -> np.ndarray:
        """(C, C) int64 confusion matrix, rows = prediction, columns = ground truth."""
        return self.conf.detach().cpu().numpy().copy()

    def compute(self) -> dict[str, float | list[float]]:
        """Scores as fractions (not percent), computed as semantic-kitti-api does.

        Returns:
            ``iou_completion``, ``precision``, ``recall`` (scene completion, occupied = class > 0),
            ``iou_mean`` (SSC mIoU over classes 1..C-1), ``iou_per_class`` (list of C floats,
            class 0 included), and ``iou_<name>`` for classes 1..C-1 when names were given.
        """
        conf = self.confusion()
        tp = np.diag(conf)
        fp = conf.sum(axis=1) - tp
        fn = conf.sum(axis=0) - tp
        iou = tp / (tp + fp + fn + EPS_IOU)
        occupied_tp = np.sum(conf[1:, 1:])
        with np.errstate(divide="ignore", invalid="ignore"):
            iou_completion = occupied_tp / (np.sum(conf) - conf[0, 0])
        out: dict[str, float | list[float]] = {
            "iou_completion": float(iou_completion),
            "iou_mean": float(iou[1:].mean()),
            "precision": float(occupied_tp / (np.sum(conf[1:, :]) + EPS_FLOAT32)),
            "recall": float(occupied_tp / (np.sum(conf[:, 1:]) + EPS_FLOAT32)),
            "iou_per_class": [float(v) for v in iou],
        }
        if self.class_names is not None:
            for i in range(1, self.num_classes):
                out[f"iou_{self.class_names[i]}"] = float(iou[i])
        return out


def format_table(scores: dict[str, float | list[float]], class_names: Sequence[str]) -> str:
    """A text table of `SSCMetrics.compute` output in percent (what the CLIs print)."""
    lines = [
        f"{'metric':<24}{'value [%]':>10}",
        f"{'precision':<24}{100 * scores['precision']:>10.2f}",
        f"{'recall':<24}{100 * scores['recall']:>10.2f}",
        f"{'IoU (completion)':<24}{100 * scores['iou_completion']:>10.2f}",
        f"{'mIoU (SSC)':<24}{100 * scores['iou_mean']:>10.2f}",
    ]
    per_class = scores["iou_per_class"]
    for i in range(1, len(class_names)):
        lines.append(f"  {class_names[i]:<22}{100 * per_class[i]:>10.2f}")
    return "\n".join(lines)


def scores_for_output(scores: dict, label_set: LabelSet, precision_recall: bool = True) -> dict[str, float]:
    """The api's scores.txt keys (iou_completion, iou_mean, iou_<class>), plus precision and recall."""
    out = {"iou_completion": scores["iou_completion"], "iou_mean": scores["iou_mean"]}
    for i in range(1, label_set.num_classes):
        out[f"iou_{label_set.names[i]}"] = scores["iou_per_class"][i]
    if precision_recall:
        out["precision"] = scores["precision"]
        out["recall"] = scores["recall"]
    return out
