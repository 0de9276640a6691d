"""Training-sample selection of GluonCV's Faster R-CNN, per image, in PyTorch.

* :func:`rpn_targets` = ``RPNTargetGenerator`` / ``RPNTargetSampler`` (GluonCV computes it in the
  data transform; here it runs inside the network on the image's real size).
* :func:`rcnn_sample` = ``RCNNTargetSampler`` and :func:`rcnn_targets` = ``RCNNTargetGenerator``.

Randomness comes from ``torch`` (an optional ``torch.Generator``), not NumPy/MXNet, so draws
differ from GluonCV's while their distribution is the same. Both samplers take their random choices
from a :class:`SampleDraws`, which a caller may replace to fix the draws. IoUs are
``torchvision.ops.box_iou`` (no "+1", as MXNet's ``box_iou``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.ops import box_iou

from ...ops.coder import RCNN_STDS, RPN_STDS, encode_boxes

__all__ = ["SampleDraws", "RPNTargets", "rpn_targets", "rcnn_sample", "rcnn_targets"]

_EPS = float(np.spacing(np.float32(1.0)))


class SampleDraws:
    """Where the training samplers take their random choices, one call per image and stage.

    * :meth:`rpn_order`: a random order of the image's anchors; :func:`rpn_targets` keeps the
      positives, then the negatives, that come first in it, up to its quotas (a uniformly random
      subset of each, as GluonCV's ``np.random.choice``).
    * :meth:`rcnn_pick`: the RoI candidates :func:`rcnn_sample` takes (GluonCV's
      ``RCNNTargetSampler``).

    Draws come from ``torch.randperm`` on ``generator`` (None: torch's global RNG). A subclass
    overriding a method fixes those draws, e.g. to replay another implementation's samples in a
    test; :class:`~gluon_bof.model_zoo.rcnn.FasterRCNN` uses its ``sample_draws`` attribute.
    """

    def __init__(self, generator: Optional[torch.Generator] = None):
        self.generator = generator

    def rpn_order(self, n: int) -> torch.Tensor:
        """A random permutation of ``0 .. n - 1`` (long)."""
        return torch.randperm(n, generator=self.generator, device="cpu")

    def rcnn_pick(self, positive: torch.Tensor, negative: torch.Tensor, num_sample: int,
                  max_pos: int) -> torch.Tensor:
        """Indices of the candidates to sample (at most ``num_sample``; they may repeat) given
        the ``[n]`` masks of the positive and negative candidates (the rest are invalid).

        GluonCV's slicing of a random shuffle: the first ``max_pos`` draws prefer positives,
        then negatives, then invalid candidates; the other ``num_sample - max_pos`` are taken from
        the shuffled candidates after position ``max_pos``, preferring negatives, then positives,
        then invalid ones. The two segments may draw a candidate twice. Ties keep the shuffled
        order (a stable sort, as MXNet's GPU ``argsort``, a radix sort, on which GluonCV trains),
        so with fewer than ``max_pos`` positives the first segment's negatives are the first
        shuffled ones, which the second segment rarely draws again. MXNet's CPU ``argsort``
        (``std::sort``) orders ties its own way, and there the first-segment negatives are nearly
        always drawn again: with ``k < max_pos`` positives about ``max_pos - k`` sampled
        negatives are duplicates (measured with MXNet 1.9.1 on CPU: 21 of 22 on average for 10
        positives among 2003 candidates, 128 samples)."""
        n = positive.numel()
        perm = torch.randperm(n, generator=self.generator, device="cpu").to(positive.device)
        pos_p, neg_p = positive[perm], negative[perm]
        key = pos_p.long() * 3 + neg_p.long() * 2
        top = torch.sort(key, descending=True, stable=True).indices[:max_pos]
        rest = torch.arange(max_pos, n, device=positive.device)
        key2 = neg_p[rest].long() * 4 + pos_p[rest].long() * 3
        bottom = rest[torch.sort(key2, descending=True, stable=True).indices[:num_sample - max_pos]]
        return perm[torch.cat([top, bottom])]


def _drop(mask: torch.Tensor, keep: int, rank: torch.Tensor) -> torch.Tensor:
    """Indices of ``mask``'s True entries beyond the ``keep`` of lowest ``rank``."""
    idx = mask.nonzero(as_tuple=True)[0]
    if idx.numel() <= keep:
        return idx[:0]
    return idx[torch.argsort(rank[idx])[keep:]]


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
                generator: Optional[torch.Generator] = None,
                draws: Optional[SampleDraws] = None) -> RPNTargets:
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
    "best" (then mostly overridden as negatives). The random subsets follow
    ``draws.rpn_order(N)`` (default: ``SampleDraws(generator)``).
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
    order = (draws or SampleDraws(generator)).rpn_order(n).to(anchors.device)
    rank = torch.argsort(order)  # position of each anchor in the drawn order
    samples[_drop(samples > 0, max_pos, rank)] = 0.0
    samples[_drop(samples < 0, num_sample - min(num_pos, max_pos), rank)] = 0.0
    cls_target = torch.where(samples > 0, 1.0, torch.where(samples < 0, 0.0, -1.0))
    box_target = anchors.new_zeros(n, 4)
    pos = samples > 0
    if pos.any():
        box_target[pos] = encode_boxes(gt_boxes.to(anchors)[matches[pos]], anchors[pos], stds)
    return RPNTargets(cls_target, box_target, matches)


def rcnn_sample(rois: torch.Tensor, roi_valid: torch.Tensor, gt_boxes: torch.Tensor,
                num_sample: int = 128, pos_iou_thresh: float = 0.5, pos_ratio: float = 0.25,
                generator: Optional[torch.Generator] = None,
                draws: Optional[SampleDraws] = None
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draws the RoIs of one image for the RCNN head (GluonCV's ``RCNNTargetSampler``).

    Args:
        rois: ``[P, 4]`` XYXY proposals; ``roi_valid [P]`` False for padding rows.
        gt_boxes: ``[M, 4]`` ground truths (no padding), also added to the candidates.

    The candidates are the proposals then the ground truths; positives have IoU >=
    ``pos_iou_thresh`` with some ground truth, every other valid candidate is negative.
    ``draws.rcnn_pick`` (default ``SampleDraws(generator)``) takes up to ``num_sample`` of them,
    preferring up to ``max_pos = round(num_sample * pos_ratio)`` positives and filling up with
    negatives (GluonCV's two segments, see :meth:`SampleDraws.rcnn_pick`); invalid candidates
    (and rows beyond the candidates) are ignored.

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
    chosen = (draws or SampleDraws(generator)).rcnn_pick(pos, neg, num_sample, max_pos)
    chosen = chosen.to(rois.device)
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
