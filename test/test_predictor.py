# Tests of sgn_ros.model.predictor on a reduced SGN (the real network code at toy size):
# output dtype/shape/range, points and depth paths, crop/pad, temporal frames, checkpoints,
# and clear errors for bad input.
import numpy as np
import pytest
import torch

from sgn_ros.config import load_config
from sgn_ros.geometry import depth_to_points
from sgn_ros.model import build_model
from sgn_ros.model.checkpoint import save_checkpoint
from sgn_ros.model.predictor import (
    COMPILE_MODES,
    CPU_CHANNELS_LAST,
    DENSE_MODULES,
    WARMUP_CALLS,
    SSCPrediction,
    SSCPredictor,
    select_device,
)
from sgn_ros.model.preprocessing import normalize_image

NET_HW = (64, 160)
# tiny single-frame network on a coarse grid over the same volume (0.8 m voxels); SGN-L itself is
# temporal, the temporal tests set their own frames
TINY = {
    "model": {"embed_dims": 16, "proposal_dims": [8, 8, 8, 8]},
    "data": {"image_size": list(NET_HW), "temporal": [], "reference_focal": 80.0},  # the test camera's f
    "grid": {"voxel_size": 0.8, "dims": [64, 64, 8]},
}


def _tiny_cfg(**data):
    over = {k: dict(v) for k, v in TINY.items()}
    over["data"].update(data)
    return load_config("sgn-l", overrides=over)


