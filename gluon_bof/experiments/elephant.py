"""The elephant in the room (Rosenfeld et al., 2018; Bag of Freebies, Table 2 and Fig. 5).

An object patch is pasted into a scene at every position of a grid and at several sizes; the
detector runs on every frame. Two statistics (:func:`elephant_stats`):

* **recall of the inserted object**: the share of frames where a detection of the patch's class
  with score >= ``thresh`` overlaps the pasted box with IoU >= ``iou``;
* **share of disappearing objects**: the *clean objects* are the detector's own detections on the
  clean scene with score >= ``thresh``. In a frame, a clean object whose box is covered by the
  pasted box by more than ``max_cover`` of its own area (``area(obj & pasted) / area(obj)``) is
  left out for that frame (occlusion explains its loss); every other (frame, object) pair counts,
  and the object *disappears* there when no detection of the same class with score >= ``thresh``
  overlaps its clean box with IoU >= ``iou``. Reported over all counted pairs and per object.

Pasting: a patch with an alpha channel (an RGBA PNG) is alpha-blended and its pasted box is the
tight box of its pixels with alpha >= 0.5; a patch without alpha is pasted as a rectangle and
its box is the rectangle. Boxes are XYXY in absolute pixels of the scene (continuous coordinates:
a patch at column x0 of width w spans x0..x0 + w).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..ops.boxes import bbox_iou
from ..ops.nms import MIN_BOX_SIZE
from ..utils.viz import plot_bbox, plt, save_figure

__all__ = ["load_patch", "resize_patch", "patch_positions", "paste", "make_frames",
           "elephant_stats", "merge_stats", "contact_sheet", "save_gif"]

Detections = Tuple[np.ndarray, np.ndarray, np.ndarray]  # ids [K], scores [K], boxes [K, 4]


def load_patch(path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Reads a patch image: ``(rgb HxWx3 uint8, alpha HxW float32 in 0..1 or None)``; alpha is
    None for images without an alpha channel or with a fully opaque one."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    alpha = None
    if img.shape[2] == 4:
        a = img[..., 3].astype(np.float32) / 255.0
        alpha = None if (a == 1).all() else a
        if alpha is not None and not (alpha >= 0.5).any():
            raise ValueError(f"{path}: the alpha channel is transparent everywhere")
    return np.ascontiguousarray(cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)), alpha


def resize_patch(rgb: np.ndarray, alpha: Optional[np.ndarray], longer: int):
    """The patch scaled so its longer side is ``longer`` pixels (aspect ratio kept)."""
    h, w = rgb.shape[:2]
    s = longer / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return (cv2.resize(rgb, size, interpolation=interp),
            None if alpha is None else cv2.resize(alpha, size, interpolation=interp))


def patch_positions(scene_wh: Sequence[int], patch_wh: Sequence[int], *, grid: int = 4,
                    stride: Optional[int] = None) -> List[Tuple[int, int]]:
    """Top-left corners keeping the patch inside the scene, row by row (y outer, x inner):
    every ``stride`` pixels, or else ``grid`` evenly spaced positions per axis (ends included)."""
    (W, H), (w, h) = scene_wh, patch_wh
    if w > W or h > H:
        raise ValueError(f"patch {w}x{h} does not fit the scene {W}x{H}: use smaller --sizes")
    if stride:
        xs, ys = range(0, W - w + 1, stride), range(0, H - h + 1, stride)
    else:
        xs = np.unique(np.round(np.linspace(0, W - w, grid)).astype(int))
        ys = np.unique(np.round(np.linspace(0, H - h, grid)).astype(int))
    return [(int(x), int(y)) for y in ys for x in xs]


def paste(scene: np.ndarray, rgb: np.ndarray, alpha: Optional[np.ndarray], x0: int, y0: int):
    """``(frame uint8, box float32 [4])``: the scene with the patch at ``(x0, y0)`` and its box."""
    h, w = rgb.shape[:2]
    frame = scene.copy()
    if alpha is None:
        frame[y0:y0 + h, x0:x0 + w] = rgb
        return frame, np.array([x0, y0, x0 + w, y0 + h], np.float32)
    region = frame[y0:y0 + h, x0:x0 + w].astype(np.float32)
    region += alpha[..., None] * (rgb.astype(np.float32) - region)
    frame[y0:y0 + h, x0:x0 + w] = np.clip(np.round(region), 0, 255).astype(np.uint8)
    rows, cols = np.flatnonzero((alpha >= 0.5).any(1)), np.flatnonzero((alpha >= 0.5).any(0))
    return frame, np.array([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1], np.float32)


def make_frames(scene: np.ndarray, rgb: np.ndarray, alpha: Optional[np.ndarray] = None, *,
                sizes: Sequence[float] = (0.3,), grid: int = 4, stride: Optional[int] = None) -> dict:
    """All frames: for each size (the patch's longer side as a fraction of the scene's shorter
    side), the patch at every :func:`patch_positions`. Returns ``{'images': [HxWx3 uint8],
    'boxes': [F, 4] pasted boxes, 'sizes': [F], 'positions': [F, 2]}``."""
    H, W = scene.shape[:2]
    images, boxes, frame_sizes, positions = [], [], [], []
    for size in sizes:
        p_rgb, p_alpha = resize_patch(rgb, alpha, max(1, round(size * min(H, W))))
        for x0, y0 in patch_positions((W, H), p_rgb.shape[1::-1], grid=grid, stride=stride):
            frame, box = paste(scene, p_rgb, p_alpha, x0, y0)
            images.append(frame)
            boxes.append(box)
            frame_sizes.append(float(size))
            positions.append((x0, y0))
    return dict(images=images, boxes=np.array(boxes, np.float32).reshape(-1, 4),
                sizes=np.array(frame_sizes), positions=np.array(positions).reshape(-1, 2))


def _matches(dets: Detections, cls: int, box: np.ndarray, thresh: float, iou: float) -> bool:
    ids, scores, boxes = dets
    sel = (ids == cls) & (scores >= thresh) & _valid(boxes)
    return bool(sel.any() and (bbox_iou(boxes[sel], box[None]) >= iou).any())


def _valid(boxes: np.ndarray) -> np.ndarray:
    """Boxes with an area (wider and higher than ``MIN_BOX_SIZE``): a zero-area detection matches
    nothing and is no object."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_SIZE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_SIZE)


