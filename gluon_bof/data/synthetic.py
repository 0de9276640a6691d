"""The built-in synthetic detection dataset ("shapes"), written in the real VOC layout.

    python -m gluon_bof.data.synthetic --out DIR [--num-trainval 1000 --num-test 250 --seed 0]
                                       [--preview FILE.png]

writes ``DIR/classes.txt`` and ``DIR/VOC2007/{Annotations,JPEGImages,ImageSets/Main/{trainval,
test}.txt}``, so ``VOCDetection(DIR, splits=((2007, 'trainval'),))`` reads it.

Each image (width 256-416, height 224-384, JPEG quality 90) has a cluttered background (colour
gradient, smooth colour blotches, noise, muted lines and translucent irregular blobs) and 1-10
objects of 6 classes that differ by shape (``CLASSES``) and by hue family (class ``k`` is drawn
at hue ``60 k`` degrees +- 16, saturated, with a light texture, against a low-saturation
background: the colour cue lets a small network trained from scratch on a CPU learn the classes
within minutes, the shapes keep the localisation honest). Object sizes (square root of the box area) are ~8% tiny (8-14 px), ~82% 20-150 px
(log-uniform) and ~10% large (up to 65% of the shorter image side). Objects drawn later occlude
earlier ones. Boxes are tight around the *visible* pixels (VOC's rule), written as VOC's 1-based
inclusive pixel indices (the loader's -1 makes them 0-based). Each object records ``occluded``
(0/1), ``truncated`` (0/1, cut by the border) and a non-standard ``<visible>`` fraction; objects
with less than 40% visible or a visible box under 16 px on its longer side (too small to recognise
at the CPU demo's ~0.55x training scale, as VOC marks unrecognisable objects) are ``difficult``;
objects with no visible pixel are not annotated. Everything is deterministic for a seed: image
``i`` of split ``s`` draws from ``np.random.default_rng([seed, s, i])``.
"""
from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import time
from typing import List, Tuple

import cv2
import numpy as np

from ..utils.cli import run_script
from .voc import VOCDetection

__all__ = ["CLASSES", "generate", "ensure_generated", "render_image", "save_preview"]

CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_S = 1 << _SHIFT


