"""Region Proposal Network with GluonCV's layout (``gluoncv.model_zoo.rcnn.rpn.RPN``, C4 form).

Parameter names: ``rpn.conv1.0.{weight,bias}`` (3x3 conv, ``channels`` wide, then ReLU),
``rpn.score.{weight,bias}`` (1x1, ``A`` objectness logits), ``rpn.loc.{weight,bias}`` (1x1,
``4A`` deltas, anchor-major), ``rpn.anchor_generator.anchors`` (the stored anchor map).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
from torchvision.ops import nms

from .anchors import RPNAnchorGenerator
from ...ops.coder import RPN_STDS, clip_boxes, decode_boxes

__all__ = ["RPN", "RPNHead", "generate_proposals"]


def _normal_init(conv: nn.Conv2d, std: float = 0.01) -> nn.Conv2d:
    nn.init.normal_(conv.weight, 0.0, std)
    nn.init.zeros_(conv.bias)
    return conv


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 convs for ``A`` objectness logits and ``4A`` box deltas
    (weights N(0, .01), biases 0). ``forward(x [B, C, h, w]) -> (logits [B, h*w*A],
    deltas [B, h*w*A, 4])`` in ``(y, x, anchor)`` order."""

    def __init__(self, in_channels: int, channels: int, num_anchors: int):
        super().__init__()
        self.conv1 = nn.Sequential(_normal_init(nn.Conv2d(in_channels, channels, 3, 1, 1)),
                                   nn.ReLU(inplace=True))
        self.score = _normal_init(nn.Conv2d(channels, num_anchors, 1))
        self.loc = _normal_init(nn.Conv2d(channels, num_anchors * 4, 1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.conv1(x)
        B = x.shape[0]
        logits = self.score(x).permute(0, 2, 3, 1).reshape(B, -1)
        deltas = self.loc(x).permute(0, 2, 3, 1).reshape(B, -1, 4)
        return logits, deltas


@torch.no_grad()
def generate_proposals(anchors: torch.Tensor, scores: torch.Tensor, deltas: torch.Tensor,
                       image_sizes: Sequence[Tuple[int, int]], pre_nms: int, post_nms: int,
                       nms_thresh: float = 0.7, min_size: float = 16,
                       clip: Optional[float] = None, stds: Sequence[float] = RPN_STDS
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GluonCV's ``RPNProposal`` + NMS: decode, clip, drop small boxes, NMS.

    Args:
        anchors: ``[N, 4]``; ``scores [B, N]`` objectness probabilities; ``deltas [B, N, 4]``.
        image_sizes: per image ``(height, width)``: boxes are clipped to
            ``[0, width] x [0, height]`` of that image.
        pre_nms: NMS runs over the ``pre_nms`` best boxes; ``post_nms`` are kept.
        min_size: boxes with ``x2 - x1 + 1`` or ``y2 - y1 + 1`` below it are discarded.

    Returns:
        ``rois [B, P, 4]`` (sorted by score; padding rows -1), ``roi_scores [B, P]`` (-1 padding)
        and ``valid [B, P]``, with ``P = min(post_nms, N)``.
    """
    B, N = scores.shape
    P = min(post_nms, N)
    rois = deltas.new_full((B, P, 4), -1.0)
    roi_scores = scores.new_full((B, P), -1.0)
    valid = torch.zeros(B, P, dtype=torch.bool, device=scores.device)
    for b in range(B):
        h, w = image_sizes[b]
        boxes = clip_boxes(decode_boxes(deltas[b].float(), anchors.float(), stds, clip), h, w)
        bw = boxes[:, 2] - boxes[:, 0] + 1.0
        bh = boxes[:, 3] - boxes[:, 1] + 1.0
        score = scores[b].float()
        keep = ((bw >= min_size) & (bh >= min_size) & (score > 0)).nonzero(as_tuple=True)[0]
        order = torch.sort(score[keep], descending=True, stable=True).indices[:pre_nms]
        keep = keep[order]
        keep = keep[nms(boxes[keep], score[keep], nms_thresh)][:P]
        k = keep.numel()
        rois[b, :k] = boxes[keep].to(rois.dtype)
        roi_scores[b, :k] = score[keep].to(roi_scores.dtype)
        valid[b, :k] = True
    return rois, roi_scores, valid


class RPN(nn.Module):
    """Region proposal network of one feature level (GluonCV's C4 ``RPN``).

    Args:
        in_channels: channels of the feature map.
        channels: width of the 3x3 conv (GluonCV: 1024).
        stride, base_size, scales, ratios, alloc_size: anchors, see :class:`RPNAnchorGenerator`.
        clip: bound of the log-size deltas when decoding (None: none).
        nms_thresh, train_pre_nms, train_post_nms, test_pre_nms, test_post_nms, min_size: see
            :func:`generate_proposals` (post-NMS counts are capped at the pre-NMS ones).

    ``forward(feat, image_sizes, training)`` returns ``anchors [N, 4]``, ``logits [B, N]``,
    ``deltas [B, N, 4]`` (raw outputs, for the losses) and the proposals ``(rois, scores,
    valid)`` of :func:`generate_proposals`, computed without gradient.
    """

    def __init__(self, in_channels: int, channels: int = 1024, stride: int = 16,
                 base_size: int = 16, scales: Sequence[float] = (2, 4, 8, 16, 32),
                 ratios: Sequence[float] = (0.5, 1, 2), alloc_size: Tuple[int, int] = (128, 128),
                 clip: Optional[float] = None, nms_thresh: float = 0.7,
                 train_pre_nms: int = 12000, train_post_nms: int = 2000,
                 test_pre_nms: int = 6000, test_post_nms: int = 300, min_size: float = 16):
        super().__init__()
        self.anchor_generator = RPNAnchorGenerator(stride, base_size, ratios, scales, alloc_size)
        A = self.anchor_generator.num_depth
        head = RPNHead(in_channels, channels, A)
        # GluonCV's C4 RPN holds these directly (names rpn.conv1.0 / rpn.score / rpn.loc)
        self.conv1, self.score, self.loc = head.conv1, head.score, head.loc
        self.clip = clip
        self.nms_thresh = nms_thresh
        self.min_size = min_size
        self.train_pre_nms = max(1, train_pre_nms)
        self.train_post_nms = max(1, min(train_post_nms, train_pre_nms))
        self.test_pre_nms = max(1, test_pre_nms)
        self.test_post_nms = max(1, min(test_post_nms, test_pre_nms))

    def head(self, feat: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Raw ``logits [B, N]`` and ``deltas [B, N, 4]``."""
        x = self.conv1(feat)
        B = x.shape[0]
        logits = self.score(x).permute(0, 2, 3, 1).reshape(B, -1)
        deltas = self.loc(x).permute(0, 2, 3, 1).reshape(B, -1, 4)
        return logits, deltas

    def forward(self, feat: torch.Tensor, image_sizes: List[Tuple[int, int]],
                training: bool = False):
        anchors = self.anchor_generator(feat)
        logits, deltas = self.head(feat)
        pre, post = ((self.train_pre_nms, self.train_post_nms) if training
                     else (self.test_pre_nms, self.test_post_nms))
        proposals = generate_proposals(anchors, torch.sigmoid(logits.detach()), deltas.detach(),
                                       image_sizes, pre, post, self.nms_thresh, self.min_size,
                                       self.clip)
        return anchors, logits, deltas, proposals
