"""Faster R-CNN (https://arxiv.org/abs/1506.01497) with GluonCV's C4 layout, names and contracts.

Parameter names mirror GluonCV's ``faster_rcnn_*`` (``net._collect_params_with_prefix()``;
norm ``gamma``/``beta`` -> ``weight``/``bias``): ``features.{0..6}.*`` (ResNet conv1, bn1, relu,
maxpool, layer1, layer2, layer3: stride 16), ``top_features.0.*`` (layer4, the RoI head),
``class_predictor.{weight,bias}`` (``C + 1`` logits, background first),
``box_predictor.{weight,bias}`` (``4C`` class-specific deltas, class-major),
``rpn.conv1.0.*``, ``rpn.score.*``, ``rpn.loc.*`` and the stored anchor map
``rpn.anchor_generator.anchors [1, 1, 128, 128, 60]`` (GluonCV stores it too), so GluonCV weights
load one to one (:func:`gluon_bof.model_zoo.load_gluoncv_params`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms, roi_align, roi_pool

from ...ops.coder import RCNN_STDS, decode_boxes
from ...ops.nms import non_degenerate
from ...nn.rcnn_loss import FasterRCNNLoss
from ..class_map import reuse_index_map
from ..resnetv1b import residual_stages
from ..gluoncv import GluonCVMapping, register_gluoncv_mapping
from .rpn import RPN
from .sampler import SampleDraws, rcnn_sample, rcnn_targets, rpn_targets

__all__ = ["FasterRCNN"]

register_gluoncv_mapping("FasterRCNN", GluonCVMapping(computed=("anchors",),
                                                      verify=("anchors",)))


def _out_channels(module: nn.Module, what: str) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"faster_rcnn.py: cannot infer the output channels of {what} "
                         f"(no Conv2d in it); pass {what}_channels=")
    return convs[-1].out_channels


class FasterRCNN(nn.Module):
    """Faster R-CNN detector (GluonCV's ``FasterRCNN``, C4: one feature level).

    Args:
        features: image -> feature map of stride ``strides`` (ResNet stem .. layer3).
        top_features: RoI features ``[R, Cf, 14, 14]`` -> ``[R, Ct, h, w]`` (ResNet layer4),
            followed by global average pooling; None: pooled features go straight to pooling.
        classes: foreground class names (``C = len(classes)``; background is extra, index 0 of
            the class logits).
        box_features: optional module from the top features to ``[R, D]`` instead of global
            average pooling.
        short, max_size: the input size the model was trained for (informative, as GluonCV).
        nms_thresh, nms_topk, post_nms, force_nms: final detection NMS, see :meth:`set_nms`.
        roi_mode: 'align' (``torchvision.ops.roi_align``, ``sampling_ratio=2``,
            ``aligned=False``: MXNet's ``ROIAlign``) or 'pool'; roi_size: ``(h, w)``.
        strides: feature stride; clip: bound of decoded log-size deltas (COCO models: 4.14).
        rpn_*, base_size, scales, ratios, alloc_size: RPN width, anchors and proposals (see
            :class:`.rpn.RPN`; defaults are GluonCV's class defaults, e.g. scales (8, 16, 32);
            the zoo builders set (2, 4, 8, 16, 32)); rpn_num_sample,
            rpn_pos_iou_thresh, rpn_neg_iou_thresh, rpn_pos_ratio: RPN target sampling.
        num_sample, pos_iou_thresh, pos_ratio: RoIs sampled per training image.
        max_num_gt: accepted for GluonCV compatibility (no upper bound here).
        label_smooth, label_smooth_eps, mixup_mode, rpn_smoothl1_rho, rcnn_smoothl1_rho: the
            losses, see :class:`gluon_bof.nn.rcnn_loss.FasterRCNNLoss`.
        features_channels, top_channels: output channels of ``features`` / of the box features;
            inferred from the last Conv2d when None.
        rpn: a ready region proposal network with :class:`.rpn.RPN`'s ``forward`` contract
            (e.g. the multi-level one of :mod:`.fpn`); None builds the single-level RPN from the
            ``rpn_*`` / anchor options.

    ``forward(x, labels=None, image_sizes=None)`` with ``x [B, 3, H, W]`` normalised RGB, images
    zero-padded at the bottom/right to a common size; ``image_sizes``: per image the real
    ``(height, width)`` (default ``(H, W)``): anchors crossing a real image's border get no RPN
    target and proposals are clipped to it.

    * without labels: ``ids [B, K, 1]``, ``scores [B, K, 1]``, ``bboxes [B, K, 4]`` (XYXY
      input pixels, not clipped, as GluonCV), sorted by score, padded with -1,
      ``K = post_nms`` (or all ``P * C`` rows for -1).
    * with ``labels [B, M, 5 or 6]`` (XYXY input pixels, class id, mix weight; rows with a
      negative class id are padding; boxes of zero size are ignored): a dict of scalar losses
      'rpn_obj_loss', 'rpn_box_loss', 'rcnn_cls_loss', 'rcnn_box_loss' (GluonCV's
      normalisation per image, averaged over the batch), and the samplers' statistics
      'rpn_pos', 'rpn_neg', 'rcnn_pos', 'rcnn_neg' (positive / negative samples per image,
      detached: MegDet's Table 1; keys not ending in 'loss' are not part of the loss).

    Attribute ``sample_draws``: where the training samplers take their random choices (the RPN's
    anchor subsets, the sampled RoIs), a :class:`.sampler.SampleDraws` on torch's global RNG by
    default; assign one with a ``torch.Generator`` to fix them, or a subclass that overrides its
    methods (e.g. a replay of GluonCV's draws, as tests/scripts/test_faster_rcnn_trajectory.py).
    """

    def __init__(self, features: nn.Module, top_features: Optional[nn.Module],
                 classes: Sequence[str], box_features: Optional[nn.Module] = None,
                 short=600, max_size: int = 1000, nms_thresh: float = 0.3, nms_topk: int = 400,
                 post_nms: int = 100, roi_mode: str = "align",
                 roi_size: Tuple[int, int] = (14, 14), strides: int = 16,
                 clip: Optional[float] = None, rpn_channel: int = 1024, base_size: int = 16,
                 scales: Sequence[float] = (8, 16, 32),
                 ratios: Sequence[float] = (0.5, 1, 2), alloc_size: Tuple[int, int] = (128, 128),
                 rpn_nms_thresh: float = 0.7, rpn_train_pre_nms: int = 12000,
                 rpn_train_post_nms: int = 2000, rpn_test_pre_nms: int = 6000,
                 rpn_test_post_nms: int = 300, rpn_min_size: float = 16,
                 rpn_num_sample: int = 256, rpn_pos_iou_thresh: float = 0.7,
                 rpn_neg_iou_thresh: float = 0.3, rpn_pos_ratio: float = 0.5,
                 num_sample: int = 128, pos_iou_thresh: float = 0.5, pos_ratio: float = 0.25,
                 max_num_gt: int = 300, force_nms: bool = False, label_smooth: bool = False,
                 label_smooth_eps: float = 0.1, mixup_mode: str = "paper",
                 rpn_smoothl1_rho: float = 1.0 / 9.0, rcnn_smoothl1_rho: float = 1.0,
                 features_channels: Optional[int] = None, top_channels: Optional[int] = None,
                 rpn: Optional[nn.Module] = None):
        super().__init__()
        if not classes:
            raise ValueError("faster_rcnn.py: classes must name at least one class")
        if roi_mode.lower() not in ("align", "pool"):
            raise ValueError(f"faster_rcnn.py: roi_mode must be 'align' or 'pool', "
                             f"got {roi_mode!r}")
        if len(roi_size) != 2:
            raise ValueError(f"faster_rcnn.py: roi_size must be (h, w), got {roi_size}")
        self._classes = list(classes)
        self.short, self.max_size = short, max_size
        self.set_nms(nms_thresh, nms_topk, force_nms, post_nms)
        self._roi_mode = roi_mode.lower()
        self._roi_size = tuple(roi_size)
        self._stride = strides
        self._clip = clip
        self._max_num_gt = max_num_gt
        self.rpn_sampling = dict(num_sample=rpn_num_sample, pos_iou_thresh=rpn_pos_iou_thresh,
                                 neg_iou_thresh=rpn_neg_iou_thresh, pos_ratio=rpn_pos_ratio)
        self.rcnn_sampling = dict(num_sample=num_sample, pos_iou_thresh=pos_iou_thresh,
                                  pos_ratio=pos_ratio)
        self.sample_draws = SampleDraws()
        self.features = features
        self.top_features = top_features
        self.box_features = box_features
        feat_ch = features_channels or _out_channels(features, "features")
        if top_channels is None:
            top_channels = (_out_channels(box_features or top_features, "top")
                            if (box_features or top_features) is not None else feat_ch)
        self.class_predictor = nn.Linear(top_channels, self.num_class + 1)
        self.box_predictor = nn.Linear(top_channels, self.num_class * 4)
        nn.init.normal_(self.class_predictor.weight, 0.0, 0.01)
        nn.init.normal_(self.box_predictor.weight, 0.0, 0.001)
        nn.init.zeros_(self.class_predictor.bias)
        nn.init.zeros_(self.box_predictor.bias)
        self.rpn = rpn if rpn is not None else RPN(
            feat_ch, rpn_channel, strides, base_size, scales, ratios, alloc_size, clip,
            rpn_nms_thresh, rpn_train_pre_nms, rpn_train_post_nms, rpn_test_pre_nms,
            rpn_test_post_nms, rpn_min_size)
        self.configure_loss(label_smooth=label_smooth, label_smooth_eps=label_smooth_eps, mixup_mode=mixup_mode,
                            rpn_smoothl1_rho=rpn_smoothl1_rho, rcnn_smoothl1_rho=rcnn_smoothl1_rho)

    def checkpoint_stages(self) -> List[nn.Module]:
        """Every ResNet stage (``layer1`` .. ``layer4``) of the backbone, the RoI head's
        ``top_features`` and an FPN body: what ``--grad-checkpoint`` recomputes."""
        return residual_stages(self)

    def configure_loss(self, *, label_smooth: bool = False, label_smooth_eps: float = 0.1,
                       mixup_mode: str = "paper", rpn_smoothl1_rho: float = 1.0 / 9.0,
                       rcnn_smoothl1_rho: float = 1.0) -> "FasterRCNN":
        """Training-only settings of the losses (not architecture: an evaluation rebuild needs
        none of them), see :class:`~gluon_bof.nn.rcnn_loss.FasterRCNNLoss`. Returns ``self``."""
        self.loss = FasterRCNNLoss(rpn_smoothl1_rho, rcnn_smoothl1_rho, label_smooth, label_smooth_eps, mixup_mode)
        return self

    @property
    def classes(self) -> List[str]:
        """Foreground class names."""
        return self._classes

    @property
    def num_class(self) -> int:
        """Number of foreground classes (no background)."""
        return len(self._classes)

    def set_nms(self, nms_thresh: float = 0.3, nms_topk: int = 400, force_nms: bool = False,
                post_nms: int = 100) -> None:
        """Final NMS (GluonCV's ``set_nms``): per class (all classes together when
        ``force_nms``), over each class's ``nms_topk`` best boxes (-1: all) scoring above 0.01,
        suppressing IoU > ``nms_thresh`` (outside (0, 1): no suppression); the ``post_nms`` best
        detections over all classes are returned (-1: all)."""
        self.nms_thresh, self.nms_topk = nms_thresh, nms_topk
        self.force_nms, self.post_nms = force_nms, post_nms

    # ------------------------------------------------------------------ shared pieces
    def _pool(self, feat: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """RoI features of ``rois [B, R, 4]`` -> ``[B * R, C, h, w]``."""
        B, R = rois.shape[:2]
        idx = torch.arange(B, device=rois.device, dtype=rois.dtype).repeat_interleave(R)
        boxes = torch.cat([idx[:, None], rois.reshape(-1, 4).to(feat.dtype)], dim=1)
        if self._roi_mode == "align":
            return roi_align(feat, boxes, self._roi_size, 1.0 / self._stride, sampling_ratio=2,
                             aligned=False)
        return roi_pool(feat, boxes, self._roi_size, 1.0 / self._stride)

    def _head(self, pooled: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        top = self.top_features(pooled) if self.top_features is not None else pooled
        if self.box_features is None:
            box_feat = F.adaptive_avg_pool2d(top, 1).flatten(1)
        else:
            box_feat = self.box_features(top)
        return self.class_predictor(box_feat), self.box_predictor(box_feat)

    def _sizes(self, x: torch.Tensor, image_sizes) -> List[Tuple[int, int]]:
        B, _, H, W = x.shape
        if image_sizes is None:
            return [(H, W)] * B
        sizes = [(int(h), int(w)) for h, w in (image_sizes.tolist() if torch.is_tensor(
            image_sizes) else image_sizes)]
        if len(sizes) != B or any(h > H or w > W or h <= 0 or w <= 0 for h, w in sizes):
            raise ValueError(f"faster_rcnn.py: image_sizes must hold {B} (h, w) pairs within "
                             f"the input's {H}x{W}, got {sizes}")
        return sizes

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None,
                image_sizes=None):
        sizes = self._sizes(x, image_sizes)
        feat = self.features(x)
        anchors, logits, deltas, proposals = self.rpn(feat, sizes, training=labels is not None)
        if labels is not None:
            return self._losses(feat, anchors, logits, deltas, proposals, labels, sizes)
        return self._detect(feat, proposals)

    # ------------------------------------------------------------------ inference
    def _detect(self, feat: torch.Tensor, proposals) -> Tuple[torch.Tensor, ...]:
        rois, _, valid = proposals
        B, P = rois.shape[:2]
        C = self.num_class
        cls_pred, box_pred = self._head(self._pool(feat, rois))
        prob = F.softmax(cls_pred.float(), dim=-1).reshape(B, P, C + 1)[..., 1:]
        boxes = decode_boxes(box_pred.float().reshape(B, P, C, 4), rois[:, :, None, :].float(),
                             RCNN_STDS, self._clip)
        prob = torch.where(valid[..., None] & (prob > 0.01), prob, torch.zeros_like(prob))
        k = self.post_nms if self.post_nms > 0 else P * C
        out = boxes.new_full((B, k, 6), -1.0)
        cls_ids = torch.arange(C, device=prob.device).expand(P, C)
        for b in range(B):
            score = prob[b]
            cand = (score > 0) & non_degenerate(boxes[b])  # clipped boxes off the image have no area
            if self.nms_topk > 0:
                rank = torch.empty_like(cls_ids)
                order = torch.sort(score, dim=0, descending=True, stable=True).indices
                rank.scatter_(0, order, torch.arange(P, device=prob.device)[:, None].expand(P, C))
                cand &= rank < self.nms_topk
            s, bx, ids = score[cand], boxes[b][cand], cls_ids[cand]
            if 0 < self.nms_thresh < 1:
                groups = torch.zeros_like(ids) if self.force_nms else ids
                keep = batched_nms(bx, s, groups, self.nms_thresh)
            else:
                keep = torch.sort(s, descending=True, stable=True).indices
            keep = keep[:k]
            n = keep.numel()
            out[b, :n, 0] = ids[keep].to(out.dtype)
            out[b, :n, 1] = s[keep]
            out[b, :n, 2:] = bx[keep]
        return out[..., :1], out[..., 1:2], out[..., 2:]

    # ------------------------------------------------------------------ training
    def _losses(self, feat, anchors, logits, deltas, proposals, labels, sizes):
        if labels.dim() != 3 or labels.shape[-1] < 5:
            raise ValueError(f"faster_rcnn.py: labels must be [B, M, 5 or 6] (xyxy, class, mix), "
                             f"got {tuple(labels.shape)}")
        B = logits.shape[0]  # feat may be a list of levels (FPN)
        if labels.shape[0] != B:
            raise ValueError(f"faster_rcnn.py: {labels.shape[0]} label rows for {B} images")
        labels = labels.to(device=logits.device, dtype=torch.float32)
        rois, _, valid = proposals
        rpn_cls, rpn_box, rpn_w = [], [], []
        s_rois, r_cls, r_box, r_w = [], [], [], []
        mixed = False
        with torch.no_grad():
            for b in range(B):
                lab = labels[b]
                keep = (lab[:, 4] >= 0) & (lab[:, 2] > lab[:, 0]) & (lab[:, 3] > lab[:, 1])
                lab = lab[keep]
                gt, gid = lab[:, :4], lab[:, 4]
                mix = lab[:, 5] if lab.shape[1] > 5 else torch.ones_like(gid)
                mixed = mixed or bool((mix < 1).any())
                t = rpn_targets(anchors, gt, sizes[b], draws=self.sample_draws,
                                **self.rpn_sampling)
                rpn_cls.append(t.cls_target)
                rpn_box.append(t.box_target)
                rpn_w.append(torch.where(t.cls_target > 0, mix[t.matches] if gt.numel() else
                                         torch.ones_like(t.cls_target),
                                         torch.ones_like(t.cls_target)))
                sr, samples, matches = rcnn_sample(rois[b], valid[b], gt, draws=self.sample_draws,
                                                   **self.rcnn_sampling)
                ct, bt = rcnn_targets(sr, samples, matches, gt, gid)
                s_rois.append(sr)
                r_cls.append(ct)
                r_box.append(bt)
                r_w.append(torch.where(ct > 0, mix[matches] if gt.numel() else
                                       torch.ones_like(bt[:, 0]), torch.ones_like(bt[:, 0])))
        s_rois = torch.stack(s_rois)
        S = s_rois.shape[1]
        cls_pred, box_pred = self._head(self._pool(feat, s_rois))
        cls_pred = cls_pred.reshape(B, S, self.num_class + 1)
        r_cls = torch.stack(r_cls)
        box_pred = box_pred.reshape(B, S, self.num_class, 4)
        which = (r_cls - 1).clamp(min=0)[..., None, None].expand(B, S, 1, 4)
        box_pred = box_pred.gather(2, which).squeeze(2)
        rpn_cls = torch.stack(rpn_cls)
        losses = self.loss(logits, rpn_cls, deltas, torch.stack(rpn_box), torch.stack(rpn_w), cls_pred, r_cls,
                           box_pred, torch.stack(r_box), torch.stack(r_w), mixed=mixed)
        # MegDet's Table 1: positive and negative samples per image, RPN and RCNN (statistics, not losses)
        losses.update(rpn_pos=(rpn_cls == 1).sum() / B, rpn_neg=(rpn_cls == 0).sum() / B,
                      rcnn_pos=(r_cls > 0).sum() / B, rcnn_neg=(r_cls == 0).sum() / B)
        return losses

    # ------------------------------------------------------------------ classes
    def reset_class(self, classes: Sequence[str], reuse_weights=None) -> None:
        """Changes the classes (GluonCV's ``reset_class``): new predictors, optionally copying
        rows of old classes. ``reuse_weights``: ``{new: old}`` (indices or names) or a list of
        names kept from the old classes; the background row is always kept."""
        old = self._classes
        self._classes = list(classes)
        reuse = reuse_index_map(self._classes, old, reuse_weights, "faster_rcnn.py")
        old_cls, old_box = self.class_predictor, self.box_predictor
        d = old_cls.in_features
        self.class_predictor = nn.Linear(d, self.num_class + 1).to(old_cls.weight)
        self.box_predictor = nn.Linear(d, self.num_class * 4).to(old_box.weight)
        nn.init.normal_(self.class_predictor.weight, 0.0, 0.01)
        nn.init.normal_(self.box_predictor.weight, 0.0, 0.001)
        nn.init.zeros_(self.class_predictor.bias)
        nn.init.zeros_(self.box_predictor.bias)
        with torch.no_grad():
            for new_p, old_p in ((self.class_predictor.weight, old_cls.weight),
                                 (self.class_predictor.bias, old_cls.bias)):
                new_p[0] = old_p[0]
                for k, v in reuse.items():
                    new_p[k + 1] = old_p[v + 1]
            for new_p, old_p in ((self.box_predictor.weight, old_box.weight),
                                 (self.box_predictor.bias, old_box.bias)):
                for k, v in reuse.items():
                    new_p[k * 4:k * 4 + 4] = old_p[v * 4:v * 4 + 4]
