"""MegDet's Cross-GPU BatchNorm: batch statistics shared by a group of processes, on any backend.

Peng et al., "MegDet: A Large Mini-Batch Object Detector" (CVPR 2018), section 4: each device
computes per-channel statistics of its own images, the group combines them, and every device
normalises with the group's mean and variance; the backward pass again sums two per-channel
quantities over the group. Unlike ``torch.nn.SyncBatchNorm``, whose kernels exist only for CUDA,
this uses plain tensor operations and ``torch.distributed`` collectives, so it trains under gloo
on CPU as well as under NCCL on GPUs.

Combination (Chan et al.'s parallel variance): rank ``r`` contributes its count ``n_r`` (values
per channel, ``B_r * H * W``), mean ``m_r`` and ``M2_r`` (sum of squared deviations from ``m_r``);
with ``N = sum n_r``: ``mean = sum n_r m_r / N``, ``var = (sum M2_r + sum n_r (m_r - mean)^2) / N``
(the biased variance, which every BatchNorm normalises with). A rank with an empty batch
contributes ``n_r = 0``.
"""
from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.function import once_differentiable

from ..utils.distributed import bn_groups, get_rank, get_world_size
from .norm import BatchNorm2d

__all__ = ["CrossGPUBatchNorm2d", "cross_gpu_batch_norm", "convert_cross_gpu_bn", "convert_sync_batchnorm"]

logger = logging.getLogger(__name__)

_CHANNEL = (1, -1, 1, 1)  # a per-channel [C] vector broadcast over [B, C, H, W]


def _group_size(group) -> int:
    """Members of ``group`` (None: the world); 1 when no process group is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _check_4d(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"sync_bn.py: expected a 4-D input [B, C, H, W], got shape {tuple(x.shape)}")


def _group_statistics(x: torch.Tensor, group):
    """Count ``N``, mean ``[C]`` and biased variance ``[C]`` of ``x`` over the whole group.

    Collective (one ``all_gather``): every member must call it. Computed in ``x``'s dtype, at
    least float32. Raises ValueError on every member alike when the group has <= 1 value per
    channel in all (the decision reads the gathered count, so no member is left waiting).
    """
    c = x.shape[1]
    dtype = torch.promote_types(x.dtype, torch.float32)
    xs = x.detach().to(dtype)
    n = x.numel() // c
    if n:
        var, mean = torch.var_mean(xs, dim=(0, 2, 3), correction=0)
        m2 = var * n
    else:  # an empty batch: count 0 (var_mean would give NaN)
        mean = m2 = xs.new_zeros(c)
    local = torch.cat([xs.new_full((1,), n), mean, m2])
    table = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(table, local, group=group)
    table = torch.stack(table)
    counts, means, m2s = table[:, :1], table[:, 1:c + 1], table[:, c + 1:]
    count = counts.sum()
    # a member with >= 2 values knows the group has >= 2 without reading the count (no device sync)
    if n <= 1 and float(count) <= 1:
        raise ValueError(f"sync_bn.py: expected more than 1 value per channel when training, got "
                         f"{int(count)} over the process group (input size {list(x.shape)} here)")
    mean = (counts * means).sum(0) / count
    var = (m2s.sum(0) + (counts * (means - mean).square()).sum(0)) / count
    return count, mean, var


class _CrossGPUBatchNorm(torch.autograd.Function):
    """``y = (x - mean) * invstd * weight + bias`` with the group's ``mean``/``invstd``; the
    backward all-reduces ``sum(dy)`` and ``sum(dy * xhat)`` so ``dx`` is the gradient through the
    group's statistics (global count ``N``). ``dweight``/``dbias`` are this rank's share (DDP
    averages parameter gradients across ranks, as with ``torch.nn.SyncBatchNorm``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, invstd, count, group):
        xhat = (x.to(mean.dtype) - mean.view(_CHANNEL)) * invstd.view(_CHANNEL)
        y = xhat if weight is None else xhat * weight.view(_CHANNEL) + bias.view(_CHANNEL)
        ctx.save_for_backward(x, weight, mean, invstd, count)
        ctx.group = group
        return y.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight, mean, invstd, count = ctx.saved_tensors
        dy_s = dy.to(mean.dtype)
        xhat = (x.to(mean.dtype) - mean.view(_CHANNEL)) * invstd.view(_CHANNEL)
        sum_dy = dy_s.sum((0, 2, 3))
        sum_dy_xhat = (dy_s * xhat).sum((0, 2, 3))
        dx = dweight = dbias = None
        if ctx.needs_input_grad[0]:  # the same on every rank (same model): all join the all-reduce
            both = torch.cat([sum_dy, sum_dy_xhat])
            dist.all_reduce(both, group=ctx.group)
            g_dy, g_dy_xhat = both.div_(count).view(2, -1, 1, 1)
            scale = invstd if weight is None else invstd * weight
            dx = (scale.view(_CHANNEL) * (dy_s - g_dy - xhat * g_dy_xhat)).to(x.dtype)
        if weight is not None and ctx.needs_input_grad[1]:
            dweight = sum_dy_xhat.to(weight.dtype)
        if weight is not None and ctx.needs_input_grad[2]:
            dbias = sum_dy.to(weight.dtype)
        return dx, dweight, dbias, None, None, None, None


