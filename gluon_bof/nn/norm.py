"""Normalisation helpers: a frozen BatchNorm for detection backbones, and converting a model to it.

GluonCV's detectors (Faster R-CNN on ``resnet*_v1b``/``v1d``) build the backbone with
``use_global_stats=True`` and train none of its BatchNorm ``gamma``/``beta``: the normalisation
is a fixed per-channel affine map. :class:`FrozenBatchNorm2d` is that map. Its state-dict names are
BatchNorm2d's (``weight``, ``bias``, ``running_mean``, ``running_var``; GluonCV's ``gamma``,
``beta``, ``running_mean``, ``running_var``), all buffers, so a BatchNorm2d state dict (its
``num_batches_tracked`` is ignored) and GluonCV weights load into it unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d as _TorchvisionFrozenBN

__all__ = ["FrozenBatchNorm2d", "convert_frozen_bn", "freeze_bn"]


class FrozenBatchNorm2d(_TorchvisionFrozenBN):
    """BatchNorm2d with fixed statistics and affine parameters (no trainable parameters).

    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`` per channel, in train and
    eval mode alike. ``eps`` defaults to 1e-5 (GluonCV's and torch's BatchNorm default).

    Args:
        num_features: channels ``C`` of the ``[B, C, H, W]`` input.
        eps: added to the variance.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(num_features, eps=eps)
        self.num_features = num_features

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm) -> "FrozenBatchNorm2d":
        """A frozen copy of ``bn``'s current statistics and affine parameters (eps kept)."""
        frozen = cls(bn.num_features, eps=bn.eps)
        with torch.no_grad():
            if bn.affine:
                frozen.weight.copy_(bn.weight)
                frozen.bias.copy_(bn.bias)
            if bn.track_running_stats and bn.running_mean is not None:
                frozen.running_mean.copy_(bn.running_mean)
                frozen.running_var.copy_(bn.running_var)
        ref = bn.weight if bn.affine else bn.running_mean
        if ref is not None:
            frozen.to(device=ref.device, dtype=ref.dtype)
        return frozen


def convert_frozen_bn(module: nn.Module) -> nn.Module:
    """Replaces every ``BatchNorm2d`` (``SyncBatchNorm`` included) in ``module`` by a
    :class:`FrozenBatchNorm2d` holding its current values, in place.

    Returns ``module``, or the new frozen layer when ``module`` itself is a BatchNorm (as
    detectron2's ``convert_frozen_batchnorm``); assign the result. Other parameters are untouched.
    """
    if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
        return FrozenBatchNorm2d.from_batchnorm(module)
    for name, child in module.named_children():
        new = convert_frozen_bn(child)
        if new is not child:
            setattr(module, name, new)
    return module


def freeze_bn(module: nn.Module) -> nn.Module:
    """Freezes every BatchNorm of ``module`` (see :func:`convert_frozen_bn`; same result).

    Unlike ``bn.eval()`` plus ``requires_grad_(False)``, the conversion survives a later
    ``module.train()``: the frozen layers never update their statistics.
    """
    return convert_frozen_bn(module)
