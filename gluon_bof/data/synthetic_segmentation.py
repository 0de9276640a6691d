"""The built-in synthetic segmentation dataset: the "shapes" scenes of :mod:`.synthetic` with a
per-pixel class mask, written in the real ADE20K layout.

    python -m gluon_bof.data.synthetic_segmentation --out data/synthetic_seg \\
        [--num-train 500 --num-val 100 --seed 0] [--preview FILE.png]

writes ``OUT/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_{train,val}_%08d.
{jpg,png}`` and ``OUT/classes.txt`` (written last: it marks a complete dataset), so
``ADE20KSegmentation(OUT, split)`` reads it. Seven classes: ``background`` and the six shapes of
:mod:`.synthetic` (same shapes, same hue family per class, same cluttered backgrounds and
textures, drawn by its helpers). Annotation values follow ADE20K: 0 = unlabelled (ignored), here
the anti-aliased rim of every object (pixels drawn with 12-88 % of the object's colour); 1 =
background; 2..7 = the shapes in ``CLASSES`` order. Images are small (width 128-224, height
112-192) with 1-6 objects of 12 % (at least 10 px) up to 60 % of the shorter side (log-uniform);
later objects occlude earlier ones. Deterministic for a seed: image ``i`` of split ``s`` draws from
``np.random.default_rng([seed, 10 + s, i])``.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import time
from typing import Tuple

import cv2
import numpy as np

from ..utils.cli import run_script
from ..utils.home import default_data_root
from ..utils.segmentation_viz import plot_segmentation
from .segmentation import ADE20KSegmentation
from .synthetic import CLASSES as SHAPES
from .synthetic import _background, _color, _noise_bank, _place, _shape_mask, _texture

__all__ = ["CLASSES", "render_scene", "generate", "ensure_generated", "default_root", "save_preview"]

CLASSES = ("background",) + SHAPES
SPLITS = (("training", "train"), ("validation", "val"))
RIM = (30, 225)  # alpha (0-255) range of the ignored object rim


def default_root() -> str:
    """``$GLUON_BOF_SEG_DATA``, else ``data/synthetic_seg`` in the repository."""
    return os.environ.get("GLUON_BOF_SEG_DATA", default_data_root("synthetic_seg"))


def render_scene(rng) -> Tuple[np.ndarray, np.ndarray]:
    """One scene: ``(img HxWx3 uint8 RGB, annotation HxW uint8)`` (values as in the module docstring)."""
    W, H = int(rng.integers(128, 225)), int(rng.integers(112, 193))
    img = _background(W, H, rng)
    ann = np.ones((H, W), np.uint8)
    n = int(rng.choice(np.arange(1, 7), p=np.arange(6, 0, -1) / 21))
    short = min(W, H)
    lo, hi = math.log(max(10.0, 0.12 * short)), math.log(0.6 * short)
    sizes = sorted((math.exp(rng.uniform(lo, hi)) for _ in range(n)), reverse=True)
    boxes = []
    for size in sizes:
        cls = int(rng.integers(len(SHAPES)))
        aspect = math.exp(rng.uniform(-0.28, 0.28))
        w = int(np.clip(round(size * math.sqrt(aspect)), 8, 0.8 * W))
        h = int(np.clip(round(size / math.sqrt(aspect)), 8, 0.8 * H))
        mask = _shape_mask(SHAPES[cls], w, h, rng)
        x0, y0 = _place(rng, w, h, W, H, boxes)
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
        sub = mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
        color = _texture(iy1 - iy0, ix1 - ix0, _color(rng, (170, 256), (150, 256), hue=30 * cls), rng)
        region = img[iy0:iy1, ix0:ix1]
        region += sub.astype(np.float32)[..., None] / 255 * (color - region)
        labels = ann[iy0:iy1, ix0:ix1]
        labels[sub >= RIM[1]] = cls + 2
        labels[(sub >= RIM[0]) & (sub < RIM[1])] = 0
        boxes.append((ix0, iy0, ix1, iy1))
    bank = _noise_bank()
    oy, ox = rng.integers(0, bank.shape[0] - H + 1), rng.integers(0, bank.shape[1] - W + 1)
    img += rng.uniform(2, 7) * bank[oy:oy + H, ox:ox + W]
    return np.clip(img, 0, 255, out=img).astype(np.uint8), ann


def generate(out: str, num_train: int = 500, num_val: int = 100, seed: int = 0) -> str:
    """Writes the dataset under ``out`` (see the module docstring); returns ``out``."""
    base = os.path.join(out, "ADEChallengeData2016")
    for s, ((folder, prefix), num) in enumerate(zip(SPLITS, (num_train, num_val))):
        img_dir, ann_dir = os.path.join(base, "images", folder), os.path.join(base, "annotations", folder)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(num):
            img, ann = render_scene(np.random.default_rng([seed, 10 + s, i]))
            stem = f"ADE_{prefix}_{i + 1:08d}"
            cv2.imwrite(os.path.join(img_dir, stem + ".jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
            cv2.imwrite(os.path.join(ann_dir, stem + ".png"), ann)
    with open(os.path.join(out, "classes.txt"), "w") as f:  # last: it marks a complete dataset
        f.write("\n".join(CLASSES) + "\n")
    return out


def ensure_generated(root: str) -> str:
    """Generates the dataset (defaults) under ``root`` unless a complete one is there; returns ``root``."""
    if not os.path.isfile(os.path.join(root, "classes.txt")):
        logging.getLogger(__name__).info("generating the built-in segmentation dataset under %s", root)
        generate(root)
    return root


def save_preview(root: str, file: str, num: int = 6, split: str = "train") -> str:
    """A PNG of the first ``num`` images of ``split`` beside their masks (read back through
    ``ADE20KSegmentation``)."""
    ds = ADE20KSegmentation(root, split)
    items = [ds[i] for i in range(min(num, len(ds)))]
    return plot_segmentation([i[0] for i in items], [i[1] for i in items], None, file, classes=ds.classes)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=default_root(), help="output folder (default: %(default)s)")
    parser.add_argument("--num-train", type=int, default=500, help="training images (default: %(default)s)")
    parser.add_argument("--num-val", type=int, default=100, help="validation images (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--preview", default=None, help="also save a PNG of a few images and their masks")
    args = parser.parse_args(argv)
    tic = time.time()
    generate(args.out, args.num_train, args.num_val, args.seed)
    print(f"wrote {args.num_train} training + {args.num_val} validation images to {args.out} "
          f"in {time.time() - tic:.1f} s")
    if args.preview:
        print(f"preview: {save_preview(args.out, args.preview)}")


if __name__ == "__main__":
    run_script(main)
