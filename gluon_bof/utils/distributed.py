"""Distributed set-up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK).

One process per device. ``init_distributed()`` is safe to call in a plain ``python`` run: without
torchrun's variables it returns a single-process context and touches no process group.
"""
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_distributed", "cleanup", "is_main_process", "get_rank",
           "get_world_size", "barrier", "all_gather_object", "convert_sync_batchnorm"]

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
        device: 'auto' (CUDA if available, else CPU), 'cpu' or 'cuda'.
        backend: process-group backend; default NCCL on CUDA, gloo on CPU.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but CUDA is not available")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


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


def convert_sync_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Converts BatchNorm layers to ``torch.nn.SyncBatchNorm`` across all processes.

    In a single process this warns and returns the model unchanged: there is nothing to synchronise.
    """
    if get_world_size() == 1:
        logger.warning("--syncbn has no effect in a single process (launch with torchrun to use it)")
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