def cross_gpu_batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                         weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                         momentum: float = 0.1, eps: float = 1e-5, *, process_group=None,
                         biased_running_var: bool = True) -> torch.Tensor:
    """Training-mode BatchNorm of ``x`` ``[B, C, H, W]`` with the statistics of every member of
    ``process_group`` (None: the world), as ``F.batch_norm(..., training=True)`` on the group's
    concatenated batch. Collective, forward and backward: every member calls it, also with an
    empty batch (``B = 0``: output empty). Needs an initialised process group.

    ``running_mean``/``running_var`` (if not None) are updated in place, identically on every
    member: ``r = (1 - momentum) * r + momentum * batch`` with the group's mean and its variance,
    biased (``/ N``, MXNet's rule) when ``biased_running_var`` else unbiased (``/ (N - 1)``, torch's).
    Statistics are computed in ``x``'s dtype, at least float32; the output has ``x``'s dtype.
    """
    _check_4d(x)
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("sync_bn.py: cross_gpu_batch_norm needs an initialised process group "
                           "(CrossGPUBatchNorm2d is a local BatchNorm without one)")
    count, mean, var = _group_statistics(x, process_group)
    if running_mean is not None:
        with torch.no_grad():
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
    if running_var is not None:
        with torch.no_grad():
            batch_var = var if biased_running_var else var * (count / (count - 1))
            running_var.lerp_(batch_var.to(running_var.dtype), momentum)
    invstd = torch.rsqrt(var + eps)
    return _CrossGPUBatchNorm.apply(x, weight, bias, mean, invstd, count, process_group)


class CrossGPUBatchNorm2d(BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are those of a process group (MegDet's
    Cross-GPU BN), on any ``torch.distributed`` backend (gloo on CPU, NCCL on GPUs).

    Input and output ``[B, C, H, W]`` (any memory format, any float dtype; the output keeps the
    input's dtype). The state dict is ``nn.BatchNorm2d``'s (``weight``, ``bias``,
    ``running_mean``, ``running_var``, ``num_batches_tracked``).

    * Training, with an initialised process group of more than one member: normalises with the
      mean and biased variance of the group's whole batch (see :func:`cross_gpu_batch_norm`); the
      result equals one ``nn.BatchNorm2d`` over the concatenation of the members' batches, which
      may differ in size or be empty. Input gradients flow through the group statistics; weight
      and bias gradients are this rank's share. Every member must run forward and backward.
    * Eval mode, no process group, or a group of one: the local
      :class:`~gluon_bof.nn.norm.BatchNorm2d` (eval: no communication).

    ``running_var`` is updated with the biased batch variance (``biased_running_var=True``,
    MXNet/GluonCV) or the unbiased one (torch), in both paths; ``momentum=None`` is the cumulative
    average, as ``nn.BatchNorm2d``.

    Args:
        num_features, eps, momentum, affine, track_running_stats, device, dtype: as ``nn.BatchNorm2d``.
        process_group: the group sharing statistics; None: the world (default group).
        biased_running_var: the running-variance rule above.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, process_group=None,
                 biased_running_var: bool = True, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         biased_running_var=biased_running_var)
        self.process_group = process_group

    def extra_repr(self) -> str:
        return super().extra_repr() + f", biased_running_var={self.biased_running_var}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_4d(x)
        if not self.training or _group_size(self.process_group) <= 1:
            if x.numel() == 0:  # torch's BatchNorm passes an empty batch through, statistics unchanged
                return nn.BatchNorm2d.forward(self, x)
            return super().forward(x)
        tracking = self.track_running_stats
        factor = 0.0
        if tracking:
            factor = self.momentum if self.momentum is not None else 1.0 / (float(self.num_batches_tracked) + 1)
        y = cross_gpu_batch_norm(x, self.running_mean if tracking else None, self.running_var if tracking else None,
                                 self.weight, self.bias, factor, self.eps, process_group=self.process_group,
                                 biased_running_var=self.biased_running_var)
        if tracking:  # after the statistics: a batch that raised does not count
            self.num_batches_tracked.add_(1)
        return y

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm, biased_running_var: bool = True,
                       process_group=None) -> "CrossGPUBatchNorm2d":
        """A :class:`CrossGPUBatchNorm2d` holding ``bn``'s parameters and buffers (the same tensors,
        so device, dtype and optimizer references are kept), eps, momentum and training mode."""
        new = super().from_batchnorm(bn, biased_running_var)
        new.process_group = process_group
        return new


