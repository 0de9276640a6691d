"""Box coding of GluonCV's R-CNN (``NormalizedBoxCenterEncoder`` / ``NormalizedBoxCenterDecoder``).

Boxes are XYXY; the centre form uses ``w = x2 - x1``, ``h = y2 - y1`` (no "+1", as GluonCV's
coders, unlike its anchors and proposal size filter). With ``stds`` (RPN: (1, 1, 1, 1); RCNN:
(.1, .1, .2, .2)) and ``means`` (0 by default)::

    t_x = ((g_cx - a_cx) / a_w - m_x) / s_x      t_w = (log(g_w / a_w) - m_w) / s_w

and decoding inverts it, optionally clipping ``t_w * s_w`` and ``t_h * s_h`` from above at
``clip`` before the exponential (GluonCV's COCO models: ``clip = 4.14 ~ log(1000 / 16)``).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

__all__ = ["RPN_STDS", "RCNN_STDS", "encode_boxes", "decode_boxes", "clip_boxes"]

RPN_STDS = (1.0, 1.0, 1.0, 1.0)
RCNN_STDS = (0.1, 0.1, 0.2, 0.2)


def _center(boxes: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor,
                 stds: Sequence[float] = RCNN_STDS,
                 means: Sequence[float] = (0.0, 0.0, 0.0, 0.0)) -> torch.Tensor:
    """Regression targets ``[..., 4]`` taking ``anchors [..., 4]`` to ``boxes [..., 4]``
    (both XYXY, broadcastable). Degenerate (zero-size) boxes give infinite ``t_w``/``t_h``:
    only encode matched positives."""
    gx, gy, gw, gh = _center(boxes)
    ax, ay, aw, ah = _center(anchors)
    t = torch.stack([(gx - ax) / aw, (gy - ay) / ah, torch.log(gw / aw), torch.log(gh / ah)],
                    dim=-1)
    m = t.new_tensor(means)
    s = t.new_tensor(stds)
    return (t - m) / s


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor,
                 stds: Sequence[float] = RCNN_STDS, clip: Optional[float] = None,
                 means: Sequence[float] = (0.0, 0.0, 0.0, 0.0)) -> torch.Tensor:
    """XYXY boxes ``[..., 4]`` from ``deltas [..., 4]`` relative to ``anchors [..., 4]``
    (broadcastable); the inverse of :func:`encode_boxes`. ``clip``: upper bound of the scaled
    log-size deltas (None or <= 0: no clipping)."""
    ax, ay, aw, ah = _center(anchors)
    s = deltas.new_tensor(stds)
    m = deltas.new_tensor(means)
    d = deltas * s + m
    cx = d[..., 0] * aw + ax
    cy = d[..., 1] * ah + ay
    dw, dh = d[..., 2], d[..., 3]
    if clip is not None and clip > 0:
        dw = dw.clamp(max=clip)
        dh = dh.clamp(max=clip)
    hw = torch.exp(dw) * aw * 0.5
    hh = torch.exp(dh) * ah * 0.5
    return torch.stack([cx - hw, cy - hh, cx + hw, cy + hh], dim=-1)


def clip_boxes(boxes: torch.Tensor, height, width) -> torch.Tensor:
    """Clips XYXY ``boxes [..., 4]`` to ``[0, width] x [0, height]`` (GluonCV's
    ``gluoncv.nn.bbox.BBoxClipToImage``, which the RPN and the evaluation use; not ``- 1``).
    ``height``/``width``: numbers, or tensors broadcastable to ``boxes[..., 0]``."""
    w1 = torch.as_tensor(width, dtype=boxes.dtype, device=boxes.device)
    h1 = torch.as_tensor(height, dtype=boxes.dtype, device=boxes.device)
    zero = boxes.new_zeros(())
    x1 = torch.minimum(torch.maximum(boxes[..., 0], zero), w1)
    y1 = torch.minimum(torch.maximum(boxes[..., 1], zero), h1)
    x2 = torch.minimum(torch.maximum(boxes[..., 2], zero), w1)
    y2 = torch.minimum(torch.maximum(boxes[..., 3], zero), h1)
    return torch.stack([x1, y1, x2, y2], dim=-1)
