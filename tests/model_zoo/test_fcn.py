"""FCN semantic segmentation (gluon_bof/model_zoo/fcn.py) against GluonCV 0.10.5.

GluonCV facts come from ``tests/fixtures/fcn.npz``, written by ``tests/fixtures/gen_fcn.py``:
each builder's parameter layout (names, order, shapes), counts and lr_mult-10 parameters, and
the eval-mode main and auxiliary logits of an FCN on ResNet-50 (21 classes, 48x80 input) whose
weights both sides draw with ``draw_params`` (tests/fixtures/random_weights.py).
"""
import hashlib
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from oracle import ORACLE, SKIP_REASON  # tests/fixtures/oracle.py: $GLUONCV_ORACLE_PYTHON or $GLUONCV_ORACLE_DIR
from random_weights import draw_images, draw_params  # tests/fixtures: shared with the generators
from torch import nn

from gluon_bof.model_zoo import fcn as fcn_module
from gluon_bof.model_zoo.gluoncv import _gluoncv_names, _mapping_for, export_gluoncv_params, load_gluoncv_params
from gluon_bof.model_zoo.mxnet_params import load_params, save_params
from gluon_bof.model_zoo.registry import get_model, list_models
from gluon_bof.nn.norm import FrozenBatchNorm2d

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FX = np.load(FIXTURES / "fcn.npz")
GLUONCV = ["fcn_resnet50_voc", "fcn_resnet101_voc", "fcn_resnet101_coco", "fcn_resnet50_ade", "fcn_resnet101_ade"]
ALL = GLUONCV + ["fcn_resnet18_ade"]
RTOL = 1e-4


def _names_shapes(net):
    sd = net.state_dict()
    return {g: tuple(sd[k].shape) for k, g in _gluoncv_names(net, _mapping_for(net)).items()}


def test_registry_has_gluoncv_fcn_builders():
    assert sorted(m for m in list_models() if m.startswith("fcn_")) == sorted(ALL)


@pytest.mark.parametrize("name", GLUONCV)
def test_layout_counts_and_head_lr_mult_match_gluoncv(name):
    """GluonCV names in save_parameters order, shapes, element counts; the heads are the
    parameters GluonCV trains at lr_mult 10."""
    with torch.device("meta"):
        net = get_model(name)
    names = _names_shapes(net)
    text = "\n".join(f"{g} {','.join(str(s) for s in shape)}" for g, shape in names.items())
    assert hashlib.sha1(text.encode()).hexdigest() == str(FX[f"{name}/layout"])
    n_names, trainable, total = FX[f"{name}/counts"].tolist()
    assert len(names) == n_names
    assert sum(p.numel() for p in net.parameters()) == trainable
    assert sum(int(np.prod(s)) for s in names.values()) == total
    assert len(list(fcn_module.head_parameters(net))) == int(FX[f"{name}/lr_mult10"])
    assert net.nclass == (150 if name.endswith("_ade") else 21)


def test_backbone_is_gluoncvs_dilated_v1s():
    net = get_model("fcn_resnet50_ade", nclass=3)
    assert [net.conv1[i].out_channels for i in (0, 3, 6)] == [64, 64, 128]  # v1s deep stem
    assert net.layer3[0].conv2.stride == (1, 1) and net.layer3[1].conv2.dilation == (2, 2)
    assert net.layer4[0].conv2.dilation == (2, 2) and net.layer4[1].conv2.dilation == (4, 4)
    assert [type(m) for m in net.head.block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Conv2d]
    assert net.head.block[0].out_channels == 512 and net.auxlayer.block[0].out_channels == 256
    assert net.head.block[3].p == 0.1 and net.head.block[4].bias is not None and net.head.block[0].bias is None
    assert not hasattr(net, "fc") and get_model("fcn_resnet50_ade", aux=False).auxlayer is None
    # every registered FCN builds, runs and trains: tests/model_zoo/test_registry.py


def _parity_net(tmp_path, via_builder=False):
    seed, gain, nclass = int(FX["parity/seed"]), float(FX["parity/gain"]), int(FX["parity/nclass"])
    b, _, h, w = FX["parity/image_shape"].tolist()
    images = draw_images(seed, (b, h, w))
    np.testing.assert_allclose([images.sum(dtype=np.float64), images[0, 0, 0, :4].sum()],
                               FX["parity/image_checksum"], rtol=1e-6)
    with torch.device("meta"):
        names = _names_shapes(get_model("fcn_resnet50_voc", nclass=nclass))
    params = draw_params(list(names), names, seed, gain)
    path = tmp_path / "fcn.params"
    save_params(path, {n: params[n] for n in names})
    if via_builder:
        net = get_model("fcn_resnet50_voc", nclass=nclass, pretrained=str(path))
    else:
        net = get_model("fcn_resnet50_voc", nclass=nclass)
        result = load_gluoncv_params(net, path)
        assert not result.missing_keys and not result.unexpected_keys
    return net.eval(), torch.from_numpy(images), params


