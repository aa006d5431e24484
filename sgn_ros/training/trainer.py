# The offline training loop of SGN: the reference recipe (AdamW 2e-4 / 0.01, gradient clipping
# at norm 35, 500-iteration linear warm-up from lr/3 then cosine by epoch to lr x 1e-3, 48 epochs,
# evaluation every epoch, best-mIoU checkpoint kept apart), in one process or one process per
# device under torchrun, with exact resume from any checkpoint.
"""`Trainer`: data, model, optimiser, schedule, loop, evaluation, logging and checkpoints."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from sgn_ros.config import SGNConfig
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
from sgn_ros.training import checkpointing as ckpt_io
from sgn_ros.training.schedule import WarmupCosineLR

LOGGER_NAME = "sgn_ros.training"
log = logging.getLogger(LOGGER_NAME)

#: DDP's find_unused_parameters. False, unlike the reference (mmcv's default True there, needed
#: because mmdet builds ResNet layer4 and a few other checkpoint-only modules trainable but never runs
#: them). SGN here freezes exactly those (`SGN.unused_parameters`), and every other trainable
#: parameter takes part in every iteration: even when every voxel is a seed, the prior MLP runs on
#: the empty set of non-seed voxels and receives a (zero) gradient. So DDP's per-iteration search of
#: the autograd graph is not needed; were it ever violated, DDP stops with an error naming the
#: parameters that got no gradient (it does not hang).
FIND_UNUSED_PARAMETERS = False


# --------------------------------------------------------------------------- small helpers
def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters that train (frozen stem/layer1/BatchNorms excluded), in module order."""
    return [p for p in model.parameters() if p.requires_grad]


def find_encoder(model: nn.Module) -> nn.Module:
    """The ResNet image encoder inside `model` (for the ImageNet initialisation)."""
    from sgn_ros.model.encoder import ResNetEncoder

    found = [m for m in model.modules() if isinstance(m, ResNetEncoder)]
    if len(found) != 1:
        raise ValueError(f"expected exactly one ResNetEncoder in the model, found {len(found)}")
    return found[0]


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path, fsync=True) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def loader_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """Generator for the DataLoader's worker seeds: a pure function of (seed, epoch, rank).

    Without it the DataLoader draws its base seed from the global torch RNG when an epoch's
    iterator is made, which a resumed run would do at a different point of the RNG stream.
    """
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch * 1009 + rank) % (2**63))
    return g


