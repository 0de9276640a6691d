"""ADE20K semantic segmentation (GluonCV's ``ADE20KSegmentation``), reading the official layout::

    root/ADEChallengeData2016/images/{training,validation}/*.jpg
    root/ADEChallengeData2016/annotations/{training,validation}/*.png   (8-bit class indices)

Items are ``(img, mask)``: ``img`` an ``HxWx3`` uint8 RGB array, ``mask`` an ``HxW`` int32 array
of class indices with GluonCV's label mapping: ADE's 0 ("other", unlabelled) becomes -1 (ignored
by the loss and the metric) and 1..150 become 0..149. ``classes.txt`` at ``root`` (one name a
line) replaces the 150 ADE classes, so other data in this layout (the built-in generated data,
``gluon_bof.data.synthetic_segmentation``) reads the same way: mask value ``k`` is class ``k - 1``.

Differences from GluonCV, on purpose: images and annotations are paired in sorted file order;
an image without its annotation (or an annotation without its image) is an error naming the file
(GluonCV prints a line and skips the image, or ignores the annotation); a mask whose size differs
from its image's, a mask that is not single-channel and a label above the number of classes are
errors naming the file when it is read (GluonCV would crop mismatched pairs silently).
"""
from __future__ import annotations

import os
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .base import DatasetError, check_dir, read_image
from .voc import _read_classes_file

__all__ = ["ADE20KSegmentation", "ADE20K_CLASSES", "read_mask"]

ADE20K_CLASSES = (
    'wall', 'building, edifice', 'sky', 'floor, flooring', 'tree', 'ceiling', 'road, route', 'bed',
    'windowpane, window', 'grass', 'cabinet', 'sidewalk, pavement',
    'person, individual, someone, somebody, mortal, soul', 'earth, ground', 'door, double door', 'table',
    'mountain, mount', 'plant, flora, plant life', 'curtain, drape, drapery, mantle, pall', 'chair',
    'car, auto, automobile, machine, motorcar', 'water', 'painting, picture', 'sofa, couch, lounge', 'shelf',
    'house', 'sea', 'mirror', 'rug, carpet, carpeting', 'field', 'armchair', 'seat', 'fence, fencing',
    'desk', 'rock, stone', 'wardrobe, closet, press', 'lamp', 'bathtub, bathing tub, bath, tub',
    'railing, rail', 'cushion', 'base, pedestal, stand', 'box', 'column, pillar', 'signboard, sign',
    'chest of drawers, chest, bureau, dresser', 'counter', 'sand', 'sink', 'skyscraper',
    'fireplace, hearth, open fireplace', 'refrigerator, icebox', 'grandstand, covered stand', 'path',
    'stairs, steps', 'runway', 'case, display case, showcase, vitrine',
    'pool table, billiard table, snooker table', 'pillow', 'screen door, screen', 'stairway, staircase',
    'river', 'bridge, span', 'bookcase', 'blind, screen', 'coffee table, cocktail table',
    'toilet, can, commode, crapper, pot, potty, stool, throne', 'flower', 'book', 'hill', 'bench',
    'countertop', 'stove, kitchen stove, range, kitchen range, cooking stove', 'palm, palm tree',
    'kitchen island',
    'computer, computing machine, computing device, data processor, electronic computer, information processing system',
    'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel, hut, hutch, shack, shanty',
    'bus, autobus, coach, charabanc, double-decker, jitney, motorbus, motorcoach, omnibus, passenger vehicle',
    'towel', 'light, light source', 'truck, motortruck', 'tower', 'chandelier, pendant, pendent',
    'awning, sunshade, sunblind', 'streetlight, street lamp', 'booth, cubicle, stall, kiosk',
    'television receiver, television, television set, tv, tv set, idiot box, boob tube, telly, goggle box',
    'airplane, aeroplane, plane', 'dirt track', 'apparel, wearing apparel, dress, clothes', 'pole',
    'land, ground, soil', 'bannister, banister, balustrade, balusters, handrail',
    'escalator, moving staircase, moving stairway', 'ottoman, pouf, pouffe, puff, hassock', 'bottle',
    'buffet, counter, sideboard', 'poster, posting, placard, notice, bill, card', 'stage', 'van', 'ship',
    'fountain', 'conveyer belt, conveyor belt, conveyer, conveyor, transporter', 'canopy',
    'washer, automatic washer, washing machine', 'plaything, toy',
    'swimming pool, swimming bath, natatorium', 'stool', 'barrel, cask', 'basket, handbasket',
    'waterfall, falls', 'tent, collapsible shelter', 'bag', 'minibike, motorbike', 'cradle', 'oven', 'ball',
    'food, solid food', 'step, stair', 'tank, storage tank', 'trade name, brand name, brand, marque',
    'microwave, microwave oven', 'pot, flowerpot', 'animal, animate being, beast, brute, creature, fauna',
    'bicycle, bike, wheel, cycle', 'lake', 'dishwasher, dish washer, dishwashing machine',
    'screen, silver screen, projection screen', 'blanket, cover', 'sculpture', 'hood, exhaust hood',
    'sconce', 'vase', 'traffic light, traffic signal, stoplight', 'tray',
    'ashcan, trash can, garbage can, wastebin, ash bin, ash-bin, ashbin, dustbin, trash barrel, trash bin',
    'fan', 'pier, wharf, wharfage, dock', 'crt screen', 'plate', 'monitor, monitoring device',
    'bulletin board, notice board', 'shower', 'radiator', 'glass, drinking glass', 'clock', 'flag')


