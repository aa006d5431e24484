# Training checkpoints: everything needed to continue a run exactly where it stopped.
#
# A training checkpoint is a model checkpoint in sgn_ros's own format (the dict that
# `sgn_ros.model.checkpoint` reads: format tag, `model` with our parameter names, `config`) plus a
# `training` entry with optimiser, scheduler, grad-scaler, counters, the sampler position and the
# random-number-generator states of every rank. So `sgn-ros evaluate --checkpoint`, the predictor
# and the ROS node read the trainer's files directly.
#
# Files in the work directory (mmcv's names, 1-based epochs):
#   epoch_<E>.pth   after every epoch (all kept, as the reference)
#   iter_<I>.pth    every K iterations if train.checkpoint_interval_iters = K (only the newest kept)
#   best.pth        a copy of the checkpoint with the best validation mIoU so far
#   latest.pth      symbolic link to the newest of the above (a copy where links are impossible)
# Every write is atomic: a temporary file in the same directory, flushed and fsync'ed, then
# os.replace'd over the final name, then the directory fsync'ed. A run killed at any moment leaves
# either the old or the new file, never a truncated one.
"""Atomic save / load of training state, RNG capture and restore, the latest/best bookkeeping."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sgn_ros.errors import CheckpointError
from sgn_ros.fileio import atomic_path, fsync_dir
from sgn_ros.model.checkpoint import CHECKPOINT_FORMAT  # our model-checkpoint format tag

LATEST_NAME = "latest.pth"
BEST_NAME = "best.pth"


# --------------------------------------------------------------------------- atomic file writes
def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """`torch.save(obj)` to `path` atomically: tmp file in the same dir, fsync, os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=True, sync_dir=True) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    return path


def atomic_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy a file atomically (tmp file beside `dst`, fsync, os.replace)."""
    src, dst = Path(src), Path(dst)
    with atomic_path(dst, fsync=True, sync_dir=True) as tmp:
        with open(tmp, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, length=16 << 20)
    return dst


def point_latest(work_dir: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Make ``work_dir/latest.pth`` refer to `target` (a file in work_dir), atomically.

    A relative symbolic link (so the work directory can be moved); where links cannot be made,
    an atomic copy.
    """
    work_dir = Path(work_dir)
    link = work_dir / LATEST_NAME
    target = Path(target)
    # A symlink, not a written file, so not `atomic_path` (which yields a regular file); the
    # temporary follows the same ``.<name>.*.tmp`` naming that `remove_stale_temporaries` sweeps.
    tmp = work_dir / f".{LATEST_NAME}.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target.name, tmp)
        os.replace(tmp, link)
        fsync_dir(work_dir)
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
        if link.is_symlink():
            link.unlink()
        atomic_copy(target, link)
    return link


