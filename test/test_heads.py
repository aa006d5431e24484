# Tests of sgn_ros.model.heads beyond the whole-network tests of test_model.py: the output head's
# CPU path (channels-last upsampling) against the slow obvious version (the reference's order of
# operations).
"""Tests for sgn_ros.model.heads (OutputHead on the CPU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sgn_ros.model.heads import OutputHead

torch.set_num_threads(2)


def test_output_head_on_the_cpu_is_the_reference_order_without_the_copy():
    """Channels-last upsampling on the CPU: the reference's logits to float rounding, in
    (B, C, X, Y, Z) shape, a view of a channels-last tensor; the LayerNorm reads the upsampled
    volume in place (no contiguous copy of it: no aten::copy_ of its size), and gradients agree."""
    torch.manual_seed(0)
    head = OutputHead(16, 5, (32, 24, 8))
    x = torch.randn(1, 16, 16, 12, 4, requires_grad=True)
    up = F.interpolate(x, size=head.out_dims, mode="trilinear", align_corners=True)
    want = head.mlp(up.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
    with torch.profiler.profile(record_shapes=True) as prof:
        got = head(x)
    assert got.shape == want.shape == (1, 5, 32, 24, 8)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert got.permute(0, 2, 3, 4, 1).is_contiguous()
    big = 16 * 32 * 24 * 8  # the upsampled volume's size
    copies = [e for e in prof.key_averages(group_by_input_shape=True)
              if e.key == "aten::copy_" and any(s and torch.Size(s).numel() >= big for s in e.input_shapes)]
    assert not copies, [(e.key, e.input_shapes) for e in copies]
    (gx,) = torch.autograd.grad(got.square().sum(), x)
    (wx,) = torch.autograd.grad(want.square().sum(), x)
    torch.testing.assert_close(gx, wx, atol=1e-4, rtol=1e-4)
