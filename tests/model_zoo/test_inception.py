"""Inception-V3 (gluon_bof/model_zoo/inception.py): GluonCV's ``Inception3``.

GluonCV facts come from ``tests/fixtures/classifiers_v1.npz`` (``tests/fixtures/gen_classifiers_v1.py``,
GluonCV 0.10.5 on MXNet 1.9.1): the parameter layout and counts, and the eval-mode logits at
299x299 of a random network whose weights both sides draw with ``draw_params``.
"""
import hashlib
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from classifier_case import case_inputs, max_rel  # tests/fixtures
from gluon_bof.model_zoo import inception, model_store
from gluon_bof.model_zoo.gluoncv import (_gluoncv_names, _mapping_for, export_gluoncv_params,
                                         gluoncv_state, load_gluoncv_params)
from gluon_bof.model_zoo.mxnet_params import load_params
from gluon_bof.model_zoo.registry import get_model, list_models
from gluon_bof.nn.norm import FrozenBatchNorm2d

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
from oracle import ORACLE  # tests/fixtures/oracle.py: $GLUONCV_ORACLE_PYTHON or $GLUONCV_ORACLE_DIR
FX = np.load(FIXTURES / "classifiers_v1.npz")
# Float32 eval-mode forward at 299x299 (94 convolutions): summation-order noise of MXNet and
# torch, measured at 5.6e-7 of the largest logit; 1e-4 is far below a layout error.
RTOL = 1e-4


@pytest.fixture(scope="module")
def parity_net():
    """Our inceptionv3 with the fixture's weights (loaded from a name -> array dict), eval mode."""
    params, images = case_inputs(FX, "inceptionv3")
    net = get_model("inceptionv3")
    result = load_gluoncv_params(net, params)
    assert not result.missing_keys and not result.unexpected_keys
    return net.eval(), torch.from_numpy(images), params


def test_registered_with_gluoncv_weights():
    assert "inceptionv3" in list_models()
    assert model_store.short_hash("inceptionv3") == "a5050dbc"  # GluonCV docs, Others.csv (78.77)


def test_layout_and_counts_match_gluoncv():
    with torch.device("meta"):
        net = get_model("inceptionv3")
    sd = net.state_dict()
    names = _gluoncv_names(net, _mapping_for(net))
    text = "\n".join(f"{g} {','.join(str(s) for s in sd[k].shape)}" for k, g in names.items())
    assert hashlib.sha1(text.encode()).hexdigest() == str(FX["inceptionv3/layout"])
    n_names, trainable, total = FX["inceptionv3/counts"].tolist()
    assert len(names) == n_names
    assert sum(p.numel() for p in net.parameters()) == trainable
    assert sum(sd[k].numel() for k in names) == total


def test_norm_layers_use_gluoncv_eps_and_the_given_class():
    net = get_model("inceptionv3")
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 94 and all(m.eps == 1e-3 for m in bns)
    frozen = get_model("inceptionv3", norm_layer=FrozenBatchNorm2d, classes=5)
    fbns = [m for m in frozen.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(fbns) == 94 and all(m.eps == 1e-3 for m in fbns)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    drop = net.features[-1]
    assert isinstance(drop, nn.Dropout) and drop.p == 0.5


def test_gluoncv_logits_parity_at_299(parity_net):
    net, images, _ = parity_net
    assert tuple(images.shape) == (1, 3, 299, 299)
    with torch.no_grad():
        logits = net(images).numpy()
    ref = FX["inceptionv3/logits"]
    assert logits.shape == ref.shape
    assert max_rel(logits, ref) < RTOL


def test_export_load_round_trip(parity_net, tmp_path):
    net, _, params = parity_net
    assert list(gluoncv_state(net)) == list(params)  # GluonCV's save_parameters order
    export_gluoncv_params(net, tmp_path / "export.params")
    exported = load_params(tmp_path / "export.params")
    for n, arr in params.items():
        np.testing.assert_array_equal(exported[n], arr)
    again = get_model("inceptionv3", pretrained=str(tmp_path / "export.params")).eval()
    sd = net.state_dict()
    for k, v in again.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_small_inputs_forward_backward():
    """Global pooling accepts any input of at least 75x75 (GluonCV's fixed 8x8 pool: only 299);
    smaller ones are refused with a clear message."""
    torch.manual_seed(0)
    net = get_model("inceptionv3", classes=7).train()
    out = net(torch.randn(2, 3, 75, 75))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    with pytest.raises(ValueError, match="at least 75x75"):
        net(torch.randn(1, 3, 74, 96))
    with torch.device("meta"):  # shapes only: 8x8 final maps for GluonCV's 299..330
        meta = get_model("inceptionv3").eval()
        for size, side in ((75, 1), (107, 2), (299, 8), (330, 8), (331, 9)):
            assert meta.forward_features(torch.empty(1, 3, size, size)).shape == (1, 2048, side, side)


def test_concurrent_concatenates_branches():
    block = inception.Concurrent(nn.Conv2d(4, 2, 1), nn.Identity(), nn.Conv2d(4, 3, 1))
    x = torch.randn(2, 4, 5, 5)
    out = block(x)
    assert out.shape == (2, 9, 5, 5)
    torch.testing.assert_close(out[:, 2:6], x)


@pytest.mark.slow
@pytest.mark.skipif(not ORACLE.exists(), reason="needs the GluonCV/MXNet oracle venv")
def test_gluoncv_loads_our_export_and_agrees(parity_net, tmp_path):
    """GluonCV's load_parameters (strict) accepts our inceptionv3 export; same logits at 299."""
    net, images, _ = parity_net
    export_gluoncv_params(net, tmp_path / "ours.params")
    with torch.no_grad():
        np.savez(tmp_path / "io.npz", x=images.numpy(), y=net(images).numpy())
    script = textwrap.dedent(f"""
        import mxnet as mx, numpy as np
        from gluoncv import model_zoo
        net = model_zoo.get_model('inceptionv3')
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
