"""Image transforms on NumPy ``HxWx3`` RGB arrays (uint8 or float32), OpenCV-backed.

Semantics follow GluonCV 0.10.5 (``gluoncv.data.transforms.image`` and
``experimental.image``); all randomness comes from NumPy's global RNG (``np.random``), which
the data loader seeds per worker. Box geometry that goes with these lives in ``bbox.py``.

Interpolation codes are OpenCV's (what MXNet passes to ``cv::resize``): 0 nearest,
1 bilinear, 2 bicubic, 3 area, 4 Lanczos, 9 = bicubic to enlarge / area to shrink /
bilinear otherwise, 10 = one of 0-4 at random.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["imresize", "get_interp", "random_expand", "random_flip", "random_color_distort",
           "sample_color_distort", "apply_color_matrix", "compose_color", "brightness_matrix",
           "contrast_matrix", "saturation_matrix", "hue_matrix"]

_GRAY = np.array([0.299, 0.587, 0.114])
_RGB2YIQ = np.array([[0.299, 0.587, 0.114],
                     [0.596, -0.274, -0.321],
                     [0.211, -0.523, 0.311]])
_YIQ2RGB = np.array([[1.0, 0.956, 0.621],
                     [1.0, -0.272, -0.647],
                     [1.0, -1.107, 1.705]])


def get_interp(interp: int, sizes: Sequence[int] = ()) -> int:
    """Resolve an interpolation code to 0-4; ``sizes = (old_h, old_w, new_h, new_w)`` for 9."""
    if interp == 9:
        if not sizes:
            return 2
        oh, ow, nh, nw = sizes
        if nh > oh and nw > ow:
            return cv2.INTER_CUBIC
        if nh < oh and nw < ow:
            return cv2.INTER_AREA
        return cv2.INTER_LINEAR
    if interp == 10:
        return int(np.random.randint(0, 5))
    if interp not in (0, 1, 2, 3, 4):
        raise ValueError(f"gluon_bof/data/transforms/image.py: unknown interpolation {interp}, "
                         "expected 0-4, 9 or 10")
    return interp


def imresize(src: np.ndarray, w: int, h: int, interp: int = 1) -> np.ndarray:
    """Resize an ``HxWxC`` image to ``h x w x C`` (same dtype) with an interpolation code."""
    code = get_interp(interp, (src.shape[0], src.shape[1], h, w))
    return cv2.resize(src, (int(w), int(h)), interpolation=code)


def random_expand(src: np.ndarray, max_ratio: float = 4, fill=0, keep_ratio: bool = True):
    """Place the image at a random offset on a canvas up to ``max_ratio`` times larger.

    Ratio ``r ~ U(1, max_ratio)`` (independently for y unless ``keep_ratio``); canvas
    ``(int(h r), int(w r))``; offsets uniform integers in ``[0, oh - h]``, ``[0, ow - w]``.
    ``fill`` is a scalar or one value per channel (cast to the image dtype, as GluonCV does).

    Returns:
        ``(canvas HxWxC same dtype, (off_x, off_y, new_width, new_height))``; shift boxes with
        ``bbox.translate(bbox, off_x, off_y)``.
    """
    h, w, c = src.shape
    if max_ratio <= 1:
        return src, (0, 0, w, h)
    ratio_x = np.random.uniform(1, max_ratio)
    ratio_y = ratio_x if keep_ratio else np.random.uniform(1, max_ratio)
    oh, ow = int(h * ratio_y), int(w * ratio_x)
    off_y = np.random.randint(0, oh - h + 1)
    off_x = np.random.randint(0, ow - w + 1)
    fill = np.asarray(fill, dtype=np.float64).reshape(-1)
    if fill.size not in (1, c):
        raise ValueError("gluon_bof/data/transforms/image.py:random_expand: fill has "
                         f"{fill.size} values for {c} channels")
    dst = np.empty((oh, ow, c), dtype=src.dtype)
    dst[...] = fill.astype(src.dtype)
    dst[off_y:off_y + h, off_x:off_x + w] = src
    return dst, (off_x, off_y, ow, oh)


def _coin(p: float) -> bool:
    """True with probability p; consumes one uniform exactly like np.random.choice([F, T], p)."""
    return bool(np.random.random_sample() >= 1.0 - p)


def random_flip(src: np.ndarray, px: float = 0, py: float = 0, copy: bool = False):
    """Flip vertically with probability ``py``, then horizontally with ``px``.

    Returns ``(image, (flip_x, flip_y))``; use ``bbox.flip(bbox, (w, h), flip_x, flip_y)``.
    """
    flip_y = _coin(py)
    flip_x = _coin(px)
    if flip_y:
        src = src[::-1]
    if flip_x:
        src = src[:, ::-1]
    if copy or flip_x or flip_y:
        src = np.ascontiguousarray(src)
    return src, (flip_x, flip_y)


# ---- colour distortion: each step is an affine map of (r, g, b), built as a 3x4 matrix -----
def _affine(linear: np.ndarray, offset=0.0) -> np.ndarray:
    m = np.zeros((3, 4))
    m[:, :3] = linear
    m[:, 3] = offset
    return m


def brightness_matrix(delta: float) -> np.ndarray:
    """``x + delta`` on every channel, as a 3x4 affine matrix."""
    return _affine(np.eye(3), delta)


def contrast_matrix(alpha: float) -> np.ndarray:
    """``alpha * x`` (GluonCV scales by alpha; it does not blend with the mean)."""
    return _affine(alpha * np.eye(3))


def saturation_matrix(alpha: float) -> np.ndarray:
    """``alpha * x + (1 - alpha) * gray``, gray = .299 r + .587 g + .114 b."""
    return _affine(alpha * np.eye(3) + (1 - alpha) * np.tile(_GRAY, (3, 1)))


def hue_matrix(alpha: float, hue_mode: str = "degrees") -> np.ndarray:
    """Rotate the (I, Q) chroma plane of YIQ by an angle ``theta``.

    ``hue_mode='degrees'``: ``theta = alpha * pi / 180`` (alpha degrees: the intended hue
    rotation). ``hue_mode='gluoncv'``: ``theta = alpha * pi`` (GluonCV's code, i.e. alpha
    in half-turns, so alpha ~ U(-18, 18) gives an effectively uniform random angle).
    """
    if hue_mode == "degrees":
        theta = np.deg2rad(alpha)
    elif hue_mode == "gluoncv":
        theta = alpha * np.pi
    else:
        raise ValueError("gluon_bof/data/transforms/image.py:hue_matrix: hue_mode must be "
                         f"'degrees' or 'gluoncv', got {hue_mode!r}")
    u, w = np.cos(theta), np.sin(theta)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, u, -w], [0.0, w, u]])
    return _affine(_YIQ2RGB @ rot @ _RGB2YIQ)


def compose_color(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Compose two 3x4 affine colour maps: apply ``first``, then ``second``."""
    return _affine(second[:, :3] @ first[:, :3], second[:, :3] @ first[:, 3] + second[:, 3])


