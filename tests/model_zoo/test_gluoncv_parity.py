"""GluonCV 0.10.5 parity of the YOLOv3 family and its backbones, through GluonCV's weight files.

Fixtures ``tests/fixtures/yolo3_*.npz`` come from ``tests/fixtures/gen_yolo3.py`` (GluonCV on
MXNet). Weights are redrawn here with the generator's recipe (``draw_params``, kept identical),
written with our ``save_params`` in GluonCV's layout (constants included) and loaded with
``load_gluoncv_params``; then GluonCV's raw head outputs, NMS detections and training losses are
compared with ours. The training losses are compared with GluonCV's network run in float64
(``loss64_*``; tight) and with its float32 run (``loss_*``; looser, as MXNet's float32 train-mode
BatchNorm is itself that far from the exact values).
"""
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from random_weights import draw_params  # tests/fixtures: the generators' weight recipe

from gluon_bof.model_zoo import darknet, mobilenet, yolo3  # noqa: F401  (register the builders)
from gluon_bof.model_zoo.gluoncv import export_gluoncv_params, load_gluoncv_params
from gluon_bof.model_zoo.mxnet_params import load_params, save_params
from gluon_bof.model_zoo.registry import get_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
from oracle import ORACLE  # tests/fixtures/oracle.py: $GLUONCV_ORACLE_PYTHON or $GLUONCV_ORACLE_DIR
RAW_RTOL = 1e-4
SCORE_ATOL = 1e-5
LOSS_RTOL = 1e-4  # against GluonCV's network run in float64 (its exact mathematics)
# GluonCV's own float32 train-mode result lies up to ~2e-4 from that (MXNet's batch variances
# carry ~1e-6 relative float32 error per BatchNorm layer, amplified by train-mode BN on the
# small random-weight maps); see tests/fixtures/gen_yolo3.py.
LOSS32_RTOL = 1e-3
LOSS_KEYS = ("obj_loss", "center_loss", "scale_loss", "cls_loss")


def _fixture(name):
    path = FIXTURES / (f"{name}.npz" if name.startswith("yolo3") else f"yolo3_backbone_{name}.npz")
    fx = dict(np.load(path))
    names = [str(n) for n in fx["param_names"]]
    flat, shapes, i = fx["param_shapes"].tolist(), {}, 0
    for n in names:
        ndim = flat[i]
        shapes[n] = tuple(flat[i + 1:i + 1 + ndim])
        i += 1 + ndim
    b, _, h, w = fx["image_shape"].tolist()
    images = np.random.RandomState(int(fx["seed"]) + 1000).standard_normal((b, 3, h, w))
    images = images.astype(np.float32)
    np.testing.assert_allclose([images.sum(dtype=np.float64), images[0, 0, 0, :4].sum()],
                               fx["image_checksum"], rtol=1e-6)
    return fx, names, shapes, torch.from_numpy(images)


def _write_gluoncv_file(fx, names, shapes, path):
    """The .params GluonCV's save_parameters would write for these weights (its name order)."""
    params = draw_params(names, shapes, int(fx["seed"]), float(fx["gain"]))
    full = {}
    for n in names:
        if n.endswith(".anchors"):
            full[n] = fx[f"anchors{n.split('.')[1]}"].reshape(shapes[n])
        elif n.endswith(".offsets"):
            _, _, gh, gw, _ = shapes[n]
            gx, gy = np.meshgrid(np.arange(gw), np.arange(gh))
            full[n] = np.stack([gx, gy], -1)[None, None].astype(np.float32)
        else:
            full[n] = params[n]
    save_params(path, full)


def _load_model(name, tmp_path, **kwargs):
    fx, names, shapes, images = _fixture(name)
    path = tmp_path / f"{name}.params"
    _write_gluoncv_file(fx, names, shapes, path)
    net = get_model(name, **kwargs)
    result = load_gluoncv_params(net, path)
    assert not result.missing_keys and not result.unexpected_keys
    path.unlink()
    return net.eval(), fx, images


def _max_rel(ours, ref):
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


