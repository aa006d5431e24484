# Tests of sgn_ros.model.losses against values worked out by hand on tiny inputs, plus slow
# loop versions of the vectorised class loops and the SGNLoss aggregator on a reduced grid.
import math

import pytest
import torch
import torch.nn.functional as F

from sgn_ros.batch import SSCBatch
from sgn_ros.config import load_config
from sgn_ros.model.losses import (
    LOSS_NAMES,
    SGNLoss,
    binary_occupancy,
    geo_scal_loss,
    lovasz_softmax_loss,
    occupancy_bce_loss,
    seed_ce_loss,
    seed_targets,
    sem_scal_loss,
    weighted_ce_loss,
)

torch.set_num_threads(2)
LN = math.log
L3 = math.log(3.0)


def _vol(rows):
    """Per-voxel class logits [[...C], ...] -> (1, C, 1, 1, N)."""
    return torch.tensor(rows, dtype=torch.float32).T.reshape(1, len(rows[0]), 1, 1, len(rows))


def _tgt(labels):
    return torch.tensor(labels, dtype=torch.int64).reshape(1, 1, 1, len(labels))


def test_weighted_ce_by_hand():
    # voxel a: logits (0, 0), y=0 -> -log 1/2, weight 0.5; voxel b: (ln3, 0), y=1 -> -log 1/4, weight 2;
    # voxel c ignored. Mean over the 2 valid voxels (not over the weight sum).
    logits = _vol([[0.0, 0.0], [L3, 0.0], [5.0, -5.0]])
    loss = weighted_ce_loss(logits, _tgt([0, 1, 255]), torch.tensor([0.5, 2.0]))
    assert loss.item() == pytest.approx((0.5 * LN(2) + 2.0 * LN(4)) / 2, rel=1e-6)
    assert weighted_ce_loss(logits, _tgt([0, 1, 255]), None).item() == pytest.approx((LN(2) + LN(4)) / 2, rel=1e-6)


def test_sem_scal_by_hand():
    # probabilities: a (1/2, 1/2, 0), b (3/4, 1/4, 0); labels a=0, b=1, c ignored; class 2 absent.
    logits = _vol([[0.0, 0.0, -1e4], [L3, 0.0, -1e4], [0.0, 9.0, 0.0]])
    loss = sem_scal_loss(logits, _tgt([0, 1, 255]))
    # class 0: t=(1,0), p=(.5,.75): precision .5/1.25, recall .5/1, specificity (1-.75)/1
    l0 = -LN(0.5 / 1.25) - LN(0.5) - LN(0.25)
    # class 1: t=(0,1), p=(.5,.25): precision .25/.75, recall .25/1, specificity (1-.5)/1
    l1 = -LN(0.25 / 0.75) - LN(0.25) - LN(0.5)
    assert loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-5)


def test_geo_scal_by_hand():
    # probabilities: a (1/3, 1/3, 1/3) label 0, b (1/2, 1/4, 1/4) label 2, c ignored.
    logits = _vol([[0.0, 0.0, 0.0], [LN(2), 0.0, 0.0], [9.0, 0.0, 0.0]])
    loss = geo_scal_loss(logits, _tgt([0, 2, 255]))
    # occupied prob q = (2/3, 1/2), occupied target o = (0, 1): intersection 1/2
    precision = 0.5 / (2 / 3 + 0.5)
    recall = 0.5 / 1
    specificity = (1 / 3) / 1
    assert loss.item() == pytest.approx(-LN(precision) - LN(recall) - LN(specificity), rel=1e-5)