def read_mask(path: str) -> np.ndarray:
    """Reads a single-channel 8- or 16-bit PNG annotation as an ``HxW`` int32 array of its raw
    values; a missing, unreadable or multi-channel file is a :class:`DatasetError` naming it."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: annotation file not found")
    mask = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DatasetError(f"{path}: cannot decode the annotation (corrupt or not an image file)")
    if mask.ndim != 2:
        raise DatasetError(f"{path}: the annotation has {mask.shape[2]} channels; expected a single-channel "
                           f"PNG of class indices (ADE20K's 'annotations' folder)")
    return mask.astype(np.int32)


class ADE20KSegmentation:
    """ADE20K (SceneParsing ``ADEChallengeData2016``) semantic segmentation.

    Args:
        root: the folder holding ``ADEChallengeData2016`` (GluonCV's ``root``; default layout of
            ``scripts/datasets/ade20k.py``), or that folder itself.
        split: 'train' (``training``) or 'val' (``validation``).
        transform: optional ``transform(img, mask) -> anything``, applied in ``__getitem__``.
        classes: class names in index order; ``None`` reads ``root/classes.txt`` when present,
            else the 150 ADE20K classes (``ADE20KSegmentation.CLASSES``).

    Attributes: ``classes``, ``num_class`` (GluonCV's), ``images`` and ``masks`` (paths),
    ``pred_offset`` = 1 (add it to a prediction to get ADE's label values back).
    """

    BASE_DIR = "ADEChallengeData2016"
    CLASSES = ADE20K_CLASSES
    SPLITS = {"train": "training", "val": "validation"}
    pred_offset = 1

    def __init__(self, root: str, split: str = "train", transform: Optional[Callable] = None,
                 classes: Optional[Sequence[str]] = None):
        if split not in self.SPLITS:
            raise DatasetError(f"ADE20KSegmentation: split must be one of {sorted(self.SPLITS)}, got {split!r}")
        root = check_dir(root, "ADE20K root (prepare it with scripts/datasets/ade20k.py)")
        base = root if os.path.isdir(os.path.join(root, "images")) else os.path.join(root, self.BASE_DIR)
        check_dir(base, f"ADE20K folder {self.BASE_DIR} (prepare it with scripts/datasets/ade20k.py)")
        if classes is None:
            classes_file = os.path.join(root, "classes.txt")
            classes = _read_classes_file(classes_file) if os.path.isfile(classes_file) else self.CLASSES
        self.classes = tuple(classes)
        self.split = split
        self.transform = transform
        self.images, self.masks = self._pairs(base, self.SPLITS[split])

    @staticmethod
    def _pairs(base: str, sub: str) -> Tuple[List[str], List[str]]:
        img_dir = check_dir(os.path.join(base, "images", sub), f"'{sub}' image folder")
        mask_dir = check_dir(os.path.join(base, "annotations", sub), f"'{sub}' annotation folder")
        images = {os.path.splitext(f)[0]: f for f in os.listdir(img_dir) if f.lower().endswith(".jpg")}
        masks = {os.path.splitext(f)[0]: f for f in os.listdir(mask_dir) if f.lower().endswith(".png")}
        for stem in sorted(images):
            if stem not in masks:
                raise DatasetError(f"{os.path.join(img_dir, images[stem])}: no annotation for this image "
                                   f"(expected {os.path.join(mask_dir, stem + '.png')})")
        for stem in sorted(masks):
            if stem not in images:
                raise DatasetError(f"{os.path.join(mask_dir, masks[stem])}: no image for this annotation "
                                   f"(expected {os.path.join(img_dir, stem + '.jpg')})")
        if not images:
            raise DatasetError(f"{img_dir}: no .jpg images")
        stems = sorted(images)
        return ([os.path.join(img_dir, images[s]) for s in stems], [os.path.join(mask_dir, masks[s]) for s in stems])

    @property
    def num_class(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"ADE20KSegmentation({os.path.dirname(os.path.dirname(os.path.dirname(self.images[0])))}, " \
               f"split={self.split!r}, {len(self)} images, {self.num_class} classes)"

    def label(self, idx: int) -> np.ndarray:
        """The mask of item ``idx`` (``HxW`` int32, -1 ignored), checked against the classes."""
        path = self.masks[idx]
        raw = read_mask(path)
        top = int(raw.max()) if raw.size else 0
        if top > self.num_class:
            raise DatasetError(f"{path}: label value {top} is out of range: this dataset has {self.num_class} "
                               f"classes (values 1..{self.num_class}, 0 = unlabelled)")
        return raw - 1

    def __getitem__(self, idx: int):
        img = read_image(self.images[idx])
        mask = self.label(idx)
        if mask.shape != img.shape[:2]:
            raise DatasetError(f"{self.masks[idx]}: annotation is {mask.shape[1]}x{mask.shape[0]} pixels, its image "
                               f"{self.images[idx]} is {img.shape[1]}x{img.shape[0]}")
        if self.transform is not None:
            return self.transform(img, mask)
        return img, mask
