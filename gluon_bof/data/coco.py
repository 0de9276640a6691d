"""MS COCO detection dataset (GluonCV's ``COCODetection`` contract, VOC-shaped labels).

Layout::

    root/annotations/{split}.json            e.g. instances_train2017.json
    root/{split minus 'instances_'}/{file_name}   e.g. root/train2017/000000000009.jpg

Items are ``(img, label)``: ``img`` an ``HxWx3`` uint8 RGB array, ``label`` float32 ``[N, 6]`` =
xmin, ymin, xmax, ymax (XYXY pixels), contiguous class id, difficult (always 0), so COCO and VOC
items have the same shape.

Box conversion: COCO's ``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]`` (continuous pixel
coordinates, the convention of our whole pipeline), clipped to ``[0, W] x [0, H]``. GluonCV instead
uses ``x + max(w - 1, 0)`` and clips to ``W - 1`` (its legacy inclusive-pixel convention), so our
``xmax``/``ymax`` are GluonCV's plus 1.

Other differences from GluonCV, on purpose: ``use_crowd`` defaults to False (crowd boxes skipped);
contiguous ids follow the sorted category ids (GluonCV: the JSON's category order, which is sorted
in the official files) and class names come from the JSON rather than a fixed list; with
``skip_empty=False`` an image without boxes gets an empty ``[0, 6]`` label (GluonCV: a dummy row of
-1); image paths come from the split name, not ``coco_url``.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .base import DatasetError, LabelReport, check_dir, empty_label, read_image, sanitize_label

__all__ = ["COCODetection"]

logger = logging.getLogger(__name__)


def _load_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: annotation file not found")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level must be a JSON object, got {type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: no {key!r} list")
    return data


def _make_coco(data: dict):
    """A pycocotools ``COCO`` over an already loaded dict (its index prints; keep it quiet)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


#: The 80 names of the official COCO 2017 JSON, in sorted-category-id order (as GluonCV's list).
COCO_CLASSES = ('person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
                'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
                'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
                'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
                'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
                'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
                'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
                'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
                'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
                'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier',
                'toothbrush')


