"""Drawing segmentation masks: a class palette and image | ground truth | prediction panels."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .viz import plt, save_figure

__all__ = ["palette", "colorize", "plot_segmentation"]


def palette(num: int = 256) -> np.ndarray:
    """``[num, 3]`` uint8 colours, Pascal VOC's bit-interleaved palette (entry 0 black)."""
    out = np.zeros((num, 3), np.uint8)
    for i in range(num):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        out[i] = (r, g, b)
    return out


def colorize(mask: np.ndarray) -> np.ndarray:
    """``HxW`` class indices (-1 = ignored) -> ``HxWx3`` uint8 RGB: class ``k`` gets palette
    entry ``k + 1``, ignored pixels black."""
    mask = np.asarray(mask, dtype=np.int64)
    pal = palette(max(int(mask.max(initial=0)) + 2, 2))
    return pal[np.clip(mask + 1, 0, None)]


def plot_segmentation(images: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                      preds: Optional[Sequence[np.ndarray]], path: str,
                      classes: Optional[Sequence[str]] = None, titles: Optional[Sequence[str]] = None) -> str:
    """Writes a PNG with one row per image: the image, its ground truth and (if ``preds``) the
    predicted mask, in the same colours (ignored pixels black), with a legend of the classes
    present when there are at most 24 of them. Images are ``HxWx3`` uint8 RGB, masks ``HxW``."""
    cols = 2 if preds is None else 3
    rows = len(images)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    present = set()
    for r in range(rows):
        panels = [images[r], colorize(targets[r])] + ([] if preds is None else [colorize(preds[r])])
        present |= set(np.unique(targets[r]).tolist()) | (set() if preds is None else set(np.unique(preds[r]).tolist()))
        names = ["image" if titles is None else titles[r], "ground truth", "prediction"]
        for c, panel in enumerate(panels):
            axes[r, c].imshow(panel)
            axes[r, c].set_title(names[c], fontsize=8)
            axes[r, c].axis("off")
    present.discard(-1)
    if classes is not None and 0 < len(present) <= 24:
        pal = palette(max(present) + 2) / 255.0
        handles = [plt.Rectangle((0, 0), 1, 1, color=pal[k + 1]) for k in sorted(present)]
        fig.legend(handles, [classes[k] if k < len(classes) else str(k) for k in sorted(present)],
                   loc="lower center", ncol=min(len(handles), 4), fontsize=7)
        fig.subplots_adjust(bottom=0.1)
    return save_figure(fig, path)
