# Tests of the sparse building blocks (sgn_ros/model/sparse_blocks.py) and of the spconv fixes
# (sgn_ros/model/spconv_compat.py): spconv against dense conv3d (forward and backward, on the CPU,
# also multi-threaded on a large input), scatter helpers and pooled attention against slow
# obvious versions, and the residual block against its dense equivalent.
"""Tests for spconv compatibility, scatter helpers, SparseResBlock and MultiScalePooledAttention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sgn_ros.model.sparse_blocks import (
    POOL_SCALES,
    MultiScalePooledAttention,
    SparseResBlock,
    group_cells,
    scatter_max,
    scatter_mean,
)
from sgn_ros.model.spconv_compat import (
    apply_cpu_patch,
    apply_cpu_thread_guard,
    setup_spconv,
    spconv,
    spconv_cpu_patched,
)
from sgn_ros.runtime import recorded_ops

setup_spconv("cpu")  # these tests run spconv directly, without a model that would set it up


def dense_all_active(shape: tuple[int, int, int], channels: int, seed: int = 0):
    """A sparse tensor in which every voxel of `shape` is active, with its features."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack(torch.meshgrid(*[torch.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    coords = torch.cat([torch.zeros(idx.shape[0], 1, dtype=torch.long), idx], 1).int()
    feats = torch.randn(idx.shape[0], channels, generator=g)
    return feats, coords


def to_dense(feats: torch.Tensor, coords: torch.Tensor, shape) -> torch.Tensor:
    out = feats.new_zeros(1, feats.shape[1], *shape)
    c = coords.long()
    out[0, :, c[:, 1], c[:, 2], c[:, 3]] = feats.T
    return out


def test_cpu_patch_is_active_and_idempotent():
    import spconv.pytorch.ops as ops

    if torch.cuda.is_available():
        pytest.skip("the stream patch applies only without CUDA")
    assert spconv_cpu_patched()
    assert ops.get_current_stream() == 0
    guarded = ops.indice_conv
    assert apply_cpu_patch() and ops.get_current_stream() == 0
    apply_cpu_thread_guard()
    assert ops.indice_conv is guarded


