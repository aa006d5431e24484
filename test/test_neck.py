# Tests of sgn_ros.model.neck: names/shapes as in the reference checkpoint, FPN arithmetic.
import pytest
import torch
import torch.nn.functional as F

from sgn_ros.model.neck import FPNNeck

torch.set_num_threads(2)


def test_names_and_shapes_match_reference_checkpoint():
    # img_neck.* of the reference SGN-T/S (1024 -> 128) and SGN-L (256 -> 64) checkpoints
    for cin, d in [(1024, 128), (256, 64)]:
        shapes = {k: tuple(v.shape) for k, v in FPNNeck(cin, d).state_dict().items()}
        assert shapes == {
            "lateral_convs.0.conv.weight": (d, cin, 1, 1),
            "lateral_convs.0.conv.bias": (d,),
            "fpn_convs.0.conv.weight": (d, d, 3, 3),
            "fpn_convs.0.conv.bias": (d,),
        }


def test_single_level_is_fpn_conv_of_lateral():
    torch.manual_seed(0)
    neck = FPNNeck(8, 4)
    x = torch.randn(2, 8, 5, 7)
    out = neck(x)
    assert out.shape == (2, 4, 5, 7)
    lat = neck.lateral_convs[0].conv
    fpn = neck.fpn_convs[0].conv
    # written out: 1x1 conv = matrix product over channels, then a padded 3x3 conv; no activation
    lateral = torch.einsum("oc,nchw->nohw", lat.weight[:, :, 0, 0], x) + lat.bias[None, :, None, None]
    expected = F.conv2d(lateral, fpn.weight, fpn.bias, padding=1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert (out < 0).any()  # no ReLU at the output


def test_two_levels_top_down():
    neck = FPNNeck([4, 6], 3)
    fine, coarse = torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4)
    outs = neck([fine, coarse])
    lat_f = neck.lateral_convs[0](fine)
    lat_c = neck.lateral_convs[1](coarse)
    up = lat_c.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(outs[0], neck.fpn_convs[0](lat_f + up))
    torch.testing.assert_close(outs[1], neck.fpn_convs[1](lat_c))


def test_bad_input():
    with pytest.raises(ValueError, match=r"expected \(N, 8, h, w\)"):
        FPNNeck(8, 4)(torch.randn(1, 7, 3, 3))
    with pytest.raises(ValueError, match="level"):
        FPNNeck(8, 4)([torch.randn(1, 8, 3, 3)] * 2)