def sample_color_distort(brightness_delta: float = 32, contrast_low: float = 0.5,
                         contrast_high: float = 1.5, saturation_low: float = 0.5,
                         saturation_high: float = 1.5, hue_delta: float = 18,
                         hue_mode: str = "degrees") -> np.ndarray:
    """Draw one random colour distortion (see ``random_color_distort``) as a 3x4 matrix."""
    rng = np.random
    m = _affine(np.eye(3))
    if rng.uniform(0, 1) > 0.5:
        delta = rng.uniform(-brightness_delta, brightness_delta)
        m = compose_color(m, brightness_matrix(delta))

    def contrast(m):
        if rng.uniform(0, 1) > 0.5:
            m = compose_color(m, contrast_matrix(rng.uniform(contrast_low, contrast_high)))
        return m

    def saturation(m):
        if rng.uniform(0, 1) > 0.5:
            m = compose_color(m, saturation_matrix(rng.uniform(saturation_low, saturation_high)))
        return m

    def hue(m):
        if rng.uniform(0, 1) > 0.5:
            m = compose_color(m, hue_matrix(rng.uniform(-hue_delta, hue_delta), hue_mode))
        return m

    if rng.randint(0, 2):
        return hue(saturation(contrast(m)))
    return contrast(hue(saturation(m)))


def apply_color_matrix(src: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 3x4 affine colour matrix to an ``HxWx3`` image; returns float32 (unclipped)."""
    src = np.ascontiguousarray(src, dtype=np.float32)
    if src.size == 0:
        return src.copy()
    return cv2.transform(src, np.asarray(m, dtype=np.float32))


def random_color_distort(src: np.ndarray, brightness_delta: float = 32,
                         contrast_low: float = 0.5, contrast_high: float = 1.5,
                         saturation_low: float = 0.5, saturation_high: float = 1.5,
                         hue_delta: float = 18, hue_mode: str = "degrees") -> np.ndarray:
    """Randomly distort colours of an ``HxWx3`` RGB image in [0, 255] (GluonCV's recipe).

    Steps, each drawn from ``np.random`` in this order (a step fires when U(0,1) > .5):

    1. brightness: ``x += d``, ``d ~ U(-brightness_delta, brightness_delta)``;
    2. with probability 1/2 the order [contrast, saturation, hue], else
       [saturation, hue, contrast], where
       contrast ``x *= a``, ``a ~ U(contrast_low, contrast_high)``;
       saturation ``x = a x + (1 - a) gray``, ``a ~ U(saturation_low, saturation_high)``,
       gray = .299 r + .587 g + .114 b;
       hue: rotate chroma in YIQ by ``alpha ~ U(-hue_delta, hue_delta)``, see ``hue_matrix``:
       ``hue_mode='degrees'`` (default) rotates by alpha degrees (the intended +-18 degrees);
       ``hue_mode='gluoncv'`` reproduces GluonCV's ``cos(alpha * pi)``, a rotation by alpha
       *radians* times pi, which makes the hue shift nearly uniform over the colour wheel.

    All steps are affine in (r, g, b), so they are composed into one 3x4 matrix and applied
    in a single pass. Returns float32 ``HxWx3``, not clipped (GluonCV does not clip either).
    """
    m = sample_color_distort(brightness_delta, contrast_low, contrast_high, saturation_low,
                             saturation_high, hue_delta, hue_mode)
    return apply_color_matrix(src, m)