class COCODetection:
    """MS COCO detection dataset.

    Args:
        root: folder holding ``annotations/`` and the image folders.
        splits: annotation names, e.g. ``('instances_train2017',)`` (a single string works too).
        transform: optional ``transform(img, label) -> anything``, applied in ``__getitem__``.
        min_object_area: annotations whose ``area`` is below this are ignored.
        skip_empty: leave out images with no usable box (for training); otherwise keep them with
            an empty ``[0, 6]`` label (for evaluation).
        use_crowd: keep ``iscrowd`` boxes (default False: skipped).

    Attributes:
        coco: the pycocotools ``COCO`` object (single split only), for COCO evaluation.
        image_ids: COCO image id of each item.
        json_id_to_contiguous / contiguous_id_to_json: category id maps.
    """

    #: The 80 names of the official COCO 2017 JSON (:data:`COCO_CLASSES`); ``classes`` of an
    #: instance always comes from its own JSON.
    CLASSES = COCO_CLASSES

    def __init__(self, root: str, splits: Sequence[str] = ('instances_train2017',),
                 transform: Optional[Callable] = None, min_object_area: float = 0,
                 skip_empty: bool = True, use_crowd: bool = False):
        self._root = check_dir(root, "COCO dataset root")
        self._splits = (splits,) if isinstance(splits, str) else tuple(splits)
        self._transform = transform
        self._min_object_area = min_object_area
        self._skip_empty = skip_empty
        self._use_crowd = use_crowd
        self._cocos = []
        self._classes: Optional[Tuple[str, ...]] = None
        self.json_id_to_contiguous: Optional[Dict[int, int]] = None
        self.contiguous_id_to_json: Optional[Dict[int, int]] = None
        self._paths: List[str] = []
        self._labels: List[np.ndarray] = []
        self._sizes: List[Tuple[int, int]] = []
        self.image_ids: List[int] = []
        report = LabelReport()
        self.num_skipped = 0  # images left out for having no usable box (skip_empty)
        for split in self._splits:
            self._load_split(split, report)
        report.warn(str(self))
        if self.num_skipped:
            logger.info("%s: %d of %d images have no usable box (none, only crowd/difficult or too small ones) "
                        "and are left out (skip_empty=True, for training)", self, self.num_skipped,
                        self.num_skipped + len(self._paths))

    def _load_split(self, split: str, report: LabelReport) -> None:
        path = os.path.join(self._root, "annotations", split + ".json")
        data = _load_json(path)
        cats = {}
        for c in data["categories"]:
            if not isinstance(c, dict) or "id" not in c or "name" not in c:
                raise DatasetError(f"{path}: category entry without 'id' and 'name': {c!r}")
            cats[c["id"]] = c["name"]
        cat_ids = sorted(cats)
        classes = tuple(cats[i] for i in cat_ids)
        if self._classes is None:
            self._classes = classes
            self.json_id_to_contiguous = {cid: k for k, cid in enumerate(cat_ids)}
            self.contiguous_id_to_json = {k: cid for cid, k in self.json_id_to_contiguous.items()}
        elif classes != self._classes:
            raise DatasetError(f"{path}: categories differ from those of {self._splits[0]!r}")
        images = {}
        for entry in data["images"]:
            if not isinstance(entry, dict) or not all(
                    k in entry for k in ("id", "file_name", "width", "height")):
                raise DatasetError(f"{path}: image entry lacks id/file_name/width/height: {entry!r}")
            images[entry["id"]] = entry
        anns_by_image: Dict[int, list] = {i: [] for i in images}
        for ann in data.get("annotations", []):
            if not isinstance(ann, dict):
                raise DatasetError(f"{path}: annotation entry is not an object: {ann!r}")
            if ann.get("image_id") not in images:
                raise DatasetError(f"{path}: annotation {ann.get('id')!r} refers to unknown image "
                                   f"id {ann.get('image_id')!r}")
            if ann.get("category_id") not in cats:
                raise DatasetError(f"{path}: annotation {ann.get('id')!r} refers to unknown "
                                   f"category id {ann.get('category_id')!r} "
                                   f"(known: {sorted(cats)})")
            bbox = ann.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                raise DatasetError(f"{path}: annotation {ann.get('id')!r} has no 4-number 'bbox'")
            anns_by_image[ann["image_id"]].append(ann)
        self._cocos.append(_make_coco(data))

        image_dir = os.path.join(self._root, split[len("instances_"):]
                                 if split.startswith("instances_") else split)
        for img_id in sorted(images):
            entry = images[img_id]
            img_path = os.path.join(image_dir, entry["file_name"])
            if not os.path.isfile(img_path):
                raise DatasetError(f"{img_path}: image file not found (image id {img_id} in {path})")
            label = self._make_label(anns_by_image[img_id], entry, img_path, report)
            if label.shape[0] == 0 and self._skip_empty:
                self.num_skipped += 1
                continue
            self._paths.append(img_path)
            self._labels.append(label)
            self._sizes.append((int(entry["width"]), int(entry["height"])))
            self.image_ids.append(img_id)

    def _make_label(self, anns: list, entry: dict, img_path: str, report: LabelReport) -> np.ndarray:
        rows = []
        num_no_area = 0
        for ann in anns:
            if ann.get("area", 1) < self._min_object_area or ann.get("ignore", 0) == 1:
                continue
            if ann.get("iscrowd", 0) and not self._use_crowd:
                continue
            if ann.get("area", 1) <= 0:  # GluonCV requires a positive area too
                num_no_area += 1
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            rows.append([x, y, x + w, y + h, self.json_id_to_contiguous[ann["category_id"]], 0])
        label = np.array(rows, dtype=np.float32) if rows else empty_label()
        label, n_clipped, n_dropped = sanitize_label(label, entry["width"], entry["height"])
        report.add(img_path, n_clipped, n_dropped + num_no_area)
        return label

    # ------------------------------------------------------------------------------ public API
    @property
    def coco(self):
        """The pycocotools ``COCO`` object of the (single) split, for evaluation."""
        if len(self._cocos) != 1:
            raise ValueError(f"{self}: the COCO object is only defined for one split, "
                             f"this dataset has {len(self._cocos)}")
        return self._cocos[0]

    @property
    def classes(self) -> Tuple[str, ...]:
        """Category names in contiguous-id order (sorted JSON category ids)."""
        return self._classes

    @property
    def num_class(self) -> int:
        return len(self._classes)

    def __len__(self) -> int:
        return len(self._paths)

    def image_path(self, idx: int) -> str:
        return self._paths[idx]

    def label(self, idx: int) -> np.ndarray:
        """Label of item ``idx`` (a copy), float32 ``[N, 6]``, without reading the image."""
        return self._labels[idx].copy()

    def image_size(self, idx: int) -> Tuple[int, int]:
        """``(width, height)`` of item ``idx`` as given in the JSON."""
        return self._sizes[idx]

    def __getitem__(self, idx: int):
        img = read_image(self._paths[idx])
        label = self.label(idx)
        if self._transform is not None:
            return self._transform(img, label)
        return img, label

    def __str__(self) -> str:
        return f"{type(self).__name__}({','.join(self._splits)})"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={self._root!r}, splits={list(self._splits)}, "
                f"images={len(self)}, classes={self.num_class})")
