"""Box operations, the one home of each (as torchvision.ops): overlap in the exact and GluonCV's +1
forms (:mod:`.boxes`), the R-CNN box coder (:mod:`.coder`), NMS and degenerate-box filtering
(:mod:`.nms`). The lowest layer of the package: it imports nothing of gluon_bof."""
from .boxes import bbox_iou, paired_iou  # noqa: F401
from .coder import RCNN_STDS, RPN_STDS, clip_boxes, decode_boxes, encode_boxes  # noqa: F401
from .nms import MIN_BOX_SIZE, box_nms, non_degenerate  # noqa: F401
