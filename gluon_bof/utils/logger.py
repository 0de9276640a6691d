"""Logging set-up: rank 0 logs to the console and to a file; other ranks log warnings only."""
import logging
import math
import os
import sys
from typing import List

import torch

__all__ = ["setup_logger", "AverageMeter", "EpochMeter"]


def setup_logger(log_file: str = None, rank: int = 0, name: str = "gluon_bof") -> logging.Logger:
    """Configures the root logger once: INFO on rank 0 (console + ``log_file``), WARNING elsewhere."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    root.addHandler(console)
    if log_file and rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setFormatter(fmt)
        root.addHandler(fh)
    return logging.getLogger(name)


class AverageMeter:
    """Running mean of named scalars (losses) over an epoch."""

    def __init__(self):
        self.sums, self.count = {}, 0

    def update(self, values: dict, n: int = 1) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n
        self.count += n

    def mean(self) -> dict:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def __str__(self) -> str:
        return ", ".join(f"{k}={v:.3f}" for k, v in self.mean().items())


class EpochMeter:
    """One epoch's running totals: loss sums per image (an :class:`AverageMeter`), images and
    seconds of training. Part of a checkpoint (``state_dict``), so an epoch stopped and resumed
    reports the means and throughput of all its batches, as the uninterrupted epoch does.

    ``update`` takes the losses as tensors (on the device) and keeps them pending: nothing waits
    for the device until the totals are read (``flush``: at the log interval, a checkpoint, the
    epoch's end), where every pending value reaches the host in one transfer. ``flush`` raises
    ``FloatingPointError`` when a pending loss is not finite, naming the update it came from."""

    def __init__(self):
        self.losses = AverageMeter()
        self.images = 0
        self.seconds = 0.0
        self._pending = []  # (update index, {name: 0-d tensor}, images)

    def update(self, values: dict, n: int, seconds: float, step: int = -1) -> None:
        self._pending.append((step, values, n))
        self.images += n
        self.seconds += seconds

    def flush(self) -> List[dict]:
        """Moves the pending values to the host (one sync); returns them, one dict per update."""
        if not self._pending:
            return []
        names = sorted({k for _, v, _ in self._pending for k in v})
        table = torch.stack([torch.stack([v[k].detach().float().reshape(()) for k in names])
                             for _, v, _ in self._pending]).cpu().tolist()
        out = []
        for (step, _, n), row in zip(self._pending, table):
            values = dict(zip(names, row))
            bad = [k for k, x in values.items() if not math.isfinite(x)]
            if bad:
                self._pending = []
                raise FloatingPointError(f"non-finite loss at update {step}: "
                                         + ", ".join(f"{k}={values[k]:.4g}" for k in bad))
            self.losses.update(values, n)
            out.append(values)
        self._pending = []
        return out

    def summary(self) -> dict:
        """The epoch's mean losses and ``images_per_sec``."""
        self.flush()
        return {**self.losses.mean(), "images_per_sec": self.images / max(self.seconds, 1e-9)}

    def state_dict(self) -> dict:
        self.flush()
        return {"sums": dict(self.losses.sums), "count": self.losses.count, "images": self.images,
                "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.losses.sums, self.losses.count = dict(state["sums"]), int(state["count"])
        self.images, self.seconds = int(state["images"]), float(state["seconds"])
        self._pending = []
