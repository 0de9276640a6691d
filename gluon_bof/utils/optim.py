"""Optimizer settings: parameter groups for the ``--no-wd`` freebie (no weight decay on biases and
norm layers) and the linear scaling rule of the learning rate (``--lr-base-batch``)."""
from typing import Dict, List

import torch.nn as nn

__all__ = ["param_groups", "linear_scaled_lr", "NORM_TYPES"]

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float, no_wd: bool = False) -> List[Dict]:
    """Splits trainable parameters into decayed and non-decayed groups.

    With ``no_wd`` every bias and every parameter of a normalisation layer (BatchNorm's gamma and
    beta, GluonCV's ``wd_mult = 0`` for ``beta|gamma|bias``) gets ``weight_decay=0``; the rest keep
    ``weight_decay``. Without it all parameters form one decayed group.
    """
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if no_wd and (name == "bias" or isinstance(module, NORM_TYPES)):
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def linear_scaled_lr(lr: float, batch_size: int, base_batch: int) -> float:
    """The linear scaling rule (Goyal et al. 2017; MegDet): ``lr * batch_size / base_batch``.

    ``lr`` is the learning rate tuned for ``base_batch`` images per update; ``batch_size`` is the
    global batch of one update (all processes and accumulated micro-batches together).
    """
    if batch_size < 1 or base_batch < 1:
        raise ValueError(f"optim.py: batch sizes must be >= 1, got batch {batch_size}, base {base_batch}")
    return lr * batch_size / base_batch
