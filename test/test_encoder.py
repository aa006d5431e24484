# Tests of sgn_ros.model.encoder: ResNet-18/50 layout, stride, freezing, torchvision loading.
import pytest
import torch

from sgn_ros.model.encoder import (
    ENCODER_OUT_CHANNELS,
    ENCODER_STRIDE,
    Bottleneck,
    ResNetEncoder,
    load_torchvision_resnet,
)

torch.set_num_threads(2)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_reference():
    # Reference img_backbone (all four stages, no fc) from sgn_reference_state_dict.json.
    assert _count(ResNetEncoder(50)) == 23_508_032
    assert _count(ResNetEncoder(18)) == 11_176_512


@pytest.mark.parametrize("depth", [18, 50])
def test_output_shape_and_stride(depth):
    enc = ResNetEncoder(depth).eval()
    with torch.no_grad():
        out = enc(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, ENCODER_OUT_CHANNELS[depth], 64 // ENCODER_STRIDE, 96 // ENCODER_STRIDE)
    with torch.no_grad():  # non-multiples of 16 round up (conv padding), as in the reference (370 -> 24)
        out = enc(torch.randn(2, 3, 37, 50))
    assert out.shape == (2, ENCODER_OUT_CHANNELS[depth], 3, 4)


def test_pytorch_style_stride_on_3x3():
    enc = ResNetEncoder(50)
    blk = enc.layer2[0]
    assert isinstance(blk, Bottleneck)
    assert blk.conv1.stride == (1, 1) and blk.conv2.stride == (2, 2)
    assert blk.downsample[0].stride == (2, 2)


def test_frozen_stages_and_bn():
    enc = ResNetEncoder(18, frozen_stages=1)
    frozen = {n for n, p in enc.named_parameters() if not p.requires_grad}
    assert "conv1.weight" in frozen and "layer1.0.conv1.weight" in frozen
    assert "layer2.0.conv1.weight" not in frozen and "layer4.1.conv2.weight" not in frozen
    bn_names = [n for n, _ in enc.named_parameters() if ".bn" in n or n.startswith("bn") or "downsample.1" in n]
    assert bn_names and all(n in frozen for n in bn_names)
    enc.train()
    assert enc.training
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert not enc.layer1.training and enc.layer2.training
    # Running statistics do not move in a training-mode forward.
    before = enc.layer3[0].bn1.running_mean.clone()
    out = enc(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert torch.equal(before, enc.layer3[0].bn1.running_mean)
    out.sum().backward()
    assert enc.conv1.weight.grad is None and enc.layer1[0].conv1.weight.grad is None
    assert enc.layer2[0].conv1.weight.grad is not None and enc.layer3[0].bn1.weight.grad is None
    # unused layer4 takes no gradient
    assert enc.layer4[0].conv1.weight.grad is None


def test_torchvision_state_dict_round_trip(tmp_path):
    src = ResNetEncoder(18)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    # a torchvision file: classifier present, num_batches_tracked absent (old releases)
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    sd["fc.weight"] = torch.randn(1000, 512)
    sd["fc.bias"] = torch.randn(1000)
    path = tmp_path / "resnet18-5c106cde.pth"
    torch.save(sd, path)
    dst = load_torchvision_resnet(ResNetEncoder(18), path)
    for k, v in src.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(dst.state_dict()[k], v), k
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(src.eval()(x), dst.eval()(x))
    # still frozen after loading
    assert not dst.conv1.weight.requires_grad


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        load_torchvision_resnet(ResNetEncoder(18), tmp_path / "nothere.pth")
    sd = ResNetEncoder(18).state_dict()
    bad = dict(sd)
    bad.pop("layer2.0.conv1.weight")
    bad["layer9.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing 1 key\(s\): layer2.0.conv1.weight.*unexpected 1 key\(s\): layer9"):
        load_torchvision_resnet(ResNetEncoder(18), bad)
    path = tmp_path / "r18.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"r18.pth.*ResNet-50"):
        load_torchvision_resnet(ResNetEncoder(50), path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        ResNetEncoder(34)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        ResNetEncoder(18)(torch.randn(3, 32, 32))


@pytest.mark.parametrize("depth", [18, 50])
def test_matches_torchvision_resnet(depth):
    # torchvision cannot be imported beside the pinned CPU torch (ENVIRONMENT.md): this runs
    # where it can (e.g. a GPU machine's image) and proves the layouts and arithmetic agree.
    try:
        import torchvision
    except Exception:  # ImportError, or torchvision's operator registration failing
        pytest.skip("torchvision not importable here")
    tv = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    enc = load_torchvision_resnet(ResNetEncoder(depth), tv.state_dict()).eval()
    x = torch.randn(1, 3, 74, 122)
    with torch.no_grad():
        ref = tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x)))))))
        torch.testing.assert_close(enc(x), ref, rtol=1e-4, atol=1e-4)