def elephant_stats(clean: Detections, frames: Sequence[Detections], pasted: np.ndarray, *, patch_class: int,
                   thresh: float = 0.5, iou: float = 0.5, max_cover: float = 0.25,
                   sizes: Optional[Sequence[float]] = None) -> dict:
    """The two statistics of the module docstring.

    Args:
        clean: detections on the clean scene (defines the clean objects).
        frames: detections per frame; ``pasted`` ``[F, 4]`` the pasted box of each frame.
        patch_class: class id of the patch; ``sizes`` (``[F]``, optional) adds per-size figures.
    Returns a dict: ``frames``, ``hits`` (frames where the patch was found), ``recall`` (None
    without frames), ``found`` [F] bool, ``pairs`` (counted (frame, object) pairs), ``disappeared``,
    ``disappear_share`` (None when no pair counts), ``clean_objects`` (cls, score, box, counted
    frames, lost frames, share), ``counted`` and ``lost`` [F][O] bool, and with ``sizes``
    ``per_size`` ``{size: {frames, hits, recall, pairs, disappeared, disappear_share}}``.
    """
    ids, scores, boxes = clean
    keep = (scores >= thresh) & _valid(boxes)  # clean objects: valid detections only
    obj_ids, obj_scores, obj_boxes = ids[keep], scores[keep], boxes[keep].reshape(-1, 4)
    pasted = np.asarray(pasted, np.float32).reshape(-1, 4)
    found = np.array([_matches(d, patch_class, b, thresh, iou) for d, b in zip(frames, pasted)], bool)
    counted = np.zeros((len(frames), len(obj_ids)), bool)
    lost = np.zeros_like(counted)
    area = np.prod(obj_boxes[:, 2:] - obj_boxes[:, :2], axis=1)
    for f, (dets, box) in enumerate(zip(frames, pasted)):
        wh = np.clip(np.minimum(obj_boxes[:, 2:], box[2:]) - np.maximum(obj_boxes[:, :2], box[:2]), 0, None)
        counted[f] = wh.prod(1) <= max_cover * area
        for o in np.flatnonzero(counted[f]):
            lost[f, o] = not _matches(dets, int(obj_ids[o]), obj_boxes[o], thresh, iou)
    objects = [dict(cls=int(obj_ids[o]), score=float(obj_scores[o]), box=obj_boxes[o].tolist(),
                    counted=int(counted[:, o].sum()), lost=int(lost[:, o].sum()),
                    share=float(lost[:, o].sum() / counted[:, o].sum()) if counted[:, o].any() else None)
               for o in range(len(obj_ids))]

    def summary(sel):
        return _totals(int(sel.sum()), int(found[sel].sum()), int(counted[sel].sum()), int(lost[sel].sum()))

    result = summary(np.ones(len(frames), bool))
    result.update(found=found.tolist(), clean_objects=objects, counted=counted.tolist(), lost=lost.tolist())
    if sizes is not None:
        sizes = np.asarray(sizes)
        result["per_size"] = {float(s): summary(sizes == s) for s in np.unique(sizes)}
    return result


