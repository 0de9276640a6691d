"""Tests of gluon_bof/nn/loss.py: YOLOV3Loss by formula, mix-weight scaling, GluonCV parity."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gluon_bof.model_zoo.yolo_target import ignore_mask, merge_targets
from gluon_bof.nn.loss import YOLOV3Loss

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "yolo_target.npz"


def _softplus(x):
    return math.log1p(math.exp(x))


def _tiny(mix=0.5):
    """Three anchors, two classes: row 0 positive (mix weight), row 1 ignored, row 2 negative."""
    preds = dict(objness=torch.tensor([[[0.0], [2.0], [-1.0]]]),
                 box_centers=torch.tensor([[[1.0, -1.0], [3.0, 3.0], [-2.0, 0.5]]]),
                 box_scales=torch.tensor([[[0.2, -0.3], [5.0, 5.0], [1.0, 1.0]]]),
                 cls_preds=torch.tensor([[[0.5, -0.5], [4.0, 4.0], [1.0, -1.0]]]))
    targets = dict(objness_t=torch.tensor([[[mix], [-1.0], [0.0]]]),
                   center_t=torch.tensor([[[0.25, 0.75], [0, 0], [0, 0]]]),
                   scale_t=torch.tensor([[[0.5, 0.1], [0, 0], [0, 0]]]),
                   weight_t=torch.tensor([[[1.5, 1.5], [0, 0], [0, 0]]]),
                   class_t=torch.tensor([[[1.0, 0.0], [-1, -1], [-1, -1]]]),
                   class_mask=torch.tensor([[[1.0, 1.0], [0, 0], [0, 0]]]))
    return preds, targets


def test_loss_by_formula():
    mix = 0.5
    preds, targets = _tiny(mix)
    obj, center, scale, cls = YOLOV3Loss()(**preds, **targets)
    # BCE(x, y) = softplus(x) - x * y
    assert obj.item() == pytest.approx(mix * _softplus(0.0) + _softplus(-1.0), rel=1e-6)
    w = 1.5 * mix
    exp_center = w * ((_softplus(1.0) - 0.25) + (_softplus(-1.0) + 0.75))
    assert center.item() == pytest.approx(exp_center, rel=1e-6)
    assert scale.item() == pytest.approx(w * (0.3 + 0.4), rel=1e-6)
    assert cls.item() == pytest.approx(mix * (_softplus(0.5) - 0.5 + _softplus(-0.5)), rel=1e-6)


def test_mix_weight_scales_every_term_of_an_object():
    loss = YOLOV3Loss()
    preds, full = _tiny(1.0)
    _, part = _tiny(0.3)
    l_full = loss(**preds, **full)
    l_part = loss(**preds, **part)
    for i in (1, 2, 3):  # centre, scale, class
        assert l_part[i].item() == pytest.approx(0.3 * l_full[i].item(), rel=1e-6)
    negative = _softplus(-1.0)  # objectness: the positive term scales, the negative does not
    assert l_part[0].item() - negative == pytest.approx(0.3 * (l_full[0].item() - negative))


def test_per_image_sums_and_no_positive():
    preds, targets = _tiny()
    batched = {k: torch.cat([v, v]) for k, v in preds.items()}
    tb = {k: torch.cat([v, v]) for k, v in targets.items()}
    tb["objness_t"][1] = 0.0  # second image: all negatives
    tb["weight_t"][1] = 0.0
    tb["class_mask"][1] = 0.0
    obj, center, scale, cls = YOLOV3Loss()(**batched, **tb)
    assert obj.shape == (2,)
    assert center[1].item() == scale[1].item() == cls[1].item() == 0.0
    assert obj[1].item() == pytest.approx(_softplus(0.0) + _softplus(2.0) + _softplus(-1.0))


def test_gradients_flow_only_where_weighted():
    preds, targets = _tiny()
    preds = {k: v.clone().requires_grad_(True) for k, v in preds.items()}
    sum(l.sum() for l in YOLOV3Loss()(**preds, **targets)).backward()
    assert preds["objness"].grad[0, 1].item() == 0.0  # ignored
    assert (preds["box_centers"].grad[0, 1:] == 0).all()
    assert (preds["cls_preds"].grad[0, 1:] == 0).all()


@pytest.mark.parametrize("tag,smooth", [("plain", False), ("smooth", True)])
def test_parity_with_gluoncv(tag, smooth):
    fx = np.load(FIXTURE)
    pre = [torch.from_numpy(fx[f"loss_{k}"])[None]
           for k in ("obj", "center", "scale", "weight", "cls")]
    gt = torch.from_numpy(fx["loss_labels"][None, :, :4])
    ignore = ignore_mask(torch.from_numpy(fx["box_preds"]), gt, 0.7)
    targets = merge_targets(pre, ignore, smooth, "gluoncv")
    preds = [torch.from_numpy(fx[k]) for k in ("p_obj", "p_center", "p_scale", "p_cls")]
    ours = torch.stack(YOLOV3Loss()(*preds, *targets)).numpy()
    np.testing.assert_allclose(ours, fx[f"losses_{tag}"], rtol=2e-6)
