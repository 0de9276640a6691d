"""OpenCV's ``cv2.resize`` of float32 images as explicit separable weight tables.

``cv2.resize`` with INTER_NEAREST, INTER_LINEAR, INTER_CUBIC, INTER_AREA or INTER_LANCZOS4 on a
float32 image is separable: ``out[c] = Wy @ img[c] @ Wx.T`` with one table per axis, each output
pixel a weighted sum of at most K input pixels (1, 2, 4, 8 taps; INTER_AREA when shrinking: the
pixels its cell covers). :func:`resize_tables` rebuilds those tables from OpenCV's generic code
(the coordinate map, border replication, interpolation kernels, the INTER_AREA box weights and
the rules that switch between them), so that the same resize can be computed

* on part of an image: the YOLO crop of an expanded canvas is mostly fill that normalises to 0;
  :func:`resize_embedded` resizes only the image inside it, never building the canvas;
* on the device, for a whole batch (``gluon_bof.data.device_augment``).

Both agree with ``cv2.resize`` on the materialised canvas up to float32 rounding (the sums run in
another order): the tests assert it on random cases. For INTER_LINEAR and INTER_CUBIC, OpenCV
builds with IPP (the pip wheels) compute float32 resizes with IPP's own coefficients, which differ
from OpenCV's generic code by up to ~3e-5 of the pixel range (``cv2.ipp.setUseIPP(False)``
shows it); that is the size of the differences there.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Tuple

import cv2
import numpy as np
import torch

__all__ = ["Taps", "resize_tables", "resize_embedded"]

_F32 = np.float32


class Taps(NamedTuple):
    """One axis of a resize: output ``i`` is ``sum_k weight[i, k] * input[index[i, k]]``.
    ``index`` int64 ``[out, K]`` (clamped to the input, i.e. border replication), ``weight``
    float32 ``[out, K]`` (zero where a row has fewer than K taps)."""
    index: np.ndarray
    weight: np.ndarray


def _nearest(n_in: int, n_out: int) -> Taps:
    ifx = 1.0 / (n_out / n_in)  # OpenCV: ifx = 1. / inv_scale, inv_scale = dsize / ssize
    idx = np.minimum(np.floor(np.arange(n_out) * ifx).astype(np.int64), n_in - 1)
    return Taps(idx[:, None], np.ones((n_out, 1), _F32))


def _area(n_in: int, n_out: int, scale: float) -> Taps:
    """OpenCV's ``computeResizeAreaTab``: box weights of the input cells each output cell covers
    (a partial cell on the left, whole cells, a partial cell on the right, in that order)."""
    fsx1 = np.arange(n_out, dtype=np.float64) * scale
    fsx2 = fsx1 + scale
    cell = np.minimum(scale, n_in - fsx1)
    sx2 = np.minimum(np.floor(fsx2).astype(np.int64), n_in - 1)
    sx1 = np.minimum(np.ceil(fsx1).astype(np.int64), sx2)
    left = (sx1 - fsx1) > 1e-3
    right = (fsx2 - sx2) > 1e-3
    n_full = int((sx2 - sx1).max(initial=0))
    full = sx1[:, None] + np.arange(n_full)
    idx = np.concatenate([(sx1 - 1)[:, None], full, sx2[:, None]], axis=1)
    w = np.concatenate([
        np.where(left, (sx1 - fsx1) / cell, 0)[:, None],
        np.where(full < sx2[:, None], 1.0 / cell[:, None], 0),
        np.where(right, np.minimum(np.minimum(fsx2 - sx2, 1.0), cell) / cell, 0)[:, None]],
        axis=1).astype(_F32)
    return Taps(np.clip(idx, 0, n_in - 1), w)


def _cubic(x: np.ndarray) -> np.ndarray:
    a = _F32(-0.75)
    one = _F32(1)
    c0 = ((a * (x + one) - _F32(5) * a) * (x + one) + _F32(8) * a) * (x + one) - _F32(4) * a
    c1 = ((a + _F32(2)) * x - (a + _F32(3))) * x * x + one
    c2 = ((a + _F32(2)) * (one - x) - (a + _F32(3))) * (one - x) * (one - x) + one
    return np.stack([c0, c1, c2, one - c0 - c1 - c2], axis=1).astype(_F32)


def _lanczos4(x: np.ndarray) -> np.ndarray:
    s45 = 0.70710678118654752440084436210485
    cs = np.array([[1, 0], [-s45, -s45], [0, 1], [s45, -s45], [-1, 0], [s45, s45], [0, -1],
                   [-s45, s45]])
    x64 = x.astype(np.float64)[:, None]
    y0 = -(x64 + 3) * math.pi * 0.25
    s0, c0 = np.sin(y0), np.cos(y0)
    y = -(x64 + 3 - np.arange(8)) * math.pi * 0.25
    with np.errstate(divide="ignore", invalid="ignore"):
        c = ((cs[:, 0] * s0 + cs[:, 1] * c0) / (y * y)).astype(_F32)
    at_node = np.abs((x[:, None] + _F32(3) - np.arange(8, dtype=_F32))) < _F32(1e-6)
    c[at_node] = _F32(1e30)
    small = x < np.finfo(_F32).eps  # OpenCV 4.x: an exact sample is (0 0 0 1 0 0 0 0)
    c[small] = 0
    c[small, 3] = 1
    total = np.zeros(len(x), _F32)
    for i in range(8):  # float32 running sum, as OpenCV
        total = (total + c[:, i]).astype(_F32)
    return (c * (_F32(1) / total)[:, None]).astype(_F32)


def _interpolating(n_in: int, n_out: int, interp: int, scale: float, inv_scale: float) -> Taps:
    """OpenCV's generic table for INTER_LINEAR / CUBIC / LANCZOS4, and INTER_AREA when
    enlarging (``area_mode``: bilinear with OpenCV's modified fractions)."""
    ksize = {1: 2, 2: 4, 3: 2, 4: 8}[interp]
    half = ksize // 2
    d = np.arange(n_out, dtype=np.float64)
    if interp != 3:
        f = ((d + 0.5) * scale - 0.5).astype(_F32)
        sx = np.floor(f).astype(np.int64)
        fx = (f - sx.astype(_F32)).astype(_F32)
    else:
        sx = np.floor(d * scale).astype(np.int64)
        fx = ((d + 1) - (sx + 1) * inv_scale).astype(_F32)
        fx = np.where(fx <= 0, _F32(0), fx - np.floor(fx)).astype(_F32)
    if interp in (1, 3):  # linear kernels stop at the border instead of replicating it
        low = sx < 0
        fx[low], sx[low] = 0, 0
        high = sx >= n_in - 1
        fx[high], sx[high] = 0, n_in - 1
    if interp == 2:
        w = _cubic(fx)
    elif interp == 4:
        w = _lanczos4(fx)
    else:
        w = np.stack([_F32(1) - fx, fx], axis=1).astype(_F32)
    idx = np.clip(sx[:, None] - half + 1 + np.arange(ksize), 0, n_in - 1)
    return Taps(idx, w)


def resize_tables(in_size: Tuple[int, int], out_size: Tuple[int, int],
                  interp: int) -> Tuple[Taps, Taps]:
    """The ``(rows, columns)`` tables of ``cv2.resize`` from ``in_size = (height, width)`` to
    ``out_size = (height, width)`` with OpenCV interpolation code ``interp`` (0-4) on float32."""
    (ih, iw), (oh, ow) = in_size, out_size
    if min(ih, iw, oh, ow) <= 0:
        raise ValueError(f"resample.py: sizes must be positive, got {in_size} -> {out_size}")
    if interp not in (0, 1, 2, 3, 4):
        raise ValueError(f"resample.py: interpolation must be 0-4, got {interp}")
    if (ih, iw) == (oh, ow):  # OpenCV copies
        return tuple(Taps(np.arange(n)[:, None], np.ones((n, 1), _F32)) for n in (ih, iw))
    if interp == 0:
        return _nearest(ih, oh), _nearest(iw, ow)
    inv_y, inv_x = oh / ih, ow / iw
    scale_y, scale_x = 1.0 / inv_y, 1.0 / inv_x
    fast = all(abs(s - round(s)) < np.finfo(np.float64).eps for s in (scale_x, scale_y))
    if interp == 1 and fast and round(scale_x) == 2 and round(scale_y) == 2:
        interp = 3  # OpenCV: a 2x linear shrink is the (identical) area average
    if interp == 3 and scale_x >= 1 and scale_y >= 1:
        return _area(ih, oh, scale_y), _area(iw, ow, scale_x)
    return (_interpolating(ih, oh, interp, scale_y, inv_y),
            _interpolating(iw, ow, interp, scale_x, inv_x))


def _restrict(taps: Taps, start: int, length: int, reverse: bool = False):
    """The part of an axis table that reads input ``[start, start + length)``, as a sparse
    ``[o1 - o0, length]`` matrix over the output range ``[o0, o1)`` that reads any of it (None
    when no output does). ``reverse``: the output axis mirrored (a flip after the resize)."""
    idx, w = taps.index - start, taps.weight
    if reverse:
        idx, w = idx[::-1], w[::-1]
    inside = (idx >= 0) & (idx < length) & (w != 0)
    rows = np.flatnonzero(inside.any(axis=1))
    if rows.size == 0:
        return None, 0, 0
    o0, o1 = int(rows[0]), int(rows[-1]) + 1
    inside, idx, w = inside[o0:o1], idx[o0:o1], w[o0:o1]
    r, k = np.nonzero(inside)  # row-major: within a row the taps' indices never decrease
    key = r * length + idx[r, k]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])  # clamped taps repeat an index
    val = np.add.reduceat(w[r, k].astype(np.float64), first).astype(_F32)
    crow = np.zeros(o1 - o0 + 1, np.int64)
    np.cumsum(np.bincount(r[first], minlength=o1 - o0), out=crow[1:])
    with warnings.catch_warnings():  # "sparse CSR support is in beta": matmul is all we use
        warnings.simplefilter("ignore", UserWarning)
        mat = torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(key[first] % length),
                                      torch.from_numpy(val), size=(o1 - o0, length),
                                      check_invariants=False)
    return mat, o0, o1


