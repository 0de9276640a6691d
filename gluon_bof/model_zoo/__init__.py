"""Model zoo: registered builders with GluonCV's names (``get_model``, ``list_models``), and
GluonCV weight interop (``load_gluoncv_params``, ``export_gluoncv_params``, MXNet ``.params`` I/O)."""
from .registry import get_model, list_models, register_model  # noqa: F401
from . import darknet, fcn, inception, mobilenet, rcnn, resnetv1, resnetv1b, yolo3  # noqa: F401,E402  (registers the builders)
from .gluoncv import (GluonCVLoadResult, GluonCVMapping, export_gluoncv_params, gluoncv_state,  # noqa: F401,E402
                      load_gluoncv_params, register_gluoncv_mapping)
from .mxnet_params import (MXNetParams, MXNetParamsError, load_params, read_ndarray_list,  # noqa: F401,E402
                           save_params, write_ndarray_list)
from .darknet import DarknetV3  # noqa: F401,E402
from .inception import Inception3  # noqa: F401,E402
from .mobilenet import MobileNet  # noqa: F401,E402
from .rcnn import FasterRCNN  # noqa: F401,E402
from .resnetv1 import BasicBlockV1, BottleneckV1, ResNetV1  # noqa: F401,E402
from .resnetv1b import BasicBlockV1b, BottleneckV1b, ResNetV1b  # noqa: F401,E402
from . import model_store, zoo_table  # noqa: F401,E402
from .model_store import ModelStoreError, get_model_file, load_pretrained, load_weights_file  # noqa: F401,E402
from .yolo3 import COCO_CLASSES, VOC_CLASSES, YOLOV3  # noqa: F401,E402
