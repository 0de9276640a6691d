"""Mixup for detection datasets (GluonCV's ``gluoncv.data.mixup.detection.MixupDetection``).

Two images are placed at (0, 0) of a canvas of their maximum height and width and blended
(``lambda * img1 + (1 - lambda) * img2`` in float32, then truncated to uint8 like GluonCV's
``astype('uint8')``); their boxes are concatenated, keeping geometry, with a mix-weight column
appended: ``lambda`` for the first image's boxes and ``1 - lambda`` for the second's.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["MixupDetection", "FixedRatio", "PendingMix", "blend"]


class _GlobalNumpy:
    """Calls ``np.random.<name>`` at call time (picklable; uses each worker's own RNG state)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args):
        return getattr(np.random, self.name)(*args)

    def __repr__(self):
        return f"np.random.{self.name}"


class FixedRatio:
    """A mixup ratio sampler that always returns the same ratio (picklable; paper Table 1: 0.5)."""

    def __init__(self, ratio: float):
        self.ratio = float(ratio)

    def __call__(self, *args):
        return self.ratio

    def __repr__(self):
        return f"fixed({self.ratio})"


def _as_sampler(mixup: Callable | None) -> Callable | None:
    # A bound method of NumPy's global RandomState (np.random.beta) would be pickled into
    # DataLoader workers as a *copy* of the global state; look it up by name instead.
    if getattr(mixup, "__self__", None) is np.random.mtrand._rand:
        return _GlobalNumpy(mixup.__name__)
    return mixup


class MixupDetection(Dataset):
    """Detection dataset wrapper that mixes each image with a random partner.

    Args:
        dataset: yields ``(img, label)``, ``img`` ``HxWx3`` uint8 RGB, ``label`` float
            ``[N, 5+]`` (xyxy pixels, class id, optional columns such as difficult).
        mixup: ratio sampler called as ``mixup(*args)``, e.g. ``np.random.beta`` with args
            ``(1.5, 1.5)``; the ratio is clipped to [0, 1]. ``None`` disables mixup.
        *args: arguments of ``mixup``.
        preserve_shuffle: True (GluonCV): the partner is uniform over the *other* indices
            (``np.random``), the loader's order of first images is untouched. False: the partner
            is uniform over all indices (an image may be mixed with itself).

    Items: ``(img uint8 [max(h1,h2), max(w1,w2), 3], label float32 [N1 + N2, C + 1])``, where
    the last column is the mix weight; with a ratio >= 1 (or mixup off) the first item comes
    back unchanged with weight 1 and no partner is drawn. When the wrapped dataset's images are
    not decoded yet (``EncodedImage``, the device pipeline), the mixed image is a
    :class:`PendingMix` that the device blends.

    Construction: ``MixupDetection(ds, np.random.beta, 1.5, 1.5)`` (GluonCV's positional form),
    ``MixupDetection.beta(ds, alpha=1.5, beta=1.5)``, ``MixupDetection.fixed(ds, 0.5)``; switch
    with ``set_mixup(...)`` / ``set_mixup(None)`` (e.g. off for the last epochs; the on/off state
    is shared with running DataLoader workers, ``persistent_workers`` included).
    """

    def __init__(self, dataset, mixup: Callable | None = None, *args,
                 preserve_shuffle: bool = True):
        self._dataset = dataset
        self._preserve_shuffle = preserve_shuffle
        # on/off in shared memory: DataLoader workers that outlive an epoch (persistent_workers)
        # see the switch at once
        self._enabled = torch.zeros(1, dtype=torch.uint8).share_memory_()
        self._mixup, self._mixup_args = None, ()
        self.set_mixup(mixup, *args)

    @classmethod
    def beta(cls, dataset, alpha: float = 1.5, beta: float = 1.5, **kwargs) -> "MixupDetection":
        """Ratio ~ Beta(alpha, beta) (the paper's YOLOv3 setting is Beta(1.5, 1.5))."""
        return cls(dataset, _GlobalNumpy("beta"), alpha, beta, **kwargs)

    @classmethod
    def fixed(cls, dataset, ratio: float = 0.5, **kwargs) -> "MixupDetection":
        """Constant ratio (paper Table 1's fixed 0.5 blend)."""
        return cls(dataset, FixedRatio(ratio), **kwargs)

    def set_mixup(self, mixup: Callable | None = None, *args) -> None:
        """Set the ratio sampler ``mixup(*args)``; ``None`` disables mixup. Running DataLoader
        workers see mixup switched on or off at once; a different sampler reaches only workers
        started afterwards."""
        if mixup is not None:
            self._mixup, self._mixup_args = _as_sampler(mixup), args
        self._enabled[0] = mixup is not None

    @property
    def dataset(self):
        """The wrapped dataset."""
        return self._dataset

    @property
    def classes(self):
        """Class names of the wrapped dataset."""
        return self._dataset.classes

    def __len__(self) -> int:
        return len(self._dataset)

    def _partner(self, idx: int) -> int:
        n = len(self)
        if not self._preserve_shuffle or n < 2:
            return int(np.random.randint(0, n))
        # Same draw as GluonCV's np.random.choice(np.delete(np.arange(n), idx)), without O(n).
        j = int(np.random.randint(0, n - 1))
        return j + 1 if j >= idx % n else j

    def __getitem__(self, idx: int):
        img1, label1 = self._dataset[idx]
        label1 = np.asarray(label1, dtype=np.float32)
        lambd = 1.0
        if self._mixup is not None and self._enabled.item():
            lambd = float(max(0.0, min(1.0, self._mixup(*self._mixup_args))))
        if lambd >= 1:
            return img1, _append(label1, 1.0)

        img2, label2 = self._dataset[self._partner(idx)]
        y1 = _append(label1, lam := np.float32(lambd))
        y2 = _append(np.asarray(label2, dtype=np.float32), np.float32(1) - lam)
        if y1.shape[1] != y2.shape[1]:
            raise ValueError("gluon_bof/data/mixup.py: the two items' labels have different "
                             f"numbers of columns: {y1.shape[1] - 1} vs {y2.shape[1] - 1}")
        if isinstance(img1, np.ndarray) and isinstance(img2, np.ndarray):
            return blend(img1, img2, lam), np.concatenate([y1, y2])
        return PendingMix(img1, img2, lam), np.concatenate([y1, y2])


class PendingMix:
    """A mixed image not blended yet: the device pipeline decodes ``first`` and ``second`` (each
    an ``EncodedImage`` or an array) and blends them there exactly as :func:`blend`. ``shape`` is
    the mixed image's, ``(max height, max width, 3)``; ``lam`` the float32 ratio of ``first``."""

    __slots__ = ("first", "second", "lam", "shape")

    def __init__(self, first, second, lam: float):
        self.first, self.second, self.lam = first, second, np.float32(lam)
        self.shape = (max(first.shape[0], second.shape[0]), max(first.shape[1], second.shape[1]), 3)

    def blend(self) -> np.ndarray:
        """The mixed image on the CPU (decoding what is still encoded)."""
        decode = (lambda im: im if isinstance(im, np.ndarray) else im.decode())
        return blend(decode(self.first), decode(self.second), self.lam)


_ROWS = 32  # rows blended at a time: the float32 temporaries stay in cache


def blend(img1: np.ndarray, img2: np.ndarray, lam: float) -> np.ndarray:
    """GluonCV's mixed image: both images at (0, 0) of a zero float32 canvas of their maximum height
    and width, ``canvas[img1] = img1 * lam``, ``canvas[img2] += img2 * (1 - lam)``, truncated to
    uint8. Where only one image (or none) lies, that is ``uint8(img * w)`` (or 0); the float32
    products and sum are those of GluonCV's NDArray code, element for element, so the result is
    bit-identical, without building the float canvas: the overlap is blended a few rows at a time
    in small float32 buffers (a whole-image float canvas made the blend memory-bound, 3-4x slower)."""
    lam = np.float32(lam)
    rest = np.float32(1) - lam
    h1, w1 = img1.shape[:2]
    h2, w2 = img2.shape[:2]
    oh, ow = min(h1, h2), min(w1, w2)
    out = np.empty((max(h1, h2), max(w1, w2), 3), np.uint8)
    buf1 = np.empty((min(_ROWS, oh), ow, 3), np.float32)
    buf2 = np.empty_like(buf1)
    for r in range(0, oh, _ROWS):
        n = min(_ROWS, oh - r)
        a, b = buf1[:n], buf2[:n]
        np.multiply(img1[r:r + n, :ow], lam, out=a, dtype=np.float32)
        np.multiply(img2[r:r + n, :ow], rest, out=b, dtype=np.float32)
        np.add(a, b, out=a)
        out[r:r + n, :ow] = a  # float -> uint8 assignment truncates (values lie in [0, 255])
    for img, h, w, weight in ((img1, h1, w1, lam), (img2, h2, w2, rest)):
        if w > ow:  # right of the overlap
            out[:h, ow:w] = np.multiply(img[:, ow:], weight, dtype=np.float32)
        if h > oh:  # below the overlap
            out[oh:h, :ow] = np.multiply(img[oh:, :ow], weight, dtype=np.float32)
    if (h1 - h2) * (w1 - w2) < 0:  # one image taller, the other wider: a corner neither covers
        out[oh:, ow:] = 0
    return out


def _append(label: np.ndarray, weight: float) -> np.ndarray:
    label = label.reshape(len(label), -1) if label.size else label.reshape(0, max(
        label.shape[-1] if label.ndim == 2 else 0, 5))
    col = np.full((len(label), 1), weight, dtype=np.float32)
    return np.concatenate([label, col], axis=1)
