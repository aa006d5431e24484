# Tests of sgn_ros.model.diffusion beyond the whole-network tests of test_model.py: the anisotropic
# convolution's in-place inference path against its autograd path (the reference's operations).
"""Tests for sgn_ros.model.diffusion (AnisotropicConv without autograd)."""

from __future__ import annotations

import torch

from sgn_ros.model.diffusion import AnisotropicConv, SemanticDiffusionBlock
from sgn_ros.runtime import recorded_ops

torch.set_num_threads(2)


def test_anisotropic_conv_in_place_without_autograd_gives_the_same_bits():
    """Under inference_mode / no_grad the block works in place: bit for bit the autograd path's
    output, its input untouched; with autograd it still trains (gradients reach every conv)."""
    torch.manual_seed(0)
    block = AnisotropicConv(8).eval()
    x = torch.randn(2, 8, 12, 10, 6)
    before = x.clone()
    with torch.enable_grad():
        want = block(x)
    with torch.inference_mode(), recorded_ops() as ops:
        got = block(x)
    with torch.no_grad():
        got_no_grad = block(x)
    assert torch.equal(got, want.detach()) and torch.equal(got_no_grad, got)
    names = {name for name, _ in ops}
    assert {"relu_", "mul_", "add_"} <= names and not {"relu", "mul", "add"} & names, names  # no new volumes
    assert torch.equal(x, before)
    want.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_anisotropic_conv_under_autocast_keeps_the_reference_operations():
    """Under autocast the conv outputs are low precision and the gates float32: the reference's
    out-of-place products promote the sums to float32, so inference takes that path there too
    (the output's dtype and bits are those of autograd under the same autocast)."""
    torch.manual_seed(2)
    block = AnisotropicConv(8).eval()
    x = torch.randn(1, 8, 10, 8, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.enable_grad():
            want = block(x)
        with torch.inference_mode(), recorded_ops() as ops:
            got = block(x)
    assert got.dtype == want.dtype == torch.float32
    assert torch.equal(got, want.detach())
    names = {name for name, _ in ops}
    assert "relu" in names and not {"relu_", "mul_", "add_"} & names, names


def test_diffusion_block_inference_equals_its_autograd_path():
    """The whole semantic diffusion block (conv_in, anisotropic conv, ASPP): the same bits with and
    without autograd."""
    torch.manual_seed(1)
    block = SemanticDiffusionBlock(6, 8, depth=2).eval()
    x = torch.randn(1, 6, 10, 8, 4)
    with torch.enable_grad():
        want = block(x)
    with torch.inference_mode():
        got = block(x)
    assert torch.equal(got, want.detach())
