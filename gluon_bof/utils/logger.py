"""Logging set-up: rank 0 logs to the console and to a file; other ranks log warnings only."""
import logging
import os
import sys

__all__ = ["setup_logger", "AverageMeter"]


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
