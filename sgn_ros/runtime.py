# Run-time helpers shared by training and network evaluation (and usable by any tool): the
# "sgn_ros" logger set-up, mixed-precision choice, seeding and the mapping of a --device option to
# the torch.device a process uses. They lived in training/trainer.py, which made evaluation import
# training; here they sit below both. `recorded_ops` lists the torch operations a call dispatches
# (what a GPU would launch, or wait for), for the benches and tests that count them.
"""`setup_logging`, `resolve_amp`, `autocast_context`, `seed_everything`, `resolve_device`,
`recorded_ops`."""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # distributed.init_distributed uses resolve_device: no run-time import back
    from sgn_ros.distributed import DistInfo

__all__ = [
    "setup_logging", "close_file_logging", "resolve_amp", "autocast_context", "seed_everything", "resolve_device",
    "recorded_ops", "NO_LAUNCH",
]

log = logging.getLogger("sgn_ros.runtime")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002  the global stream datasets/libraries draw from
    torch.manual_seed(seed)


class _RankFilter(logging.Filter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        return True


def setup_logging(work_dir: Path | None, info: DistInfo, filename: str = "train.log") -> logging.Logger:
    """Logger "sgn_ros": rank 0 logs INFO to stderr and `work_dir/filename`; others WARNING only.

    Handlers added by an earlier call in the same process are replaced, not duplicated.
    """
    root = logging.getLogger("sgn_ros")
    for h in list(root.handlers):
        if getattr(h, "_sgn_ros_handler", False):
            root.removeHandler(h)
            h.close()
    fmt = logging.Formatter("%(asctime)s [rank %(rank)d] %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if info.is_main and work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(work_dir / filename, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(_RankFilter(info.rank))
        h._sgn_ros_handler = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(logging.INFO if info.is_main else logging.WARNING)
    root.propagate = False
    return root


def close_file_logging() -> None:
    """Detach and close the file handlers `setup_logging` added (so a failed run's log can go)."""
    root = logging.getLogger("sgn_ros")
    for h in list(root.handlers):
        if getattr(h, "_sgn_ros_handler", False) and isinstance(h, logging.FileHandler):
            root.removeHandler(h)
            h.close()


def resolve_amp(requested: bool, device: torch.device) -> bool:
    """Mixed precision only on CUDA (float16 autocast + GradScaler; the model keeps its sparse
    blocks in float32 there).

    On the CPU it is disabled with a warning and the run uses float32: bfloat16 autocast fails
    inside spconv (no bfloat16 kernels, ``KeyError: torch.bfloat16``), and float16 has no fast CPU
    kernels, so neither saves time or memory there.
    """
    if requested and device.type != "cuda":
        log.warning("--amp / fp16 asked for on %s: mixed precision is CUDA-only here; running in float32", device)
        return False
    return bool(requested)


def autocast_context(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """float16 autocast on `device` when `enabled`, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)


def resolve_device(
    device: str | torch.device | None,
    local_rank: int = 0,
    world_size: int = 1,
    cuda_available: bool | None = None,
    cuda_count: int | None = None,
) -> torch.device:
    """The device of this process for a --device option (pure: CUDA facts may be passed in).

    None: CUDA when available (``cuda:LOCAL_RANK``), else the CPU. ``cpu``: the CPU. ``cuda``:
    ``cuda:LOCAL_RANK``. ``cuda:N``: device N in a single process; under torchrun (WORLD_SIZE > 1)
    an explicit index is refused, because every rank would take the same device (torchrun gives
    each rank its own, by LOCAL_RANK; choose devices with CUDA_VISIBLE_DEVICES).

    Raises:
        ValueError: unparsable device, CUDA asked for but absent, index beyond the visible devices.
    """
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if device is None:
        if not available:
            return torch.device("cpu")
        device = "cuda"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"--device: cannot parse {device!r} ({e})") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if not available:
        raise ValueError(f"device={str(device)!r} was asked for but CUDA is not available")
    count = (torch.cuda.device_count() if cuda_count is None else cuda_count) if available else 0
    if dev.index is not None:
        if world_size > 1:
            raise ValueError(
                f"--device {device!r}: an explicit CUDA index cannot be used under torchrun (WORLD_SIZE="
                f"{world_size}); each rank uses cuda:LOCAL_RANK - select GPUs with CUDA_VISIBLE_DEVICES"
            )
        index = dev.index
    else:
        index = local_rank
    if index >= count:
        raise ValueError(f"--device {device!r}: CUDA device {index} asked for, {count} visible")
    return torch.device("cuda", index)


#: torch operations that only make views or allocate: on a GPU they launch no kernel
NO_LAUNCH = frozenset({
    "select", "slice", "view", "expand", "unsqueeze", "permute", "as_strided", "t", "transpose", "alias", "unfold",
    "detach", "_unsafe_view", "squeeze", "lift_fresh", "set_", "new_empty", "empty", "empty_like",
})


@contextlib.contextmanager
def recorded_ops() -> Iterator[list[tuple[str, dict]]]:
    """Every torch (aten) operation dispatched inside the block, in order, as (name, kwargs),
    recorded through a dispatch mode, so on any device: a CPU run counts what a GPU would launch
    (those not in `NO_LAUNCH`, a few µs of launch overhead each there) or wait for (an operation
    that sizes its output from device data). Python-side copies such as .cpu() / .item() on a
    CPU tensor do not reach the dispatcher."""
    from torch.utils._python_dispatch import TorchDispatchMode

    ops: list[tuple[str, dict]] = []

    class _Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            ops.append((func.overloadpacket.__name__, kwargs))
            return func(*args, **kwargs)

    with _Record():
        yield ops
