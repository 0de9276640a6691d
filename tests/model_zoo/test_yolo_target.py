"""Tests of gluon_bof/model_zoo/yolo_target.py: hand-worked targets and GluonCV parity.

GluonCV values come from tests/fixtures/yolo_target.npz (tests/fixtures/gen_yolo_target.py).
"""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gluon_bof.model_zoo.yolo_target import (ignore_mask, merge_targets, prefetch_targets,
                                             smooth_class_targets)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "yolo_target.npz"
# GluonCV's anchors in head order (stride 32 first), and strides
ANCHORS = [torch.tensor([[116., 90.], [156., 198.], [373., 326.]]),
           torch.tensor([[30., 61.], [62., 45.], [59., 119.]]),
           torch.tensor([[10., 13.], [16., 30.], [33., 23.]])]
STRIDES = (32, 16, 8)


def _targets(size, labels, num_class=20):
    labels = torch.as_tensor(np.asarray(labels, dtype=np.float32)).reshape(1, -1, 6)
    feats = [(size // s, size // s) for s in STRIDES]
    return prefetch_targets(ANCHORS, feats, (size, size), labels[..., :4], labels[..., 4],
                            num_class, labels[..., 5])


def test_hand_worked_single_box():
    # 416 px, box w=100 h=140 centred (150, 190): best shape IoU is 116x90 (9000 / 15440 = .583;
    # 59x119 gives .5015, 156x198 .453), i.e. head 0 (stride 32, 13x13), anchor 0.
    # cell x = int(150 / 416 * 13) = int(4.6875) = 4, y = int(5.9375) = 5 -> row (5*13+4)*3 = 207
    obj, center, scale, weight, cls = _targets(416, [[100, 120, 200, 260, 7, 0.8]])
    pos = (obj[0, :, 0] > 0).nonzero().flatten().tolist()
    assert pos == [207]
    assert obj[0, 207, 0].item() == pytest.approx(0.8)
    assert center[0, 207].tolist() == pytest.approx([0.6875, 0.9375])
    assert scale[0, 207].tolist() == pytest.approx([math.log(100 / 116), math.log(140 / 90)],
                                                   rel=1e-6)
    assert weight[0, 207].tolist() == pytest.approx([2 - 14000 / 416 ** 2] * 2)
    assert cls[0, 207].argmax().item() == 7 and cls[0, 207].sum().item() == 1
    others = torch.ones(obj.shape[1], dtype=torch.bool)
    others[207] = False
    assert (cls[0, others] == -1).all() and (center[0, others] == 0).all()
    assert (weight[0, others] == 0).all() and (scale[0, others] == 0).all()


def test_small_box_goes_to_stride_8():
    # 12x14 box centred (20, 36) at 128 px: best anchor 10x13 (IoU 130/168) -> head 2 (16x16),
    # anchor 0; rows before it: 4*4*3 + 8*8*3 = 240; cell (x=2, y=4) -> 240 + (4*16+2)*3
    obj, center, *_ = _targets(128, [[14, 29, 26, 43, 0, 1.0]])
    assert (obj[0, :, 0] > 0).nonzero().flatten().tolist() == [240 + (4 * 16 + 2) * 3]
    assert center[0, 240 + 66 * 3].tolist() == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize("case", ["one", "mixed", "random", "loss"])
def test_prefetch_parity_with_gluoncv(case):
    fx = np.load(FIXTURE)
    size = int(fx[f"{case}_size"])
    assert [tuple(s) for s in fx[f"feat_sizes_{case}"]] == [(size // s, size // s) for s in STRIDES]
    ours = _targets(size, fx[f"{case}_labels"])
    for key, t in zip(("obj", "center", "scale", "weight", "cls"), ours):
        np.testing.assert_allclose(t[0].numpy(), fx[f"{case}_{key}"], rtol=1e-6, atol=1e-6,
                                   err_msg=f"{case} {key}")


def test_anchor_order_is_gluoncv_head_order():
    fx = np.load(FIXTURE)
    np.testing.assert_array_equal(torch.cat(ANCHORS).numpy(), fx["anchors_head_order"])


def test_collision_later_box_wins():
    # two boxes on the same cell and anchor: the later one's class, offsets and mix weight win
    obj, center, _, _, cls = _targets(224, [[100, 100, 140, 130, 2, 0.6],
                                            [101, 99, 141, 131, 5, 0.4]])
    pos = (obj[0, :, 0] > 0).nonzero().flatten()
    assert pos.numel() == 1
    assert obj[0, pos, 0].item() == pytest.approx(0.4)
    assert cls[0, pos[0]].argmax().item() == 5
    assert center[0, pos[0]].tolist() == pytest.approx([121 / 224 * 28 - 15, 115 / 224 * 28 - 14])


def test_empty_and_padded_labels():
    obj, center, scale, weight, cls = _targets(128, np.full((3, 6), -1.0))
    assert (obj == 0).all() and (center == 0).all() and (scale == 0).all() and (weight == 0).all()
    assert (cls == -1).all()
    empty = torch.zeros(1, 0, 4)
    out = prefetch_targets(ANCHORS, [(4, 4), (8, 8), (16, 16)], (128, 128), empty,
                           torch.zeros(1, 0), 20)
    assert out[0].shape == (1, 1008, 1) and (out[0] == 0).all()


def test_border_boxes():
    # full-image box -> centre cell; a box whose centre lies on the right/bottom edge -> last cell
    obj, center, *_ = _targets(128, [[0, 0, 128, 128, 1, 1.0], [120, 120, 128, 128, 2, 1.0]])
    rows = (obj[0, :, 0] > 0).nonzero().flatten().tolist()
    assert len(rows) == 2
    assert (center >= 0).all() and (center <= 1).all()
    obj, center, *_ = _targets(128, [[128, 128, 128, 128, 0, 1.0]])
    row = (obj[0, :, 0] > 0).nonzero().flatten().tolist()
    # degenerate box: IoU 0 with every anchor -> first anchor (head 0); cell clamped to (3, 3)
    assert row == [(3 * 4 + 3) * 3 + 0]
    assert center[0, row[0]].tolist() == pytest.approx([1.0, 1.0])


def test_one_class_and_batch_consistency():
    labels = torch.tensor([[[10., 10., 60., 50., 0., 1.], [-1] * 6],
                           [[30., 40., 90., 120., 0., 1.], [5., 5., 20., 30., 0., 0.5]]])
    feats = [(4, 4), (8, 8), (16, 16)]
    batch = prefetch_targets(ANCHORS, feats, (128, 128), labels[..., :4], labels[..., 4], 1,
                             labels[..., 5])
    assert batch[4].shape == (2, 1008, 1)
    for b in range(2):
        single = prefetch_targets(ANCHORS, feats, (128, 128), labels[b:b + 1, :, :4],
                                  labels[b:b + 1, :, 4], 1, labels[b:b + 1, :, 5])
        for t_batch, t_single in zip(batch, single):
            assert torch.equal(t_batch[b:b + 1], t_single)


def test_bad_class_id_raises():
    with pytest.raises(ValueError, match="yolo_target.py"):
        _targets(128, [[10, 10, 50, 50, 20, 1.0]], num_class=20)


def test_ignore_mask_by_hand():
    gt = torch.tensor([[[0., 0., 10., 10.], [-1., -1., -1., -1.]]])
    preds = torch.tensor([[[0., 0., 10., 10.],     # IoU 1
                           [0., 0., 10., 7.5],     # IoU .75
                           [0., 0., 10., 6.5],     # IoU .65
                           [-1., -1., 0., 0.]]])   # touches the padding box only
    assert ignore_mask(preds, gt, 0.7).tolist() == [[True, True, False, False]]
    assert ignore_mask(preds, gt[:, :0], 0.7).tolist() == [[False] * 4]


@pytest.mark.parametrize("num_class,pos,neg", [(20, 0.975, 0.025), (80, 1 - 1 / 80, 1 / 80),
                                               (1, 0.975, None)])
def test_smoothing_gluoncv_mode(num_class, pos, neg):
    t = -torch.ones(3, num_class)
    t[0] = 0
    t[0, 0] = 1
    out = smooth_class_targets(t, "gluoncv")
    assert out[0, 0].item() == pytest.approx(pos)
    if neg is not None:
        assert torch.allclose(out[0, 1:], torch.full((num_class - 1,), neg))
    assert (out[1:] == -1).all()


@pytest.mark.parametrize("num_class,eps", [(20, 0.1), (80, 0.05), (2, 0.1), (1, 0.1)])
def test_smoothing_paper_mode(num_class, eps):
    t = torch.zeros(1, num_class)
    t[0, -1] = 1
    out = smooth_class_targets(t, "paper", eps)
    assert out[0, -1].item() == pytest.approx(1 - eps)
    if num_class > 1:
        assert torch.allclose(out[0, :-1], torch.full((num_class - 1,), eps / (num_class - 1)))
    with pytest.raises(ValueError, match="label_smooth_mode"):
        smooth_class_targets(t, "bogus")


def test_merge_targets_marks_ignored_negatives():
    obj = torch.tensor([[[0.5], [0.], [0.]]])
    zeros2 = torch.zeros(1, 3, 2)
    cls = torch.tensor([[[0., 1.], [-1., -1.], [-1., -1.]]])
    ignore = torch.tensor([[True, True, False]])
    o, _, _, _, c, mask = merge_targets([obj, zeros2, zeros2, zeros2, cls], ignore)
    assert o.flatten().tolist() == [0.5, -1.0, 0.0]  # a positive is never ignored
    assert mask.tolist() == [[[1., 1.], [0., 0.], [0., 0.]]]
    assert torch.equal(c, cls)


def test_merge_parity_with_gluoncv():
    fx = np.load(FIXTURE)
    pre = [torch.from_numpy(fx[f"loss_{k}"])[None] for k in ("obj", "center", "scale", "weight",
                                                             "cls")]
    gt = torch.from_numpy(fx["loss_labels"][None, :, :4])
    ignore = ignore_mask(torch.from_numpy(fx["box_preds"]), gt, 0.7)
    for tag, smooth in (("plain", False), ("smooth", True)):
        merged = merge_targets(pre, ignore, smooth, "gluoncv")
        for key, t in zip(("obj", "cls", "cls_mask"), (merged[0], merged[4], merged[5])):
            ref = fx[f"merged_{tag}_{key}"]
            if key == "cls":  # GluonCV keeps -1 only where masked; compare where it matters
                t, ref = t * merged[5], ref * fx[f"merged_{tag}_cls_mask"]
            np.testing.assert_allclose(t.numpy(), ref, atol=1e-7, err_msg=f"{tag} {key}")
