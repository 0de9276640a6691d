"""Training-sample selection of GluonCV's Faster R-CNN, per image, in PyTorch.

* :func:`rpn_targets` = ``RPNTargetGenerator`` / ``RPNTargetSampler`` (GluonCV computes it in the
  data transform; here it runs inside the network on the image's real size).
* :func:`rcnn_sample` = ``RCNNTargetSampler`` and :func:`rcnn_targets` = ``RCNNTargetGenerator``.

Randomness comes from ``torch`` (an optional ``torch.Generator``), not NumPy/MXNet, so draws
differ from GluonCV's while their distribution is the same. IoUs are ``torchvision.ops.box_iou``
(no "+1", as MXNet's ``box_iou``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.ops import box_iou

from .coder import RCNN_STDS, RPN_STDS, encode_boxes

__all__ = ["RPNTargets", "rpn_targets", "rcnn_sample", "rcnn_targets"]

_EPS = float(np.spacing(np.float32(1.0)))


def _drop(mask: torch.Tensor, keep: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Indices of ``mask``'s True entries beyond a random subset of ``keep`` of them."""
    idx = mask.nonzero(as_tuple=True)[0]
    if idx.numel() <= keep:
        return idx[:0]
    perm = torch.randperm(idx.numel(), generator=generator, device="cpu").to(idx.device)
    return idx[perm[keep:]]


class RPNTargets(NamedTuple):
    """``cls_target [N]`` (1 positive, 0 negative, -1 ignored), ``box_target [N, 4]`` (zero
    except at positives), ``matches [N]`` (index of the matched ground truth; meaningful at
    positives)."""
    cls_target: torch.Tensor
    box_target: torch.Tensor
    matches: torch.Tensor


def rpn_targets(anchors: torch.Tensor, gt_boxes: torch.Tensor, image_size: Tuple[int, int],
                num_sample: int = 256, pos_iou_thresh: float = 0.7, neg_iou_thresh: float = 0.3,
                pos_ratio: float = 0.5, stds: Sequence[float] = RPN_STDS,
                generator: Optional[torch.Generator] = None) -> RPNTargets:
    """RPN training targets of one image (GluonCV's rules).

    Args:
        anchors: ``[N, 4]`` XYXY input-pixel anchors.
        gt_boxes: ``[M, 4]`` XYXY ground truths of this image (no padding; M may be 0).
        image_size: ``(height, width)`` of the real image: anchors not inside
            ``[0, width) x [0, height)`` (GluonCV: ``x1 < 0 or y1 < 0 or x2 >= width or
            y2 >= height``) are ignored.

    Rules: an anchor is positive if its best IoU is >= ``pos_iou_thresh`` or it is a best
    anchor of some ground truth (IoU within float32 eps of that box's maximum); negative
    (overriding the best-anchor rule, as GluonCV) if its best IoU is < ``neg_iou_thresh``.
    At most ``round(num_sample * pos_ratio)`` positives are kept at random, and negatives fill
    up to ``num_sample``. A ground truth that overlaps no valid anchor (maximum IoU 0, e.g. a
    degenerate box) has no best anchor here; GluonCV would mark every zero-IoU anchor as its
    "best" (then mostly overridden as negatives).
    """
    n = anchors.shape[0]
    h, w = image_size
    valid = ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] < w)
             & (anchors[:, 3] < h))
    if gt_boxes.numel():
        ious = box_iou(anchors, gt_boxes.to(anchors))
        ious = torch.where(valid[:, None], ious, torch.full_like(ious, -1.0))
        max_a, matches = ious.max(dim=1)
        max_g = ious.max(dim=0, keepdim=True).values
        best = ((ious + _EPS > max_g) & (max_g > 0)).any(dim=1)
    else:
        max_a = torch.where(valid, anchors.new_zeros(n), anchors.new_full((n,), -1.0))
        matches = torch.zeros(n, dtype=torch.long, device=anchors.device)
        best = torch.zeros(n, dtype=torch.bool, device=anchors.device)
    samples = torch.zeros(n, device=anchors.device)
    samples[best | (max_a >= pos_iou_thresh)] = 1.0
    samples[(max_a < neg_iou_thresh) & (max_a >= 0)] = -1.0
    max_pos = int(round(num_sample * pos_ratio))
    num_pos = int((samples > 0).sum())
    samples[_drop(samples > 0, max_pos, generator)] = 0.0
    samples[_drop(samples < 0, num_sample - min(num_pos, max_pos), generator)] = 0.0
    cls_target = torch.where(samples > 0, 1.0, torch.where(samples < 0, 0.0, -1.0))
    box_target = anchors.new_zeros(n, 4)
    pos = samples > 0
    if pos.any():
        box_target[pos] = encode_boxes(gt_boxes.to(anchors)[matches[pos]], anchors[pos], stds)
    return RPNTargets(cls_target, box_target, matches)