def _totals(frames: int, hits: int, pairs: int, gone: int) -> dict:
    return dict(frames=frames, hits=hits, recall=hits / frames if frames else None, pairs=pairs, disappeared=gone,
                disappear_share=gone / pairs if pairs else None)


def merge_stats(parts: Sequence[dict]) -> dict:
    """One :func:`elephant_stats` result for several scenes: frames, pairs and counts summed, the
    per-frame lists concatenated, each clean object tagged with its ``scene`` (index in ``parts``)."""
    keys = ("frames", "hits", "pairs", "disappeared")
    result = _totals(*(sum(p[k] for p in parts) for k in keys))
    result.update(found=[f for p in parts for f in p["found"]], counted=[c for p in parts for c in p["counted"]],
                  lost=[x for p in parts for x in p["lost"]],
                  clean_objects=[dict(o, scene=i) for i, p in enumerate(parts) for o in p["clean_objects"]])
    if all("per_size" in p for p in parts):
        sizes = sorted({s for p in parts for s in p["per_size"]})
        result["per_size"] = {s: _totals(*(sum(p["per_size"][s][k] for p in parts if s in p["per_size"])
                                           for k in keys)) for s in sizes}
    return result


def contact_sheet(images: Sequence[np.ndarray], dets: Sequence[Detections], pasted: np.ndarray, stats: dict,
                  path: str, *, class_names: Sequence[str], thresh: float = 0.5, max_frames: int = 36,
                  title: str = "") -> str:
    """A PNG grid of (up to ``max_frames``, evenly picked) frames with their detections
    (``viz.plot_bbox``) and the pasted box dashed: green where the patch was found, red where
    missed; each panel's title counts the clean objects lost in that frame."""
    pick = np.unique(np.linspace(0, len(images) - 1, min(max_frames, len(images))).round().astype(int))
    cols = min(6, len(pick))
    rows = math.ceil(len(pick) / cols)
    fig = plt.figure(figsize=(2.6 * cols, 2.6 * rows + (0.4 if title else 0)))
    for k, f in enumerate(pick):
        ax = fig.add_subplot(rows, cols, k + 1)
        ids, scores, boxes = dets[f]
        plot_bbox(images[f], boxes, scores, ids, thresh=thresh, class_names=class_names, ax=ax,
                  linewidth=1.0, fontsize=5)
        x0, y0, x1, y1 = pasted[f]
        color = "lime" if stats["found"][f] else "red"
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linestyle="--",
                                   linewidth=1.2))
        ax.set_title(f"#{f} {'found' if stats['found'][f] else 'missed'}, lost {sum(stats['lost'][f])}",
                     fontsize=7, color=color if color == "red" else "black")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def save_gif(images: Sequence[np.ndarray], dets: Sequence[Detections], pasted: np.ndarray, stats: dict,
             path: str, *, class_names: Sequence[str], thresh: float = 0.5, duration_ms: int = 250) -> str:
    """An animated GIF (Pillow) of every frame: detections >= ``thresh`` in white with their class,
    the pasted box in green (found) or red (missed)."""
    from PIL import Image

    frames = []
    for f, img in enumerate(images):
        canvas = img.copy()
        ids, scores, boxes = dets[f]
        for c, s, b in zip(ids, scores, boxes):
            if s < thresh:
                continue
            p0, p1 = tuple(int(v) for v in b[:2]), tuple(int(v) for v in b[2:])
            cv2.rectangle(canvas, p0, p1, (255, 255, 255), 1)
            name = class_names[c] if 0 <= c < len(class_names) else str(c)
            cv2.putText(canvas, f"{name} {s:.2f}", (p0[0], max(p0[1] - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        (255, 255, 255), 1, cv2.LINE_AA)
        x0, y0, x1, y1 = (int(v) for v in pasted[f])
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 255, 0) if stats["found"][f] else (255, 0, 0), 2)
        if frames and frames[0].size != canvas.shape[1::-1]:  # several scenes: one GIF size
            canvas = cv2.resize(canvas, frames[0].size, interpolation=cv2.INTER_AREA)
        frames.append(Image.fromarray(canvas))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return path
