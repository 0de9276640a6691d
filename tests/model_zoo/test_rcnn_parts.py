"""Faster R-CNN parts (gluon_bof/model_zoo/rcnn/{anchors,coder,rpn,sampler}.py) against hand
values and GluonCV 0.10.5 (fixture tests/fixtures/rcnn_parts.npz from gen_rcnn.py)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from gluon_bof.model_zoo.rcnn import (RPNAnchorGenerator, SampleDraws, generate_base_anchors, generate_proposals,
                                      rcnn_sample, rcnn_targets, rpn_targets)
from gluon_bof.ops.coder import RCNN_STDS, RPN_STDS, clip_boxes, decode_boxes, encode_boxes

FX = dict(np.load(Path(__file__).resolve().parents[1] / "fixtures" / "rcnn_parts.npz"))
T = torch.from_numpy


def test_base_anchors_by_hand():
    a = generate_base_anchors(16, [32, 64, 128, 256, 512], (0.5, 1, 2))
    assert a.shape == (15, 4)
    # ratio .5: w = round(sqrt(256 / .5)) = 23, h = round(11.5) = 12 (half to even); scale 2:
    # 46 x 24 about centre 7.5 -> 7.5 -+ 22.5, 7.5 -+ 11.5
    np.testing.assert_array_equal(a[0], [-15, -4, 30, 19])
    # ratio 1, scale 8: 128 x 128 -> 7.5 -+ 63.5
    np.testing.assert_array_equal(a[7], [-56, -56, 71, 71])
    # ratio 2: w = round(sqrt(128)) = 11, h = 22; scale 32 -> 352 x 704
    np.testing.assert_array_equal(a[14], [7.5 - 175.5, 7.5 - 351.5, 7.5 + 175.5, 7.5 + 351.5])


def test_anchors_match_gluoncv():
    gen = RPNAnchorGenerator(16, 16, (0.5, 1, 2), (2, 4, 8, 16, 32), (128, 128))
    assert gen.anchors.shape == (1, 1, 128, 128, 60)
    np.testing.assert_array_equal(gen.anchors[0, 0, :3, :4].numpy(), FX["anchors_c4"])
    for s in (4, 8, 16, 32, 64):
        np.testing.assert_array_equal(generate_base_anchors(s, [16 * s // 2]),
                                      FX[f"anchors_fpn{s}"])
    # forward: (y, x, anchor) order; a map larger than alloc_size is computed on the fly
    small = RPNAnchorGenerator(16, 16, (0.5, 1, 2), (2, 4, 8, 16, 32), (4, 4))
    a = small(torch.zeros(1, 1, 5, 6)).reshape(5, 6, 15, 4)
    np.testing.assert_array_equal(a[2, 3].numpy(), generate_base_anchors(16) + [48, 32, 48, 32])
    np.testing.assert_array_equal(np.asarray(FX["prop_anchors"]).reshape(8, 10, 15, 4)[:4, :4],
                                  small(torch.zeros(1, 1, 4, 4)).reshape(4, 4, 15, 4).numpy())


def test_coder_matches_gluoncv():
    a, g, d = T(FX["boxes_a"]), T(FX["boxes_g"]), T(FX["deltas"])
    np.testing.assert_allclose(decode_boxes(d, a, RPN_STDS).numpy(), FX["dec_rpn"], atol=1e-4)
    np.testing.assert_allclose(decode_boxes(d, a, RCNN_STDS, clip=4.14).numpy(),
                               FX["dec_rcnn_clip"], atol=1e-4)
    np.testing.assert_allclose(encode_boxes(g, a, RPN_STDS).numpy(), FX["enc_rpn"], atol=1e-5)
    i = FX["enc_rcnn_idx"]
    np.testing.assert_allclose(encode_boxes(g[i], a[i], RCNN_STDS).numpy(), FX["enc_rcnn"],
                               atol=1e-5)


def test_coder_round_trip_and_formula():
    a = torch.tensor([[10.0, 20.0, 50.0, 100.0]])
    g = torch.tensor([[12.0, 18.0, 60.0, 90.0]])
    t = encode_boxes(g, a, RCNN_STDS)
    # centres (30, 60) -> (36, 54), sizes 40x80 -> 48x72, no "+1"
    np.testing.assert_allclose(t[0].numpy(), [6 / 40 / .1, -6 / 80 / .1, np.log(48 / 40) / .2,
                                              np.log(72 / 80) / .2], rtol=1e-6)
    for stds in (RPN_STDS, RCNN_STDS):
        np.testing.assert_allclose(decode_boxes(encode_boxes(g, a, stds), a, stds).numpy(),
                                   g.numpy(), atol=1e-4)
    big = decode_boxes(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), a, RCNN_STDS, clip=4.14)
    np.testing.assert_allclose((big[0, 2] - big[0, 0]).item(), 40 * np.exp(4.14), rtol=1e-5)


def test_clip_boxes_to_image_edges():
    b = torch.tensor([[-5.0, 3.0, 200.0, 90.0]])
    np.testing.assert_array_equal(clip_boxes(b, 80, 160).numpy(), [[0, 3, 160, 80]])


@pytest.mark.parametrize("key,min_size,clip,pre,post", [("a", 16, None, 300, 50),
                                                        ("b", 1, 4.14, 1000, 100)])
def test_proposals_match_gluoncv(key, min_size, clip, pre, post):
    rois, scores, valid = generate_proposals(
        T(FX["prop_anchors"]), T(FX["prop_scores"][..., 0]), T(FX["prop_deltas"]), [(128, 160)],
        pre, post, 0.7, min_size, clip)
    ref = FX[f"prop_out_{key}"][0]
    assert valid[0].sum().item() == (ref[:, 0] >= 0).sum()
    np.testing.assert_allclose(scores[0].numpy(), ref[:, 0], atol=1e-6)
    np.testing.assert_allclose(rois[0].numpy(), ref[:, 1:], atol=1e-3)


def test_proposals_pad_and_clip_per_image():
    anchors = T(FX["prop_anchors"])
    s = T(FX["prop_scores"][..., 0]).repeat(2, 1)
    d = T(FX["prop_deltas"]).repeat(2, 1, 1)
    rois, scores, valid = generate_proposals(anchors, s, d, [(128, 160), (64, 80)], 300, 2000,
                                             0.7, 16)
    assert rois.shape == (2, 1200, 4)  # post-NMS count capped at the number of anchors
    assert (rois[~valid] == -1).all() and (scores[~valid] == -1).all()
    small = rois[1][valid[1]]
    assert small[:, [0, 2]].max() <= 80 and small[:, [1, 3]].max() <= 64
    assert valid[1].sum() < valid[0].sum()


def test_rpn_targets_match_gluoncv():
    t = rpn_targets(T(FX["prop_anchors"]), T(FX["rpn_gt"]), (128, 160), num_sample=100000)
    np.testing.assert_array_equal(t.cls_target.numpy(), FX["rpn_cls"])
    np.testing.assert_allclose(t.box_target.numpy(), FX["rpn_box"], atol=1e-5)


def test_rpn_sampling_counts_and_border():
    gen = RPNAnchorGenerator(16, 16, (0.5, 1, 2), (2, 4, 8, 16, 32), (64, 64))
    anchors = gen(torch.zeros(1, 1, 38, 50))
    gt = torch.tensor([[50.0, 60.0, 300.0, 400.0], [400, 100, 700, 500], [10, 10, 40, 40]])
    g = torch.Generator().manual_seed(0)
    t = rpn_targets(anchors, gt, (600, 800), generator=g)
    pos, neg = (t.cls_target == 1).sum().item(), (t.cls_target == 0).sum().item()
    assert pos <= 128 and pos + neg == 256 and pos > 0
    inside = ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] < 800)
              & (anchors[:, 3] < 600))
    assert (t.cls_target[~inside] == -1).all()
    # many positives: capped at 50%
    many = anchors[inside][::40] + 0.5  # every 40th valid anchor as a ground truth
    t = rpn_targets(anchors, many, (600, 800), generator=g)
    assert (t.cls_target == 1).sum() == 128 and (t.cls_target == 0).sum() == 128


def test_rpn_targets_without_objects():
    anchors = RPNAnchorGenerator(16, 16, (0.5, 1, 2), (2, 4), (8, 8))(torch.zeros(1, 1, 8, 8))
    t = rpn_targets(anchors, torch.zeros(0, 4), (128, 128))
    assert (t.cls_target == 1).sum() == 0 and (t.cls_target == 0).sum() > 0
    assert (t.box_target == 0).all()


def test_rcnn_sample_counts_ratios():
    g = torch.Generator().manual_seed(0)
    gt = torch.tensor([[10.0, 10.0, 60.0, 60.0], [100, 100, 180, 150]])
    jitter = torch.rand(2000, 4, generator=g) * 6 - 3
    rois = torch.cat([gt[0] + jitter[:50], gt[1] + jitter[50:100],
                      torch.rand(1900, 2, generator=g).repeat(1, 2) * 150 + torch.tensor(
                          [0, 0, 20, 20])])
    valid = torch.ones(2000, dtype=torch.bool)
    valid[-300:] = False
    r, samples, matches = rcnn_sample(rois, valid, gt, 128, 0.5, 0.25, generator=g)
    assert r.shape == (128, 4) and samples.shape == (128,)
    assert (samples == 1).sum() == 32 and (samples == -1).sum() == 96
    ious = __import__("torchvision").ops.box_iou(r, gt)
    assert (ious[samples == 1].max(1).values >= 0.5).all()
    assert (ious[samples == -1].max(1).values < 0.5).all()
    assert (matches[samples == 1] == ious[samples == 1].argmax(1)).all()
    # few positives: the gt boxes themselves are candidates; negatives fill the rest (the two
    # segments may draw a candidate twice, as GluonCV's slicing does)
    r, samples, _ = rcnn_sample(rois[-400:], valid[-400:], gt, 128, 0.5, 0.25, generator=g)
    assert (samples == 1).sum() >= 2 and (samples == -1).sum() >= 96
    # no objects and few proposals: all negatives, padded with ignored rows
    r, samples, _ = rcnn_sample(rois[:40], valid[:40], torch.zeros(0, 4), 128, 0.5, 0.25)
    assert (samples == -1).sum() == 40 and (samples == 0).sum() == 88


def test_rcnn_targets_match_gluoncv():
    ct, bt = rcnn_targets(T(FX["rcnn_roi"][0]), T(FX["rcnn_samples"][0]),
                          T(FX["rcnn_matches"][0]).long(), T(FX["rcnn_gt"][0]),
                          T(FX["rcnn_label"][0]))
    np.testing.assert_array_equal(ct.numpy(), FX["rcnn_cls_t"][0])
    idx = FX["rcnn_idx"][0].astype(int)
    mask = FX["rcnn_box_m"][0].any(-1).any(-1)  # positives among the sorted indices
    np.testing.assert_allclose(bt[idx][mask].numpy(), FX["rcnn_box_t"][0, mask, 0], atol=1e-5)


def test_sample_draws_fix_the_samplers_choices():
    """``SampleDraws`` is where both samplers take their random choices: a seeded generator
    repeats them, and an overriding method decides them (the trajectory test's replay)."""
    anchors = RPNAnchorGenerator(16, 16, (0.5, 1, 2), (2, 4, 8), (32, 32))(torch.zeros(1, 1, 19, 25))
    inside = ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] < 400)
              & (anchors[:, 3] < 300))
    many = anchors[inside][::10] + 0.5  # more positive candidates than the 128 kept
    draw = [rpn_targets(anchors, many, (300, 400), draws=SampleDraws(torch.Generator().manual_seed(3)))
            for _ in range(2)]
    assert torch.equal(draw[0].cls_target, draw[1].cls_target)

    class LastFirst(SampleDraws):  # anchors in reverse order: the highest indices are kept
        def rpn_order(self, n):
            return torch.arange(n - 1, -1, -1)

    full = rpn_targets(anchors, many, (300, 400), num_sample=10 ** 6)  # every candidate
    t = rpn_targets(anchors, many, (300, 400), draws=LastFirst())
    for label in (1, 0):
        cand = (full.cls_target == label).nonzero()[:, 0]
        kept = (t.cls_target == label).nonzero()[:, 0]
        assert torch.equal(kept, cand[-kept.numel():]) and 0 < kept.numel() < cand.numel()

    class Fixed(SampleDraws):
        def rcnn_pick(self, positive, negative, num_sample, max_pos):
            assert (num_sample, max_pos) == (4, 1)
            assert positive.tolist() == [True, False, False, True, False, True]  # gt last
            assert negative.tolist() == [False, True, True, False, True, False]
            return torch.tensor([5, 1, 1, 0])  # the ground truth, proposal 1 twice, proposal 0

    rois = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60], [9, 9, 30, 30], [1, 1, 11, 11],
                         [40, 40, 90, 90]])
    gt = torch.tensor([[1.0, 1, 11, 11]])
    r, samples, _ = rcnn_sample(rois, torch.ones(5, dtype=torch.bool), gt, 4, 0.5, 0.25,
                                draws=Fixed())
    assert torch.equal(r, torch.cat([gt, rois[[1, 1, 0]]]))
    assert samples.tolist() == [1, -1, -1, 1]  # IoU(proposal 0, gt) = 81/119 >= .5
