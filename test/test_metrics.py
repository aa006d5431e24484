"""Tests of sgn_ros.evaluation.metrics.SSCMetrics: hand-computed example, a slow per-class
version, order independence and the torch.distributed reduction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sgn_ros.evaluation.metrics import SSCMetrics, format_table


def slow_scores(pred: np.ndarray, target: np.ndarray, invalid: np.ndarray, num_classes: int) -> dict:
    """Per-class TP / FP / FN counted class by class over the valid voxels (the obvious way)."""
    keep = (target != 255) & ~invalid
    p, t = pred[keep], target[keep]
    tp = np.array([np.sum((p == c) & (t == c)) for c in range(num_classes)])
    fp = np.array([np.sum((p == c) & (t != c)) for c in range(num_classes)])
    fn = np.array([np.sum((p != c) & (t == c)) for c in range(num_classes)])
    iou = tp / (tp + fp + fn + 1e-15)
    occ_tp = np.sum((p > 0) & (t > 0))
    occ_fp = np.sum((p > 0) & (t == 0))
    occ_fn = np.sum((p == 0) & (t > 0))
    eps = np.finfo(np.float32).eps
    return {
        "iou_per_class": iou,
        "iou_mean": iou[1:].mean(),
        "iou_completion": occ_tp / (occ_tp + occ_fp + occ_fn),
        "precision": occ_tp / (occ_tp + occ_fp + eps),
        "recall": occ_tp / (occ_tp + occ_fn + eps),
    }


def test_hand_computed_example() -> None:
    # 3 classes; 10 voxels, one ignored by label 255 and one by the invalid mask
    target = np.array([0, 0, 0, 1, 1, 1, 2, 2, 255, 2])
    pred = np.array([0, 1, 0, 1, 1, 2, 2, 0, 1, 1])
    invalid = np.zeros(10, bool)
    invalid[9] = True
    m = SSCMetrics(3, ["empty", "a", "b"])
    m.update(torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(invalid))
    s = m.compute()
    # evaluated pairs (pred, gt): (0,0) (1,0) (0,0) (1,1) (1,1) (2,1) (2,2) (0,2)
    # class 1: TP 2, FP 1, FN 1 -> 0.5 ; class 2: TP 1, FP 1, FN 1 -> 1/3 ; class 0: TP 2, FP 1, FN 1 -> 0.5
    np.testing.assert_allclose(s["iou_per_class"], [0.5, 0.5, 1 / 3])
    assert s["iou_mean"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert s["iou_a"] == pytest.approx(0.5) and s["iou_b"] == pytest.approx(1 / 3)
    # completion: occupied TP = 4 ((1,1) (1,1) (2,1) (2,2)), FP = 1 ((1,0)), FN = 1 ((0,2))
    assert s["iou_completion"] == pytest.approx(4 / 6)
    assert s["precision"] == pytest.approx(4 / 5) and s["recall"] == pytest.approx(4 / 5)
    expected_conf = np.zeros((3, 3), np.int64)
    for p, g in [(0, 0), (1, 0), (0, 0), (1, 1), (1, 1), (2, 1), (2, 2), (0, 2)]:
        expected_conf[p, g] += 1
    np.testing.assert_array_equal(m.confusion(), expected_conf)  # rows = prediction
    assert "mIoU" in format_table(s, ["empty", "a", "b"])


def test_matches_slow_version_and_is_order_independent() -> None:
    rng = np.random.default_rng(3)
    c = 20
    preds = [rng.integers(0, c, (4, 8, 8, 2)) for _ in range(3)]
    targets = [np.where(rng.random((4, 8, 8, 2)) < 0.1, 255, rng.integers(0, c, (4, 8, 8, 2))) for _ in range(3)]
    invalids = [rng.random((4, 8, 8, 2)) < 0.1 for _ in range(3)]
    m = SSCMetrics(c)
    for p, t, i in zip(preds, targets, invalids):
        m.update(torch.from_numpy(p), torch.from_numpy(t), torch.from_numpy(i))
    s = m.compute()
    ref = slow_scores(np.concatenate(preds), np.concatenate(targets), np.concatenate(invalids), c)
    np.testing.assert_allclose(s["iou_per_class"], ref["iou_per_class"], rtol=1e-12)
    for k in ("iou_mean", "iou_completion", "precision", "recall"):
        assert s[k] == pytest.approx(ref[k], rel=1e-12), k
    # reversed order and numpy inputs give the identical matrix
    m2 = SSCMetrics(c)
    for p, t, i in reversed(list(zip(preds, targets, invalids))):
        m2.update(p, t, i)
    np.testing.assert_array_equal(m.confusion(), m2.confusion())
    # update_confusion adds another accumulator's matrix
    m3 = SSCMetrics(c)
    m3.update_confusion(m.confusion())
    m3.update_confusion(m2.confusion())
    np.testing.assert_array_equal(m3.confusion(), 2 * m.confusion())
    m.reset()
    assert m.confusion().sum() == 0


def test_rejects_bad_input() -> None:
    m = SSCMetrics(3)
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 3\)"):
        m.update(torch.tensor([3]), torch.tensor([0]))
    with pytest.raises(ValueError, match="shape"):
        m.update(torch.zeros(2, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    # an out-of-range prediction on an ignored voxel is fine (never evaluated)
    m.update(torch.tensor([7, 1]), torch.tensor([255, 1]))
    assert m.confusion()[1, 1] == 1


def _reduce_worker(rank: int, world: int, init_file: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        rng = np.random.default_rng(rank)
        m = SSCMetrics(5)
        m.update(torch.from_numpy(rng.integers(0, 5, 1000)), torch.from_numpy(rng.integers(0, 5, 1000)))
        m.all_reduce()
        results[rank] = m.confusion()
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_across_ranks(tmp_path) -> None:
    world = 2
    manager = mp.Manager()
    results = manager.dict()
    # fork: the children inherit the imported modules (spawn would re-import torch, seconds each)
    mp.start_processes(
        _reduce_worker, args=(world, str(tmp_path / "init"), results), nprocs=world, join=True, start_method="fork"
    )
    expected = SSCMetrics(5)
    for rank in range(world):
        rng = np.random.default_rng(rank)
        expected.update(rng.integers(0, 5, 1000), rng.integers(0, 5, 1000))
    for rank in range(world):
        np.testing.assert_array_equal(results[rank], expected.confusion())
    # without an initialised process group all_reduce leaves the matrix alone
    before = expected.confusion()
    expected.all_reduce()
    np.testing.assert_array_equal(expected.confusion(), before)
