"""ResNet V1 family (gluon_bof/model_zoo/resnetv1.py): GluonCV's ``ResNetV1`` ("ResNet-A").

GluonCV facts come from ``tests/fixtures/classifiers_v1.npz``, written by
``tests/fixtures/gen_classifiers_v1.py`` (GluonCV 0.10.5 on MXNet 1.9.1): each builder's parameter
layout (names, order, shapes) and counts, and eval-mode logits of random networks whose weights
both sides draw with ``draw_params`` (tests/fixtures/random_weights.py).
"""
import hashlib
import os
import re
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from classifier_case import case_inputs, max_rel  # tests/fixtures
from gluon_bof.model_zoo import model_store, resnetv1
from gluon_bof.model_zoo.gluoncv import (_gluoncv_names, _mapping_for, export_gluoncv_params,
                                         load_gluoncv_params)
from gluon_bof.model_zoo.mxnet_params import load_params, save_params
from gluon_bof.model_zoo.registry import get_model, list_models
from gluon_bof.nn.norm import FrozenBatchNorm2d

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
from oracle import ORACLE  # tests/fixtures/oracle.py: $GLUONCV_ORACLE_PYTHON or $GLUONCV_ORACLE_DIR
FX = np.load(FIXTURES / "classifiers_v1.npz")
ALL = [f"resnet{d}_v1" for d in (18, 34, 50, 101, 152)]
# Float32 eval-mode forward of the same weights: MXNet and torch sum the convolutions in other
# orders (~1e-7 relative per op). Measured: 5.4e-7 (resnet18_v1) and 6.6e-7 (resnet50_v1) of the
# largest logit. 1e-4 leaves room for other BLAS builds and stays far below a layout error (a
# wrong stride, pad or bias changes the logits by O(1)).
RTOL = 1e-4
# GluonCV's published ImageNet weights: the hashtags of its docs' ResNet.csv (Top-1 70.93, 74.37,
# 77.36, 78.34, 79.22), which must be the first 8 digits of our sha1 table's entries
HASHTAGS = {"resnet18_v1": "a0666292", "resnet34_v1": "48216ba9", "resnet50_v1": "cc729d95",
            "resnet101_v1": "d988c13d", "resnet152_v1": "acfd0970"}


def test_registry_has_every_gluoncv_builder():
    assert [m for m in list_models() if re.fullmatch(r"resnet\d+_v1", m)] == sorted(ALL)
    for name in ALL:
        assert model_store.short_hash(name) == HASHTAGS[name]


def layout_digest(net):
    """``(sha1 of "<GluonCV name> <shape>" lines, {our key: GluonCV name})``, as the generator's."""
    sd = net.state_dict()
    names = _gluoncv_names(net, _mapping_for(net))
    text = "\n".join(f"{g} {','.join(str(s) for s in sd[k].shape)}" for k, g in names.items())
    return hashlib.sha1(text.encode()).hexdigest(), names


@pytest.mark.parametrize("name", ALL)
def test_layout_and_counts_match_gluoncv(name):
    """GluonCV's names (norm weight/bias -> gamma/beta), order and shapes, and its element counts;
    built on the meta device (no memory, no init time)."""
    with torch.device("meta"):
        net = get_model(name)
    digest, names = layout_digest(net)
    assert digest == str(FX[f"{name}/layout"])
    n_names, trainable, total = FX[f"{name}/counts"].tolist()
    sd = net.state_dict()
    assert len(names) == n_names
    assert sum(p.numel() for p in net.parameters()) == trainable
    assert sum(sd[k].numel() for k in names) == total


def test_resnet_a_puts_the_stride_on_the_first_1x1_conv():
    """Bag of Tricks Fig. 2a: ResNet-A downsamples in the bottleneck's first 1x1 conv (v1b: in the
    3x3). GluonCV's 1x1 convs of the bottleneck carry a bias; its 3x3 and shortcut convs do not."""
    net = get_model("resnet50_v1")
    for stage in (5, 6, 7):
        body, down = net.features[stage][0].body, net.features[stage][0].downsample
        assert body[0].kernel_size == (1, 1) and body[0].stride == (2, 2)
        assert body[3].kernel_size == (3, 3) and body[3].stride == (1, 1)
        assert down[0].stride == (2, 2) and down[0].bias is None
        assert body[0].bias is not None and body[6].bias is not None and body[3].bias is None
    first = net.features[4][0]  # stage 1: stride 1, projection 64 -> 256
    assert first.body[0].stride == (1, 1) and first.downsample[0].out_channels == 256
    assert net.features[4][1].downsample is None
    assert [type(m) for m in net.features[:4]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    basic = get_model("resnet18_v1")
    assert isinstance(basic.features[4][0], resnetv1.BasicBlockV1)
    assert basic.features[4][0].downsample is None and basic.features[5][0].body[0].stride == (2, 2)
    with torch.no_grad():
        assert basic.eval().forward_features(torch.randn(1, 3, 96, 64)).shape == (1, 512, 3, 2)


# forward and backward of every depth on a 32x32 input; 101 and 152 (7-10 s here) in the slow suite
@pytest.mark.parametrize("name", [n if n in ("resnet18_v1", "resnet34_v1", "resnet50_v1")
                                  else pytest.param(n, marks=pytest.mark.slow) for n in ALL])
def test_forward_backward(name):
    torch.manual_seed(0)
    net = get_model(name, classes=7).train()
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_thumbnail_stem():
    net = get_model("resnet18_v1", thumbnail=True, classes=10)
    assert isinstance(net.features[0], nn.Conv2d) and net.features[0].stride == (1, 1)
    assert isinstance(net.features[1][0], resnetv1.BasicBlockV1)
    with torch.no_grad():
        assert net.eval().forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 512, 4, 4)


