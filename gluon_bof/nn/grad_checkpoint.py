"""Gradient checkpointing of backbone stages (``--grad-checkpoint``; MegDet's sub-linear memory).

A checkpointed stage keeps only its input for backward and recomputes its activations there
(``torch.utils.checkpoint``, non-reentrant), trading about one more forward of the backbone for
the memory of its activations. Switching it on changes neither the parameters, nor the
``state_dict`` keys, nor the outputs and gradients.

The stages are the natural units of each backbone, declared by the model (``checkpoint_stages()``):

- YOLOv3: ``model.stages`` (the backbone slices feeding the three heads: darknet53's or MobileNet's
  stages of stride 8, 16 and 32);
- Faster R-CNN (C4 and FPN): every ResNet layer (``layer1`` .. ``layer4``: an ``nn.Sequential`` of
  residual blocks), in ``features``, ``top_features`` (run on the RoIs) or the FPN body.

BatchNorm in training mode updates its running statistics in the forward; the recomputation
restores them afterwards, so they are updated once per step, as without checkpointing.
"""
from contextlib import contextmanager, nullcontext
from types import MethodType
from typing import List

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["set_grad_checkpointing", "backbone_stages", "is_checkpointed"]


def backbone_stages(model: nn.Module) -> List[nn.Module]:
    """The stages :func:`set_grad_checkpointing` checkpoints: what the model declares in its
    ``checkpoint_stages()`` (as timm's models declare theirs), nothing found by class here."""
    net = model.module if hasattr(model, "module") else model  # DistributedDataParallel
    stages = net.checkpoint_stages() if hasattr(net, "checkpoint_stages") else []
    if not stages:
        raise ValueError(f"grad_checkpoint.py: {type(net).__name__} declares no stages to checkpoint "
                         "(checkpoint_stages())")
    return list(stages)


@contextmanager
def _keep_norm_buffers(module: nn.Module):
    """Restores the running statistics of ``module``'s norm layers on exit (the recomputation's)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    saved = [{k: b.clone() for k, b in m.named_buffers(recurse=False) if b is not None} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved):
                for k, value in buffers.items():
                    getattr(m, k).copy_(value)


def _checkpointed_forward(self, *args, **kwargs):
    plain = type(self).forward
    if not (self.training and torch.is_grad_enabled()):
        return plain(self, *args, **kwargs)
    contexts = lambda: (nullcontext(), _keep_norm_buffers(self))  # noqa: E731 (forward, recompute)
    return checkpoint(plain, self, *args, use_reentrant=False, context_fn=contexts, **kwargs)


def is_checkpointed(module: nn.Module) -> bool:
    """Whether ``module``'s forward runs under gradient checkpointing."""
    return isinstance(module.__dict__.get("forward"), MethodType)


def set_grad_checkpointing(model: nn.Module, enable: bool = True) -> nn.Module:
    """Turns gradient checkpointing of ``model``'s backbone stages on (or off); returns ``model``.

    Only training forwards with autograd on are checkpointed; eval and ``torch.no_grad`` run the
    plain forward. Call it before or after wrapping in DDP or converting to SyncBatchNorm.
    """
    for stage in backbone_stages(model):
        if enable:
            stage.forward = MethodType(_checkpointed_forward, stage)
        elif is_checkpointed(stage):
            del stage.forward
    return model
