"""ResNet V1b and its Bag-of-Tricks variants (v1c, v1d, v1e, v1s), laid out as GluonCV's
``ResNetV1b`` so that GluonCV weights load one to one.

Variants (He et al., "Bag of Tricks for Image Classification", 2019, Fig. 2):

- ``v1b``: stride 2 on the bottleneck's 3x3 conv (not on the first 1x1), 7x7 stem.
- ``v1c``: deep stem, three 3x3 convs 32-32-64 (``deep_stem=True, stem_width=32``).
- ``v1d``: v1c plus a 2x2 average pool (``ceil_mode=True, count_include_pad=False``) before the
  shortcut's 1x1 conv, which then has stride 1 (``avg_down=True``).
- ``v1e``: v1d with a 64-64-128 stem (``stem_width=64``); ``v1s``: a 64-64-128 stem, no avg_down.

State-dict keys are GluonCV's structural names (``net.save_parameters``), BatchNorm ``gamma``/
``beta`` being ``weight``/``bias`` here::

    conv1.weight (7x7) | conv1.{0,3,6}.weight + conv1.{1,4}.* (deep stem: conv, norm, relu, ...)
    bn1.*                                     norm after the stem
    layer{1-4}.{i}.conv{1,2[,3]}.weight, layer{s}.{i}.bn{1,2[,3]}.*
    layer{s}.0.downsample.{0,1}.*             1x1 conv (stride s), norm
    layer{s}.0.downsample.{1,2}.*             avg_down: index 0 is the pool (no parameters)
    fc.weight, fc.bias

Feature strides: ``layer1`` 4, ``layer2`` 8, ``layer3`` 16, ``layer4`` 32 (``dilated=True``: 8
and 8, with dilations 2 and 4 as GluonCV). Inputs are ImageNet-normalised RGB ``[B, 3, H, W]``.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Type, Union

import torch
from torch import nn

from .model_store import load_weights
from .registry import register_model

__all__ = ["BasicBlockV1b", "BottleneckV1b", "ResNetV1b"]

NormLayer = Callable[[int], nn.Module]


def _zero_gamma(norm: nn.Module) -> None:
    """Zeroes a norm layer's scale (``weight``), a parameter or a frozen buffer."""
    weight = getattr(norm, "weight", None)
    if weight is None:
        raise ValueError(f"resnetv1b.py: last_gamma needs a norm layer with a scale; "
                         f"{type(norm).__name__} has no 'weight'")
    with torch.no_grad():
        weight.zero_()