def _camera(h=72, w=180):
    """Forward-looking KITTI-like camera: K and lidar->camera (x_cam = -y, y_cam = -z, z_cam = x)."""
    K = np.array([[80.0, 0.0, w / 2], [0.0, 80.0, h / 2 - 6], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = [[0, -1.0, 0], [0, 0, -1.0], [1.0, 0, 0]]
    T[:3, 3] = [0.0, -0.1, -0.3]
    return K, T


def _depth(h, w):
    """Road plane 1.7 m below the camera, capped at 60 m."""
    v = np.arange(h, dtype=np.float64)[:, None].repeat(w, 1)
    K, _ = _camera(h, w)
    dv = (v - K[1, 2]) / K[1, 1]
    with np.errstate(divide="ignore"):
        z = np.where(dv > 0, 1.7 / dv, 60.0)
    return np.minimum(z, 60.0).astype(np.float32)


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-repeatable forwards (see ENVIRONMENT.md)
    yield SSCPredictor(_tiny_cfg(), device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    h, w = 72, 180  # larger than the network input: cropped
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    K, T = _camera(h, w)
    return img, K, T, _depth(h, w)


def test_output_dtype_shape_range(predictor, inputs):
    img, K, T, depth = inputs
    pts = depth_to_points(depth, K, np.linalg.inv(T))
    pred = predictor.predict(img, K, T, points=pts)
    assert isinstance(pred, SSCPrediction)
    dims = tuple(predictor.cfg.grid.dims)
    assert pred.labels.shape == dims and pred.labels.dtype == np.uint8
    assert pred.confidence.shape == dims and pred.confidence.dtype == np.float32
    assert pred.labels.max() < predictor.cfg.num_classes
    c = predictor.cfg.num_classes
    assert np.all(pred.confidence >= 1.0 / c - 1e-6) and np.all(pred.confidence <= 1.0)


def test_depth_path_equals_points_path(predictor, inputs):
    img, K, T, depth = inputs
    by_depth = predictor.predict(img, K, T, depth=depth)
    pts = depth_to_points(depth, K, np.linalg.inv(T))
    by_points = predictor.predict(img, K, T, points=pts)
    np.testing.assert_array_equal(by_depth.labels, by_points.labels)
    np.testing.assert_allclose(by_depth.confidence, by_points.confidence, atol=1e-6)
    # the points reach the model filtered to the grid volume
    batch = predictor.prepare_batch(img, K, T, depth=depth)
    p = batch.points[0].numpy()
    assert 0 < len(p) < len(pts) and predictor.grid.contains(p).all()
    far = np.array([[200.0, 0.0, 0.0], [5.0, 1.0, -1.5]], np.float32)
    with pytest.raises(ValueError, match="no usable depth"):  # 1 point in the grid: too thin a cue
        predictor.prepare_batch(img, K, T, points=far)
    predictor.allow_image_only = True
    try:
        assert predictor.prepare_batch(img, K, T, points=far).points[0].shape == (1, 3)
    finally:
        predictor.allow_image_only = False


def test_crop_and_pad_keep_intrinsics(predictor, inputs):
    img, K, T, depth = inputs
    cfg = predictor.cfg
    batch = predictor.prepare_batch(img, K, T, depth=depth, mode="crop")  # auto would `fit` 72 x 180
    assert batch.images.shape == (1, 1, 3, *NET_HW)
    expected = normalize_image(img, cfg.data.image_mean, cfg.data.image_std)[:, : NET_HW[0], : NET_HW[1]]
    np.testing.assert_allclose(batch.images[0, 0].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(batch.intrinsics[0, 0].numpy(), K, rtol=1e-6)
    small = img[:50, :100]
    b2 = predictor.prepare_batch(small, K, T, depth=depth[:50, :100], mode="crop")
    got = b2.images[0, 0].numpy()
    np.testing.assert_allclose(got[:, :50, :100], expected[:, :50, :100], atol=1e-6)
    assert np.all(got[:, 50:] == 0) and np.all(got[:, :, 100:] == 0)  # padded with the mean colour


def test_temporal_frames():
    torch.manual_seed(0)
    pred = SSCPredictor(_tiny_cfg(temporal=[-3]), device="cpu")
    assert pred.num_frames == 2
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (64, 160, 3), dtype=np.uint8)
    K, T = _camera(64, 160)
    pts = depth_to_points(_depth(64, 160), K, np.linalg.inv(T))
    # one image stands in for every frame
    batch = pred.prepare_batch(img, K, T, points=pts)
    assert batch.images.shape[:2] == (1, 2) and torch.equal(batch.images[0, 0], batch.images[0, 1])
    back = np.eye(4)
    back[0, 3] = 3.0
    out = pred.predict([img, img[:, ::-1].copy()], K, [T, T @ back], points=pts)
    assert out.labels.shape == tuple(pred.cfg.grid.dims)
    with pytest.raises(ValueError, match="one per image"):
        pred.prepare_batch([img, img], K, T, points=pts)
    with pytest.raises(ValueError, match="takes 1 or 2 frame"):
        pred.prepare_batch([img] * 3, K, [T] * 3, points=pts)


def test_checkpoint_is_loaded(tmp_path, inputs):
    img, K, T, depth = inputs
    cfg = _tiny_cfg()
    torch.manual_seed(123)
    model = build_model(cfg)
    path = save_checkpoint(tmp_path / "tiny.pth", model, cfg)
    torch.manual_seed(7)  # a different random init, overwritten by the checkpoint
    a = SSCPredictor(cfg, checkpoint=path, device="cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(a.model.state_dict()[k], v), k
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        SSCPredictor(cfg, checkpoint=tmp_path / "nothere.pth", device="cpu")


def test_bad_inputs_raise_clear_errors(predictor, inputs):
    img, K, T, depth = inputs
    pts = np.zeros((4, 3), np.float32)
    cases = [
        (dict(images=img.astype(np.float32)), r"images\[0\]: expected a uint8 RGB"),
        (dict(images=img[..., :2]), r"images\[0\]: expected a uint8 RGB"),
        (dict(intrinsics=np.eye(4)), r"intrinsics\[0\]: expected shape \(3, 3\)"),
        (dict(intrinsics=np.zeros((3, 3))), "intrinsics.*pinhole"),
        (dict(lidar_to_cam=np.eye(3)), r"lidar_to_cam\[0\]: expected shape \(4, 4\)"),
        (dict(lidar_to_cam=2 * np.eye(4)), "lidar_to_cam"),
        (dict(points=None), "needs points"),
        (dict(depth=depth), "either points or depth"),
        (dict(points=np.zeros((4, 2))), r"points: expected an \(N, 3\)"),
    ]
    for change, msg in cases:
        kw = dict(images=img, intrinsics=K, lidar_to_cam=T, points=pts)
        kw.update(change)
        with pytest.raises(ValueError, match=msg):
            predictor.predict(**kw)
    with pytest.raises(ValueError, match="depth: expected an \\(H, W\\) map of frame 0"):
        predictor.predict(img, K, T, depth=depth[:10])


def test_device_and_fp16_choices():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        select_device("nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        SSCPredictor(_tiny_cfg(), device="cpu", fp16=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_matches_fp32(inputs):
    img, K, T, depth = inputs
    torch.manual_seed(0)
    p32 = SSCPredictor(_tiny_cfg(), device="cuda")
    p16 = SSCPredictor(_tiny_cfg(), device="cuda", fp16=True)
    p16.model.load_state_dict(p32.model.state_dict())
    a = p32.predict(img, K, T, depth=depth)
    b = p16.predict(img, K, T, depth=depth)
    agree = (a.labels == b.labels).mean()
    conf_diff = np.abs(a.confidence - b.confidence)
    print(f"fp16 vs fp32: label agreement {agree:.4f}, confidence diff median {np.median(conf_diff):.2e} "
          f"max {conf_diff.max():.2e}")
    assert agree > 0.98
    assert np.median(conf_diff) < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inputs_match_cpu(inputs):
    img, K, T, depth = inputs
    cpu = SSCPredictor(_tiny_cfg(), device="cpu")
    gpu = SSCPredictor(_tiny_cfg(), device="cuda")
    for kw in (dict(depth=depth), dict(points=depth_to_points(depth, K, np.linalg.inv(T)))):
        a = cpu.prepare_batch(img, K, T, **kw)
        b = gpu.prepare_batch(img, K, T, **kw)
        assert b.images.is_cuda and b.points[0].is_cuda
        torch.testing.assert_close(b.images.cpu(), a.images, atol=1e-6, rtol=0)
        torch.testing.assert_close(b.points[0].cpu(), a.points[0], atol=1e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fits_a_scaled_camera_on_the_device_like_the_cpu():
    """A camera that must be scaled (focal length twice the training one) is uploaded and fitted
    on the GPU: the network images equal the CPU predictor's up to one grey level (FMA rounding)."""
    rng = np.random.default_rng(5)
    h, w = 150, 360
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    K = np.array([[160.0, 0.0, w / 2], [0.0, 160.0, h / 2], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    pts = np.random.default_rng(6).uniform([2, -20, -2], [40, 20, 2], (4000, 3)).astype(np.float32)
    cpu = SSCPredictor(_tiny_cfg(), device="cpu")
    gpu = SSCPredictor(_tiny_cfg(), device="cuda")
    a, b = cpu.prepare_batch(img, K, T, points=pts), gpu.prepare_batch(img, K, T, points=pts)
    torch.testing.assert_close(b.intrinsics.cpu(), a.intrinsics, atol=0, rtol=0)
    one_level = 1.0 / 255.0 / min(cpu.cfg.data.image_std) + 1e-6
    assert (b.images.cpu() - a.images).abs().max() <= one_level


def test_preparing_is_a_no_op_on_the_cpu(predictor, inputs):
    """The pipelined path (prepare inside `preparing`, infer elsewhere) is the one-call path."""
    img, K, T, depth = inputs
    with predictor.preparing():
        batch = predictor.prepare_batch(img, K, T, depth=depth)
    assert batch.ready is None
    got, want = predictor.infer(batch), predictor.predict(img, K, T, depth=depth)
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_array_equal(got.confidence, want.confidence)
    with pytest.raises(ValueError, match="uint8 RGB"):  # errors inside pass through unchanged
        with predictor.preparing():
            predictor.prepare_batch(img.astype(np.float32), K, T, depth=depth)
    predictor.synchronize()  # nothing queued anywhere on the CPU: returns at once


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_prepared_on_the_side_stream_of_another_thread(inputs):
    """As the node's pipeline does: frames prepared in one thread inside `preparing` (the
    predictor's side stream) and run in another (the default stream) give the one-call results,
    while the next frame is prepared during the network."""
    import queue
    import threading

    img, K, T, depth = inputs
    torch.manual_seed(0)
    gpu = SSCPredictor(_tiny_cfg(), device="cuda")
    handed: queue.Queue = queue.Queue(maxsize=1)
    real_prepare = gpu.prepare_batch

    def slow_prepare(*args, **kwargs):
        # ~0.1 s of GPU time queued on the side stream before the batch is written: a network
        # that did not wait for `ready` would read the batch's memory before it holds anything
        torch.cuda._sleep(100_000_000)
        return real_prepare(*args, **kwargs)

    def decode_stage() -> None:
        for _ in range(4):
            with gpu.preparing():
                assert torch.cuda.current_stream() != torch.cuda.default_stream()
                handed.put(slow_prepare(img, K, T, depth=depth))

    worker = threading.Thread(target=decode_stage)
    worker.start()  # the first frame also makes the projection tables, on the side stream
    results = []
    for _ in range(4):
        batch = handed.get(timeout=60)
        assert isinstance(batch.ready, torch.cuda.Event)
        results.append(gpu.infer(batch))
    worker.join()
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    want = gpu.predict(img, K, T, depth=depth)  # the one-call path, on the default stream
    for got in results:  # CUDA's atomic sums may round differently from run to run: near-equal
        assert (got.labels == want.labels).mean() > 0.999
        assert np.abs(got.confidence - want.confidence).max() < 1e-3


def test_projection_tables_once_per_camera_geometry_in_float64(predictor, inputs):
    """The predictor owns camera input -> network input: the batch carries FLoSP tables made from
    the float64 geometry, computed once per camera (a fixed camera projects once)."""
    from sgn_ros.model.projection import network_tables

    img, K, T, depth = inputs
    a = predictor.prepare_batch(img, K, T, depth=depth, mode="crop")
    b = predictor.prepare_batch(img.copy(), K.copy(), T.copy(), depth=depth, mode="crop")
    assert a.gather_index is b.gather_index and a.fov_mask is b.fov_mask  # cached, not recomputed
    cfg = predictor.cfg
    index, visible = network_tables(cfg.grid, cfg.model.feature_stride, K[None], T[None], cfg.data.image_size)
    assert torch.equal(a.gather_index[0], index) and torch.equal(a.fov_mask[0], visible)
    assert a.gather_index.shape == (1, 1, cfg.grid.scaled(2).num_voxels) and a.fov_mask.any()
    moved = T.copy()
    moved[0, 3] += 1.0
    c = predictor.prepare_batch(img, K, moved, depth=depth, mode="crop")
    assert not torch.equal(c.gather_index, a.gather_index)
    # resize mode: the image and K are fitted by the predictor, the tables follow the new K
    r = predictor.prepare_batch(img, K, T, depth=depth, mode="resize")
    assert r.images.shape[-2:] == NET_HW and not torch.equal(r.intrinsics, a.intrinsics)
    with pytest.raises(ValueError, match="mode"):
        predictor.prepare_batch(img, K, T, depth=depth, mode="stretch")


def test_warmup_runs_one_dummy_frame_and_options_are_checked(predictor):
    seconds = predictor.warmup()
    assert seconds > 0
    with pytest.raises(ValueError, match="compile_dense"):
        SSCPredictor(_tiny_cfg(), device="cpu", compile_dense="max-speed")


def test_cpu_trunk_is_channels_last_with_the_plain_outputs(inputs):
    """On the CPU the predictor keeps the 3-D convolution trunk channels-last (oneDNN's own layout,
    no reorder per convolution): its weights and volumes are NDHWC, and the logits are the plain
    (NCDHW) model's to float rounding, with the same labels. (A 128 x 128 x 8 grid: on the
    smaller test grid PyTorch's size rule sends the convolutions to its reference kernels, which
    return NCDHW; see SegmentationHead3d. The same rule takes them for 1x1x1 convolutions in a
    single-threaded process, hence two threads here.)"""
    img, K, T, depth = inputs
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _check_channels_last_trunk(img, K, T, depth)
    finally:
        torch.set_num_threads(threads)


def _check_channels_last_trunk(img, K, T, depth) -> None:
    torch.manual_seed(0)
    over = {k: dict(v) for k, v in TINY.items()}
    over["grid"] = {"voxel_size": 0.4, "dims": [128, 128, 8]}
    predictor = SSCPredictor(load_config("sgn-l", overrides=over), device="cpu")
    for name in CPU_CHANNELS_LAST:
        for p in getattr(predictor.model, name).parameters():
            if p.dim() == 5:
                assert p.is_contiguous(memory_format=torch.channels_last_3d), name
    plain = build_model(predictor.cfg).eval()
    plain.load_state_dict(predictor.model.state_dict())
    assert all(p.is_contiguous() for p in plain.parameters())
    batch = predictor.prepare_batch(img, K, T, points=depth_to_points(depth, K, np.linalg.inv(T)))
    volumes = []
    hook = predictor.model.diffusion.register_forward_hook(lambda _m, _i, out: volumes.append(out))
    try:
        with torch.inference_mode():
            got, want = predictor.model(batch)["ssc_logits"], plain(batch)["ssc_logits"]
    finally:
        hook.remove()
    assert volumes[0].is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert torch.equal(got.argmax(1), want.argmax(1))


def _no_cxx() -> bool:
    """torch.compile on the CPU (inductor) needs a C++ compiler: $CXX or g++."""
    import os
    import shutil

    return shutil.which(os.environ.get("CXX") or "g++") is None


@pytest.mark.skipif(_no_cxx(), reason="no C++ compiler for torch.compile on the CPU")
@pytest.mark.parametrize("mode", COMPILE_MODES)
def test_compile_dense_equals_eager_and_compiles_in_the_warmup_only(mode, inputs):
    """compile_dense on the CPU (inductor; reduce-overhead records no CUDA graphs there): the warm-up
    compiles, frames with other point counts later do not recompile, the parameter names (hence
    checkpoints) stay, and the outputs are the eager network's. Under reduce-overhead every network
    call runs on the predictor's one network thread (CUDA graph trees are per thread), whichever
    thread calls; otherwise on the caller's. (Compiled code is shared by predictors of one
    architecture in a process: dynamo guards on the modules' structure, not their identity.)"""
    import threading

    import torch._dynamo
    from torch._dynamo.utils import counters

    img, K, T, depth = inputs
    torch.manual_seed(0)
    eager = SSCPredictor(_tiny_cfg(), device="cpu")
    compiled = SSCPredictor(_tiny_cfg(), device="cpu", compile_dense=mode)
    assert list(compiled.model.state_dict()) == list(eager.model.state_dict())
    compiled.model.load_state_dict(eager.model.state_dict())
    ran_on = []  # the thread of each network call (a hook on a module that is not compiled)
    compiled.model.proposal.register_forward_hook(lambda *_: ran_on.append(threading.get_ident()))
    compiled.warmup()
    assert len(ran_on) == WARMUP_CALLS[mode]
    assert all(getattr(compiled.model, name)._compiled_call_impl is not None for name in DENSE_MODULES)
    counters.clear()  # frames dynamo compiles from here on (a first compile or a recompile): none
    pts = depth_to_points(depth, K, np.linalg.inv(T))
    results = []
    with torch._dynamo.config.patch(error_on_recompile=True):
        for n in (len(pts), len(pts) // 2):
            got, want = compiled.predict(img, K, T, points=pts[:n]), eager.predict(img, K, T, points=pts[:n])
            results.append((got, want))
        worker = threading.Thread(target=lambda: results.append(
            (compiled.predict(img, K, T, points=pts), eager.predict(img, K, T, points=pts))))
        worker.start()
        worker.join()
    assert len(results) == 3
    assert not counters["frames"]["total"], dict(counters["frames"])
    for got, want in results:
        assert np.mean(got.labels != want.labels) < 1e-3
        np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-5)
    if mode == "reduce-overhead":
        assert len(set(ran_on)) == 1 and ran_on[0] not in (threading.get_ident(), worker.ident)
    else:
        assert set(ran_on[:-1]) == {threading.get_ident()} and ran_on[-1] == worker.ident


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_reduce_overhead_replays_cuda_graphs_recorded_in_the_warmup(inputs):
    """On a GPU, compile_dense reduce-overhead: the dense parts become CUDA graphs (none skipped),
    recorded in the warm-up on the predictor's network thread; frames from any thread then replay
    them there (no graph tree in the calling threads, no recompilation), with the eager outputs."""
    import threading

    import torch._dynamo
    from torch._dynamo.utils import counters
    from torch._inductor.cudagraph_trees import get_manager

    img, K, T, depth = inputs
    torch.manual_seed(0)
    eager = SSCPredictor(_tiny_cfg(), device="cuda")
    graphs = SSCPredictor(_tiny_cfg(), device="cuda", compile_dense="reduce-overhead")
    graphs.model.load_state_dict(eager.model.state_dict())
    index = graphs.device.index or 0
    counters.clear()
    graphs.warmup(stereo=False)
    assert not counters["inductor"]["cudagraph_skips"], dict(counters["inductor"])
    counters.clear()
    pts = depth_to_points(depth, K, np.linalg.inv(T))
    results = []
    with torch._dynamo.config.patch(error_on_recompile=True):
        results.append((graphs.predict(img, K, T, points=pts), eager.predict(img, K, T, points=pts)))
        worker = threading.Thread(target=lambda: results.append(
            (graphs.predict(img, K, T, points=pts[::2]), eager.predict(img, K, T, points=pts[::2]))))
        worker.start()
        worker.join()
    assert len(results) == 2 and not counters["frames"]["total"]
    for got, want in results:
        assert np.mean(got.labels != want.labels) < 1e-3
        np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-4)
    assert get_manager(index, create_if_none_exists=False) is None  # none in this (the calling) thread
    assert graphs._network_thread.submit(get_manager, index, False).result() is not None


@pytest.mark.parametrize("bad", ["nan", "inf", "negative", "zero", "1e30", "one pixel"])
def test_depth_with_no_usable_values_is_refused(predictor, inputs, bad):
    """A depth map with (almost) nothing valid inside the grid is no depth-guided frame: the
    predictor raises "no usable depth" (the node counts and skips it) unless image-only is allowed."""
    img, K, T, depth = inputs
    d = {"nan": np.full_like(depth, np.nan), "inf": np.full_like(depth, np.inf), "negative": -depth,
         "zero": np.zeros_like(depth), "1e30": np.full_like(depth, 1e30)}.get(bad)
    if d is None:  # one valid pixel in the grid: below min_valid_depth_share
        d = np.full_like(depth, np.nan)
        d[-1, depth.shape[1] // 2] = depth[-1, depth.shape[1] // 2]
    with np.errstate(all="raise", under="ignore"), pytest.raises(ValueError, match="^no usable depth"):
        predictor.predict(img, K, T, depth=d)
    lenient = SSCPredictor(predictor.cfg, device="cpu", allow_image_only=True)
    lenient.model.load_state_dict(predictor.model.state_dict())
    assert lenient.predict(img, K, T, depth=d).labels.shape == tuple(predictor.cfg.grid.dims)
    strict = SSCPredictor(predictor.cfg, device="cpu", min_valid_depth_share=0.9)
    with pytest.raises(ValueError, match="no usable depth"):  # the road-plane depth: far fewer in the grid
        strict.prepare_batch(img, K, T, depth=depth)
    with pytest.raises(ValueError, match="min_valid_depth_share"):
        SSCPredictor(predictor.cfg, device="cpu", min_valid_depth_share=2.0)


def test_other_cameras_are_fitted_uniformly_with_K_adjusted(predictor, inputs):
    """`auto` (the default) keeps the reference's crop for a near-network-size image and fits any
    other camera with one scale and the matching K; the FLoSP tables follow the fitted K."""
    from sgn_ros.geometry import fit_intrinsics

    img, K, T, depth = inputs
    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)  # 4:3, 1.5-4x the network size
    Kb = np.array([[190.0, 0, 159.5], [0, 190.0, 119.5], [0, 0, 1]])
    depth_b = np.full((240, 320), 8.0, np.float32)
    batch = predictor.prepare_batch(big, Kb, T, depth=depth_b)
    plan = fit_intrinsics((240, 320), Kb, NET_HW, "fit", 80.0)  # scaled to the training focal length
    np.testing.assert_allclose(batch.intrinsics[0, 0].numpy(), plan.K, rtol=1e-6)
    assert batch.intrinsics[0, 0, 0, 0] == pytest.approx(80.0, rel=0.01)
    assert batch.intrinsics[0, 0, 0, 0] / batch.intrinsics[0, 0, 1, 1] == pytest.approx(1.0, abs=0.01)
    # 320 px at 190 -> 135 px at 80: padded left and right with the mean colour (0 once normalised)
    assert plan.left < 0 and np.all(batch.images[0, 0, :, :, 0].abs().numpy() < 0.01)
    exact = img[: NET_HW[0], : NET_HW[1]]
    b2 = predictor.prepare_batch(exact, K, T, depth=depth[: NET_HW[0], : NET_HW[1]])  # network size: as is
    np.testing.assert_allclose(b2.intrinsics[0, 0].numpy(), K, rtol=1e-6)
    with pytest.raises(ValueError, match="focal"):
        predictor.prepare_batch(big, np.diag([1e308, 1e308, 1.0]), T, depth=depth_b)


def test_view_coverage_says_when_the_grid_is_out_of_view(predictor, inputs):
    img, K, T, _ = inputs
    ahead = predictor.view_coverage(img.shape[:2], K, T)
    assert 0.1 < ahead <= 1.0
    behind = T.copy()
    behind[:3, :3] = T[:3, :3] @ np.diag([-1.0, -1.0, 1.0])  # camera turned to look backwards
    assert predictor.view_coverage(img.shape[:2], K, behind) < 0.05
    # padding sees nothing: the left half of the image, padded by `crop`, covers less
    assert predictor.view_coverage((72, 90), K, T, "crop") < ahead
