# Training MobileStereoNet on stereo pairs with true depth (the synthetic world), with the
# reference recipe (cogsys-tuebingen/mobilestereonet, train.py and utils/experiment.py):
#   * loss: smooth L1 of each of the four training-mode disparities against the truth, on pixels
#     with 0 < disparity < maxdisp, weighted 0.5, 0.5, 0.7, 1.0 (their models' model_loss);
#   * Adam (betas 0.9, 0.999), lr 1e-3, divided by `lr_downscale` at each epoch of `lr_epochs`
#     (their `--lrepochs "10,12,14,16:2"` for SceneFlow pre-training, 20 epochs); maxdisp 192;
#   * random 256 x 512 crops, ImageNet-normalised; evaluation on full frames padded to a multiple
#     of 16 (at KITTI size: 384 x 1248, as theirs).
# and the package's training conventions (sgn_ros.training): a typed config from YAML (unknown keys
# are errors), a work directory with config.yaml, train.log and tb/ (TensorBoard), atomic
# epoch_<E>.pth / iter_<I>.pth / best.pth and a latest.pth link, `--resume` continuing bit-exactly
# (model, optimiser, counters, sampler position, RNG), tqdm on rank 0, torchrun-ready, and a failed
# fresh run leaving nothing behind. Checkpoints are in our MSNet format (`load_msnet` reads them);
# the run ends with a held-out evaluation next to OpenCV SGBM and a compact float16 export.
"""`sgn-ros train-stereo`: MobileStereoNet training, held-out evaluation against SGBM, compact export."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from sgn_ros.distributed import (
    DistInfo,
    ResumableDistributedSampler,
    barrier,
    broadcast_buffers,
    reduce_mean_dict,
    unwrap,
    wrap_ddp,
)
from sgn_ros.errors import CheckpointError
from sgn_ros.fileio import atomic_path
from sgn_ros.runtime import autocast_context, resolve_amp, seed_everything, setup_logging
from sgn_ros.stereo.dataset import StereoDisparityDataset
from sgn_ros.stereo.msnet import CHECKPOINT_FORMAT, KINDS, SIZE_MULTIPLE, build_msnet, disparity, prepare_pair
from sgn_ros.training import checkpointing as ckpt_io

log = logging.getLogger("sgn_ros.stereo.train")

#: the compact export must stay below this (bytes): it ships inside the package
COMPACT_LIMIT_BYTES = 10 * 1024 * 1024


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class StereoTrainConfig:
    """The MobileStereoNet recipe (defaults: the reference's) and our data split.

    Attributes:
        kind / maxdisp: the network (`build_msnet`); maxdisp a multiple of 16.
        crop: (H, W) of the random training crops, multiples of 16.
        lr_epochs / lr_downscale: lr = lr / lr_downscale**(number of lr_epochs <= epoch).
        loss_weights: one per training output (four).
        max_iters_per_epoch: 0 = the whole training split each epoch.
        eval_interval: evaluate every N epochs (and after the last); 0 = never during training.
        eval_frames: frames of the held-out sequences evaluated (0 = all).
        eval_max_depth: metres; the depth error counts pixels whose true depth is below it.
        checkpoint_interval_iters: also write iter_<I>.pth every N iterations (0 = off).
    """

    name: str = "msnet3d-synth"
    kind: str = "msnet3d"
    maxdisp: int = 192
    crop: tuple[int, int] = (256, 512)
    train_sequences: tuple[str, ...] = ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10")
    val_sequences: tuple[str, ...] = ("08",)
    batch_size: int = 8
    num_workers: int = 4
    epochs: int = 20
    lr: float = 1.0e-3
    lr_epochs: tuple[int, ...] = (10, 12, 14, 16)
    lr_downscale: float = 2.0
    loss_weights: tuple[float, ...] = (0.5, 0.5, 0.7, 1.0)
    seed: int = 1
    log_interval: int = 20
    eval_interval: int = 1
    eval_frames: int = 0
    eval_max_depth: float = 30.0
    max_iters_per_epoch: int = 0
    checkpoint_interval_iters: int = 0
    amp: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.maxdisp <= 0 or self.maxdisp % SIZE_MULTIPLE:
            raise ValueError(f"maxdisp must be a positive multiple of {SIZE_MULTIPLE}, got {self.maxdisp}")
        if len(self.crop) != 2 or any(c <= 0 or c % SIZE_MULTIPLE for c in self.crop):
            raise ValueError(f"crop (H, W) must be positive multiples of {SIZE_MULTIPLE}, got {self.crop}")
        if len(self.loss_weights) != 4:
            raise ValueError(f"loss_weights needs one weight per training output (4), got {self.loss_weights}")
        if not self.train_sequences:
            raise ValueError("train_sequences is empty")
        for k in ("batch_size", "epochs"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        for k in ("num_workers", "eval_interval", "eval_frames", "max_iters_per_epoch", "checkpoint_interval_iters"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k} must be >= 0, got {getattr(self, k)}")
        if not (self.lr > 0 and self.lr_downscale > 0 and self.eval_max_depth > 0):
            raise ValueError("lr, lr_downscale and eval_max_depth must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def load_stereo_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> StereoTrainConfig:
    """A `StereoTrainConfig` from YAML (a path, or a name in the package's config/ folder) plus
    `overrides`; unknown keys and wrong types are errors naming the file and key."""
    from sgn_ros.config import _build, _deep_merge, _read_yaml, config_dir

    p = Path(path)
    if not p.is_file():
        alt = config_dir() / (p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml")
        if not alt.is_file():
            raise FileNotFoundError(f"stereo config file not found: {p}")
        p = alt
    data = _read_yaml(p)
    if overrides:
        data = _deep_merge(data, overrides)
    for key in ("train_sequences", "val_sequences"):  # YAML reads 00 as the integer 0
        if isinstance(data.get(key), list):
            data[key] = [f"{s:02d}" if isinstance(s, int) else s for s in data[key]]
    return _build(StereoTrainConfig, data, where=str(p))


# --------------------------------------------------------------------------- recipe pieces
def reference_lr(epoch: int, base_lr: float, lr_epochs: tuple[int, ...], downscale: float) -> float:
    """The reference's step schedule (utils/experiment.adjust_learning_rate), epoch 0-based."""
    lr = base_lr
    for e in sorted(lr_epochs):
        if epoch < e:
            break
        lr /= downscale
    return lr


def msnet_loss(outputs: list[torch.Tensor], target: torch.Tensor, maxdisp: int,
               weights: tuple[float, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """sum_i w_i * smooth_l1(output_i[mask], target[mask]) with mask 0 < target < maxdisp.

    A batch without one valid pixel gives a zero loss that still reaches every output (so that
    DDP sees gradients for every parameter), not NaN.
    """
    mask = (target > 0) & (target < maxdisp)
    if len(outputs) != len(weights):
        raise ValueError(f"msnet_loss: {len(outputs)} outputs for {len(weights)} weights (training mode gives 4)")
    if not bool(mask.any()):
        terms = [o.sum() * 0.0 for o in outputs]
    else:
        terms = [w * F.smooth_l1_loss(o.float()[mask], target[mask], reduction="mean")
                 for w, o in zip(weights, outputs)]
    return sum(terms), terms


def collate_stereo(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: torch.stack([it[k] for it in items]) for k in ("left", "right", "disparity", "depth")}
    out["baseline_focal"] = torch.tensor([it["baseline_focal"] for it in items], dtype=torch.float64)
    out["frame"] = [it["frame"] for it in items]
    return out


def _normalise(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (B, H, W, 3) crops -> normalised (B, 3, H, W) on `device` (the inference path's code)."""
    left, right, _ = prepare_pair(batch["left"], batch["right"], device, min_size=None)
    return left, right


# --------------------------------------------------------------------------- evaluation
def disparity_errors(pred: np.ndarray, gt: np.ndarray, maxdisp: int, baseline_focal: float, max_depth: float,
                     valid_pred: np.ndarray | None = None) -> dict[str, Any]:
    """Per-frame sums for `summarise_errors`: EPE and D1 (|e| > 3 px and > 5 %, KITTI's) on truth
    0 < d < maxdisp where the method gives a value; relative depth errors |z - z*| / z* on pixels
    with true depth below `max_depth` m."""
    truth = (gt > 0) & (gt < maxdisp)
    has = np.ones_like(truth) if valid_pred is None else valid_pred
    m = truth & has
    e = np.abs(pred[m] - gt[m])
    gt_depth = np.where(gt > 0, baseline_focal / np.maximum(gt, 1e-6), 0.0)
    near = truth & (gt_depth < max_depth)
    dm = near & has & (pred > 0)
    z = baseline_focal / pred[dm]
    rel = np.abs(z - gt_depth[dm]) / gt_depth[dm]
    return {"epe_sum": float(e.sum()), "d1": int(((e > 3) & (e > 0.05 * gt[m])).sum()), "n": int(m.sum()),
            "truth": int(truth.sum()), "near": int(near.sum()), "rel": rel.astype(np.float32)}


def summarise_errors(parts: list[dict[str, Any]]) -> dict[str, float]:
    n = sum(p["n"] for p in parts)
    truth = sum(p["truth"] for p in parts)
    near = sum(p["near"] for p in parts)
    rel = np.concatenate([p["rel"] for p in parts]) if parts else np.zeros(0, np.float32)
    return {
        "epe": sum(p["epe_sum"] for p in parts) / max(n, 1),
        "d1": sum(p["d1"] for p in parts) / max(n, 1),
        "density": n / max(truth, 1),
        "depth_rel_median": float(np.median(rel)) if rel.size else math.nan,
        "depth_density": rel.size / max(near, 1),
        "pixels": float(n),
    }


@torch.no_grad()
def evaluate_stereo(model: nn.Module, dataset: StereoDisparityDataset, maxdisp: int, max_depth: float = 30.0,
                    frames: int = 0, sgbm: bool = True, progress: bool = False) -> dict[str, dict[str, float]]:
    """MSNet (dense) and, with `sgbm`, OpenCV SGBM (on the pixels it matches; `density` says how
    many) on full frames of `dataset` (no crop). Returns {method: metrics}."""
    from sgn_ros.data.stereo import StereoParams, disparity_sgbm

    was_training = model.training
    model.eval()
    n = len(dataset) if frames <= 0 else min(frames, len(dataset))
    ours: list[dict[str, Any]] = []
    classic: list[dict[str, Any]] = []
    params = StereoParams(num_disparities=maxdisp)
    for i in tqdm(range(n), desc="stereo eval", disable=not progress, dynamic_ncols=True):
        item = dataset[i]
        left, right = item["left"].numpy(), item["right"].numpy()
        gt, bf = item["disparity"].numpy(), float(item["baseline_focal"])
        pred = disparity(model, left, right, min_size=None).cpu().numpy()
        ours.append(disparity_errors(pred, gt, maxdisp, bf, max_depth))
        if sgbm:
            d = disparity_sgbm(left, right, params)
            classic.append(disparity_errors(d, gt, maxdisp, bf, max_depth, valid_pred=d > params.min_disparity))
    model.train(was_training)
    out = {getattr(unwrap(model), "kind", "msnet"): summarise_errors(ours)}
    if sgbm:
        out["sgbm"] = summarise_errors(classic)
    return out


def format_stereo_metrics(metrics: dict[str, dict[str, float]], max_depth: float) -> str:
    """The comparison table (one row per method)."""
    depth_head = f"median |dz|/z (<{max_depth:g} m) %"
    lines = [f"{'method':<10} {'EPE px':>8} {'D1 %':>7} {'density %':>10} {depth_head:>26}"]
    for name, m in metrics.items():
        lines.append(f"{name:<10} {m['epe']:>8.3f} {100 * m['d1']:>7.2f} {100 * m['density']:>10.1f} "
                     f"{100 * m['depth_rel_median']:>26.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- checkpoints / export
def msnet_payload(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """Our MSNet checkpoint dict (what `load_msnet` reads) for `model`, plus `extra` entries."""
    m = unwrap(model)
    sd = {k: v.detach().cpu() for k, v in m.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "kind": m.kind, "maxdisp": m.maxdisp, "state_dict": sd, **extra}


def export_compact(model: nn.Module, out: str | os.PathLike[str], limit_bytes: int = COMPACT_LIMIT_BYTES,
                   **provenance: Any) -> Path:
    """Write `model` as a float16 MSNet checkpoint (no training state) atomically; `load_msnet`
    loads it (into float32 or float16). Raises ValueError, writing nothing, above `limit_bytes`."""
    payload = msnet_payload(model, **provenance)
    payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt_io.atomic_torch_save(payload, out)
    size = out.stat().st_size
    if size > limit_bytes:
        out.unlink()
        raise ValueError(f"compact MSNet export would be {size} bytes, above the {limit_bytes} limit")
    return out


# --------------------------------------------------------------------------- the trainer
class StereoTrainer:
    """Trains one MobileStereoNet with the reference recipe; see `fit`.

    Args:
        resume: None: fresh run; True or "": continue from work_dir/latest.pth; a path: from that file.
    """

    def __init__(self, cfg: StereoTrainConfig, data_root: str | os.PathLike[str], work_dir: str | os.PathLike[str],
                 info: DistInfo | None = None, resume: str | bool | None = None) -> None:
        self.cfg = cfg
        self.info = info or DistInfo()
        self.device = self.info.device
        self.work_dir = Path(work_dir)
        setup_logging(self.work_dir, self.info)
        self.amp = resolve_amp(cfg.amp, self.device)
        self.ckpts = ckpt_io.CheckpointManager(self.work_dir)
        self.epoch = self.step_in_epoch = self.iteration = 0
        self.best_epe = math.inf
        resume_file, resume_ckpt = None, None
        if resume is not None and resume is not False:
            resume_file = self.ckpts.resolve_resume(None if resume is True else str(resume))
            resume_ckpt = self._read_resume(resume_file)

        seed_everything(cfg.seed)
        self.model = build_msnet(cfg.kind, cfg.maxdisp).to(self.device)
        self.ddp_model = wrap_ddp(self.model, self.info, find_unused_parameters=False)
        self.train_set = StereoDisparityDataset(data_root, list(cfg.train_sequences), crop=cfg.crop, seed=cfg.seed)
        self.val_set = (StereoDisparityDataset(data_root, list(cfg.val_sequences))
                        if cfg.val_sequences else None)
        for ds in (self.train_set, self.val_set):
            if ds is not None:
                ds.preflight()
        self.sampler = ResumableDistributedSampler(self.train_set, num_replicas=self.info.world_size,
                                                   rank=self.info.rank, shuffle=True, seed=cfg.seed, drop_last=True)
        per_epoch = self.sampler.num_samples // cfg.batch_size  # the reference drops the last partial batch
        if cfg.max_iters_per_epoch > 0:
            per_epoch = min(per_epoch, cfg.max_iters_per_epoch)
        if per_epoch < 1:
            raise ValueError(f"{len(self.train_set)} training frames give no batch of {cfg.batch_size} per process")
        self.iters_per_epoch = per_epoch
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self._rng: dict[str, Any] | None = None
        if resume_ckpt is not None:
            self._resume(resume_file, resume_ckpt)
        else:
            seed_everything(cfg.seed + self.info.rank)
        self.writer = None

    # ------------------------------------------------------------------ checkpoints
    def _read_resume(self, path: Path) -> dict[str, Any]:
        from sgn_ros.model.checkpoint import read_checkpoint

        ck = read_checkpoint(path)
        if ck.get("format") != CHECKPOINT_FORMAT or "training" not in ck:
            raise CheckpointError(path, f"not a MobileStereoNet training checkpoint (format {CHECKPOINT_FORMAT!r} "
                                        "with a 'training' entry, as train-stereo writes)")
        tr = ck["training"]
        for k in ("optimizer", "epoch", "step_in_epoch", "iteration"):
            if k not in tr:
                raise CheckpointError(path, f"training state lacks {k!r}: cannot resume")
        if ck.get("kind") != self.cfg.kind or int(ck.get("maxdisp", -1)) != self.cfg.maxdisp:
            raise CheckpointError(path, f"holds {ck.get('kind')} maxdisp {ck.get('maxdisp')}, the config asks for "
                                        f"{self.cfg.kind} maxdisp {self.cfg.maxdisp}")
        return ck

    def _resume(self, path: Path, ck: dict[str, Any]) -> None:
        tr = ck["training"]
        if int(tr.get("iters_per_epoch", -1)) != self.iters_per_epoch:
            raise CheckpointError(path, f"written with {tr.get('iters_per_epoch')} iterations per epoch, this run has "
                                        f"{self.iters_per_epoch} (different batch size, split or world size)")
        self.model.load_state_dict(ck["state_dict"], strict=True)
        ckpt_io.check_optimizer_state(tr["optimizer"], self.optimizer, path)
        self.optimizer.load_state_dict(tr["optimizer"])
        if tr.get("scaler") is not None and self.amp:
            self.scaler.load_state_dict(tr["scaler"])
        self.epoch, self.step_in_epoch = int(tr["epoch"]), int(tr["step_in_epoch"])
        self.iteration = int(tr["iteration"])
        self.best_epe = float(tr.get("best_epe", math.inf))
        rng = tr.get("rng") or []
        if int(tr.get("world_size", 1)) == self.info.world_size and len(rng) == self.info.world_size:
            self._rng = rng[self.info.rank]
        else:
            seed_everything(self.cfg.seed + self.info.rank)
        log.info("resumed from %s: epoch %d, step %d of %d, iteration %d", path, self.epoch + 1, self.step_in_epoch,
                 self.iters_per_epoch, self.iteration)

    def _checkpoint(self, path: Path, is_best: bool = False, metrics: dict[str, Any] | None = None) -> None:
        rng = ckpt_io.gather_rng_states(self.info)
        if self.info.is_main:
            training = {"optimizer": self.optimizer.state_dict(),
                        "scaler": self.scaler.state_dict() if self.amp else None,
                        "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "iteration": self.iteration,
                        "iters_per_epoch": self.iters_per_epoch, "world_size": self.info.world_size, "rng": rng,
                        "best_epe": self.best_epe}
            payload = msnet_payload(self.model, config=self.cfg.to_dict(), training=training, metrics=metrics or {})
            self.ckpts.save(payload, path, is_best=is_best)
            log.info("saved %s%s", path.name, " (best)" if is_best else "")
        barrier(self.info)

    # ------------------------------------------------------------------ loop
    def _loader(self, epoch: int) -> DataLoader:
        from sgn_ros.training.trainer import loader_generator

        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        if self.step_in_epoch:
            self.sampler.set_start(self.step_in_epoch * self.cfg.batch_size)
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size, sampler=self.sampler,
                          num_workers=self.cfg.num_workers, collate_fn=collate_stereo, drop_last=True,
                          pin_memory=self.device.type == "cuda",
                          generator=loader_generator(self.cfg.seed, epoch, self.info.rank))

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One Adam step on `batch` (collate_stereo output on the host); returns detached losses."""
        left, right = _normalise(batch, self.device)
        target = batch["disparity"].to(self.device, non_blocking=True)
        with autocast_context(self.amp, self.device):
            outputs = self.ddp_model(left, right)
        total, terms = msnet_loss(outputs, target, self.cfg.maxdisp, self.cfg.loss_weights)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        out = {f"loss_out{i}": t.detach() for i, t in enumerate(terms)}
        out["loss"] = total.detach()
        return out

    def fit(self) -> dict[str, dict[str, float]]:
        """Run the remaining epochs; returns the last held-out metrics ({} without evaluation)."""
        from torch.utils.tensorboard import SummaryWriter

        cfg, info = self.cfg, self.info
        if info.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self.ckpts.remove_stale_temporaries()
            with atomic_path(self.work_dir / "config.yaml") as tmp:
                tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
            self.writer = SummaryWriter(log_dir=str(self.work_dir / "tb"), purge_step=self.iteration or None)
        log.info("training %s (%s, maxdisp %d) on %s: %d frames, crops %s, %d process(es) x batch %d, "
                 "%d iterations/epoch, epochs %d..%d", cfg.name, cfg.kind, cfg.maxdisp, self.device,
                 len(self.train_set), cfg.crop, info.world_size, cfg.batch_size, self.iters_per_epoch,
                 self.epoch + 1, cfg.epochs)
        if self._rng is not None:
            ckpt_io.restore_rng_state(self._rng)
            self._rng = None
        metrics: dict[str, dict[str, float]] = {}
        bar = None
        try:
            while self.epoch < cfg.epochs:
                lr = reference_lr(self.epoch, cfg.lr, cfg.lr_epochs, cfg.lr_downscale)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                self.ddp_model.train()
                bar = tqdm(total=self.iters_per_epoch, initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}/"
                           f"{cfg.epochs}", disable=not info.is_main, dynamic_ncols=True)
                sums: dict[str, torch.Tensor] = {}
                n, t0 = 0, time.perf_counter()
                for batch in self._loader(self.epoch):
                    if self.step_in_epoch >= self.iters_per_epoch:
                        break
                    losses = self.train_step(batch)
                    self.step_in_epoch += 1
                    self.iteration += 1
                    for k, v in losses.items():
                        sums[k] = sums[k] + v if k in sums else v.clone()
                    n += 1
                    bar.update(1)
                    last = self.step_in_epoch == self.iters_per_epoch
                    if self.iteration % max(1, cfg.log_interval) == 0 or last:
                        means = reduce_mean_dict({k: v / n for k, v in sums.items()}, info)
                        if not math.isfinite(means["loss"]):
                            raise FloatingPointError(f"non-finite loss by iteration {self.iteration}: {means}")
                        self._log_train(means, lr, (time.perf_counter() - t0) / n)
                        bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}")
                        sums, n, t0 = {}, 0, time.perf_counter()
                    k_iter = cfg.checkpoint_interval_iters
                    if k_iter > 0 and self.iteration % k_iter == 0 and not last:
                        self._checkpoint(self.ckpts.iter_path(self.iteration))
                bar.close()
                broadcast_buffers(self.model, info)  # one network on every rank (rank 0's BatchNorm statistics)
                self.epoch += 1
                self.step_in_epoch = 0
                is_best = False
                due = cfg.eval_interval > 0 and (self.epoch % cfg.eval_interval == 0 or self.epoch == cfg.epochs)
                if self.val_set is not None and due:
                    metrics = self.validate()
                    epe = metrics[cfg.kind]["epe"]
                    if epe < self.best_epe:
                        self.best_epe, is_best = epe, True
                self._checkpoint(self.ckpts.epoch_path(self.epoch), is_best=is_best, metrics=metrics)
        finally:
            if bar is not None:
                bar.close()
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        log.info("training done: %d epochs, %d iterations", self.epoch, self.iteration)
        return metrics

    def _log_train(self, means: dict[str, float], lr: float, sec_per_iter: float) -> None:
        if not self.info.is_main:
            return
        log.info("epoch %d iter %d/%d (global %d) lr %.3e loss %.4f %.2f s/it", self.epoch + 1, self.step_in_epoch,
                 self.iters_per_epoch, self.iteration, lr, means["loss"], sec_per_iter)
        if self.writer is not None:
            for k, v in means.items():
                self.writer.add_scalar(f"train/{k}", v, self.iteration)
            self.writer.add_scalar("train/lr", lr, self.iteration)
            self.writer.add_scalar("train/sec_per_iter", sec_per_iter, self.iteration)

    def validate(self) -> dict[str, dict[str, float]]:
        """Held-out evaluation on rank 0 (MSNet next to SGBM), logged and written to TensorBoard."""
        metrics: dict[str, dict[str, float]] = {}
        if self.info.is_main and self.val_set is not None:
            metrics = evaluate_stereo(self.model, self.val_set, self.cfg.maxdisp, self.cfg.eval_max_depth,
                                      self.cfg.eval_frames, sgbm=True, progress=True)
            log.info("held-out evaluation after epoch %d (%s):\n%s", self.epoch, ",".join(self.cfg.val_sequences),
                     format_stereo_metrics(metrics, self.cfg.eval_max_depth))
            if self.writer is not None:
                for method, m in metrics.items():
                    for k, v in m.items():
                        self.writer.add_scalar(f"val/{method}/{k}", v, self.iteration)
                self.writer.flush()
        if self.info.distributed:
            import torch.distributed as dist

            box = [metrics]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        self.model.train()
        return metrics


# --------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default="msnet3d-synth",
                        help="stereo training config (YAML path or a name in config/), default msnet3d-synth")
    parser.add_argument("--data-root", required=True, help="KITTI-layout root with dataset/sequences/SS/{image_2,"
                        "image_3,depth,calib.txt} (sgn-ros synth --depth)")
    parser.add_argument("--work-dir", default=None, help="checkpoints, train.log, tb/ (default work_dirs/<name>)")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                        help="continue exactly: from PATH, or from WORK_DIR/latest.pth when PATH is omitted")
    parser.add_argument("--override", nargs="+", default=None, metavar="KEY=VALUE",
                        help="config overrides, e.g. epochs=2 batch_size=4 'crop=[128,256]'")
    parser.add_argument("--export", default=None, metavar="FILE",
                        help="compact float16 weights written at the end (default WORK_DIR/<name>.pt)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def run(args: argparse.Namespace) -> tuple[StereoTrainer, dict[str, dict[str, float]], Path | None]:
    """Train, evaluate the final network on the held-out sequences, export it compact.

    A fresh run that fails before its first checkpoint removes what it created (as `sgn-ros train`).
    Returns (trainer, final held-out metrics, compact file or None on ranks other than 0).
    """
    from sgn_ros.distributed import cleanup_distributed, init_distributed
    from sgn_ros.training.cli import FreshRunGuard, parse_overrides

    cfg = load_stereo_config(args.config, parse_overrides(args.override))
    work_dir = Path(args.work_dir) if args.work_dir else Path("work_dirs") / cfg.name
    guard = FreshRunGuard(work_dir)
    info = init_distributed(args.device)
    try:
        trainer = StereoTrainer(cfg, args.data_root, work_dir, info=info, resume=args.resume)
        metrics = trainer.fit()
        if not metrics and trainer.val_set is not None:  # collective under torchrun: every rank calls it
            metrics = trainer.validate()
        out = None
        if info.is_main:
            if metrics:
                with atomic_path(work_dir / "eval.json") as tmp:
                    tmp.write_text(json.dumps({"sequences": list(cfg.val_sequences), "max_depth_m": cfg.eval_max_depth,
                                               "metrics": metrics}, indent=2), encoding="utf-8")
                print(format_stereo_metrics(metrics, cfg.eval_max_depth), flush=True)
            out = export_compact(trainer.model, args.export or work_dir / f"{cfg.name}.pt", config=cfg.to_dict(),
                                 metrics=metrics, epochs=trainer.epoch, iterations=trainer.iteration)
            log.info("compact weights: %s (%.2f MB)", out, out.stat().st_size / 1e6)
    except BaseException:
        if info.is_main:
            guard.undo()
        raise
    finally:
        cleanup_distributed()
    return trainer, metrics, out


def main(args: argparse.Namespace) -> int:
    run(args)
    return 0


if __name__ == "__main__":
    import sys

    from sgn_ros.cli import main as cli_main

    sys.exit(cli_main(["train-stereo", *sys.argv[1:]]))