def test_lovasz_softmax_by_hand():
    probs = torch.tensor([[0.8, 0.2, 0.0], [0.4, 0.6, 0.0], [0.3, 0.7, 0.0], [0.1, 0.1, 0.8]])
    labels = torch.tensor([0, 0, 1, 255])
    # class 0: errors (.2,.6,.3) -> sorted .6 .3 .2 with fg 1 0 1; G=2
    #   J = 1 - (G - cumsum fg)/(G + cumsum(1-fg)) = 1 - (1/2, 1/3, 0) -> grads (1/2, 1/6, 1/3)
    l0 = 0.6 * 0.5 + 0.3 / 6 + 0.2 / 3
    # class 1: errors (.2,.6,.3) -> sorted .6 .3 .2 with fg 0 1 0; G=1
    #   J = 1 - (1/2, 0, 0) -> grads (1/2, 1/2, 0)
    l1 = 0.6 * 0.5 + 0.3 * 0.5
    # class 2 not present (only in the ignored row) -> skipped
    assert lovasz_softmax_loss(probs, labels).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_seed_targets_and_ce_by_hand():
    target_half = torch.arange(16).reshape(2, 2, 2, 2)
    idx = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 1], [1, 1, 1, 0]])
    # flat index b*8 + x*4 + y*2 + z
    assert seed_targets(target_half, idx).tolist() == [5, 11, 14]
    logits = torch.tensor([[0.0, 0.0], [L3, 0.0], [1.0, 2.0]])
    loss = seed_ce_loss(logits, torch.tensor([1, 0, 255]))
    assert loss.item() == pytest.approx((LN(2) + LN(4 / 3)) / 2, rel=1e-6)
    with pytest.raises(ValueError, match=r"\(S, 4\)"):
        seed_targets(target_half, idx[:, :3])


def test_occupancy_bce_by_hand():
    assert binary_occupancy(torch.tensor([0, 7, 255, 1])).tolist() == [0, 1, 255, 1]
    logits = torch.tensor([0.0, L3, 3.0, -L3]).reshape(1, 1, 1, 1, 4)
    target = torch.tensor([0, 7, 255, 1]).reshape(1, 1, 1, 4)
    # sigmoid: 1/2 vs 0 -> ln 2; 3/4 vs 1 -> ln 4/3; ignored; 1/4 vs 1 -> ln 4
    expected = (LN(2) + LN(4 / 3) + LN(4)) / 3
    assert occupancy_bce_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # equals the reference's sigmoid-then-BCE formula
    keep = target != 255
    ref = F.binary_cross_entropy(logits.squeeze(1).sigmoid()[keep], binary_occupancy(target)[keep].float())
    assert occupancy_bce_loss(logits, target).item() == pytest.approx(ref.item(), rel=1e-6)


def _slow_lovasz(probs, labels):
    losses = []
    for c in range(probs.shape[1]):
        keep = labels != 255
        fg = (labels[keep] == c).float()
        if fg.sum() == 0:
            continue
        err = (fg - probs[keep][:, c]).abs()
        order = sorted(range(len(err)), key=lambda i: -err[i].item())
        total, g_prev, acc = fg.sum().item(), 0.0, 0.0
        inter_seen, neg_seen = 0.0, 0.0
        for k, i in enumerate(order):
            inter_seen += fg[i].item()
            neg_seen += 1 - fg[i].item()
            jac = 1 - (total - inter_seen) / (total + neg_seen)
            acc += err[i].item() * (jac - g_prev if k else jac)
            g_prev = jac
        losses.append(acc)
    return sum(losses) / len(losses)


def _slow_sem_scal(logits, target):
    p_all = F.softmax(logits, 1)
    mask = target != 255
    total, count = 0.0, 0
    for c in range(logits.shape[1]):
        p = p_all[:, c][mask]
        t = (target[mask] == c).float()
        if t.sum() == 0:
            continue
        count += 1
        nom = (p * t).sum()
        total += -torch.log(nom / p.sum()) - torch.log(nom / t.sum())
        total += -torch.log(((1 - p) * (1 - t)).sum() / (1 - t).sum())
    return total / count


