"""Feature Pyramid Network Faster R-CNN (Lin et al. 2017) with GluonCV's layout and names.

GluonCV's ``faster_rcnn_fpn_*`` (``gluoncv.nn.feature.FPNFeatureExpander`` + ``FasterRCNN`` with
``min_stage=2, max_stage=6``):

* features: ResNet ``layer1..layer4`` (C2..C5, strides 4..32) -> P2..P5 (``num_filters``
  channels): a 1x1 lateral conv per level (``P{n}_conv_lat``); from the top, the coarser map is
  upsampled x2 (nearest), cropped to the lateral's size and added; a 3x3 output conv
  (``P{n}_conv1``) follows each sum. P6 (stride 64) is a 3x3 stride-2 conv (``P6_conv1``) on
  P5's lateral output (GluonCV's default ``p6_conv=True``, which its zoo models use), or a
  stride-2 subsampling of P5's output conv (``p6_conv=False``, Detectron's max pool). No
  activations. Optional norm after every conv (GluonCV's SyncBN variants): ``P5_lat_bn``,
  ``P{2,3,4}_conv1_bn`` (laterals), ``P{n}_bn`` (outputs), ``P6_pre_bn``.
* RPN: one head (``rpn.rpn_head``) shared by P2..P6, one anchor generator per level
  (``rpn.anchor_generator.{i}``: stride ``s``, one scale, 3 ratios; stored maps 384, 192, 96,
  48, 24 wide); the proposals of all levels are concatenated, then one NMS keeps the best.
* RoIs go to level ``k = floor(4 + log2(sqrt(w * h) / 224 + 1e-6))`` clipped to [2, 5] with
  ``w = x2 - x1 + 1`` (P6 is RPN-only), pooled there by RoIAlign (7x7, ``sampling_ratio=2``,
  ``aligned=False``), then a 2x1024 fully connected box head (``box_features.{0,2}``).

GluonCV's FPN parameter names are flat MXNet symbol names (``features.resnetv1b_layers1_conv0
_weight``, ``features.P2_conv_lat_bias``); :func:`.fpn_names.fpn_to_gluoncv` maps our keys onto
them (:attr:`FasterRCNNFPN.gluoncv_mapping`: the SyncBN variants' backbone norms are
``syncbatchnorm``, the plain models' ``batchnorm``).
"""
from __future__ import annotations

import functools
import re
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import roi_align, roi_pool

from ..gluoncv import GluonCVMapping, register_gluoncv_mapping
from .anchors import RPNAnchorGenerator
from .faster_rcnn import FasterRCNN
from .fpn_names import fpn_to_gluoncv
from .rpn import RPNHead, generate_proposals

__all__ = ["FPNFeatureExpander", "ResNetBody", "MultiLevelRPN", "FasterRCNNFPN",
           "assign_levels", "fpn_box_head", "fpn_to_gluoncv"]


def _conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    # GluonCV: Xavier(uniform, 'in', 1) = U(+-sqrt(1 / fan_in)) = PyTorch's default; bias 0
    conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


