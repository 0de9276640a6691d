"""Inception-V3 (Szegedy et al., "Rethinking the Inception Architecture", 2016), laid out as
GluonCV's ``Inception3`` so that GluonCV weights load one to one; the third network of the Bag of
Tricks paper, trained at 299x299.

Every convolution is GluonCV's basic cell ``[conv (no bias), norm (eps 0.001), ReLU]``, an
``nn.Sequential`` whose children ``0``/``1`` hold the parameters. An Inception block is a
:class:`Concurrent` of branches whose outputs are concatenated on the channel axis; a branch is an
``nn.Sequential`` of an optional pool (3x3 average, stride 1, pad 1, padding counted as MXNet
does; or 3x3 max, stride 2) and basic cells. State-dict keys are GluonCV's structural names
(norm ``gamma``/``beta`` are ``weight``/``bias`` here)::

    features.{0,1,2,4,5}.{0,1}.*          stem cells (3 and 6 are max pools)
    features.{7-9}                        A blocks (35x35), pool features 32, 64, 64
    features.10                           B (grid reduction to 17x17)
    features.{11-14}                      C blocks (17x17), 7x7 widths 128, 160, 160, 192
    features.15                           D (grid reduction to 8x8)
    features.{16,17}                      E blocks (8x8); branches 1 and 2 end in a split pair
    features.{block}.{branch}.{cell}.{0,1}.*      e.g. features.7.3.1.0.weight (A1, pool branch)
    output.weight, output.bias            (classes, 2048)

``features`` ends with a global average pool (18) and dropout 0.5 (19). Input ``[B, 3, H, W]``,
ImageNet-normalised RGB. GluonCV pools the last map with a fixed 8x8 window, which averages the
whole map only for inputs of 299 to 330 (8x8 maps) and fails below 299. We pool globally (as
torchvision): the same at 299, and any H, W >= 75 works (smaller inputs for tests, quick runs).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .model_store import load_weights
from .registry import register_model

__all__ = ["Concurrent", "Inception3", "basic_conv"]

NormLayer = Callable[..., nn.Module]
Kernel = Union[int, Tuple[int, int]]
BN_EPS = 1e-3  # GluonCV's (and the TensorFlow original's); ResNets use 1e-5


class Concurrent(nn.Sequential):
    """Runs every child on the same input and concatenates the outputs on the channel axis
    (GluonCV's ``HybridConcurrent(axis=1)``): ``[B, C, H, W]`` -> ``[B, sum C_i, H', W']``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self], dim=1)


def basic_conv(in_channels: int, channels: int, kernel: Kernel, stride: int = 1,
               padding: Kernel = 0, norm_layer: NormLayer = nn.BatchNorm2d) -> nn.Sequential:
    """GluonCV's ``_make_basic_conv``: conv (no bias), ``norm_layer(channels, eps=1e-3)``, ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, channels, kernel, stride, padding, bias=False),
                         norm_layer(channels, eps=BN_EPS), nn.ReLU(inplace=True))


# a conv setting: (channels, kernel, stride, padding)
Setting = Tuple[int, Kernel, int, Kernel]


def _branch(in_channels: int, pool: Optional[str], settings: Sequence[Setting],
            norm_layer: NormLayer) -> nn.Sequential:
    """GluonCV's ``_make_branch``: an optional pool, then a basic cell per setting."""
    layers = []
    if pool == "avg":
        layers.append(nn.AvgPool2d(3, 1, 1))  # count_include_pad=True, as MXNet's default
    elif pool == "max":
        layers.append(nn.MaxPool2d(3, 2))
    for channels, kernel, stride, padding in settings:
        layers.append(basic_conv(in_channels, channels, kernel, stride, padding, norm_layer))
        in_channels = channels
    return nn.Sequential(*layers)


def _block_a(in_ch: int, pool_features: int, norm: NormLayer) -> Concurrent:
    """35x35 block: ``in_ch`` -> ``224 + pool_features`` channels."""
    return Concurrent(
        _branch(in_ch, None, [(64, 1, 1, 0)], norm),
        _branch(in_ch, None, [(48, 1, 1, 0), (64, 5, 1, 2)], norm),
        _branch(in_ch, None, [(64, 1, 1, 0), (96, 3, 1, 1), (96, 3, 1, 1)], norm),
        _branch(in_ch, "avg", [(pool_features, 1, 1, 0)], norm))


def _block_b(in_ch: int, norm: NormLayer) -> Concurrent:
    """35x35 -> 17x17 reduction: ``in_ch`` -> ``480 + in_ch`` channels."""
    return Concurrent(
        _branch(in_ch, None, [(384, 3, 2, 0)], norm),
        _branch(in_ch, None, [(64, 1, 1, 0), (96, 3, 1, 1), (96, 3, 2, 0)], norm),
        _branch(in_ch, "max", [], norm))


def _block_c(in_ch: int, c7: int, norm: NormLayer) -> Concurrent:
    """17x17 block with factorised 7x7 convs of width ``c7``: ``in_ch`` -> 768 channels."""
    return Concurrent(
        _branch(in_ch, None, [(192, 1, 1, 0)], norm),
        _branch(in_ch, None, [(c7, 1, 1, 0), (c7, (1, 7), 1, (0, 3)), (192, (7, 1), 1, (3, 0))],
                norm),
        _branch(in_ch, None, [(c7, 1, 1, 0), (c7, (7, 1), 1, (3, 0)), (c7, (1, 7), 1, (0, 3)),
                              (c7, (7, 1), 1, (3, 0)), (192, (1, 7), 1, (0, 3))], norm),
        _branch(in_ch, "avg", [(192, 1, 1, 0)], norm))


def _block_d(in_ch: int, norm: NormLayer) -> Concurrent:
    """17x17 -> 8x8 reduction: ``in_ch`` -> ``512 + in_ch`` channels."""
    return Concurrent(
        _branch(in_ch, None, [(192, 1, 1, 0), (320, 3, 2, 0)], norm),
        _branch(in_ch, None, [(192, 1, 1, 0), (192, (1, 7), 1, (0, 3)), (192, (7, 1), 1, (3, 0)),
                              (192, 3, 2, 0)], norm),
        _branch(in_ch, "max", [], norm))


def _split_3x3(in_ch: int, norm: NormLayer) -> Concurrent:
    """A 1x3 and a 3x1 conv side by side: ``in_ch`` -> 768 channels."""
    return Concurrent(_branch(in_ch, None, [(384, (1, 3), 1, (0, 1))], norm),
                      _branch(in_ch, None, [(384, (3, 1), 1, (1, 0))], norm))


def _block_e(in_ch: int, norm: NormLayer) -> Concurrent:
    """8x8 block with split 3x3 convs: ``in_ch`` -> 2048 channels."""
    return Concurrent(
        _branch(in_ch, None, [(320, 1, 1, 0)], norm),
        nn.Sequential(_branch(in_ch, None, [(384, 1, 1, 0)], norm), _split_3x3(384, norm)),
        nn.Sequential(_branch(in_ch, None, [(448, 1, 1, 0), (384, 3, 1, 1)], norm),
                      _split_3x3(384, norm)),
        _branch(in_ch, "avg", [(192, 1, 1, 0)], norm))


class Inception3(nn.Module):
    """Inception-V3 classifier (GluonCV's ``Inception3``; no auxiliary head, as GluonCV).

    Args:
        classes: classifier outputs.
        norm_layer: normalisation constructor, called as ``norm_layer(C, eps=1e-3)``
            (``nn.BatchNorm2d``, ``nn.SyncBatchNorm``, :class:`gluon_bof.nn.norm.FrozenBatchNorm2d`).
        dropout: dropout rate before ``output`` (GluonCV: 0.5).

    Input ``[B, 3, H, W]`` with H, W >= 75 (299 for ImageNet, GluonCV's only size); output logits
    ``[B, classes]``. :meth:`forward_features` returns the last block's map ``[B, 2048, h, w]``
    (8x8 at 299).
    """

    min_input_size = 75  # the smallest square input (the stem and reductions leave 1x1)

    def __init__(self, classes: int = 1000, norm_layer: NormLayer = nn.BatchNorm2d,
                 dropout: float = 0.5):
        super().__init__()
        n = norm_layer
        self.features = nn.Sequential(
            basic_conv(3, 32, 3, 2, norm_layer=n), basic_conv(32, 32, 3, norm_layer=n),
            basic_conv(32, 64, 3, padding=1, norm_layer=n), nn.MaxPool2d(3, 2),
            basic_conv(64, 80, 1, norm_layer=n), basic_conv(80, 192, 3, norm_layer=n),
            nn.MaxPool2d(3, 2),
            _block_a(192, 32, n), _block_a(256, 64, n), _block_a(288, 64, n),
            _block_b(288, n),
            _block_c(768, 128, n), _block_c(768, 160, n), _block_c(768, 160, n),
            _block_c(768, 192, n),
            _block_d(768, n),
            _block_e(1280, n), _block_e(2048, n),
            nn.AdaptiveAvgPool2d(1), nn.Dropout(dropout))
        self.output = nn.Linear(2048, classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> the last Inception block's output (before pooling)."""
        return self.features[:-2](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(f"inception.py: Inception-V3 needs inputs of at least 75x75, "
                             f"got {tuple(x.shape[-2:])}")
        return self.output(torch.flatten(self.features(x), 1))


@register_model("inceptionv3")
def inceptionv3(*, classes=1000, norm_layer=nn.BatchNorm2d, pretrained=False, **kwargs):
    """Inception-V3 (GluonCV's ``inceptionv3``); ``pretrained``: False, True (GluonCV's
    ImageNet weights) or a weights file (see :func:`.model_store.load_weights`)."""
    return load_weights(Inception3(classes=classes, norm_layer=norm_layer, **kwargs), pretrained,
                        "inceptionv3")
