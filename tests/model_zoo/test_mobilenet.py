"""Tests of gluon_bof/model_zoo/mobilenet.py against GluonCV's MobileNet (counts, names, layout)."""
import pytest
import torch
from torch import nn

from gluon_bof.model_zoo import mobilenet  # noqa: F401  (registers the builders)
from gluon_bof.model_zoo.registry import get_model

# printed once from GluonCV 0.10.5: trainable parameters per width (137 names each)
GLUONCV_TRAINABLE = {"mobilenet1.0": 4231976, "mobilenet0.75": 2585560,
                     "mobilenet0.5": 1331592, "mobilenet0.25": 470072}
GLUONCV_BN_STATS = {"mobilenet1.0": 21888, "mobilenet0.25": 5472}


@pytest.mark.parametrize("name", sorted(GLUONCV_TRAINABLE))
def test_counts_names_forward_backward(name):
    net = get_model(name, classes=7)
    ref = get_model(name)
    assert sum(p.numel() for p in ref.parameters()) == GLUONCV_TRAINABLE[name]
    if name in GLUONCV_BN_STATS:
        stats = sum(b.numel() for k, b in ref.named_buffers() if "running" in k)
        assert stats == GLUONCV_BN_STATS[name]
    keys = [k for k in ref.state_dict() if not k.endswith("num_batches_tracked")]
    assert len(keys) == 137
    assert keys[:6] == ["features.0.weight", "features.1.weight", "features.1.bias",
                        "features.1.running_mean", "features.1.running_var", "features.3.weight"]
    assert keys[-2:] == ["output.weight", "output.bias"]
    out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(net.features[0].weight.grad).all()


def test_layout_and_yolo_cuts():
    net = get_model("mobilenet0.25")
    f = net.features
    assert len(f) == 83
    assert isinstance(f[81], nn.AdaptiveAvgPool2d) and isinstance(f[82], nn.Flatten)
    assert f[3].groups == 8 and f[3].weight.shape == (8, 1, 3, 3)  # first depthwise conv
    assert all(m.bias is None for m in f if isinstance(m, nn.Conv2d))
    x = torch.randn(1, 3, 64, 64)
    x8 = f[:33](x)
    x16 = f[33:69](x8)
    x32 = f[69:81](x16)
    assert x8.shape == (1, 64, 8, 8) and x16.shape == (1, 128, 4, 4) and x32.shape == (1, 256, 2, 2)