def optimisation_step(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    scaler: torch.amp.GradScaler,
    params: list[nn.Parameter],
    batch: Any,
    grad_clip: float,
    amp: bool,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One training iteration as the reference's optimiser hook does it.

    forward (float16 autocast when `amp`) -> losses in float32 -> zero_grad -> backward (scaled)
    -> unscale -> clip the global 2-norm of the gradients that exist to `grad_clip` (mmcv's
    clip_grads: parameters without a gradient are left out) -> optimiser step (skipped by the
    scaler on inf/NaN) -> scheduler step.

    Args:
        batch: an SSCBatch already on the model's device.
    Returns:
        (loss terms detached, plus "loss" = their sum), gradient norm before clipping (0-dim).
    """
    device = batch.images.device
    with autocast_context(amp, device):
        outputs = model(batch)
    outputs = {k: (v.float() if torch.is_floating_point(v) else v) for k, v in outputs.items()}
    losses = criterion(outputs, batch)
    total = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.unscale_(optimizer)
    with_grad = [p for p in params if p.grad is not None]
    if grad_clip > 0 and with_grad:
        grad_norm = torch.nn.utils.clip_grad_norm_(with_grad, grad_clip, norm_type=2.0)
    else:
        grad_norm = torch.zeros((), device=device)
    scaler.step(optimizer)
    scaler.update()
    if scheduler is not None:
        scheduler.step()
    out = {k: v.detach() for k, v in losses.items()}
    out["loss"] = total.detach()
    return out, grad_norm.detach()


def check_finite(means: dict[str, float], iteration: int, amp: bool) -> None:
    """Stop with a clear error once losses (or, without AMP, gradients) are not finite.

    Checked on the logged means (no extra host synchronisation per iteration). With AMP the
    GradScaler skips steps whose gradients overflow, so only the losses are checked then.
    """
    keys = [k for k in means if k != "grad_norm" or not amp]
    bad = {k: means[k] for k in keys if not math.isfinite(means[k])}
    if bad:
        raise FloatingPointError(
            f"non-finite training values by iteration {iteration}: {bad} (all terms: {means}); "
            "the weights are no longer usable - resume from the last good checkpoint after fixing the cause"
        )


# --------------------------------------------------------------------------- the trainer
@dataclass
class TrainState:
    """Progress counters (what a checkpoint stores besides tensors)."""

    epoch: int = 0  # the epoch being run / to run next, 0-based
    step_in_epoch: int = 0  # optimiser steps already done in `epoch`
    iteration: int = 0  # global optimiser steps done
    best_metric: float = -math.inf
    best_epoch: int = 0  # 1-based epoch of best.pth (0: none yet)


class Trainer:
    """Trains one SGN model as the reference recipe does; see `fit`.

    Args:
        cfg: the full configuration (model, data, train recipe, grid).
        data_root: dataset root (SemanticKITTI: the folder holding ``dataset/``).
        work_dir: checkpoints, train.log, config.yaml, TensorBoard events (tb/).
        info: this process's place in the job (`sgn_ros.distributed.init_distributed`).
        resume: None: fresh run; "" or True: continue from work_dir/latest.pth; a path: from that file.
        train_sequences / val_sequences: override the split's sequences (e.g. a synthetic world).
        allow_unsafe_load: torch.load(weights_only=False) for the resume file.
    """

    def __init__(
        self,
        cfg: SGNConfig,
        data_root: str | os.PathLike[str],
        work_dir: str | os.PathLike[str],
        info: DistInfo | None = None,
        resume: str | bool | None = None,
        train_sequences: list[str] | None = None,
        val_sequences: list[str] | None = None,
        allow_unsafe_load: bool = False,
    ) -> None:
        from sgn_ros.data.common import preflight
        from sgn_ros.data.registry import build_dataset
        from sgn_ros.model import build_model
        from sgn_ros.model.losses import SGNLoss

        self.cfg = cfg
        self.info = info or DistInfo()
        self.device = self.info.device
        self.work_dir = Path(work_dir)
        self.data_root = Path(data_root)
        tc = cfg.train
        if tc.batch_size < 1:
            raise ValueError(f"train.batch_size must be >= 1, got {tc.batch_size}")
        if tc.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1, got {tc.epochs}")
        setup_logging(self.work_dir, self.info)  # rank 0: stderr + work_dir/train.log
        self.amp = resolve_amp(tc.amp, self.device)
        self.ckpts = ckpt_io.CheckpointManager(self.work_dir)
        self.state = TrainState()
        # the resume file is read and checked first: a bad one fails before any data is touched
        resume_file, resume_ckpt = None, None
        if resume is not None and resume is not False:
            resume_file = self.ckpts.resolve_resume(None if resume is True else str(resume))
            resume_ckpt = ckpt_io.load_training_checkpoint(resume_file, allow_unsafe=allow_unsafe_load)

        # ---- model: identical initialisation on every rank, then rank-specific RNG streams
        seed_everything(tc.seed)
        model = build_model(cfg)
        if tc.pretrained_backbone and resume is None:
            from sgn_ros.model.encoder import load_torchvision_resnet

            load_torchvision_resnet(find_encoder(model), tc.pretrained_backbone)
            log.info("encoder initialised from %s", tc.pretrained_backbone)
        if tc.load_from and resume is None:
            self._load_initial_weights(model, tc.load_from, allow_unsafe_load)
        model.to(self.device)
        self.model = model
        self.params = trainable_parameters(model)
        self.ddp_model = wrap_ddp(model, self.info, find_unused_parameters=FIND_UNUSED_PARAMETERS)
        self.criterion = SGNLoss(cfg).to(self.device)

        # ---- data
        self.train_set = build_dataset(self.data_root, cfg, "train", sequences=train_sequences)
        if len(self.train_set) == 0:
            raise ValueError(f"training split of {self.data_root} has no samples (frames with voxel labels)")
        self.val_set = None
        if tc.eval_interval > 0:
            self.val_set = build_dataset(self.data_root, cfg, "val", sequences=val_sequences)
        # every file the run will read is checked now (seconds), not when an epoch reaches it
        for ds in (self.train_set, self.val_set):
            if ds is not None:
                preflight(ds, progress=self.info.is_main)
        self.sampler = ResumableDistributedSampler(
            self.train_set,
            num_replicas=self.info.world_size,
            rank=self.info.rank,
            shuffle=True,
            seed=tc.seed,
        )
        per_epoch = math.ceil(self.sampler.num_samples / tc.batch_size)
        if tc.max_iters_per_epoch > 0:
            per_epoch = min(per_epoch, tc.max_iters_per_epoch)
        self.iters_per_epoch = per_epoch

        # ---- optimiser, schedule, scaler
        self.optimizer = torch.optim.AdamW(self.params, lr=tc.lr, weight_decay=tc.weight_decay)
        self.scheduler = WarmupCosineLR(
            self.optimizer,
            iters_per_epoch=self.iters_per_epoch,
            max_epochs=tc.epochs,
            warmup_iters=tc.warmup_iters,
            warmup_ratio=tc.warmup_ratio,
            min_lr_ratio=tc.min_lr_ratio,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self._rng_to_restore: dict[str, Any] | None = None
        if resume_ckpt is not None:
            self._resume(resume_file, resume_ckpt)
        if self._rng_to_restore is None:  # fresh run: one RNG stream per rank (resume restores them in fit)
            seed_everything(tc.seed + self.info.rank)
        self.writer = None
        #: (global iteration, rank-averaged means of the loss terms, "loss", "grad_norm") per log line
        self.history: list[tuple[int, dict[str, float]]] = []

    # ------------------------------------------------------------------ fine-tuning / resume
    def _load_initial_weights(self, model: nn.Module, path: str, allow_unsafe: bool) -> None:
        """train.load_from: start from a checkpoint's weights (model-only, training or reference
        file), with a fresh optimiser and schedule. The file's network must be this config's."""
        from sgn_ros.model.checkpoint import load_model

        loaded = load_model(path, expect=self.cfg, allow_unsafe=allow_unsafe)
        model.load_state_dict(loaded.model.state_dict(), strict=True)
        log.info("weights initialised from %s (train.load_from)", path)

    def _resume(self, file: Path, ck: dict[str, Any]) -> None:
        """Restore model, optimiser (its shapes checked first), schedule, scaler and counters."""
        from sgn_ros.model.checkpoint import load_model

        if ck.get("config") != self.cfg.to_dict():
            log.warning("resuming %s whose stored config differs from the current one in settings that do not "
                        "define the network; using the current", file)
        tr = ck["training"]
        if tr["scheduler"].get("iters_per_epoch") != self.iters_per_epoch:
            raise CheckpointError(
                file, f"written with {tr['scheduler'].get('iters_per_epoch')} iterations per epoch, this run has "
                f"{self.iters_per_epoch} (different world size, batch size, split or max_iters_per_epoch)"
            )
        # the one loader: a network, class count or grid other than this config's is an error
        loaded = load_model(ck, expect=self.cfg, where=file)
        self.model.load_state_dict(loaded.model.state_dict(), strict=True)
        ckpt_io.check_optimizer_state(tr["optimizer"], self.optimizer, file)
        self.optimizer.load_state_dict(tr["optimizer"])
        self.scheduler.load_state_dict(tr["scheduler"])
        self._apply_schedule_config(file)
        if tr.get("scaler") is not None and self.amp:
            self.scaler.load_state_dict(tr["scaler"])
        self.state = TrainState(
            epoch=int(tr["epoch"]),
            step_in_epoch=int(tr["step_in_epoch"]),
            iteration=int(tr["iteration"]),
            best_metric=float(tr.get("best_metric", -math.inf)),
            best_epoch=int(tr.get("best_epoch", 0)),
        )
        rng = tr.get("rng") or []
        if int(tr.get("world_size", 1)) == self.info.world_size and len(rng) == self.info.world_size:
            self._rng_to_restore = rng[self.info.rank]
        else:
            log.warning("%s: RNG states of %d rank(s) cannot be restored on %d; reseeding", file, len(rng),
                        self.info.world_size)
        log.info(
            "resumed from %s: epoch %d, step %d of %d, iteration %d",
            file, self.state.epoch + 1, self.state.step_in_epoch, self.iters_per_epoch, self.state.iteration,
        )

    def _apply_schedule_config(self, file: Path) -> None:
        """After loading a scheduler state: the current config's schedule wins (e.g. more epochs).

        Unchanged settings keep the resumed run exact; changed ones are logged and take effect from
        the next iteration on (the optimiser's lr is recomputed for the current iteration).
        """
        tc = self.cfg.train
        wanted = {"max_epochs": tc.epochs, "warmup_iters": tc.warmup_iters, "warmup_ratio": tc.warmup_ratio,
                  "min_lr_ratio": tc.min_lr_ratio}
        changed = {k: (getattr(self.scheduler, k), v) for k, v in wanted.items() if getattr(self.scheduler, k) != v}
        if changed:
            log.warning("%s: schedule settings changed on resume (old, new): %s", file, changed)
            for k, (_, v) in changed.items():
                setattr(self.scheduler, k, v)
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_lr()):
                group["lr"] = lr
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self, path: Path, is_best: bool = False) -> None:
        """Collective: every rank contributes its RNG state, rank 0 writes."""
        rng = ckpt_io.gather_rng_states(self.info)
        if self.info.is_main:
            training = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.amp else None,
                "epoch": self.state.epoch,
                "step_in_epoch": self.state.step_in_epoch,
                "iteration": self.state.iteration,
                "sampler_seed": self.cfg.train.seed,
                "world_size": self.info.world_size,
                "rng": rng,
                "best_metric": self.state.best_metric,
                "best_epoch": self.state.best_epoch,
            }
            ck = ckpt_io.build_training_checkpoint(self.model.state_dict(), self.cfg.to_dict(), training)
            self.ckpts.save(ck, path, is_best=is_best)
            log.info("saved %s%s", path.name, " (best)" if is_best else "")
        barrier(self.info)

    # ------------------------------------------------------------------ loop
    def _make_loader(self, epoch: int) -> DataLoader:
        from sgn_ros.data.collate import collate_ssc

        self.sampler.set_epoch(epoch)
        if self.state.step_in_epoch:
            self.sampler.set_start(self.state.step_in_epoch * self.cfg.train.batch_size)
        return DataLoader(
            self.train_set,
            batch_size=self.cfg.train.batch_size,
            sampler=self.sampler,
            num_workers=self.cfg.train.num_workers,
            collate_fn=collate_ssc,
            pin_memory=self.device.type == "cuda",
            drop_last=False,
            generator=loader_generator(self.cfg.train.seed, epoch, self.info.rank),
        )

    def train_step(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One optimiser step on `batch` (an SSCBatch on the host). Returns (loss terms, grad norm)."""
        return optimisation_step(
            self.ddp_model, self.criterion, self.optimizer, self.scheduler, self.scaler, self.params,
            batch.to(self.device, non_blocking=True), self.cfg.train.grad_clip, self.amp,
        )

    def fit(self) -> dict[str, Any]:
        """Run the remaining epochs. Returns the last validation metrics (empty without eval)."""
        tc = self.cfg.train
        info = self.info
        if info.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            for p in self.ckpts.remove_stale_temporaries():
                log.warning("removed %s, left by an interrupted write", p.name)
            atomic_write_text(self.work_dir / "config.yaml", yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.work_dir / "tb"), purge_step=self.state.iteration or None)
        log.info(
            "training %s on %s: %d samples, %d process(es) x batch %d, %d iterations/epoch, epochs %d..%d, "
            "%d trainable of %d parameters, amp=%s",
            self.cfg.name, self.device, len(self.train_set), info.world_size, tc.batch_size, self.iters_per_epoch,
            self.state.epoch + 1, tc.epochs, sum(p.numel() for p in self.params),
            sum(p.numel() for p in self.model.parameters()), self.amp,
        )
        if self._rng_to_restore is not None:
            ckpt_io.restore_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
        last_metrics: dict[str, Any] = {}
        log_every = max(1, tc.log_interval)
        bar = None
        try:
            while self.state.epoch < tc.epochs:
                epoch = self.state.epoch
                self.ddp_model.train()
                loader = self._make_loader(epoch)
                bar = tqdm(
                    total=self.iters_per_epoch,
                    initial=self.state.step_in_epoch,
                    desc=f"epoch {epoch + 1}/{tc.epochs}",
                    disable=not info.is_main,
                    dynamic_ncols=True,
                )
                sums: dict[str, torch.Tensor] = {}
                n_sum = 0
                t0 = time.perf_counter()
                for batch in loader:
                    if self.state.step_in_epoch >= self.iters_per_epoch:
                        break
                    lr = self.optimizer.param_groups[0]["lr"]
                    losses, grad_norm = self.train_step(batch)
                    self.state.step_in_epoch += 1
                    self.state.iteration += 1
                    losses["grad_norm"] = grad_norm
                    for k, v in losses.items():
                        sums[k] = sums[k] + v if k in sums else v.clone()
                    n_sum += 1
                    bar.update(1)
                    last_step = self.state.step_in_epoch == self.iters_per_epoch
                    if self.state.iteration % log_every == 0 or last_step:
                        means = reduce_mean_dict({k: v / n_sum for k, v in sums.items()}, info)
                        check_finite(means, self.state.iteration, self.amp)
                        dt = (time.perf_counter() - t0) / n_sum
                        self._log_train(means, lr, dt)
                        bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}")
                        sums, n_sum, t0 = {}, 0, time.perf_counter()
                    k_iter = tc.checkpoint_interval_iters
                    if k_iter > 0 and self.state.iteration % k_iter == 0 and not last_step:
                        self._checkpoint(self.ckpts.iter_path(self.state.iteration))
                bar.close()
                # epoch done: one model on every rank (rank 0's BatchNorm statistics), then eval + checkpoint
                broadcast_buffers(self.model, info)
                self.state.epoch += 1
                self.state.step_in_epoch = 0
                is_best = False
                due = self.state.epoch % max(tc.eval_interval, 1) == 0 or self.state.epoch == tc.epochs
                if self.val_set is not None and due:
                    last_metrics = self.validate()
                    miou = float(last_metrics["iou_mean"])
                    if miou > self.state.best_metric:
                        self.state.best_metric, self.state.best_epoch, is_best = miou, self.state.epoch, True
                self._checkpoint(self.ckpts.epoch_path(self.state.epoch), is_best=is_best)
        finally:
            if bar is not None:  # closed now, not when collected (after the CLI's error line)
                bar.close()
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        best = (f"; best mIoU {self.state.best_metric:.4f} at epoch {self.state.best_epoch} (best.pth)"
                if self.state.best_epoch else "")
        log.info("training done: %d epochs, %d iterations%s", self.state.epoch, self.state.iteration, best)
        return last_metrics

    # ------------------------------------------------------------------ logging / evaluation
    def _log_train(self, means: dict[str, float], lr: float, sec_per_iter: float) -> None:
        self.history.append((self.state.iteration, dict(means, lr=lr)))
        if not self.info.is_main:
            return
        it = self.state.iteration
        terms = " ".join(f"{k}={v:.4f}" for k, v in means.items() if k not in ("loss", "grad_norm"))
        log.info(
            "epoch %d iter %d/%d (global %d) lr %.3e loss %.4f grad_norm %.2f %.2f s/it | %s",
            self.state.epoch + 1, self.state.step_in_epoch, self.iters_per_epoch, it, lr, means["loss"],
            means["grad_norm"], sec_per_iter, terms,
        )
        if self.writer is not None:
            for k, v in means.items():
                self.writer.add_scalar(f"train/{k}", v, it)
            self.writer.add_scalar("train/lr", lr, it)
            self.writer.add_scalar("train/sec_per_iter", sec_per_iter, it)

    def validate(self) -> dict[str, Any]:
        """Evaluate on the validation split (all ranks), log the table, write TensorBoard entries."""
        from sgn_ros.evaluation.network import evaluate_model, format_metrics, make_eval_loader

        loader = make_eval_loader(self.val_set, self.cfg, self.info)
        result = evaluate_model(
            unwrap(self.ddp_model), loader, self.cfg, self.info, amp=self.amp, num_pictures=1, progress=True
        )
        self.ddp_model.train()
        if self.info.is_main:
            names = self.val_set.label_set.names
            log.info("validation after epoch %d:\n%s", self.state.epoch, format_metrics(result.metrics, names))
            if self.writer is not None:
                it = self.state.iteration
                for k, v in result.metrics.items():
                    if isinstance(v, (int, float)):
                        self.writer.add_scalar(f"val/{k}", float(v), it)
                for name, picture in result.pictures:
                    self.writer.add_image(f"val/{name}", picture, it, dataformats="HWC")
                self.writer.flush()
        return result.metrics
