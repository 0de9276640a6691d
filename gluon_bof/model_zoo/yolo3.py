"""YOLOv3 (https://arxiv.org/abs/1804.02767) with GluonCV's layers, parameter names and contracts.

Parameter names mirror GluonCV's structural names (``_collect_params_with_prefix``; BatchNorm
``gamma``/``beta`` -> ``weight``/``bias``): ``stages.{0,1,2}.*`` (backbone slices, shallow to deep),
``yolo_blocks.{i}.body.{0..4}.{0,1}.*`` and ``yolo_blocks.{i}.tip.{0,1}.*``,
``transitions.{0,1}.{0,1}.*``, ``yolo_outputs.{i}.prediction.{weight,bias}`` and the constant
buffers ``yolo_outputs.{i}.anchors [1, 1, 3, 2]`` / ``yolo_outputs.{i}.offsets [1, 128, 128, 2]``
(GluonCV stores both in its .params too, the offsets as ``[1, 1, 128, 128, 2]``: export restores
that shape; ours is 4-D so that ``net.to(memory_format=torch.channels_last)`` works). Heads run deep to shallow: ``yolo_outputs.0`` is the
stride-32 head (anchors 116x90, 156x198, 373x326), ``.1`` stride 16, ``.2`` stride 8.

Prediction channels of a head: ``A * (5 + C)``, anchor-major; per anchor ``[tx, ty, tw, th,
objectness, class_0 .. class_{C-1}]``.
"""
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ..data.coco import COCO_CLASSES
from ..data.voc import VOC_CLASSES
from ..nn.loss import YOLOV3Loss
from .class_map import reuse_index_map
from .darknet import conv_bn_leaky, darknet53
from .mobilenet import MobileNet
from .model_store import load_weights
from .registry import get_model, register_model
from ..ops.nms import box_nms
from .yolo_target import ignore_mask, merge_targets, prefetch_targets

__all__ = ["YOLOOutputV3", "YOLODetectionBlockV3", "YOLOV3", "VOC_CLASSES", "COCO_CLASSES"]


class YOLOOutputV3(nn.Module):
    """One YOLO head: a 1x1 conv predicting ``A * (5 + C)`` channels, and box decoding.

    ``forward(x)`` with ``x [B, Cin, h, w]`` returns ``(bbox, raw_centers, raw_scales, objness,
    class_pred)``, shapes ``[B, h*w*A, 4|2|2|1|C]`` in ``(y, x, anchor)`` order; ``bbox`` is XYXY in
    input pixels: centre ``(sigmoid(t_xy) + cell) * stride``, size ``exp(t_wh) * anchor``.
    """

    def __init__(self, index: int, in_channels: int, num_class: int, anchors: Sequence[float],
                 stride: int, alloc_size: Tuple[int, int] = (128, 128)):
        super().__init__()
        self.index = index
        self.num_class = num_class
        self.num_anchors = len(anchors) // 2
        self.stride = stride
        self.prediction = nn.Conv2d(in_channels, self.num_anchors * (5 + num_class), 1)
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).reshape(
            1, 1, -1, 2))
        self.register_buffer("offsets", _grid(*alloc_size)[None])  # [1, h, w, 2]; GluonCV: [1, 1, h, w, 2]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        B, _, h, w = x.shape
        A, P = self.num_anchors, 5 + self.num_class
        pred = self.prediction(x).reshape(B, A * P, h * w).transpose(1, 2).reshape(B, h * w, A, P)
        if h <= self.offsets.shape[1] and w <= self.offsets.shape[2]:
            offsets = self.offsets[0, :h, :w]
        else:
            offsets = _grid(h, w).to(x)
        offsets = offsets.reshape(1, h * w, 1, 2)
        raw_centers, raw_scales = pred[..., 0:2], pred[..., 2:4]
        objness, class_pred = pred[..., 4:5], pred[..., 5:]
        centers = (torch.sigmoid(raw_centers) + offsets) * self.stride
        half = torch.exp(raw_scales) * self.anchors / 2.0
        bbox = torch.cat([centers - half, centers + half], dim=-1)
        return tuple(t.reshape(B, h * w * A, -1)
                     for t in (bbox, raw_centers, raw_scales, objness, class_pred))

    def reset_class(self, num_class: int, reuse: Optional[Dict[int, int]] = None) -> None:
        """Replaces the predictor for ``num_class`` classes; ``reuse`` maps new -> old class index
        whose weights (and the box/objectness weights) are copied over."""
        old, old_p = self.prediction, 5 + self.num_class
        self.num_class = num_class
        new_p = 5 + num_class
        self.prediction = nn.Conv2d(old.in_channels, self.num_anchors * new_p, 1).to(old.weight)
        if reuse:
            with torch.no_grad():
                for a in range(self.num_anchors):
                    for param_new, param_old in ((self.prediction.weight, old.weight),
                                                 (self.prediction.bias, old.bias)):
                        param_new[a * new_p:a * new_p + 5] = param_old[a * old_p:a * old_p + 5]
                        for k, v in reuse.items():
                            param_new[a * new_p + 5 + k] = param_old[a * old_p + 5 + v]


