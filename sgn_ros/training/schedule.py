# Learning-rate schedule of the reference recipe: linear warm-up by iteration, cosine annealing
# by epoch (mmcv's CosineAnnealingLrUpdaterHook under an EpochBasedRunner, by_epoch=True),
# written as a torch LRScheduler so that it checkpoints with state_dict() like any other.
"""Warm-up + cosine learning-rate schedule, iteration-stepped, matching the reference runner.

What the reference does (mmcv 1.x ``lr_config = dict(policy='CosineAnnealing', warmup='linear',
warmup_iters=500, warmup_ratio=1/3, min_lr_ratio=1e-3)`` with ``EpochBasedRunner``):

* ``by_epoch`` is True (the hook's default), so the *regular* lr changes once per epoch:
  ``regular(e) = end + 0.5 * (base - end) * (1 + cos(pi * e / max_epochs))`` with
  ``end = base * min_lr_ratio`` and ``e`` the 0-based epoch. The last epoch (47 of 48) therefore
  never reaches ``end`` exactly.
* warm-up counts *iterations* (global, across epochs): for global iteration ``i < warmup_iters``
  the lr is ``regular(e) * (1 - (1 - i / warmup_iters) * (1 - warmup_ratio))``, i.e. it starts at
  ``regular * warmup_ratio`` and grows linearly; from ``i >= warmup_iters`` on it is ``regular(e)``.

Both are pure functions of (global iteration, iterations per epoch), so the scheduler keeps only
its step counter (``last_epoch`` in torch's naming = global iteration) and resumes exactly.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def cosine_epoch_factor(epoch: int, max_epochs: int, min_lr_ratio: float) -> float:
    """Regular-lr multiplier of epoch `epoch` (0-based): cosine from 1 to `min_lr_ratio`."""
    progress = epoch / max_epochs
    return min_lr_ratio + 0.5 * (1.0 - min_lr_ratio) * (1.0 + math.cos(math.pi * progress))


def linear_warmup_factor(iteration: int, warmup_iters: int, warmup_ratio: float) -> float:
    """Warm-up multiplier of global iteration `iteration` (0-based); 1 once warm-up is over."""
    if warmup_iters <= 0 or iteration >= warmup_iters:
        return 1.0
    k = (1.0 - iteration / warmup_iters) * (1.0 - warmup_ratio)
    return 1.0 - k


class WarmupCosineLR(LRScheduler):
    """The reference schedule as an iteration-stepped scheduler.

    Call ``step()`` once after every optimiser step. Construction applies the lr of iteration 0.

    Args:
        optimizer: wrapped optimiser; each group's ``initial_lr`` (its lr at construction) is the
            base lr.
        iters_per_epoch: optimiser steps per epoch (per process: len of the DataLoader).
        max_epochs: length of the cosine (reference 48).
        warmup_iters: linear warm-up length in iterations (reference 500; 0 disables).
        warmup_ratio: lr factor at iteration 0 (reference 1/3).
        min_lr_ratio: final lr as a fraction of the base lr (reference 1e-3).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        iters_per_epoch: int,
        max_epochs: int,
        warmup_iters: int = 500,
        warmup_ratio: float = 1.0 / 3.0,
        min_lr_ratio: float = 1e-3,
        last_epoch: int = -1,
    ) -> None:
        if iters_per_epoch < 1:
            raise ValueError(f"WarmupCosineLR: iters_per_epoch must be >= 1, got {iters_per_epoch}")
        if max_epochs < 1:
            raise ValueError(f"WarmupCosineLR: max_epochs must be >= 1, got {max_epochs}")
        if warmup_iters < 0:
            raise ValueError(f"WarmupCosineLR: warmup_iters must be >= 0, got {warmup_iters}")
        if warmup_iters > 0 and not 0.0 < warmup_ratio <= 1.0:
            raise ValueError(f"WarmupCosineLR: warmup_ratio must be in (0, 1], got {warmup_ratio}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"WarmupCosineLR: min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.iters_per_epoch = int(iters_per_epoch)
        self.max_epochs = int(max_epochs)
        self.warmup_iters = int(warmup_iters)
        self.warmup_ratio = float(warmup_ratio)
        self.min_lr_ratio = float(min_lr_ratio)
        super().__init__(optimizer, last_epoch)

    def factor(self, iteration: int) -> float:
        """lr / base lr at global iteration `iteration` (0-based)."""
        epoch = iteration // self.iters_per_epoch
        return cosine_epoch_factor(epoch, self.max_epochs, self.min_lr_ratio) * linear_warmup_factor(
            iteration, self.warmup_iters, self.warmup_ratio
        )

    def get_lr(self) -> list[float]:  # type: ignore[override]
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()
