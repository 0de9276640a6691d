"""Drawing detections and per-class AP (matplotlib, Agg backend: no display needed)."""
import os
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_image", "plot_bbox", "plot_ap", "plot_ap_delta", "plot_history", "save_figure"]


def _np(x):
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def plot_image(img, ax=None):
    """Shows an HxWx3 RGB image (uint8, or float in 0..255) on ``ax`` (a new figure if None)."""
    if ax is None:
        fig = plt.figure(figsize=(8, 8))
        ax = fig.add_subplot(1, 1, 1)
    img = _np(img)
    ax.imshow(np.clip(img, 0, 255).astype(np.uint8))
    ax.axis("off")
    return ax


def plot_bbox(img, bboxes, scores=None, labels=None, thresh: float = 0.5,
              class_names: Optional[Sequence[str]] = None, colors: Optional[dict] = None, ax=None,
              linewidth: float = 2.0, fontsize: int = 9):
    """Draws boxes on an image, GluonCV's ``gluoncv.utils.viz.plot_bbox`` interface.

    Args:
        img: HxWx3 RGB image.
        bboxes: ``[N, 4]`` XYXY pixel boxes (a leading batch axis of 1 is accepted); rows with
            label < 0 or score < ``thresh`` are skipped.
        scores, labels: ``[N]`` or ``[N, 1]``.
        class_names: names indexed by label.
        colors: ``{class id: (r, g, b) in 0..1}``; random but fixed per class otherwise.
    Returns the matplotlib axes.
    """
    bboxes = _np(bboxes).reshape(-1, 4)
    scores = None if scores is None else _np(scores).reshape(-1)
    labels = None if labels is None else _np(labels).reshape(-1)
    ax = plot_image(img, ax)
    colors = dict(colors or {})
    for i, box in enumerate(bboxes):
        if (scores is not None and scores[i] < thresh) or (labels is not None and labels[i] < 0):
            continue
        cls = int(labels[i]) if labels is not None else -1
        if cls not in colors:
            colors[cls] = np.random.default_rng(cls + 7).uniform(0.1, 1.0, size=3)
        x1, y1, x2, y2 = box
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colors[cls],
                                   linewidth=linewidth))
        name = class_names[cls] if class_names is not None and 0 <= cls < len(class_names) else str(cls)
        text = name if scores is None else f"{name} {scores[i]:.2f}"
        ax.text(x1, y1 - 2, text, fontsize=fontsize, color="white",
                bbox=dict(facecolor=colors[cls], alpha=0.6, pad=1, linewidth=0))
    return ax


def plot_ap(names: Sequence[str], values: Sequence[float], path: str, title: str = "per-class AP"):
    """Writes a horizontal bar chart of per-class AP (the last entry, mAP, drawn as a line)."""
    names, values = list(names), [float(v) for v in values]
    if names and names[-1].lower() == "map":
        mean, names, values = values[-1], names[:-1], values[:-1]
    else:
        mean = float(np.nanmean(values)) if values else float("nan")
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.5))
    ax.barh(range(len(names)), np.nan_to_num(values), color="tab:blue")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.axvline(mean, color="tab:red", linestyle="--", label=f"mAP {mean:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("AP")
    ax.set_title(title)
    ax.legend(loc="lower right")
    save_figure(fig, path)


def plot_ap_delta(names: Sequence[str], deltas: Sequence[float], path: str,
                  title: str = "per-category AP change", gain: str = "tab:green", loss: str = "tab:red") -> list:
    """The Bag of Freebies paper's Fig. 7/8: per-category AP change as bars sorted from the largest
    gain to the largest loss, gains and losses in two colours. Returns the ``(name, delta)`` pairs
    in drawing order (classes whose change is NaN, e.g. no ground truth, are left out)."""
    pairs = sorted(((n, float(d)) for n, d in zip(names, deltas) if np.isfinite(d)), key=lambda p: -p[1])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.32 * len(pairs) + 2), 4))
    ax.bar(range(len(pairs)), [d for _, d in pairs], color=[gain if d >= 0 else loss for _, d in pairs])
    ax.set_xticks(range(len(pairs)), [n for n, _ in pairs], rotation=90)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("AP change")
    ax.set_title(title)
    save_figure(fig, path)
    return pairs


def plot_history(history: Sequence[dict], path: str) -> str:
    """Writes the training curves of ``fit``'s history: each ``*_loss`` per epoch (left), the
    validation score where it was measured (middle): the last value of each epoch's ``val`` (VOC
    mAP, COCO AP@[.5:.95], classification top-1), and, where the history has them (Faster
    R-CNN), the samplers' positive-to-negative ratios per epoch (right: MegDet's Table 1)."""
    epochs = [h["epoch"] for h in history]
    ratios = sorted({k for h in history for k in h if k.endswith("_pos_neg_ratio")})
    fig, axes = plt.subplots(1, 3 if ratios else 2, figsize=(16 if ratios else 11, 4))
    ax_loss, ax_map = axes[0], axes[1]
    for key in sorted({k for h in history for k in h if k.endswith("loss")}):
        ax_loss.plot(epochs, [h.get(key, np.nan) for h in history], marker=".", label=key)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title("training losses (epoch means)")
    ax_loss.legend(fontsize=8)
    val = [(h["epoch"], *list(h["val"].items())[-1]) for h in history if h.get("val")]
    if val:
        ax_map.plot([v[0] for v in val], [v[2] for v in val], marker="o", color="tab:green")
    ax_map.set_ylim(0, 1)
    ax_map.set_xlabel("epoch")
    ax_map.set_title(f"validation {val[-1][1] if val else 'score'}")
    if ratios:
        for key in ratios:
            axes[2].plot(epochs, [h.get(key, np.nan) for h in history], marker=".",
                         label=key.replace("_pos_neg_ratio", ""))
        axes[2].set_xlabel("epoch")
        axes[2].set_title("positive : negative samples")
        axes[2].legend(fontsize=8)
    return save_figure(fig, path)


def save_figure(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