def test_vectorised_against_loops():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(40, 5, generator=g).softmax(1)
    labels = torch.randint(0, 4, (40,), generator=g)  # class 4 never present
    labels[::7] = 255
    assert lovasz_softmax_loss(probs, labels).item() == pytest.approx(_slow_lovasz(probs, labels), rel=1e-5)
    logits = torch.randn(2, 5, 3, 4, 2, generator=g)
    target = torch.randint(0, 4, (2, 3, 4, 2), generator=g)
    target[0, 0] = 255
    assert sem_scal_loss(logits, target).item() == pytest.approx(_slow_sem_scal(logits, target).item(), rel=1e-5)


def test_all_ignored_gives_zero_with_grad():
    logits = torch.randn(1, 3, 2, 2, 2, requires_grad=True)
    target = torch.full((1, 2, 2, 2), 255)
    terms = [
        weighted_ce_loss(logits, target, None), sem_scal_loss(logits, target), geo_scal_loss(logits, target),
        occupancy_bce_loss(logits[:, :1], target),
        lovasz_softmax_loss(logits.reshape(-1, 3).softmax(1), target.reshape(-1)),
        seed_ce_loss(logits.reshape(-1, 3), target.reshape(-1)),
    ]
    for t in terms:
        assert t.item() == 0.0
    sum(terms).backward()
    assert torch.all(logits.grad == 0)


def _small_cfg():
    return load_config("sgn-l", overrides={"grid": {"dims": [8, 8, 4]}})


def test_sgn_loss_aggregates_named_terms():
    cfg = _small_cfg()
    full, half, c = cfg.grid.dims, cfg.grid.scaled(2).dims, cfg.num_classes
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, c, (1, *full), generator=g)
    target[:, :2] = 255
    target_half = torch.randint(0, c, (1, *half), generator=g)
    target_half[:, 0] = 255
    target_half[:, 1] = 0
    seed_index = torch.tensor([[0, 0, 0, 0], [0, 1, 2, 1], [0, 3, 3, 1], [0, 2, 1, 0]])
    outputs = {
        "ssc_logits": torch.randn(1, c, *full, generator=g).requires_grad_(),
        "occ_logits": torch.randn(1, 1, *half, generator=g).requires_grad_(),
        "proposal_logits": torch.randn(1, 1, *half, generator=g).requires_grad_(),
        "seed_logits": torch.randn(4, c, generator=g).requires_grad_(),
        "seed_index": seed_index,
    }
    batch = SSCBatch(
        images=torch.zeros(1, 1, 3, 4, 4), intrinsics=torch.eye(3).expand(1, 1, 3, 3),
        lidar_to_cam=torch.eye(4).expand(1, 1, 4, 4), points=[torch.zeros(0, 3)],
        target=target, target_half=target_half,
    )
    losses = SGNLoss(cfg)(outputs, batch)
    assert tuple(losses) == LOSS_NAMES
    w = torch.tensor(cfg.data.class_weights)
    ssc = outputs["ssc_logits"]
    torch.testing.assert_close(losses["loss_ssc_ce"], weighted_ce_loss(ssc, target, w))
    torch.testing.assert_close(losses["loss_sem_scal"], sem_scal_loss(ssc, target))
    torch.testing.assert_close(losses["loss_geo_scal"], geo_scal_loss(ssc, target))
    seed_labels = target_half[0, seed_index[:, 1], seed_index[:, 2], seed_index[:, 3]]
    assert seed_labels[0].item() == 255  # the x=0 slab is ignored
    torch.testing.assert_close(
        losses["loss_seed_lovasz"], lovasz_softmax_loss(outputs["seed_logits"].softmax(1), seed_labels)
    )
    torch.testing.assert_close(losses["loss_seed_ce"], seed_ce_loss(outputs["seed_logits"], seed_labels))
    torch.testing.assert_close(losses["loss_occ_bce"], occupancy_bce_loss(outputs["occ_logits"], target_half))
    torch.testing.assert_close(
        losses["loss_proposal_bce"], occupancy_bce_loss(outputs["proposal_logits"], target_half)
    )
    total = sum(losses.values())
    total.backward()
    for k in ("ssc_logits", "occ_logits", "proposal_logits", "seed_logits"):
        assert torch.isfinite(outputs[k].grad).all() and outputs[k].grad.abs().sum() > 0, k


