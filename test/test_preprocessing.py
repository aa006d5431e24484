# Tests of sgn_ros.model.preprocessing: ImageNet normalisation (NumPy and torch).
import numpy as np
import pytest
import torch

from sgn_ros.model.preprocessing import normalize_image


def test_normalize_by_hand():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = (255, 0, 51)
    out = normalize_image(img, (0.5, 0.25, 0.2), (0.5, 0.25, 0.1))
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    assert out[:, 0, 0] == pytest.approx([1.0, -1.0, 0.0])
    assert out[:, 1, 2] == pytest.approx([-1.0, -1.0, -2.0])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        normalize_image(np.zeros((2, 3), np.uint8), (0, 0, 0), (1, 1, 1))


def test_normalize_tensor_matches_numpy():
    img = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = normalize_image(torch.from_numpy(img), mean, std)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.numpy(), normalize_image(img, mean, std))


def test_normalize_into_padded_buffer_equals_pad_of_plain_result():
    """`out=` writes the top-left corner and zeroes the padding: the same values as normalising
    and then padding with F.pad (what the predictor did before), so the network input is unchanged."""
    img = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    plain = normalize_image(torch.from_numpy(img), mean, std)
    out = torch.full((3, 8, 9), float("nan"))
    res = normalize_image(torch.from_numpy(img), mean, std, out=out)
    assert res is out
    expected = torch.nn.functional.pad(plain, (0, 2, 0, 3))
    assert torch.equal(out, expected)
    floats = torch.from_numpy(img.astype(np.float32) / 255.0)
    assert torch.equal(normalize_image(floats, mean, std, out=torch.empty(3, 5, 7)), normalize_image(floats, mean, std))
    assert floats.max() <= 1.0  # the input is not normalised in place
    with pytest.raises(ValueError, match=r"out must be a float32 tensor \(3, >=5, >=7\)"):
        normalize_image(torch.from_numpy(img), mean, std, out=torch.empty(3, 4, 7))