def _check_detections(fx, ids, scores, bboxes):
    """Every GluonCV detection has an identical-class, same-box, same-score row of ours; rows
    that cannot be matched may only be ties at the post-NMS cut."""
    ids, scores, bboxes = (t.numpy() for t in (ids, scores, bboxes))
    r_ids, r_scores, r_boxes = fx["ids"], fx["scores"], fx["bboxes"]
    assert ids.shape == r_ids.shape and bboxes.shape == r_boxes.shape
    for b in range(ids.shape[0]):
        ref_valid = r_ids[b, :, 0] >= 0
        ours_valid = ids[b, :, 0] >= 0
        assert ref_valid.sum() == ours_valid.sum()
        assert np.all(np.diff(scores[b, ours_valid, 0]) <= 0)
        cut = r_scores[b, ref_valid, 0].min()
        used = np.zeros(len(ids[b]), bool)
        for k in np.nonzero(ref_valid)[0]:
            tol = 1e-4 * np.abs(r_boxes[b, k]).max() + 1e-3
            cand = (~used & (ids[b, :, 0] == r_ids[b, k, 0])
                    & (np.abs(scores[b, :, 0] - r_scores[b, k, 0]) <= SCORE_ATOL)
                    & (np.abs(bboxes[b] - r_boxes[b, k]).max(-1) <= tol))
            if cand.any():
                used[np.argmax(cand)] = True
            else:
                assert r_scores[b, k, 0] - cut <= SCORE_ATOL, f"image {b}: row {k} unmatched"


YOLO_CASES = [
    "yolo3_mobilenet0.25_voc",
    "yolo3_mobilenet1.0_voc",
    "yolo3_darknet53_voc",
    "yolo3_darknet53_coco",
]


@pytest.mark.parametrize("name", YOLO_CASES)
def test_yolo3_parity(name, tmp_path):
    net, fx, images = _load_model(name, tmp_path)
    raws = {}
    hooks = [out.prediction.register_forward_hook(
        lambda mod, inp, outp, i=i: raws.__setitem__(i, outp.detach().numpy()))
        for i, out in enumerate(net.yolo_outputs)]
    with torch.no_grad():
        ids, scores, bboxes = net(images)
    for hook in hooks:
        hook.remove()
    for i in range(3):
        assert raws[i].shape == fx[f"raw{i}"].shape
        assert _max_rel(raws[i], fx[f"raw{i}"]) < RAW_RTOL, f"head {i}"
    _check_detections(fx, ids, scores, bboxes)

    state = {k: v.clone() for k, v in net.state_dict().items()}
    labels = torch.from_numpy(fx["labels"])
    for variant in ("plain", "mix", "smooth", "mix_smooth"):
        net.load_state_dict(state)
        net.train()
        net.label_smooth = "smooth" in variant
        net.label_smooth_mode = "gluoncv"
        lab = labels.clone()
        if "mix" not in variant:
            lab[..., 5] = torch.where(lab[..., 4] >= 0, 1.0, -1.0)
        with torch.no_grad():
            losses = net(images, lab)
        ours = np.array([float(losses[k]) for k in LOSS_KEYS])
        exact = fx[f"loss64_{variant}"].mean(axis=1)
        np.testing.assert_allclose(ours, exact, rtol=LOSS_RTOL, err_msg=f"{name} {variant}")
        np.testing.assert_allclose(ours, fx[f"loss_{variant}"].mean(axis=1), rtol=LOSS32_RTOL,
                                   err_msg=f"{name} {variant} vs GluonCV float32")
        if variant == "plain":  # no mix-weight column at all: the same as weights of 1
            net.load_state_dict(state)
            with torch.no_grad():
                five = net(images, lab[..., :5])
            np.testing.assert_allclose([float(five[k]) for k in LOSS_KEYS], ours, rtol=1e-6)


@pytest.mark.parametrize("name", ["mobilenet1.0", "darknet53"])
def test_backbone_parity(name, tmp_path):
    net, fx, images = _load_model(name, tmp_path)
    with torch.no_grad():
        logits = net(images).numpy()
    assert _max_rel(logits, fx["logits"]) < RAW_RTOL


def test_export_round_trip_keeps_gluoncv_names_and_values(tmp_path):
    """export_gluoncv_params writes what GluonCV's save_parameters wrote (names, order, values,
    constants included); checked against GluonCV's own parameter list in the fixture."""
    net, fx, _ = _load_model("yolo3_mobilenet0.25_voc", tmp_path)
    out = tmp_path / "export.params"
    export_gluoncv_params(net, out)
    exported = load_params(out)
    names = [str(n) for n in fx["param_names"]]
    assert list(exported) == names
    params = draw_params(names, dict(zip(names, [exported[n].shape for n in names])),
                         int(fx["seed"]), float(fx["gain"]))
    for n, arr in params.items():
        np.testing.assert_array_equal(exported[n], arr)
    np.testing.assert_array_equal(exported["yolo_outputs.0.anchors"].reshape(-1, 2), fx["anchors0"])