def rcnn_sample(rois: torch.Tensor, roi_valid: torch.Tensor, gt_boxes: torch.Tensor,
                num_sample: int = 128, pos_iou_thresh: float = 0.5, pos_ratio: float = 0.25,
                generator: Optional[torch.Generator] = None
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draws the RoIs of one image for the RCNN head (GluonCV's ``RCNNTargetSampler``).

    Args:
        rois: ``[P, 4]`` XYXY proposals; ``roi_valid [P]`` False for padding rows.
        gt_boxes: ``[M, 4]`` ground truths (no padding), also added to the candidates.

    The candidates (proposals then ground truths) are shuffled; positives have IoU >=
    ``pos_iou_thresh`` with some ground truth, every other valid candidate is negative. The
    first ``max_pos = round(num_sample * pos_ratio)`` draws prefer positives, then negatives;
    the other ``num_sample - max_pos`` are taken from the shuffled candidates after position
    ``max_pos`` preferring negatives, then positives (GluonCV's slicing). Invalid candidates are
    only drawn when nothing else is left; they (and rows beyond the candidates) are ignored.
    As in GluonCV, the two segments can draw the same candidate twice (e.g. a negative taken
    into the first segment when positives are few).

    Returns:
        ``rois [num_sample, 4]``, ``samples [num_sample]`` (1 positive, -1 negative,
        0 ignored) and ``matches [num_sample]`` (best ground truth index; 0 without any).
    """
    max_pos = int(round(num_sample * pos_ratio))
    gt_boxes = gt_boxes.to(rois)
    all_rois = torch.cat([rois, gt_boxes], dim=0)
    all_valid = torch.cat([roi_valid.bool(), roi_valid.new_ones(gt_boxes.shape[0]).bool()])
    n = all_rois.shape[0]
    if gt_boxes.numel():
        max_iou, matches = box_iou(all_rois, gt_boxes).max(dim=1)
        pos = all_valid & (max_iou >= pos_iou_thresh)
    else:
        matches = torch.zeros(n, dtype=torch.long, device=rois.device)
        pos = torch.zeros(n, dtype=torch.bool, device=rois.device)
    neg = all_valid & ~pos
    perm = torch.randperm(n, generator=generator, device="cpu").to(rois.device)
    pos_p, neg_p = pos[perm], neg[perm]
    # first segment: positives (3) > negatives (2) > ignored (0), stable in shuffled order
    key = pos_p.long() * 3 + neg_p.long() * 2
    top = torch.sort(key, descending=True, stable=True).indices[:max_pos]
    # second segment: from shuffled positions max_pos.., negatives (4) > positives (3) > ignored
    rest = torch.arange(max_pos, n, device=rois.device)
    key2 = neg_p[rest].long() * 4 + pos_p[rest].long() * 3
    bottom = rest[torch.sort(key2, descending=True, stable=True).indices[:num_sample - max_pos]]
    chosen = perm[torch.cat([top, bottom])]
    samples = torch.where(pos[chosen], 1.0, torch.where(neg[chosen], -1.0, 0.0))
    out_rois = all_rois[chosen]
    out_matches = matches[chosen]
    short = num_sample - chosen.numel()
    if short > 0:  # fewer candidates than samples: pad with ignored rows
        out_rois = torch.cat([out_rois, out_rois.new_zeros(short, 4)])
        samples = torch.cat([samples, samples.new_zeros(short)])
        out_matches = torch.cat([out_matches, out_matches.new_zeros(short)])
    return out_rois, samples.to(rois.dtype), out_matches


def rcnn_targets(rois: torch.Tensor, samples: torch.Tensor, matches: torch.Tensor,
                 gt_boxes: torch.Tensor, gt_ids: torch.Tensor,
                 stds: Sequence[float] = RCNN_STDS) -> Tuple[torch.Tensor, torch.Tensor]:
    """Class and box targets of sampled RoIs (GluonCV's ``RCNNTargetGenerator``).

    Returns ``cls_target [S]`` (long: matched class + 1 for positives, 0 for negatives, -1
    ignored; background is 0) and ``box_target [S, 4]`` (the matched box encoded against the
    RoI with ``stds``, zero except at positives; used with the matched class's box outputs).
    """
    pos = samples > 0
    cls_target = torch.full_like(matches, -1)
    cls_target[samples < 0] = 0
    box_target = rois.new_zeros(rois.shape[0], 4)
    if pos.any():
        cls_target[pos] = gt_ids.long()[matches[pos]] + 1
        box_target[pos] = encode_boxes(gt_boxes.to(rois)[matches[pos]], rois[pos], stds)
    return cls_target, box_target
