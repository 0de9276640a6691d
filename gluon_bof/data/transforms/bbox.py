"""Bounding-box geometry that follows image transforms (pure NumPy).

Every function takes ``bbox`` as a float array ``[N, 4+]``: columns 0-3 are
``xmin, ymin, xmax, ymax`` in absolute pixels (XYXY, continuous coordinates: a box
``(0, 0, W, H)`` covers a whole ``W x H`` image), the remaining columns (class id,
difficult, mix weight, ...) are carried through untouched. Inputs are never modified;
results are new ``float32`` arrays. Semantics follow GluonCV 0.10.5
(``gluoncv.data.transforms.bbox`` and ``experimental.bbox``).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ...ops.boxes import bbox_iou

__all__ = ["crop", "flip", "resize", "translate", "random_crop_with_constraints"]

# SSD's sampling constraints as GluonCV uses them: (min IoU, max IoU), None = unbounded.
DEFAULT_CROP_CONSTRAINTS = ((0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None),
                            (None, 1))


def check_label(label, where: str) -> np.ndarray:
    """A preset's input label as float32 ``[N, 5+]`` (xyxy, class id, optional columns); an empty
    label becomes ``[0, max(C, 5)]``. Anything else is a ValueError naming ``where``."""
    label = np.asarray(label, dtype=np.float32)
    if label.size == 0:
        return label.reshape(0, max(label.shape[-1] if label.ndim == 2 else 0, 5))
    if label.ndim != 2 or label.shape[1] < 5:
        raise ValueError(f"{where}: label must be [N, 5+] (xyxy, class, ...), got shape {label.shape}")
    return label


def _check(bbox: np.ndarray, fn: str) -> np.ndarray:
    bbox = np.asarray(bbox)
    if bbox.ndim != 2 or bbox.shape[1] < 4:
        raise ValueError(f"gluon_bof/data/transforms/bbox.py:{fn}: bbox must have shape [N, 4+], "
                         f"got {bbox.shape}")
    return bbox.astype(np.float32, copy=True)


def _check_size(size: Sequence[float], name: str, fn: str) -> tuple[float, float]:
    if len(size) != 2:
        raise ValueError(f"gluon_bof/data/transforms/bbox.py:{fn}: {name} must be (width, height), "
                         f"got {size!r}")
    return size[0], size[1]


def flip(bbox: np.ndarray, size: Sequence[float], flip_x: bool = False,
         flip_y: bool = False) -> np.ndarray:
    """Mirror boxes with their image of ``size = (width, height)``: ``x -> width - x``."""
    width, height = _check_size(size, "size", "flip")
    out = _check(bbox, "flip")
    if flip_y:
        out[:, [1, 3]] = height - out[:, [3, 1]]
    if flip_x:
        out[:, [0, 2]] = width - out[:, [2, 0]]
    return out


def resize(bbox: np.ndarray, in_size: Sequence[float], out_size: Sequence[float]) -> np.ndarray:
    """Scale boxes from an image of ``in_size`` to ``out_size`` (both ``(width, height)``)."""
    in_w, in_h = _check_size(in_size, "in_size", "resize")
    out_w, out_h = _check_size(out_size, "out_size", "resize")
    out = _check(bbox, "resize")
    sx, sy = out_w / in_w, out_h / in_h
    out[:, [0, 2]] = out[:, [0, 2]].astype(np.float64) * sx
    out[:, [1, 3]] = out[:, [1, 3]].astype(np.float64) * sy
    return out


def translate(bbox: np.ndarray, x_offset: float = 0, y_offset: float = 0) -> np.ndarray:
    """Shift boxes by ``(x_offset, y_offset)`` pixels (e.g. pasting onto a larger canvas)."""
    out = _check(bbox, "translate")
    out[:, [0, 2]] += x_offset
    out[:, [1, 3]] += y_offset
    return out


def crop(bbox: np.ndarray, crop_box: Sequence[float | None] | None = None,
         allow_outside_center: bool = True) -> np.ndarray:
    """Clip boxes to a crop and express them in the crop's coordinates.

    Args:
        bbox: ``[N, 4+]`` XYXY boxes.
        crop_box: ``(x, y, width, height)`` of the crop; ``None`` entries (or a ``None``
            crop_box) mean unbounded, as in GluonCV. Unlike GluonCV, a width/height of 0 is a
            zero-sized crop rather than "unbounded".
        allow_outside_center: if False, drop boxes whose centre ``c`` is not in
            ``[x, x + width) x [y, y + height)``.

    Returns:
        ``[M, 4+]`` float32, M <= N: boxes clipped to the crop, shifted so the crop's
        top-left is the origin; boxes left with zero width or height are dropped.
    """
    out = _check(bbox, "crop")
    if crop_box is None or all(c is None for c in crop_box):
        return out
    if len(crop_box) != 4:
        raise ValueError("gluon_bof/data/transforms/bbox.py:crop: crop_box must be "
                         f"(x, y, width, height), got {crop_box!r}")
    left, top, width, height = crop_box
    left = 0 if left is None else left
    top = 0 if top is None else top
    right = np.inf if width is None else left + width
    bottom = np.inf if height is None else top + height
    lo = np.array((left, top), dtype=np.float64)
    hi = np.array((right, bottom), dtype=np.float64)

    keep = np.ones(len(out), dtype=bool)
    if not allow_outside_center:
        centers = (out[:, :2].astype(np.float64) + out[:, 2:4]) / 2
        keep = ((lo <= centers) & (centers < hi)).all(axis=1)
    out[:, :2] = np.maximum(out[:, :2], lo) - lo
    out[:, 2:4] = np.minimum(out[:, 2:4], hi) - lo
    keep &= (out[:, :2] < out[:, 2:4]).all(axis=1)
    return out[keep]


def random_crop_with_constraints(
        bbox: np.ndarray, size: Sequence[int], min_scale: float = 0.3, max_scale: float = 1,
        max_aspect_ratio: float = 2,
        constraints: Iterable[tuple[float | None, float | None]] | None = None,
        max_trial: int = 50) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """SSD-style random crop with IoU constraints (GluonCV's semantics, numpy global RNG).

    For each constraint ``(min_iou, max_iou)`` (default: min IoU .1, .3, .5, .7, .9, then
    no constraint) try up to ``max_trial`` crops with scale ``s ~ U(min_scale, max_scale)``
    and aspect ratio ``a ~ U(max(1/max_ar, s^2), min(max_ar, 1/s^2))``, size
    ``(int(w s sqrt(a)), int(h s / sqrt(a)))`` at a uniform integer offset; keep the first
    crop whose IoU with every box lies in ``[min_iou, max_iou]``. The full image joins the
    candidates; candidates are drawn uniformly (without replacement) until one keeps at least
    one box whose centre lies inside it. With no boxes, the first sampled crop is returned.

    Args:
        bbox: ``[N, 4+]`` XYXY boxes in pixels of an image of ``size = (width, height)``.

    Returns:
        ``(boxes [M, 4+] float32 in crop coordinates, (x, y, crop_width, crop_height))``.
    """
    constraints = DEFAULT_CROP_CONSTRAINTS if constraints is None else tuple(constraints)
    w, h = _check_size(size, "size", "random_crop_with_constraints")
    bbox = _check(bbox, "random_crop_with_constraints")
    # All trials of all constraints are drawn at once: the first success among a constraint's
    # i.i.d. trials has the same distribution as GluonCV's sequential loop with early exit.
    n = max_trial * len(constraints)
    rng = np.random
    scale = rng.uniform(min_scale, max_scale, n)
    ar = rng.uniform(np.maximum(1 / max_aspect_ratio, scale * scale),
                     np.minimum(max_aspect_ratio, 1 / (scale * scale)))
    crop_h = (h * scale / np.sqrt(ar)).astype(np.int64)
    crop_w = (w * scale * np.sqrt(ar)).astype(np.int64)
    # GluonCV's randrange(h - crop_h): offsets uniform in [0, h - crop_h - 1] (0 if empty).
    crop_t = (rng.random_sample(n) * np.maximum(h - crop_h, 0)).astype(np.int64)
    crop_l = (rng.random_sample(n) * np.maximum(w - crop_w, 0)).astype(np.int64)
    if len(bbox) == 0 or n == 0:
        if n == 0:
            return bbox, (0, 0, w, h)
        return bbox, (int(crop_l[0]), int(crop_t[0]), int(crop_w[0]), int(crop_h[0]))

    trials = np.stack([crop_l, crop_t, crop_l + crop_w, crop_t + crop_h], axis=1)
    iou = bbox_iou(bbox.astype(np.float64), trials.astype(np.float64))  # [N, n]
    iou_min = iou.min(axis=0).reshape(len(constraints), max_trial)
    iou_max = iou.max(axis=0).reshape(len(constraints), max_trial)
    candidates = [(0, 0, w, h)]
    for k, (min_iou, max_iou) in enumerate(constraints):
        min_iou = -np.inf if min_iou is None else min_iou
        max_iou = np.inf if max_iou is None else max_iou
        ok = np.flatnonzero((min_iou <= iou_min[k]) & (iou_max[k] <= max_iou))
        if ok.size:
            i = k * max_trial + ok[0]
            candidates.append((int(crop_l[i]), int(crop_t[i]), int(crop_w[i]), int(crop_h[i])))

    while candidates:
        cand = candidates.pop(rng.randint(0, len(candidates)))
        new_bbox = crop(bbox, cand, allow_outside_center=False)
        if new_bbox.size > 0:
            return new_bbox, cand
    return bbox, (0, 0, w, h)
