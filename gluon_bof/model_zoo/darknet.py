"""Darknet-53, the YOLOv3 backbone, laid out exactly as GluonCV's ``DarknetV3``.

Parameter names mirror GluonCV's structural names (``net._collect_params_with_prefix()``, i.e. the
names ``net.save_parameters`` writes), with BatchNorm's ``gamma``/``beta`` called
``weight``/``bias`` here (``running_mean``/``running_var`` keep their names; torch adds
``num_batches_tracked``, which GluonCV does not have)::

    GluonCV (darknet53)                      gluon-bof
    features.0.0.weight      (32, 3, 3, 3)   features.0.0.weight
    features.0.1.gamma / beta                features.0.1.weight / bias
    features.0.1.running_mean / running_var  features.0.1.running_mean / running_var
    features.2.body.0.0.weight (32, 64,1,1)  features.2.body.0.0.weight
    ...                                      ...
    features.28.body.1.1.gamma               features.28.body.1.1.weight
    output.weight (1000, 1024), output.bias  output.weight, output.bias

``features`` holds 29 entries: a 3x3 conv cell (index 0), then for each of the five stages a
stride-2 3x3 conv cell followed by ``[1, 2, 8, 8, 4]`` residual blocks. Feature strides: index 14
ends stride 8 (256 channels), index 23 ends stride 16 (512), index 28 ends stride 32 (1024).
"""
from typing import Callable, Sequence

import torch
from torch import nn

from .model_store import load_weights
from .registry import register_model

__all__ = ["conv_bn_leaky", "DarknetBasicBlockV3", "DarknetV3", "darknet53"]


def conv_bn_leaky(in_channels: int, channels: int, kernel: int, padding: int, stride: int,
                  norm_layer: Callable = nn.BatchNorm2d) -> nn.Sequential:
    """GluonCV's ``_conv2d`` cell: conv (no bias), norm (eps 1e-5, MXNet momentum .9), LeakyReLU .1.

    Children are named ``0`` (conv), ``1`` (norm), ``2`` (activation) as in GluonCV.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel, stride=stride, padding=padding, bias=False),
        norm_layer(channels),  # torch defaults: eps 1e-5, momentum .1 (MXNet .9)
        nn.LeakyReLU(0.1),
    )


class DarknetBasicBlockV3(nn.Module):
    """Residual block: 1x1 conv to ``channel`` then 3x3 conv back to ``2 * channel``, plus input.

    Input and output: ``[B, 2*channel, H, W]``.
    """

    def __init__(self, channel: int, norm_layer: Callable = nn.BatchNorm2d):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_leaky(channel * 2, channel, 1, 0, 1, norm_layer),
            conv_bn_leaky(channel, channel * 2, 3, 1, 1, norm_layer),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DarknetV3(nn.Module):
    """Darknet v3 classifier (GluonCV's ``DarknetV3``).

    Args:
        layers: residual blocks per stage, e.g. ``[1, 2, 8, 8, 4]``.
        channels: output channels of the stem then of each stage, ``len(layers) + 1`` entries.
        classes: number of classifier outputs.
        norm_layer: normalisation layer constructor, called as ``norm_layer(C)``.

    Input ``[B, 3, H, W]`` (H, W >= 32); output logits ``[B, classes]`` (global average pooling,
    then a linear layer).
    """

    def __init__(self, layers: Sequence[int], channels: Sequence[int], classes: int = 1000,
                 norm_layer: Callable = nn.BatchNorm2d):
        super().__init__()
        if len(layers) != len(channels) - 1:
            raise ValueError(f"darknet.py: len(channels) must be len(layers) + 1, "
                             f"got {len(channels)} and {len(layers)}")
        feats = [conv_bn_leaky(3, channels[0], 3, 1, 1, norm_layer)]
        in_ch = channels[0]
        for nlayer, channel in zip(layers, channels[1:]):
            if channel % 2:
                raise ValueError(f"darknet.py: channel {channel} is not divisible by 2")
            feats.append(conv_bn_leaky(in_ch, channel, 3, 1, 2, norm_layer))
            feats.extend(DarknetBasicBlockV3(channel // 2, norm_layer) for _ in range(nlayer))
            in_ch = channel
        self.features = nn.Sequential(*feats)
        self.output = nn.Linear(in_ch, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.output(x)


DARKNET_SPEC = {53: ([1, 2, 8, 8, 4], [32, 64, 128, 256, 512, 1024])}


@register_model("darknet53")
def darknet53(*, classes: int = 1000, norm_layer: Callable = nn.BatchNorm2d,
              pretrained=False) -> DarknetV3:
    """Darknet-53 (https://arxiv.org/abs/1804.02767).

    ``pretrained``: False, True (GluonCV's ImageNet weights, downloaded once), or a weights file
    (see :func:`load_weights`)."""
    layers, channels = DARKNET_SPEC[53]
    net = DarknetV3(layers, channels, classes=classes, norm_layer=norm_layer)
    return load_weights(net, pretrained, "darknet53")
