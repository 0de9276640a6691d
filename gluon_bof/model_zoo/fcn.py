"""Fully Convolutional Network (stride 8) on a dilated ResNet, laid out as GluonCV's ``FCN``
(``gluoncv/model_zoo/fcn.py`` + ``segbase.py``) so that GluonCV weights load one to one.

GluonCV's ``SegBaseModel`` builds the backbone with ``get_backbone(name, dilated=True)``:
``resnet50`` -> ``resnet50_v1s``, ``resnet101`` -> ``resnet101_v1s`` (deep 64-64-128 stem),
``resnet18`` -> ``resnet18_v1b``; ``layer3``/``layer4`` keep stride 1 with dilation 2/4, so
both maps have stride 8. The backbone's stem and stages become the FCN's own children, and the
heads follow. State-dict keys (GluonCV's, BatchNorm ``gamma``/``beta`` being ``weight``/``bias``)::

    conv1.{0,1,3,4,6}.* bn1.* layer{1-4}.*     the dilated backbone (no fc)
    head.block.{0,1,4}.*                       3x3 conv (C/4, no bias), norm, ReLU, Dropout(.1), 1x1 conv
    auxlayer.block.{0,1,4}.*                   the same on layer3 (``aux=True``)

Outputs are upsampled bilinearly with ``align_corners=True`` (MXNet's ``BilinearResize2D``) to
the input's size. GluonCV resizes to a fixed ``(height, width)``, by default ``crop_size``
square, which is the input's size everywhere GluonCV calls ``forward`` (training crops, the
validation centre crop, ``MultiEvalModel``'s padded tiles) and what its ``predict`` does.

GluonCV trains the heads at 10x the learning rate (``lr_mult = 10``): :func:`head_parameters`
names them for the optimizer. :class:`FCN` computes GluonCV's ``MixSoftmaxCrossEntropyLoss``
itself when given targets (:mod:`gluon_bof.nn.segmentation`).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from ..nn.segmentation import LOSS_NORMALIZATIONS, mix_softmax_cross_entropy
from .model_store import load_weights
from .registry import get_model, register_model

__all__ = ["FCN", "FCNHead", "fcn", "SEG_BACKBONES", "head_parameters"]

NormLayer = Callable[[int], nn.Module]

# GluonCV's segbase.get_backbone: FCN's backbone name -> the zoo classifier it dilates
SEG_BACKBONES = {"resnet18": "resnet18_v1b", "resnet50": "resnet50_v1s", "resnet101": "resnet101_v1s"}


class FCNHead(nn.Module):
    """GluonCV's ``_FCNHead``: ``[B, in_channels, h, w]`` -> ``[B, channels, h, w]`` through a 3x3
    conv to ``in_channels // 4`` (no bias), norm, ReLU, Dropout(0.1) and a 1x1 conv (with bias).
    The layers are ``block.0`` ... ``block.4`` as in GluonCV."""

    def __init__(self, in_channels: int, channels: int, norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        inter = in_channels // 4
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False), norm_layer(inter),
            nn.ReLU(inplace=True), nn.Dropout(0.1), nn.Conv2d(inter, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class FCN(nn.Module):
    """Fully convolutional semantic segmentation at output stride 8 on a dilated ResNet (GluonCV's ``FCN``).

    Args:
        backbone: a :class:`~gluon_bof.model_zoo.resnetv1b.ResNetV1b` built with ``dilated=True``
            (output stride 8); its ``conv1, bn1, relu, maxpool, layer1-4`` become this model's
            children (its ``fc`` is dropped). Head widths follow its channels (2048 / 1024 for
            ResNet-50/101, GluonCV's fixed numbers; 512 / 256 for ResNet-18).
        nclass: classes predicted per pixel; GluonCV's counts: ADE20K 150 (its "other" is the
            ignored label, not a class), Pascal VOC and COCO 21 (background included).
        aux: add the auxiliary head on ``layer3`` (GluonCV's ``--aux``).
        norm_layer: the heads' norm constructor (the backbone brings its own).
        base_size, crop_size: GluonCV's training scales, kept for the data transforms and
            evaluation (520 and 480 by default).

    ``forward(images [B, 3, H, W])`` returns GluonCV's tuple of logits ``([B, nclass, H, W],)``,
    plus the auxiliary logits of the same shape when ``aux``. ``forward(images, targets [B, H, W]
    int64, -1 = ignored)`` returns the losses ``{'loss'[, 'aux_loss']}`` (the training contract of
    :func:`gluon_bof.engine.train_one_epoch`), set by :meth:`configure_loss`. :meth:`predict`
    returns the main logits only.
    """

    def __init__(self, backbone: nn.Module, nclass: int, *, aux: bool = True,
                 norm_layer: NormLayer = nn.BatchNorm2d, base_size: int = 520, crop_size: int = 480):
        super().__init__()
        if nclass < 1:
            raise ValueError(f"fcn.py: nclass must be >= 1, got {nclass}")
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(backbone, name))
        c3, c4 = _out_channels(self.layer3), _out_channels(self.layer4)
        self.head = FCNHead(c4, nclass, norm_layer)
        self.auxlayer = FCNHead(c3, nclass, norm_layer) if aux else None
        self.nclass, self.aux = nclass, aux
        self.base_size, self.crop_size = base_size, crop_size
        self.configure_loss()

    def configure_loss(self, *, aux_weight: float = 0.5, normalization: str = "gluoncv") -> "FCN":
        """Training-only settings of GluonCV's ``MixSoftmaxCrossEntropyLoss`` (not architecture):
        the auxiliary loss weight (``--aux-weight``) and the normalisation, 'gluoncv' or 'mean' (see
        :func:`~gluon_bof.nn.segmentation.mix_softmax_cross_entropy`). Returns ``self``."""
        if normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(f"fcn.py: loss normalization must be one of {LOSS_NORMALIZATIONS}, got {normalization!r}")
        self.aux_weight, self.loss_normalization = float(aux_weight), normalization
        return self

    def base_forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``[B, 3, H, W]`` -> ``(c3, c4)``, the ``layer3`` and ``layer4`` maps (stride 8)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer3(self.layer2(self.layer1(x)))
        return c3, self.layer4(c3)

    def forward(self, images: torch.Tensor, targets: Optional[torch.Tensor] = None
                ) -> Union[Tuple[torch.Tensor, ...], Dict[str, torch.Tensor]]:
        size = images.shape[-2:]
        c3, c4 = self.base_forward(images)
        outputs = [_upsample(self.head(c4), size)]
        if self.auxlayer is not None:
            outputs.append(_upsample(self.auxlayer(c3), size))
        if targets is None:
            return tuple(outputs)
        return mix_softmax_cross_entropy(outputs, targets, aux_weight=self.aux_weight,
                                         normalization=self.loss_normalization)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Main logits ``[B, nclass, H, W]`` (GluonCV's ``predict`` / ``evaluate``)."""
        return self.forward(images)[0]


def head_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters GluonCV trains at ``lr_mult`` 10: those of ``head`` and ``auxlayer``."""
    for name in ("head", "auxlayer"):
        module = getattr(model, name, None)
        if module is not None:
            yield from module.parameters()


def _out_channels(stage: nn.Sequential) -> int:
    last = stage[-1]
    return (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def fcn(backbone: str, nclass: int, *, zoo_name: Optional[str] = None, base_model: Optional[str] = None,
        pretrained=False, pretrained_base=False, norm_layer: NormLayer = nn.BatchNorm2d, **kwargs) -> FCN:
    """FCN on GluonCV's dilated ``backbone`` ('resnet18', 'resnet50' or 'resnet101', see
    ``SEG_BACKBONES``). ``base_model``: another zoo ResNet of that depth to dilate instead (e.g.
    'resnet50_v1d', the Bag of Tricks classifiers' ResNet-50-D; gluon-bof's: GluonCV's FCN always
    uses v1s). ``pretrained_base``: False, True (GluonCV's ImageNet weights of the classifier) or a
    file (a GluonCV ``.params`` or a ``scripts/train_imagenet.py`` checkpoint of that classifier,
    loaded without its fc). ``pretrained``: True for GluonCV's weights of ``zoo_name``, or a file; it
    makes ``pretrained_base`` moot. ``kwargs`` go to :class:`FCN`."""
    if backbone not in SEG_BACKBONES:
        raise ValueError(f"fcn.py: unknown backbone {backbone!r}; choose one of {sorted(SEG_BACKBONES)}")
    if base_model is not None and not base_model.startswith(backbone + "_"):
        raise ValueError(f"fcn.py: base_model {base_model!r} is not a {backbone} (e.g. {SEG_BACKBONES[backbone]})")
    if pretrained:
        pretrained_base = False
    base = get_model(base_model or SEG_BACKBONES[backbone], dilated=True, norm_layer=norm_layer,
                     pretrained=pretrained_base)
    net = FCN(base, nclass, norm_layer=norm_layer, **kwargs)
    if pretrained is True and (zoo_name is None or base_model not in (None, SEG_BACKBONES[backbone])):
        raise ValueError(f"fcn.py: GluonCV publishes no FCN weights on {base_model or backbone}")
    return load_weights(net, pretrained, zoo_name)


# GluonCV's get_fcn_*: nclass from the dataset (ADE20K 150, Pascal VOC 21, COCO 21).
# fcn_resnet50_voc has no published weights (GluonCV's model_store lists none).
@register_model("fcn_resnet50_voc")
def fcn_resnet50_voc(*, nclass=21, **kwargs) -> FCN:
    return fcn("resnet50", nclass, zoo_name="fcn_resnet50_voc", **kwargs)


@register_model("fcn_resnet101_voc")
def fcn_resnet101_voc(*, nclass=21, **kwargs) -> FCN:
    return fcn("resnet101", nclass, zoo_name="fcn_resnet101_voc", **kwargs)


@register_model("fcn_resnet101_coco")
def fcn_resnet101_coco(*, nclass=21, **kwargs) -> FCN:
    return fcn("resnet101", nclass, zoo_name="fcn_resnet101_coco", **kwargs)


@register_model("fcn_resnet50_ade")
def fcn_resnet50_ade(*, nclass=150, **kwargs) -> FCN:
    return fcn("resnet50", nclass, zoo_name="fcn_resnet50_ade", **kwargs)


@register_model("fcn_resnet101_ade")
def fcn_resnet101_ade(*, nclass=150, **kwargs) -> FCN:
    return fcn("resnet101", nclass, zoo_name="fcn_resnet101_ade", **kwargs)


# gluon-bof's: GluonCV's get_backbone offers resnet18, but its FCN hard-codes 2048 input channels;
# here the heads follow the backbone (512 -> 128 and 256 -> 64). A cheap model for CPU runs.
@register_model("fcn_resnet18_ade")
def fcn_resnet18_ade(*, nclass=150, **kwargs) -> FCN:
    return fcn("resnet18", nclass, **kwargs)
