"""Distributed set-up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK).

One process per device. ``init_distributed()`` is safe to call in a plain ``python`` run: without
torchrun's variables it returns a single-process context and touches no process group.
"""
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError


__all__ = ["DistContext", "init_distributed", "run_in_process_group", "cleanup", "is_main_process", "get_rank",
           "get_world_size", "barrier", "all_gather_object", "any_process", "bn_groups",
]

logger = logging.getLogger(__name__)


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto", backend: str = None) -> DistContext:
    """Initialises the process group when launched by torchrun and picks this process's device.

    Args:
        device: 'auto' (CUDA if available, else CPU), 'cpu', 'cuda', or 'cuda:K' (GPU K, one
            process only; under torchrun each process takes the GPU of its LOCAL_RANK).
        backend: process-group backend; default NCCL on CUDA, gloo on CPU.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} was asked for but CUDA is not available here")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        index = int(device.split(":")[1]) if ":" in device and world_size == 1 else local_rank
        torch.cuda.set_device(index)
        dev = torch.device("cuda", index)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def run_in_process_group(run, args, device: str = "auto"):
    """``run(args, ctx)`` between :func:`init_distributed` and :func:`cleanup`: the process group
    is torn down however ``run`` ends (return, error, Ctrl-C). The training scripts' ``main``."""
    ctx = init_distributed(device)
    try:
        return run(args, ctx)
    finally:
        cleanup()


def cleanup() -> None:
    """Destroys the process group if one was created (call in a ``finally``)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_gather_object(obj):
    """Gathers a picklable object from every process; returns the list (one element when alone)."""
    if get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def any_process(flag: bool, device: torch.device = torch.device("cpu")) -> bool:
    """True on every process when ``flag`` is True on any (collective: all processes must call it).

    Used so that a stop signal reaching one process stops all of them at the same step. ``device``:
    where the flag travels (the process's CUDA device under NCCL)."""
    if get_world_size() == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def bn_groups(world_size: int, group_size: int) -> list[list[int]]:
    """Splits ranks ``0..world_size-1`` into groups of ``group_size`` consecutive ranks.

    MegDet's cross-GPU BatchNorm with a group size: ``bn_groups(4, 2) == [[0, 1], [2, 3]]``.
    Raises ValueError when ``group_size`` is not positive or does not divide ``world_size``.
    """
    if world_size < 1:
        raise ValueError(f"distributed.py: world_size must be >= 1, got {world_size}")
    if group_size < 1:
        raise ValueError(f"distributed.py: BatchNorm group size must be >= 1, got {group_size}")
    if world_size % group_size:
        raise ValueError(f"distributed.py: BatchNorm group size {group_size} does not divide "
                         f"world size {world_size}")
    return [list(range(start, start + group_size)) for start in range(0, world_size, group_size)]
