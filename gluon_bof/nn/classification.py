"""The Bag of Tricks classification losses and targets (He et al., 2019, Sections 3-5).

Targets are probability rows ``[B, K]`` (K classes); logits are ``[B, K]``.

- :func:`smooth_targets`: label smoothing, Eq. (4) of the paper, ``q_i = 1 - eps`` on the true
  class and ``eps / (K - 1)`` elsewhere (``mode='paper'``), or GluonCV's ``train_imagenet.py``
  (``mode='gluoncv'``): ``1 - eps + eps / K`` and ``eps / K`` (the paper's Eq. (3) written with
  the uniform distribution over all K classes). ``eps = 0`` gives one-hot rows either way.
- :func:`mixup`: images and targets mixed with the *reversed* batch, ``x = lam x + (1 - lam) x[::-1]``,
  ``y = lam y + (1 - lam) y[::-1]`` (GluonCV's ``train_imagenet.py``; one ``lam ~ Beta(a, a)``
  per batch).
- :func:`soft_cross_entropy`: ``mean_b -sum_i q_bi log softmax(z_b)_i``.
- :func:`distillation_loss`: knowledge distillation, Eq. (6): ``l(p, softmax(z)) +
  T^2 l(softmax(r/T), softmax(z/T))`` with ``p`` the (smoothed / mixed) target, ``z`` the
  student's and ``r`` the teacher's logits (``mode='paper'``), or GluonCV's
  ``DistillationSoftmaxCrossEntropyLoss``: ``h * l(p, softmax(z)) + (1 - h) T^2
  l(softmax(r/T), softmax(z/T))`` with ``h = hard_weight`` (``mode='gluoncv'``; at ``h = 0.5`` it
  is half of Eq. (6)).
- :func:`init_weights`: the paper's Xavier initialisation of conv and linear weights (or
  GluonCV ``train_imagenet.py``'s ``MSRAPrelu``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .smoothing import smoothing_values

__all__ = ["smooth_targets", "mixup", "soft_cross_entropy", "distillation_loss", "init_weights",
           "SMOOTHING_MODES", "DISTILL_MODES", "INIT_MODES"]

SMOOTHING_MODES = ("paper", "gluoncv")
DISTILL_MODES = ("gluoncv", "paper")
INIT_MODES = ("xavier", "msra", "torch")


def smooth_targets(labels: torch.Tensor, num_classes: int, eps: float = 0.0,
                   mode: str = "paper") -> torch.Tensor:
    """Smoothed one-hot targets ``[B, K]`` (float32) for integer ``labels [B]``.

    ``mode='paper'``: ``1 - eps`` on the true class, ``eps / (K - 1)`` on the others;
    ``mode='gluoncv'``: ``1 - eps + eps / K`` and ``eps / K``. Rows sum to 1.
    """
    if mode not in SMOOTHING_MODES:
        raise ValueError(f"label smoothing mode must be one of {SMOOTHING_MODES}, got {mode!r}")
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    on, off = smoothing_values(num_classes, eps, "paper" if mode == "paper" else "uniform")
    out = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32)
    out.scatter_(1, labels[:, None], on)
    return out


def mixup(images: torch.Tensor, targets: torch.Tensor, lam: float):
    """Mixes each sample with the one at the mirrored position of the batch.

    Args:
        images: ``[B, ...]`` float.
        targets: ``[B, K]`` probability rows.
        lam: weight of the sample itself (``Beta(alpha, alpha)`` draw; 1 disables mixup).
    Returns:
        ``(lam * images + (1 - lam) * images.flip(0), lam * targets + (1 - lam) * targets.flip(0))``.
    """
    if lam == 1.0:
        return images, targets
    return (lam * images + (1 - lam) * images.flip(0),
            lam * targets + (1 - lam) * targets.flip(0))


def _loss_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least float32: half-precision (autocast) logits are upcast, float32 and
    float64 kept (a float64 network's loss stays float64)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with probability targets, averaged over the batch (MXNet's
    ``SoftmaxCrossEntropyLoss(sparse_label=False)`` then mean): ``mean_b -sum_i q_bi log p_bi``.
    Computed in float32, or float64 for float64 logits."""
    logp = F.log_softmax(_loss_precision(logits), dim=1)
    return -(targets.to(logp.dtype) * logp).sum(dim=1).mean()


def distillation_loss(logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor, *,
                      temperature: float = 20.0, hard_weight: float = 0.5,
                      mode: str = "paper") -> dict:
    """Knowledge-distillation loss, returned as its two weighted terms (their sum is the loss).

    Args:
        logits: student ``z``, ``[B, K]``.
        targets: the true (smoothed / mixed) distribution ``p``, ``[B, K]``.
        teacher_logits: teacher ``r``, ``[B, K]`` (no gradient flows into it).
        temperature: ``T``.
        hard_weight: GluonCV's weight ``h`` of the hard term (``mode='gluoncv'`` only).
        mode: 'gluoncv' (``h * hard + (1 - h) * T^2 * soft``) or 'paper' (Eq. 6:
            ``hard + T^2 * soft``).
    Returns:
        ``{'hard_loss': w_h * CE(p, z), 'soft_loss': w_s * T^2 * CE(softmax(r/T), z/T)}``.
    """
    if mode not in DISTILL_MODES:
        raise ValueError(f"distillation mode must be one of {DISTILL_MODES}, got {mode!r}")
    t = float(temperature)
    teacher_prob = F.softmax(_loss_precision(teacher_logits.detach()) / t, dim=1)
    hard = soft_cross_entropy(logits, targets)
    soft = t * t * soft_cross_entropy(_loss_precision(logits) / t, teacher_prob)
    w_hard, w_soft = (hard_weight, 1.0 - hard_weight) if mode == "gluoncv" else (1.0, 1.0)
    return {"hard_loss": w_hard * hard, "soft_loss": w_soft * soft}


def _fans(weight: torch.Tensor):
    """MXNet's Xavier fans: ``fan_in = shape[1] * prod(shape[2:])``, ``fan_out = shape[0] * ...``."""
    hw = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * hw, weight.shape[0] * hw


@torch.no_grad()
def init_weights(model: nn.Module, mode: str = "xavier") -> nn.Module:
    """Initialises every conv and linear layer of ``model`` for training from scratch; returns it.

    - ``'xavier'`` (the paper, Section 3.1): weights ``U(-a, a)``, ``a = sqrt(6 / (fan_in +
      fan_out))``, biases 0;
    - ``'msra'`` (GluonCV ``train_imagenet.py``'s ``mx.init.MSRAPrelu()``): weights
      ``N(0, sqrt(m / ((fan_in + fan_out) / 2)))``, ``m = 2 / (1 + 0.25^2)``, biases 0;
    - ``'torch'``: PyTorch's default initialisation, unchanged.

    Norm layers keep gamma 1 / beta 0, or gamma 0 where ``last_gamma`` zeroed it.
    """
    if mode not in INIT_MODES:
        raise ValueError(f"init mode must be one of {INIT_MODES}, got {mode!r}")
    if mode == "torch":
        return model
    for m in model.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        fan_in, fan_out = _fans(m.weight)
        if mode == "xavier":
            a = math.sqrt(6.0 / (fan_in + fan_out))
            m.weight.uniform_(-a, a)
        else:
            m.weight.normal_(0.0, math.sqrt((2.0 / (1 + 0.25 ** 2)) / ((fan_in + fan_out) / 2.0)))
        if m.bias is not None:
            m.bias.zero_()
    return model
