"""ResNet V1b family (gluon_bof/model_zoo/resnetv1b.py) and frozen BatchNorm (gluon_bof/nn/norm.py).

GluonCV facts come from ``tests/fixtures/resnet.npz``, written by ``tests/fixtures/gen_resnet.py``
(GluonCV 0.10.5 on MXNet): each builder's parameter layout (names, order, shapes) and counts, and
eval-mode logits of networks whose weights both sides draw with ``draw_params`` of
``tests/fixtures/gen_yolo3.py`` (imported from there, so the recipe cannot drift).
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

from random_weights import draw_images, draw_params  # tests/fixtures: shared with the generators
from torch import nn

from gluon_bof.model_zoo import resnetv1b
from gluon_bof.model_zoo.gluoncv import (_gluoncv_names, _mapping_for, export_gluoncv_params,
                                         load_gluoncv_params)
from gluon_bof.model_zoo.mxnet_params import load_params, save_params
from gluon_bof.model_zoo.registry import get_model, list_models
from gluon_bof.nn.norm import FrozenBatchNorm2d, convert_frozen_bn, freeze_bn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
from oracle import ORACLE  # tests/fixtures/oracle.py: $GLUONCV_ORACLE_PYTHON or $GLUONCV_ORACLE_DIR
FX = np.load(FIXTURES / "resnet.npz")
RTOL = 1e-4


ALL = ([f"resnet{d}_v1b" for d in (18, 34, 50, 101, 152)]
       + [f"resnet{d}_v1{v}" for v in "cdes" for d in (50, 101, 152)])
# forward/backward of these in the fast suite: every block, stem and shortcut kind once
FAST = ["resnet18_v1b", "resnet50_v1b", "resnet50_v1d", "resnet50_v1e"]


def _slow_if_big(names):
    return [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in names]


def test_registry_has_every_gluoncv_builder():
    assert sorted(ALL) == [m for m in list_models() if re.fullmatch(r"resnet\d+_v1[a-z]", m)]


@pytest.mark.parametrize("name", ALL)
def test_layout_and_counts_match_gluoncv(name):
    """GluonCV names (norm weight/bias -> gamma/beta), their order and shapes, and the element
    counts equal GluonCV's; built on the meta device (no memory, no init time)."""
    with torch.device("meta"):
        net = get_model(name)
    sd = net.state_dict()
    names = _gluoncv_names(net, _mapping_for(net))
    text = "\n".join(f"{g} {','.join(str(s) for s in sd[k].shape)}" for k, g in names.items())
    assert hashlib.sha1(text.encode()).hexdigest() == str(FX[f"{name}/layout"])
    n_names, trainable, total = FX[f"{name}/counts"].tolist()
    assert len(names) == n_names
    assert sum(p.numel() for p in net.parameters()) == trainable
    assert sum(sd[k].numel() for k in names) == total


def test_resnet50_sizes_match_the_paper():
    """Bag of Tricks, Table 5: about 25 M parameters for every ResNet-50 tweak (GluonCV's exact
    counts, also checked above: v1b 25,557,032; v1c/v1d 25,576,264; v1e/v1s 25,680,808)."""
    for name in ("resnet50_v1b", "resnet50_v1c", "resnet50_v1d"):
        assert 25.5e6 <= int(FX[f"{name}/counts"][1]) <= 25.6e6
    for name in ("resnet50_v1e", "resnet50_v1s"):  # the 64-64-128 stem adds 104,544
        assert int(FX[f"{name}/counts"][1]) - int(FX["resnet50_v1d/counts"][1]) == 104_544


@pytest.mark.parametrize("name", _slow_if_big(ALL))
def test_forward_backward(name):
    torch.manual_seed(0)
    net = get_model(name, classes=7).train()
    out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_batch_of_one_eval_and_feature_strides():
    net = get_model("resnet18_v1b").eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
        assert net.forward_features(torch.randn(1, 3, 96, 64)).shape == (1, 512, 3, 2)
    dil = get_model("resnet50_v1d", dilated=True).eval()
    with torch.no_grad():
        assert dil.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 2048, 8, 8)
    assert dil.layer3[0].conv2.dilation == (1, 1) and dil.layer3[1].conv2.dilation == (2, 2)
    assert dil.layer4[0].conv2.dilation == (2, 2) and dil.layer4[1].conv2.dilation == (4, 4)


def _types(seq):
    return [type(m) for m in seq]


