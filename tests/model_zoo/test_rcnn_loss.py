"""Faster R-CNN losses (gluon_bof/nn/rcnn_loss.py): GluonCV's normalisation, the paper's mixup
weighting, GluonCV's mixup mode and paper Eq. 3 label smoothing, against hand formulas."""
import numpy as np
import pytest
import torch

from gluon_bof.nn.rcnn_loss import FasterRCNNLoss, smooth_label_cross_entropy


def _bce(x, t):
    return -(t * np.log(1 / (1 + np.exp(-x))) + (1 - t) * np.log(1 - 1 / (1 + np.exp(-x))))


def _huber(d, rho):
    d = np.abs(d)
    return np.where(d < rho, 0.5 * d * d / rho, d - 0.5 * rho).sum(-1)


def _inputs(w_pos=1.0):
    # one image: RPN anchors [pos, neg, ignored]; RCNN RoIs [pos (class 2), neg, ignored]
    rpn_logits = torch.tensor([[0.3, -1.2, 2.0]])
    rpn_cls = torch.tensor([[1.0, 0.0, -1.0]])
    rpn_box = torch.tensor([[[0.05, -0.2, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0], [3.0, 3, 3, 3]]])
    rpn_box_t = torch.tensor([[[0.0, 0.0, 0.1, 0.3], [0.0, 0, 0, 0], [0.0, 0, 0, 0]]])
    rpn_w = torch.tensor([[w_pos, 1.0, 1.0]])
    logits = torch.tensor([[[0.1, 0.5, 1.5, -0.3], [2.0, 0.0, -1.0, 0.5], [5.0, 5, 5, 5]]])
    cls_t = torch.tensor([[3, 0, -1]])
    box = torch.tensor([[[0.5, -2.0, 0.2, 0.1], [9.0, 9, 9, 9], [9.0, 9, 9, 9]]])
    box_t = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, 0, 0, 0], [0.0, 0, 0, 0]]])
    rcnn_w = torch.tensor([[w_pos, 1.0, 1.0]])
    return rpn_logits, rpn_cls, rpn_box, rpn_box_t, rpn_w, logits, cls_t, box, box_t, rcnn_w


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.log(np.exp(x).sum())


def test_gluoncv_normalisation_by_hand():
    out = FasterRCNNLoss()(*_inputs())
    # sums over sampled items divided by their count (2 anchors, 2 RoIs), box losses too
    np.testing.assert_allclose(out["rpn_obj_loss"].item(),
                               (_bce(0.3, 1) + _bce(-1.2, 0)) / 2, rtol=1e-6)
    np.testing.assert_allclose(out["rpn_box_loss"].item(),
                               _huber(np.array([.05, -.2, .4, -.3]), 1 / 9) / 2, rtol=1e-6)
    ce = -_log_softmax([0.1, 0.5, 1.5, -0.3])[3] - _log_softmax([2.0, 0.0, -1.0, 0.5])[0]
    np.testing.assert_allclose(out["rcnn_cls_loss"].item(), ce / 2, rtol=1e-6)
    np.testing.assert_allclose(out["rcnn_box_loss"].item(),
                               _huber(np.array([.5, -2, .2, .1]), 1.0) / 2, rtol=1e-6)


def test_mixup_paper_weighting():
    w = 0.3
    plain, mixed = FasterRCNNLoss()(*_inputs()), FasterRCNNLoss()(*_inputs(w))
    # positives scale by w, background (weight 1) unchanged, normalisers are counts
    np.testing.assert_allclose(mixed["rpn_obj_loss"].item(),
                               (w * _bce(0.3, 1) + _bce(-1.2, 0)) / 2, rtol=1e-6)
    np.testing.assert_allclose(mixed["rpn_box_loss"].item(), w * plain["rpn_box_loss"].item(),
                               rtol=1e-6)
    ce_pos = -_log_softmax([0.1, 0.5, 1.5, -0.3])[3]
    ce_neg = -_log_softmax([2.0, 0.0, -1.0, 0.5])[0]
    np.testing.assert_allclose(mixed["rcnn_cls_loss"].item(), (w * ce_pos + ce_neg) / 2,
                               rtol=1e-6)
    np.testing.assert_allclose(mixed["rcnn_box_loss"].item(), w * plain["rcnn_box_loss"].item(),
                               rtol=1e-6)


def test_mixup_gluoncv_mode():
    loss = FasterRCNNLoss(mixup_mode="gluoncv")
    plain = FasterRCNNLoss()(*_inputs())
    ignored = loss(*_inputs(0.3), mixed=False)
    halved = loss(*_inputs(0.3), mixed=True)
    for k, v in plain.items():
        np.testing.assert_allclose(ignored[k].item(), v.item(), rtol=1e-6)
        np.testing.assert_allclose(halved[k].item(), 0.5 * v.item(), rtol=1e-6)
    with pytest.raises(ValueError, match="mixup_mode"):
        FasterRCNNLoss(mixup_mode="other")


def test_label_smoothing_paper_eq3():
    logits = torch.tensor([[0.1, 0.5, 1.5, -0.3], [2.0, 0.0, -1.0, 0.5]])
    target = torch.tensor([3, 0])
    eps, K = 0.1, 4
    got = smooth_label_cross_entropy(logits, target, eps).numpy()
    for i in range(2):
        t = np.full(K, eps / (K - 1))
        t[target[i]] = 1 - eps
        np.testing.assert_allclose(got[i], -(t * _log_softmax(logits[i])).sum(), rtol=1e-6)
    out = FasterRCNNLoss(label_smooth=True, label_smooth_eps=eps)(*_inputs())
    np.testing.assert_allclose(out["rcnn_cls_loss"].item(), got.sum() / 2, rtol=1e-6)
    # eps = 0 is the plain cross-entropy
    np.testing.assert_allclose(smooth_label_cross_entropy(logits, target, 0.0).numpy(),
                               torch.nn.functional.cross_entropy(logits, target,
                                                                 reduction="none").numpy(),
                               rtol=1e-6)


def test_batch_average_and_empty_image():
    a = _inputs()
    b = [t.clone() for t in a]
    b[1].fill_(0.0)   # second image: RPN all negatives
    b[6].fill_(0)     # RCNN all background
    batch = [torch.cat([x, y]) for x, y in zip(a, b)]
    out = FasterRCNNLoss()(*batch)
    one = FasterRCNNLoss()(*a)
    two = FasterRCNNLoss()(*b)
    for k in out:
        np.testing.assert_allclose(out[k].item(), (one[k].item() + two[k].item()) / 2, rtol=1e-6)
    assert two["rpn_box_loss"].item() == 0 and two["rcnn_box_loss"].item() == 0