def test_main_and_aux_outputs_equal_gluoncvs(tmp_path):
    net, images, _ = _parity_net(tmp_path, via_builder=True)
    with torch.no_grad():
        main, aux = net(images)
    for ours, key in ((main, "parity/main"), (aux, "parity/aux")):
        ref = FX[key]
        assert ours.shape == ref.shape == (1, 21, 48, 80)  # resized to the (non-square) input
        assert np.abs(ours.numpy() - ref).max() / np.abs(ref).max() < RTOL
    torch.testing.assert_close(net.predict(images), main)


def test_export_round_trip(tmp_path):
    """Our weights as GluonCV's .params and back (GluonCV's own loading of an export: the slow
    test below); random BatchNorm statistics so that every buffer is a real value."""
    torch.manual_seed(0)
    net = get_model("fcn_resnet18_ade", nclass=5)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-.1, .1)
                m.running_var.uniform_(.5, 1.5)
    export_gluoncv_params(net, tmp_path / "export.params")
    exported = load_params(tmp_path / "export.params")
    assert list(exported) == list(_names_shapes(net)) and "head.block.1.gamma" in exported
    again = get_model("fcn_resnet18_ade", nclass=5)
    load_gluoncv_params(again, tmp_path / "export.params")
    for k, v in net.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, again.state_dict()[k]), k


def test_classifier_checkpoint_loads_as_backbone(tmp_path):
    """Table 9's hand-over: a train_imagenet.py checkpoint of resnet50_v1s (its own classes)
    loads into the dilated backbone (same shapes), without its fc."""
    from gluon_bof.training import save_model_checkpoint

    torch.manual_seed(0)
    cls = get_model("resnet50_v1s", classes=6)
    save_model_checkpoint(str(tmp_path / "cls.pth"), model=cls, model_name="resnet50_v1s", model_kwargs={"classes": 6})
    net = get_model("fcn_resnet50_ade", nclass=7, pretrained_base=str(tmp_path / "cls.pth"))
    for k, v in cls.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(net.state_dict()[k], v), k


def test_norm_layer_reaches_backbone_and_heads():
    net = get_model("fcn_resnet18_ade", nclass=4, norm_layer=FrozenBatchNorm2d)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert isinstance(net.head.block[1], FrozenBatchNorm2d) and isinstance(net.bn1, FrozenBatchNorm2d)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="backbone"):
        fcn_module.fcn("resnet9", 3)
    with pytest.raises(ValueError, match="normalization"):
        get_model("fcn_resnet18_ade").configure_loss(normalization="sum")
    with pytest.raises(ValueError, match="no FCN weights"):
        get_model("fcn_resnet18_ade", pretrained=True)


@pytest.mark.slow
@pytest.mark.skipif(not ORACLE.exists(), reason=SKIP_REASON)
def test_gluoncv_loads_our_export_and_agrees(tmp_path):
    """GluonCV's load_parameters (strict) accepts our fcn_resnet50_ade export; same outputs."""
    torch.manual_seed(0)
    net = get_model("fcn_resnet50_ade").eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-.1, .1)
                m.running_var.uniform_(.5, 1.5)
    export_gluoncv_params(net, tmp_path / "ours.params")
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        main, aux = net(x)
    np.savez(tmp_path / "io.npz", x=x.numpy(), main=main.numpy(), aux=aux.numpy())
    script = textwrap.dedent(f"""
        import mxnet as mx, numpy as np
        from gluoncv import model_zoo
        net = model_zoo.get_model('fcn_resnet50_ade', pretrained_base=False, crop_size=40)
        net.load_parameters('{tmp_path}/ours.params')
        io = np.load('{tmp_path}/io.npz')
        main, aux = (o.asnumpy() for o in net(mx.nd.array(io['x'])))
        err = max(np.abs(main - io['main']).max() / np.abs(io['main']).max(),
                  np.abs(aux - io['aux']).max() / np.abs(io['aux']).max())
        print('maxrel', err)
        assert err < 1e-4
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    res = subprocess.run([str(ORACLE), "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0 and "maxrel" in res.stdout, res.stderr[-2000:]
