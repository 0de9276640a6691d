"""Pixel accuracy and mean IoU with GluonCV's interface and numbers
(``gluoncv.utils.metrics.SegmentationMetric``, gluoncv/utils/metrics/segmentation.py).

Per update, with ``pred = argmax over classes`` and labels < 0 ignored:

- pixAcc = correct labelled pixels / labelled pixels (every label >= 0 counts as labelled);
- per class c in 0..nclass-1: intersection = labelled pixels with pred = label = c; union =
  labelled pixels with pred = c plus pixels labelled c minus the intersection. Totals are summed
  over all updates (dataset-level IoU, not a mean of per-image IoUs);
- mIoU = mean over **all** ``nclass`` classes of intersection / (union + eps): a class that
  appears in neither labels nor predictions counts as IoU 0 (GluonCV's choice; on the full ADE20K
  validation set every class appears). :meth:`SegmentationMetric.iou` gives the per-class values.

GluonCV counts with ``np.histogram(bins=nclass, range=(1, nclass))`` on ``value + 1``; that puts
each integer in its own bin, which ``np.bincount`` does directly (and faster).
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np

__all__ = ["SegmentationMetric"]

_EPS = np.spacing(1)


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "asnumpy"):  # an MXNet NDArray
        x = x.asnumpy()
    return np.asarray(x)


class SegmentationMetric:
    """Accumulates pixAcc and mIoU over predictions (see the module docstring).

    ``update(labels, preds)``: ``labels`` ``[B, H, W]`` (or ``[H, W]``) integer class indices,
    negative = ignored; ``preds`` per-class scores ``[B, C, H, W]`` (argmax taken over ``C``) or,
    with ``preds.ndim == labels.ndim``, class indices already. Either may be a list of such arrays
    (GluonCV's per-device lists), paired in order. NumPy arrays, torch tensors or MXNet NDArrays.
    ``get()`` -> ``(pixAcc, mIoU)``; ``reset()`` starts again.
    """

    def __init__(self, nclass: int):
        if nclass < 1:
            raise ValueError(f"SegmentationMetric: nclass must be >= 1, got {nclass}")
        self.nclass = int(nclass)
        self.name = "pixAcc & mIoU"
        self.reset()

    def reset(self) -> None:
        self.total_inter = np.zeros(self.nclass, np.int64)
        self.total_union = np.zeros(self.nclass, np.int64)
        self.total_correct = 0
        self.total_label = 0

    def update(self, labels, preds) -> None:
        if isinstance(preds, (list, tuple)):
            if not isinstance(labels, (list, tuple)) or len(labels) != len(preds):
                raise ValueError("SegmentationMetric.update: lists of labels and predictions must pair up")
            for label, pred in zip(labels, preds):
                self._update_one(label, pred)
        else:
            self._update_one(labels, preds)

    def _update_one(self, label, pred) -> None:
        label = _numpy(label).astype(np.int64)
        pred = _numpy(pred)
        if pred.ndim == label.ndim + 1:
            pred = pred.argmax(axis=-3)  # [B, C, H, W] or [C, H, W]: the class axis
        pred = pred.astype(np.int64)
        if pred.shape != label.shape:
            raise ValueError(f"SegmentationMetric.update: predictions {pred.shape} and labels {label.shape} differ")
        labelled = label >= 0
        self.total_label += int(labelled.sum())
        self.total_correct += int((labelled & (pred == label)).sum())
        n = self.nclass
        p = pred[labelled]
        t = label[labelled]
        area_pred = np.bincount(p[(p >= 0) & (p < n)], minlength=n)[:n]
        area_lab = np.bincount(t[t < n], minlength=n)[:n]
        hit = p[(p == t) & (p < n)]
        area_inter = np.bincount(hit, minlength=n)[:n]
        self.total_inter += area_inter
        self.total_union += area_pred + area_lab - area_inter

    def iou(self) -> np.ndarray:
        """Per-class IoU ``[nclass]`` so far (0 for classes never labelled nor predicted)."""
        return self.total_inter / (_EPS + self.total_union)

    def get(self) -> Tuple[float, float]:
        """``(pixAcc, mIoU)`` over everything since the last ``reset``."""
        pix_acc = 1.0 * self.total_correct / (_EPS + self.total_label)
        return float(pix_acc), float(self.iou().mean())

    def state(self) -> dict:
        """The accumulated counts (to merge metrics of several processes with :meth:`merge`)."""
        return {"inter": self.total_inter.copy(), "union": self.total_union.copy(),
                "correct": self.total_correct, "label": self.total_label}

    def merge(self, state: Union[dict, Sequence[dict]]) -> None:
        """Adds the counts of :meth:`state` dicts (one or several) to this metric's."""
        for s in ([state] if isinstance(state, dict) else state):
            self.total_inter += s["inter"]
            self.total_union += s["union"]
            self.total_correct += int(s["correct"])
            self.total_label += int(s["label"])
