"""Box overlap in both conventions: exact (``x2 - x1`` wide, pycocotools', torchvision's) and
GluonCV's legacy "+1" pixel convention (``x2 - x1 + 1``, its VOC metric and some transforms).
Boxes are XYXY in pixels."""
import numpy as np

__all__ = ["bbox_iou", "paired_iou"]


def bbox_iou(bbox_a: np.ndarray, bbox_b: np.ndarray, offset: float = 0) -> np.ndarray:
    """IoU of every pair: ``[N, 4+]`` x ``[M, 4+]`` -> ``[N, M]`` (GluonCV's ``bbox_iou``).

    ``offset`` adds to widths and heights (1 for the legacy "+1" convention); boxes that only
    touch do not overlap.
    """
    tl = np.maximum(bbox_a[:, None, :2], bbox_b[None, :, :2])
    br = np.minimum(bbox_a[:, None, 2:4], bbox_b[None, :, 2:4])
    inter = np.prod(br - tl + offset, axis=2) * (tl < br).all(axis=2)
    area_a = np.prod(bbox_a[:, 2:4] - bbox_a[:, :2] + offset, axis=1)
    area_b = np.prod(bbox_b[:, 2:4] - bbox_b[:, :2] + offset, axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def paired_iou(a: np.ndarray, b: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """Element-wise IoU of paired ``[P, 4]`` boxes -> ``[P]``. ``plus_one``: GluonCV's VOC metric,
    which adds 1 to ``x2`` and ``y2`` first (so boxes that touch overlap by a pixel row). A pair of
    empty boxes gives NaN (0 / 0), as GluonCV's."""
    a = np.array(a, dtype=np.float64 if np.asarray(a).dtype == np.float64 else np.float32)
    b = np.array(b, dtype=a.dtype)
    if plus_one:
        a[:, 2:] += 1
        b[:, 2:] += 1
    tl = np.maximum(a[:, :2], b[:, :2])
    br = np.minimum(a[:, 2:], b[:, 2:])
    wh = br - tl
    inter = wh[:, 0] * wh[:, 1] * (tl < br).all(axis=1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area_a + area_b - inter)
