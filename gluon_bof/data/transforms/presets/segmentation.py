"""Semantic segmentation train / validation transforms: GluonCV's ``_sync_transform`` and
``_val_sync_transform`` (gluoncv/data/segbase.py) followed by its script's ``ToTensor`` +
``Normalize(ImageNet mean, std)``.

Both take a dataset item ``(img HxWx3 uint8 RGB, mask HxW int, -1 = ignored)`` and return
``(image [3, S, S] float32, mask [S, S] int64)`` with ``S = crop_size``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .. import segmentation as tseg

__all__ = ["SegmentationTrainTransform", "SegmentationValTransform", "NumpyDraws", "to_tensor_pair"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NumpyDraws:
    """The ``random()`` / ``randint(a, b)`` interface of Python's ``random.Random`` on NumPy's
    global generator (which ``TransformDataset`` seeds per sample, so a resumed run redraws the
    same augmentations). Pass a ``random.Random(seed)`` instead to replay GluonCV, whose
    transforms draw from Python's ``random``."""

    @staticmethod
    def random() -> float:
        return float(np.random.random_sample())

    @staticmethod
    def randint(a: int, b: int) -> int:
        """Uniform integer in ``[a, b]``, both ends included (Python's ``randint``)."""
        return int(np.random.randint(a, b + 1))


def to_tensor_pair(img: np.ndarray, mask: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD):
    """``(x / 255 - mean) / std`` as ``[3, H, W]`` float32, and the mask as ``[H, W]`` int64."""
    x = (img.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return (torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))),
            torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)))


class SegmentationTrainTransform:
    """GluonCV's training augmentation, in its order:

    1. horizontal flip with p .5;
    2. random scale: the longer side to ``randint(int(0.5 * base_size), int(2.0 * base_size))``,
       the other side in proportion (image bilinear, mask nearest);
    3. pad bottom/right to ``crop_size`` where shorter (image 0, mask ``ignore_label``);
    4. random ``crop_size`` square crop (offsets ``randint(0, side - crop_size)``);
    5. with p .5, Gaussian blur of radius ``U(0, 1)`` (PIL's);
    6. ``/255``, minus ``mean``, divided by ``std``.

    ``rng``: where the draws come from (default :class:`NumpyDraws`); any object with Python's
    ``random()`` and ``randint(a, b)``.
    """

    def __init__(self, base_size: int = 520, crop_size: int = 480, *, ignore_label: int = -1,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, rng=None):
        if crop_size < 1 or base_size < 1:
            raise ValueError(f"segmentation transform: base_size {base_size} and crop_size {crop_size} must be >= 1")
        self.base_size, self.crop_size = base_size, crop_size
        self.ignore_label = ignore_label
        self.mean, self.std = mean, std
        self.rng = rng if rng is not None else NumpyDraws()

    def augment(self, img: np.ndarray, mask: np.ndarray):
        """Steps 1-5 on uint8 / int arrays (no normalisation)."""
        r, crop = self.rng, self.crop_size
        if r.random() < 0.5:
            img, mask = tseg.hflip(img, mask)
        long_size = r.randint(int(self.base_size * 0.5), int(self.base_size * 2.0))
        w, h = tseg.long_side_size(mask.shape[1], mask.shape[0], long_size)
        img, mask = tseg.resize(img, mask, w, h)
        img, mask = tseg.pad_to_crop(img, mask, crop, ignore_label=self.ignore_label)
        h, w = mask.shape
        x1 = r.randint(0, w - crop)
        y1 = r.randint(0, h - crop)
        img, mask = tseg.crop(img, mask, x1, y1, crop)
        if r.random() < 0.5:
            img = tseg.gaussian_blur(img, r.random())
        return img, mask

    def __call__(self, img: np.ndarray, mask: np.ndarray):
        return to_tensor_pair(*self.augment(img, mask), self.mean, self.std)


class SegmentationValTransform:
    """GluonCV's validation transform: the shorter side to ``crop_size`` (the longer truncated
    in proportion; image bilinear, mask nearest), then the centre ``crop_size`` square, then
    normalisation. ``crop_size=None`` keeps the whole image (GluonCV's 'testval' mode)."""

    def __init__(self, crop_size: Optional[int] = 480, *, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        self.crop_size = crop_size
        self.mean, self.std = mean, std

    def augment(self, img: np.ndarray, mask: np.ndarray):
        if self.crop_size is None:
            return img, mask
        s = self.crop_size
        w, h = tseg.short_side_size(mask.shape[1], mask.shape[0], s)
        img, mask = tseg.resize(img, mask, w, h)
        x1, y1 = tseg.center_crop_offset(w, h, s)
        return tseg.crop(img, mask, x1, y1, s)

    def __call__(self, img: np.ndarray, mask: np.ndarray):
        return to_tensor_pair(*self.augment(img, mask), self.mean, self.std)
