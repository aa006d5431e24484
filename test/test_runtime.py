"""Tests of sgn_ros.runtime: the --device mapping (without CUDA: the CUDA facts are passed in)."""

from __future__ import annotations

import pytest
import torch

from sgn_ros.distributed import init_distributed
from sgn_ros.runtime import resolve_amp, resolve_device


def test_explicit_cuda_index_is_honoured_in_one_process() -> None:
    # regression: `sgn-ros evaluate --device cuda:1` ran on cuda:0 (the index was dropped for LOCAL_RANK)
    dev = resolve_device("cuda:1", local_rank=0, world_size=1, cuda_available=True, cuda_count=2)
    assert dev == torch.device("cuda", 1)


def test_plain_cuda_takes_the_local_rank() -> None:
    assert resolve_device("cuda", local_rank=1, world_size=2, cuda_available=True, cuda_count=2) == torch.device(
        "cuda", 1
    )
    assert resolve_device(None, local_rank=0, cuda_available=True, cuda_count=1) == torch.device("cuda", 0)
    assert resolve_device(None, cuda_available=False) == torch.device("cpu")
    assert resolve_device("cpu", cuda_available=True, cuda_count=4) == torch.device("cpu")


def test_device_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="under torchrun"):
        resolve_device("cuda:1", local_rank=0, world_size=2, cuda_available=True, cuda_count=2)
    with pytest.raises(ValueError, match="CUDA device 3 asked for, 2 visible"):
        resolve_device("cuda:3", cuda_available=True, cuda_count=2)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:1", cuda_available=False)
    with pytest.raises(ValueError, match="cannot parse"):
        resolve_device("gpu-one", cuda_available=True, cuda_count=1)
    with pytest.raises(ValueError, match="expected cpu, cuda"):
        resolve_device("meta", cuda_available=True, cuda_count=1)


def test_init_distributed_uses_the_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert init_distributed("cpu").device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            init_distributed("cuda:1")


def test_amp_is_cuda_only() -> None:
    assert resolve_amp(True, torch.device("cpu")) is False
    assert resolve_amp(False, torch.device("cpu")) is False
