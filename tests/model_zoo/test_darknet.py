"""Tests of gluon_bof/model_zoo/darknet.py against GluonCV's DarknetV3 (counts, names, layout)."""
import functools

import pytest
import torch
from torch import nn

from gluon_bof.model_zoo import darknet  # noqa: F401  (registers the builder)
from gluon_bof.model_zoo.registry import get_model

# printed once from GluonCV 0.10.5 (net._collect_params_with_prefix()): trainable parameters,
# BatchNorm running statistics, number of parameter names
GLUONCV_TRAINABLE = 41609928
GLUONCV_BN_STATS = 35712
GLUONCV_NUM_NAMES = 262


def _gluoncv_names(net):
    """Our state-dict names as GluonCV writes them (gamma/beta), without num_batches_tracked."""
    norms = {n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)}
    out = []
    for key in net.state_dict():
        mod, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        if mod in norms:
            leaf = {"weight": "gamma", "bias": "beta"}.get(leaf, leaf)
        out.append(f"{mod}.{leaf}")
    return out


def test_counts_and_names_match_gluoncv():
    net = get_model("darknet53")
    assert sum(p.numel() for p in net.parameters()) == GLUONCV_TRAINABLE
    assert sum(b.numel() for k, b in net.named_buffers() if "running" in k) == GLUONCV_BN_STATS
    names = _gluoncv_names(net)
    assert len(names) == GLUONCV_NUM_NAMES
    for name in ("features.0.0.weight", "features.0.1.gamma", "features.1.1.running_var",
                 "features.2.body.0.0.weight", "features.28.body.1.1.beta", "output.weight",
                 "output.bias"):
        assert name in names
    assert net.state_dict()["features.2.body.0.0.weight"].shape == (32, 64, 1, 1)
    assert net.output.weight.shape == (1000, 1024)
    assert len(net.features) == 29


def test_cells_are_conv_bn_leaky():
    net = get_model("darknet53")
    conv, bn, act = net.features[1]
    assert conv.bias is None and conv.stride == (2, 2) and conv.kernel_size == (3, 3)
    assert bn.eps == 1e-5 and bn.momentum == pytest.approx(0.1)  # MXNet momentum .9
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == pytest.approx(0.1)
    blocks = [type(m).__name__ for m in net.features]
    assert blocks.count("DarknetBasicBlockV3") == 1 + 2 + 8 + 8 + 4


def test_forward_backward_and_stage_strides():
    net = get_model("darknet53", classes=10)
    shapes = {}

    def record(i):
        def hook(module, inputs, output):
            shapes[i] = tuple(output.shape)
        return hook

    for i in (14, 23, 28):
        net.features[i].register_forward_hook(record(i))
    out = net(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    assert shapes == {14: (1, 256, 8, 8), 23: (1, 512, 4, 4), 28: (1, 1024, 2, 2)}
    out.sum().backward()
    assert torch.isfinite(net.features[0][0].weight.grad).all()


def test_norm_layer_is_an_argument():
    norm = functools.partial(nn.BatchNorm2d, momentum=0.01)
    net = get_model("darknet53", norm_layer=norm)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 52 and all(m.momentum == 0.01 for m in bns)
