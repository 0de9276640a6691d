"""Evaluation metrics."""
from .coco_detection import COCODetectionMetric
from .segmentation import SegmentationMetric
from .voc_detection import VOC07MApMetric, VOCMApMetric

__all__ = ["VOCMApMetric", "VOC07MApMetric", "COCODetectionMetric", "SegmentationMetric"]
