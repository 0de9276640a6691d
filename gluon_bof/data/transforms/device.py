"""The YOLOv3 training pipeline with the pixel work on the device (``--gpu-augment``).

For when CPU workers cannot feed the accelerator. The workers read image files without decoding
them (:func:`~gluon_bof.data.base.read_encoded`), draw every sample's mixup partner and ratio and
its augmentation with exactly the ``np.random`` draws of the CPU pipeline (so labels, crops and
flips are the same for the same seeds), and turn the crop + resize into two small weight tables
(:mod:`..resample`). :func:`render_batch` then, on the device: decodes the JPEGs
(``torchvision.io.decode_jpeg``: nvjpeg on CUDA, libjpeg-turbo on the CPU), blends mixed pairs
(float32, truncated: :func:`~gluon_bof.data.mixup.blend`'s arithmetic), resizes the crop of the
expanded canvas as two matrix products (the canvas, mostly fill, is never built), and applies
the colour jitter, normalisation and flip.

Compared with the CPU pipeline (``YOLO3DefaultTrainTransform`` on decoded images): the same up to
float32 rounding on the CPU (the resize's sums and the colour map run in another order; for
bilinear and bicubic the CPU pipeline's OpenCV may use IPP, whose coefficients differ by up to
~4e-5 of the pixel range); on CUDA nvjpeg's IDCT and chroma upsampling differ from
libjpeg-turbo's by a few levels on some pixels, which the tests bound separately.

Use::

    loader, sampler, mixup_set = build.yolo3_train_loader(..., device_augment=True, device=device)
    for batch in loader:  # TrainBatch, images and labels already on ``device``
        ...
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from ..base import EncodedImage, read_encoded
from ..loader import TrainBatch, pad_labels
from ..mixup import PendingMix
from . import resample
from .presets.yolo import YOLO3DefaultTrainTransform

__all__ = ["EncodedDataset", "DeviceSample", "YOLO3DeviceTrainTransform", "DeviceBatch",
           "device_collate", "render_batch", "DeviceAugmentLoader"]


def _resolve(dataset, idx: int):
    """``(dataset, index)`` of item ``idx`` under ``torch.utils.data.Subset`` layers."""
    while hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
        dataset, idx = dataset.dataset, dataset.indices[idx]
    return dataset, idx


class EncodedDataset(torch.utils.data.Dataset):
    """A detection dataset (``VOCDetection``, ``COCODetection``, a ``Subset`` of one) whose items
    are ``(read_encoded(image_path(i)), label(i))``: the image file read, not decoded."""

    def __init__(self, dataset):
        base, _ = _resolve(dataset, 0) if len(dataset) else (dataset, 0)
        if not (hasattr(base, "image_path") and hasattr(base, "label")):
            raise TypeError(f"device augmentation reads image files itself: {type(base).__name__} "
                            "has no image_path(idx) / label(idx) (VOCDetection and COCODetection do)")
        self.dataset = dataset

    @property
    def classes(self):
        return self.dataset.classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int):
        base, i = _resolve(self.dataset, idx)
        return read_encoded(base.image_path(i)), base.label(i)


class DeviceSample(NamedTuple):
    """One sample for :func:`render_batch`: ``image`` (``EncodedImage``, ``HxWx3`` uint8 array or
    ``PendingMix`` of those), ``color`` the 3x4 colour + normalisation map, ``rows``/``cols`` the
    resize's tables in the image's own pixels (weight 0 where the crop reads expansion fill; the
    flip folded into ``cols``), ``size`` ``(width, height)``."""
    image: object
    color: np.ndarray
    rows: resample.Taps
    cols: resample.Taps
    size: Tuple[int, int]


def _image_taps(taps: resample.Taps, shift: int, length: int) -> resample.Taps:
    """Crop-coordinate taps -> the image's coordinates (``image = crop + shift``), weight 0 off
    it. Taps that border replication made repeat an index are summed into the first of them, so
    every index of a row carries one weight (the device's scatter then sums nothing but zeros:
    the same result in any order)."""
    idx = taps.index + shift
    weight = np.where((idx >= 0) & (idx < length), taps.weight, 0).astype(np.float32)
    idx = np.clip(idx, 0, length - 1)
    k = np.arange(idx.shape[1])
    new = np.ones(idx.shape, bool)
    new[:, 1:] = idx[:, 1:] != idx[:, :-1]  # a row's indices never decrease
    first = np.maximum.accumulate(np.where(new, k, 0), axis=1)
    summed = np.zeros(weight.shape, np.float64)
    np.add.at(summed, (np.arange(idx.shape[0])[:, None], first), weight)
    return resample.Taps(idx, summed.astype(np.float32))


class YOLO3DeviceTrainTransform:
    """Worker half of the device pipeline: ``(image, label, size=None) -> (DeviceSample, label)``
    with ``image`` not decoded (its ``shape`` is all it needs). The draws and the label are those
    of ``transform`` (a :class:`YOLO3DefaultTrainTransform` with ``data_aug``) for the same
    ``np.random`` state."""

    def __init__(self, transform: YOLO3DefaultTrainTransform):
        if not transform._data_aug:
            raise ValueError("device augmentation renders the augmented pipeline; without data "
                             "augmentation (a plain resize) use the CPU pipeline")
        self.transform = transform

    def __call__(self, img, label, size: Optional[Sequence[int]] = None):
        h, w = img.shape[:2]
        aug, label = self.transform.draw(h, w, label, size)
        cx, cy, cw, ch = aug.crop
        rows, cols = resample.resize_tables((ch, cw), aug.size[::-1], aug.interp)
        rows = _image_taps(rows, cy - aug.offset[1], h)
        cols = _image_taps(cols, cx - aug.offset[0], w)
        if aug.flip:
            cols = resample.Taps(cols.index[::-1].copy(), cols.weight[::-1].copy())
        return DeviceSample(img, aug.color.astype(np.float32), rows, cols, aug.size), label


def _source(img) -> torch.Tensor:
    """An image for the trip to the device: JPEG bytes (1-D) or ``[h, w, 3]`` uint8 pixels."""
    return torch.from_numpy(img.data if isinstance(img, EncodedImage) else np.ascontiguousarray(img))


def _stack_taps(taps: List[resample.Taps]) -> Tuple[torch.Tensor, torch.Tensor]:
    k = max(t.index.shape[1] for t in taps)
    idx = np.zeros((len(taps), taps[0].index.shape[0], k), np.int64)
    w = np.zeros(idx.shape, np.float32)
    for i, t in enumerate(taps):
        idx[i, :, :t.index.shape[1]], w[i, :, :t.index.shape[1]] = t.index, t.weight
    return torch.from_numpy(idx), torch.from_numpy(w)


class DeviceBatch:
    """A batch of :class:`DeviceSample` items packed for the device: ``sources`` (per sample, one
    or two tensors: JPEG bytes or uint8 pixels), ``lams`` float32 ``[B]`` (the first source's mix
    ratio, 1 without a partner), ``shapes`` int64 ``[B, 3, 2]`` (mixed image, first, second
    ``(h, w)``), ``color`` ``[B, 3, 4]``, the resize tables ``rows_*`` ``[B, H, K]`` /
    ``cols_*`` ``[B, W, K]`` and ``labels`` ``[B, M, 6]`` (padded with -1)."""

    def __init__(self, sources, lams, shapes, color, rows_idx, rows_w, cols_idx, cols_w, labels):
        self.sources, self.lams, self.shapes, self.color = sources, lams, shapes, color
        self.rows_idx, self.rows_w, self.cols_idx, self.cols_w = rows_idx, rows_w, cols_idx, cols_w
        self.labels = labels

    def __len__(self) -> int:
        return len(self.sources)

    def pin_memory(self) -> "DeviceBatch":
        """Page-locked copies (the DataLoader's ``pin_memory`` calls this)."""
        pin = (lambda t: t.pin_memory())
        return DeviceBatch([[pin(s) for s in srcs] for srcs in self.sources],
                           *(pin(t) for t in (self.lams, self.shapes, self.color, self.rows_idx,
                                              self.rows_w, self.cols_idx, self.cols_w, self.labels)))


def device_collate(batch: List[Tuple[DeviceSample, np.ndarray]]) -> DeviceBatch:
    """Collates ``(DeviceSample, label)`` pairs of one output size into a :class:`DeviceBatch`."""
    sizes = {s.size for s, _ in batch}
    if len(sizes) != 1:
        raise ValueError(f"device.py: one output size per batch, got {sorted(sizes)}")
    sources, lams, shapes = [], [], []
    for s, _ in batch:
        img = s.image
        if isinstance(img, PendingMix):
            sources.append([_source(img.first), _source(img.second)])
            lams.append(img.lam)
            shapes.append([img.shape[:2], img.first.shape[:2], img.second.shape[:2]])
        else:
            sources.append([_source(img)])
            lams.append(1.0)
            shapes.append([img.shape[:2], img.shape[:2], (0, 0)])
    rows_idx, rows_w = _stack_taps([s.rows for s, _ in batch])
    cols_idx, cols_w = _stack_taps([s.cols for s, _ in batch])
    color = torch.from_numpy(np.stack([s.color for s, _ in batch]).astype(np.float32))
    return DeviceBatch(sources, torch.tensor(np.asarray(lams, np.float32)),
                       torch.tensor(shapes, dtype=torch.int64), color, rows_idx, rows_w, cols_idx,
                       cols_w, pad_labels([lab for _, lab in batch]))


@contextmanager
def _full_float32():
    """Matrix products in full float32 (no TF32 on CUDA) while resampling pixels."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.set_float32_matmul_precision(precision)


def _decode(batch: DeviceBatch, device: torch.device) -> List[List[torch.Tensor]]:
    """Every source as a ``[3, h, w]`` uint8 tensor on ``device``; JPEGs decoded there."""
    from torchvision.io import ImageReadMode, decode_jpeg

    jpegs = [s for srcs in batch.sources for s in srcs if s.dim() == 1]
    decoded = iter(decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device) if jpegs else [])
    return [[next(decoded) if s.dim() == 1 else s.to(device, non_blocking=True).permute(2, 0, 1)
             for s in srcs] for srcs in batch.sources]


def render_batch(batch: DeviceBatch, device) -> TrainBatch:
    """The device half: ``TrainBatch(images [B, 3, H, W] float32, labels [B, M, 6])`` on
    ``device``, equal to the CPU pipeline's batch for the same draws (see the module docstring)."""
    device = torch.device(device)
    images = _decode(batch, device)
    shapes = batch.shapes.tolist()
    hmax = max(s[0][0] for s in shapes)
    wmax = max(s[0][1] for s in shapes)
    canvas = torch.zeros((len(images), 3, hmax, wmax), dtype=torch.float32, device=device)
    lams = batch.lams.to(device, non_blocking=True)
    for b, (parts, ((h, w), (h1, w1), (h2, w2))) in enumerate(zip(images, shapes)):
        if len(parts) == 1:
            canvas[b, :, :h1, :w1] = parts[0]
            continue
        lam = lams[b]  # float32 products and sum, then truncation: mixup.blend's arithmetic
        canvas[b, :, :h1, :w1] = parts[0].float() * lam
        canvas[b, :, :h2, :w2] += parts[1].float() * (1 - lam)
        canvas[b, :, :h, :w].floor_()
    rows_idx, cols_idx = batch.rows_idx.to(device), batch.cols_idx.to(device)
    out_h, out_w = rows_idx.shape[1], cols_idx.shape[1]
    wy = torch.zeros((len(images), out_h, hmax), device=device).scatter_add_(
        2, rows_idx, batch.rows_w.to(device))
    wx = torch.zeros((len(images), out_w, wmax), device=device).scatter_add_(
        2, cols_idx, batch.cols_w.to(device))
    color = batch.color.to(device)
    coverage = wy.sum(2)[:, :, None] * wx.sum(2)[:, None, :]  # 1 on the image, 0 on the fill
    with _full_float32():
        pixels = torch.matmul(torch.matmul(wy[:, None], canvas), wx.transpose(1, 2)[:, None])
        out = (torch.einsum("bij,bjhw->bihw", color[:, :, :3], pixels)
               + color[:, :, 3, None, None] * coverage[:, None])
    return TrainBatch(out.contiguous(), batch.labels.to(device, non_blocking=True))


class DeviceAugmentLoader:
    """Wraps a DataLoader of :class:`DeviceBatch` (``build.yolo3_train_loader(...,
    device_augment=True)``): iterating yields :func:`render_batch`'s ``TrainBatch`` on
    ``device``; ``len()`` and the other attributes are the loader's."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, torch.device(device)

    def __iter__(self):
        for batch in self.loader:
            yield render_batch(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):
        if name in ("loader", "device"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)
