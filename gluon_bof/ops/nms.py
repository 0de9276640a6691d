"""Per-class NMS with the semantics of MXNet's ``contrib.box_nms`` as GluonCV's YOLOv3 calls it."""
from typing import Sequence, Tuple

import torch
from torchvision.ops import batched_nms

__all__ = ["box_nms", "non_degenerate", "MIN_BOX_SIZE"]

MIN_BOX_SIZE = 1e-2  # pixels: narrower or flatter boxes are dropped before NMS (torchvision's value)


def non_degenerate(boxes: torch.Tensor, min_size: float = MIN_BOX_SIZE) -> torch.Tensor:
    """Mask of XYXY ``boxes [..., 4]`` at least ``min_size`` wide and high. A zero-area box has no
    defined IoU, so NMS keeps every copy of it: such boxes are dropped before NMS, as torchvision's
    detectors do (GluonCV keeps them; they can only be false positives)."""
    return ((boxes[..., 2] - boxes[..., 0]) >= min_size) & ((boxes[..., 3] - boxes[..., 1]) >= min_size)


def box_nms(bboxes: Sequence[torch.Tensor], scores: Sequence[torch.Tensor],
            nms_thresh: float = 0.45, valid_thresh: float = 0.01, topk: int = 400,
            post_nms: int = 100) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class NMS over the class-expanded detections of several heads.

    Args:
        bboxes: per head, ``[B, n_i, 4]`` XYXY boxes.
        scores: per head, ``[B, n_i, C]`` class scores.
        nms_thresh: IoU above which (strictly) a lower-scored box of the same class is dropped;
            outside (0, 1) no NMS is done and every (box, class) pair is returned unsorted.
        valid_thresh: only scores above it (strictly) are candidates.
        topk: NMS runs on the ``topk`` best candidates over all classes (-1: all).
        post_nms: rows kept after NMS (-1: all ``sum(n_i) * C`` rows).

    Returns:
        ``ids [B, K, 1]``, ``scores [B, K, 1]``, ``bboxes [B, K, 4]``, sorted by decreasing score
        and padded with -1 (every column) to ``K = post_nms``.

    The candidate order before sorting is GluonCV's: head, class, cell, anchor. Boxes narrower or
    flatter than :data:`MIN_BOX_SIZE` are not candidates (:func:`non_degenerate`).
    """
    B = bboxes[0].shape[0]
    flat_boxes, flat_scores, flat_ids = [], [], []
    for box, score in zip(bboxes, scores):
        C = score.shape[-1]
        flat_scores.append(score.transpose(1, 2).reshape(B, -1))
        flat_boxes.append(box[:, None].expand(-1, C, -1, -1).reshape(B, -1, 4))
        ids = torch.arange(C, device=box.device, dtype=box.dtype)
        flat_ids.append(ids[:, None].expand(-1, box.shape[1]).reshape(1, -1).expand(B, -1))
    boxes, score, ids = (torch.cat(t, dim=1) for t in (flat_boxes, flat_scores, flat_ids))
    if not 0 < nms_thresh < 1:
        return ids[..., None], score[..., None], boxes
    k = post_nms if post_nms > 0 else boxes.shape[1]
    out = boxes.new_full((B, k, 6), -1.0)
    for b in range(B):
        cand = ((score[b] > valid_thresh) & non_degenerate(boxes[b])).nonzero(as_tuple=True)[0]
        order = torch.sort(score[b, cand], descending=True, stable=True).indices
        cand = cand[order]
        if topk > 0:
            cand = cand[:topk]
        keep = cand[batched_nms(boxes[b, cand], score[b, cand], ids[b, cand], nms_thresh)][:k]
        out[b, :keep.numel(), 0] = ids[b, keep]
        out[b, :keep.numel(), 1] = score[b, keep]
        out[b, :keep.numel(), 2:] = boxes[b, keep]
    return out[..., :1], out[..., 1:2], out[..., 2:]
