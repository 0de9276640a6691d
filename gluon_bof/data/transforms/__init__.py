"""Detection transforms: box geometry (``bbox``), image ops (``image``), presets."""
from . import bbox, image, presets  # noqa: F401
from . import experimental  # noqa: F401
from .presets.yolo import YOLO3DefaultTrainTransform, YOLO3DefaultValTransform  # noqa: F401
