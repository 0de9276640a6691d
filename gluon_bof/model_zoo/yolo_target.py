"""YOLOv3 training targets: GluonCV's prefetch + dynamic target generators, vectorised in torch.

All targets are flattened over the output layers in the network's head order (GluonCV's
``yolo_outputs`` order, deepest layer first), and within a layer in ``(y, x, anchor)`` order, i.e.
anchor ``a`` of cell ``(y, x)`` of layer ``l`` sits at row ``start[l] + (y * w + x) * A_l + a``.
``N`` below is the total number of rows.
"""
from typing import List, Optional, Sequence, Tuple

import torch

from ..nn.smoothing import smoothing_values

__all__ = ["prefetch_targets", "ignore_mask", "merge_targets", "smooth_class_targets"]


def prefetch_targets(anchors: Sequence[torch.Tensor], feat_sizes: Sequence[Tuple[int, int]],
                     img_size: Tuple[int, int], gt_boxes: torch.Tensor, gt_ids: torch.Tensor,
                     num_class: int, gt_mix: Optional[torch.Tensor] = None,
                     valid: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, ...]:
    """Targets that do not depend on predictions (GluonCV's ``YOLOV3PrefetchTargetGenerator``).

    Each ground truth is assigned to the best of all anchors by shape IoU (boxes and anchors
    both centred at the origin; ties go to the first anchor in head order), in the cell of that
    anchor's layer that holds its centre: ``int(cx / W * w)``. When two ground truths land on the
    same cell and anchor, the later one (higher row index) wins, as in GluonCV's loop.

    Args:
        anchors: per output layer, ``[A_l, 2]`` anchor (w, h) in input pixels, head order.
        feat_sizes: per output layer, its feature map ``(h, w)``.
        img_size: network input ``(H, W)``.
        gt_boxes: ``[B, M, 4]`` XYXY in input pixels.
        gt_ids: ``[B, M]`` class ids in ``[0, num_class)`` where valid.
        num_class: number of foreground classes ``C``.
        gt_mix: ``[B, M]`` mixup weights (objectness targets of positives); default 1.
        valid: ``[B, M]`` bool; default: rows whose four coordinates are all >= 0 (GluonCV's
            test; GluonCV also stops at the first invalid row, here invalid rows are skipped).

    Returns:
        ``objectness [B, N, 1]`` (mix weight at positives, else 0), ``center [B, N, 2]`` (fraction
        of the cell, in [0, 1)), ``scale [B, N, 2]`` (``log(max(g, 1) / anchor)``), ``weights
        [B, N, 2]`` (``2 - gw * gh / (W * H)``), ``class [B, N, C]`` (one-hot at positives, -1
        elsewhere). All float32 (the dtype of ``gt_boxes``).
    """
    device, dtype = gt_boxes.device, gt_boxes.dtype
    B, M = gt_boxes.shape[:2]
    H, W = img_size
    all_anchors = torch.cat([a.reshape(-1, 2) for a in anchors]).to(device=device, dtype=dtype)
    layer_of = torch.cat([torch.full((a.numel() // 2,), i, dtype=torch.long)
                          for i, a in enumerate(anchors)]).to(device)
    first_anchor = torch.tensor([0] + [a.numel() // 2 for a in anchors], device=device).cumsum(0)
    counts = [h * w * (a.numel() // 2) for (h, w), a in zip(feat_sizes, anchors)]
    starts = torch.tensor([0] + counts, device=device).cumsum(0)
    n_total = int(sum(counts))
    hs = torch.tensor([h for h, _ in feat_sizes], device=device)
    ws = torch.tensor([w for _, w in feat_sizes], device=device)
    n_anc = torch.tensor([a.numel() // 2 for a in anchors], device=device)

    objectness = gt_boxes.new_zeros(B, n_total, 1)
    center = gt_boxes.new_zeros(B, n_total, 2)
    scale = gt_boxes.new_zeros(B, n_total, 2)
    weights = gt_boxes.new_zeros(B, n_total, 2)
    class_t = gt_boxes.new_full((B, n_total, num_class), -1.0)
    if valid is None:
        valid = (gt_boxes >= 0).all(dim=-1)
    b_idx, m_idx = valid.nonzero(as_tuple=True)
    if b_idx.numel() == 0:
        return objectness, center, scale, weights, class_t
    boxes = gt_boxes[b_idx, m_idx]
    ids = gt_ids[b_idx, m_idx].long()
    if ids.min() < 0 or ids.max() >= num_class:
        raise ValueError(f"yolo_target.py: class ids must lie in [0, {num_class}), "
                         f"got {ids.min().item()}..{ids.max().item()}")
    gw = boxes[:, 2] - boxes[:, 0]
    gh = boxes[:, 3] - boxes[:, 1]
    gx = boxes[:, 0] + gw * 0.5
    gy = boxes[:, 1] + gh * 0.5
    # shape IoU of origin-centred boxes, in the order box_iou(anchors, gts) computes it
    inter = (torch.minimum(all_anchors[:, 0], gw[:, None]).clamp(min=0)
             * torch.minimum(all_anchors[:, 1], gh[:, None]).clamp(min=0))
    union = (all_anchors[:, 0] * all_anchors[:, 1]) + (gw * gh)[:, None] - inter
    ious = torch.where(union > 0, inter / union, torch.zeros_like(inter))
    match = ious.argmax(dim=1)                                   # first maximum
    layer = layer_of[match]
    h, w = hs[layer], ws[layer]
    # cell positions in float64, as GluonCV's NumPy scalar arithmetic does
    fx = gx.double() / W * w.double()
    fy = gy.double() / H * h.double()
    loc_x = torch.minimum(fx.floor().long().clamp(min=0), w - 1)
    loc_y = torch.minimum(fy.floor().long().clamp(min=0), h - 1)
    row = starts[layer] + (loc_y * w + loc_x) * n_anc[layer] + (match - first_anchor[layer])
    # later ground truths win on collisions: keep, per (image, row), the highest m only
    key = b_idx * n_total + row
    order = b_idx * M + m_idx
    uniq, inv = torch.unique(key, return_inverse=True)
    winner = torch.full((uniq.numel(),), -1, dtype=order.dtype, device=device)
    winner = winner.scatter_reduce(0, inv, order, reduce="amax")
    keep = winner[inv] == order
    b, r = b_idx[keep], row[keep]
    anc = all_anchors[match[keep]]
    center[b, r] = torch.stack([fx - loc_x, fy - loc_y], dim=1)[keep].to(dtype)
    scale[b, r] = torch.log(torch.stack([gw, gh], dim=1)[keep].clamp(min=1) / anc)
    weights[b, r] = (2.0 - (gw * gh).double() / W / H)[keep, None].expand(-1, 2).to(dtype)
    mix = gt_mix[b_idx, m_idx] if gt_mix is not None else torch.ones_like(gw)
    objectness[b, r] = mix[keep, None].to(dtype)
    onehot = torch.zeros(int(keep.sum()), num_class, dtype=dtype, device=device)
    onehot[torch.arange(onehot.shape[0], device=device), ids[keep]] = 1.0
    class_t[b, r] = onehot
    return objectness, center, scale, weights, class_t


def ignore_mask(box_preds: torch.Tensor, gt_boxes: torch.Tensor,
                ignore_iou_thresh: float = 0.7) -> torch.Tensor:
    """GluonCV's ``YOLOV3DynamicTargetGeneratorSimple``: predictions to leave out of the
    objectness loss.

    Args:
        box_preds: ``[B, N, 4]`` predicted XYXY boxes in input pixels.
        gt_boxes: ``[B, M, 4]`` XYXY ground truths; -1 padded rows have IoU 0 with everything.

    Returns:
        ``[B, N]`` bool, True where the prediction's best IoU with any ground truth of its image
        exceeds ``ignore_iou_thresh`` (strictly).
    """
    if gt_boxes.shape[1] == 0:
        return torch.zeros(box_preds.shape[:2], dtype=torch.bool, device=box_preds.device)
    a = box_preds[:, :, None, :]
    g = gt_boxes[:, None, :, :]
    iw = (torch.minimum(a[..., 2], g[..., 2]) - torch.maximum(a[..., 0], g[..., 0])).clamp(0, 65504)
    ih = (torch.minimum(a[..., 3], g[..., 3]) - torch.maximum(a[..., 1], g[..., 1])).clamp(0, 65504)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_g = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    iou = inter / (area_a + area_g - inter + 1e-15)
    return iou.max(dim=-1).values > ignore_iou_thresh


def smooth_class_targets(class_t: torch.Tensor, mode: str = "paper",
                         eps: float = 0.1) -> torch.Tensor:
    """Label smoothing of one-hot class targets ``[..., C]`` (rows of -1 are left as they are).

    ``mode='gluoncv'``: GluonCV's ``YOLOV3TargetMerger``: ``s = min(1/C, 1/40)``; the true class
    gets ``1 - s`` and the others ``s`` (``eps`` unused). ``mode='paper'`` (BoF paper, Eq. 3):
    the true class gets ``1 - eps`` and the others ``eps / (C - 1)`` (only ``1 - eps`` if C = 1).
    """
    if mode not in ("paper", "gluoncv"):
        raise ValueError(f"yolo_target.py: label_smooth_mode must be 'gluoncv' or 'paper', got {mode!r}")
    pos, neg = smoothing_values(class_t.shape[-1], eps, "paper" if mode == "paper" else "gluoncv_yolo")
    out = torch.where(class_t > 0.5, torch.full_like(class_t, pos), torch.full_like(class_t, neg))
    return torch.where(class_t < -0.5, class_t, out)


def merge_targets(prefetch: Sequence[torch.Tensor], ignore: torch.Tensor,
                  label_smooth: bool = False, label_smooth_mode: str = "paper",
                  label_smooth_eps: float = 0.1) -> List[torch.Tensor]:
    """GluonCV's ``YOLOV3TargetMerger``: positives from ``prefetch``, -1 objectness at ignored
    non-positives.

    Args:
        prefetch: the five outputs of :func:`prefetch_targets`.
        ignore: ``[B, N]`` bool from :func:`ignore_mask`.

    Returns:
        ``[objectness, center, scale, weights, class_t, class_mask]`` ready for
        :class:`gluon_bof.nn.YOLOV3Loss` (objectness: mix weight / 0 / -1 for ignored;
        ``class_mask [B, N, C]`` is 1 at positives).
    """
    obj_t, center_t, scale_t, weight_t, class_t = prefetch
    pos = obj_t > 0
    objectness = torch.where(pos, obj_t, -ignore[..., None].to(obj_t.dtype))
    if label_smooth:
        class_t = smooth_class_targets(class_t, label_smooth_mode, label_smooth_eps)
    class_mask = (pos & (class_t >= 0)).to(obj_t.dtype)
    return [objectness, center_t, scale_t, weight_t, class_t, class_mask]
