# Decoder for sensor_msgs/CompressedImage, as published by image_transport's `compressed` plugin
# (`<camera>/image_raw/compressed`), which many recorded bags hold instead of raw images.
# Pure function of the message fields (format, data), so that it works on rclpy messages and on
# rosbags' deserialized objects alike and can be tested without DDS.
"""CompressedImage -> RGB array."""

from __future__ import annotations

from typing import Any

import numpy as np


def compressed_image_to_rgb(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a sensor_msgs/CompressedImage (JPEG or PNG, colour or grey).

    `msg.format` is image_transport's "<encoding>; <codec> compressed <dst encoding>" (for
    example ``"rgb8; jpeg compressed bgr8"``) or just ``"jpeg"`` / ``"png"``; the codec's own
    header decides the decoding, the format string only names the data in errors. Grey images
    are replicated to three channels; 16-bit PNGs (depth via compressedDepth is a different
    plugin) are rejected.

    Raises:
        ValueError: empty data, data OpenCV cannot decode, or a non-8-bit image.
    """
    import cv2

    fmt = str(getattr(msg, "format", ""))
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size == 0:
        raise ValueError(f"CompressedImage (format {fmt!r}): no data")
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ValueError(f"CompressedImage format {fmt!r}: compressedDepth images are depth, not colour")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"CompressedImage (format {fmt!r}, {data.size} bytes): not a JPEG/PNG image")
    if img.dtype != np.uint8:
        raise ValueError(f"CompressedImage (format {fmt!r}): {img.dtype} pixels, expected 8-bit colour or grey")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2))
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