def convert_cross_gpu_bn(module: nn.Module, process_group=None, biased_running_var: bool = True) -> nn.Module:
    """Replaces every ``nn.BatchNorm2d`` (subclasses included) and ``nn.SyncBatchNorm`` in
    ``module`` by a :class:`CrossGPUBatchNorm2d` holding the same tensors, in place.

    Frozen BatchNorm (not a ``_BatchNorm``) is left alone. Returns ``module``, or the new layer when
    ``module`` itself is a BatchNorm; assign the result.
    """
    if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
        return CrossGPUBatchNorm2d.from_batchnorm(module, biased_running_var, process_group)
    for name, child in module.named_children():
        new = convert_cross_gpu_bn(child, process_group, biased_running_var)
        if new is not child:
            setattr(module, name, new)
    return module


def convert_sync_batchnorm(model: torch.nn.Module, group_size: int | None = None,
                           biased_running_var: bool = True) -> torch.nn.Module:
    """Converts BatchNorm layers to :class:`~gluon_bof.nn.sync_bn.CrossGPUBatchNorm2d` (MegDet's
    Cross-GPU BN) sharing batch statistics across processes, on any backend (gloo on CPU, NCCL).

    Args:
        model: the network; every ``nn.BatchNorm2d`` (subclasses included) and ``nn.SyncBatchNorm``
            is replaced in place by a layer holding the same parameters and buffers
            (:func:`convert_cross_gpu_bn`); frozen BatchNorm is left alone.
        group_size: ``None`` (or the world size): all processes share batch statistics. ``K``: the
            world is split into groups of K consecutive ranks (``bn_groups``), each with its own
            process group; statistics are shared within a group only. ``1``: plain per-process
            BatchNorm, the model is returned unchanged. Must divide the world size.
        biased_running_var: ``running_var`` is updated with the biased batch variance (MXNet's and
            GluonCV's rule) when True, with the unbiased one (torch's) when False.

    Collective: in a distributed run every rank must call this with the same ``group_size`` (each
    rank creates every group with ``torch.distributed.new_group``, in the same order). In a single
    process this warns and returns the model unchanged: there is nothing to synchronise.
    Returns the model (assign the result).
    """
    world_size = get_world_size()
    if world_size == 1:
        logger.warning("--syncbn has no effect in a single process (launch with torchrun to use it)")
        return model
    if group_size is None:
        group_size = world_size
    groups = bn_groups(world_size, group_size)  # validates before any collective call
    if group_size == 1:
        logger.warning("--syncbn with group size 1 is plain per-process BatchNorm: model unchanged")
        return model
    process_group = None  # the default (world) group
    if group_size < world_size:
        rank = get_rank()
        for ranks in groups:  # every rank creates every group, in the same order
            group = dist.new_group(ranks=ranks)
            if rank in ranks:
                process_group = group
    return convert_cross_gpu_bn(model, process_group, biased_running_var)
