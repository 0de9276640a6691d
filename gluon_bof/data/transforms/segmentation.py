"""Joint image + mask geometry for semantic segmentation: GluonCV's ``SegmentationDataset``
steps (gluoncv/data/segbase.py) as pure functions with explicit parameters.

Images are ``HxWx3`` uint8 RGB arrays, masks ``HxW`` integer arrays (class indices, ``-1`` =
ignored). Resizing and blurring go through PIL as GluonCV's do (bilinear with PIL's antialiasing
for images, nearest for masks; PIL's Gaussian blur), so the same parameters give GluonCV's pixels.
The random presets that draw these parameters are in ``presets/segmentation.py``.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["hflip", "resize", "long_side_size", "short_side_size", "pad_to_crop", "crop",
           "center_crop_offset", "gaussian_blur"]

Pair = Tuple[np.ndarray, np.ndarray]


def _check(img: np.ndarray, mask: np.ndarray) -> None:
    if img.ndim != 3 or img.shape[2] != 3 or mask.shape != img.shape[:2]:
        raise ValueError(f"segmentation transforms: image {img.shape} and mask {mask.shape} must be HxWx3 and HxW")


def hflip(img: np.ndarray, mask: np.ndarray) -> Pair:
    """Mirrors both left to right."""
    return img[:, ::-1], mask[:, ::-1]


def resize(img: np.ndarray, mask: np.ndarray, width: int, height: int) -> Pair:
    """Image bilinear, mask nearest (PIL's ``Image.BILINEAR`` / ``Image.NEAREST``) to ``width x height``."""
    _check(img, mask)
    out = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((width, height), Image.BILINEAR))
    m = Image.fromarray(np.ascontiguousarray(mask, dtype=np.int32)).resize((width, height), Image.NEAREST)
    return out, np.asarray(m, dtype=np.int32)


def long_side_size(width: int, height: int, long_size: int) -> Tuple[int, int]:
    """``(w, h)`` with the longer side ``long_size`` and the other ``int(side * long_size / long + 0.5)``
    (GluonCV's training scale: its comment says short edge, the code scales the long one)."""
    if height > width:
        return int(1.0 * width * long_size / height + 0.5), long_size
    return long_size, int(1.0 * height * long_size / width + 0.5)


def short_side_size(width: int, height: int, short_size: int) -> Tuple[int, int]:
    """``(w, h)`` with the shorter side ``short_size`` and the other truncated,
    ``int(side * short_size / short)`` (GluonCV's validation resize)."""
    if width > height:
        return int(1.0 * width * short_size / height), short_size
    return short_size, int(1.0 * height * short_size / width)


def pad_to_crop(img: np.ndarray, mask: np.ndarray, crop_size: int, *, fill: int = 0,
                ignore_label: int = -1) -> Pair:
    """Pads the bottom and right up to ``crop_size`` where a side is shorter: image with ``fill``
    (GluonCV: 0, black before normalisation), mask with ``ignore_label``. (GluonCV pads the raw
    mask with 0 before mapping labels; on ADE20K that 0 is "other", i.e. ignored: the same.)"""
    h, w = mask.shape
    ph, pw = max(crop_size - h, 0), max(crop_size - w, 0)
    if not (ph or pw):
        return img, mask
    img = np.pad(img, ((0, ph), (0, pw), (0, 0)), constant_values=fill)
    return img, np.pad(mask, ((0, ph), (0, pw)), constant_values=ignore_label)


def crop(img: np.ndarray, mask: np.ndarray, x1: int, y1: int, size: int) -> Pair:
    """The ``size x size`` window whose top-left pixel is ``(x1, y1)``; it must lie inside."""
    h, w = mask.shape
    if not (0 <= x1 <= w - size and 0 <= y1 <= h - size):
        raise ValueError(f"segmentation transforms: a {size}x{size} crop at ({x1}, {y1}) leaves the {w}x{h} image")
    return img[y1:y1 + size, x1:x1 + size], mask[y1:y1 + size, x1:x1 + size]


def center_crop_offset(width: int, height: int, size: int) -> Tuple[int, int]:
    """GluonCV's centre: ``int(round((side - size) / 2))`` (Python's round, halves to even)."""
    return int(round((width - size) / 2.0)), int(round((height - size) / 2.0))


def gaussian_blur(img: np.ndarray, radius: float) -> np.ndarray:
    """PIL's ``ImageFilter.GaussianBlur(radius)`` (GluonCV's "gaussian blur as in PSP")."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).filter(ImageFilter.GaussianBlur(radius=radius)))
