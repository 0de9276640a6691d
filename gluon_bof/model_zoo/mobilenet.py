"""MobileNet v1 laid out exactly as GluonCV's ``MobileNet`` (flat ``features`` sequence).

``features`` is one flat sequence of 83 modules, as in GluonCV: conv(0) bn(1) relu(2) for the stem,
then 13 depthwise-separable units of six modules each (dw conv, bn, relu, pw conv, bn, relu), then
global average pooling (81) and flatten (82). Parameter names mirror GluonCV's structural names
(``net._collect_params_with_prefix()``), BatchNorm ``gamma``/``beta`` being ``weight``/``bias``::

    GluonCV (mobilenet0.25)                  gluon-bof
    features.0.weight  (8, 3, 3, 3)          features.0.weight
    features.1.gamma / beta                  features.1.weight / bias
    features.1.running_mean / running_var    features.1.running_mean / running_var
    features.3.weight  (8, 1, 3, 3)  (dw)    features.3.weight
    ...                                      ...
    features.79.gamma                        features.79.weight
    output.weight (1000, 256), output.bias   output.weight, output.bias

Feature strides: ``features[:33]`` ends at stride 8, ``features[33:69]`` at 16, ``features[69:81]``
at 32 (the slices GluonCV's YOLOv3 uses).
"""
from typing import Callable, List

import torch
from torch import nn

from .model_store import load_weights
from .registry import register_model

__all__ = ["MobileNet", "mobilenet1_0", "mobilenet0_75", "mobilenet0_5", "mobilenet0_25"]


def _conv_bn(in_channels: int, channels: int, kernel: int = 1, stride: int = 1, pad: int = 0,
             groups: int = 1, norm_layer: Callable = nn.BatchNorm2d) -> List[nn.Module]:
    """Conv (no bias), norm (eps 1e-5, MXNet momentum .9), ReLU, as three flat modules."""
    return [nn.Conv2d(in_channels, channels, kernel, stride, pad, groups=groups, bias=False),
            norm_layer(channels),  # torch defaults: eps 1e-5, momentum .1 (MXNet .9)
            nn.ReLU(inplace=True)]


class MobileNet(nn.Module):
    """MobileNet v1 (https://arxiv.org/abs/1704.04861), GluonCV's layout.

    Args:
        multiplier: width multiplier (channels are ``int(c * multiplier)``).
        classes: number of classifier outputs.
        norm_layer: normalisation layer constructor, called as ``norm_layer(C)``.

    Input ``[B, 3, H, W]``; output logits ``[B, classes]``.
    """

    def __init__(self, multiplier: float = 1.0, classes: int = 1000,
                 norm_layer: Callable = nn.BatchNorm2d):
        super().__init__()
        dw_channels = [int(c * multiplier) for c in [32, 64] + [128] * 2 + [256] * 2
                       + [512] * 6 + [1024]]
        channels = [int(c * multiplier) for c in [64] + [128] * 2 + [256] * 2 + [512] * 6
                    + [1024] * 2]
        strides = [1, 2] * 3 + [1] * 5 + [2, 1]
        feats = _conv_bn(3, int(32 * multiplier), 3, 2, 1, norm_layer=norm_layer)
        for dwc, c, s in zip(dw_channels, channels, strides):
            feats += _conv_bn(dwc, dwc, 3, s, 1, groups=dwc, norm_layer=norm_layer)
            feats += _conv_bn(dwc, c, norm_layer=norm_layer)
        feats += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*feats)
        self.output = nn.Linear(channels[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x))


def _mobilenet(multiplier: float, classes: int, norm_layer: Callable, pretrained) -> MobileNet:
    net = MobileNet(multiplier, classes=classes, norm_layer=norm_layer)
    return load_weights(net, pretrained, f"mobilenet{multiplier}")


@register_model("mobilenet1.0")
def mobilenet1_0(*, classes: int = 1000, norm_layer: Callable = nn.BatchNorm2d,
                 pretrained=False) -> MobileNet:
    """MobileNet v1, width 1.0. ``pretrained``: False, True or a weights file (``load_weights``)."""
    return _mobilenet(1.0, classes, norm_layer, pretrained)


@register_model("mobilenet0.75")
def mobilenet0_75(*, classes: int = 1000, norm_layer: Callable = nn.BatchNorm2d,
                  pretrained=False) -> MobileNet:
    """MobileNet v1, width 0.75. ``pretrained``: False, True or a weights file (``load_weights``)."""
    return _mobilenet(0.75, classes, norm_layer, pretrained)


@register_model("mobilenet0.5")
def mobilenet0_5(*, classes: int = 1000, norm_layer: Callable = nn.BatchNorm2d,
                 pretrained=False) -> MobileNet:
    """MobileNet v1, width 0.5. ``pretrained``: False, True or a weights file (``load_weights``)."""
    return _mobilenet(0.5, classes, norm_layer, pretrained)


@register_model("mobilenet0.25")
def mobilenet0_25(*, classes: int = 1000, norm_layer: Callable = nn.BatchNorm2d,
                  pretrained=False) -> MobileNet:
    """MobileNet v1, width 0.25. ``pretrained``: False, True or a weights file (``load_weights``)."""
    return _mobilenet(0.25, classes, norm_layer, pretrained)
