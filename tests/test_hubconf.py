"""hubconf.py: every registered name is a torch.hub entry point of a local checkout."""
import importlib.util
import os

import torch

from gluon_bof.model_zoo import get_model, list_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_registered_name_is_an_entry_point():
    # torch.hub.list/help read GitHub repositories only: import the file as torch.hub does
    spec = importlib.util.spec_from_file_location("hubconf", os.path.join(ROOT, "hubconf.py"))
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    entries = sorted(n for n in dir(hub) if callable(getattr(hub, n)) and not n.startswith("_"))
    assert entries == list_models()
    assert "get_model('resnet18_v1b'" in hub.resnet18_v1b.__doc__
    assert all(importlib.util.find_spec(m) for m in hub.dependencies)


def test_hub_load_builds_the_registered_models():
    torch.manual_seed(0)
    yolo = torch.hub.load(ROOT, "yolo3_mobilenet0.25_voc", source="local", pretrained=False)
    torch.manual_seed(0)
    same = get_model("yolo3_mobilenet0.25_voc")
    assert type(yolo).__name__ == "YOLOV3" and yolo.classes == same.classes
    for (key, a), b in zip(yolo.state_dict().items(), same.state_dict().values()):
        assert torch.equal(a, b), key
    net = torch.hub.load(ROOT, "mobilenet0.25", source="local", classes=3)  # keyword arguments pass through
    with torch.no_grad():
        assert net.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
