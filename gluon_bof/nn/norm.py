"""Normalisation helpers: BatchNorm with MXNet's running-variance rule, a frozen BatchNorm for
detection backbones, and converting a model to either.

MXNet (so GluonCV) updates a BatchNorm's ``running_var`` with the *biased* batch variance (divided
by N, the values per channel); torch's ``nn.BatchNorm2d`` uses the unbiased one (divided by N - 1),
1/(N-1) larger per update (8e-3 on 8x8 maps of one image). :class:`BatchNorm2d` follows MXNet by
default; :func:`set_running_var_rule` switches every BatchNorm of a model to one rule.

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

__all__ = ["BatchNorm2d", "set_running_var_rule", "RUNNING_VAR_RULES", "FrozenBatchNorm2d",
           "convert_frozen_bn", "freeze_bn", "fixed_gamma_batchnorm"]

RUNNING_VAR_RULES = ("biased", "unbiased")


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode ``running_var`` update uses the biased batch variance
    (``biased_running_var=True``, MXNet's and GluonCV's rule) or torch's unbiased one.

    Outputs, gradients, ``running_mean`` and the state dict are ``nn.BatchNorm2d``'s; only
    ``running_var``'s update differs: ``(1 - momentum) * running_var + momentum * var_N`` with
    ``var_N`` the batch variance over ``N = B * H * W`` values per channel (not ``N - 1``).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None, dtype=None,
                 *, biased_running_var: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.biased_running_var = biased_running_var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.biased_running_var and self.training and self.track_running_stats) or x.numel() == 0:
            return super().forward(x)
        self._check_input_dim(x)
        self.num_batches_tracked.add_(1)
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
        # batch statistics into scratch buffers (momentum 1: they become the batch's mean and
        # unbiased variance), then MXNet's update of the real ones
        mean = torch.zeros_like(self.running_mean)
        var = torch.ones_like(self.running_var)
        y = nn.functional.batch_norm(x, mean, var, self.weight, self.bias, True, 1.0, self.eps)
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            self.running_mean.lerp_(mean, factor)
            self.running_var.lerp_(var * ((n - 1) / n), factor)
        return y

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, biased_running_var: bool = True) -> "BatchNorm2d":
        """A :class:`BatchNorm2d` holding ``bn``'s parameters and buffers (the same tensors)."""
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                  biased_running_var=biased_running_var)
        new.weight, new.bias = bn.weight, bn.bias
        new.running_mean, new.running_var = bn.running_mean, bn.running_var
        new.num_batches_tracked = bn.num_batches_tracked
        new.train(bn.training)
        return new


def fixed_gamma_batchnorm(num_features: int, eps: float = 1e-3) -> nn.BatchNorm2d:
    """MXNet's *symbolic* ``BatchNorm``/``SyncBatchNorm`` with its defaults, as GluonCV's SyncBN
    FPN detectors put it after every FPN conv: ``eps`` 1e-3 (Gluon blocks: 1e-5) and
    ``fix_gamma=True`` (the scale is 1 and never trained; MXNet even writes 1 into the stored
    gamma). An ``nn.BatchNorm2d`` whose weight is 1 with ``requires_grad=False``, kept so the
    state dict has GluonCV's ``gamma``; the shift (``beta``) trains as usual."""
    bn = nn.BatchNorm2d(num_features, eps=eps)
    bn.weight.requires_grad_(False)
    return bn


def set_running_var_rule(module: nn.Module, rule: str = "biased") -> nn.Module:
    """Makes every trainable BatchNorm of ``module`` update ``running_var`` by ``rule``:
    'biased' (MXNet/GluonCV, the training scripts' default) or 'unbiased' (torch).

    Plain ``nn.BatchNorm2d`` layers become :class:`BatchNorm2d` (same parameters and buffers, in
    place); layers that already carry a ``biased_running_var`` switch (ours, the cross-GPU
    BatchNorm) get it set. Frozen BatchNorm has no running update and is left alone. Returns
    ``module`` (or the new layer when ``module`` itself is a plain BatchNorm2d).
    """
    if rule not in RUNNING_VAR_RULES:
        raise ValueError(f"norm.py: unknown running-variance rule {rule!r}; choose one of {RUNNING_VAR_RULES}")
    biased = rule == "biased"
    if hasattr(module, "biased_running_var"):
        module.biased_running_var = biased
        return module
    if type(module) is nn.BatchNorm2d:
        return BatchNorm2d.from_batchnorm(module, biased) if biased else module
    for name, child in module.named_children():
        new = set_running_var_rule(child, rule)
        if new is not child:
            setattr(module, name, new)
    return module


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