class BasicBlockV1b(nn.Module):
    """Two 3x3 convs (stride on the first), plus the shortcut; ``[B, inplanes, H, W]`` ->
    ``[B, planes, H/stride, W/stride]``. ``last_gamma`` zeroes ``bn2``'s scale (the paper's
    trick; GluonCV's basic block ignores the flag)."""
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: Optional[nn.Module] = None, previous_dilation: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm2d, last_gamma: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn1 = norm_layer(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=previous_dilation,
                               dilation=previous_dilation, bias=False)
        self.bn2 = norm_layer(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.downsample = downsample
        if last_gamma:
            _zero_gamma(self.bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + shortcut)


class BottleneckV1b(nn.Module):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 (``4 * planes``), plus the shortcut;
    ``[B, inplanes, H, W]`` -> ``[B, 4 * planes, H/stride, W/stride]``. ``last_gamma`` zeroes
    ``bn3``'s scale, so a fresh block computes ``relu(shortcut(x))``."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: Optional[nn.Module] = None, previous_dilation: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm2d, last_gamma: bool = False):
        super().__init__()
        del previous_dilation  # GluonCV's bottleneck takes it and does not use it
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = norm_layer(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = norm_layer(planes * 4)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = downsample
        if last_gamma:
            _zero_gamma(self.bn3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + shortcut)


Block = Type[Union[BasicBlockV1b, BottleneckV1b]]


def residual_stages(module: nn.Module, blocks=None) -> List[nn.Module]:
    """The ``nn.Sequential`` stages of residual ``blocks`` (default: the V1b blocks) inside
    ``module``: the units gradient checkpointing recomputes (``checkpoint_stages``)."""
    blocks = blocks or (BasicBlockV1b, BottleneckV1b)
    return [m for m in module.modules() if isinstance(m, nn.Sequential) and len(m)
            and all(isinstance(c, blocks) for c in m)]


class ResNetV1b(nn.Module):
    """ResNet V1b classifier (GluonCV's ``ResNetV1b``).

    Args:
        block: :class:`BasicBlockV1b` or :class:`BottleneckV1b`.
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]``.
        classes: classifier outputs.
        dilated: stride 1 in ``layer3``/``layer4`` with dilation 2/4 (output stride 8).
        norm_layer: normalisation constructor, called as ``norm_layer(C)`` (``nn.BatchNorm2d``,
            ``nn.SyncBatchNorm``, :class:`gluon_bof.nn.norm.FrozenBatchNorm2d`, ...).
        last_gamma: zero-initialise the last norm scale of every residual block.
        deep_stem: three 3x3 convs (``stem_width``, ``stem_width``, ``2 * stem_width``) instead
            of the 7x7 conv.
        stem_width: see ``deep_stem``.
        avg_down: average-pool (kernel = stride, ``ceil_mode=True``, ``count_include_pad=False``)
            before a stride-1 1x1 conv on the projection shortcut, instead of a strided 1x1 conv.
        final_drop: dropout rate before ``fc`` (0: no dropout layer).

    Input ``[B, 3, H, W]``; output logits ``[B, classes]``. :meth:`forward_features` returns
    the ``layer4`` map ``[B, 512 * expansion, H/32, W/32]``.
    """

    def __init__(self, block: Block, layers: Sequence[int], classes: int = 1000,
                 dilated: bool = False, norm_layer: NormLayer = nn.BatchNorm2d,
                 last_gamma: bool = False, deep_stem: bool = False, stem_width: int = 32,
                 avg_down: bool = False, final_drop: float = 0.0):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"resnetv1b.py: layers must have 4 entries, got {list(layers)}")
        self.inplanes = stem_width * 2 if deep_stem else 64
        if deep_stem:
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, stem_width, 3, 2, 1, bias=False), norm_layer(stem_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, stem_width, 3, 1, 1, bias=False), norm_layer(stem_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, stem_width * 2, 3, 1, 1, bias=False))
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        opts = dict(avg_down=avg_down, norm_layer=norm_layer, last_gamma=last_gamma)
        self.layer1 = self._make_layer(block, 64, layers[0], **opts)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, **opts)
        if dilated:
            self.layer3 = self._make_layer(block, 256, layers[2], dilation=2, **opts)
            self.layer4 = self._make_layer(block, 512, layers[3], dilation=4, **opts)
        else:
            self.layer3 = self._make_layer(block, 256, layers[2], stride=2, **opts)
            self.layer4 = self._make_layer(block, 512, layers[3], stride=2, **opts)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten(1)
        self.drop = nn.Dropout(final_drop) if final_drop > 0.0 else None
        self.fc = nn.Linear(512 * block.expansion, classes)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1,
                    dilation: int = 1, avg_down: bool = False,
                    norm_layer: NormLayer = nn.BatchNorm2d,
                    last_gamma: bool = False) -> nn.Sequential:
        out_ch = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_ch:
            if avg_down:  # GluonCV pools with kernel 1 (an identity) where the stride is 1
                pool = (nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
                        if stride != 1 else nn.Identity())
                downsample = nn.Sequential(pool, nn.Conv2d(self.inplanes, out_ch, 1, bias=False),
                                           norm_layer(out_ch))
            else:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, out_ch, 1, stride, bias=False), norm_layer(out_ch))
        if dilation not in (1, 2, 4):
            raise ValueError(f"resnetv1b.py: unknown dilation {dilation} (1, 2 or 4)")
        first_dilation = 2 if dilation == 4 else 1
        blks: List[nn.Module] = [block(self.inplanes, planes, stride, first_dilation, downsample,
                                       dilation, norm_layer, last_gamma)]
        self.inplanes = out_ch
        for _ in range(1, blocks):
            blks.append(block(out_ch, planes, 1, dilation, None, dilation, norm_layer, last_gamma))
        return nn.Sequential(*blks)

    def checkpoint_stages(self) -> List[nn.Module]:
        """``layer1`` .. ``layer4``: what ``--grad-checkpoint`` recomputes."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``layer4`` output (before global pooling)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flat(self.avgpool(self.forward_features(x)))
        if self.drop is not None:
            x = self.drop(x)
        return self.fc(x)


# name: (block, layers, variant options); GluonCV's builders
_STAGES = {18: (BasicBlockV1b, [2, 2, 2, 2]), 34: (BasicBlockV1b, [3, 4, 6, 3]),
           50: (BottleneckV1b, [3, 4, 6, 3]), 101: (BottleneckV1b, [3, 4, 23, 3]),
           152: (BottleneckV1b, [3, 8, 36, 3])}
_VARIANTS = {"b": {}, "c": dict(deep_stem=True), "d": dict(deep_stem=True, avg_down=True),
             "e": dict(deep_stem=True, avg_down=True, stem_width=64),
             "s": dict(deep_stem=True, stem_width=64)}


def _resnet(depth: int, variant: str, classes: int, norm_layer: NormLayer, pretrained,
            kwargs) -> ResNetV1b:
    block, layers = _STAGES[depth]
    opts = {**_VARIANTS[variant], **kwargs}
    net = ResNetV1b(block, layers, classes=classes, norm_layer=norm_layer, **opts)
    return load_weights(net, pretrained, f"resnet{depth}_v1{variant}")


# Each builder takes ``classes``, ``norm_layer``, ``pretrained`` (False; True: GluonCV's ImageNet
# weights of that name through model_store; or a path: see model_store.load_weights) and ResNetV1b's
# options (``dilated``, ``last_gamma``, ``deep_stem``, ``stem_width``, ``avg_down``, ``final_drop``).
@register_model("resnet18_v1b")
def resnet18_v1b(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(18, "b", classes, norm_layer, pretrained, kwargs)


@register_model("resnet34_v1b")
def resnet34_v1b(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(34, "b", classes, norm_layer, pretrained, kwargs)


@register_model("resnet50_v1b")
def resnet50_v1b(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(50, "b", classes, norm_layer, pretrained, kwargs)


@register_model("resnet101_v1b")
def resnet101_v1b(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(101, "b", classes, norm_layer, pretrained, kwargs)


@register_model("resnet152_v1b")
def resnet152_v1b(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(152, "b", classes, norm_layer, pretrained, kwargs)


@register_model("resnet50_v1c")
def resnet50_v1c(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(50, "c", classes, norm_layer, pretrained, kwargs)


@register_model("resnet101_v1c")
def resnet101_v1c(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(101, "c", classes, norm_layer, pretrained, kwargs)


@register_model("resnet152_v1c")
def resnet152_v1c(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(152, "c", classes, norm_layer, pretrained, kwargs)


@register_model("resnet50_v1d")
def resnet50_v1d(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(50, "d", classes, norm_layer, pretrained, kwargs)


@register_model("resnet101_v1d")
def resnet101_v1d(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(101, "d", classes, norm_layer, pretrained, kwargs)


@register_model("resnet152_v1d")
def resnet152_v1d(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(152, "d", classes, norm_layer, pretrained, kwargs)


@register_model("resnet50_v1e")
def resnet50_v1e(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(50, "e", classes, norm_layer, pretrained, kwargs)


@register_model("resnet101_v1e")
def resnet101_v1e(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(101, "e", classes, norm_layer, pretrained, kwargs)


@register_model("resnet152_v1e")
def resnet152_v1e(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(152, "e", classes, norm_layer, pretrained, kwargs)


@register_model("resnet50_v1s")
def resnet50_v1s(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(50, "s", classes, norm_layer, pretrained, kwargs)


@register_model("resnet101_v1s")
def resnet101_v1s(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(101, "s", classes, norm_layer, pretrained, kwargs)


@register_model("resnet152_v1s")
def resnet152_v1s(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet(152, "s", classes, norm_layer, pretrained, kwargs)
