"""Pascal VOC detection mAP (GluonCV's ``VOCMApMetric`` / ``VOC07MApMetric``), vectorised.

Same numbers as GluonCV 0.10.5 on the same inputs:

* IoU is taken on "integer pixel" boxes: both boxes get ``+1`` on ``xmax, ymax`` before the plain
  IoU, i.e. widths are ``xmax - xmin + 1`` (the VOC devkit convention).
* A detection is matched to the ground truth of its class with the highest IoU (the first one on
  ties); it is a true positive when that IoU is ``>= iou_thresh``, the gt is not difficult and no
  higher-scored detection of the same image took it first; a later detection on a taken gt is a
  false positive (it does not fall back to its second-best gt). A detection whose best gt is
  *difficult* is ignored (neither TP nor FP); difficult gts do not count as positives.
* AP: area under the interpolated PR curve (VOC2010+, :class:`VOCMApMetric`) or the 11-point mean
  over recall thresholds ``np.arange(0., 1.1, 0.1)`` (:class:`VOC07MApMetric`). A class without
  non-difficult ground truth has AP NaN; mAP is the NaN-ignoring mean over every class id seen.

One deliberate difference: detections are ranked with a *stable* descending sort (ties keep their
input order: image order, then box order), where GluonCV uses NumPy's unstable ``argsort`` whose
tie order depends on the NumPy version. The two agree whenever scores are untied.

``update`` matches a whole batch at once without Python loops: IoU is computed only for
(detection, gt) pairs of the same image and class, found by sorting; it stores one
``(class, score, tp/fp/ignored)`` row per detection, and the PR curves are built once in
:meth:`get`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._voc_utils import (FP, TP, check_int_labels, labels_2d, match_detections,
                         split_batches, stable_descending, to_numpy)

__all__ = ["VOCMApMetric", "VOC07MApMetric"]

_FLUSH_IMAGES = 512  # queued images matched together


class VOCMApMetric:
    """Mean average precision for VOC-style detection (area under the PR curve, VOC2010+).

    Args:
        iou_thresh: IoU needed for a true positive.
        class_names: optional class names; with them :meth:`get` reports per-class AP and mAP.
    """

    name = "VOCMeanAP"

    def __init__(self, iou_thresh: float = 0.5, class_names: Sequence[str] | None = None):
        if class_names is not None:
            if not isinstance(class_names, (list, tuple)) or \
                    not all(isinstance(n, str) for n in class_names):
                raise TypeError("VOCMApMetric: class_names must be a list/tuple of str")
            class_names = list(class_names)
        self.iou_thresh = float(iou_thresh)
        self.class_names = class_names
        self.reset()

    def reset(self) -> None:
        """Clear the accumulated detections and ground-truth counts."""
        self._labels: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._matches: list[np.ndarray] = []
        self._n_pos = np.zeros(0, dtype=np.int64)   # non-difficult gts per class id
        self._num_seen = 0                          # 1 + largest class id seen (pred or gt)
        self._pending: list[tuple] = []             # validated batches not matched yet
        self._pending_images = 0

    # ------------------------------------------------------------------ update
    def update(self, pred_bboxes, pred_labels, pred_scores, gt_bboxes, gt_labels,
               gt_difficults=None) -> None:
        """Add a batch of detections and ground truths.

        Args:
            pred_bboxes: [B, K, 4] xyxy pixel boxes.
            pred_labels: [B, K] or [B, K, 1] class ids; rows with id < 0 are padding.
            pred_scores: [B, K] or [B, K, 1] confidences.
            gt_bboxes: [B, M, 4] xyxy pixel boxes.
            gt_labels: [B, M] or [B, M, 1] class ids; < 0 is padding.
            gt_difficults: optional [B, M] or [B, M, 1]; non-zero marks a difficult gt.

        Each argument may be a NumPy array, a torch tensor, or a list of them (one batch per
        device, as GluonCV's multi-GPU evaluation passes them); a single image may be given
        without the batch axis ([K, 4] boxes).
        """
        args = [pred_bboxes, pred_labels, pred_scores, gt_bboxes, gt_labels]
        parts = [split_batches(a) for a in args]
        n = len(parts[0])
        if any(len(p) != n for p in parts):
            raise ValueError("VOCMApMetric.update: the inputs hold different numbers of batches")
        if gt_difficults is None:
            diffs = [None] * n
        else:
            diffs = split_batches(gt_difficults)
            if len(diffs) != n:
                raise ValueError("VOCMApMetric.update: gt_difficults holds a different number "
                                 "of batches than gt_labels")
        for i in range(n):
            self._add_batch(*(p[i] for p in parts), diffs[i])

    def _add_batch(self, pb, pl, ps, gb, gl, gd) -> None:
        """Validate one batch and queue it; queued batches are matched together (small batches
        would otherwise spend their time in per-call overhead)."""
        pb, pl, ps, gb, gl = (to_numpy(a) for a in (pb, pl, ps, gb, gl))
        gd = None if gd is None else to_numpy(gd)
        if pb.ndim == 2:  # one image without the batch axis
            pb, gb = pb[None], gb[None]
            pl, ps, gl = pl.reshape(1, -1), ps.reshape(1, -1), gl.reshape(1, -1)
            gd = None if gd is None else gd.reshape(1, -1)
        if pb.ndim != 3 or pb.shape[-1] < 4 or gb.ndim != 3 or gb.shape[-1] < 4:
            raise ValueError(f"VOCMApMetric.update: boxes must be [B, N, 4], got pred "
                             f"{pb.shape} and gt {gb.shape}")
        batch = pb.shape[0]
        pl = labels_2d(pl, batch, "pred_labels")
        ps = labels_2d(ps, batch, "pred_scores")
        gl = labels_2d(gl, batch, "gt_labels")
        if gb.shape[0] != batch:
            raise ValueError(f"VOCMApMetric.update: gt_bboxes has batch {gb.shape[0]}, "
                             f"predictions have {batch}")
        gd = np.zeros(gl.shape, dtype=bool) if gd is None else \
            labels_2d(gd, batch, "gt_difficults") != 0
        if pl.shape != pb.shape[:2] or ps.shape != pl.shape or gl.shape != gb.shape[:2] or \
                gd.shape != gl.shape:
            raise ValueError("VOCMApMetric.update: box, label, score and difficult shapes "
                             "disagree")
        check_int_labels(pl, "pred_labels")
        check_int_labels(gl, "gt_labels")
        pb, gb = pb[..., :4], gb[..., :4]
        if not np.issubdtype(pb.dtype, np.floating):
            pb = pb.astype(np.float64)
        if not np.issubdtype(gb.dtype, np.floating):
            gb = gb.astype(np.float64)

        dtypes = (pb.dtype, ps.dtype, gb.dtype)
        if self._pending and self._pending[-1][6] != dtypes:
            self._flush()  # never mix dtypes: IoU is computed in the inputs' own precision
        # copies: the caller may reuse its buffers (or tensors sharing memory) before the flush
        self._pending.append((pb.copy(), pl.copy(), ps.copy(), gb.copy(), gl.copy(), gd.copy(),
                              dtypes))
        self._pending_images += batch
        if self._pending_images >= _FLUSH_IMAGES:
            self._flush()

    def _flush(self) -> None:
        """Match all queued batches at once (padded to a common number of boxes)."""
        if not self._pending:
            return
        batches, self._pending, self._pending_images = self._pending, [], 0
        if len(batches) == 1:
            self._match_batch(*batches[0][:6])
            return
        k = max(b[1].shape[1] for b in batches)
        m = max(b[4].shape[1] for b in batches)

        def cat(index, width, fill):
            arrays = [b[index] for b in batches]
            shape = (sum(a.shape[0] for a in arrays), width) + arrays[0].shape[2:]
            out = np.full(shape, fill, dtype=arrays[0].dtype)
            row = 0
            for a in arrays:
                out[row:row + a.shape[0], :a.shape[1]] = a
                row += a.shape[0]
            return out

        self._match_batch(cat(0, k, 0), cat(1, k, -1), cat(2, k, 0), cat(3, m, 0),
                          cat(4, m, -1), cat(5, m, False))

    def _match_batch(self, pb, pl, ps, gb, gl, gd) -> None:
        """Match a validated batch and store its detections' (class, score, TP/FP/ignored)."""
        # flatten the valid rows of the whole batch: detections d, ground truths g
        k, m = pl.shape[1], gl.shape[1]
        d = np.flatnonzero(pl >= 0)
        g = np.flatnonzero(gl >= 0)
        d_img, d_cls = d // k, pl.reshape(-1)[d].astype(np.int64)
        g_img, g_cls = g // m, gl.reshape(-1)[g].astype(np.int64)
        g_diff = gd.reshape(-1)[g]
        d_score = ps.reshape(-1)[d]

        # ground-truth bookkeeping: positives per class, classes seen
        seen = max(int(d_cls.max(initial=-1)), int(g_cls.max(initial=-1))) + 1
        self._num_seen = max(self._num_seen, seen)
        pos = np.bincount(g_cls[~g_diff], minlength=self._num_seen)
        if self._n_pos.size < pos.size:
            self._n_pos = np.pad(self._n_pos, (0, pos.size - self._n_pos.size))
        self._n_pos[:pos.size] += pos

        match = match_detections(pb.reshape(-1, 4)[d], d_img * seen + d_cls, d_score,
                                 gb.reshape(-1, 4)[g], g_img * seen + g_cls, g_diff,
                                 self.iou_thresh)
        # detections are stored in input order (image, then box): the stable sort in get()
        # then breaks score ties by that order
        self._labels.append(d_cls)
        self._scores.append(d_score)
        self._matches.append(match)

    # --------------------------------------------------------------------- get
    def _curves(self) -> list:
        """Per class id: (recall, precision) arrays, or None where the class has no positives."""
        self._flush()
        n_cls = self._num_seen
        if self._labels:
            labels = np.concatenate(self._labels)
            scores = np.concatenate(self._scores)
            matches = np.concatenate(self._matches)
        else:
            labels = np.zeros(0, np.int64)
            scores = np.zeros(0)
            matches = np.zeros(0, np.int8)
        # by class, then descending score; both sorts are stable, so ties keep insertion order
        srt = stable_descending(scores)
        key = labels[srt].astype(np.int16 if n_cls < 2 ** 15 else np.int64)  # int16: radix sort
        srt = srt[np.argsort(key, kind="stable")]
        labels, matches = labels[srt], matches[srt]
        bounds = np.searchsorted(labels, np.arange(n_cls + 1))
        n_pos = np.pad(self._n_pos, (0, max(0, n_cls - self._n_pos.size)))
        curves = []
        for c in range(n_cls):
            if n_pos[c] == 0:
                curves.append(None)
                continue
            m = matches[bounds[c]:bounds[c + 1]]
            tp = np.cumsum(m == TP)
            fp = np.cumsum(m == FP)
            with np.errstate(divide="ignore", invalid="ignore"):
                prec = tp / (tp + fp)
            curves.append((tp / n_pos[c], np.nan_to_num(prec)))
        return curves

    @staticmethod
    def _average_precision(rec: np.ndarray, prec: np.ndarray) -> float:
        """Area under the monotone (interpolated) PR curve."""
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        i = np.nonzero(mrec[1:] != mrec[:-1])[0]
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))

    def _aps(self) -> np.ndarray:
        return np.array([np.nan if c is None else self._average_precision(*c)
                         for c in self._curves()], dtype=np.float64)

    def get(self):
        """Current result.

        Returns:
            ``(names, values)``: with ``class_names``, per-class AP (NaN for a class without
            non-difficult gt) then ``'mAP'`` last; without, ``('VOCMeanAP', mAP)`` as GluonCV.
            The mAP averages every class id seen, including ids beyond ``class_names``.
        """
        aps = self._aps()
        m_ap = float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")
        if self.class_names is None:
            return self.name, m_ap
        values = [float(aps[i]) if i < aps.size else float("nan")
                  for i in range(len(self.class_names))]
        return self.class_names + ["mAP"], values + [m_ap]

    def per_class(self) -> dict:
        """``{class name (or id): AP}`` for every class, without the mean; handy for plots."""
        aps = self._aps()
        n = len(self.class_names) if self.class_names is not None else aps.size
        keys = self.class_names if self.class_names is not None else list(range(n))
        return {k: float(aps[i]) if i < aps.size else float("nan") for i, k in enumerate(keys)}

    def pr_curves(self) -> dict:
        """``{class name (or id): (recall, precision)}`` NumPy arrays, for classes with positives."""
        names = self.class_names
        return {(names[c] if names is not None and c < len(names) else c): curve
                for c, curve in enumerate(self._curves()) if curve is not None}


class VOC07MApMetric(VOCMApMetric):
    """VOC2007 11-point mAP: mean over recall thresholds 0, 0.1, ..., 1.0 of the best precision at
    recall >= threshold. Same arguments as :class:`VOCMApMetric`."""

    @staticmethod
    def _average_precision(rec: np.ndarray, prec: np.ndarray) -> float:
        # thresholds are exactly GluonCV's np.arange values (0.30000000000000004, ...)
        thresholds = np.arange(0.0, 1.1, 0.1)
        best_after = np.maximum.accumulate(prec[::-1])[::-1] if prec.size else prec
        first = np.searchsorted(rec, thresholds, side="left")  # rec is non-decreasing
        ap = 0.0
        for idx in first:
            ap += (best_after[idx] if idx < rec.size else 0.0) / 11.0
        return float(ap)
