"""Named transform compositions (GluonCV's ``transforms.presets``)."""
from . import imagenet, rcnn, yolo  # noqa: F401
from .yolo import YOLO3DefaultTrainTransform, YOLO3DefaultValTransform  # noqa: F401
from .rcnn import FasterRCNNDefaultTrainTransform, FasterRCNNDefaultValTransform  # noqa: F401
from .imagenet import ImageNetTrainTransform, ImageNetValTransform  # noqa: F401
