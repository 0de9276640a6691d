"""Faster R-CNN losses (GluonCV's definitions) with the Bag of Freebies' mixup weighting and
label smoothing.

GluonCV (scripts/detection/faster_rcnn/train_faster_rcnn.py, ``ForwardBackwardTask``):

* RPN objectness: sigmoid binary cross-entropy over the sampled anchors (positives and
  negatives); RPN boxes: smooth L1 (Huber, ``rho = 1/9``) over the positives' 4 deltas;
* RCNN class: softmax cross-entropy over the sampled RoIs (``C + 1`` classes, background 0);
  RCNN boxes: smooth L1 (``rho = 1``) over the positives' deltas of their own class;
* each loss is summed and divided by the number of sampled items of its stage (anchors, resp.
  RoIs: positives and negatives, the boxes' losses too), per image (GluonCV: per device of one
  image); here then averaged over the batch.

Mixup (``mixup_mode``):

* ``'paper'`` (default; Zhang et al. 2019, "Bag of Freebies for Training Object Detection
  Neural Networks", Sec. 3.1): every sampled anchor / RoI matched to an object takes that
  object's mix weight (label column 5) in its classification and box losses; background samples
  weigh 1. Normalisers are unweighted counts, so a box of weight ``w`` contributes exactly ``w``
  times its unweighted loss.
* ``'gluoncv'``: GluonCV 0.10.5's behaviour. Its ``--mixup`` sets the dataset's ratio to a fixed
  0.5 (``set_mixup(np.random.uniform, 0.5, 0.5)``), drops the weight column (only
  ``label[:, :, :5]`` reaches the targets) and multiplies the whole loss (all four terms) by
  ``mix_ratio = 0.5`` in the epochs where mixup is on (1.0 in the last ``--no-mixup-epochs``;
  with the VOC defaults, 20 epochs and 20 no-mixup epochs, mixup is never on). Here: weights are
  ignored and every term is multiplied by ``gluoncv_mix_ratio`` (0.5) when ``mixed`` is True
  (the network sets it when any valid box of the batch has a mix weight below 1).

Label smoothing (paper Eq. 3) on the RCNN class head only: targets ``1 - eps`` for the true class
and ``eps / (K - 1)`` for each other class, ``K = C + 1`` including background.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn
from torch.nn import functional as F

from .smoothing import smoothing_values

__all__ = ["FasterRCNNLoss", "smooth_label_cross_entropy"]

_MODES = ("paper", "gluoncv")


def smooth_label_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                               eps: float = 0.1) -> torch.Tensor:
    """Per-row cross-entropy ``[...]`` of ``logits [..., K]`` against the paper's smoothed
    one-hot of ``target [...]`` (long, in ``[0, K)``): ``1 - eps`` on the target,
    ``eps / (K - 1)`` elsewhere. ``eps = 0`` is the plain cross-entropy."""
    K = logits.shape[-1]
    logp = F.log_softmax(logits.float(), dim=-1)
    if K < 2:
        raise ValueError("rcnn_loss.py: label smoothing needs at least 2 classes")
    on, off = smoothing_values(K, eps, "paper")
    t = torch.full_like(logp, off)
    t.scatter_(-1, target.clamp(min=0).unsqueeze(-1), on)
    return -(t * logp).sum(dim=-1)


class FasterRCNNLoss(nn.Module):
    """The four Faster R-CNN losses.

    Args:
        rpn_smoothl1_rho, rcnn_smoothl1_rho: smooth L1 transition points (GluonCV's
            ``--rpn-smoothl1-rho 1/9``, ``--rcnn-smoothl1-rho 1``).
        label_smooth, label_smooth_eps: paper Eq. 3 smoothing of the RCNN class targets.
        mixup_mode: ``'paper'`` or ``'gluoncv'`` (see the module docstring).
        gluoncv_mix_ratio: the whole-loss factor of ``'gluoncv'`` mode on mixed batches.

    ``forward`` inputs (B images; N anchors, S sampled RoIs per image):
        rpn_logits ``[B, N]``, rpn_cls_target ``[B, N]`` (1 positive, 0 negative, -1 ignored),
        rpn_box_pred / rpn_box_target ``[B, N, 4]``, rpn_weight ``[B, N]`` (mix weight of the
        matched object at positives, 1 elsewhere); rcnn_logits ``[B, S, C + 1]``,
        rcnn_cls_target ``[B, S]`` (long; -1 ignored, 0 background), rcnn_box_pred /
        rcnn_box_target ``[B, S, 4]`` (the prediction for the target's own class),
        rcnn_weight ``[B, S]``; mixed: whether the batch is mixed (``'gluoncv'`` mode only).

    Returns ``{'rpn_obj_loss', 'rpn_box_loss', 'rcnn_cls_loss', 'rcnn_box_loss'}``, scalars.
    """

    def __init__(self, rpn_smoothl1_rho: float = 1.0 / 9.0, rcnn_smoothl1_rho: float = 1.0,
                 label_smooth: bool = False, label_smooth_eps: float = 0.1,
                 mixup_mode: str = "paper", gluoncv_mix_ratio: float = 0.5):
        super().__init__()
        if mixup_mode not in _MODES:
            raise ValueError(f"rcnn_loss.py: mixup_mode must be one of {_MODES}, "
                             f"got {mixup_mode!r}")
        self.rpn_rho = rpn_smoothl1_rho
        self.rcnn_rho = rcnn_smoothl1_rho
        self.label_smooth = label_smooth
        self.label_smooth_eps = label_smooth_eps
        self.mixup_mode = mixup_mode
        self.gluoncv_mix_ratio = gluoncv_mix_ratio

    @staticmethod
    def _huber(pred: torch.Tensor, target: torch.Tensor, rho: float) -> torch.Tensor:
        if rho <= 0:
            return (pred - target).abs().sum(-1)
        return F.smooth_l1_loss(pred.float(), target.float(), reduction="none",
                                beta=rho).sum(-1)

    def forward(self, rpn_logits, rpn_cls_target, rpn_box_pred, rpn_box_target, rpn_weight,
                rcnn_logits, rcnn_cls_target, rcnn_box_pred, rcnn_box_target, rcnn_weight,
                mixed: bool = False) -> Dict[str, torch.Tensor]:
        if self.mixup_mode == "gluoncv":
            rpn_weight = torch.ones_like(rpn_weight)
            rcnn_weight = torch.ones_like(rcnn_weight)
        rpn_w = rpn_weight.float()
        rcnn_w = rcnn_weight.float()
        # RPN
        rpn_sampled = rpn_cls_target >= 0
        rpn_pos = rpn_cls_target > 0
        n_rpn = rpn_sampled.sum(dim=1).clamp(min=1).float()
        bce = F.binary_cross_entropy_with_logits(rpn_logits.float(),
                                                 rpn_cls_target.clamp(min=0).float(),
                                                 reduction="none")
        rpn_obj = (bce * rpn_w * rpn_sampled).sum(dim=1) / n_rpn
        rpn_box = (self._huber(rpn_box_pred, rpn_box_target, self.rpn_rho) * rpn_w
                   * rpn_pos).sum(dim=1) / n_rpn
        # RCNN
        rcnn_sampled = rcnn_cls_target >= 0
        rcnn_pos = rcnn_cls_target > 0
        n_rcnn = rcnn_sampled.sum(dim=1).clamp(min=1).float()
        eps = self.label_smooth_eps if self.label_smooth else 0.0
        ce = smooth_label_cross_entropy(rcnn_logits, rcnn_cls_target, eps)
        rcnn_cls = (ce * rcnn_w * rcnn_sampled).sum(dim=1) / n_rcnn
        rcnn_box = (self._huber(rcnn_box_pred, rcnn_box_target, self.rcnn_rho) * rcnn_w
                    * rcnn_pos).sum(dim=1) / n_rcnn
        scale = self.gluoncv_mix_ratio if (self.mixup_mode == "gluoncv" and mixed) else 1.0
        names = ("rpn_obj_loss", "rpn_box_loss", "rcnn_cls_loss", "rcnn_box_loss")
        return {k: v.mean() * scale for k, v in zip(names, (rpn_obj, rpn_box, rcnn_cls,
                                                              rcnn_box))}
