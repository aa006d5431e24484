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


def _reference(img: np.ndarray, mean, std) -> torch.Tensor:
    """The reference's arithmetic spelled out: float32 (x / 255 - mean) / std, channel-first."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).to(torch.float32)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x / 255.0 - m) / s


@pytest.mark.parametrize("hw", [(1, 1), (7, 13), (370, 1220), (376, 1241)])
def test_table_gives_the_same_bits_as_the_arithmetic(hw):
    """The one-pass table (native kernel when built) against the float32 operations themselves:
    every value bit for bit, every byte value in every channel, for sizes with and without
    vector tails, and for a crop view of a larger image read with its strides (no copy)."""
    from sgn_ros.model.preprocessing import normalization_table

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    table = normalization_table(mean, std)
    assert table.shape == (3, 256) and table.dtype == np.float32 and not table.flags.writeable
    every = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (1, 256, 3)).copy()
    exact = _reference(every, mean, std)[:, 0]
    assert torch.equal(torch.from_numpy(table.copy()).view(torch.int32), exact.view(torch.int32))
    rng = np.random.default_rng(hw[0])
    big = rng.integers(0, 256, (hw[0] + 3, hw[1] + 5, 3), dtype=np.uint8)
    for img in (big[: hw[0], : hw[1]], np.ascontiguousarray(big[: hw[0], : hw[1]]), big[2:, 4:][: hw[0], : hw[1]]):
        ref = _reference(img, mean, std)
        got = normalize_image(img, mean, std)
        assert torch.equal(torch.from_numpy(got).view(torch.int32), ref.view(torch.int32))
        out = torch.full((3, hw[0] + 2, hw[1] + 1), float("nan"))
        normalize_image(torch.from_numpy(img.copy()), mean, std, out=out)
        assert torch.equal(out[:, : hw[0], : hw[1]].contiguous().view(torch.int32), ref.view(torch.int32))
        assert not out[:, hw[0]:].any() and not out[:, :, hw[1]:].any()  # padding: 0 = the mean colour


def test_native_kernel_checks_its_arrays():
    """The kernel refuses what it cannot read or write, naming the array (when it is built)."""
    preprocessing = pytest.importorskip("sgn_ros.model.preprocessing")
    if not preprocessing.NATIVE:
        pytest.skip("sgn_ros.model._pixels is not built")
    from sgn_ros.model import _pixels

    table = preprocessing.normalization_table((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    img, out = np.zeros((4, 5, 3), np.uint8), np.zeros((3, 4, 5), np.float32)
    _pixels.normalize(img, table, out)
    assert np.all(out == table[:, 0][:, None, None])
    with pytest.raises(ValueError, match="image: expected uint8"):
        _pixels.normalize(img.astype(np.uint16), table, out)
    with pytest.raises(ValueError, match="table: expected float32"):
        _pixels.normalize(img, table.astype(np.float64), out)
    with pytest.raises(ValueError, match="out: expected float32"):
        _pixels.normalize(img, table, np.zeros((3, 3, 5), np.float32))
    with pytest.raises(ValueError, match="out: expected float32"):
        _pixels.normalize(img, table, np.zeros((3, 4, 10), np.float32)[:, :, ::2])
    read_only = np.zeros((3, 4, 5), np.float32)
    read_only.setflags(write=False)
    with pytest.raises((ValueError, BufferError)):
        _pixels.normalize(img, table, read_only)


def test_native_kernel_is_built_here_and_by_colcon(from_install_tree):
    """make (pip install -e .) builds sgn_ros.model._pixels in place, colcon build (CMakeLists.txt)
    into the install tree, which a process importing sgn_ros from there alone then uses."""
    from sgn_ros.model import preprocessing

    assert preprocessing.NATIVE, "sgn_ros.model._pixels is not built: run make venv (pip install -e .)"
    site, stdout = from_install_tree("import sgn_ros.model.preprocessing as p; "
                                     "print(p.NATIVE, p._native.__file__ if p._native else None)")
    native, ext = stdout.split()
    assert native == "True" and ext.startswith(site), stdout


@pytest.mark.slow
def test_native_kernel_under_the_sanitizers(sanitized):
    """This file's cases once more, against `_pixels` built with AddressSanitizer and
    UndefinedBehaviorSanitizer: crops, strides and padded outputs read and write only their own bytes."""
    out = sanitized("sgn_ros.model._pixels", ["test_preprocessing.py"])
    assert " passed" in out and " failed" not in out
