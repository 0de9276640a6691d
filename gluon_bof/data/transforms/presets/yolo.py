"""YOLOv3 train / validation transforms (GluonCV's ``presets.yolo`` contracts, PyTorch output).

Both take a dataset item ``(img, label)``: ``img`` an ``HxWx3`` uint8 RGB NumPy array, ``label``
a float ``[N, 5+]`` array (xmin, ymin, xmax, ymax in pixels, class id, then optional columns:
difficult, and the mix weight appended last by ``MixupDetection``).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from .. import bbox as tbbox
from .. import image as timage

_HERE = __name__.replace(".", "/") + ".py"  # error messages name this file
__all__ = ["YOLO3DefaultTrainTransform", "YOLO3DefaultValTransform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalizer(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """3x4 affine matrix mapping pixels in [0, 255] to ``(x / 255 - mean) / std``."""
    scale = 1.0 / (255.0 * np.asarray(std, dtype=np.float64))
    m = np.zeros((3, 4))
    m[:, :3] = np.diag(scale)
    m[:, 3] = -np.asarray(mean, dtype=np.float64) / np.asarray(std, dtype=np.float64)
    return m


def _to_tensor(img: np.ndarray, flip_x: bool = False) -> torch.Tensor:
    """``HxWx3`` float32 -> contiguous ``[3, H, W]`` tensor (optionally mirrored) in one copy."""
    if flip_x:
        img = img[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _resize_normalize(img: np.ndarray, label: np.ndarray, size, norm: np.ndarray):
    """Plain resize (interp 9: cubic up / area down / bilinear) + normalise; boxes follow."""
    h, w = img.shape[:2]
    width, height = size
    img = timage.imresize(img, width, height, interp=9)
    bbox = tbbox.resize(label, (w, h), (width, height))
    return _to_tensor(timage.apply_color_matrix(img, norm)), bbox


class YOLO3DefaultTrainTransform:
    """YOLOv3 training augmentation (GluonCV's order and probabilities).

    1. random colour distortion (``image.random_color_distort``, ``hue_mode``);
    2. with p .5, random expansion up to 4x onto a canvas filled with ``mean * 255``;
    3. ``bbox.random_crop_with_constraints`` (boxes whose centre leaves the crop are dropped);
    4. resize to ``(width, height)`` with a random interpolation (nearest, bilinear, bicubic,
       area, Lanczos);
    5. horizontal flip with p .5;
    6. ``/255``, minus ``mean``, divided by ``std``.

    Steps 1, 2 and 6 are affine in the pixel values and resizing preserves affine maps, so
    they are fused: only the part of the (expanded) image that survives the crop is
    materialised, colour + normalisation are one OpenCV pass, and the expansion fill, which
    normalises to 0, is a zero canvas. Pixels equal GluonCV's unfused float pipeline up to
    float32 rounding (GluonCV, too, keeps float pixels from step 1 on and never clips).

    Args:
        width, height: default output size.
        net: accepted for GluonCV signature compatibility and unused (gluon-bof builds YOLO
            targets inside the network).
        mean, std: RGB normalisation (ImageNet's by default).
        mixup: the input label's last column is the mix weight (from ``MixupDetection``);
            otherwise the weight is 1.
        data_aug: False gives the paper's "- data augmentation" row: plain resize to
            ``(width, height)`` (interpolation 9) and normalisation only.
        hue_mode: ``'degrees'`` (default, hue shifts of +-18 degrees) or ``'gluoncv'``
            (GluonCV's ``cos(alpha * pi)``), see ``image.hue_matrix``.

    Call: ``transform(img, label, size=None) -> (img, label)``; ``img`` is an ``HxWx3`` uint8
    RGB array, ``label`` ``[N, 5+]``. ``size=(width, height)`` (or an int for a square)
    overrides the output size for this call only (random-shape training picks a new size every
    10 batches; the loader passes it per sample, which also works across worker processes).
    Returns ``img`` a float32 tensor ``[3, H, W]`` and ``label`` float32 ``[N', 6]`` = xyxy in
    output pixels, class id, mix weight (``N' <= N``: cropping may drop boxes; ``[0, 6]`` for
    no boxes).
    """

    def __init__(self, width: int, height: int, net=None, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 mixup: bool = False, data_aug: bool = True, hue_mode: str = "degrees",
                 **kwargs):
        del net, kwargs  # GluonCV compatibility only
        timage.hue_matrix(0.0, hue_mode)  # validates hue_mode
        self._width, self._height = int(width), int(height)
        self._mean, self._std = tuple(mean), tuple(std)
        self._mixup = mixup
        self._data_aug = data_aug
        self._hue_mode = hue_mode
        self._norm = _normalizer(mean, std)

    def _with_weight(self, label: np.ndarray) -> np.ndarray:
        weight = label[:, -1:] if self._mixup else np.ones((len(label), 1), np.float32)
        return np.concatenate([label[:, :5], weight], axis=1).astype(np.float32)

    def __call__(self, img: np.ndarray, label: np.ndarray, size: Sequence[int] | None = None):
        if size is None:
            width, height = self._width, self._height
        else:
            width, height = (size, size) if isinstance(size, int) else (int(v) for v in size)
        label = self._with_weight(tbbox.check_label(label, f"{_HERE}:YOLO3DefaultTrainTransform"))
        if not self._data_aug:
            return _resize_normalize(img, label, (width, height), self._norm)
        h, w = img.shape[:2]

        # 1. colour distortion, composed with the final normalisation (applied in step 4)
        color = timage.sample_color_distort(hue_mode=self._hue_mode)
        color = timage.compose_color(color, self._norm)

        # 2. random expansion (geometry only; the canvas is never built)
        off_x, off_y, ew, eh = 0, 0, w, h
        if np.random.uniform(0, 1) > 0.5:
            ratio = np.random.uniform(1, 4)
            eh, ew = int(h * ratio), int(w * ratio)
            off_y = np.random.randint(0, eh - h + 1)
            off_x = np.random.randint(0, ew - w + 1)
            label = tbbox.translate(label, off_x, off_y)

        # 3. random crop of the expanded canvas
        label, (cx, cy, cw, ch) = tbbox.random_crop_with_constraints(label, (ew, eh))
        if cw <= 0 or ch <= 0:  # degenerate crop of a tiny image: keep the canvas
            cx, cy, cw, ch = 0, 0, ew, eh

        # 4. materialise the crop: the image part gets colour + normalisation, the fill is 0
        x0, y0 = max(cx, off_x), max(cy, off_y)
        x1, y1 = min(cx + cw, off_x + w), min(cy + ch, off_y + h)
        if (x0, y0, x1, y1) == (cx, cy, cx + cw, cy + ch):
            crop = timage.apply_color_matrix(img[y0 - off_y:y1 - off_y, x0 - off_x:x1 - off_x],
                                             color)
        else:
            crop = np.zeros((ch, cw, 3), np.float32)
            if x1 > x0 and y1 > y0:
                crop[y0 - cy:y1 - cy, x0 - cx:x1 - cx] = timage.apply_color_matrix(
                    img[y0 - off_y:y1 - off_y, x0 - off_x:x1 - off_x], color)

        # 5. resize with a random interpolation
        interp = np.random.randint(0, 5)
        out = cv2.resize(crop, (width, height), interpolation=interp)
        label = tbbox.resize(label, (cw, ch), (width, height))

        # 6. horizontal flip (folded into the HWC -> CHW copy)
        flip_x = np.random.random_sample() >= 0.5
        if flip_x:
            label = tbbox.flip(label, (width, height), flip_x=True)
        return _to_tensor(out, flip_x), label.astype(np.float32)


class YOLO3DefaultValTransform:
    """YOLOv3 validation transform: resize to ``(width, height)`` and normalise.

    Resizing uses interpolation 9 (bicubic to enlarge, area to shrink, else bilinear) on the
    uint8 image, as GluonCV. Call ``transform(img, label)`` with ``img`` ``HxWx3`` uint8 RGB and
    ``label`` ``[N, 5+]``; returns a float32 tensor ``[3, height, width]`` and float32 label
    ``[N, 6]`` = xyxy in output pixels, class id, difficult (0 where the input has no 6th
    column).
    """

    def __init__(self, width: int, height: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self._width, self._height = int(width), int(height)
        self._mean, self._std = tuple(mean), tuple(std)
        self._norm = _normalizer(mean, std)

    def __call__(self, img: np.ndarray, label: np.ndarray):
        label = tbbox.check_label(label, f"{_HERE}:YOLO3DefaultValTransform")
        difficult = (label[:, 5:6] if label.shape[1] > 5
                     else np.zeros((len(label), 1), np.float32))
        label = np.concatenate([label[:, :5], difficult], axis=1)
        img, bbox = _resize_normalize(img, label, (self._width, self._height), self._norm)
        return img, bbox.astype(np.float32)
