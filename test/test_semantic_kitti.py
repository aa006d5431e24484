"""Tests of sgn_ros.data.semantic_kitti / common / collate on the prepared synthetic sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sgn_ros.batch import SSCBatch
from sgn_ros.config import load_config
from sgn_ros.data import kitti_io
from sgn_ros.data.collate import collate_ssc
from sgn_ros.data.common import near_range_mask, temporal_frame_ids
from sgn_ros.data.registry import build_dataset
from sgn_ros.data.semantic_kitti import SemanticKittiDataset
from sgn_ros.grid import DEFAULT_GRID, VoxelGrid


def _seq(root):
    return root / "dataset" / "sequences" / "00"


def _lidar_poses(root) -> tuple[np.ndarray, np.ndarray]:
    calib = kitti_io.read_calib(_seq(root) / "calib.txt")
    cam = kitti_io.read_poses(_seq(root) / "poses.txt")
    tr = calib["Tr"]
    return np.stack([np.linalg.inv(tr) @ p @ tr for p in cam]), calib


def _expected_image(path, h: int, w: int) -> np.ndarray:
    """The reference's image pipeline step by step: PIL RGB -> float32 / 255 -> top-left crop ->
    ToTensor (HWC -> CHW, no rescaling of float input) -> Normalize (float32 sub, then div)."""
    rgb = np.array(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    rgb = rgb[:h, :w, :]
    chw = torch.from_numpy(rgb.transpose(2, 0, 1).copy())
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return chw.sub(mean).div(std).numpy()


def test_samples_and_single_frame_item(synthetic_root) -> None:
    cfg = load_config("sgn-s")
    ds = build_dataset(synthetic_root, cfg, "train", sequences=["00"])
    assert isinstance(ds, SemanticKittiDataset)
    assert [f for _, f in ds.samples] == [0, 5, 10, 15]  # frames with voxel files
    item = ds[1]
    h, w = cfg.data.image_size
    assert item["images"].shape == (1, 3, h, w) and item["images"].dtype == torch.float32
    expected = _expected_image(_seq(synthetic_root) / "image_2" / "000005.png", h, w)
    np.testing.assert_array_equal(item["images"][0].numpy(), expected)  # bit-identical to the reference
    _, calib = _lidar_poses(synthetic_root)
    np.testing.assert_allclose(item["intrinsics"][0].numpy(), calib["P2"][:3, :3], rtol=1e-6)
    np.testing.assert_allclose(item["lidar_to_cam"][0].numpy(), calib["Tr"], rtol=1e-6, atol=1e-6)
    own = kitti_io.read_points(synthetic_root / "dataset/sequences_msnet3d_lidar/sequences/00/000005.bin")
    np.testing.assert_array_equal(item["points"].numpy(), own[:, :3])
    full = np.load(synthetic_root / "dataset" / "labels" / "00" / "000005_1_1.npy")
    half = np.load(synthetic_root / "dataset" / "labels" / "00" / "000005_1_2.npy")
    assert item["target"].dtype == torch.int64 and tuple(item["target"].shape) == DEFAULT_GRID.dims
    np.testing.assert_array_equal(item["target"].numpy(), full)
    np.testing.assert_array_equal(item["target_half"].numpy(), half)
    assert ((full > 0) & (full < 255)).sum() > 1000  # the synthetic scene is not empty
    assert item["meta"]["sequence"] == "00" and item["meta"]["frame_id"] == "000005"


def test_temporal_frames_geometry(synthetic_root) -> None:
    """SGN-T: frames -12 -9 -6 -3; transforms from the LiDAR poses; points land on their pixels."""
    cfg = load_config("sgn-t")
    ds = SemanticKittiDataset(synthetic_root, cfg, "train", sequences=["00"])
    poses, calib = _lidar_poses(synthetic_root)
    tr, p2 = calib["Tr"], calib["P2"]
    # frame 0: no earlier frames -> the current frame stands in everywhere
    first = ds[0]
    assert first["meta"]["frame_ids"] == ["000000"] * 5
    for k in range(5):
        np.testing.assert_allclose(first["lidar_to_cam"][k].numpy(), tr, rtol=1e-6, atol=1e-6)
        assert torch.equal(first["images"][k], first["images"][0])
    # frame 15: neighbours 3, 6, 9, 12
    item = ds[3]
    frames = [15, 3, 6, 9, 12]
    assert item["meta"]["frame_ids"] == [f"{f:06d}" for f in frames]
    h, w = cfg.data.image_size
    counts = []
    for k, f in enumerate(frames):
        expected = tr @ np.linalg.inv(poses[f]) @ poses[15]
        np.testing.assert_allclose(item["lidar_to_cam"][k].numpy(), expected, rtol=1e-5, atol=1e-5)
        img = _expected_image(_seq(synthetic_root) / "image_2" / f"{f:06d}.png", h, w)
        np.testing.assert_array_equal(item["images"][k].numpy(), img)  # bit-identical to the reference
        lidar_dir = synthetic_root / "dataset" / "sequences_msnet3d_lidar" / "sequences" / "00"
        counts.append(len(kitti_io.read_points(lidar_dir / f"{f:06d}.bin")))
    assert item["points"].shape == (sum(counts), 3)
    # each frame's pseudo-LiDAR, now in the current LiDAR frame, projects with P2 @ lidar_to_cam[k]
    # onto the pixel grid of frame k with the depth of that frame's depth map
    start = 0
    for k, f in enumerate(frames):
        pts = item["points"][start : start + counts[k] : 7].numpy().astype(np.float64)  # every 7th point
        start += counts[k]
        l2c = item["lidar_to_cam"][k].numpy().astype(np.float64)
        cam0 = pts @ l2c[:3, :3].T + l2c[:3, 3]
        # camera 0 -> image_2 camera: the x / y offsets of P2 (the reference's pseudo-LiDAR convention)
        cam2 = cam0 + np.array([p2[0, 3] / p2[0, 0], p2[1, 3] / p2[1, 1], 0.0])
        # pixels without depth (0, e.g. the sky) are points at the camera itself, as in the
        # reference's pseudo-LiDAR files: set them apart
        at_camera = np.abs(cam2).max(axis=1) < 1e-3
        assert at_camera.mean() < 0.5, f
        cam2 = cam2[~at_camera]
        uvw = cam2 @ p2[:3, :3].T
        u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
        near = (np.abs(u - np.round(u)) < 0.05) & (np.abs(v - np.round(v)) < 0.05)
        assert near.mean() > 0.95, (f, near.mean())
        depth = np.load(_seq(synthetic_root) / "depth" / f"{f:06d}.npy")
        ui, vi = np.round(u).astype(int), np.round(v).astype(int)
        inside = (ui >= 0) & (ui < depth.shape[1]) & (vi >= 0) & (vi < depth.shape[0])
        rel = np.abs(depth[vi[inside], ui[inside]] - uvw[inside, 2]) / depth[vi[inside], ui[inside]]
        assert inside.mean() > 0.95 and np.median(rel) < 1e-3, f


def test_collate_and_loader(synthetic_root) -> None:
    cfg = load_config("sgn-t")
    ds = SemanticKittiDataset(synthetic_root, cfg, "train", sequences=["00"])
    loader = DataLoader(ds, batch_size=2, collate_fn=collate_ssc, num_workers=0)
    batch = next(iter(loader))
    assert isinstance(batch, SSCBatch)
    h, w = cfg.data.image_size
    assert batch.images.shape == (2, 5, 3, h, w)
    assert batch.intrinsics.shape == (2, 5, 3, 3) and batch.lidar_to_cam.shape == (2, 5, 4, 4)
    assert len(batch.points) == 2 and batch.target.shape == (2, *DEFAULT_GRID.dims)
    assert batch.target_half.shape == (2, *DEFAULT_GRID.scaled(2).dims)
    assert [m["frame_id"] for m in batch.meta] == ["000000", "000005"]
    with pytest.raises(ValueError, match="no samples"):
        collate_ssc([])


def test_near_range_masks() -> None:
    m = near_range_mask(DEFAULT_GRID, 25.6)
    expected = np.zeros(DEFAULT_GRID.dims, bool)
    expected[128:], expected[:, :64], expected[:, 192:] = True, True, True  # the reference's indices
    np.testing.assert_array_equal(m, expected)
    m = near_range_mask(DEFAULT_GRID, 12.8)
    expected = np.zeros(DEFAULT_GRID.dims, bool)
    expected[64:], expected[:, :96], expected[:, 160:] = True, True, True
    np.testing.assert_array_equal(m, expected)
    assert near_range_mask(DEFAULT_GRID, 51.2) is None
    small = VoxelGrid(origin=(0.0, -3.2, -2.0), voxel_size=0.4, dims=(16, 16, 4))
    m = near_range_mask(small, 3.2)  # 8 voxels ahead, 4 each side of y = 0 (index 8)
    assert m[:8, 4:12].sum() == 0 and m.sum() == 16 * 16 * 4 - 8 * 8 * 4
    with pytest.raises(ValueError, match="multiple of 2 voxels"):
        near_range_mask(DEFAULT_GRID, 10.1)


def test_eval_range_applies_to_full_target(synthetic_root) -> None:
    cfg = load_config("sgn-s", overrides={"data": {"eval_range": 25.6}})
    item = SemanticKittiDataset(synthetic_root, cfg, "train", sequences=["00"])[2]
    full = np.load(synthetic_root / "dataset" / "labels" / "00" / "000010_1_1.npy")
    t = item["target"].numpy()
    assert (t[128:] == 255).all() and (t[:, :64] == 255).all() and (t[:, 192:] == 255).all()
    np.testing.assert_array_equal(t[:128, 64:192], full[:128, 64:192])
    # as the reference, the half-scale target keeps the full range
    half = np.load(synthetic_root / "dataset" / "labels" / "00" / "000010_1_2.npy")
    np.testing.assert_array_equal(item["target_half"].numpy(), half)


def test_temporal_ids() -> None:
    assert temporal_frame_ids(5, (-12, -3, 2), range(0, 8)) == [5, 2, 7]
    assert temporal_frame_ids(7, (1,), range(0, 8)) == [7]
    assert temporal_frame_ids(4, (-1, -2), {1, 2, 3}) == [4, 4]  # current frame without a pose


def _mirror(synthetic_root, tmp_path, skip: set[str] = frozenset()):
    """A tree of symbolic links to the synthetic one, leaving out the relative paths in `skip`."""
    root = tmp_path / "mirror"
    for p in synthetic_root.rglob("*"):
        rel = p.relative_to(synthetic_root)
        if p.is_file() and str(rel) not in skip:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).symlink_to(p)
    return root


def test_missing_and_bad_files_are_named(synthetic_root, tmp_path) -> None:
    cfg_t = load_config("sgn-t")
    root = _mirror(synthetic_root, tmp_path, {"dataset/sequences/00/image_2/000003.png"})
    ds = SemanticKittiDataset(root, cfg_t, "train", sequences=["00"])
    ds[0]
    with pytest.raises(FileNotFoundError, match=r"image_2/000003\.png"):
        ds[3]
    cfg_depth = load_config("sgn-s", overrides={"data": {"depth_model": "nodepth"}})
    with pytest.raises(FileNotFoundError, match=r"sequences_nodepth_lidar/sequences/00/000000\.bin"):
        SemanticKittiDataset(root, cfg_depth, "train", sequences=["00"])[0]
    # labels: required for train / val, optional for test
    empty = tmp_path / "nolabels"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"labels/00/000000_1_1\.npy.*preprocess labels"):
        SemanticKittiDataset(root, cfg_t, "val", sequences=["00"], preprocess_root=empty)[0]
    item = SemanticKittiDataset(root, cfg_t, "test", sequences=["00"], preprocess_root=empty)[0]
    assert item["target"] is None and collate_ssc([item]).target is None
    # calibration without Tr: named at construction
    calib = root / "dataset" / "sequences" / "00" / "calib.txt"
    text = calib.read_text()
    calib.unlink()
    calib.write_text("".join(line + "\n" for line in text.splitlines() if not line.startswith("Tr")))
    with pytest.raises(kitti_io.DataFormatError, match=r"00/calib\.txt: missing calibration key\(s\) \['Tr'\]"):
        SemanticKittiDataset(root, cfg_t, "train", sequences=["00"])
    # crop larger than the image
    cfg_big = load_config("sgn-s", overrides={"data": {"image_size": [400, 1300]}})
    calib.unlink()
    calib.symlink_to(synthetic_root / "dataset" / "sequences" / "00" / "calib.txt")
    with pytest.raises(ValueError, match=r"000000\.png: image is 376x1241, smaller than the crop"):
        SemanticKittiDataset(root, cfg_big, "train", sequences=["00"])[0]
    with pytest.raises(FileNotFoundError, match=r"nowhere/dataset/sequences"):
        SemanticKittiDataset(tmp_path / "nowhere", cfg_t, "train")
    with pytest.raises(ValueError, match="unknown split"):
        SemanticKittiDataset(root, cfg_t, "training")


def test_reads_reference_label_files(synthetic_root, tmp_path) -> None:
    """Full-scale labels are float32 (as the reference writes them); uint8 files (ours before, or
    converted ones) read the same, at both scales."""
    rels = ("dataset/labels/00/000005_1_1.npy", "dataset/labels/00/000005_1_2.npy")
    root = _mirror(synthetic_root, tmp_path, set(rels))
    full, half = (np.load(synthetic_root / r) for r in rels)
    assert full.dtype == np.float32 and half.dtype == np.uint8
    np.save(root / rels[0], full.astype(np.uint8))
    np.save(root / rels[1], half.astype(np.float32))
    item = SemanticKittiDataset(root, load_config("sgn-s"), "train", sequences=["00"])[1]
    assert item["target"].dtype == torch.int64
    np.testing.assert_array_equal(item["target"].numpy(), full)
    np.testing.assert_array_equal(item["target_half"].numpy(), half)

def test_samples_carry_projection_tables_from_float64_geometry(synthetic_root) -> None:
    """The datasets make FLoSP's tables in their workers from the float64 transforms (issue #15:
    float32 frame-to-frame transforms moved pixels); collate stacks them onto SSCBatch."""
    from sgn_ros.model.projection import network_tables

    cfg = load_config("sgn-t")
    ds = build_dataset(synthetic_root, cfg, "train", sequences=["00"])
    item = ds[2]
    f = item["images"].shape[0]
    n = cfg.grid.scaled(2).num_voxels
    assert item["gather_index"].shape == (f, n) and item["gather_index"].dtype == torch.int64
    assert item["fov_mask"].shape == (f, n) and item["fov_mask"].dtype == torch.bool
    seq = ds.sequences["00"]
    frame = ds.samples[2][1]
    l2c = []
    for fid in [frame, *temporal_frame_ids(frame, ds.offsets, ds.neighbours_available("00"))]:
        ref_to_f = np.linalg.inv(seq.poses[fid]) @ seq.poses[frame]
        l2c.append(seq.lidar_to_cam @ ref_to_f)  # float64 all the way
    index, visible = network_tables(cfg.grid, cfg.model.feature_stride, np.repeat(seq.K[None], f, 0), np.stack(l2c),
                                    cfg.data.image_size)
    assert torch.equal(item["gather_index"], index) and torch.equal(item["fov_mask"], visible)
    batch = collate_ssc([item, ds[1]])
    assert batch.gather_index.shape == (2, f, n) and batch.fov_mask.shape == (2, f, n)


def test_preflight_names_every_broken_file(synthetic_root, tmp_path) -> None:
    """preflight() checks every file of the split by size and header; one error lists them all."""
    from sgn_ros.data.common import preflight

    cfg = load_config("sgn-l")  # temporal: the neighbours' images and points are checked too
    ds = SemanticKittiDataset(synthetic_root, cfg, "train", sequences=["00"])
    # 4 samples (0, 5, 10, 15) with neighbours 2; 1, 4, 7; 3, 6, 9, 12 (the rest fall back to
    # the current frame): 12 images + 12 points + 4 x 2 labels
    assert preflight(ds, progress=False) == 32
    png, cloud, label = (
        "dataset/sequences/00/image_2/000003.png",  # only a neighbour (of frame 15)
        "dataset/sequences_msnet3d_lidar/sequences/00/000010.bin",
        "dataset/labels/00/000015_1_2.npy",
    )
    root = _mirror(synthetic_root, tmp_path, {png, cloud, label})
    data = (synthetic_root / png).read_bytes()
    (root / png).write_bytes(data[: len(data) - 100])
    (root / cloud).write_bytes(b"\0" * 20)
    (root / label).write_bytes((synthetic_root / label).read_bytes()[:-1])
    (root / "dataset/sequences/00/image_2/000006.png").unlink()
    ds = SemanticKittiDataset(root, cfg, "train", sequences=["00"])
    with pytest.raises(kitti_io.DataFormatError, match=r"4 of 32 files unusable") as e:
        preflight(ds, progress=False)
    msg = str(e.value)
    for name in ("image_2/000003.png: truncated PNG", "00/000010.bin: size 20 bytes", "000015_1_2.npy: truncated",
                 "missing dataset file: " + str(root / "dataset/sequences/00/image_2/000006.png")):
        assert name in msg, name
    with pytest.raises(kitti_io.DataFormatError, match="4 of 32 files"):
        SemanticKittiDataset(root, cfg, "train", sequences=["00"], check_files=True)
    # reading the truncated image itself names it (Pillow alone says only "image file is truncated")
    with pytest.raises(kitti_io.DataFormatError, match=r"image_2/000003\.png: unreadable image"):
        ds[3]


def test_sgn_l_temporal_end_to_end(synthetic_root) -> None:
    """SGN-L as released (5 frames): synthetic sequence -> reader -> batch -> model forward +
    loss backward at reduced size. Neighbours are the offset frames, their points are moved into
    the current LiDAR frame, and the current frame stands in where a neighbour is missing."""
    from dataclasses import replace

    from sgn_ros.data.labels_preprocess import downsample_labels
    from sgn_ros.geometry import apply_transform
    from sgn_ros.model import build_model
    from sgn_ros.model.losses import SGNLoss

    small = {"model": {"embed_dims": 16, "proposal_dims": [8, 8, 8, 8]}, "data": {"image_size": [64, 192]}}
    cfg = load_config("sgn-l", overrides=small)
    assert cfg.data.temporal == (-12, -9, -6, -3)
    ds = SemanticKittiDataset(synthetic_root, cfg, "train", sequences=["00"])
    poses, _ = _lidar_poses(synthetic_root)
    lidar_dir = synthetic_root / "dataset" / "sequences_msnet3d_lidar" / "sequences" / "00"
    items = [ds[1], ds[3]]  # frames 5 and 15
    for item, frame, expected in ((items[0], 5, [5, 5, 5, 5, 2]), (items[1], 15, [15, 3, 6, 9, 12])):
        assert item["meta"]["frame_ids"] == [f"{f:06d}" for f in expected]
        start = 0
        for k, f in enumerate(expected):
            raw = kitti_io.read_points(lidar_dir / f"{f:06d}.bin")[:, :3].astype(np.float64)
            moved = apply_transform(np.linalg.inv(poses[frame]) @ poses[f], raw)
            got = item["points"][start : start + len(raw)].numpy()
            np.testing.assert_allclose(got, moved, rtol=0, atol=1e-4)
            start += len(raw)
            if f == frame:  # stand-in: the current frame's image and camera again
                assert torch.equal(item["images"][k], item["images"][0])
                assert torch.equal(item["lidar_to_cam"][k], item["lidar_to_cam"][0])
            else:
                assert not torch.equal(item["images"][k], item["images"][0])
                assert np.abs(moved - raw).max() > 0.5  # the car moved between the frames
        assert start == len(item["points"])
    batch = collate_ssc(items)
    assert batch.images.shape == (2, 5, 3, 64, 192) and batch.num_frames == 5
    # the network on a 4x coarser grid over the same volume, targets reduced by the reference rule
    net_cfg = load_config("sgn-l", overrides={**small, "grid": {"voxel_size": 0.8, "dims": [64, 64, 8]}})
    full = [downsample_labels(t.numpy(), 4) for t in batch.target]
    batch = replace(
        batch,
        target=torch.from_numpy(np.stack(full)).long(),
        target_half=torch.from_numpy(np.stack([downsample_labels(t, 2) for t in full])).long(),
        # the reader's tables are for its own grid: the coarser network makes its own (pure helper)
        gather_index=None,
        fov_mask=None,
    )
    torch.manual_seed(0)
    model = build_model(net_cfg).train()
    out = model(batch)
    losses = SGNLoss(net_cfg)(out, batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