def test_subm_conv_cpu_forward_backward_match_dense_conv3d():
    """All voxels active: a 3x3x3 SubMConv3d is a padded dense conv3d ([out,k,k,k,in] weights)."""
    shape = (5, 4, 6)
    feats, coords = dense_all_active(shape, 3)
    feats.requires_grad_(True)
    conv = spconv.SubMConv3d(3, 4, 3, bias=True, algo=spconv.ConvAlgo.Native)  # CPU: native path (CUDA builds too)
    torch.nn.init.normal_(conv.weight)
    torch.nn.init.normal_(conv.bias)
    out = conv(spconv.SparseConvTensor(feats, coords, list(shape), 1))
    grad_out = torch.randn_like(out.features)
    (out.features * grad_out).sum().backward()

    x = to_dense(feats.detach(), coords, shape).requires_grad_(True)
    w = conv.weight.detach().permute(0, 4, 1, 2, 3).contiguous().requires_grad_(True)
    b = conv.bias.detach().clone().requires_grad_(True)
    ref = F.conv3d(x, w, b, padding=1)
    c = coords.long()
    ref_feats = ref[0][:, c[:, 1], c[:, 2], c[:, 3]].T
    (ref_feats * grad_out).sum().backward()
    torch.testing.assert_close(out.features, ref_feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats.grad, x.grad[0][:, c[:, 1], c[:, 2], c[:, 3]].T, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv.weight.grad, w.grad.permute(0, 2, 3, 4, 1), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(conv.bias.grad, b.grad, atol=1e-4, rtol=1e-5)


def test_subm_conv_multithreaded_large_input_is_correct():
    """spconv's CPU path is wrong with several threads on large inputs unless guarded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(1)
        shape = (16, 128, 128)
        for _ in range(3):
            idx = (torch.rand(shape, generator=g) < 0.5).nonzero()
            coords = torch.cat([torch.zeros(idx.shape[0], 1, dtype=torch.long), idx], 1).int()
            feats = torch.randn(idx.shape[0], 8, generator=g)
            conv = spconv.SubMConv3d(8, 8, 3, bias=False, algo=spconv.ConvAlgo.Native)
            with torch.no_grad():
                conv.weight.normal_(generator=g)
                out = conv(spconv.SparseConvTensor(feats, coords, list(shape), 1)).features
                dense = F.conv3d(to_dense(feats, coords, shape), conv.weight.permute(0, 4, 1, 2, 3), padding=1)
            c = coords.long()
            torch.testing.assert_close(out, dense[0][:, c[:, 1], c[:, 2], c[:, 3]].T, atol=1e-4, rtol=1e-4)
    finally:
        torch.set_num_threads(threads)


def test_conv1x1_reads_weight_memory_as_in_out():
    """spconv 2.x multiplies by weight memory viewed as (in, out) for 1x1x1 kernels (issue #450)."""
    feats, coords = dense_all_active((2, 2, 2), 3)
    conv = spconv.SubMConv3d(3, 5, 1, bias=False, algo=spconv.ConvAlgo.Native)
    torch.nn.init.normal_(conv.weight)
    out = conv(spconv.SparseConvTensor(feats, coords, [2, 2, 2], 1)).features
    torch.testing.assert_close(out, feats @ conv.weight.detach().reshape(3, 5))


def test_scatter_mean_matches_loop():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(50, 3, generator=g)
    index = torch.randint(0, 7, (50,), generator=g)
    index[index == 4] = 5  # group 4 empty
    with recorded_ops() as ops:
        out = scatter_mean(src, index, 8)
    for k in range(8):
        sel = src[index == k]
        expected = sel.mean(0) if sel.shape[0] else torch.zeros(3)
        torch.testing.assert_close(out[k], expected)
    # torch_scatter's values exactly (sums by index_add_, divided by the clamped counts) ...
    total = torch.zeros(8, 3).index_add_(0, index, src)
    assert torch.equal(out, total / torch.bincount(index, minlength=8).clamp(min=1)[:, None].float())
    # ... with no operation that waits for the device to size its output (bincount did, on CUDA)
    names = {name for name, _ in ops}
    assert not names & {"bincount", "nonzero", "_local_scalar_dense", "_unique2"}, names


def test_scatter_max_forward_and_gradient():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(40, 4, generator=g, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 6, (40,), generator=g)
    index[:6] = torch.arange(6)  # every group non-empty
    out = scatter_max(src, index, 6)
    for k in range(6):
        torch.testing.assert_close(out[k], src[index == k].max(0).values)
    assert torch.autograd.gradcheck(lambda s: scatter_max(s, index, 6), (src,))
    # ties: the gradient goes to exactly one row per (group, channel)
    tied = torch.ones(4, 2, requires_grad=True)
    scatter_max(tied, torch.tensor([0, 0, 1, 1]), 2).sum().backward()
    assert tied.grad.sum().item() == 4 and tied.grad.max().item() == 1


def test_group_cells_matches_unique_rows():
    g = torch.Generator().manual_seed(0)
    coords = torch.cat([torch.randint(0, 2, (300, 1), generator=g), torch.randint(0, 30, (300, 3), generator=g)], 1)
    for cell in POOL_SCALES:
        cells, inverse = group_cells(coords.int(), cell, (30, 30, 30))
        key = torch.cat([coords[:, :1], coords[:, 1:] // cell], 1)
        ref_cells, ref_inverse = torch.unique(key, dim=0, return_inverse=True)
        assert torch.equal(cells, ref_cells) and torch.equal(inverse, ref_inverse)


def slow_attention(att: MultiScalePooledAttention, feats: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """The pooled attention one voxel at a time with Python dictionaries for the cells."""
    reduced = F.relu(att.feature_reduce(feats))
    rows = []
    for n in range(feats.shape[0]):
        per_scale = []
        for scale, mlp in zip(att.scales, att.fc_list):
            key = (int(coords[n, 0]), *(int(v) // scale for v in coords[n, 1:]))
            members = [m for m in range(feats.shape[0])
                       if (int(coords[m, 0]), *(int(v) // scale for v in coords[m, 1:])) == key]
            per_scale.append(mlp(reduced[members].mean(0)))
        s = torch.stack(per_scale)  # (S, R/2)
        z = att.fc(s.sum(0))
        a = torch.sigmoid(torch.stack([fc(z) for fc in att.fcs]))
        fused = att.out_fc((s * a).sum(0))
        rows.append(att.linear_output(torch.cat([reduced[n], fused])))
    return torch.stack(rows)


def test_pooled_attention_matches_slow_version():
    torch.manual_seed(0)
    att = MultiScalePooledAttention(6, 3, 8)
    coords = torch.cat([torch.randint(0, 2, (60, 1)), torch.randint(0, 20, (60, 3))], 1).int()
    feats = torch.randn(60, 6)
    with torch.no_grad():
        torch.testing.assert_close(att(feats, coords, (20, 20, 20)), slow_attention(att, feats, coords),
                                   atol=1e-5, rtol=1e-5)


def test_res_block_matches_dense_equivalent():
    """All voxels active, eval mode: the block equals dense convs + BN + LeakyReLU(0.1)."""
    torch.manual_seed(0)
    shape = (4, 5, 3)
    feats, coords = dense_all_active(shape, 6)
    block = SparseResBlock(6, 6, "k").eval()
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
        out = block(spconv.SparseConvTensor(feats, coords, list(shape), 1)).features

        def bn(x, m):
            return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

        def conv(x, m):
            return F.conv3d(x, m.weight.permute(0, 4, 1, 2, 3), padding=1)

        x = to_dense(feats, coords, shape)
        c = coords.long()
        shortcut = bn(feats @ block.layers_in[0].weight.reshape(6, 6), block.layers_in[1])
        h = F.leaky_relu(bn(conv(x, block.layers[0]), block.layers[1]), 0.1)
        h = bn(conv(h, block.layers[3]), block.layers[4])[0][:, c[:, 1], c[:, 2], c[:, 3]].T
        torch.testing.assert_close(out, F.leaky_relu(shortcut + h, 0.1), atol=1e-5, rtol=1e-5)


def test_importing_spconv_compat_patches_nothing():
    """Regression: spconv was patched when sgn_ros.model.spconv_compat was imported. Now only an
    explicit setup_spconv(device) changes the library (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import spconv.pytorch.ops as ops\n"
        "import sgn_ros.model.spconv_compat as c\n"
        "assert not c.spconv_cpu_patched() and not getattr(ops.indice_conv, '_sgn_ros_guard', False)\n"
        "c.setup_spconv('cuda')\n"
        "assert not c.spconv_cpu_patched() and not getattr(ops.indice_conv, '_sgn_ros_guard', False)\n"
        "c.setup_spconv('cpu')\n"
        "assert getattr(ops.indice_conv, '_sgn_ros_guard', False)\n"
        "import torch\n"
        "assert c.spconv_cpu_patched() == (not torch.cuda.is_available())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr


def test_sparse_convs_to_half_casts_only_sparse_weights():
    """The predictor's fp16 mode casts the sparse conv weights once (spconv's half kernels need
    half weights AND features); BatchNorm and everything dense keep float32."""
    from sgn_ros.model.sparse_blocks import make_res_blocks
    from sgn_ros.model.spconv_compat import sparse_convs_to

    blocks = make_res_blocks(4, 8, 2, "k")
    assert sparse_convs_to(blocks, torch.float16) == 6
    from sgn_ros.model.spconv_compat import spconv

    convs = [m for m in blocks.modules() if isinstance(m, spconv.conv.SparseConvolution)]
    assert len(convs) == 6 and all(m.weight.dtype == torch.float16 for m in convs)
    bn = [m for m in blocks.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert bn and all(m.weight.dtype == torch.float32 for m in bn)