def test_sgn_loss_errors():
    cfg = _small_cfg()
    with pytest.raises(ValueError, match="class_weights has 3 values"):
        SGNLoss(load_config("sgn-l", overrides={"data": {"class_weights": [1.0, 2.0, 3.0]}}))
    batch = SSCBatch(
        images=torch.zeros(1, 1, 3, 4, 4), intrinsics=torch.eye(3).expand(1, 1, 3, 3),
        lidar_to_cam=torch.eye(4).expand(1, 1, 4, 4), points=[torch.zeros(0, 3)],
    )
    with pytest.raises(ValueError, match="target"):
        SGNLoss(cfg)({}, batch)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_losses_under_cuda_autocast_match_cpu():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 4, 6, 6, 4, generator=g)
    target = torch.randint(0, 4, (1, 6, 6, 4), generator=g)
    target[0, 0] = 255
    w = torch.tensor([0.5, 1.0, 1.5, 2.0])
    fns = [lambda x, t: weighted_ce_loss(x, t, w.to(x.device)), sem_scal_loss, geo_scal_loss,
           lambda x, t: occupancy_bce_loss(x[:, :1], t)]
    for fn in fns:
        ref = fn(logits, target)
        with torch.autocast("cuda", dtype=torch.float16):
            got = fn(logits.cuda().half(), target.cuda())
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(ref.item(), rel=2e-3)


def test_scene_class_affinity_gradient_finite_when_probability_underflows():
    """A present class whose softmax probability is exactly 0 everywhere (float32 underflow on real
    grids) gives -log(0) clamped at 100, and a finite gradient - not NaN - as torch's BCE does."""
    logits = torch.zeros(1, 3, 2, 2, 1)
    logits[:, 2] = -200.0  # p_2 underflows to 0 in float32
    logits.requires_grad_(True)
    target = torch.tensor([[[[0], [1]], [[2], [255]]]])
    loss = sem_scal_loss(logits, target)
    assert torch.isfinite(loss) and loss > 100 / 3  # class 2: recall 0 -> 100 (the clamp), mean of 3 classes
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_occupancy_bce_range_where_reference_differs():
    """Our BCE on logits against the reference's float32 sigmoid + BCE, per voxel: values agree on
    [-27.63, 12], gradients on [-27.63, 16.63]; outside, the reference saturates where losses.py says."""
    x = torch.linspace(-120.0, 40.0, 160_001)
    for y in (0.0, 1.0):
        target = torch.full((1, x.numel()), int(y), dtype=torch.int64)
        ours_x = x.clone().requires_grad_()
        ours = F.binary_cross_entropy_with_logits(ours_x, torch.full_like(x, y), reduction="none")
        ours.sum().backward()
        ref_x = x.clone().requires_grad_()
        ref = F.binary_cross_entropy(torch.sigmoid(ref_x), torch.full_like(x, y), reduction="none")
        ref.sum().backward()
        inside = (x >= -27.63) & (x <= 16.63)
        close = (x >= -27.63) & (x <= 12.0)
        torch.testing.assert_close(ref[close], ours[close].detach(), rtol=1e-3, atol=1e-6)
        torch.testing.assert_close(ref_x.grad[inside], ours_x.grad[inside], rtol=1e-3, atol=1e-6)
        # our mean over a one-row volume equals the per-voxel mean
        loss = occupancy_bce_loss(x[None, None, :, None, None].clone(), target[..., None, None])
        torch.testing.assert_close(loss, ours.mean().detach())
        if y == 0.0:
            sat = x > 16.6357
            assert torch.all(ref[sat] == 100) and torch.all(ref_x.grad[sat] == 0)
            assert torch.all(ours_x.grad[sat] > 0.99)
        else:
            assert torch.all(ref[x < -88.73] == 100)
            low = x < -30
            assert torch.all(ref_x.grad[low].abs() < 0.1) and torch.all(ours_x.grad[low] < -0.99)
