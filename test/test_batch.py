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
    assert batch.ready is None  # only a CUDA batch made on a stream carries an event
    # every tensor, the points too (the ones a consumer on another CUDA stream must mark)
    assert [id(t) for t in batch.tensors()] == [id(t) for t in
                                                (batch.images, batch.intrinsics, batch.lidar_to_cam, *batch.points)]
    with_tables = SSCBatch(images=batch.images, intrinsics=batch.intrinsics, lidar_to_cam=batch.lidar_to_cam,
                           points=batch.points, gather_index=torch.zeros(2, 3, 4, dtype=torch.int64),
                           fov_mask=torch.zeros(2, 3, 4, dtype=torch.bool), ready="token")
    assert len(with_tables.tensors()) == 7 and with_tables.to("cpu").ready == "token"


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
