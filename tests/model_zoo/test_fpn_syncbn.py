"""MegDet's detector by GluonCV's names: faster_rcnn_fpn_syncbn_{resnet50_v1b,resnet101_v1d}_coco
(gluon_bof/model_zoo/rcnn/predefined.py) against GluonCV 0.10.5's own builders.

Fixture ``tests/fixtures/fpn_syncbn.npz`` from ``tests/fixtures/gen_fpn_syncbn.py``: the sorted
names and shapes GluonCV saves (a sha1), its element counts, and eval-mode outputs of the r50
model with weights drawn by ``draw_syncbn_params`` (the FPN, RPN head and box head; the
multi-level pooling and NMS are shared with the plain FPN model, test_fpn_parity.py).
"""
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gluon_bof.model_zoo import ModelStoreError, export_gluoncv_params, load_gluoncv_params
from gluon_bof.model_zoo.gluoncv import _gluoncv_names, _mapping_for
from gluon_bof.model_zoo.mxnet_params import load_params
from gluon_bof.model_zoo.rcnn.predefined import fpn_syncbn_options
from gluon_bof.model_zoo.registry import get_model, list_models
from random_weights import draw_images, draw_params

FX = np.load(Path(__file__).resolve().parents[1] / "fixtures" / "fpn_syncbn.npz")
NAMES = ("faster_rcnn_fpn_syncbn_resnet50_v1b_coco", "faster_rcnn_fpn_syncbn_resnet101_v1d_coco")
FPN_GAMMA = re.compile(r"features\.P\d_\w*bn_gamma")


def draw_syncbn_params(names, shapes, seed, gain):
    """tests/fixtures/gen_fpn_syncbn.py's ``draw_syncbn_params`` (must stay identical)."""
    alias = {re.sub(r"_(weight|bias|gamma|beta|running_mean|running_var)$", r".\1",
                    re.sub(r"_moving_(mean|var)$", r"_running_\1", n)): n for n in names}
    drawn = draw_params(list(alias), {a: shapes[n] for a, n in alias.items()}, seed, gain)
    out = {alias[a]: v for a, v in drawn.items()}
    for n in out:
        if FPN_GAMMA.fullmatch(n):
            out[n] = np.ones_like(out[n])
    return out


def _names_and_shapes(net):
    sd = net.state_dict()
    return {g: tuple(sd[k].shape) for k, g in _gluoncv_names(net, _mapping_for(net)).items()}


@pytest.mark.parametrize("name", NAMES)
def test_layout_counts_and_settings_match_gluoncv(name):
    assert name in list_models()
    with torch.device("meta"):
        net = get_model(name)
    ours = _names_and_shapes(net)
    text = "\n".join(f"{n} {','.join(str(s) for s in shape)}" for n, shape in sorted(ours.items()))
    assert hashlib.sha1(text.encode()).hexdigest() == str(FX[f"{name}/layout"])
    n_names, write, total = FX[f"{name}/counts"].tolist()
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    fixed = sum(p.numel() for n, p in net.named_parameters() if not p.requires_grad)
    assert len(ours) == n_names and sum(int(np.prod(s)) for s in ours.values()) == total
    # GluonCV's grad_req 'write' includes the FPN norms' gammas, which fix_gamma keeps at 1
    assert fixed == int(FX[f"{name}/fixed_gamma"]) and trainable + fixed == write
    net = get_model(name)  # real tensors for the checks below
    assert (tuple(net.short), net.max_size) == (tuple(FX[f"{name}/short"].tolist()),
                                                int(FX[f"{name}/max_size"]))
    body = net.features.resnetv1b if "v1b" in name else net.features.resnetv1d
    assert type(body.layer1[0].bn1) is nn.BatchNorm2d and next(body.parameters()).requires_grad
    p2 = net.features.P2_bn
    assert p2.eps == 1e-3 and not p2.weight.requires_grad and (p2.weight == 1).all()
    assert p2.bias.requires_grad and net.features.P2_conv1.bias is None
    assert net.rpn.rpn_head.conv1[0].out_channels == 256
    convs = [m for m in net.box_features if isinstance(m, nn.Conv2d)]
    assert len(convs) == (1 if "resnet50" in name else 4)


def test_forward_parity_with_gluoncv():
    net = get_model(NAMES[0]).eval()
    names = _names_and_shapes(net)
    result = load_gluoncv_params(net, draw_syncbn_params(list(names), names, int(FX["seed"]),
                                                         float(FX["gain"])))
    assert not result.missing_keys and not result.unexpected_keys
    b, _, h, w = FX["image_shape"].tolist()
    x = torch.from_numpy(draw_images(int(FX["seed"]), (b, h, w)))
    with torch.no_grad():
        feats = net.features(x)
        for i, f in enumerate(feats):
            np.testing.assert_allclose(f[0, :2].numpy(), FX[f"feat{i}_slice"], rtol=1e-4,
                                       atol=1e-4)
            np.testing.assert_allclose(f.double().abs().sum().item(), FX[f"feat{i}_sums"][1],
                                       rtol=1e-5)
            hid = net.rpn.rpn_head.conv1(f)
            np.testing.assert_allclose(net.rpn.rpn_head.score(hid).numpy(), FX[f"rpn_score{i}"],
                                       atol=1e-4)
            np.testing.assert_allclose(net.rpn.rpn_head.loc(hid).numpy(), FX[f"rpn_loc{i}"],
                                       atol=1e-4)
        pooled = np.random.RandomState(int(FX["seed"]) + 2000).standard_normal(
            (FX["cls_pred"].shape[0], 256, 7, 7)).astype(np.float32)
        cls_pred, box_pred = net._head(torch.from_numpy(pooled))
    np.testing.assert_allclose(cls_pred.numpy(), FX["cls_pred"], atol=1e-4)
    np.testing.assert_allclose(box_pred.numpy(), FX["box_pred"], atol=1e-4)


def test_gluoncv_names_round_trip_and_no_published_weights(tmp_path):
    torch.manual_seed(0)
    net = get_model(NAMES[0])
    path = tmp_path / "syncbn.params"
    export_gluoncv_params(net, path)
    names = set(load_params(path))
    assert "features.resnetv1b_layers1_syncbatchnorm0_gamma" in names
    assert "features.resnetv1b_syncbatchnorm0_running_mean" in names
    assert "features.P5_lat_bn_moving_var" in names and "box_features.3.weight" in names
    assert not any("_batchnorm" in n for n in names)
    again = get_model(NAMES[0], pretrained=str(path))
    for (k, a), b in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    # the plain FPN model keeps GluonCV's 'batchnorm' names
    with torch.device("meta"):
        plain = _names_and_shapes(get_model("faster_rcnn_fpn_resnet50_v1b_coco"))
    assert "features.resnetv1b_layers1_batchnorm0_gamma" in plain
    # GluonCV 0.10.5 publishes no weights for these names (its model_store has no sha1)
    with pytest.raises(ModelStoreError, match="publishes no pretrained weights"):
        get_model(NAMES[0], pretrained=True)


@pytest.mark.parametrize("name", NAMES)
def test_builder_is_the_fpn_model_with_the_syncbn_options(name):
    """The registered network is the FPN model with ``fpn_syncbn_options`` (what a script that
    builds FPN models by keyword passes to train the same network)."""
    base = name.split("_")[4] + "_" + name.split("_")[5]
    with torch.device("meta"):
        named = get_model(name)
        by_options = get_model(f"faster_rcnn_fpn_{base}_coco", **fpn_syncbn_options(base))
    assert _names_and_shapes(named) == _names_and_shapes(by_options)
    assert repr(named) == repr(by_options)