class ResNetBody(nn.Module):
    """The stem and ``layer1..layer4`` of a :class:`..resnetv1b.ResNetV1b` (no classifier);
    ``forward(x [B, 3, H, W])`` returns ``[C2, C3, C4, C5]`` (strides 4, 8, 16, 32)."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


class FPNFeatureExpander(nn.Module):
    """FPN on a multi-level body (GluonCV's ``FPNFeatureExpander``, see the module docstring).

    Args:
        body: ``x -> [C2, C3, C4, C5]`` (finest first).
        in_channels: channels of the body's outputs, finest first.
        num_filters: output channels of every level (GluonCV: 256).
        use_p6, p6_conv: add P6 by a stride-2 3x3 conv (True) or by subsampling P5 (False).
        no_bias: convs without bias (default: when ``norm_layer`` is given).
        norm_layer: None (GluonCV's plain FPN), ``nn.BatchNorm2d``, ``nn.SyncBatchNorm``,
            :class:`gluon_bof.nn.norm.FrozenBatchNorm2d`, ...: called as ``norm_layer(C)``.
        body_name: attribute holding ``body`` (the zoo uses GluonCV's symbol prefix,
            'resnetv1b' / 'resnetv1d', so weight names map one to one).

    ``forward(x)`` returns ``[P2, ..., P5(, P6)]``, each ``[B, num_filters, ceil(H / s),
    ceil(W / s)]``-like (the body's sizes; P6: ``ceil(P5 / 2)``).
    """

    def __init__(self, body: nn.Module, in_channels: Sequence[int], num_filters: int = 256,
                 use_p6: bool = True, p6_conv: bool = True, no_bias: Optional[bool] = None,
                 norm_layer: Optional[Callable[[int], nn.Module]] = None,
                 body_name: str = "body"):
        super().__init__()
        if body_name.startswith("P") or not body_name.isidentifier():
            raise ValueError(f"fpn.py: body_name must be an identifier not starting with 'P', "
                             f"got {body_name!r}")
        self.body_name = body_name
        self.add_module(body_name, body)
        self.num_levels = len(in_channels)
        self.top = self.num_levels + 1  # GluonCV numbers the levels 2..5 for 4 inputs
        self.use_p6, self.p6_conv = use_p6, p6_conv
        self.out_channels = num_filters
        bias = norm_layer is None if no_bias is None else not no_bias

        def norm(name):
            if norm_layer is not None:
                self.add_module(name, norm_layer(num_filters))

        for i, cin in enumerate(in_channels):
            n = i + 2
            self.add_module(f"P{n}_conv_lat", _conv(cin, num_filters, 1, bias=bias))
            norm(f"P{n}_lat_bn" if n == self.top else f"P{n}_conv1_bn")
            self.add_module(f"P{n}_conv1", _conv(num_filters, num_filters, 3, bias=bias))
            norm(f"P{n}_bn")
        if use_p6 and p6_conv:
            self.add_module(f"P{self.top + 1}_conv1",
                            _conv(num_filters, num_filters, 3, 2, bias=bias))
            norm(f"P{self.top + 1}_pre_bn")

    def _layer(self, name: str, x: torch.Tensor) -> torch.Tensor:
        m = getattr(self, name, None)
        return x if m is None else m(x)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = getattr(self, self.body_name)(x)
        if len(feats) != self.num_levels:
            raise ValueError(f"fpn.py: the body gave {len(feats)} maps, expected "
                             f"{self.num_levels}")
        outs: List[torch.Tensor] = []
        y = p6 = None
        for i, c in enumerate(reversed(feats)):
            n = self.top - i
            lat = self._layer(f"P{n}_conv_lat", c)
            if i == 0:
                y = self._layer(f"P{n}_lat_bn", lat)
                if self.use_p6 and self.p6_conv:
                    p6 = self._layer(f"P{n + 1}_pre_bn", getattr(self, f"P{n + 1}_conv1")(y))
            else:
                lat = self._layer(f"P{n}_conv1_bn", lat)
                up = F.interpolate(y, scale_factor=2.0, mode="nearest")
                y = lat + up[..., :lat.shape[-2], :lat.shape[-1]]
            out = getattr(self, f"P{n}_conv1")(y)
            if i == 0 and self.use_p6 and not self.p6_conv:
                p6 = out[..., ::2, ::2]  # MXNet max pool, kernel 1, stride 2
            outs.append(self._layer(f"P{n}_bn", out))
        outs = outs[::-1]
        return outs + [p6] if self.use_p6 else outs


class MultiLevelRPN(nn.Module):
    """GluonCV's multi-level RPN (``RPN(multi_level=True, per_level_nms=False)``).

    Args:
        in_channels: channels of every level; channels: width of the shared 3x3 conv.
        strides: per level; scales: one per level (anchor size ``base_size * scale``);
        ratios: aspect ratios; alloc_size: stored anchor map of the finest level (halved per
            level, at least 16); the rest as :class:`.rpn.RPN`.

    ``forward(feats, image_sizes, training)`` returns, like :class:`.rpn.RPN`, ``anchors
    [N, 4]``, ``logits [B, N]``, ``deltas [B, N, 4]`` (levels concatenated, finest first, each
    in ``(y, x, anchor)`` order) and the proposals ``(rois, scores, valid)`` of
    :func:`.rpn.generate_proposals` over all levels together.
    """

    def __init__(self, in_channels: int = 256, channels: int = 1024,
                 strides: Sequence[int] = (4, 8, 16, 32, 64), base_size: int = 16,
                 scales: Sequence[float] = (2, 4, 8, 16, 32),
                 ratios: Sequence[float] = (0.5, 1, 2), alloc_size: Tuple[int, int] = (384, 384),
                 clip: Optional[float] = None, nms_thresh: float = 0.7,
                 train_pre_nms: int = 12000, train_post_nms: int = 2000,
                 test_pre_nms: int = 6000, test_post_nms: int = 1000, min_size: float = 1):
        super().__init__()
        if len(strides) != len(scales):
            raise ValueError(f"fpn.py: {len(strides)} strides but {len(scales)} scales "
                             f"(one scale per level)")
        gens, size = [], tuple(alloc_size)
        for stride, scale in zip(strides, scales):
            gens.append(RPNAnchorGenerator(stride, base_size, ratios, [scale], size))
            size = (max(size[0] // 2, 16),) * 2
        self.anchor_generator = nn.ModuleList(gens)
        self.rpn_head = RPNHead(in_channels, channels, gens[0].num_depth)
        self.clip, self.nms_thresh, self.min_size = clip, nms_thresh, min_size
        self.train_pre_nms = max(1, train_pre_nms)
        self.train_post_nms = max(1, min(train_post_nms, train_pre_nms))
        self.test_pre_nms = max(1, test_pre_nms)
        self.test_post_nms = max(1, min(test_post_nms, test_pre_nms))

    def forward(self, feats: Sequence[torch.Tensor], image_sizes: List[Tuple[int, int]],
                training: bool = False):
        if len(feats) != len(self.anchor_generator):
            raise ValueError(f"fpn.py: {len(feats)} feature maps for "
                             f"{len(self.anchor_generator)} RPN levels")
        anchors, logits, deltas = [], [], []
        for gen, feat in zip(self.anchor_generator, feats):
            anchors.append(gen(feat))
            lg, dl = self.rpn_head(feat)
            logits.append(lg)
            deltas.append(dl)
        anchors, logits, deltas = torch.cat(anchors), torch.cat(logits, 1), torch.cat(deltas, 1)
        pre, post = ((self.train_pre_nms, self.train_post_nms) if training
                     else (self.test_pre_nms, self.test_post_nms))
        proposals = generate_proposals(anchors, torch.sigmoid(logits.detach()), deltas.detach(),
                                       image_sizes, pre, post, self.nms_thresh, self.min_size,
                                       self.clip)
        return anchors, logits, deltas, proposals


def assign_levels(rois: torch.Tensor, min_level: int = 2, max_level: int = 5,
                  canonical_scale: float = 224.0, canonical_level: int = 4,
                  eps: float = 1e-6) -> torch.Tensor:
    """FPN level of each XYXY RoI ``[..., 4]`` (GluonCV's rule, "+1" sizes):
    ``floor(canonical_level + log2(sqrt(w * h) / canonical_scale + eps))`` clipped to
    ``[min_level, max_level]``; returns a long tensor ``[...]``."""
    w = rois[..., 2] - rois[..., 0] + 1
    h = rois[..., 3] - rois[..., 1] + 1
    k = torch.floor(canonical_level + torch.log2(torch.sqrt(w * h) / canonical_scale + eps))
    return k.nan_to_num(float(min_level)).clamp(min_level, max_level).long()


class _FlattenSequential(nn.Sequential):
    """``nn.Sequential`` flattening its input before each Linear (MXNet ``Dense``'s habit)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self:
            x = m(x.flatten(1) if isinstance(m, nn.Linear) and x.dim() > 2 else x)
        return x


def fpn_box_head(in_channels: int = 256, roi_size: Tuple[int, int] = (7, 7),
                 hidden: int = 1024, norm_layer: Optional[Callable[[int], nn.Module]] = None,
                 num_convs: int = 1) -> nn.Sequential:
    """GluonCV's FPN box head, pooled ``[R, C, h, w]`` -> ``[R, hidden]``: without norm two
    Linear + ReLU (``box_features.{0,2}``, weights N(0, .01)); with ``norm_layer`` (GluonCV's
    SyncBN variants) ``num_convs`` x (3x3 conv, no bias, ``in_channels`` wide, + norm + ReLU),
    then Linear + ReLU: ``box_features.{0,1,3}`` for one conv (GluonCV's r50), ``{0,1,3,4,6,7,9,
    10,12}`` for four (its r101)."""
    def dense(cin):
        fc = nn.Linear(cin, hidden)
        nn.init.normal_(fc.weight, 0.0, 0.01)
        nn.init.zeros_(fc.bias)
        return fc
    flat = in_channels * roi_size[0] * roi_size[1]
    if norm_layer is None:
        return _FlattenSequential(dense(flat), nn.ReLU(inplace=True), dense(hidden),
                                  nn.ReLU(inplace=True))
    if num_convs < 1:
        raise ValueError(f"fpn.py: a normalised box head needs num_convs >= 1, got {num_convs}")
    convs = []
    for _ in range(num_convs):
        convs += [nn.Conv2d(in_channels, in_channels, 3, 1, 1, bias=False),
                  norm_layer(in_channels), nn.ReLU(inplace=True)]
    return _FlattenSequential(*convs, dense(flat), nn.ReLU(inplace=True))


class FasterRCNNFPN(FasterRCNN):
    """Faster R-CNN on an FPN (GluonCV's ``FasterRCNN`` with ``min_stage=2, max_stage=6``).

    Args:
        features: ``x -> [P2, ..., P6]`` (e.g. :class:`FPNFeatureExpander`), ``features_channels``
            wide (default 256).
        box_features: pooled RoI features -> ``[R, top_channels]`` (:func:`fpn_box_head`).
        classes: foreground class names (background is extra).
        strides: of the feature maps, finest first; the RoI head pools from all but the last
            (P6) unless ``max_stage <= 5``.
        min_stage, max_stage: GluonCV's level numbers of the first / last map.
        roi_canonical_scale: RoI size mapped to level 4 (:func:`assign_levels`).
        rpn_channel, base_size, scales (one per level), ratios, alloc_size, clip, rpn_*: see
            :class:`MultiLevelRPN`; everything else as :class:`.faster_rcnn.FasterRCNN` (same
            eval output and train losses).
    """

    def __init__(self, features: nn.Module, box_features: nn.Module, classes: Sequence[str],
                 strides: Sequence[int] = (4, 8, 16, 32, 64), min_stage: int = 2,
                 max_stage: int = 6, roi_canonical_scale: float = 224.0,
                 roi_size: Tuple[int, int] = (7, 7), rpn_channel: int = 1024, base_size: int = 16,
                 scales: Sequence[float] = (2, 4, 8, 16, 32),
                 ratios: Sequence[float] = (0.5, 1, 2), alloc_size: Tuple[int, int] = (384, 384),
                 clip: Optional[float] = None, rpn_nms_thresh: float = 0.7,
                 rpn_train_pre_nms: int = 12000, rpn_train_post_nms: int = 2000,
                 rpn_test_pre_nms: int = 6000, rpn_test_post_nms: int = 1000,
                 rpn_min_size: float = 1, features_channels: int = 256,
                 top_channels: int = 1024, **kwargs):
        strides = tuple(int(s) for s in strides)
        if len(strides) != max_stage - min_stage + 1:
            raise ValueError(f"fpn.py: {len(strides)} strides for stages {min_stage}..{max_stage}")
        rpn = MultiLevelRPN(features_channels, rpn_channel, strides, base_size, scales, ratios,
                            alloc_size, clip, rpn_nms_thresh, rpn_train_pre_nms,
                            rpn_train_post_nms, rpn_test_pre_nms, rpn_test_post_nms, rpn_min_size)
        super().__init__(features, None, classes, box_features=box_features, roi_size=roi_size,
                         strides=strides, clip=clip, features_channels=features_channels,
                         top_channels=top_channels, rpn=rpn, **kwargs)
        self._strides = strides
        self._min_stage = min_stage
        self._max_roi_stage = max_stage - 1 if max_stage > 5 else max_stage  # no P6 for RoIs
        self.roi_canonical_scale = roi_canonical_scale

    @property
    def gluoncv_mapping(self) -> GluonCVMapping:
        """How our keys map to GluonCV's names. GluonCV names norm blocks after their class: its
        only FPN models with norms in the FPN (``P{n}_bn``, ...) are the ``fpn_syncbn`` ones,
        whose backbone norms are ``syncbatchnorm``; the plain models' are ``batchnorm``."""
        normed = any(re.fullmatch(r"P\d+_\w*bn", n) for n, _ in self.features.named_children())
        return _SYNCBN_NAMES if normed else _PLAIN_NAMES

    def _pool(self, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """RoI features of ``rois [B, R, 4]`` from their levels -> ``[B * R, C, h, w]``."""
        B, R = rois.shape[:2]
        flat = rois.reshape(-1, 4).to(feats[0].dtype)
        idx = torch.arange(B, device=rois.device, dtype=flat.dtype).repeat_interleave(R)
        boxes = torch.cat([idx[:, None], flat], dim=1)
        levels = assign_levels(flat.float(), self._min_stage, self._max_roi_stage,
                               self.roi_canonical_scale)
        out = feats[0].new_zeros((B * R, feats[0].shape[1]) + self._roi_size)
        for i, lvl in enumerate(range(self._min_stage, self._max_roi_stage + 1)):
            sel = (levels == lvl).nonzero(as_tuple=True)[0]
            if sel.numel() == 0:
                continue
            scale = 1.0 / self._strides[i]
            if self._roi_mode == "align":
                pooled = roi_align(feats[i], boxes[sel], self._roi_size, scale,
                                   sampling_ratio=2, aligned=False)
            else:
                pooled = roi_pool(feats[i], boxes[sel], self._roi_size, scale)
            out = out.index_copy(0, sel, pooled.to(out.dtype))
        return out


_PLAIN_NAMES = GluonCVMapping(to_gluoncv=fpn_to_gluoncv, computed=("anchors",), verify=("anchors",))
_SYNCBN_NAMES = GluonCVMapping(to_gluoncv=functools.partial(fpn_to_gluoncv, norm="syncbatchnorm"),
                               computed=("anchors",), verify=("anchors",))
register_gluoncv_mapping("FasterRCNNFPN", _PLAIN_NAMES)
