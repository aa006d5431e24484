# Tests of sgn_ros/ros/compressed.py against an independent encoder/decoder (Pillow): what
# image_transport's compressed plugin publishes must decode to the same pixels Pillow reads.
"""sgn_ros.ros.compressed.compressed_image_to_rgb."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sgn_ros.ros.compressed import compressed_image_to_rgb


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:64]
    img = np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1).astype(np.uint8)
    img[10:20, 10:30] = rng.integers(0, 255, (10, 20, 3), dtype=np.uint8)
    return img


def _encode(img: np.ndarray, fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode=mode).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def test_png_is_lossless() -> None:
    img = _image()
    msg = SimpleNamespace(format="rgb8; png compressed rgb8", data=_encode(img, "PNG"))
    np.testing.assert_array_equal(compressed_image_to_rgb(msg), img)


def test_jpeg_matches_pillows_decoder() -> None:
    img = _image()
    data = _encode(img, "JPEG")
    ours = compressed_image_to_rgb(SimpleNamespace(format="rgb8; jpeg compressed bgr8", data=data))
    theirs = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert ours.shape == img.shape and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2  # libjpeg IDCT variants differ by 1-2
    smooth = np.abs(ours.astype(int) - img.astype(int))[25:, 35:]  # away from the noise patch
    assert smooth.mean() < 4  # and it is the picture that was encoded (not, e.g., BGR)


def test_grey_and_rgba() -> None:
    grey = _image()[..., 0]
    out = compressed_image_to_rgb(SimpleNamespace(format="mono8; png compressed mono8", data=_encode(grey, "PNG", "L")))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    rgba = np.concatenate([_image(), np.full((40, 64, 1), 200, np.uint8)], axis=2)
    out = compressed_image_to_rgb(SimpleNamespace(format="png", data=_encode(rgba, "PNG", "RGBA")))
    np.testing.assert_array_equal(out, rgba[..., :3])


@pytest.mark.parametrize("fmt, data, match", [
    ("jpeg", b"", "no data"),
    ("jpeg", b"not an image at all", "not a JPEG/PNG"),
    ("16UC1; compressedDepth png", b"\x00" * 20, "compressedDepth"),
])
def test_bad_input_names_the_format(fmt, data, match) -> None:
    with pytest.raises(ValueError, match=match):
        compressed_image_to_rgb(SimpleNamespace(format=fmt, data=data))


def test_sixteen_bit_png_rejected() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.arange(64 * 40, dtype=np.uint16).reshape(40, 64)).save(buf, format="PNG")
    with pytest.raises(ValueError, match="8-bit"):
        compressed_image_to_rgb(SimpleNamespace(format="16UC1; png compressed", data=buf.getvalue()))