def _grid(h: int, w: int) -> torch.Tensor:
    """``[h, w, 2]`` cell offsets, ``[..., 0] = x``, ``[..., 1] = y``."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys], dim=-1)


class YOLODetectionBlockV3(nn.Module):
    """Five conv cells (1x1 ``channel``, 3x3 ``2*channel``, x2, then 1x1) giving the route, and a
    3x3 ``2*channel`` tip feeding the head. ``forward(x) -> (route [B, channel, h, w],
    tip [B, 2*channel, h, w])``."""

    def __init__(self, in_channels: int, channel: int, norm_layer: Callable = nn.BatchNorm2d):
        super().__init__()
        if channel % 2:
            raise ValueError(f"yolo3.py: channel {channel} is not divisible by 2")
        cells, c_in = [], in_channels
        for _ in range(2):
            cells += [conv_bn_leaky(c_in, channel, 1, 0, 1, norm_layer),
                      conv_bn_leaky(channel, channel * 2, 3, 1, 1, norm_layer)]
            c_in = channel * 2
        cells.append(conv_bn_leaky(c_in, channel, 1, 0, 1, norm_layer))
        self.body = nn.Sequential(*cells)
        self.tip = conv_bn_leaky(channel, channel * 2, 3, 1, 1, norm_layer)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        route = self.body(x)
        return route, self.tip(route)


def _out_channels(stage: nn.Module) -> int:
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("yolo3.py: cannot infer a stage's output channels (no Conv2d in it); "
                         "pass stage_channels=")
    return convs[-1].out_channels


class YOLOV3(nn.Module):
    """YOLOv3 detector (GluonCV's ``YOLOV3``).

    Args:
        stages: backbone pieces, shallow to deep (strides 8, 16, 32 for the zoo models).
        channels: conv channels of each detection block, deep to shallow (e.g. ``[512, 256, 128]``).
        anchors: per stage, shallow to deep, flat ``[w0, h0, w1, h1, ...]`` in input pixels.
        strides: per stage, shallow to deep.
        classes: foreground class names (no background); ``C = len(classes)``.
        alloc_size: size of the stored offset grid (larger feature maps get a fresh grid).
        nms_thresh, nms_topk, post_nms: eval NMS, see :meth:`set_nms`.
        pos_iou_thresh: only 1.0 (best anchor only) is implemented, as in GluonCV.
        ignore_iou_thresh: predictions with IoU above it with a ground truth get no negative
            objectness loss.
        norm_layer: normalisation layer constructor for the added layers.
        label_smooth: smooth class targets; ``label_smooth_mode`` 'paper' (1-eps / eps/(C-1)) or
            'gluoncv' (min(1/C, 1/40)), see :func:`yolo_target.smooth_class_targets`.
        stage_channels: output channels of each stage; inferred from the last conv if None.
        obj_prior: if given, the objectness biases of the fresh heads start at
            ``log(p / (1 - p))`` so every anchor initially predicts objectness ``p`` (RetinaNet's
            prior init). Training from scratch, this keeps the objectness loss, a sum over all
            anchors, from starting near ``0.69 * num_anchors`` and swamping the other losses.
            None (default) keeps PyTorch's default init; loaded weights replace it either way.

    ``forward(x)`` (no labels), ``x [B, 3, H, W]`` normalised RGB, H and W multiples of 32:
    ``ids [B, K, 1]``, ``scores [B, K, 1]``, ``bboxes [B, K, 4]`` (XYXY input pixels, not clipped),
    rows sorted by score and padded with -1, ``K = post_nms``.
    ``forward(x, labels)`` with ``labels [B, M, 5 or 6]`` (XYXY input pixels, class id, mix weight;
    rows of -1 are padding): dict of scalar losses 'obj_loss', 'center_loss', 'scale_loss',
    'cls_loss', each summed over anchors per image and averaged over the batch (use in train mode).
    """

    def __init__(self, stages: Sequence[nn.Module], channels: Sequence[int],
                 anchors: Sequence[Sequence[float]], strides: Sequence[int],
                 classes: Sequence[str], alloc_size: Tuple[int, int] = (128, 128),
                 nms_thresh: float = 0.45, nms_topk: int = 400, post_nms: int = 100,
                 pos_iou_thresh: float = 1.0, ignore_iou_thresh: float = 0.7,
                 norm_layer: Callable = nn.BatchNorm2d, label_smooth: bool = False,
                 label_smooth_eps: float = 0.1, label_smooth_mode: str = "paper",
                 stage_channels: Optional[Sequence[int]] = None, obj_prior: Optional[float] = None):
        super().__init__()
        if pos_iou_thresh < 1:
            raise NotImplementedError(f"yolo3.py: pos_iou_thresh {pos_iou_thresh} < 1.0 is not "
                                      "implemented (as in GluonCV)")
        if not len(stages) == len(channels) == len(anchors) == len(strides):
            raise ValueError("yolo3.py: stages, channels, anchors and strides need equal lengths")
        self._classes = list(classes)
        self.set_nms(nms_thresh, nms_topk, post_nms)
        self.ignore_iou_thresh = ignore_iou_thresh
        self.configure_loss(label_smooth=label_smooth, label_smooth_eps=label_smooth_eps,
                            label_smooth_mode=label_smooth_mode)
        self.loss = YOLOV3Loss()
        self.stages = nn.ModuleList(stages)
        stage_ch = list(stage_channels or [_out_channels(s) for s in stages])[::-1]
        self.transitions = nn.ModuleList()
        self.yolo_blocks = nn.ModuleList()
        self.yolo_outputs = nn.ModuleList()
        in_ch = stage_ch[0]
        for i, (channel, anchor, stride) in enumerate(zip(channels, anchors[::-1], strides[::-1])):
            if i > 0:
                self.transitions.append(
                    conv_bn_leaky(channels[i - 1], channel, 1, 0, 1, norm_layer))
                in_ch = channel + stage_ch[i]
            self.yolo_blocks.append(YOLODetectionBlockV3(in_ch, channel, norm_layer))
            self.yolo_outputs.append(YOLOOutputV3(i, channel * 2, len(self._classes), anchor,
                                                  stride, alloc_size))
        if obj_prior is not None:
            self.init_objectness(obj_prior)

    def checkpoint_stages(self) -> List[nn.Module]:
        """The backbone slices feeding the three heads: what ``--grad-checkpoint`` recomputes."""
        return list(self.stages)

    def configure_loss(self, *, label_smooth: bool = False, label_smooth_eps: float = 0.1,
                       label_smooth_mode: str = "paper") -> "YOLOV3":
        """Training-only settings of the loss (not architecture: an evaluation rebuild needs none
        of them): label smoothing of the class targets, 'paper' (1 - eps / eps/(C-1)) or
        'gluoncv' (1 - s / s, s = min(1/C, 1/40)). Returns ``self``."""
        self.label_smooth = label_smooth
        self.label_smooth_eps = label_smooth_eps
        self.label_smooth_mode = label_smooth_mode
        return self

    @property
    def classes(self) -> List[str]:
        """Foreground class names."""
        return self._classes

    @property
    def num_class(self) -> int:
        """Number of foreground classes (no background)."""
        return len(self._classes)

    @torch.no_grad()
    def init_objectness(self, prior: float) -> None:
        """Sets every head's objectness bias to ``log(prior / (1 - prior))``."""
        if not 0 < prior < 1:
            raise ValueError(f"yolo3.py: obj_prior must be in (0, 1), got {prior}")
        for out in self.yolo_outputs:
            out.prediction.bias.view(out.num_anchors, -1)[:, 4] = math.log(prior / (1 - prior))

    def set_nms(self, nms_thresh: float = 0.45, nms_topk: int = 400, post_nms: int = 100) -> None:
        """Eval NMS settings: per-class NMS at IoU ``nms_thresh`` (outside (0, 1): no NMS, all raw
        detections are returned) over the ``nms_topk`` best detections (-1: all) scoring above
        0.01, keeping the ``post_nms`` best (-1: all)."""
        self.nms_thresh, self.nms_topk, self.post_nms = nms_thresh, nms_topk, post_nms

    def _heads(self, x: torch.Tensor) -> Tuple[List[tuple], List[Tuple[int, int]]]:
        """Runs backbone, blocks and heads; returns the heads' outputs (see
        :class:`YOLOOutputV3`) and their feature sizes ``(h, w)``, deepest first."""
        routes, sizes = [], []
        for stage in self.stages:
            x = stage(x)
            routes.append(x)
        outs = []
        for i, (block, output) in enumerate(zip(self.yolo_blocks, self.yolo_outputs)):
            x, tip = block(x)
            outs.append(output(tip))
            sizes.append((tip.shape[2], tip.shape[3]))
            if i == len(routes) - 1:
                break
            x = F.interpolate(self.transitions[i](x), scale_factor=2, mode="nearest")
            route = routes[-2 - i]
            x = torch.cat([x[:, :, :route.shape[2], :route.shape[3]], route], dim=1)
        return outs, sizes

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None):
        outs, sizes = self._heads(x)
        if labels is not None:
            return self._losses(x, outs, sizes, labels)
        bboxes = [o[0] for o in outs]
        scores = [torch.sigmoid(o[4]) * torch.sigmoid(o[3]) for o in outs]
        return box_nms(bboxes, scores, self.nms_thresh, 0.01, self.nms_topk, self.post_nms)

    def _losses(self, x: torch.Tensor, outs, feat_sizes,
                labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        if labels.dim() != 3 or labels.shape[-1] < 5:
            raise ValueError(f"yolo3.py: labels must be [B, M, 5 or 6] (xyxy, class, mix), "
                             f"got {tuple(labels.shape)}")
        labels = labels.to(device=x.device, dtype=torch.float32)
        gt_boxes, gt_ids = labels[..., :4], labels[..., 4]
        gt_mix = labels[..., 5] if labels.shape[-1] > 5 else None
        valid = (gt_ids >= 0) & (gt_boxes >= 0).all(dim=-1)
        box_preds, centers, scales, objness, cls_preds = (torch.cat(t, dim=1) for t in zip(*outs))
        # targets are made in float32 (as GluonCV's data pipeline makes them), then meet the
        # predictions in the wider of float32 and their dtype: a float64 model gets a float64 loss
        # (torch's BCE would otherwise return, and differentiate in, the float32 target's dtype)
        dtype = torch.promote_types(objness.dtype, torch.float32)
        with torch.no_grad():
            pre = prefetch_targets([o.anchors for o in self.yolo_outputs], feat_sizes,
                                   (x.shape[2], x.shape[3]), gt_boxes, gt_ids, self.num_class,
                                   gt_mix, valid)
            masked_gt = torch.where(valid[..., None], gt_boxes, torch.full_like(gt_boxes, -1))
            ignore = ignore_mask(box_preds.detach().to(dtype), masked_gt.to(dtype),
                                 self.ignore_iou_thresh)
            targets = merge_targets(pre, ignore, self.label_smooth, self.label_smooth_mode,
                                    self.label_smooth_eps)
            targets = [t.to(dtype) for t in targets]
        losses = self.loss(objness, centers, scales, cls_preds, *targets)
        names = ("obj_loss", "center_loss", "scale_loss", "cls_loss")
        return {k: v.mean() for k, v in zip(names, losses)}

    def reset_class(self, classes: Sequence[str], reuse_weights=None) -> None:
        """Changes the classes (GluonCV's ``reset_class``). ``reuse_weights``: a dict
        {new: old} of indices or names, or a list of names kept from the old classes."""
        old = self._classes
        self._classes = list(classes)
        reuse = reuse_index_map(self._classes, old, reuse_weights, "yolo3.py")
        for output in self.yolo_outputs:
            output.reset_class(len(self._classes), reuse)


YOLO3_ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))
YOLO3_STRIDES = (8, 16, 32)