@pytest.mark.parametrize("norm_layer", [nn.BatchNorm2d, FrozenBatchNorm2d])
def test_last_gamma_block_is_relu_of_shortcut(norm_layer):
    torch.manual_seed(0)
    x = torch.randn(2, 64, 8, 8)
    for block, out_ch, stride in ((resnetv1.BasicBlockV1, 64, 1), (resnetv1.BasicBlockV1, 128, 2),
                                  (resnetv1.BottleneckV1, 64, 1), (resnetv1.BottleneckV1, 256, 2)):
        blk = block(64, out_ch, stride, out_ch != 64, norm_layer, last_gamma=True).train()
        shortcut = x if blk.downsample is None else blk.downsample(x)
        torch.testing.assert_close(blk(x), torch.relu(shortcut), rtol=0, atol=0)
    net = get_model("resnet50_v1", last_gamma=True, norm_layer=norm_layer)
    blocks = [m for m in net.modules() if isinstance(m, resnetv1.BottleneckV1)]
    assert len(blocks) == 16 and all(not m.body[7].weight.any() for m in blocks)
    assert all(m.body[4].weight.all() for m in blocks)
    assert get_model("resnet50_v1").features[4][0].body[7].weight.all()


def _parity_net(key, tmp_path):
    params, images = case_inputs(FX, key)
    path = tmp_path / f"{key}.params"
    save_params(path, params)  # GluonCV's save_parameters order
    if key == "resnet50_v1":  # through the builder's pretrained=<file>
        net = get_model(key, pretrained=str(path))
    else:
        net = get_model(key)
        result = load_gluoncv_params(net, path)
        assert not result.missing_keys and not result.unexpected_keys
    return net.eval(), torch.from_numpy(images), params


@pytest.mark.parametrize("key", ["resnet18_v1", "resnet50_v1"])
def test_gluoncv_logits_parity(key, tmp_path):
    net, images, _ = _parity_net(key, tmp_path)
    with torch.no_grad():
        logits = net(images).numpy()
    ref = FX[f"{key}/logits"]
    assert logits.shape == ref.shape
    assert max_rel(logits, ref) < RTOL


def test_export_load_round_trip(tmp_path):
    """Export writes GluonCV's names, order and values; loading the export into a fresh model
    reproduces the weights and outputs exactly."""
    net, images, params = _parity_net("resnet18_v1", tmp_path)
    export_gluoncv_params(net, tmp_path / "export.params")
    exported = load_params(tmp_path / "export.params")
    text = "\n".join(f"{n} {','.join(str(s) for s in a.shape)}" for n, a in exported.items())
    assert hashlib.sha1(text.encode()).hexdigest() == str(FX["resnet18_v1/layout"])
    for n, arr in params.items():
        np.testing.assert_array_equal(exported[n], arr)
    again = get_model("resnet18_v1")
    load_gluoncv_params(again, tmp_path / "export.params")
    for k, v in net.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    with torch.no_grad():
        assert torch.equal(again.eval()(images), net(images))


def test_pretrained_true_goes_through_the_weights_store(tmp_path, monkeypatch):
    """pretrained=True fetches ``resnet18_v1-<hash8>.params`` (here from a local mirror holding
    our export, registered under its own sha1) and loads it."""
    net, images, _ = _parity_net("resnet18_v1", tmp_path)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    export_gluoncv_params(net, tmp_path / "w.params")
    sha1 = hashlib.sha1((tmp_path / "w.params").read_bytes()).hexdigest()
    os.replace(tmp_path / "w.params", mirror / f"resnet18_v1-{sha1[:8]}.params")
    monkeypatch.setitem(model_store.MODEL_SHA1, "resnet18_v1", sha1)
    monkeypatch.setenv("GLUON_BOF_MIRROR", str(mirror))
    monkeypatch.setenv("GLUON_BOF_HOME", str(tmp_path / "home"))
    loaded = get_model("resnet18_v1", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(loaded(images), net(images))


@pytest.mark.slow
@pytest.mark.skipif(not ORACLE.exists(), reason="needs the GluonCV/MXNet oracle venv")
def test_gluoncv_loads_our_export_and_agrees(tmp_path):
    """GluonCV's load_parameters (strict) accepts our resnet50_v1 export; same logits."""
    net, images, _ = _parity_net("resnet50_v1", tmp_path)
    export_gluoncv_params(net, tmp_path / "ours.params")
    with torch.no_grad():
        np.savez(tmp_path / "io.npz", x=images.numpy(), y=net(images).numpy())
    script = textwrap.dedent(f"""
        import mxnet as mx, numpy as np
        from gluoncv import model_zoo
        net = model_zoo.get_model('resnet50_v1')
        net.load_parameters('{tmp_path}/ours.params')
        io = np.load('{tmp_path}/io.npz')
        y = net(mx.nd.array(io['x'])).asnumpy()
        err = np.abs(y - io['y']).max() / np.abs(io['y']).max()
        print('maxrel', err)
        assert err < {RTOL}
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    res = subprocess.run([str(ORACLE), "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0 and "maxrel" in res.stdout, res.stderr[-2000:]
