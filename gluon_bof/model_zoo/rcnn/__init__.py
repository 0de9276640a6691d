"""Faster R-CNN (GluonCV layout): anchors, box coder, samplers, RPN, C4 and FPN detectors and
builders."""
from .anchors import RPNAnchorGenerator, generate_base_anchors, grid_anchors  # noqa: F401
from .faster_rcnn import FasterRCNN  # noqa: F401
from .rpn import RPN, RPNHead, generate_proposals  # noqa: F401
from .sampler import SampleDraws, rcnn_sample, rcnn_targets, rpn_targets  # noqa: F401
from .fpn import (FasterRCNNFPN, FPNFeatureExpander, MultiLevelRPN, ResNetBody,  # noqa: F401
                  assign_levels, fpn_box_head)
from . import predefined  # noqa: F401  (registers the builders)
