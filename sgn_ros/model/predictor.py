# Inference front end of SGN for plain Python callers (the ROS node, the demo, notebooks): takes
# camera images as they come (uint8 RGB, any size), their intrinsics and LiDAR->camera
# transforms, plus LiDAR points or a metric depth map, and returns the semantic scene completion
# of the current frame as NumPy arrays. It owns "camera input -> network input": fitting images
# (and K) to the network, depth -> points, cropping points to the grid and the FLoSP projection
# tables, made once per camera geometry in float64 (`prepare_batch`). The model is built and
# placed once (spconv set up for the device there).
"""`SSCPredictor`: images (+ points or depth) -> per-voxel labels and confidence."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch

from sgn_ros.batch import SSCBatch
from sgn_ros.config import SGNConfig, load_config
from sgn_ros.geometry import (
    check_intrinsics,
    check_transform,
    depth_to_points,
    fit_image,
    fit_intrinsics,
    invert_transform,
    points_in_grid,
)
from sgn_ros.grid import VoxelGrid
from sgn_ros.model.preprocessing import normalize_image
from sgn_ros.model.projection import network_tables
from sgn_ros.stereo.pair import STEREO_METHODS, StereoMatcher, StereoPair, as_stereo_pair

__all__ = ["SSCPrediction", "SSCPredictor", "StereoPair", "select_device", "COMPILE_MODES",
           "LOW_VIEW_COVERAGE", "MIN_VALID_DEPTH_SHARE"]

#: `compile_dense` choices: torch.compile's default mode, or reduce-overhead (CUDA graphs)
COMPILE_MODES = ("default", "reduce-overhead")
#: network calls `warmup` makes per `compile_dense` mode: compiled code is built at the first call
#: and checked at the second (same shapes, no recompilation); CUDA graph trees run a function
#: eagerly at its first call, record it at the second and replay it from the third
WARMUP_CALLS = {None: 1, "default": 2, "reduce-overhead": 3}
#: the dense parts of SGN (fixed shapes per config; the sparse parts vary per frame and are never compiled)
DENSE_MODULES = ("encoder", "neck", "bottleneck", "occupancy_head", "diffusion", "output_head")
#: SGN's 3-D convolution trunk, kept channels-last (`torch.channels_last_3d`) on the CPU: oneDNN
#: convolves NDHWC volumes without reordering them to its blocked layout and back at every
#: convolution (1.3-2.2x per convolution; SGN-L's CPU forward 2.8 -> 2.3 s, the same sums in
#: another order, ~1e-5). Weights in that format make each convolution's output channels-last, so
#: the whole trunk stays so; parameter names and values (checkpoints) are unchanged.
CPU_CHANNELS_LAST = ("bottleneck", "occupancy_head", "diffusion")

log = logging.getLogger(__name__)

#: Camera geometries whose projection tables a predictor keeps (a fixed camera needs one; SGN-T's
#: moving frames make a new one per frame).
TABLE_CACHE_SIZE = 4

#: Default `min_valid_depth_share`: a frame needs at least 1 % of its depth pixels valid and inside
#: the grid (KITTI-size stereo depth puts ~20-40 % there; 1 % of 370 x 1220 is ~4.5 k points, about
#: what a sparse 16-beam LiDAR gives in the grid), else the network sees almost no geometry and
#: its output is an image-only guess that must not be published as a depth-guided prediction.
MIN_VALID_DEPTH_SHARE = 0.01
#: A LiDAR cloud (no pixel count to share against) needs at least this many points in the grid.
MIN_GRID_POINTS = 100
#: `view_coverage` below this: the grid lies mostly outside the camera's view, worth a warning
#: (the synthetic KITTI rig: 0.68; 16:9 and 4:3 cameras at KITTI's height: 0.54-0.57; one 1.2 m
#: high, pitched 5 deg down: 0.29; a grid behind the camera: 0; bench/other_cameras.py).
LOW_VIEW_COVERAGE = 0.2


@dataclass
class SSCPrediction:
    """The completed scene of one frame on the full-scale grid (cfg.grid.dims, indexed [x, y, z]).

    The one value the ROS encoders (sgn_ros.ros.encoders) take.

    Attributes:
        labels: (X, Y, Z) uint8 training class ids (0 = empty).
        confidence: (X, Y, Z) float32 in [0, 1], the softmax probability of the chosen class
            (None: no confidence, e.g. a prediction read back from a message without it).
        grid: the voxel grid the arrays are indexed by.
        grid_to_frame: (4, 4) grid coordinates -> the frame the outputs are published in
            (None = the grid frame itself); set by the caller that publishes (`dataclasses.replace`).
    """

    labels: np.ndarray
    confidence: np.ndarray | None
    grid: VoxelGrid
    grid_to_frame: np.ndarray | None = None


def select_device(device: str | torch.device | None) -> torch.device:
    """`device` if given (checked to exist), else CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: cannot parse {device!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return dev


def _frames(value, name: str, shape: tuple[int, ...]) -> list[np.ndarray]:
    """One array of `shape`, a stacked (F, *shape) array, or a sequence of them -> list of arrays."""
    if isinstance(value, (list, tuple)):
        arrays = [np.asarray(v) for v in value]
    else:
        arr = np.asarray(value)
        arrays = [arr] if arr.shape == shape else list(arr) if arr.ndim == len(shape) + 1 else [arr]
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise ValueError(f"{name}[{i}]: expected shape {shape}, got {a.shape}")
    if not arrays:
        raise ValueError(f"{name}: no values given")
    return arrays


class SSCPredictor:
    """Build an SGN model once and run it on raw camera input.

    Args:
        cfg_or_variant: an `SGNConfig`, a variant name (``sgn-t`` / ``sgn-s`` / ``sgn-l``) or a YAML path.
        dataset: ``semantickitti`` or ``kitti360`` (used when a name / path is given).
        checkpoint: weights file (ours or a converted reference checkpoint); None loads the
            bundled weights of the config when it has some (sgn_ros.weights: `sgn-l-synth`, trained
            on the synthetic world only), else keeps the random initialisation (tests, timing).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...; None picks CUDA when present, else CPU.
        fp16: run the network under float16 autocast, its sparse convolutions with float16
            weights and features (spconv's half kernels), and MobileStereoNet in float16. CUDA
            only: on CPU it raises ValueError (CPU float16 kernels are slow or missing; silently
            running float32 would hide a misconfiguration).
        stereo_method: how `predict(..., stereo=...)` turns a stereo pair into depth: ``sgbm``
            (OpenCV on the host), ``sgm`` (torch semi-global matching on `device`) or ``msnet3d``
            (MobileStereoNet-3D on `device`; needs `stereo_weights`, else MSNetWeightsMissing).
        stereo_params: matcher settings of sgbm / sgm (sgn_ros.data.stereo.StereoParams).
        stereo_weights: MobileStereoNet checkpoint for msnet3d.
        compile_dense: None (default), or a torch.compile mode of COMPILE_MODES applied to the
            dense parts only (``reduce-overhead`` adds CUDA graphs on CUDA; on the CPU it is
            ``default``). Compiling takes tens of seconds at the first call: `warmup` pays it
            (and records the CUDA graphs). CUDA graph trees belong to the thread that records
            them, so with ``reduce-overhead`` every network call runs on one thread of the
            predictor's own, whichever thread calls `infer` or `warmup`. Off by default.
        min_valid_depth_share: least share (0..1) of a depth map's pixels that must give points
            inside the grid (a LiDAR cloud needs `MIN_GRID_POINTS` there); fewer raise
            ValueError("no usable depth: ...") so that the caller skips the frame.
        allow_image_only: run such frames anyway on whatever points there are (an image-only
            prediction when none), for deliberate camera-only use.

    Images are fitted to cfg.data.image_size by `sgn_ros.geometry.fit_intrinsics` (``auto``: the
    reference's top-left crop for KITTI-size images; for any other camera a uniform scale to the
    training images' focal length and a horizon-keeping cut, K adjusted); a smaller crop is padded
    at the bottom / right with the mean colour. Pseudo-LiDAR from a depth map uses the full depth
    map and the original K.
    """

    def __init__(
        self,
        cfg_or_variant: SGNConfig | str | os.PathLike[str] = "sgn-l",
        dataset: str | None = "semantickitti",
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        fp16: bool = False,
        stereo_method: str = "sgbm",
        stereo_params=None,
        stereo_weights: str | os.PathLike[str] | None = None,
        compile_dense: str | None = None,
        min_valid_depth_share: float = MIN_VALID_DEPTH_SHARE,
        allow_image_only: bool = False,
    ) -> None:
        from sgn_ros.model import build_model  # late: keeps `import sgn_ros.model.predictor` light

        self.cfg = cfg_or_variant if isinstance(cfg_or_variant, SGNConfig) else load_config(cfg_or_variant, dataset)
        self.device = select_device(device)
        if fp16 and self.device.type != "cuda":
            raise ValueError(f"fp16: float16 inference needs a CUDA device, got device {self.device}")
        self.fp16 = bool(fp16)
        if stereo_method not in STEREO_METHODS:
            raise ValueError(f"stereo_method: expected one of {STEREO_METHODS}, got {stereo_method!r}")
        if compile_dense is not None and compile_dense not in COMPILE_MODES:
            raise ValueError(f"compile_dense: expected None or one of {COMPILE_MODES}, got {compile_dense!r}")
        if not 0.0 <= float(min_valid_depth_share) <= 1.0:
            raise ValueError(f"min_valid_depth_share: expected a share in [0, 1], got {min_valid_depth_share}")
        self.min_valid_depth_share = float(min_valid_depth_share)
        self.allow_image_only = bool(allow_image_only)
        #: where the weights came from: a path, "bundled:<file>" or "untrained"
        self.weights_source = "untrained"
        if checkpoint is None:
            from sgn_ros.weights import SYNTHETIC_ONLY_NOTE, bundled_checkpoint

            bundled = bundled_checkpoint(self.cfg.name)
            if bundled is not None:
                checkpoint = bundled
                self.weights_source = f"bundled:{bundled.name} ({SYNTHETIC_ONLY_NOTE})"
        if checkpoint is not None:
            # The one loader: our files define the network by their stored config (which then
            # replaces self.cfg); a variant / grid / dataset contradicting the file is an error.
            from sgn_ros.model.checkpoint import load_model

            path = os.fspath(checkpoint)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"checkpoint: file not found: {path}")
            loaded = load_model(path, expect=self.cfg)
            self.cfg, model = loaded.cfg, loaded.model
            if self.weights_source == "untrained":
                self.weights_source = path
        else:
            model = build_model(self.cfg)
        self.grid = self.cfg.grid
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":
            for name in CPU_CHANNELS_LAST:
                getattr(self.model, name).to(memory_format=torch.channels_last_3d)
        if self.fp16:
            from sgn_ros.model.spconv_compat import sparse_convs_to

            sparse_convs_to(self.model, torch.float16)
        self.compile_dense = compile_dense
        if compile_dense is not None:
            for name in DENSE_MODULES:  # in place: parameter names (checkpoints) are unchanged
                getattr(self.model, name).compile(mode=compile_dense)
        #: the one thread that runs the network under reduce-overhead (see `compile_dense`), else None;
        #: not a daemon (torch.compile run from a daemon thread aborts the interpreter at exit), so a
        #: process exiting while it runs a network call waits for that call (on a GPU, ms)
        self._network_thread = (ThreadPoolExecutor(1, thread_name_prefix="sgn-network")
                                if compile_dense == "reduce-overhead" else None)
        #: stereo pair -> depth, on this predictor's device (msnet3d refuses here without weights)
        self.stereo = StereoMatcher(stereo_method, self.device, stereo_params, stereo_weights, self.fp16)
        #: FLoSP tables per camera geometry (see `tables`): host-side state of the predictor, not the model
        self._tables: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}
        #: CUDA stream of `preparing` (made at its first use)
        self._side_stream: torch.cuda.Stream | None = None

    @property
    def num_frames(self) -> int:
        return self.cfg.data.num_frames

    # ----------------------------------------------------------------- camera input -> network input
    def fit_camera(
        self, image: np.ndarray | torch.Tensor, K: np.ndarray, mode: str = "auto"
    ) -> tuple[np.ndarray | torch.Tensor, np.ndarray]:
        """A camera image (H, W, 3) uint8 of any size and its K -> the network's image size and K
        (a tensor image is fitted on its own device, see `sgn_ros.geometry.fit_image`).

        Modes of `sgn_ros.geometry.fit_intrinsics`: ``crop`` keeps the top-left
        cfg.data.image_size (K unchanged; a smaller image is padded with the mean colour later,
        in `prepare_batch`); ``fit`` scales uniformly to cfg.data.reference_focal (the training
        images' focal length) and cuts / pads (mean colour) keeping the horizon and near road;
        ``resize`` stretches; ``auto`` = ``crop`` for KITTI-size images, else ``fit``.
        """
        K = check_intrinsics(K, "K", tuple(image.shape[:2]))
        plan = fit_intrinsics(tuple(image.shape[:2]), K, self.cfg.data.image_size, mode, self.cfg.data.reference_focal)
        if plan.scaled_hw is None:
            h, w = self.cfg.data.image_size
            return image[:h, :w], plan.K
        fill = np.asarray(self.cfg.data.image_mean, dtype=np.float64) * 255.0  # the mean colour: ~0 once normalised
        return fit_image(image, K, self.cfg.data.image_size, plan.mode, self.cfg.data.reference_focal, fill)

    def view_coverage(
        self, image_hw: tuple[int, int], K: np.ndarray, lidar_to_cam: np.ndarray, mode: str = "auto"
    ) -> float:
        """Share (0..1) of the grid's voxels that the network's (fitted) image of this camera sees.

        Voxel centres in front of the camera that project into the part of the network image
        showing camera pixels (`FitPlan.box`: padding sees nothing); ~0.2 s for the full grid, so
        call it once per camera geometry. A low value means the grid lies mostly outside the camera's
        view (wrong grid pose, a camera pitched away, a narrow lens): the node warns below
        `LOW_VIEW_COVERAGE`. The KITTI rig sees about two thirds of its grid, other forward
        cameras a little over half (README, "Any camera").
        """
        K = check_intrinsics(K, "K", image_hw)
        plan = fit_intrinsics(image_hw, K, self.cfg.data.image_size, mode, self.cfg.data.reference_focal)
        T = check_transform(lidar_to_cam, "lidar_to_cam")
        c = self.grid.voxel_centers().reshape(-1, 3)
        x, y, z = (T[i, 0] * c[:, 0] + T[i, 1] * c[:, 1] + T[i, 2] * c[:, 2] + T[i, 3] for i in range(3))
        front = z > 1e-3
        z = np.where(front, z, 1.0)
        u = (plan.K[0, 0] * x + plan.K[0, 1] * y) / z + plan.K[0, 2]
        v = plan.K[1, 1] * y / z + plan.K[1, 2]
        r0, r1, c0, c1 = plan.box
        seen = front & (u >= c0 - 0.5) & (u < c1 - 0.5) & (v >= r0 - 0.5) & (v < r1 - 0.5)
        return float(seen.mean())

    def check_depth(self, n_in_grid: int, n_pixels: int | None) -> None:
        """Raise ValueError("no usable depth: ...") when a frame's geometry cue is too thin:
        fewer than `min_valid_depth_share` of a depth map's `n_pixels` (or, for a LiDAR cloud,
        `n_pixels` None, fewer than `MIN_GRID_POINTS`) give points inside the grid. A no-op with
        `allow_image_only`."""
        if self.allow_image_only or not self.cfg.model.guidance:
            return
        if n_pixels is None:
            if n_in_grid < MIN_GRID_POINTS:
                raise ValueError(f"no usable depth: {n_in_grid} LiDAR point(s) in the grid, need {MIN_GRID_POINTS}")
            return
        need = self.min_valid_depth_share * n_pixels
        if n_in_grid < max(need, 1):
            raise ValueError(
                f"no usable depth: {n_in_grid} of {n_pixels} depth pixels ({n_in_grid / max(n_pixels, 1):.2%}) give "
                f"points in the grid, need {self.min_valid_depth_share:.2%} (all NaN / inf / <= 0 / out of range?)"
            )

    def camera_points(
        self,
        camera_to_grid: np.ndarray,
        K: np.ndarray | None = None,
        depth: np.ndarray | None = None,
        points: np.ndarray | None = None,
        image_hw: tuple[int, int] | None = None,
    ) -> np.ndarray | torch.Tensor:
        """The geometry cue of one camera frame as (N, 3) float32 points in the grid frame.

        `depth` (H, W) metres registered to the camera image (back-projected with the image's
        own K, before any fitting, through `camera_to_grid`) or `points` (N, >=3) already in the
        grid frame, or neither (an empty cloud; an error for variants with geometry guidance).
        Not yet cropped to the grid: `prepare_batch` crops the merged cloud once. On a CUDA
        predictor the back-projection runs on the device (a tensor comes back).
        """
        if points is not None and depth is not None:
            raise ValueError("give either points or depth, not both")
        if points is None and depth is None:
            if self.cfg.model.guidance:
                raise ValueError(f"{self.cfg.name} (guidance enabled) needs points (N, 3) or a depth map (H, W)")
            return np.zeros((0, 3), np.float32)
        on_host = self.device.type == "cpu"  # NumPy there (faster than CPU torch), else torch on the device
        if isinstance(depth, torch.Tensor):  # stereo depth made on the device stays there
            depth = depth.detach().cpu().numpy() if on_host else depth.to(self.device, torch.float32)
        if depth is not None:
            depth = depth if isinstance(depth, torch.Tensor) else np.asarray(depth)
            if depth.ndim != 2 or (image_hw is not None and depth.shape != tuple(image_hw)):
                raise ValueError(
                    f"depth: expected an (H, W) map of frame 0's image size {tuple(image_hw or ())}, got {depth.shape}"
                )
            if not on_host and not isinstance(depth, torch.Tensor):
                depth = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)).to(self.device)
            return depth_to_points(depth, K, camera_to_grid)
        arr = np.asarray(points)
        if arr.ndim != 2 or arr.shape[1] < 3 or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"points: expected an (N, 3) array of LiDAR-frame metres, got {arr.dtype} {arr.shape}")
        pts = np.ascontiguousarray(arr[:, :3], dtype=np.float32)
        if np.isfinite(pts).all():  # the usual case: one flat test, no per-row reduction, no copy
            return pts
        return pts[np.isfinite(pts).all(axis=1)]

    def tables(
        self, intrinsics: Sequence[np.ndarray], lidar_to_cam: Sequence[np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """FLoSP tables (1, F, N) of these cameras, made once per camera geometry (float64, then
        cast by the projection) and kept on the device: a fixed camera projects once."""
        key = b"".join(np.asarray(a, dtype=np.float64).tobytes() for a in (*intrinsics, *lidar_to_cam))
        hit = self._tables.get(key)
        if hit is None:
            index, visible = network_tables(
                self.grid, self.cfg.model.feature_stride, np.stack(intrinsics), np.stack(lidar_to_cam),
                self.cfg.data.image_size, self.device,
            )
            hit = (index[None], visible[None])
            self._tables[key] = hit
            while len(self._tables) > TABLE_CACHE_SIZE:
                self._tables.pop(next(iter(self._tables)))
        return hit

    @contextlib.contextmanager
    def preparing(self) -> Iterator[None]:
        """Context for a pipelined caller's camera-input work (stereo matching, depth -> points,
        `prepare_batch`): on CUDA it runs on the predictor's own side stream, so that the GPU
        overlaps it with the network of the previous frame on the default stream (one stream
        would run them one after the other, and the network's data-dependent waits would wait
        for the next frame's stereo too). The batch made inside carries an event (`SSCBatch.ready`)
        that `infer` waits for on its stream. On the CPU it does nothing. Per thread: torch's
        current stream is the calling thread's.
        """
        if self.device.type != "cuda":
            yield
            return
        if self._side_stream is None:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))  # the weights' uploads, warm-up
            self._side_stream = side
        with torch.cuda.stream(self._side_stream):
            yield

    def synchronize(self) -> None:
        """Wait for all of this predictor's GPU work, the side stream's included: call it before
        dropping the predictor, so that no stream still reads memory (weights, cached tables) that
        the caching allocator could then hand out again. Nothing to wait for on the CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def prepare_batch(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        intrinsics: np.ndarray | Sequence[np.ndarray],
        lidar_to_cam: np.ndarray | Sequence[np.ndarray],
        points: np.ndarray | torch.Tensor | None = None,
        depth: np.ndarray | None = None,
        mode: str = "auto",
        stereo: StereoPair | tuple[np.ndarray, float] | None = None,
    ) -> SSCBatch:
        """Camera input -> a one-sample `SSCBatch` on the predictor's device: the ONE place where
        images are fitted to the network (`mode`, see `fit_camera`), depth becomes points, points
        are cropped to the grid and the FLoSP projection tables are attached.

        A single image for a temporal variant stands in for every frame (as the reference does
        where neighbours are missing); several images need one lidar_to_cam per image. `points`
        are grid-frame points of all frames (N, 3); `depth` is frame 0's depth map; `stereo`
        frame 0's right image and baseline, matched by `stereo_method` (see `stereo_depth`).
        """
        imgs = [np.asarray(i) for i in images] if isinstance(images, (list, tuple)) else [np.asarray(images)]
        for i, im in enumerate(imgs):
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"images[{i}]: expected a uint8 RGB image (H, W, 3), got {im.dtype} {im.shape}")
        f = self.num_frames
        if len(imgs) not in (1, f):
            raise ValueError(f"images: {self.cfg.name} takes 1 or {f} frame(s), got {len(imgs)}")
        ks = [check_intrinsics(k, f"intrinsics[{i}]", imgs[min(i, len(imgs) - 1)].shape[:2])
              for i, k in enumerate(_frames(intrinsics, "intrinsics", (3, 3)))]
        ts = [check_transform(t, f"lidar_to_cam[{i}]")
              for i, t in enumerate(_frames(lidar_to_cam, "lidar_to_cam", (4, 4)))]
        if len(ks) == 1:
            ks = ks * len(imgs)
        if len(ts) == 1 and len(imgs) == 1:
            ts = ts * len(imgs)
        if len(ks) != len(imgs) or len(ts) != len(imgs):
            raise ValueError(
                f"got {len(imgs)} image(s), {len(ks)} intrinsics and {len(ts)} lidar_to_cam: give one per image "
                "(one intrinsics matrix may serve all)"
            )
        if stereo is not None:
            if points is not None or depth is not None:
                raise ValueError("give one geometry cue: points, depth or stereo")
            depth = self.stereo_depth(imgs[0], ks[0], stereo)
        pts = points
        if not isinstance(points, torch.Tensor):
            pts = self.camera_points(invert_transform(ts[0]), ks[0], depth, points, imgs[0].shape[:2])
        if len(imgs) == 1 and f > 1:
            imgs, ks, ts = imgs * f, ks * f, ts * f

        in_grid = self._crop(pts)
        self.check_depth(int(in_grid.shape[0]), None if depth is None else int(np.asarray(depth).size))
        images_net, fitted_ks = self._network_images(imgs, ks, mode)
        gather_index, fov_mask = self.tables(fitted_ks, ts)
        batch = SSCBatch(
            images=images_net[None],
            intrinsics=torch.from_numpy(np.stack(fitted_ks)[None].astype(np.float32)),
            lidar_to_cam=torch.from_numpy(np.stack(ts)[None].astype(np.float32)),
            points=[in_grid],
            gather_index=gather_index,
            fov_mask=fov_mask,
        )
        batch = batch.to(self.device)
        if self.device.type == "cuda":  # readiness for a consumer on another stream (see `preparing`)
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(self.device))
            batch = replace(batch, ready=ready)
        return batch

    def _network_images(
        self, imgs: list[np.ndarray], ks: list[np.ndarray], mode: str
    ) -> tuple[torch.Tensor, list[np.ndarray]]:
        """(F, 3, H', W') normalised images on the device and their K. The uint8 pixels are
        cropped / resized (on the host for a CPU predictor; uploaded first and fitted on the
        device otherwise), normalised on the device, then padded with 0 = the mean colour (a
        top-left crop / pad keeps K); a repeated image is converted once."""
        h, w = self.cfg.data.image_size
        mean, std = self.cfg.data.image_mean, self.cfg.data.image_std
        out = torch.empty((len(imgs), 3, h, w), dtype=torch.float32, device=self.device)
        done: dict[int, tuple[int, np.ndarray]] = {}  # id(image) -> (its slot in out, its K)
        fitted_ks = []
        for i, (im, k) in enumerate(zip(imgs, ks)):
            if id(im) in done:
                out[i].copy_(out[done[id(im)][0]])
            else:
                if self.device.type == "cpu":
                    fitted, k_net = self.fit_camera(im, k, mode)
                    pixels = fitted  # a crop stays a view: normalize_image reads it with its strides
                else:
                    upload = torch.from_numpy(np.ascontiguousarray(im)).to(self.device, non_blocking=True)
                    pixels, k_net = self.fit_camera(upload, k, mode)
                normalize_image(pixels, mean, std, out=out[i])
                done[id(im)] = (i, k_net)
            fitted_ks.append(done[id(im)][1])
        return out, fitted_ks

    def _crop(self, pts: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Grid-frame points -> the (N, 3) float32 tensor of those inside the grid volume."""
        if isinstance(pts, torch.Tensor):
            pts = pts.to(self.device)
            return pts[points_in_grid(pts, self.grid)]
        if self.device.type != "cpu":
            pts = torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32)).to(self.device)
            return pts[points_in_grid(pts, self.grid)]
        return torch.from_numpy(np.ascontiguousarray(pts[points_in_grid(pts, self.grid)]))

    @torch.inference_mode()
    def stereo_depth(
        self, left: np.ndarray, K: np.ndarray, stereo: StereoPair | tuple[np.ndarray, float]
    ) -> np.ndarray | torch.Tensor:
        """Metric depth (H, W) of the left image from its rectified pair, by this predictor's
        stereo_method: NumPy for sgbm, a tensor on the device for sgm / msnet3d (0 = no match)."""
        pair = as_stereo_pair(stereo)
        return self.stereo.depth(np.asarray(left), pair, float(check_intrinsics(K, "K")[0, 0]))

    # ----------------------------------------------------------------- inference
    @torch.inference_mode()
    def predict(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        intrinsics: np.ndarray | Sequence[np.ndarray],
        lidar_to_cam: np.ndarray | Sequence[np.ndarray],
        points: np.ndarray | torch.Tensor | None = None,
        depth: np.ndarray | None = None,
        mode: str = "auto",
        stereo: StereoPair | tuple[np.ndarray, float] | None = None,
    ) -> SSCPrediction:
        """Complete the scene of the current frame (frame 0).

        Args:
            images: uint8 RGB (H, W, 3), or a list: current frame first, then the temporal frames
                in config order (SGN-T: -12, -9, -6, -3).
            intrinsics: K (3, 3) of the given images (one for all, or one per image).
            lidar_to_cam: (4, 4) current LiDAR frame -> camera (one per image when several).
            points: (N, 3) LiDAR-frame points, metres; or
            depth: (H, W) metric depth of frame 0's image (back-projected to pseudo-LiDAR).
            mode: fitting of images to the network input, ``auto`` / ``crop`` / ``fit`` / ``resize``
                (`fit_camera`).
            stereo: frame 0's rectified right image and the baseline (metres), a `StereoPair` or a
                (right, baseline_m) tuple: depth by stereo_method, then pseudo-LiDAR, on the device.

        Raises:
            ValueError: bad inputs; "no usable depth: ..." when the points / depth leave too little
                in the grid (`check_depth`) and the predictor does not `allow_image_only`.

        Returns:
            `SSCPrediction` with labels uint8 and confidence float32, both cfg.grid.dims.
        """
        return self.infer(self.prepare_batch(images, intrinsics, lidar_to_cam, points, depth, mode, stereo))

    @torch.inference_mode()
    def infer(self, batch: SSCBatch) -> SSCPrediction:
        """The network part of `predict` on a batch from `prepare_batch`: a pipelined caller
        prepares frame t+1 (stereo, points, crop) while this runs frame t (on CUDA inside
        `preparing`: this stream then waits for the batch's `ready` event, and its tensors are
        marked as used here, so that the caching allocator does not hand their memory to the
        side stream while the network still reads it)."""
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        if batch.ready is not None:
            stream.wait_event(batch.ready)
            for t in batch.tensors():
                if t.is_cuda:
                    t.record_stream(stream)
        if self._network_thread is None:
            return self._network(batch, stream)
        return self._network_thread.submit(self._network, batch, stream).result()

    @torch.inference_mode()
    def _network(self, batch: SSCBatch, stream: torch.cuda.Stream | None) -> SSCPrediction:
        """The network and its read-out (softmax, argmax, copy to the host), on the caller's CUDA
        stream: on the predictor's network thread too, so that a CUDA graph's outputs, which its
        next replay overwrites, are read before that thread can replay it again."""
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.fp16):
                out = self.model(batch)
            logits = out["ssc_logits"][0].float()  # (C, X, Y, Z)
            conf, labels = torch.softmax(logits, dim=0).max(dim=0)
            return SSCPrediction(
                labels=labels.to(torch.uint8).cpu().numpy(),
                confidence=conf.cpu().numpy().astype(np.float32, copy=False),
                grid=self.grid,
            )

    def warmup(self, stereo: bool = True) -> float:
        """Run one dummy frame (network-size image, points spread over the grid; with `stereo` and
        a device matcher also one stereo match) so that the first real frame does not pay for
        lazy initialisation: CUDA context and kernels, cuDNN / spconv algorithm choice,
        torch.compile (`WARMUP_CALLS` network calls with `compile_dense`). The node calls it
        before it reports ready. Returns the seconds it took.

        Raises:
            RuntimeError: torch.compile failed (`compile_dense`; e.g. no C++ compiler for the
                CPU, no Triton for CUDA), naming the option to turn off.
        """
        import time

        t0 = time.perf_counter()
        h, w = self.cfg.data.image_size
        image = np.full((h, w, 3), 127, np.uint8)
        K = np.array([[float(max(h, w)), 0.0, w / 2], [0.0, float(max(h, w)), h / 2], [0.0, 0.0, 1.0]])
        lidar_to_cam = np.eye(4)
        lidar_to_cam[:3, :3] = [[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]  # x forward -> z
        rng = np.random.default_rng(0)
        extent = np.asarray(self.grid.dims, np.float64) * self.grid.voxel_size
        points = (np.asarray(self.grid.origin) + rng.random((4096, 3)) * extent).astype(np.float32)
        with torch.inference_mode():  # as in `predict`
            batch = self.prepare_batch(image, K, lidar_to_cam, points=points)
        for _ in range(WARMUP_CALLS[self.compile_dense]):
            try:
                self.infer(batch)
            except Exception as e:
                if self.compile_dense is None:
                    raise
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise RuntimeError(f"compile_dense={self.compile_dense!r}: torch.compile of the dense parts failed "
                                   f"({type(e).__name__}: {first[:300]}); run without compile_dense") from e
        if stereo and self.stereo.method != "sgbm":
            self.stereo_depth(image, K, StereoPair(image, 0.5))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0
