"""Detection losses with GluonCV's semantics (``gluoncv.loss``)."""
from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["YOLOV3Loss"]


class YOLOV3Loss(nn.Module):
    """YOLOv3 losses, equal to GluonCV's ``YOLOV3Loss`` (per-image sums, no batch reduction).

    Every input is flattened over all anchors of all output layers, ``N`` in total:

    Args (``forward``):
        objness: ``[B, N, 1]`` objectness logits.
        box_centers: ``[B, N, 2]`` centre logits (x, y).
        box_scales: ``[B, N, 2]`` raw log-scales (w, h).
        cls_preds: ``[B, N, C]`` class logits.
        objness_t: ``[B, N, 1]`` objectness target: > 0 positive (its value is the mix weight),
            0 negative, -1 ignored.
        center_t: ``[B, N, 2]`` centre targets in [0, 1) (fraction of the cell).
        scale_t: ``[B, N, 2]`` log(gt size / anchor size).
        weight_t: ``[B, N, 2]`` box-loss weights (``2 - w*h/(W*H)``) for positives, 0 elsewhere.
        class_t: ``[B, N, C]`` (possibly smoothed) class targets for positives.
        class_mask: ``[B, N, C]`` 1 where ``class_t`` is a valid positive target, 0 elsewhere.

    Returns:
        ``(obj_loss, center_loss, scale_loss, cls_loss)``, each ``[B]``: the loss summed over
        anchors (and coordinates / classes) of each image. GluonCV computes the mean over
        non-batch axes times their size, i.e. the same sum; its trainer then averages over the
        batch, which the caller does (``.mean()``).

    Weighting, as GluonCV: objectness BCE has weight ``objness_t`` for positives (the mixup
    ratio), 1 for negatives, 0 for ignored, with target 1 for positives; the centre BCE and the
    scale L1 are weighted by ``weight_t * objness_t``; the class BCE by ``class_mask * objness_t``.
    So every loss term of an object is scaled by its mix weight.
    """

    def forward(self, objness: torch.Tensor, box_centers: torch.Tensor, box_scales: torch.Tensor,
                cls_preds: torch.Tensor, objness_t: torch.Tensor, center_t: torch.Tensor,
                scale_t: torch.Tensor, weight_t: torch.Tensor, class_t: torch.Tensor,
                class_mask: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        pos = objness_t > 0
        weight_t = weight_t * objness_t
        hard_obj_t = torch.where(pos, torch.ones_like(objness_t), objness_t.clamp(min=0))
        obj_mask = torch.where(pos, objness_t, (objness_t >= 0).to(objness_t.dtype))
        obj_loss = _bce_sum(objness, hard_obj_t, obj_mask)
        center_loss = _bce_sum(box_centers, center_t, weight_t)
        scale_loss = ((box_scales - scale_t).abs() * weight_t).flatten(1).sum(1)
        cls_loss = _bce_sum(cls_preds, class_t.clamp(min=0), class_mask * objness_t)
        return obj_loss, center_loss, scale_loss, cls_loss


def _bce_sum(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted sigmoid binary cross-entropy on logits, summed over all but the batch axis."""
    loss = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
    return loss.flatten(1).sum(1)
