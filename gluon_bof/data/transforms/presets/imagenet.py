"""ImageNet classification transforms: the Bag of Tricks baseline (He et al., 2019, Section 3.1).

Both presets take an ``HxWx3`` uint8 RGB NumPy array (or a ``[3, H, W]`` uint8 tensor) and return
a float32 ``[3, S, S]`` tensor, ImageNet mean/std normalised, ``S = input_size``.

Training (the paper's steps 2-6; GluonCV ``train_imagenet.py``'s ``transform_train``):

1. random resized crop: area ``U(8%, 100%)`` of the image, aspect ratio ``U(3/4, 4/3)`` on a log
   scale (torchvision's ``RandomResizedCrop``; GluonCV's and the paper's), resized to S x S;
2. horizontal flip with probability 0.5;
3. colour: ``jitter_mode='paper'`` scales brightness, saturation and hue with coefficients
   ``U(1 - jitter, 1 + jitter) = U(0.6, 1.4)`` ("scale hue, saturation, and brightness with
   coefficients uniformly drawn from [0.6, 1.4]"; the hue angle is multiplied, modulo one turn:
   our literal reading); ``'gluoncv'`` is GluonCV's ``RandomColorJitter(brightness=0.4,
   contrast=0.4, saturation=0.4)``: contrast instead of hue. Both apply the factors in random order;
4. PCA lighting noise: ``rgb += V (alpha * lambda)``, ``alpha ~ N(0, 0.1)``, with ImageNet's
   eigenvalues ``lambda`` and eigenvectors ``V`` (GluonCV's values, on the 0-255 scale);
5. normalise with ImageNet's mean and std.

Validation: resize the shorter side to ``ceil(S / crop_ratio)`` (256 for 224 and 0.875, GluonCV's
``resize``), centre-crop S x S, normalise.

Randomness comes from torch's global generator (seed it per sample for reproducible streams, as
:class:`gluon_bof.data.classification.SeededTransformDataset` does).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2

__all__ = ["ImageNetTrainTransform", "ImageNetValTransform", "RandomLighting", "RandomHueScale",
           "IMAGENET_MEAN", "IMAGENET_STD", "IMAGENET_EIGVAL", "IMAGENET_EIGVEC", "JITTER_MODES"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_EIGVAL = (55.46, 4.794, 1.148)  # GluonCV's random_pca_lighting defaults (0-255 scale)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))
JITTER_MODES = ("paper", "gluoncv")


def _as_tensor(img) -> torch.Tensor:
    """``HxWx3`` uint8 NumPy array -> ``[3, H, W]`` uint8 tensor (tensors pass through)."""
    if isinstance(img, torch.Tensor):
        return img
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"imagenet.py: expected an HxWx3 RGB image, got shape {img.shape}")
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class RandomLighting(nn.Module):
    """AlexNet-style PCA lighting noise on a float ``[3, H, W]`` image in [0, 1]:
    ``img + V (alpha * lambda) / 255`` with ``alpha ~ N(0, alphastd)`` per image (GluonCV adds
    ``V (alpha * lambda)`` to the 0-255 image)."""

    def __init__(self, alphastd: float = 0.1, eigval: Sequence[float] = IMAGENET_EIGVAL,
                 eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC):
        super().__init__()
        self.alphastd = float(alphastd)
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.alphastd <= 0:
            return img
        alpha = torch.randn(3) * self.alphastd
        rgb = self.eigvec @ (alpha * self.eigval)  # [3]: rgb_c = sum_j V[c, j] alpha_j lambda_j
        return img + (rgb / 255.0).to(img.dtype)[:, None, None]


def _rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(0)
    maxc, minc = img.max(0).values, img.min(0).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, ((g - b) / safe) % 6,
                    torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)),
                    torch.zeros_like(maxc))
    return torch.stack([h, s, maxc])


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv.unbind(0)
    i = torch.floor(h * 6)
    f = h * 6 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = torch.stack([torch.stack(c) for c in ((v, q, p, p, t, v), (t, v, v, q, p, p),
                                                  (p, p, t, v, v, q))])  # [3, 6, H, W]
    return table.gather(1, i[None, None].expand(3, 1, *i.shape)).squeeze(1)


class RandomHueScale(nn.Module):
    """Multiplies the hue angle of a float ``[3, H, W]`` image in [0, 1] by ``U(1 - s, 1 + s)``,
    modulo one turn (the paper's "scale hue"); grey pixels are unchanged."""

    def __init__(self, scale: float = 0.4):
        super().__init__()
        self.scale = float(scale)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.scale <= 0:
            return img
        factor = 1.0 + (torch.rand(()).item() * 2 - 1) * self.scale
        hsv = _rgb_to_hsv(img)
        hsv[0] = (hsv[0] * factor) % 1.0
        return _hsv_to_rgb(hsv)


class ImageNetTrainTransform:
    """Bag of Tricks training augmentation (see the module docstring); ``t(img) -> [3, S, S]``.

    Args:
        input_size: output side S (224).
        area: crop area range as fractions of the image (0.08, 1).
        ratio: crop aspect ratio range (3/4, 4/3).
        jitter: colour coefficients ``U(1 - jitter, 1 + jitter)`` (0.4); 0 disables.
        jitter_mode: 'paper' (brightness, saturation, hue) or 'gluoncv' (brightness, contrast,
            saturation).
        lighting: PCA noise std (0.1); 0 disables.
        mean, std: normalisation (ImageNet's).
    """

    def __init__(self, input_size: int = 224, area: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), jitter: float = 0.4,
                 jitter_mode: str = "paper", lighting: float = 0.1,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if jitter_mode not in JITTER_MODES:
            raise ValueError(f"imagenet.py: jitter_mode must be one of {JITTER_MODES}, got {jitter_mode!r}")
        steps = [v2.RandomResizedCrop(input_size, scale=tuple(area), ratio=tuple(ratio), antialias=True),
                 v2.RandomHorizontalFlip(0.5), v2.ToDtype(torch.float32, scale=True)]
        if jitter > 0:
            if jitter_mode == "paper":
                steps.append(v2.RandomOrder([v2.ColorJitter(brightness=jitter), v2.ColorJitter(saturation=jitter),
                                             RandomHueScale(jitter)]))
            else:
                steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
        steps += [RandomLighting(lighting), v2.Normalize(mean, std)]
        self.transform = v2.Compose(steps)

    def __call__(self, img) -> torch.Tensor:
        return self.transform(_as_tensor(img))


class ImageNetValTransform:
    """Resize the shorter side to ``ceil(input_size / crop_ratio)``, centre-crop ``input_size``,
    normalise; ``t(img) -> [3, S, S]``."""

    def __init__(self, input_size: int = 224, crop_ratio: float = 0.875,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if not 0 < crop_ratio <= 1:
            raise ValueError(f"imagenet.py: crop_ratio must be in (0, 1], got {crop_ratio}")
        self.resize = int(math.ceil(input_size / crop_ratio))
        self.transform = v2.Compose([v2.Resize(self.resize, antialias=True), v2.CenterCrop(input_size),
                                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    def __call__(self, img) -> torch.Tensor:
        return self.transform(_as_tensor(img))
