"""Registered Faster R-CNN builders with GluonCV's names and settings (C4 and FPN on ResNet
v1b/v1d, and the FPN SyncBN variants MegDet's recipe trains).

Every builder takes keyword arguments only: ``pretrained_base`` (False or the path of GluonCV's
backbone ``.params``, e.g. ``resnet50_v1b-0ecdba34.params``), ``pretrained`` (False or the path
of a GluonCV Faster R-CNN ``.params``), ``norm_layer`` (backbone norm; default
:class:`gluon_bof.nn.norm.FrozenBatchNorm2d`, GluonCV's ``use_global_stats=True``),
``freeze_layers`` (GluonCV's ``train_patterns``: the stem and ``layer1`` get
``requires_grad=False`` by default; 0 trains everything), and any :class:`FasterRCNN` option.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from torch import nn

from ...data.coco import COCO_CLASSES
from ...data.voc import VOC_CLASSES
from ...nn.norm import FrozenBatchNorm2d, fixed_gamma_batchnorm
from ..model_store import load_weights
from .. import resnetv1b  # noqa: F401  (registers the backbones the builders get by name)
from ..registry import get_model, register_model
from .faster_rcnn import FasterRCNN
from .fpn import FasterRCNNFPN, FPNFeatureExpander, ResNetBody, fpn_box_head

__all__ = ["faster_rcnn_c4", "faster_rcnn_fpn", "FPN_SYNCBN_NORMS", "fpn_syncbn_options"]

_ZOO = dict(roi_mode="align", roi_size=(14, 14), strides=16, rpn_channel=1024, base_size=16,
            scales=(2, 4, 8, 16, 32), ratios=(0.5, 1, 2), alloc_size=(128, 128),
            rpn_nms_thresh=0.7, rpn_train_pre_nms=12000, rpn_train_post_nms=2000,
            rpn_test_pre_nms=6000, num_sample=128, pos_iou_thresh=0.5, pos_ratio=0.25,
            max_num_gt=100)
_VOC = dict(_ZOO, short=600, max_size=1000, nms_thresh=0.3, nms_topk=400, post_nms=100,
            clip=None, rpn_test_post_nms=300, rpn_min_size=16)
_COCO = dict(_ZOO, short=800, max_size=1333, nms_thresh=0.5, nms_topk=-1, post_nms=-1,
             clip=4.14, rpn_test_post_nms=1000, rpn_min_size=1)


def faster_rcnn_c4(base: str, classes: Sequence[str], settings: Optional[dict] = None,
                   pretrained_base=False, pretrained=False,
                   norm_layer: Callable = FrozenBatchNorm2d, freeze_layers: int = 1,
                   zoo_name: Optional[str] = None, **kwargs) -> FasterRCNN:
    """Faster R-CNN C4 on the registered backbone ``base`` (e.g. 'resnet50_v1b'): ``features``
    = conv1, bn1, relu, maxpool, layer1..3; ``top_features`` = layer4; ``settings`` then
    ``kwargs`` go to :class:`FasterRCNN`. ``freeze_layers`` n >= 1 freezes the stem and layers
    1..n (GluonCV: 1). ``zoo_name``: GluonCV's name of these weights, for ``pretrained=True``."""
    if not classes:
        raise ValueError("faster_rcnn: a custom Faster R-CNN needs classes=[names...]")
    backbone = get_model(base, norm_layer=norm_layer, pretrained=pretrained_base)
    features = nn.Sequential(*(getattr(backbone, n) for n in (
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")))
    top_features = nn.Sequential(backbone.layer4)
    if freeze_layers > 0:
        stages = [features[3 + i] for i in range(1, min(freeze_layers, 3) + 1)]
        for module in [features[0]] + stages:
            module.requires_grad_(False)
        if freeze_layers >= 4:
            top_features.requires_grad_(False)
    net = FasterRCNN(features, top_features, classes, **{**(settings or {}), **kwargs})
    if pretrained is True and zoo_name is None:
        raise ValueError(f"faster_rcnn: no GluonCV weights for a custom {base} model")
    return load_weights(net, pretrained, zoo_name)


@register_model("faster_rcnn_resnet50_v1b_voc")
def faster_rcnn_resnet50_v1b_voc(**kwargs) -> FasterRCNN:
    """Faster R-CNN C4, ResNet-50 v1b, Pascal VOC (20 classes; 600/1000, 300 proposals)."""
    return faster_rcnn_c4("resnet50_v1b", VOC_CLASSES, _VOC, zoo_name="faster_rcnn_resnet50_v1b_voc", **kwargs)


@register_model("faster_rcnn_resnet50_v1b_coco")
def faster_rcnn_resnet50_v1b_coco(**kwargs) -> FasterRCNN:
    """Faster R-CNN C4, ResNet-50 v1b, COCO (80 classes; 800/1333, 1000 proposals)."""
    return faster_rcnn_c4("resnet50_v1b", COCO_CLASSES, _COCO, zoo_name="faster_rcnn_resnet50_v1b_coco", **kwargs)


@register_model("faster_rcnn_resnet101_v1d_voc")
def faster_rcnn_resnet101_v1d_voc(**kwargs) -> FasterRCNN:
    """Faster R-CNN C4, ResNet-101 v1d, Pascal VOC."""
    return faster_rcnn_c4("resnet101_v1d", VOC_CLASSES, _VOC, zoo_name="faster_rcnn_resnet101_v1d_voc", **kwargs)


@register_model("faster_rcnn_resnet101_v1d_coco")
def faster_rcnn_resnet101_v1d_coco(**kwargs) -> FasterRCNN:
    """Faster R-CNN C4, ResNet-101 v1d, COCO."""
    return faster_rcnn_c4("resnet101_v1d", COCO_CLASSES, _COCO, zoo_name="faster_rcnn_resnet101_v1d_coco", **kwargs)


@register_model("faster_rcnn_resnet50_v1b_custom")
def faster_rcnn_resnet50_v1b_custom(*, classes: Sequence[str], **kwargs) -> FasterRCNN:
    """Faster R-CNN C4, ResNet-50 v1b, given foreground ``classes``. As GluonCV's ``_custom``
    builder, only the backbone split is set: the rest are :class:`FasterRCNN`'s defaults
    (GluonCV's: scales (8, 16, 32), i.e. 9 anchors; 600/1000; NMS .3/400/100); pass e.g.
    ``scales=(2, 4, 8, 16, 32)`` for the zoo's anchors."""
    return faster_rcnn_c4("resnet50_v1b", classes, None, **kwargs)


@register_model("faster_rcnn_resnet101_v1d_custom")
def faster_rcnn_resnet101_v1d_custom(*, classes: Sequence[str], **kwargs) -> FasterRCNN:
    """Faster R-CNN C4, ResNet-101 v1d, given foreground ``classes`` (see the r50 custom)."""
    return faster_rcnn_c4("resnet101_v1d", classes, None, **kwargs)


# GluonCV's faster_rcnn_fpn_*_coco (predefined_models.py)
_FPN_COCO = dict(short=800, max_size=1333, min_stage=2, max_stage=6, nms_thresh=0.5, nms_topk=-1,
                 post_nms=-1, roi_mode="align", roi_size=(7, 7), strides=(4, 8, 16, 32, 64),
                 clip=4.14, rpn_channel=1024, base_size=16, scales=(2, 4, 8, 16, 32),
                 ratios=(0.5, 1, 2), alloc_size=(384, 384), rpn_nms_thresh=0.7,
                 rpn_train_pre_nms=12000, rpn_train_post_nms=2000, rpn_test_pre_nms=6000,
                 rpn_test_post_nms=1000, rpn_min_size=1, num_sample=512, pos_iou_thresh=0.5,
                 pos_ratio=0.25, max_num_gt=100)


def faster_rcnn_fpn(base: str, classes: Sequence[str], settings: Optional[dict] = None,
                    pretrained_base=False, pretrained=False,
                    norm_layer: Callable = FrozenBatchNorm2d,
                    fpn_norm_layer: Optional[Callable] = None,
                    head_norm_layer: Optional[Callable] = None, head_convs: int = 1,
                    num_filters: int = 256, freeze_layers: int = 1,
                    zoo_name: Optional[str] = None, **kwargs) -> FasterRCNNFPN:
    """Faster R-CNN with FPN on the registered ResNet ``base`` (e.g. 'resnet50_v1b').

    ``norm_layer``: backbone norm (default frozen, GluonCV's ``use_global_stats``);
    ``fpn_norm_layer``: norm after every FPN conv (None: GluonCV's plain FPN, convs with bias);
    ``head_norm_layer``: None gives the 2x1024 fully connected box head, a norm class gives
    GluonCV's SyncBN-variant head (``head_convs`` x (3x3 conv + norm + ReLU), FC 1024). Each may be
    ``nn.BatchNorm2d``, ``nn.SyncBatchNorm`` or :class:`FrozenBatchNorm2d`. ``freeze_layers``
    n >= 1 freezes the stem and layers 1..n (GluonCV's train_patterns: 1; 0 trains all).
    ``settings`` then ``kwargs`` go to :class:`FasterRCNNFPN`. ``zoo_name``: GluonCV's name of
    the weights ``pretrained=True`` fetches.
    """
    if not classes:
        raise ValueError("faster_rcnn_fpn: a custom Faster R-CNN needs classes=[names...]")
    resnet = get_model(base, norm_layer=norm_layer, pretrained=pretrained_base)
    body = ResNetBody(resnet)
    if freeze_layers > 0:
        for module in [body.conv1] + [getattr(body, f"layer{i}")
                                      for i in range(1, min(freeze_layers, 4) + 1)]:
            module.requires_grad_(False)
    in_ch = [getattr(body, f"layer{i}")[-1].conv3.out_channels for i in range(1, 5)]
    features = FPNFeatureExpander(body, in_ch, num_filters, norm_layer=fpn_norm_layer,
                                  body_name="resnet" + base.split("_")[1])
    opts = {**(settings or {}), **kwargs}
    box_features = fpn_box_head(num_filters, tuple(opts.get("roi_size", (7, 7))),
                                norm_layer=head_norm_layer, num_convs=head_convs)
    net = FasterRCNNFPN(features, box_features, classes, features_channels=num_filters, **opts)
    if pretrained is True and zoo_name is None:
        raise ValueError(f"faster_rcnn_fpn: no GluonCV weights for a custom {base} FPN model")
    return load_weights(net, pretrained, zoo_name)


@register_model("faster_rcnn_fpn_resnet50_v1b_coco")
def faster_rcnn_fpn_resnet50_v1b_coco(**kwargs) -> FasterRCNNFPN:
    """Faster R-CNN + FPN, ResNet-50 v1b, COCO (80 classes; 800/1333, 1000 proposals)."""
    return faster_rcnn_fpn("resnet50_v1b", COCO_CLASSES, _FPN_COCO,
                           zoo_name="faster_rcnn_fpn_resnet50_v1b_coco", **kwargs)


@register_model("faster_rcnn_fpn_resnet101_v1d_coco")
def faster_rcnn_fpn_resnet101_v1d_coco(**kwargs) -> FasterRCNNFPN:
    """Faster R-CNN + FPN, ResNet-101 v1d, COCO."""
    return faster_rcnn_fpn("resnet101_v1d", COCO_CLASSES, _FPN_COCO,
                           zoo_name="faster_rcnn_fpn_resnet101_v1d_coco", **kwargs)


@register_model("faster_rcnn_fpn_resnet50_v1b_voc")
def faster_rcnn_fpn_resnet50_v1b_voc(**kwargs) -> FasterRCNNFPN:
    """Faster R-CNN + FPN, ResNet-50 v1b, Pascal VOC (no GluonCV counterpart: GluonCV's COCO
    FPN settings with VOC's 20 classes, 600/1000 input and VOC NMS .3/400/100)."""
    voc = dict(_FPN_COCO, short=600, max_size=1000, nms_thresh=0.3, nms_topk=400, post_nms=100)
    return faster_rcnn_fpn("resnet50_v1b", VOC_CLASSES, voc, **kwargs)


@register_model("faster_rcnn_fpn_resnet50_v1b_custom")
def faster_rcnn_fpn_resnet50_v1b_custom(*, classes: Sequence[str], **kwargs) -> FasterRCNNFPN:
    """Faster R-CNN + FPN, ResNet-50 v1b, given foreground ``classes`` (GluonCV's
    ``custom_faster_rcnn_fpn`` with the COCO FPN settings)."""
    return faster_rcnn_fpn("resnet50_v1b", classes, _FPN_COCO, **kwargs)


# GluonCV's faster_rcnn_fpn_syncbn_*_coco: trainable norms (GluonCV's SyncBatchNorm) in the
# backbone and the conv box head; after every FPN conv MXNet's symbolic SyncBatchNorm with its
# defaults (eps 1e-3, gamma fixed at 1); nothing frozen (train_patterns '(?!.*moving)').
FPN_SYNCBN_NORMS = dict(norm_layer=nn.BatchNorm2d, fpn_norm_layer=fixed_gamma_batchnorm,
                        head_norm_layer=nn.BatchNorm2d, freeze_layers=0)


def fpn_syncbn_options(base: str) -> dict:
    """What GluonCV's ``faster_rcnn_fpn_syncbn_{base}_coco`` changes in the FPN model's network:
    :data:`FPN_SYNCBN_NORMS`, a 256-wide RPN conv and 4 box-head convs on resnet101_v1d (1 on
    resnet50_v1b). ``get_model('faster_rcnn_fpn_resnet50_v1b_custom', classes=...,
    **fpn_syncbn_options('resnet50_v1b'))`` is that network for other classes."""
    return dict(FPN_SYNCBN_NORMS, rpn_channel=256, head_convs=4 if base == "resnet101_v1d" else 1)


_FPN_SYNCBN_COCO = dict(_FPN_COCO, short=(640, 800))  # GluonCV trains these at sides 640..800


@register_model("faster_rcnn_fpn_syncbn_resnet50_v1b_coco")
def faster_rcnn_fpn_syncbn_resnet50_v1b_coco(**kwargs) -> FasterRCNNFPN:
    """Faster R-CNN + FPN with BatchNorm everywhere (MegDet's detector; GluonCV's SyncBN
    variant), ResNet-50 v1b, COCO: :func:`fpn_syncbn_options`. The norms are
    ``nn.BatchNorm2d``; ``--syncbn`` makes them cross-GPU
    (:func:`gluon_bof.utils.distributed.convert_sync_batchnorm`)."""
    return faster_rcnn_fpn("resnet50_v1b", COCO_CLASSES, _FPN_SYNCBN_COCO,
                           zoo_name="faster_rcnn_fpn_syncbn_resnet50_v1b_coco",
                           **{**fpn_syncbn_options("resnet50_v1b"), **kwargs})


@register_model("faster_rcnn_fpn_syncbn_resnet101_v1d_coco")
def faster_rcnn_fpn_syncbn_resnet101_v1d_coco(**kwargs) -> FasterRCNNFPN:
    """Faster R-CNN + FPN with BatchNorm everywhere, ResNet-101 v1d, COCO (see the r50; GluonCV
    gives this one four 3x3 convs in the box head)."""
    return faster_rcnn_fpn("resnet101_v1d", COCO_CLASSES, _FPN_SYNCBN_COCO,
                           zoo_name="faster_rcnn_fpn_syncbn_resnet101_v1d_coco",
                           **{**fpn_syncbn_options("resnet101_v1d"), **kwargs})
