"""Datasets (VOC, COCO, the built-in generated data), transforms, mixup and batching for detection.

Items follow GluonCV's contract: ``(image HxWx3 uint8 RGB, label float32 [N, 6])`` with label columns
xmin, ymin, xmax, ymax (pixels), class id, difficult; ``MixupDetection`` appends the mix weight.
"""
from . import prepare, transforms  # noqa: F401  (synthetic: `python -m gluon_bof.data.synthetic`)
from .base import DatasetError  # noqa: F401
from .coco import COCODetection  # noqa: F401
from .loader import (DetectionBatchSampler, EvalBatch, EvalBatchSampler, TrainBatch, TransformDataset,  # noqa: F401
                     detection_collate, detection_pad_collate, eval_shard, pad_labels)
from .sampler import AspectRatioBatchSampler  # noqa: F401
from .mixup import MixupDetection  # noqa: F401
from .voc import VOCDetection  # noqa: F401
