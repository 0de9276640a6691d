"""MS COCO bbox metric (GluonCV's ``COCODetectionMetric``) on pycocotools' ``COCOeval``.

Detections are fed image by image in dataset order (``dataset.image_ids``), written as a COCO
results JSON and scored by ``COCOeval(gt, results, 'bbox')``. Same behaviour as GluonCV 0.10.5:

* rows with a class id < 0 (padding) or an id that is not a dataset class are dropped, and so are
  rows scoring below ``score_thresh`` (0.05);
* with ``data_shape=(height, width)`` boxes predicted on the resized input are scaled back to the
  image's original size (from the dataset/JSON): ``x * W / width``, ``y * H / height``;
* :meth:`get` returns GluonCV's ``(names, values)``: the ``COCOeval.summarize()`` text, the AP over
  IoU .50:.95 of each class and then the mean, as one-decimal percentage strings.

Differences, on purpose:

* ``[x1, y1, x2, y2]`` becomes ``[x1, y1, x2 - x1, y2 - y1]`` (our continuous-pixel boxes, exact).
  ``legacy_plus_one=True`` gives GluonCV's ``x2 - x1 + 1`` widths/heights, which inflate every box
  by one pixel (so GluonCV's AP is not pycocotools' AP on the same boxes).
* no detection at all is scored against an empty result set (AP 0 for classes with ground truth),
  where GluonCV pushes a dummy detection of category 0.
* :meth:`get_stats` gives the 12 unrounded ``COCOeval.stats`` (AP, AP50, AP75, APs, APm, APl,
  AR1, AR10, AR100, ARs, ARm, ARl); the results JSON goes to ``save_prefix + '_results.json'``
  when a prefix is given, and COCOeval reads the results from memory (GluonCV always writes
  ``save_prefix`` + a timestamp + ``.json`` and reads it back).
"""
from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ._voc_utils import labels_2d, split_batches, to_numpy

__all__ = ["COCODetectionMetric", "STAT_NAMES", "SUMMARY_NAMES"]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# the non-class entries of get(unrounded=True): AP@[.5:.95] is called mAP there (the score)
SUMMARY_NAMES = ("mAP", *STAT_NAMES[1:])