def test_stems_and_shortcuts():
    conv, bn, relu = nn.Conv2d, nn.BatchNorm2d, nn.ReLU
    b, c, d, e, s = (get_model(f"resnet50_v1{v}") for v in "bcdes")
    assert isinstance(b.conv1, conv) and b.conv1.kernel_size == (7, 7) and b.conv1.stride == (2, 2)
    for net, width in ((c, 32), (d, 32), (e, 64), (s, 64)):
        assert _types(net.conv1) == [conv, bn, relu, conv, bn, relu, conv]
        assert [net.conv1[i].out_channels for i in (0, 3, 6)] == [width, width, 2 * width]
        assert [net.conv1[i].stride for i in (0, 3, 6)] == [(2, 2), (1, 1), (1, 1)]
        assert net.bn1.num_features == 2 * width
    for net in (b, c, d, e, s):  # v1b: the stride sits on the 3x3 conv
        assert net.layer2[0].conv1.stride == (1, 1) and net.layer2[0].conv2.stride == (2, 2)
    for net in (b, c, s):  # strided 1x1 projection
        assert _types(net.layer2[0].downsample) == [conv, bn]
        assert net.layer2[0].downsample[0].stride == (2, 2)
    for net in (d, e):  # average pool, then a stride-1 1x1 conv
        ds = net.layer2[0].downsample
        assert _types(ds) == [nn.AvgPool2d, conv, bn] and ds[1].stride == (1, 1)
        assert (ds[0].kernel_size, ds[0].stride, ds[0].ceil_mode, ds[0].count_include_pad) == (
            2, 2, True, False)
        assert _types(net.layer1[0].downsample) == [nn.Identity, conv, bn]  # stride 1 stage
    assert get_model("resnet18_v1b").layer1[0].downsample is None


def test_avg_down_ceil_mode_divides_by_valid_cells():
    """A 3x3 map pooled 2x2 with ceil mode: the border windows average only the cells inside."""
    pool = get_model("resnet50_v1d").layer2[0].downsample[0]
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    expected = torch.tensor([[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8.0]])
    torch.testing.assert_close(pool(x)[0, 0], expected)


@pytest.mark.parametrize("norm_layer", [nn.BatchNorm2d, FrozenBatchNorm2d])
def test_last_gamma_block_is_relu_of_shortcut(norm_layer):
    torch.manual_seed(0)
    x = torch.randn(2, 256, 8, 8)
    blk = resnetv1b.BottleneckV1b(256, 64, norm_layer=norm_layer, last_gamma=True).train()
    torch.testing.assert_close(blk(x), torch.relu(x), rtol=0, atol=0)
    ds = nn.Sequential(nn.Conv2d(256, 512, 1, 2, bias=False), norm_layer(512))
    blk = resnetv1b.BottleneckV1b(256, 128, stride=2, downsample=ds, norm_layer=norm_layer,
                                  last_gamma=True).train()
    torch.testing.assert_close(blk(x), torch.relu(ds(x)), rtol=0, atol=0)
    basic = resnetv1b.BasicBlockV1b(64, 64, norm_layer=norm_layer, last_gamma=True)
    torch.testing.assert_close(basic(x[:, :64]), torch.relu(x[:, :64]), rtol=0, atol=0)
    net = get_model("resnet50_v1d", last_gamma=True, norm_layer=norm_layer)
    blocks = [m for m in net.modules() if isinstance(m, resnetv1b.BottleneckV1b)]
    assert len(blocks) == 16 and all(not m.bn3.weight.any() for m in blocks)
    assert all(m.bn2.weight.all() for m in blocks)
    assert get_model("resnet50_v1d").layer1[0].bn3.weight.all()


