"""Utilities: metrics, LR schedules, checkpoints, distributed set-up, logging, visualisation."""
from . import metrics  # noqa: F401
from .lr_scheduler import LRScheduler, lr_at, plot_lr_schedule  # noqa: F401
from .metrics import COCODetectionMetric, VOC07MApMetric, VOCMApMetric  # noqa: F401