def scaled_anchors(scale: float) -> List[List[float]]:
    """GluonCV's YOLOv3 anchors times ``scale`` (anchors are relative to the training input size)."""
    return [[a * scale for a in stage] for stage in YOLO3_ANCHORS]


def _yolo3(base: str, classes: Optional[Sequence[str]], pretrained_base=False,
           norm_layer: Callable = nn.BatchNorm2d, pretrained=False,
           channels: Optional[Sequence[int]] = None,
           anchors: Optional[Sequence[Sequence[float]]] = None, **kwargs) -> YOLOV3:
    """Builds YOLOv3 on ``base`` ('darknet53', 'mobilenet1.0' or 'mobilenet0.25') with GluonCV's
    stage cuts, block channels, anchors and strides; other kwargs go to :class:`YOLOV3`.

    ``channels``: the detection blocks' widths, deep to shallow; None gives GluonCV's
    ([512, 256, 128], or [256, 128, 128] on MobileNet 0.25). Narrower heads (as GluonCV's
    ``get_yolov3`` allows) make small, fast models, e.g. ``[64, 32, 32]`` for CPU runs.
    ``anchors``: per stage, shallow to deep, flat ``[w0, h0, w1, h1, w2, h2]`` in input pixels; None
    gives GluonCV's (sized for 320-608 inputs; scale them with the input size for much smaller
    inputs, e.g. ``scaled_anchors(0.5)`` around 200 px).

    ``pretrained_base`` / ``pretrained``: False, True (GluonCV's weights of the backbone
    classifier, e.g. ``darknet53`` / of the detector, e.g. ``yolo3_darknet53_voc``, fetched by
    :mod:`.model_store`), or a weights file (GluonCV ``.params`` or a gluon-bof ``.pth``). As in
    GluonCV, ``pretrained`` makes ``pretrained_base`` moot (the backbone is not loaded).
    """
    if pretrained:
        pretrained_base = False
    if classes is None or len(classes) == 0:
        raise ValueError("yolo3.py: a custom YOLOv3 needs classes=[names...]")
    if base == "darknet53":
        f = list(darknet53(norm_layer=norm_layer, pretrained=pretrained_base).features)
        cuts, default = (0, 15, 24, 29), [512, 256, 128]
    else:
        mult = float(base[len("mobilenet"):])
        backbone = load_weights(MobileNet(mult, norm_layer=norm_layer), pretrained_base, base)
        f = list(backbone.features)
        cuts = (0, 33, 69, 81)
        default = [512, 256, 128] if mult == 1.0 else [256, 128, 128]
    channels = list(channels) if channels is not None else default
    # re-indexed from 0 inside each stage, as GluonCV's sliced HybridSequential
    stages = [nn.Sequential(*f[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    net = YOLOV3(stages, channels, anchors or YOLO3_ANCHORS, YOLO3_STRIDES, classes, norm_layer=norm_layer,
                 **kwargs)
    dataset = {tuple(VOC_CLASSES): "voc", tuple(COCO_CLASSES): "coco"}.get(tuple(classes), "custom")
    return load_weights(net, pretrained, f"yolo3_{base}_{dataset}")


def transfer_model(name: str, classes: Sequence[str], **kwargs) -> YOLOV3:
    """GluonCV's fine-tuning entry point, ``get_model('yolo3_..._custom', classes=[...],
    transfer='voc')``: the zoo model ``name`` with its published weights (``pretrained=True``, or
    the file ``kwargs['pretrained']``), then ``reset_class(classes)`` keeping the weights of the
    classes both share (by name)."""
    kwargs.setdefault("pretrained", True)
    net = get_model(name, **kwargs)
    net.reset_class(classes, reuse_weights=[c for c in classes if c in net.classes])
    return net


def _custom(base: str, classes: Sequence[str], transfer: Optional[str], **kwargs) -> YOLOV3:
    if transfer is None:
        return _yolo3(base, classes, **kwargs)
    if transfer not in ("voc", "coco"):
        raise ValueError(f"yolo3.py: transfer must be 'voc' or 'coco' (the published weights), got {transfer!r}")
    return transfer_model(f"yolo3_{base}_{transfer}", classes, **kwargs)


@register_model("yolo3_darknet53_voc")
def yolo3_darknet53_voc(**kwargs) -> YOLOV3:
    """YOLOv3 on Darknet-53 for Pascal VOC (20 classes)."""
    return _yolo3("darknet53", VOC_CLASSES, **kwargs)


@register_model("yolo3_darknet53_coco")
def yolo3_darknet53_coco(**kwargs) -> YOLOV3:
    """YOLOv3 on Darknet-53 for COCO (80 classes)."""
    return _yolo3("darknet53", COCO_CLASSES, **kwargs)


@register_model("yolo3_darknet53_custom")
def yolo3_darknet53_custom(*, classes: Sequence[str], transfer: Optional[str] = None, **kwargs) -> YOLOV3:
    """YOLOv3 on Darknet-53 for the given foreground ``classes``; ``transfer='voc'`` or ``'coco'``
    starts from that model's GluonCV weights (:func:`transfer_model`)."""
    return _custom("darknet53", classes, transfer, **kwargs)


@register_model("yolo3_mobilenet1.0_voc")
def yolo3_mobilenet1_0_voc(**kwargs) -> YOLOV3:
    """YOLOv3 on MobileNet 1.0 for Pascal VOC (20 classes)."""
    return _yolo3("mobilenet1.0", VOC_CLASSES, **kwargs)


@register_model("yolo3_mobilenet1.0_coco")
def yolo3_mobilenet1_0_coco(**kwargs) -> YOLOV3:
    """YOLOv3 on MobileNet 1.0 for COCO (80 classes)."""
    return _yolo3("mobilenet1.0", COCO_CLASSES, **kwargs)


@register_model("yolo3_mobilenet1.0_custom")
def yolo3_mobilenet1_0_custom(*, classes: Sequence[str], transfer: Optional[str] = None, **kwargs) -> YOLOV3:
    """YOLOv3 on MobileNet 1.0 for the given foreground ``classes``; ``transfer='voc'`` or ``'coco'``
    starts from that model's GluonCV weights (:func:`transfer_model`)."""
    return _custom("mobilenet1.0", classes, transfer, **kwargs)


@register_model("yolo3_mobilenet0.25_voc")
def yolo3_mobilenet0_25_voc(**kwargs) -> YOLOV3:
    """YOLOv3 on MobileNet 0.25 for Pascal VOC (20 classes)."""
    return _yolo3("mobilenet0.25", VOC_CLASSES, **kwargs)


@register_model("yolo3_mobilenet0.25_coco")
def yolo3_mobilenet0_25_coco(**kwargs) -> YOLOV3:
    """YOLOv3 on MobileNet 0.25 for COCO (80 classes)."""
    return _yolo3("mobilenet0.25", COCO_CLASSES, **kwargs)


@register_model("yolo3_mobilenet0.25_custom")
def yolo3_mobilenet0_25_custom(*, classes: Sequence[str], transfer: Optional[str] = None, **kwargs) -> YOLOV3:
    """YOLOv3 on MobileNet 0.25 for the given foreground ``classes``; ``transfer='voc'`` or ``'coco'``
    starts from that model's GluonCV weights (:func:`transfer_model`)."""
    return _custom("mobilenet0.25", classes, transfer, **kwargs)