# --------------------------------------------------------------------------- RNG states
def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch CPU, every CUDA device), weights_only-safe.

    NumPy's state is stored as plain ints/lists (not an ndarray) so that the checkpoint loads
    with ``torch.load(weights_only=True)``.
    """
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002  the global stream is what others draw from
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def gather_rng_states(info: Any) -> list[dict[str, Any]]:
    """Collective under torchrun: every rank's `capture_rng_state()`, in rank order (`info`: a
    `sgn_ros.distributed.DistInfo`); a single process gets a one-element list."""
    rng = [capture_rng_state()]
    if info.distributed:
        import torch.distributed as dist

        gathered: list[Any] = [None] * info.world_size
        dist.all_gather_object(gathered, rng[0])
        rng = gathered
    return rng


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002  restores the global stream
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
            "has_gauss": int(n["has_gauss"]),
            "gauss": float(n["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            raise ValueError(
                f"checkpoint holds CUDA RNG states of {len(cuda_states)} device(s), "
                f"this process sees {torch.cuda.device_count()}"
            )
        torch.cuda.set_rng_state_all(cuda_states)


# --------------------------------------------------------------------------- training checkpoints
def build_training_checkpoint(
    model_state: dict[str, torch.Tensor],
    config: dict[str, Any],
    training: dict[str, Any],
) -> dict[str, Any]:
    """The dict written to disk: sgn_ros model-checkpoint format + a `training` entry.

    `training` holds: optimizer, scheduler, scaler (or None), epoch (next epoch to run, 0-based),
    step_in_epoch (optimiser steps already done in that epoch = samples of this rank's share
    consumed / batch size), iteration (global optimiser steps done), sampler_seed, world_size,
    rng (list: one `capture_rng_state()` per rank), best_metric, best_epoch.
    """
    model_state = {k: v.detach().cpu() for k, v in model_state.items()}
    return {"format": CHECKPOINT_FORMAT, "model": model_state, "config": config, "training": training}


#: Entries of `training` a resume needs, and the type each must have.
_TRAINING_KEYS: dict[str, type | tuple[type, ...]] = {
    "optimizer": dict, "scheduler": dict, "epoch": int, "step_in_epoch": int, "iteration": int,
}


def load_training_checkpoint(path: str | os.PathLike[str], allow_unsafe: bool = False) -> dict[str, Any]:
    """Read a training checkpoint written by `atomic_torch_save(build_training_checkpoint(...))`.

    Raises:
        FileNotFoundError: `path` (or the file latest.pth points to) does not exist.
        CheckpointError (a ValueError): the file is empty, truncated, not an sgn_ros checkpoint,
            a model-only checkpoint, or its training state lacks (or has a malformed) optimizer,
            scheduler or counters - named with the path.
    """
    from sgn_ros.model.checkpoint import read_checkpoint

    path = Path(path)
    ckpt = read_checkpoint(path, allow_unsafe=allow_unsafe)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"not an sgn_ros training checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if "training" not in ckpt:
        raise CheckpointError(
            path,
            "a model-only checkpoint (no 'training' state) cannot be resumed; fine-tune from it with "
            f"train.load_from={path} (--override train.load_from=...) or score it with sgn-ros evaluate",
        )
    tr = ckpt["training"]
    if not isinstance(tr, dict):
        raise CheckpointError(path, f"'training' must be a dict, got {type(tr).__name__}")
    missing = [k for k in _TRAINING_KEYS if k not in tr]
    if missing:
        raise CheckpointError(path, f"training checkpoint lacks {', '.join(missing)}: cannot resume")
    bad = [
        f"{k} ({type(tr[k]).__name__}, expected {_TRAINING_KEYS[k].__name__})"
        for k in _TRAINING_KEYS
        if not isinstance(tr[k], _TRAINING_KEYS[k]) or isinstance(tr[k], bool)
    ]
    bad += [f"{k} = {tr[k]} (negative)" for k in ("epoch", "step_in_epoch", "iteration")
            if isinstance(tr[k], int) and tr[k] < 0]
    opt = tr["optimizer"]
    if isinstance(opt, dict) and not (isinstance(opt.get("state"), dict) and isinstance(opt.get("param_groups"), list)):
        bad.append("optimizer (needs 'state' and 'param_groups')")
    if bad:
        raise CheckpointError(path, f"malformed training state: {'; '.join(bad)}")
    return ckpt


def check_optimizer_state(state: dict[str, Any], optimizer: torch.optim.Optimizer, where: Any) -> None:
    """Check a saved optimiser state against `optimizer`'s parameters before it is loaded.

    torch's load_state_dict accepts moment tensors of the wrong shape; the first step would then
    fail deep inside AdamW. Here the number of groups and parameters, and every per-parameter
    tensor's shape, must match.

    Raises:
        CheckpointError: naming the file and every mismatch.
    """
    groups = optimizer.param_groups
    saved = state.get("param_groups", [])
    if len(saved) != len(groups):
        raise CheckpointError(where, f"optimizer has {len(saved)} parameter group(s), this model {len(groups)}")
    problems = []
    params = []
    for g_saved, g in zip(saved, groups):
        ids = g_saved.get("params", [])
        if len(ids) != len(g["params"]):
            problems.append(f"group of {len(ids)} parameters in the file, {len(g['params'])} in this model")
            continue
        params.extend(zip(ids, g["params"]))
    for pid, p in params:
        entry = state.get("state", {}).get(pid, state.get("state", {}).get(str(pid)))
        if not isinstance(entry, dict):
            continue  # no step taken for this parameter yet
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and tuple(value.shape) != tuple(p.shape):
                problems.append(f"param {pid} {key}: file {tuple(value.shape)} vs model {tuple(p.shape)}")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... ({len(problems) - 10} more)" if len(problems) > 10 else "")
        raise CheckpointError(where, f"optimizer state does not match the model: {shown}")


class CheckpointManager:
    """Names, writes and prunes the checkpoints of one work directory (rank 0 only writes).

    Args:
        work_dir: directory of the run.
        keep_iter_checkpoints: how many iteration checkpoints to keep (newest first).
    """

    def __init__(self, work_dir: str | os.PathLike[str], keep_iter_checkpoints: int = 1) -> None:
        self.work_dir = Path(work_dir)
        self.keep_iter_checkpoints = max(1, int(keep_iter_checkpoints))

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete ``.*.tmp`` files a killed run left behind (a write that never reached os.replace)."""
        stale = [p for p in self.work_dir.glob(".*.tmp") if p.is_file() or p.is_symlink()]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def epoch_path(self, epoch_1based: int) -> Path:
        return self.work_dir / f"epoch_{epoch_1based}.pth"

    def iter_path(self, iteration: int) -> Path:
        return self.work_dir / f"iter_{iteration}.pth"

    @property
    def best_path(self) -> Path:
        return self.work_dir / BEST_NAME

    @property
    def latest_path(self) -> Path:
        return self.work_dir / LATEST_NAME

    def save(self, ckpt: dict[str, Any], path: Path, is_best: bool = False) -> Path:
        """Write `ckpt` to `path`, point latest.pth at it, copy it to best.pth when `is_best`."""
        atomic_torch_save(ckpt, path)
        point_latest(self.work_dir, path)
        if is_best:
            atomic_copy(path, self.best_path)
        if path.name.startswith("iter_"):
            self._prune_iter_checkpoints(keep=path)
        return path

    def _prune_iter_checkpoints(self, keep: Path) -> None:
        def it(p: Path) -> int:
            try:
                return int(p.stem.split("_", 1)[1])
            except (IndexError, ValueError):
                return -1

        olds = sorted((p for p in self.work_dir.glob("iter_*.pth") if p != keep), key=it, reverse=True)
        for p in olds[self.keep_iter_checkpoints - 1 :]:
            p.unlink(missing_ok=True)

    def newest_checkpoint(self) -> Path | None:
        """The most recently written epoch_*/iter_* file (each write is atomic, so any of them is
        complete), or None."""
        files = [p for pattern in ("epoch_*.pth", "iter_*.pth") for p in self.work_dir.glob(pattern) if p.is_file()]
        return max(files, key=lambda p: p.stat().st_mtime_ns, default=None)

    def resolve_resume(self, resume: str | os.PathLike[str] | None) -> Path:
        """The file to resume from: `resume` itself, or, when it is empty/None, what latest.pth
        points to. A run killed after writing a checkpoint but before pointing latest.pth at it
        (`save` does the two in that order) resumes from that newer checkpoint, and a run killed
        so at its very first checkpoint (no latest.pth yet) from that one."""
        if resume:
            p = Path(resume)
            if not p.exists():
                raise FileNotFoundError(f"--resume: checkpoint not found: {p}")
            return p
        newest = self.newest_checkpoint()
        if self.latest_path.exists():
            target = self.latest_path.resolve()
            if newest is not None and newest.stat().st_mtime_ns > target.stat().st_mtime_ns:
                return newest
            return target
        if newest is not None:
            return newest
        raise FileNotFoundError(f"--resume: no {LATEST_NAME} or checkpoint in work dir {self.work_dir} "
                                "(nothing to resume)")
