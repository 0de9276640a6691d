"""Named transform compositions (GluonCV's ``transforms.presets``)."""
from . import yolo  # noqa: F401
from .yolo import YOLO3DefaultTrainTransform, YOLO3DefaultValTransform  # noqa: F401
