"""Pascal VOC detection dataset (GluonCV's ``VOCDetection`` contract).

Reads the VOCdevkit layout::

    root/VOC{year}/Annotations/{id}.xml
    root/VOC{year}/JPEGImages/{id}.jpg
    root/VOC{year}/ImageSets/Main/{split}.txt

Items are ``(img, label)``: ``img`` an ``HxWx3`` uint8 RGB array, ``label`` float32 ``[N, 6]`` =
xmin, ymin, xmax, ymax (XYXY pixels), class id, difficult (0/1). As in GluonCV, 1 is subtracted
from all four XML coordinates (VOC's are 1-based pixel indices).

Differences from GluonCV, on purpose: an object whose class is not in ``classes`` is an error
(GluonCV skips it silently); boxes that leave the image are clipped to it and boxes with no area
are dropped, with one summary warning per construction (GluonCV logs and drops every box that
leaves ``[0, W) x [0, H)``); a missing ``<difficult>`` counts as 0; blank lines in split files are
ignored.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .base import DatasetError, LabelReport, check_dir, empty_label, read_image, sanitize_label

__all__ = ["VOCDetection"]


def _read_classes_file(path: str) -> Tuple[str, ...]:
    with open(path, "r", encoding="utf-8") as f:
        names = tuple(line.strip() for line in f if line.strip())
    if not names:
        raise DatasetError(f"{path}: classes file lists no class names")
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: classes file lists a class name twice")
    return names


def _number(node: ET.Element, tag: str, path: str) -> float:
    child = node.find(tag)
    if child is None or child.text is None:
        raise DatasetError(f"{path}: <{node.tag}> has no <{tag}>")
    try:
        return float(child.text)
    except ValueError:
        raise DatasetError(f"{path}: <{tag}> is not a number: {child.text!r}") from None


#: The 20 Pascal VOC classes in GluonCV's (and the devkit's) order: class id = position.
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')


class VOCDetection:
    """Pascal VOC detection dataset.

    Args:
        root: folder holding ``VOC2007``, ``VOC2012`` ... (a string ``year`` in ``splits`` names the
            sub-folder itself).
        splits: ``(year, name)`` pairs, e.g. ``((2007, 'trainval'), (2012, 'trainval'))``.
        transform: optional ``transform(img, label) -> anything``, applied in ``__getitem__``.
        index_map: optional ``{class name: id}``; default maps ``classes`` to ``0..C-1`` in order.
        preload_label: parse every XML at construction (default). Either way every split file,
            XML and image file is checked to exist at construction; with ``preload_label=True``
            every XML is also parsed and validated, so bad annotations fail before training.
        classes: class names; ``None`` reads ``root/classes.txt`` (one name per line) if it exists,
            else the 20 VOC classes (``VOCDetection.CLASSES``).
    """

    CLASSES = VOC_CLASSES

    def __init__(self, root: str, splits: Sequence[Tuple] = ((2007, 'trainval'), (2012, 'trainval')),
                 transform: Optional[Callable] = None, index_map: Optional[Dict[str, int]] = None,
                 preload_label: bool = True, classes: Optional[Sequence[str]] = None):
        self._root = check_dir(root, "VOC dataset root")
        self._splits = tuple(tuple(s) for s in splits)
        self._transform = transform
        if classes is None:
            classes_file = os.path.join(self._root, "classes.txt")
            classes = _read_classes_file(classes_file) if os.path.isfile(classes_file) else self.CLASSES
        self._classes = tuple(str(c).strip() for c in classes)
        self.index_map = dict(index_map) if index_map else {c: i for i, c in enumerate(self._classes)}
        self._lookup = {c.lower(): c for c in self._classes}
        self._items = self._load_items()
        self._sizes: Dict[int, Tuple[int, int]] = {}
        self._report = LabelReport()
        self._labels: Optional[List[np.ndarray]] = None
        if preload_label:
            self._labels = [self._load_label(i) for i in range(len(self._items))]
            self._report.warn(str(self))

    # ----------------------------------------------------------------------------------- items
    def _load_items(self) -> List[Tuple[str, str]]:
        items = []
        for year, name in self._splits:
            sub = os.path.join(self._root, f"VOC{year}" if isinstance(year, int) else str(year))
            split_file = os.path.join(sub, "ImageSets", "Main", f"{name}.txt")
            if not os.path.isfile(split_file):
                raise DatasetError(f"{split_file}: split file not found")
            with open(split_file, "r", encoding="utf-8") as f:
                ids = [line.split()[0] for line in f if line.strip()]
            for img_id in ids:
                for path in (self._anno_path(sub, img_id), self._img_path(sub, img_id)):
                    if not os.path.isfile(path):
                        raise DatasetError(f"{path}: file not found (image id {img_id!r} is "
                                           f"listed in {split_file})")
            items += [(sub, img_id) for img_id in ids]
        return items

    @staticmethod
    def _anno_path(sub: str, img_id: str) -> str:
        return os.path.join(sub, "Annotations", img_id + ".xml")

    @staticmethod
    def _img_path(sub: str, img_id: str) -> str:
        return os.path.join(sub, "JPEGImages", img_id + ".jpg")

    # ---------------------------------------------------------------------------------- labels
    def _load_label(self, idx: int) -> np.ndarray:
        """Parses and validates the XML of item ``idx``; float32 ``[N, 6]``."""
        path = self._anno_path(*self._items[idx])
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            raise DatasetError(f"{path}: malformed XML ({e})") from None
        size = root.find("size")
        if size is None:
            raise DatasetError(f"{path}: no <size> element")
        width, height = _number(size, "width", path), _number(size, "height", path)
        if width <= 0 or height <= 0:
            raise DatasetError(f"{path}: image size must be positive, got {width:g}x{height:g}")
        self._sizes[idx] = (int(width), int(height))
        rows = []
        for obj in root.iter("object"):
            name_node = obj.find("name")
            if name_node is None or not (name_node.text or "").strip():
                raise DatasetError(f"{path}: <object> has no <name>")
            raw = name_node.text.strip()
            name = self._lookup.get(raw.lower())
            if name is None or name not in self.index_map:
                known = ", ".join(self.index_map) if name else ", ".join(self._classes)
                raise DatasetError(f"{path}: unknown class name {raw!r} (known classes: {known})")
            diff_node = obj.find("difficult")
            try:
                difficult = int(diff_node.text) if diff_node is not None else 0
            except (TypeError, ValueError):
                difficult = 0  # as GluonCV
            box = obj.find("bndbox")
            if box is None:
                raise DatasetError(f"{path}: object {raw!r} has no <bndbox>")
            coords = [_number(box, t, path) - 1 for t in ("xmin", "ymin", "xmax", "ymax")]
            rows.append(coords + [self.index_map[name], 1 if difficult else 0])
        label = np.array(rows, dtype=np.float32) if rows else empty_label()
        label, n_clipped, n_dropped = sanitize_label(label, width, height)
        self._report.add(path, n_clipped, n_dropped)
        return label

    # ------------------------------------------------------------------------------ public API
    @property
    def classes(self) -> Tuple[str, ...]:
        """Category names, in class-id order."""
        return self._classes

    @property
    def num_class(self) -> int:
        return len(self._classes)

    def __len__(self) -> int:
        return len(self._items)

    def image_path(self, idx: int) -> str:
        return self._img_path(*self._items[idx])

    def label(self, idx: int) -> np.ndarray:
        """Label of item ``idx`` (a copy), float32 ``[N, 6]``, without reading the image."""
        if self._labels is not None:
            return self._labels[idx].copy()
        return self._load_label(idx)

    def image_size(self, idx: int) -> Tuple[int, int]:
        """``(width, height)`` of item ``idx`` as written in its XML."""
        idx = range(len(self._items))[idx]
        if idx not in self._sizes:
            self._load_label(idx)
        return self._sizes[idx]

    def __getitem__(self, idx: int):
        img = read_image(self.image_path(idx))
        label = self.label(idx)
        if self._transform is not None:
            return self._transform(img, label)
        return img, label

    def __str__(self) -> str:
        return f"{type(self).__name__}({','.join(f'{y}{n}' for y, n in self._splits)})"

    def __repr__(self) -> str:
        splits = ", ".join(f"{y}/{n}" for y, n in self._splits)
        return (f"{type(self).__name__}(root={self._root!r}, splits=[{splits}], "
                f"images={len(self)}, classes={self.num_class})")
