"""Faster R-CNN train / validation transforms (GluonCV's ``presets.rcnn`` contracts, PyTorch
output).

Both take a dataset item ``(img, label)``: ``img`` an ``HxWx3`` uint8 RGB NumPy array, ``label``
a float ``[N, 5+]`` array (xmin, ymin, xmax, ymax in pixels, class id, then optional columns:
difficult, and the mix weight appended last by ``MixupDetection``). Images keep their aspect
ratio, so a batch needs padding: the network takes ``image_sizes`` for that.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np

from .. import bbox as tbbox
from .. import image as timage
from .yolo import IMAGENET_MEAN, IMAGENET_STD, _normalizer, _to_tensor

_HERE = __name__.replace(".", "/") + ".py"  # error messages name this file
__all__ = ["FasterRCNNDefaultTrainTransform", "FasterRCNNDefaultValTransform",
           "resize_short_within_size"]


def resize_short_within_size(height: int, width: int, short: int, max_size: int,
                             mult_base: int = 1) -> Tuple[int, int]:
    """GluonCV's ``resize_short_within`` output size ``(new_h, new_w)``: the shorter side
    becomes ``short`` unless the longer side would then exceed ``max_size``, in which case the
    longer side becomes ``floor(max_size / mult_base) * mult_base``; sides are rounded (NumPy,
    half to even) to multiples of ``mult_base``."""
    lo, hi = (height, width) if width > height else (width, height)
    scale = float(short) / float(lo)
    if np.round(scale * hi / mult_base) * mult_base > max_size:
        scale = float(np.floor(max_size / mult_base) * mult_base) / float(hi)
    return (int(np.round(height * scale / mult_base) * mult_base),
            int(np.round(width * scale / mult_base) * mult_base))


def _resize(img: np.ndarray, label: np.ndarray, short: int, max_size: int):
    h, w = img.shape[:2]
    nh, nw = resize_short_within_size(h, w, short, max_size)
    img = timage.imresize(img, nw, nh, interp=1)  # GluonCV: interp=1 (bilinear)
    return img, tbbox.resize(label, (w, h), (nw, nh))


class FasterRCNNDefaultTrainTransform:
    """Faster R-CNN training transform (GluonCV's): resize the shorter side to ``short``
    (keeping the aspect ratio, the longer side at most ``max_size``; bilinear), horizontal flip
    with probability ``flip_p``, ``/255``, minus ``mean``, divided by ``std``. No crop, no
    colour jitter (GluonCV's recipe).

    Args:
        short: shorter side, or ``(lo, hi)`` for a uniform random integer in ``[lo, hi]`` per
            image (GluonCV's multi-scale training).
        max_size: bound of the longer side (VOC 1000, COCO 1333 with ``short=800``).
        net: accepted for GluonCV signature compatibility and unused (gluon-bof computes RPN
            targets inside the network).
        mean, std: RGB normalisation (ImageNet's by default).
        flip_p: probability of the horizontal flip.
        mixup: the input label's last column is the mix weight (from ``MixupDetection``);
            otherwise the weight is 1.
        data_aug: False disables the flip (plain resize and normalisation).

    Call ``transform(img, label)``: returns a float32 tensor ``[3, H', W']`` and float32 label
    ``[N, 6]`` = xyxy in output pixels, class id, mix weight (``[0, 6]`` for no boxes).
    """

    def __init__(self, short: Union[int, Sequence[int]] = 600, max_size: int = 1000, net=None,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, flip_p: float = 0.5,
                 mixup: bool = False, data_aug: bool = True, **kwargs):
        del net, kwargs  # GluonCV compatibility only (box_norm, num_sample, ... are the net's)
        self._short = tuple(short) if isinstance(short, (list, tuple)) else int(short)
        self._max_size = int(max_size)
        self._mean, self._std = tuple(mean), tuple(std)
        self._flip_p = flip_p if data_aug else 0.0
        self._mixup = mixup
        self._norm = _normalizer(mean, std)

    def __call__(self, img: np.ndarray, label: np.ndarray):
        label = tbbox.check_label(label, f"{_HERE}:FasterRCNNDefaultTrainTransform")
        weight = label[:, -1:] if self._mixup else np.ones((len(label), 1), np.float32)
        label = np.concatenate([label[:, :5], weight], axis=1).astype(np.float32)
        if isinstance(self._short, tuple):
            short = int(np.random.randint(self._short[0], self._short[1] + 1))
        else:
            short = self._short
        img, label = _resize(img, label, short, self._max_size)
        h, w = img.shape[:2]
        flip_x = self._flip_p > 0 and bool(np.random.random_sample() >= 1.0 - self._flip_p)
        if flip_x:
            label = tbbox.flip(label, (w, h), flip_x=True)
        out = timage.apply_color_matrix(img, self._norm)
        return _to_tensor(out, flip_x), label.astype(np.float32)


class FasterRCNNDefaultValTransform:
    """Faster R-CNN validation transform: the train resize (no flip) and normalisation.

    Call ``transform(img, label)``: returns a float32 tensor ``[3, H', W']`` and float32 label
    ``[N, 6]`` = xyxy in output pixels, class id, difficult (0 where the input has no 6th
    column).

    With ``original_coords=True`` (evaluation in the original image's pixels, as GluonCV's
    eval script does with its ``im_scale``) it returns ``(img, label, scale)`` instead: ``label``
    left in the input image's pixels and ``scale`` float32 ``[2]`` = ``(H / H', W / W')``, the
    factors that map boxes predicted on the resized image back (GluonCV uses ``H / H'`` for both
    axes; the per-axis ratio is exact when rounding made them differ).
    """

    def __init__(self, short: int = 600, max_size: int = 1000, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, original_coords: bool = False):
        self._short = int(short[-1] if isinstance(short, (list, tuple)) else short)
        self._max_size = int(max_size)
        self._mean, self._std = tuple(mean), tuple(std)
        self._norm = _normalizer(mean, std)
        self._original_coords = original_coords

    def __call__(self, img: np.ndarray, label: np.ndarray):
        label = tbbox.check_label(label, f"{_HERE}:FasterRCNNDefaultValTransform")
        difficult = (label[:, 5:6] if label.shape[1] > 5
                     else np.zeros((len(label), 1), np.float32))
        label = np.concatenate([label[:, :5], difficult], axis=1).astype(np.float32)
        h, w = img.shape[:2]
        img, resized = _resize(img, label, self._short, self._max_size)
        img = _to_tensor(timage.apply_color_matrix(img, self._norm))
        if self._original_coords:
            scale = np.array([h / img.shape[-2], w / img.shape[-1]], np.float32)
            return img, label, scale
        return img, resized.astype(np.float32)
