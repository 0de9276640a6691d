"""torch.hub entry points: every model of gluon-bof's registry, by its (GluonCV) name.

    import torch
    net = torch.hub.load('/path/to/gluon-bof', 'yolo3_darknet53_voc', source='local', pretrained=False)
    net = torch.hub.load('/path/to/gluon-bof', 'faster_rcnn_resnet50_v1b_voc', source='local',
                         pretrained=True)          # GluonCV's weights, through the weights store
    net = torch.hub.load('/path/to/gluon-bof', 'mobilenet0.25', source='local', classes=10)

Keyword arguments go to ``gluon_bof.model_zoo.get_model`` (``pretrained=True`` / a weights file,
``classes=[...]`` for ``*_custom``, ``norm_layer=...``). Names with dots (``mobilenet1.0``) work
with ``torch.hub.load``, which looks entry points up by name.
"""
dependencies = ["torch", "torchvision", "numpy", "cv2"]

from gluon_bof.model_zoo import get_model as _get_model, list_models as _list_models  # noqa: E402


def _entrypoint(name):
    def build(**kwargs):
        return _get_model(name, **kwargs)
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"gluon-bof's {name!r}: gluon_bof.model_zoo.get_model({name!r}, **kwargs) "
                     f"(pretrained=False by default; True: GluonCV's weights, or a weights file).")
    return build


for _name in _list_models():
    globals()[_name] = _entrypoint(_name)
del _name
