"""RPN anchors laid out as GluonCV's ``RPNAnchorGenerator`` (Detectron's legacy anchor recipe).

For a feature map of stride ``s``, the reference window is ``[0, 0, s - 1, s - 1]`` (centre
``((s - 1) / 2, (s - 1) / 2)``). For each aspect ratio ``r`` (height / width) its width is
``round(sqrt(s * s / r))`` and height ``round(width * r)`` (NumPy rounding, half to even); each
of these is then scaled by ``base_size * scale / s`` about the same centre. Corners are
``centre -+ (size - 1) / 2`` (the legacy "+1" pixel convention). Anchors are ratio-major
(``A = len(ratios) * len(scales)``, for each ratio every scale) and laid over the map in
``(y, x, anchor)`` order, shifted by ``(x * s, y * s)``.

With GluonCV's Faster R-CNN settings (stride 16, base 16, scales (2, 4, 8, 16, 32), ratios
(.5, 1, 2)) the 15 anchors at location (0, 0) are, for ratio .5, ``[-15, -4, 30, 19]``
(scale 2) ... ``[-360, -184, 375, 199]`` (scale 32).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
import torch
from torch import nn

__all__ = ["generate_base_anchors", "grid_anchors", "RPNAnchorGenerator", "anchors_inside", "min_anchor_side"]


def _corners(ws: np.ndarray, hs: np.ndarray, cx: float, cy: float) -> np.ndarray:
    return np.stack([cx - 0.5 * (ws - 1), cy - 0.5 * (hs - 1),
                     cx + 0.5 * (ws - 1), cy + 0.5 * (hs - 1)], axis=1)


def generate_base_anchors(stride: int = 16, sizes: Sequence[float] = (32, 64, 128, 256, 512),
                          ratios: Sequence[float] = (0.5, 1, 2)) -> np.ndarray:
    """``[len(ratios) * len(sizes), 4]`` float64 XYXY anchors at the location (0, 0) of a
    stride-``stride`` map; ``sizes`` are ``base_size * scale`` (about sqrt of the area)."""
    if stride <= 0:
        raise ValueError(f"anchors.py: stride must be positive, got {stride}")
    ratios = np.asarray(ratios, dtype=np.float64).reshape(-1)
    scales = np.asarray(sizes, dtype=np.float64).reshape(-1) / stride
    ctr = 0.5 * (stride - 1)
    ws = np.round(np.sqrt(stride * stride / ratios))
    hs = np.round(ws * ratios)
    out = [_corners(w * scales, h * scales, ctr, ctr) for w, h in zip(ws, hs)]
    return np.concatenate(out, axis=0)


def grid_anchors(base: np.ndarray, stride: int, height: int, width: int) -> np.ndarray:
    """``[height, width, A, 4]`` float32 anchors: ``base`` ``[A, 4]`` shifted to every location."""
    xs = np.arange(width, dtype=np.float64) * stride
    ys = np.arange(height, dtype=np.float64) * stride
    sx, sy = np.meshgrid(xs, ys)
    shifts = np.stack([sx, sy, sx, sy], axis=-1)[:, :, None, :]
    return (shifts + base[None, None]).astype(np.float32)


class RPNAnchorGenerator(nn.Module):
    """Anchors of one feature level (GluonCV's ``RPNAnchorGenerator``).

    Args:
        stride: feature stride in input pixels.
        base_size: reference anchor size; anchor sizes are ``base_size * scale``.
        ratios: aspect ratios (height / width).
        scales: anchor scales.
        alloc_size: ``(H, W)`` of the stored anchor map (GluonCV stores it in its ``.params`` as
            ``anchors [1, 1, H, W, 4A]``); larger feature maps get freshly computed anchors.

    ``forward(feat)`` with ``feat [B, C, h, w]`` returns ``[h * w * A, 4]`` XYXY input-pixel
    anchors in ``(y, x, anchor)`` order.
    """

    def __init__(self, stride: int = 16, base_size: int = 16,
                 ratios: Sequence[float] = (0.5, 1, 2),
                 scales: Sequence[float] = (2, 4, 8, 16, 32),
                 alloc_size: Tuple[int, int] = (128, 128)):
        super().__init__()
        if not base_size:
            raise ValueError(f"anchors.py: invalid base_size {base_size}")
        ratios = list(ratios) if isinstance(ratios, (list, tuple)) else [ratios]
        scales = list(scales) if isinstance(scales, (list, tuple)) else [scales]
        self.stride = int(stride)
        self._base = generate_base_anchors(self.stride, [s * base_size for s in scales], ratios)
        self.num_depth = len(self._base)
        h, w = alloc_size
        grid = grid_anchors(self._base, self.stride, h, w).reshape(1, 1, h, w, -1)
        self.register_buffer("anchors", torch.from_numpy(grid))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        h, w = feat.shape[-2:]
        if h <= self.anchors.shape[2] and w <= self.anchors.shape[3]:
            a = self.anchors[0, 0, :h, :w]
        else:
            a = torch.from_numpy(grid_anchors(self._base, self.stride, h, w)).to(
                self.anchors.device)
        return a.reshape(-1, 4)


def anchors_inside(model: nn.Module, image_size: Tuple[int, int]) -> Tuple[int, int]:
    """``(inside, total)``: how many of ``model``'s RPN anchors lie wholly inside an image of
    ``(height, width)`` at the input's top-left, and how many there are. Only those are trained
    (anchors crossing the border are ignored, GluonCV's rule): with none inside, the RPN's losses
    are 0 and it never learns, whatever the data."""
    h, w = image_size
    inside = total = 0
    for gen in (m for m in model.modules() if isinstance(m, RPNAnchorGenerator)):
        a = gen(torch.empty(1, 1, math.ceil(h / gen.stride), math.ceil(w / gen.stride),
                            device=gen.anchors.device))
        total += a.shape[0]
        inside += int(((a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] < w) & (a[:, 3] < h)).sum())
    return inside, total


def min_anchor_side(model: nn.Module) -> float:
    """The shortest side (pixels) of any of ``model``'s RPN anchors."""
    sides = [float(np.minimum(g._base[:, 2] - g._base[:, 0], g._base[:, 3] - g._base[:, 1]).min())
             for g in model.modules() if isinstance(g, RPNAnchorGenerator)]
    return min(sides) if sides else float("nan")
