"""Tests of the SSCBatch contract between data and network."""

import pytest
import torch

from sgn_ros.batch import SSCBatch


def _batch(b=2, f=3, h=8, w=16):
    return SSCBatch(
        images=torch.zeros(b, f, 3, h, w),
        intrinsics=torch.eye(3).expand(b, f, 3, 3).clone(),
        lidar_to_cam=torch.eye(4).expand(b, f, 4, 4).clone(),
        points=[torch.zeros(5, 3) for _ in range(b)],
    )


def test_shapes_and_to():
    batch = _batch()
    assert batch.batch_size == 2 and batch.num_frames == 3
    moved = batch.to("cpu")
    assert moved.images.shape == (2, 3, 3, 8, 16) and len(moved.points) == 2


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("images", torch.zeros(2, 3, 8, 16), "images"),
        ("intrinsics", torch.zeros(2, 2, 3, 3), "intrinsics"),
        ("lidar_to_cam", torch.zeros(2, 3, 3, 4), "lidar_to_cam"),
        ("points", [torch.zeros(5, 3)], "points"),
    ],
)
def test_bad_shapes_are_named(field, value, match):
    kw = dict(
        images=torch.zeros(2, 3, 3, 8, 16),
        intrinsics=torch.zeros(2, 3, 3, 3),
        lidar_to_cam=torch.zeros(2, 3, 4, 4),
        points=[torch.zeros(5, 3), torch.zeros(1, 3)],
    )
    kw[field] = value
    with pytest.raises(ValueError, match=match):
        SSCBatch(**kw)
