"""Neural-network building blocks shared by models: losses, NMS, norm layers, gradient checkpointing."""
from .loss import YOLOV3Loss  # noqa: F401
from .norm import BatchNorm2d, FrozenBatchNorm2d, convert_frozen_bn, freeze_bn, set_running_var_rule  # noqa: F401
from .sync_bn import CrossGPUBatchNorm2d  # noqa: F401
from .rcnn_loss import FasterRCNNLoss, smooth_label_cross_entropy  # noqa: F401
from .grad_checkpoint import set_grad_checkpointing  # noqa: F401
