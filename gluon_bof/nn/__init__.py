"""Neural-network building blocks shared by models: losses and NMS."""
from .loss import YOLOV3Loss  # noqa: F401
from .nms import box_nms  # noqa: F401
