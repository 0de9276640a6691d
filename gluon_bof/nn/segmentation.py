"""GluonCV's segmentation loss, ``MixSoftmaxCrossEntropyLoss`` (gluoncv/loss.py), as it trains.

GluonCV computes per-pixel softmax cross-entropy with ``SoftmaxOutput(ignore_label=-1,
use_ignore=True, normalization='valid')`` and adds the auxiliary head's loss times
``aux_weight``. What that trains with, measured against MXNet 1.9.1 (tests/nn/test_segmentation_loss.py):

- ``SoftmaxOutput``'s backward ignores the gradient that reaches it: each output's gradient is
  ``(softmax - onehot) / V`` on the valid (non-ignored) pixels, ``V`` the valid pixels of the
  device's batch, whatever multiplies the loss afterwards. So ``aux_weight`` scales only the
  *reported* aux loss: GluonCV's auxiliary head trains with weight 1.
- ``Trainer.step(batch_size)`` then divides every gradient by the global batch: with ``D``
  devices, the update follows ``(1 / B) * sum over devices of mean_valid_CE(device batch)``.
- The reported value is per image ``sum of valid-pixel CE / (H * W)`` (ignored pixels count in
  the denominator), main plus ``aux_weight`` times aux.

:func:`mix_softmax_cross_entropy` returns the terms whose gradients are the update's:

- ``normalization='gluoncv'`` (default): each output's term is the mean CE over this process's
  valid pixels divided by this process's images (``b``). Under DDP (gradients averaged over ``W``
  processes of ``B / W`` images) that is exactly GluonCV's update on ``W`` devices; with
  ``--accumulate N`` GluonCV's on ``W * N`` devices. GluonCV's ``--lr`` values therefore carry over.
- ``normalization='mean'``: the plain mean CE over valid pixels (``F.cross_entropy(...,
  ignore_index=-1)``, torchvision's reference scripts): ``b`` times larger gradients.

``aux_weight`` multiplies the auxiliary term in both modes (the flag does what it says); pass
``aux_weight=1`` for GluonCV's gradients exactly. A batch without any valid pixel gives zero loss.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch.nn import functional as F

__all__ = ["LOSS_NORMALIZATIONS", "mix_softmax_cross_entropy", "gluoncv_reported_loss"]

LOSS_NORMALIZATIONS = ("gluoncv", "mean")


def _valid_mean_ce(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Sum of per-pixel CE over the valid pixels / their number (0 when there are none)."""
    ce = F.cross_entropy(logits.float(), targets, ignore_index=ignore_index, reduction="sum")
    valid = (targets != ignore_index).sum().clamp(min=1)
    return ce / valid


def mix_softmax_cross_entropy(outputs: Sequence[torch.Tensor], targets: torch.Tensor, *,
                              aux_weight: float = 0.5, normalization: str = "gluoncv",
                              ignore_index: int = -1) -> Dict[str, torch.Tensor]:
    """The training losses of a segmentation network (see the module docstring).

    Args:
        outputs: ``(main[, aux])`` logits ``[B, C, H, W]``.
        targets: ``[B, H, W]`` int64 class indices, ``ignore_index`` for ignored pixels. Other
            negative values are an error (``F.cross_entropy``'s), as are indices >= C.
        aux_weight: weight of the auxiliary term.
        normalization: 'gluoncv' or 'mean'.

    Returns:
        ``{'loss': main}`` or ``{'loss': main, 'aux_loss': aux_weight * aux}``; their sum is the
        objective.
    """
    if normalization not in LOSS_NORMALIZATIONS:
        raise ValueError(f"segmentation loss: normalization must be one of {LOSS_NORMALIZATIONS}, "
                         f"got {normalization!r}")
    targets = targets.long()
    scale = 1.0 / targets.shape[0] if normalization == "gluoncv" else 1.0
    losses = {"loss": _valid_mean_ce(outputs[0], targets, ignore_index) * scale}
    if len(outputs) > 1:
        losses["aux_loss"] = _valid_mean_ce(outputs[1], targets, ignore_index) * (scale * aux_weight)
    return losses


@torch.no_grad()
def gluoncv_reported_loss(outputs: Sequence[torch.Tensor], targets: torch.Tensor, *, aux_weight: float = 0.5,
                          ignore_index: int = -1) -> torch.Tensor:
    """The per-image loss values GluonCV's ``MixSoftmaxCrossEntropyLoss`` returns (and its
    training log averages): ``sum of valid-pixel CE / (H * W)`` for the main output plus
    ``aux_weight`` times the same for the auxiliary one. ``[B]``."""
    targets = targets.long()
    total = 0.0
    for k, logits in enumerate(outputs):
        ce = F.cross_entropy(logits.float(), targets, ignore_index=ignore_index, reduction="none")
        per_image = ce.flatten(1).mean(1)
        total = total + per_image * (aux_weight if k else 1.0)
    return total
