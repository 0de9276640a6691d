"""YOLOv3 train / validation transforms (GluonCV's ``presets.yolo`` contracts, PyTorch output).

Both take a dataset item ``(img, label)``: ``img`` an ``HxWx3`` uint8 RGB NumPy array, ``label``
a float ``[N, 5+]`` array (xmin, ymin, xmax, ymax in pixels, class id, then optional columns:
difficult, and the mix weight appended last by ``MixupDetection``).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple

import cv2
import numpy as np
import torch

from .. import bbox as tbbox
from .. import image as timage
from .. import resample

_HERE = __name__.replace(".", "/") + ".py"  # error messages name this file
__all__ = ["YOLO3DefaultTrainTransform", "YOLO3DefaultValTransform", "YOLO3Augmentation", "render"]

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
    """``HxWx3`` float32 -> contiguous ``[3, H, W]`` tensor (optionally mirrored): OpenCV splits
    the channels straight into the tensor's planes (faster than a strided NumPy transpose)."""
    out = torch.empty((3,) + img.shape[:2], dtype=torch.float32)
    if img.size == 0:
        return out
    planes = list(out.numpy())
    cv2.split(np.ascontiguousarray(img, dtype=np.float32), planes)
    if flip_x:
        for p in planes:
            cv2.flip(p, 1, p)
    return out


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

    def _size(self, size) -> tuple[int, int]:
        if size is None:
            return self._width, self._height
        return (size, size) if isinstance(size, int) else tuple(int(v) for v in size)

    def draw(self, height: int, width: int, label: np.ndarray, size: Sequence[int] | None = None):
        """Draws one call's augmentation for an image of ``height x width`` from ``np.random``
        (exactly the draws ``__call__`` makes) without touching pixels.

        Returns ``(aug, label)``: a :class:`YOLO3Augmentation` and the label transformed as the
        call returns it (float32 ``[N', 6]``: xyxy in output pixels, class id, mix weight).
        Only with ``data_aug``; the device path (``gluon_bof.data.device_augment``) renders
        ``aug`` from the encoded image, the CPU path (``__call__``) with :func:`render`.
        """
        if not self._data_aug:
            raise ValueError(f"{_HERE}:YOLO3DefaultTrainTransform.draw: needs data_aug=True")
        out_w, out_h = self._size(size)
        label = self._with_weight(tbbox.check_label(label, f"{_HERE}:YOLO3DefaultTrainTransform"))
        h, w = int(height), int(width)

        # 1. colour distortion, composed with the final normalisation (applied by render)
        color = timage.compose_color(timage.sample_color_distort(hue_mode=self._hue_mode),
                                     self._norm)

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

        # 4. resize with a random interpolation
        interp = int(np.random.randint(0, 5))
        label = tbbox.resize(label, (cw, ch), (out_w, out_h))

        # 5. horizontal flip
        flip_x = bool(np.random.random_sample() >= 0.5)
        if flip_x:
            label = tbbox.flip(label, (out_w, out_h), flip_x=True)
        aug = YOLO3Augmentation(color, (int(off_x), int(off_y)), (int(cx), int(cy), int(cw), int(ch)),
                                interp, flip_x, (out_w, out_h))
        return aug, label.astype(np.float32)

    def __call__(self, img: np.ndarray, label: np.ndarray, size: Sequence[int] | None = None):
        if not self._data_aug:
            label = self._with_weight(tbbox.check_label(label, f"{_HERE}:YOLO3DefaultTrainTransform"))
            return _resize_normalize(img, label, self._size(size), self._norm)
        aug, label = self.draw(img.shape[0], img.shape[1], label, size)
        return render(img, aug), label


class YOLO3Augmentation(NamedTuple):
    """One :class:`YOLO3DefaultTrainTransform` call's random augmentation, in the order applied.

    ``color``: 3x4 affine map from raw RGB in [0, 255] to the network's input (the colour
    distortion followed by the normalisation). ``offset``: ``(x, y)`` of the image on the
    expansion canvas (``(0, 0)`` without expansion; the canvas is filled with the mean, which
    normalises to 0). ``crop``: ``(x, y, width, height)`` on that canvas. ``interp``: OpenCV
    interpolation code 0-4 of the resize to ``size = (width, height)``. ``flip``: mirror the
    result horizontally."""
    color: np.ndarray
    offset: Tuple[int, int]
    crop: Tuple[int, int, int, int]
    interp: int
    flip: bool
    size: Tuple[int, int]


# When the crop holds expansion fill, the resize reads a canvas that is mostly zeros. For
# nearest, area and Lanczos, OpenCV's generic code (the one ``resample`` mirrors to float32
# rounding; OpenCV's IPP path is only taken for bilinear and bicubic) then costs more than the
# same weights applied to the image alone, once the canvas is this many times the output.
_SPARSE_FROM = {0: 5.0, 3: 2.0, 4: 2.0}


def render(img: np.ndarray, aug: YOLO3Augmentation) -> torch.Tensor:
    """Applies a drawn augmentation to an ``HxWx3`` uint8 RGB image on the CPU: float32 ``[3, H,
    W]`` tensor, ``(H, W) = aug.size`` reversed.

    Colour and normalisation are one OpenCV pass over the part of the image that survives the
    crop; the expansion fill, which normalises to 0, is zero around it. The resize runs on those
    float32 pixels (GluonCV resizes the float colour-distorted image): ``cv2.resize`` on the
    crop, or, when the crop is a large, mostly-fill canvas, OpenCV's own weight tables applied
    to the image part alone (``resample.resize_embedded``: the same sums to float32 rounding).
    The flip is folded into the HWC -> CHW split (or into the column weights)."""
    h, w = img.shape[:2]
    off_x, off_y = aug.offset
    cx, cy, cw, ch = aug.crop
    x0, y0 = max(cx, off_x), max(cy, off_y)
    x1, y1 = min(cx + cw, off_x + w), min(cy + ch, off_y + h)
    part = img[y0 - off_y:max(y1, y0) - off_y, x0 - off_x:max(x1, x0) - off_x]
    if (x0, y0, x1, y1) == (cx, cy, cx + cw, cy + ch):
        crop = timage.apply_color_matrix(part, aug.color)
    elif cw * ch > _SPARSE_FROM.get(aug.interp, np.inf) * aug.size[0] * aug.size[1]:
        out = resample.resize_embedded(timage.apply_color_matrix(part, aug.color),
                                       (x0 - cx, y0 - cy), (ch, cw), aug.size[::-1], aug.interp,
                                       flip=aug.flip)
        return _to_tensor(out)
    else:
        crop = np.zeros((ch, cw, 3), np.float32)
        if part.size:
            crop[y0 - cy:y1 - cy, x0 - cx:x1 - cx] = timage.apply_color_matrix(part, aug.color)
    return _to_tensor(cv2.resize(crop, aug.size, interpolation=aug.interp), aug.flip)


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