def resize_embedded(part: np.ndarray, offset: Tuple[int, int], in_size: Tuple[int, int],
                    out_size: Tuple[int, int], interp: int, flip: bool = False) -> np.ndarray:
    """``cv2.resize(canvas, out_size[::-1], interpolation=interp)`` for a float32 canvas of
    ``in_size = (height, width)`` that is zero except ``part`` (``h x w x 3`` float32) placed
    with its top-left corner at ``offset = (x, y)``, without building the canvas: the two axis
    tables restricted to the part's rows and columns, applied as sparse matrices (columns
    first, then rows). ``flip`` mirrors the result horizontally (for free: the column table is
    reversed). Returns ``out_size + (3,)`` float32, zero where no output pixel reads the part."""
    (oh, ow), (ph, pw) = out_size, part.shape[:2]
    if part.ndim != 3 or part.shape[2] != 3:
        raise ValueError(f"resample.py: part must be h x w x 3, got {part.shape}")
    ty, tx = resize_tables(in_size, out_size, interp)
    out = np.zeros((oh, ow, 3), _F32)
    if part.size == 0:
        return out
    wy, r0, r1 = _restrict(ty, offset[1], ph)
    wx, c0, c1 = _restrict(tx, offset[0], pw, reverse=flip)
    if wx is None or wy is None:
        return out
    part = np.ascontiguousarray(part, dtype=_F32)
    rows = (wy @ torch.from_numpy(part).reshape(ph, pw * 3)).numpy()  # [r1 - r0, pw * 3]
    cols = cv2.transpose(rows.reshape(r1 - r0, pw, 3))  # [pw, r1 - r0, 3]
    both = (wx @ torch.from_numpy(cols).reshape(pw, (r1 - r0) * 3)).numpy()
    out[r0:r1, c0:c1] = cv2.transpose(both.reshape(c1 - c0, r1 - r0, 3))
    return out
