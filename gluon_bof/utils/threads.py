"""CPU thread counts chosen from the cores this process may use.

PyTorch's default intra-op pool takes every core the machine reports. Next to data-loader
workers, other ranks on the node or another job, that oversubscribes the cores, and OpenMP's
spinning threads then slow training by an order of magnitude (measured: 0.9 images/s with two
intra-op threads next to another job on 2 cores, 31-53 images/s with one). The rule here:

* the cores this process may use: its CPU affinity, capped by a cgroup CPU quota, shared evenly by
  the processes torchrun starts on the node (``LOCAL_WORLD_SIZE``);
* each data-loader worker is single-threaded (torch and OpenCV: :func:`worker_init`);
* the training process gets the cores that remain, at least one (``threads`` overrides).
"""
import logging
import math
import os
from typing import Optional

import cv2
import torch

__all__ = ["available_cores", "configure_threads", "worker_init"]

logger = logging.getLogger(__name__)


def _cgroup_cpus() -> Optional[float]:
    """The cgroup v2 (``cpu.max``) or v1 (``cfs_quota_us``) CPU quota in cores; None if unlimited."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def configure_threads(num_workers: int, threads: Optional[int] = None) -> dict:
    """Sets torch's intra-op threads (and OpenCV's, to one) for a process that feeds itself with
    ``num_workers`` data-loader workers, and logs the choice. ``threads`` (``--threads``) overrides.
    Returns ``{'cores', 'processes_per_node', 'workers', 'threads'}``."""
    per_node = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cores = max(1, available_cores() // per_node)
    if threads is not None and threads < 1:
        raise ValueError(f"threads.py: --threads must be >= 1, got {threads}")
    chosen = threads or max(1, cores - num_workers)
    torch.set_num_threads(chosen)
    cv2.setNumThreads(1)
    logger.info("threads: %d intra-op (%s), %d single-threaded data workers, %d cores for this process "
                "(%d processes on the node)", chosen, "--threads" if threads else "the cores the workers leave",
                num_workers, cores, per_node)
    return {"cores": cores, "processes_per_node": per_node, "workers": num_workers, "threads": chosen}


def worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of every gluon-bof DataLoader: one torch and no OpenCV pool per worker."""
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
