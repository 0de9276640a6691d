"""gluon-bof: the Bag of Freebies for object detection, on PyTorch, in GluonCV's style."""
__version__ = "0.1.0"

from . import data, model_zoo, nn, utils  # noqa: E402,F401
