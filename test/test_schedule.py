# Tests of the warm-up + cosine schedule against a step-by-step re-enactment of what the
# reference's runner does (mmcv EpochBasedRunner + CosineAnnealingLrUpdaterHook, by_epoch=True,
# linear warm-up by iteration), plus hand-computed values of the reference recipe.
import math

import pytest
import torch

from sgn_ros.training.schedule import WarmupCosineLR


class _HookReenactment:
    """The reference's hook logic as a state machine, driven like the runner drives it."""

    def __init__(self, base_lr, epochs, iters_per_epoch, warmup_iters, warmup_ratio, min_lr_ratio):
        self.base_lr, self.epochs, self.ipe = base_lr, epochs, iters_per_epoch
        self.warmup_iters, self.warmup_ratio, self.min_lr_ratio = warmup_iters, warmup_ratio, min_lr_ratio

    def run(self):
        lrs = []
        lr = self.base_lr
        it = 0
        for epoch in range(self.epochs):
            # before_train_epoch: regular lr of this epoch
            end = self.base_lr * self.min_lr_ratio
            regular = end + 0.5 * (self.base_lr - end) * (math.cos(math.pi * epoch / self.epochs) + 1)
            lr = regular
            for _ in range(self.ipe):
                # before_train_iter (by_epoch branch)
                if it < self.warmup_iters:
                    k = (1 - it / self.warmup_iters) * (1 - self.warmup_ratio)
                    lr = regular * (1 - k)
                elif it == self.warmup_iters:
                    lr = regular
                lrs.append(lr)
                it += 1
        return lrs


def _run_ours(base_lr, epochs, ipe, warmup, ratio, min_ratio, resume_at=None):
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=base_lr, weight_decay=0.01)
    sched = WarmupCosineLR(opt, ipe, epochs, warmup, ratio, min_ratio)
    lrs = []
    for i in range(epochs * ipe):
        if resume_at is not None and i == resume_at:
            state_o, state_s = opt.state_dict(), sched.state_dict()
            opt = torch.optim.AdamW([p], lr=base_lr, weight_decay=0.01)
            sched = WarmupCosineLR(opt, ipe, epochs, warmup, ratio, min_ratio)
            opt.load_state_dict(state_o)
            sched.load_state_dict(state_s)
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize(
    "epochs,ipe,warmup",
    [(48, 3, 20), (5, 7, 20), (4, 10, 0), (3, 4, 12), (6, 5, 1)],
)
def test_matches_reference_hook_reenactment(epochs, ipe, warmup):
    ref = _HookReenactment(2e-4, epochs, ipe, warmup, 1 / 3, 1e-3).run()
    ours = _run_ours(2e-4, epochs, ipe, warmup, 1 / 3, 1e-3)
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a == pytest.approx(b, rel=1e-12, abs=0), f"iteration {i}"


def test_reference_recipe_values_by_hand():
    ipe = 958  # 3834 SemanticKITTI training frames on 4 GPUs x 1 sample
    lrs = _run_ours(2e-4, 2, ipe, 500, 1 / 3, 1e-3)
    # iteration 0: lr / 3
    assert lrs[0] == pytest.approx(2e-4 / 3, rel=1e-12)
    # iteration 250: halfway through the warm-up: 2e-4 * (1 - 0.5 * 2/3) = 2e-4 * 2/3
    assert lrs[250] == pytest.approx(2e-4 * 2 / 3, rel=1e-12)
    # iteration 500 onwards in epoch 0: the base lr (cosine factor of epoch 0 is 1)
    assert lrs[500] == pytest.approx(2e-4, rel=1e-12)
    assert lrs[ipe - 1] == pytest.approx(2e-4, rel=1e-12)
    # epoch 1 of 2: cos(pi/2) = 0 -> halfway between 2e-4 and 2e-7
    assert lrs[ipe] == pytest.approx((2e-4 + 2e-7) / 2, rel=1e-12)


def test_last_epoch_of_48_does_not_reach_min():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=2e-4)
    sched = WarmupCosineLR(opt, iters_per_epoch=20, max_epochs=48, warmup_iters=500)
    f = sched.factor(47 * 20)  # past the warm-up
    expected = 1e-3 + 0.5 * (1 - 1e-3) * (1 + math.cos(math.pi * 47 / 48))
    assert f == pytest.approx(expected, rel=1e-12)
    assert f > 1e-3


def test_resume_from_state_dict_is_exact():
    full = _run_ours(2e-4, 4, 6, 10, 1 / 3, 1e-3)
    resumed = _run_ours(2e-4, 4, 6, 10, 1 / 3, 1e-3, resume_at=7)
    assert resumed == full


def test_bad_arguments_name_the_parameter():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ValueError, match="iters_per_epoch"):
        WarmupCosineLR(opt, 0, 10)
    with pytest.raises(ValueError, match="warmup_ratio"):
        WarmupCosineLR(opt, 5, 10, warmup_iters=5, warmup_ratio=0.0)
