"""Array helpers of the VOC detection metric: input conversion, IoU, sorting, matching."""
from __future__ import annotations

from typing import Any

import numpy as np

from ...ops.boxes import paired_iou

IGNORED, FP, TP = -1, 0, 1


def to_numpy(x: Any) -> np.ndarray:
    """NumPy view of a NumPy array, torch tensor, MXNet NDArray or nested list."""
    if hasattr(x, "detach"):  # torch.Tensor
        return x.detach().cpu().numpy()
    if hasattr(x, "asnumpy"):  # mxnet.nd.NDArray
        return x.asnumpy()
    return np.asarray(x)


def split_batches(x: Any) -> list:
    """A list/tuple of arrays or tensors (one batch per device, GluonCV's multi-GPU convention)
    stays a list; anything else is one batch."""
    if isinstance(x, (list, tuple)) and len(x) > 0 and \
            all(e is None or hasattr(e, "shape") for e in x):
        return list(x)
    return [x]


def labels_2d(a: np.ndarray, batch: int, name: str) -> np.ndarray:
    """[B, K] or [B, K, 1] -> [B, K]."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2 or a.shape[0] != batch:
        raise ValueError(f"VOCMApMetric.update: {name} must have shape [B, K] or [B, K, 1] with "
                         f"B={batch}, got {a.shape}")
    return a


def check_int_labels(labels: np.ndarray, name: str) -> None:
    if np.isnan(labels).any():
        raise ValueError(f"VOCMApMetric.update: {name} contains NaN (use -1 for padding)")
    valid = labels[labels >= 0]
    if valid.size and not np.array_equal(valid, np.floor(valid)):
        bad = valid[valid != np.floor(valid)][0]
        raise ValueError(f"VOCMApMetric.update: {name} must hold integer class ids or negative "
                         f"padding, found {bad!r}")


def stable_descending(scores: np.ndarray) -> np.ndarray:
    """Indices sorting ``scores`` high to low, ties in input order (a stable sort).

    For float32 scores (the usual case) the order comes from one plain sort of unique 64-bit keys
    (order-preserving score bits, then the position), several times faster than a stable argsort.
    """
    if scores.dtype != np.float32 or scores.size >= 2 ** 32 or np.isnan(scores).any():
        return np.argsort(-scores.astype(np.float64), kind="stable")
    neg = -scores + np.float32(0.0)  # + 0 turns -0.0 into 0.0, which must tie with it
    bits = neg.view(np.uint32).astype(np.uint64)
    # IEEE bits -> unsigned order: set the sign bit of positives, flip all bits of negatives
    bits = np.where(bits >> np.uint64(31), bits ^ np.uint64(0xFFFFFFFF), bits | np.uint64(1 << 31))
    keys = (bits << np.uint64(32)) | np.arange(scores.size, dtype=np.uint64)
    return (np.sort(keys) & np.uint64(0xFFFFFFFF)).astype(np.int64)


def match_detections(det_box: np.ndarray, det_key: np.ndarray, det_score: np.ndarray,
                     gt_box: np.ndarray, gt_key: np.ndarray, gt_diff: np.ndarray,
                     iou_thresh: float) -> np.ndarray:
    """VOC matching of detections to ground truths, all images of a batch at once.

    Args:
        det_box: [D, 4] xyxy; det_key: [D] ``image * num_classes + class``; det_score: [D].
        gt_box: [G, 4] xyxy; gt_key: [G] as det_key; gt_diff: [G] bool, difficult.
        iou_thresh: IoU for a hit.
    Returns:
        [D] int8: 1 true positive, 0 false positive, -1 ignored (best gt is difficult).
    """
    match = np.full(det_key.size, FP, dtype=np.int8)
    # the gts of each detection's (image, class), as a contiguous range of key-sorted gts;
    # the stable sort keeps input order inside a range, so argmax ties pick the first gt
    g_order = np.argsort(gt_key, kind="stable")
    g_sorted = gt_key[g_order]
    start = np.searchsorted(g_sorted, det_key, side="left")
    count = np.searchsorted(g_sorted, det_key, side="right") - start
    has = np.flatnonzero(count)
    if has.size == 0:
        return match
    count = count[has]
    offset = np.cumsum(count) - count                          # segment starts
    local = np.arange(int(count.sum())) - np.repeat(offset, count)
    pair_gt = g_order[np.repeat(start[has], count) + local]
    iou = paired_iou(det_box[np.repeat(has, count)], gt_box[pair_gt], plus_one=True)

    # per detection: best IoU and the first gt reaching it (NaN wins, like np.argmax)
    best = np.maximum.reduceat(iou, offset)
    best_rep = np.repeat(best, count)
    is_best = (iou == best_rep) | (np.isnan(iou) & np.isnan(best_rep))
    first = np.minimum.reduceat(np.where(is_best, local, local.size), offset)
    best_gt = pair_gt[offset + first]
    hit = ~(best < iou_thresh)                           # NaN IoU counts as a hit
    diff = gt_diff[best_gt]
    match[has[hit & diff]] = IGNORED

    # among detections hitting the same non-difficult gt, only the highest-scored one (first
    # in input order on ties) is a TP
    det = has[hit & ~diff]
    if det.size:
        key = best_gt[hit & ~diff]
        srt = np.lexsort((det, -det_score[det], key))
        lead = np.ones(srt.size, dtype=bool)
        lead[1:] = key[srt][1:] != key[srt][:-1]
        match[det[srt[lead]]] = TP
    return match
