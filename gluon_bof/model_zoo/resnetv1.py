"""ResNet V1 (He et al., 2016), laid out as GluonCV's ``ResNetV1`` so that GluonCV weights load
one to one: the "ResNet-A" baseline of Bag of Tricks (He et al., 2019, Fig. 2a), whose
downsampling bottleneck puts the stride 2 on its FIRST 1x1 conv (v1b moves it to the 3x3).

GluonCV quirks kept for weight compatibility: the bottleneck's two 1x1 convs have a bias (its 3x3
conv and the shortcut's conv have none); the stem is a 7x7 conv, norm, ReLU, 3x3 max pool.

State-dict keys are GluonCV's structural names (``net.save_parameters``), BatchNorm ``gamma``/
``beta`` being ``weight``/``bias`` here::

    features.0.weight                          7x7 stem conv (thumbnail: 3x3, stride 1)
    features.1.*                               stem norm (absent with thumbnail)
    features.{4-7}.{i}.body.{0,3[,6]}.weight   stage s = 1..4 at index 3 + s, block i; bottleneck
    features.{4-7}.{i}.body.{0,6}.bias           1x1 convs also have .bias
    features.{4-7}.{i}.body.{1,4[,7]}.*        norms (4: basic block's last, 7: bottleneck's last)
    features.{4-7}.0.downsample.{0,1}.*        projection shortcut: 1x1 conv (stride), norm
    output.weight, output.bias

``features`` ends with the global average pool (index 8; with ``thumbnail`` the stages are
``features.1``-``4`` and the pool 5). Feature strides: stages 4, 8, 16, 32 (thumbnail: 1, 2, 4, 8).
Inputs are ImageNet-normalised RGB ``[B, 3, H, W]``.
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Type, Union

import torch
from torch import nn

from .model_store import load_weights
from .registry import register_model
from .resnetv1b import _zero_gamma, residual_stages

__all__ = ["BasicBlockV1", "BottleneckV1", "ResNetV1"]

NormLayer = Callable[[int], nn.Module]


def _conv3x3(in_channels: int, channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)


def _projection(in_channels: int, channels: int, stride: int, norm_layer: NormLayer) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False), norm_layer(channels))


class BasicBlockV1(nn.Module):
    """Two 3x3 convs (stride on the first) plus the shortcut: ``[B, in_channels, H, W]`` ->
    ``[B, channels, H/stride, W/stride]``. ``downsample``: a 1x1 conv + norm projection shortcut.
    ``last_gamma`` zeroes the last norm's scale (``body.4``), as GluonCV's ``last_gamma``."""
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: bool = False,
                 norm_layer: NormLayer = nn.BatchNorm2d, last_gamma: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            _conv3x3(in_channels, channels, stride), norm_layer(channels), nn.ReLU(inplace=True),
            _conv3x3(channels, channels, 1), norm_layer(channels))
        self.downsample = (_projection(in_channels, channels, stride, norm_layer)
                           if downsample else None)
        self.relu = nn.ReLU(inplace=True)
        if last_gamma:
            _zero_gamma(self.body[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.body(x) + shortcut)


class BottleneckV1(nn.Module):
    """1x1 (stride, bias) -> 3x3 -> 1x1 (bias) to ``channels``, plus the shortcut:
    ``[B, in_channels, H, W]`` -> ``[B, channels, H/stride, W/stride]``, inner width
    ``channels // 4``. ``last_gamma`` zeroes the last norm's scale (``body.7``)."""
    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: bool = False,
                 norm_layer: NormLayer = nn.BatchNorm2d, last_gamma: bool = False):
        super().__init__()
        mid = channels // 4
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, stride, bias=True), norm_layer(mid), nn.ReLU(inplace=True),
            _conv3x3(mid, mid, 1), norm_layer(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1, bias=True), norm_layer(channels))
        self.downsample = (_projection(in_channels, channels, stride, norm_layer)
                           if downsample else None)
        self.relu = nn.ReLU(inplace=True)
        if last_gamma:
            _zero_gamma(self.body[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.body(x) + shortcut)


Block = Type[Union[BasicBlockV1, BottleneckV1]]


class ResNetV1(nn.Module):
    """ResNet V1 classifier (GluonCV's ``ResNetV1``).

    Args:
        block: :class:`BasicBlockV1` or :class:`BottleneckV1`.
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]``.
        channels: stem width, then each stage's output channels (``len(layers) + 1`` entries),
            e.g. ``[64, 256, 512, 1024, 2048]``.
        classes: classifier outputs.
        thumbnail: a 3x3 stride-1 stem conv without norm and pooling (GluonCV's small-image
            option) instead of the 7x7 stride-2 conv, norm, ReLU and max pool.
        last_gamma: zero-initialise the last norm scale of every residual block.
        norm_layer: normalisation constructor, called as ``norm_layer(C)`` (``nn.BatchNorm2d``,
            ``nn.SyncBatchNorm``, :class:`gluon_bof.nn.norm.FrozenBatchNorm2d`, ...).

    Input ``[B, 3, H, W]``; output logits ``[B, classes]``. :meth:`forward_features` returns
    the last stage's map ``[B, channels[-1], H/32, W/32]`` (``H/8`` with ``thumbnail``).
    """

    def __init__(self, block: Block, layers: Sequence[int], channels: Sequence[int],
                 classes: int = 1000, thumbnail: bool = False, last_gamma: bool = False,
                 norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        if len(layers) != len(channels) - 1:
            raise ValueError(f"resnetv1.py: len(channels) must be len(layers) + 1, "
                             f"got {len(channels)} and {len(layers)}")
        if thumbnail:
            feats = [_conv3x3(3, channels[0], 1)]
        else:
            feats = [nn.Conv2d(3, channels[0], 7, 2, 3, bias=False), norm_layer(channels[0]),
                     nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        for i, num in enumerate(layers):
            in_ch, out_ch = channels[i], channels[i + 1]
            blocks = [block(in_ch, out_ch, 1 if i == 0 else 2, out_ch != in_ch, norm_layer,
                            last_gamma)]
            blocks += [block(out_ch, out_ch, 1, False, norm_layer, last_gamma) for _ in range(num - 1)]
            feats.append(nn.Sequential(*blocks))
        feats.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*feats)
        self.output = nn.Linear(channels[-1], classes)

    def checkpoint_stages(self) -> List[nn.Module]:
        """The four residual stages of ``features``: what ``--grad-checkpoint`` recomputes."""
        return residual_stages(self.features, (BasicBlockV1, BottleneckV1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> the last stage's output (before global pooling)."""
        return self.features[:-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(torch.flatten(self.features(x), 1))


# depth: (block, blocks per stage, channels); GluonCV's resnet_spec
_SPEC = {18: (BasicBlockV1, [2, 2, 2, 2], [64, 64, 128, 256, 512]),
         34: (BasicBlockV1, [3, 4, 6, 3], [64, 64, 128, 256, 512]),
         50: (BottleneckV1, [3, 4, 6, 3], [64, 256, 512, 1024, 2048]),
         101: (BottleneckV1, [3, 4, 23, 3], [64, 256, 512, 1024, 2048]),
         152: (BottleneckV1, [3, 8, 36, 3], [64, 256, 512, 1024, 2048])}


def _resnet_v1(depth: int, classes: int, norm_layer: NormLayer, pretrained, kwargs) -> ResNetV1:
    block, layers, channels = _SPEC[depth]
    net = ResNetV1(block, layers, channels, classes=classes, norm_layer=norm_layer, **kwargs)
    return load_weights(net, pretrained, f"resnet{depth}_v1")


# Each builder takes ``classes``, ``norm_layer``, ``pretrained`` (False; True: GluonCV's ImageNet
# weights of that name through model_store; or a path: see model_store.load_weights) and ResNetV1's
# options (``thumbnail``, ``last_gamma``).
@register_model("resnet18_v1")
def resnet18_v1(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet_v1(18, classes, norm_layer, pretrained, kwargs)


@register_model("resnet34_v1")
def resnet34_v1(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet_v1(34, classes, norm_layer, pretrained, kwargs)


@register_model("resnet50_v1")
def resnet50_v1(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet_v1(50, classes, norm_layer, pretrained, kwargs)


@register_model("resnet101_v1")
def resnet101_v1(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet_v1(101, classes, norm_layer, pretrained, kwargs)


@register_model("resnet152_v1")
def resnet152_v1(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    return _resnet_v1(152, classes, norm_layer, pretrained, kwargs)