def _color(rng, sat: Tuple[int, int], val: Tuple[int, int], hue: int = None) -> np.ndarray:
    """A random RGB colour; ``hue`` (OpenCV's 0-180 scale) fixes the hue family (+- 8)."""
    h = rng.integers(0, 180) if hue is None else (hue + rng.integers(-8, 9)) % 180
    hsv = np.uint8([[[h, rng.integers(*sat), rng.integers(*val)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _polygon(name: str, rng) -> np.ndarray:
    """Unit outline of a polygonal class, randomly rotated; ``[K, 2]``."""
    if name == "square":
        pts, rot = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64), rng.uniform(-15, 15)
    elif name == "triangle":
        a = np.deg2rad([-90, 30, 150])
        pts, rot = np.stack([np.cos(a), np.sin(a)], 1), rng.uniform(0, 360)
    elif name == "star":
        a = np.deg2rad(-90 + 36 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        pts, rot = np.stack([r * np.cos(a), r * np.sin(a)], 1), rng.uniform(0, 360)
    elif name == "cross":
        t = 0.32
        pts = np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1],
                        [-t, t], [-1, t], [-1, -t], [-t, -t]], np.float64)
        rot = rng.uniform(-20, 20)
    else:
        raise ValueError(name)
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    return pts @ np.array([[c, s], [-s, c]])


def _shape_mask(name: str, w: int, h: int, rng) -> np.ndarray:
    """Anti-aliased uint8 mask ``[h, w]`` of one object filling the ``w x h`` canvas."""
    mask = np.zeros((h, w), np.uint8)
    if name in ("circle", "ring"):
        center = (round((w - 1) / 2 * _S), round((h - 1) / 2 * _S))
        axes = (round((w - 1) / 2 * _S), round((h - 1) / 2 * _S))
        cv2.ellipse(mask, center, axes, 0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
        if name == "ring":
            k = rng.uniform(0.45, 0.6)
            inner = (round(axes[0] * k), round(axes[1] * k))
            cv2.ellipse(mask, center, inner, 0, 0, 360, 0, -1, cv2.LINE_AA, _SHIFT)
        return mask
    pts = _polygon(name, rng)
    pts = (pts - pts.min(0)) / np.ptp(pts, 0) * [w - 1, h - 1]
    cv2.fillPoly(mask, [np.round(pts * _S).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
    return mask


def _texture(h: int, w: int, rgb: np.ndarray, rng) -> np.ndarray:
    """Object colour ``[h, w, 3]`` float32 with a light gradient, stripes or speckle."""
    kind = rng.integers(3)
    if kind == 2:
        shade = 1 + 0.08 * rng.standard_normal((h, w), dtype=np.float32)
    else:
        th = rng.uniform(0, 2 * np.pi)
        t = (np.arange(w, dtype=np.float32)[None] * math.cos(th)
             + np.arange(h, dtype=np.float32)[:, None] * math.sin(th))
        if kind == 0:
            shade = 1 + 0.35 * ((t - t.min()) / (np.ptp(t) + 1e-6) - 0.5)
        else:
            shade = 1 + 0.12 * np.sin(t * (2 * np.pi / rng.uniform(5, 12)) + rng.uniform(0, 6.3))
    return rgb * shade[..., None]


def _background(W: int, H: int, rng) -> np.ndarray:
    """Cluttered background ``[H, W, 3]`` float32 RGB (no object-like shapes)."""
    c1, c2 = _color(rng, (0, 90), (60, 210)), _color(rng, (0, 90), (60, 210))
    th = rng.uniform(0, 2 * np.pi)
    t = (np.arange(W, dtype=np.float32)[None] * math.cos(th)
         + np.arange(H, dtype=np.float32)[:, None] * math.sin(th))
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    img = c1 + (c2 - c1) * t[..., None]
    blotch = rng.uniform(-40, 40, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
    img += cv2.resize(blotch, (W, H), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(1, 5)):  # translucent irregular blobs
        n = rng.integers(10, 18)
        a = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(12, 60) * np.exp(np.convolve(rng.normal(0, 0.35, n + 4), np.ones(5) / 5, "valid"))
        ex = rng.uniform(0.4, 1.0)  # elongated: not circle-like
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        pts = np.stack([cx + r * np.cos(a), cy + ex * r * np.sin(a)], 1)
        x0, y0 = np.clip(np.floor(pts.min(0)).astype(int) - 1, 0, [W, H])
        x1, y1 = np.clip(np.ceil(pts.max(0)).astype(int) + 2, 0, [W, H])
        if x1 <= x0 or y1 <= y0:
            continue
        roi = img[y0:y1, x0:x1]
        layer = roi.copy()
        cv2.fillPoly(layer, [np.round((pts - [x0, y0]) * _S).astype(np.int32)],
                     _color(rng, (0, 100), (40, 220)).tolist(), cv2.LINE_AA, _SHIFT)
        alpha = rng.uniform(0.3, 0.55)
        roi += alpha * (layer - roi)
    for _ in range(rng.integers(2, 9)):  # muted lines and polylines
        pts = np.stack([rng.uniform(-20, W + 20, 4), rng.uniform(-20, H + 20, 4)], 1)
        pts = pts[: rng.integers(2, 5)]
        cv2.polylines(img, [np.round(pts * _S).astype(np.int32)], False,
                      _color(rng, (0, 80), (20, 230)).tolist(), int(rng.integers(1, 4)),
                      cv2.LINE_AA, _SHIFT)
    return img


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed field of unit Gaussian noise; images take random crops of it (fast, deterministic)."""
    return np.random.default_rng(12345).standard_normal((512, 512, 3), dtype=np.float32)


def _object_size(rng, W: int, H: int) -> float:
    u, short = rng.random(), min(W, H)
    if u < 0.08:
        return rng.uniform(8, 14)
    if u < 0.90:
        return math.exp(rng.uniform(math.log(20), math.log(150)))
    return rng.uniform(min(150, 0.5 * short), 0.65 * short)


def _place(rng, w: int, h: int, W: int, H: int, boxes: List[Tuple[int, int, int, int]]):
    """Top-left corner for a ``w x h`` object, preferring spots that cover little of ``boxes``."""
    best, best_cover = None, 2.0
    for _ in range(8):
        if rng.random() < 0.12:  # allow truncation by the image border
            x0 = int(rng.integers(-w // 3, W - 2 * w // 3 + 1))
            y0 = int(rng.integers(-h // 3, H - 2 * h // 3 + 1))
        else:
            x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
        cover = 0.0
        for bx0, by0, bx1, by1 in boxes:
            iw = min(bx1, x0 + w) - max(bx0, x0)
            ih = min(by1, y0 + h) - max(by0, y0)
            if iw > 0 and ih > 0:
                cover = max(cover, iw * ih / ((bx1 - bx0) * (by1 - by0)))
        if cover < best_cover:
            best, best_cover = (x0, y0), cover
        if cover < 0.35:
            break
    return best


def render_image(rng) -> Tuple[np.ndarray, List[dict]]:
    """Draws one image; returns ``(img HxWx3 uint8 RGB, objects)``.

    Each object is a dict with ``name``, ``box`` (xmin, ymin, xmax, ymax as 0-based *inclusive*
    pixel indices of its visible pixels), ``visible`` (fraction of its pixels visible),
    ``truncated`` and ``difficult``. Fully hidden objects are left out.
    """
    W, H = int(rng.integers(256, 417)), int(rng.integers(224, 385))
    img = _background(W, H, rng)
    owner = np.full((H, W), -1, np.int8)
    n = int(rng.choice(np.arange(1, 11), p=np.arange(10, 0, -1) / 55))
    sizes = [_object_size(rng, W, H) for _ in range(n)]
    if rng.random() < 0.7:  # mostly big first, so small objects stay on top
        sizes.sort(reverse=True)
    drawn, boxes = [], []
    for k, size in enumerate(sizes):
        cls = int(rng.integers(len(CLASSES)))
        name = CLASSES[cls]
        aspect = math.exp(rng.uniform(-0.28, 0.28))
        w = int(np.clip(round(size * math.sqrt(aspect)), 8, 0.8 * W))
        h = int(np.clip(round(size / math.sqrt(aspect)), 8, 0.8 * H))
        mask = _shape_mask(name, w, h, rng)
        x0, y0 = _place(rng, w, h, W, H, boxes)
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
        sub = mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
        alpha = sub.astype(np.float32)[..., None] / 255
        color = _texture(iy1 - iy0, ix1 - ix0, _color(rng, (170, 256), (150, 256), hue=30 * cls), rng)
        region = img[iy0:iy1, ix0:ix1]
        region += alpha * (color - region)
        owner[iy0:iy1, ix0:ix1][sub >= 128] = k
        drawn.append((name, (ix0, iy0, ix1, iy1), int((mask >= 128).sum()), int((sub >= 128).sum())))
        boxes.append((ix0, iy0, ix1, iy1))
    bank = _noise_bank()
    oy, ox = rng.integers(0, bank.shape[0] - H + 1), rng.integers(0, bank.shape[1] - W + 1)
    img += rng.uniform(2, 7) * bank[oy:oy + H, ox:ox + W]
    objects = []
    for k, (name, (ix0, iy0, ix1, iy1), full, inside) in enumerate(drawn):
        vis = owner[iy0:iy1, ix0:ix1] == k
        count = int(vis.sum())
        if count == 0:
            continue
        rows, cols = np.flatnonzero(vis.any(1)), np.flatnonzero(vis.any(0))
        box = (ix0 + cols[0], iy0 + rows[0], ix0 + cols[-1], iy0 + rows[-1])
        visible = count / max(full, 1)
        longer = max(box[2] - box[0], box[3] - box[1]) + 1
        objects.append(dict(name=name, box=tuple(int(v) for v in box), visible=visible,
                            truncated=int(inside < full), occluded=int(count < inside * 0.95),
                            difficult=int(visible < 0.4 or longer < 16)))
    return np.clip(img, 0, 255, out=img).astype(np.uint8), objects


def _voc_xml(img_id: str, W: int, H: int, objects: List[dict]) -> str:
    lines = ["<annotation>", "\t<folder>VOC2007</folder>", f"\t<filename>{img_id}.jpg</filename>",
             "\t<source><database>gluon-bof synthetic shapes</database></source>",
             f"\t<size><width>{W}</width><height>{H}</height><depth>3</depth></size>",
             "\t<segmented>0</segmented>"]
    for o in objects:
        x0, y0, x1, y1 = (v + 1 for v in o["box"])  # VOC: 1-based pixel indices
        lines += ["\t<object>", f"\t\t<name>{o['name']}</name>", "\t\t<pose>Unspecified</pose>",
                  f"\t\t<truncated>{o['truncated']}</truncated>",
                  f"\t\t<occluded>{o['occluded']}</occluded>",
                  f"\t\t<visible>{o['visible']:.3f}</visible>",
                  f"\t\t<difficult>{o['difficult']}</difficult>",
                  f"\t\t<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                  f"<ymax>{y1}</ymax></bndbox>", "\t</object>"]
    return "\n".join(lines + ["</annotation>", ""])


def generate(out: str, num_trainval: int = 1000, num_test: int = 250, seed: int = 0) -> str:
    """Writes the dataset under ``out`` (see the module docstring); returns ``out``."""
    voc = os.path.join(out, "VOC2007")
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    start = 0
    for split_idx, (split, num) in enumerate((("trainval", num_trainval), ("test", num_test))):
        ids = [f"{start + i:06d}" for i in range(num)]
        for i, img_id in enumerate(ids):
            img, objects = render_image(np.random.default_rng([seed, split_idx, i]))
            cv2.imwrite(os.path.join(voc, "JPEGImages", img_id + ".jpg"),
                        cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            with open(os.path.join(voc, "Annotations", img_id + ".xml"), "w") as f:
                f.write(_voc_xml(img_id, img.shape[1], img.shape[0], objects))
        with open(os.path.join(voc, "ImageSets", "Main", split + ".txt"), "w") as f:
            f.write("".join(i + "\n" for i in ids))
        start += num
    with open(os.path.join(out, "classes.txt"), "w") as f:  # last: it marks a complete dataset
        f.write("\n".join(CLASSES) + "\n")
    return out


def ensure_generated(root: str) -> str:
    """Generates the dataset (defaults) under ``root`` unless a complete one is there (its
    ``classes.txt``, written last); returns ``root``."""
    if not os.path.isfile(os.path.join(root, "classes.txt")):
        logging.getLogger(__name__).info("generating the built-in dataset under %s", root)
        generate(root)
    return root


def save_preview(root: str, file: str, num: int = 8, split: str = "trainval", cols: int = 4) -> str:
    """Saves a mosaic of the first ``num`` images of ``split`` with their boxes (read back through
    ``VOCDetection``; green = normal, red = difficult) as ``file``."""

    ds = VOCDetection(root, splits=((2007, split),))
    cell_w, cell_h = 416, 384
    rows = math.ceil(min(num, len(ds)) / cols)
    canvas = np.full((rows * cell_h, cols * cell_w, 3), 255, np.uint8)
    for i in range(min(num, len(ds))):
        img, label = ds[i]
        img = np.ascontiguousarray(img[..., ::-1])
        for x0, y0, x1, y1, c, d in label:
            color = (0, 0, 255) if d else (0, 200, 0)
            cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), color, 1)
            cv2.putText(img, ds.classes[int(c)], (int(x0), max(int(y0) - 2, 8)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA)
        r, c = divmod(i, cols)
        canvas[r * cell_h:r * cell_h + img.shape[0], c * cell_w:c * cell_w + img.shape[1]] = img
    os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
    cv2.imwrite(file, canvas)
    return file


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-trainval", type=int, default=1000)
    parser.add_argument("--num-test", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preview", default=None, help="also save a mosaic PNG of a few images")
    args = parser.parse_args(argv)
    tic = time.time()
    generate(args.out, args.num_trainval, args.num_test, args.seed)
    print(f"wrote {args.num_trainval} trainval + {args.num_test} test images to {args.out} "
          f"in {time.time() - tic:.1f} s")
    if args.preview:
        print(f"preview: {save_preview(args.out, args.preview)}")


if __name__ == "__main__":
    run_script(main)
