"""Evaluation metrics."""
from .coco_detection import COCODetectionMetric
from .voc_detection import VOC07MApMetric, VOCMApMetric

__all__ = ["VOCMApMetric", "VOC07MApMetric", "COCODetectionMetric"]
