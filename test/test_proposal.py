# Tests of sgn_ros.model.proposal beyond the whole-network tests of test_model.py: the
# segmentation head's CPU layout, against the slow obvious version (the module's own layers in
# their (D, H, W) layout).
"""Tests for sgn_ros.model.proposal (SegmentationHead3d on the CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sgn_ros.model.proposal import SegmentationHead3d

torch.set_num_threads(2)


def _plain(head: SegmentationHead3d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The head as the reference runs it: every layer called on the (B, C, D, H, W) volume."""
    v = F.relu(head.conv0(x[:, None]))
    y = None
    for c1, b1, c2, b2 in zip(head.conv1, head.bn1, head.conv2, head.bn2):
        branch = b2(c2(F.relu(b1(c1(v)))))
        y = branch if y is None else y + branch
    v = F.relu(y + v)
    guide = head.guidance_layer(v) if head.guidance_layer is not None else None
    return head.conv_classes(v), guide


def _slow_and_fast(fn) -> tuple[int, int]:
    """How many convolutions `fn` runs in PyTorch's slow reference kernels and how many in oneDNN
    (torch.profiler sees the kernels the dispatcher picks)."""
    with torch.profiler.profile() as prof:
        fn()
    count = {e.key: e.count for e in prof.key_averages()}
    slow = count.get("aten::slow_conv3d_forward", 0) + count.get("aten::slow_conv_dilated3d", 0)
    return slow, count.get("aten::mkldnn_convolution", 0)


@pytest.mark.parametrize("guidance", [True, False])
def test_segmentation_head_on_the_cpu_is_the_plain_head_in_fast_kernels(guidance):
    """SGN-L's proposal head input (1, 16, 128, 128): the plain layout runs PyTorch's slow
    reference kernels on the CPU, the head's own runs oneDNN; outputs and gradients agree to float
    rounding, and the outputs' (H, W, D) order is contiguous (what SparseVoxelProposal hands on)."""
    torch.manual_seed(0)
    head = SegmentationHead3d(8, 1, guidance=guidance)
    with torch.no_grad():
        for m in head.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    head.eval()
    x = torch.rand(1, 16, 128, 128)
    convs = 1 + 2 * 3 + int(guidance) + 1  # conv0, the ASPP pairs, guidance, classes
    with torch.no_grad():
        ours = _slow_and_fast(lambda: head(x))
        plain = _slow_and_fast(lambda: _plain(head, x))
        got, guide = head(x)
        want, want_guide = _plain(head, x)
    # conv0 stays slow in any layout (a 1-channel input: N * C * D * H <= 128 * 128 < 20480), 6 ms
    assert ours == (1, convs - 1), ours
    assert plain == (convs, 0), plain  # why the head has its own layout on the CPU
    assert got.shape == want.shape == (1, 1, 16, 128, 128)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert got.permute(0, 1, 3, 4, 2).is_contiguous()
    if guidance:
        assert guide.shape == want_guide.shape == (1, 8, 16, 128, 128)
        torch.testing.assert_close(guide, want_guide, atol=1e-4, rtol=1e-4)
    else:
        assert guide is None and want_guide is None

    # training on the CPU: the same gradients reach the module's own weights
    head.train()
    grads = []
    for fn in (head, lambda t: _plain(head, t)):
        head.zero_grad()
        logits, g = fn(x[:, :, :32, :32])
        (logits.square().mean() + (g.mean() if g is not None else 0.0)).backward()
        grads.append([p.grad.clone() for p in (head.conv0.weight, head.conv1[1].weight, head.conv_classes.weight)])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_segmentation_head_keeps_its_layout_off_the_cpu():
    """The (H, W, D) layout is the CPU's alone: on the meta device (standing in for CUDA, whose
    cuDNN has no such rule) the head calls its modules as they are, so GPU outputs stay the
    reference's."""
    head = SegmentationHead3d(8, 1, guidance=True).to("meta").eval()
    called = []
    for name, m in head.named_modules():
        if isinstance(m, torch.nn.Conv3d):
            m.register_forward_hook(lambda *_, name=name: called.append(name))
    logits, guide = head(torch.empty(1, 16, 128, 128, device="meta"))
    assert logits.shape == (1, 1, 16, 128, 128) and guide.shape == (1, 8, 16, 128, 128)
    assert len(called) == 1 + 2 * 3 + 1 + 1  # conv0, the ASPP pairs, guidance, classes