def _random_stats(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                for t, lo, hi in ((m.weight, .5, 1.5), (m.bias, -.1, .1),
                                  (m.running_mean, -.1, .1), (m.running_var, .5, 1.5)):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
    return net


def test_frozen_bn_has_no_parameters_and_keeps_statistics():
    net = get_model("resnet18_v1b", norm_layer=FrozenBatchNorm2d)
    bns = [m for m in net.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(bns) == 20 and all(m.eps == 1e-5 for m in bns)
    owners = {type(m) for m in net.modules() if any(True for _ in m.parameters(recurse=False))}
    assert owners == {nn.Conv2d, nn.Linear}
    # GluonCV's trainable count less gamma and beta (as many elements as the running statistics)
    _, trainable, total = FX["resnet18_v1b/counts"].tolist()
    assert sum(p.numel() for p in net.parameters()) == trainable - (total - trainable)
    _random_stats(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()(torch.randn(2, 3, 64, 64)).sum().backward()
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the same GluonCV names as with BatchNorm2d: GluonCV weights load either way
    ref = get_model("resnet18_v1b")
    assert list(_gluoncv_names(net, _mapping_for(net)).values()) == list(
        _gluoncv_names(ref, _mapping_for(ref)).values())


def test_convert_frozen_bn_equals_eval_batchnorm():
    torch.manual_seed(0)
    net = _random_stats(get_model("resnet50_v1d", classes=10)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = net(x)
    frozen = freeze_bn(net).train()  # stays frozen in train mode
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), expected, rtol=1e-5, atol=1e-5)
    single = convert_frozen_bn(nn.BatchNorm2d(4, eps=1e-3))
    assert isinstance(single, FrozenBatchNorm2d) and single.eps == 1e-3


def _parity_case(key, tmp_path, **load_kwargs):
    builder, kwargs = key.split("_dilated")[0], {"dilated": True} if "dilated" in key else {}
    seed, gain = int(FX[f"{key}/seed"]), float(FX[f"{key}/gain"])
    b, _, h, w = FX[f"{key}/image_shape"].tolist()
    images = draw_images(seed, (b, h, w))
    np.testing.assert_allclose([images.sum(dtype=np.float64), images[0, 0, 0, :4].sum()],
                               FX[f"{key}/image_checksum"], rtol=1e-6)
    with torch.device("meta"):  # names and shapes only (equal to GluonCV's, checked above)
        layout = get_model(builder, **kwargs)
    sd = layout.state_dict()
    names = {g: tuple(sd[k].shape) for k, g in _gluoncv_names(layout, _mapping_for(layout)).items()}
    params = draw_params(list(names), names, seed, gain)
    path = tmp_path / f"{key}.params"
    save_params(path, {n: params[n] for n in names})  # GluonCV's save_parameters order
    if load_kwargs.get("via_builder"):
        net = get_model(builder, pretrained=str(path), **kwargs)
    else:
        net = get_model(builder, **kwargs)
        result = load_gluoncv_params(net, path)
        assert not result.missing_keys and not result.unexpected_keys
    return net.eval(), torch.from_numpy(images), params


PARITY = ["resnet18_v1b", "resnet50_v1b", "resnet50_v1d",
          pytest.param("resnet50_v1c", marks=pytest.mark.slow),
          pytest.param("resnet50_v1d_dilated", marks=pytest.mark.slow),
          pytest.param("resnet50_v1e", marks=pytest.mark.slow),
          pytest.param("resnet101_v1d", marks=pytest.mark.slow)]


@pytest.mark.parametrize("key", PARITY)
def test_gluoncv_logits_parity(key, tmp_path):
    net, images, _ = _parity_case(key, tmp_path, via_builder=key == "resnet50_v1b")
    with torch.no_grad():
        logits = net(images).numpy()
    ref = FX[f"{key}/logits"]
    assert logits.shape == ref.shape
    assert np.abs(logits - ref).max() / np.abs(ref).max() < RTOL


def test_export_writes_gluoncv_names_and_values(tmp_path):
    net, _, params = _parity_case("resnet18_v1b", tmp_path)
    export_gluoncv_params(net, tmp_path / "export.params")
    exported = load_params(tmp_path / "export.params")
    text = "\n".join(f"{n} {','.join(str(s) for s in a.shape)}" for n, a in exported.items())
    assert hashlib.sha1(text.encode()).hexdigest() == str(FX["resnet18_v1b/layout"])
    for n, arr in params.items():
        np.testing.assert_array_equal(exported[n], arr)


@pytest.mark.slow
@pytest.mark.skipif(not ORACLE.exists(), reason="needs the GluonCV/MXNet oracle venv")
def test_gluoncv_loads_our_export_and_agrees(tmp_path):
    """GluonCV's load_parameters (strict) accepts our resnet50_v1d export; same logits."""
    torch.manual_seed(0)
    net = _random_stats(get_model("resnet50_v1d")).eval()
    export_gluoncv_params(net, tmp_path / "ours.params")
    x = torch.randn(1, 3, 72, 72)
    with torch.no_grad():
        np.savez(tmp_path / "io.npz", x=x.numpy(), y=net(x).numpy())
    script = textwrap.dedent(f"""
        import mxnet as mx, numpy as np
        from gluoncv import model_zoo
        net = model_zoo.get_model('resnet50_v1d')
        net.load_parameters('{tmp_path}/ours.params')
        io = np.load('{tmp_path}/io.npz')
        y = net(mx.nd.array(io['x'])).asnumpy()
        err = np.abs(y - io['y']).max() / np.abs(io['y']).max()
        print('maxrel', err)
        assert err < 1e-4
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    res = subprocess.run([str(ORACLE), "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0 and "maxrel" in res.stdout, res.stderr[-2000:]