def test_mismatched_file_is_rejected_whole(tmp_path):
    """A VOC file into a COCO model: every mis-shaped head is listed and nothing is loaded."""
    fx, names, shapes, _ = _fixture("yolo3_mobilenet0.25_voc")
    path = tmp_path / "voc.params"
    _write_gluoncv_file(fx, names, shapes, path)
    net = get_model("yolo3_mobilenet0.25_coco")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"mis-shaped \(6\).*yolo_outputs\.0\.prediction\.weight"):
        load_gluoncv_params(net, path)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_missing_and_unexpected_are_listed(tmp_path):
    """strict: an error naming every missing/unexpected name, nothing loaded; non-strict: the
    rest is loaded and the names are returned. Inputs may be a dict of arrays or tensors."""
    fx, names, shapes, _ = _fixture("mobilenet1.0")
    params = draw_params(names, shapes, int(fx["seed"]), float(fx["gain"]))
    del params["features.4.gamma"], params["output.bias"]
    params["features.4.extra"] = np.zeros(3, np.float32)
    params["output.weight"] = torch.from_numpy(params["output.weight"])
    net = get_model("mobilenet1.0")
    before = net.features[0].weight.detach().clone()
    with pytest.raises(ValueError, match=r"(?s)missing \(2\): features\.4\.gamma, output\.bias"
                                         r".*unexpected \(1\): features\.4\.extra"):
        load_gluoncv_params(net, params)
    assert torch.equal(net.features[0].weight, before)
    result = load_gluoncv_params(net, params, strict=False)
    assert result.missing_keys == ["features.4.gamma", "output.bias"]
    assert result.unexpected_keys == ["features.4.extra"]
    np.testing.assert_array_equal(net.features[1].running_var.numpy(),
                                  params["features.1.running_var"])
    with pytest.raises(ValueError, match="legacy prefixed names"):
        load_gluoncv_params(net, {"mobilenet0_conv0_weight": np.zeros((32, 3, 3, 3))})


def test_differing_anchors_are_rejected(tmp_path):
    fx, names, shapes, _ = _fixture("yolo3_mobilenet0.25_voc")
    path = tmp_path / "w.params"
    _write_gluoncv_file(fx, names, shapes, path)
    params = load_params(path)
    params["yolo_outputs.2.anchors"] = params["yolo_outputs.2.anchors"] * 2
    with pytest.raises(ValueError, match=r"differing constants \(1\): yolo_outputs\.2\.anchors"):
        load_gluoncv_params(get_model("yolo3_mobilenet0.25_voc"), params)


@pytest.mark.skipif(not ORACLE.exists(), reason="needs the GluonCV/MXNet oracle venv")
def test_gluoncv_loads_our_export_and_agrees(tmp_path):
    """GluonCV's load_parameters accepts export_gluoncv_params' file for the same model, and its
    eval forward then gives our raw head outputs."""
    torch.manual_seed(0)
    net = get_model("yolo3_mobilenet0.25_voc").eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-.1, .1)
                m.running_var.uniform_(.5, 1.5)
    export_gluoncv_params(net, tmp_path / "ours.params")
    x = torch.randn(1, 3, 96, 96)
    raws = {}
    hooks = [o.prediction.register_forward_hook(
        lambda mod, inp, outp, i=i: raws.__setitem__(f"raw{i}", outp.numpy()))
        for i, o in enumerate(net.yolo_outputs)]
    with torch.no_grad():
        net(x)
    for hook in hooks:
        hook.remove()
    np.savez(tmp_path / "io.npz", x=x.numpy(), **raws)
    script = textwrap.dedent(f"""
        import mxnet as mx, numpy as np
        from gluoncv import model_zoo
        net = model_zoo.get_model('yolo3_mobilenet0.25_voc', pretrained_base=False)
        net.load_parameters('{tmp_path}/ours.params')
        ref, raws = np.load('{tmp_path}/io.npz'), {{}}
        for i, o in enumerate(net.yolo_outputs):
            o.prediction.register_forward_hook(
                lambda b, inp, out, i=i: raws.__setitem__(i, out.asnumpy()))
        net(mx.nd.array(ref['x']))
        err = max(np.abs(raws[i] - ref[f'raw{{i}}']).max() / np.abs(ref[f'raw{{i}}']).max()
                  for i in range(3))
        print('maxrel', err)
        assert err < 1e-4
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    res = subprocess.run([str(ORACLE), "-c", script], capture_output=True, text=True, env=env,
                         timeout=180)
    assert res.returncode == 0 and "maxrel" in res.stdout, res.stderr[-2000:]
    print(res.stdout.strip())
