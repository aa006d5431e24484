# Multi-process plumbing for training and evaluation: one process per device, launched by
# torchrun (RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT in the environment) or run
# as a single plain process. NCCL on GPUs, gloo on CPUs. Only rank 0 logs, draws progress bars,
# writes checkpoints and TensorBoard events.
"""torch.distributed set-up, a resumable distributed sampler, DDP wrapping and reductions."""

from __future__ import annotations

import datetime
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: no process group (single process)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def init_distributed(device: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Initialise from torchrun's environment, or describe a single process.

    Args:
        device: ``"cuda"``, ``"cuda:N"`` (one process only), ``"cpu"`` or None (CUDA when
            available); see `sgn_ros.runtime.resolve_device`. ``"cuda"`` takes ``cuda:LOCAL_RANK``.
        timeout_s: collective timeout (seconds) of the process group.

    Returns:
        DistInfo; with WORLD_SIZE > 1 the default process group is initialised (NCCL for CUDA,
        gloo for CPU) unless it already was.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world_size})")
    from sgn_ros.runtime import resolve_device  # runtime imports DistInfo from here

    dev = resolve_device(device, local_rank=local_rank, world_size=world_size)
    want_cuda = dev.type == "cuda"
    if want_cuda:
        torch.cuda.set_device(dev)
    backend = None
    if world_size > 1:
        backend = "nccl" if want_cuda else "gloo"
        if not dist.is_initialized():
            kwargs = {"device_id": dev} if want_cuda else {}
            dist.init_process_group(
                backend=backend,
                rank=rank,
                world_size=world_size,
                timeout=datetime.timedelta(seconds=timeout_s),
                **kwargs,
            )
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, backend=backend)


def cleanup_distributed() -> None:
    """Destroy the process group if this process made one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for all ranks (no-op in a single process)."""
    if info.distributed:
        if info.backend == "nccl":
            dist.barrier(device_ids=[info.local_rank])
        else:
            dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum `tensor` over ranks in place (no-op in a single process) and return it."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def reduce_mean_dict(values: dict[str, torch.Tensor], info: DistInfo) -> dict[str, float]:
    """Mean of scalar tensors over ranks (for logging loss terms), as Python floats.

    One all-reduce of a stacked vector; the single host round-trip is here, outside the network.
    """
    if not values:
        return {}
    keys = sorted(values)
    vec = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    if info.distributed:
        dist.all_reduce(vec, op=dist.ReduceOp.SUM)
        vec = vec / info.world_size
    return dict(zip(keys, vec.cpu().tolist()))


def broadcast_object(obj: object, info: DistInfo, src: int = 0) -> object:
    """Rank `src`'s Python object on every rank (e.g. a decision taken on rank 0)."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler that can start part-way through an epoch.

    The order of an epoch is a pure function of (seed, epoch) exactly as in
    `torch.utils.data.DistributedSampler` (shuffle with a generator seeded ``seed + epoch``, pad to a
    multiple of the world size, take every ``world_size``-th index from ``rank``). After
    ``set_start(k)`` the next iteration skips the first ``k`` indices of this rank's share, so a run
    resumed from a mid-epoch checkpoint sees the remaining samples of that epoch in the same
    order as the interrupted run would have. The skip applies to one epoch: `set_epoch` clears it.

    Works without a process group when `num_replicas` and `rank` are given (single process: 1, 0).
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start_index = 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.start_index = 0

    def set_start(self, index: int) -> None:
        """Skip the first `index` samples of this rank's share in the current epoch."""
        if not 0 <= index <= self.num_samples:
            raise ValueError(f"sampler start index {index} outside 0..{self.num_samples}")
        self.start_index = int(index)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start_index, None)

    def __len__(self) -> int:
        return self.num_samples - self.start_index


def wrap_ddp(model: nn.Module, info: DistInfo, find_unused_parameters: bool) -> nn.Module:
    """DistributedDataParallel around `model` when there are several ranks, else `model` itself.

    `find_unused_parameters` must be True when some trainable parameter can miss a gradient in an
    iteration (see `sgn_ros.training.trainer.needs_unused_parameter_search`).
    """
    if not info.distributed:
        return model
    kwargs = {"device_ids": [info.local_rank], "output_device": info.local_rank} if info.device.type == "cuda" else {}
    # broadcast_buffers=True (torch's default): rank 0's BatchNorm running statistics are copied to
    # the other ranks at every forward. Rank 0 then evolves exactly as with the reference's
    # broadcast_buffers=False (it only ever receives its own buffers), and every rank holds
    # identical buffers, as mmcv's evaluation hook enforces by broadcasting BN buffers before eval.
    return nn.parallel.DistributedDataParallel(
        model, find_unused_parameters=find_unused_parameters, broadcast_buffers=True, **kwargs
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class ShardSampler(torch.utils.data.Sampler[int]):
    """Evaluation sharding without padding: rank r takes samples r, r + W, r + 2W, ...

    Unlike DistributedSampler nothing is duplicated, so a confusion matrix summed over ranks
    counts every sample exactly once (ranks may get one sample more or less than others; the
    network evaluation runs without collectives inside the loop, so that is fine).
    """

    def __init__(self, num_samples: int, num_replicas: int = 1, rank: int = 0, limit: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"ShardSampler: rank {rank} outside 0..{num_replicas - 1}")
        n = num_samples if limit <= 0 else min(num_samples, limit)
        self.indices = list(range(rank, n, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def broadcast_buffers(model: nn.Module, info: DistInfo, src: int = 0) -> None:
    """Copy rank `src`'s buffers (BatchNorm running statistics) to every rank, in place.

    DDP broadcasts buffers at the start of each forward, so after the last forward of an epoch
    every rank holds statistics updated by its own batch. As mmcv's distributed evaluation hook
    (broadcast_bn_buffer=True) does before evaluating, the trainer calls this at each epoch end so
    that evaluation and checkpoints see the same model on every rank.
    """
    if not info.distributed:
        return
    for buf in model.buffers():
        dist.broadcast(buf, src)