class COCODetectionMetric:
    """COCO bbox AP of detections on a :class:`gluon_bof.data.COCODetection` (single split).

    Args:
        dataset: the evaluation dataset; needs ``coco``, ``image_ids``, ``contiguous_id_to_json``,
            ``classes`` and ``image_size(idx) -> (width, height)``. Use ``skip_empty=False`` so
            every image of the JSON is scored, as GluonCV does.
        save_prefix: results are also written to ``save_prefix + '_results.json'``; None: not written.
        use_time: GluonCV's option: ``save_prefix`` + a ``_%Y_%m_%d_%H_%M_%S`` timestamp + ``.json``
            instead (GluonCV's default is True; ours False).
        cleanup: delete that results file once evaluated.
        score_thresh: detections scoring below this are discarded.
        data_shape: ``(height, width)`` of the network input when boxes are in input pixels and
            must be scaled back to each original image; None: boxes are already in image pixels.
        post_affine: GluonCV's option (CenterNet): ``post_affine(W, H, width, height)`` returns the
            2x3 affine matrix that maps input-pixel corners to the original image, used instead of
            the ``data_shape`` scaling (which it requires).
        legacy_plus_one: GluonCV's ``w = x2 - x1 + 1`` conversion instead of ``w = x2 - x1``.
        backend: 'pycocotools' (the reference) or 'faster_coco_eval' (its C++ ``COCOeval_faster``,
            several times faster on large sets; tests/utils/test_coco_metric.py checks that it gives
            pycocotools' statistics to every printed digit; ``pip install faster-coco-eval``).
    """

    name = "COCOMeanAP"

    def __init__(self, dataset, save_prefix: Optional[str] = None, use_time: bool = False, cleanup: bool = True,
                 score_thresh: float = 0.05, data_shape: Optional[Sequence[int]] = None,
                 post_affine: Optional[Callable] = None, *, legacy_plus_one: bool = False,
                 backend: str = "pycocotools"):
        if data_shape is not None and not data_shape:
            data_shape = None
        if data_shape is not None:
            if not isinstance(data_shape, (tuple, list)) or len(data_shape) != 2 or \
                    min(data_shape) <= 0:
                raise ValueError(f"COCODetectionMetric: data_shape must be None or a positive "
                                 f"(height, width), got {data_shape!r}")
            data_shape = (int(data_shape[0]), int(data_shape[1]))
        self.dataset = dataset
        self._coco = dataset.coco  # fails early on a multi-split dataset
        self._img_ids: List[int] = list(dataset.image_ids)
        self._cat_map = dict(dataset.contiguous_id_to_json)
        self._save_prefix = save_prefix
        self._cleanup = cleanup
        self._score_thresh = float(score_thresh)
        self._data_shape = data_shape
        if post_affine is not None and data_shape is None:
            raise ValueError("COCODetectionMetric: post_affine needs data_shape")
        self._post_affine = post_affine
        self._use_time = use_time
        self._plus_one = 1.0 if legacy_plus_one else 0.0
        if backend not in ("pycocotools", "faster_coco_eval"):
            raise ValueError(f"COCODetectionMetric: backend must be 'pycocotools' or 'faster_coco_eval', "
                             f"got {backend!r}")
        self._backend = backend
        self.reset()

    def reset(self) -> None:
        """Forget all detections."""
        self._current = 0
        self._results: List[dict] = []
        self._coco_eval = None

    @property
    def results(self) -> List[dict]:
        """COCO results gathered so far: dicts of image_id, category_id, bbox (xywh), score."""
        return self._results

    # ------------------------------------------------------------------ update
    def update(self, pred_bboxes, pred_labels, pred_scores, *args, **kwargs) -> None:
        """Add the detections of the next images (dataset order); ground truth args are ignored.

        Args:
            pred_bboxes: [B, K, 4] xyxy boxes (image pixels, or ``data_shape`` input pixels).
            pred_labels: [B, K] or [B, K, 1] contiguous class ids; rows with id < 0 are padding.
            pred_scores: [B, K] or [B, K, 1] confidences.
            Each may also be a list of such batches (one per device). NumPy, torch or MXNet.
        """
        for boxes, labels, scores in zip(*(split_batches(x) for x in
                                           (pred_bboxes, pred_labels, pred_scores))):
            boxes = to_numpy(boxes).astype(np.float64)
            if boxes.ndim != 3 or boxes.shape[-1] != 4:
                raise ValueError(f"COCODetectionMetric.update: pred_bboxes must be [B, K, 4], "
                                 f"got shape {boxes.shape}")
            batch = boxes.shape[0]
            labels = labels_2d(to_numpy(labels), batch, "pred_labels")
            scores = labels_2d(to_numpy(scores), batch, "pred_scores").astype(np.float64)
            if self._current + batch > len(self._img_ids):
                raise ValueError(f"COCODetectionMetric.update: {self._current + batch} images fed, "
                                 f"but {self.dataset} has only {len(self._img_ids)}")
            for b in range(batch):
                self._add_image(self._current, boxes[b], labels[b], scores[b])
                self._current += 1
        self._coco_eval = None

    def _add_image(self, idx: int, boxes: np.ndarray, labels: np.ndarray,
                   scores: np.ndarray) -> None:
        keep = (labels >= 0) & (scores >= self._score_thresh)
        boxes, labels, scores = boxes[keep], labels[keep].astype(np.int64), scores[keep]
        if self._data_shape is not None:
            width, height = self.dataset.image_size(idx)
            if self._post_affine is not None:  # corners through the 2x3 matrix: [x, y, 1] @ M^T
                mat = np.asarray(self._post_affine(width, height, self._data_shape[1], self._data_shape[0]),
                                 np.float64).reshape(2, 3)
                corners = boxes.reshape(-1, 2)
                boxes = (corners @ mat[:, :2].T + mat[:, 2]).reshape(-1, 4)
            else:
                scale = [width / self._data_shape[1], height / self._data_shape[0]]
                boxes = boxes * np.array(scale * 2)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2] + self._plus_one], axis=1)
        img_id = self._img_ids[idx]
        for box, label, score in zip(xywh.tolist(), labels.tolist(), scores.tolist()):
            if label not in self._cat_map:  # not a dataset class
                continue
            self._results.append({"image_id": img_id, "category_id": self._cat_map[label],
                                  "bbox": box, "score": score})

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self):
        """Run (once per set of detections) COCOeval on the results; returns the COCOeval.

        The results go to ``save_prefix + '_results.json'`` first when a prefix was given (kept
        unless ``cleanup``); COCOeval reads them from memory (the same numbers: JSON keeps floats
        exactly)."""
        if self._coco_eval is not None:
            return self._coco_eval
        if self._current != len(self._img_ids):
            warnings.warn(f"COCODetectionMetric: recorded {self._current} out of "
                          f"{len(self._img_ids)} validation images, incomplete results")
        if self._save_prefix is not None:
            suffix = (datetime.datetime.now().strftime("_%Y_%m_%d_%H_%M_%S") if self._use_time
                      else "_results") + ".json"
            path = os.path.abspath(os.path.expanduser(self._save_prefix) + suffix)
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as f:
                    f.write(json.dumps(self._results))  # dumps: the C encoder (dump is pure Python)
            except OSError as e:
                raise RuntimeError(f"COCODetectionMetric: cannot write results to {path}: {e}") from e
            if self._cleanup:
                os.remove(path)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval = self._cocoeval()
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        self._coco_eval = coco_eval
        return coco_eval

    def _cocoeval(self):
        """A COCOeval of the backend over the ground truth and (copies of) the results."""
        results = [dict(r) for r in self._results]  # loadRes adds keys to what it is given
        if self._backend == "faster_coco_eval":
            from faster_coco_eval import COCO as FasterCOCO
            from faster_coco_eval import COCOeval_faster

            gt = FasterCOCO()
            gt.dataset = self._coco.dataset
            gt.createIndex()
            dets = gt.loadRes(results) if results else self._empty_results(FasterCOCO)
            return COCOeval_faster(gt, dets, "bbox", print_function=print)
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        # loadRes fails on an empty list: an empty result set over the same images and classes
        dets = self._coco.loadRes(results) if results else self._empty_results(COCO)
        return COCOeval(self._coco, dets, "bbox")

    def _empty_results(self, coco_cls):
        dets = coco_cls()
        dets.dataset = {"images": list(self._coco.dataset["images"]),
                        "categories": list(self._coco.dataset["categories"]), "annotations": []}
        dets.createIndex()
        return dets

    def get_stats(self) -> np.ndarray:
        """The 12 unrounded ``COCOeval.stats`` (float64): AP, AP50, AP75, APs, APm, APl, AR1,
        AR10, AR100, ARs, ARm, ARl (-1 where no ground truth falls in the area range)."""
        return np.array(self._evaluate().stats, dtype=np.float64)

    def get(self, unrounded: bool = False) -> Tuple[List[str], list]:
        """GluonCV's ``(names, values)``: summary text, per-class AP@[.5:.95] (percent, one
        decimal; 'nan' for a class without ground truth) and the mean AP last.

        ``unrounded=True``: floats in [0, 1] instead, no summary text: the per-class AP@[.5:.95],
        then AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl (``COCOeval.stats``) and
        ``mAP`` (AP@[.5:.95], ``stats[0]``) last, so training can track it as its score."""
        coco_eval = self._evaluate()
        if unrounded:
            precision = coco_eval.eval["precision"][:, :, :, 0, 2]
            names = list(self.dataset.classes) + list(SUMMARY_NAMES[1:]) + ["mAP"]
            per_class = [_mean_valid(precision[:, :, k]) for k in range(len(self.dataset.classes))]
            stats = [float(x) for x in coco_eval.stats]
            return names, per_class + stats[1:] + stats[:1]
        ious = coco_eval.params.iouThrs
        lo = int(np.argmin(np.abs(ious - 0.5)))
        hi = int(np.argmin(np.abs(ious - 0.95)))
        # precision: [iou, recall, class, area range (0 = all), max dets (2 = 100)]
        precision = coco_eval.eval["precision"][lo:hi + 1, :, :, 0, 2]
        with contextlib.redirect_stdout(io.StringIO()) as summary:
            coco_eval.summarize()
        names = ["~~~~ Summary metrics ~~~~\n"]
        # pycocotools prints the 12 stats; faster_coco_eval adds AR@0.5 and AR@0.75 lines
        values = ["\n".join(summary.getvalue().strip().split("\n")[:12])]
        for k, cls_name in enumerate(self.dataset.classes):
            names.append(cls_name)
            values.append(f"{100 * _mean_valid(precision[:, :, k]):.1f}")
        names.append(f"~~~~ MeanAP @ IoU=[{ious[lo]:.2f},{ious[hi]:.2f}] ~~~~\n")
        values.append(f"{100 * _mean_valid(precision):.1f}")
        return names, values


def _mean_valid(p: np.ndarray) -> float:
    """Mean of the entries > -1 (COCOeval's 'undefined' marker); NaN when there are none."""
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else float("nan")
