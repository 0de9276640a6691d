"""Tests for gluon_bof/utils/metrics/voc_detection.py: hand-worked cases and GluonCV fixtures."""
import math
import os

import numpy as np
import pytest
import torch

from gluon_bof.utils.metrics import VOC07MApMetric, VOCMApMetric

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "metrics.npz")
G1 = [0, 0, 9, 9]       # 10 x 10 pixels in VOC's +1 convention
G2 = [20, 20, 29, 29]
FAR = [50, 50, 59, 59]  # overlaps nothing


def run(metric_cls, dets, gts, difficult=None, class_names=("a", "b")):
    """One image. dets: [(box, label, score)], gts: [(box, label)]. Returns get()'s values."""
    metric = metric_cls(class_names=list(class_names))
    pb = np.array([d[0] for d in dets], np.float32).reshape(1, -1, 4)
    pl = np.array([d[1] for d in dets], np.float32).reshape(1, -1, 1)
    ps = np.array([d[2] for d in dets], np.float32).reshape(1, -1, 1)
    gb = np.array([g[0] for g in gts], np.float32).reshape(1, -1, 4)
    gl = np.array([g[1] for g in gts], np.float32).reshape(1, -1, 1)
    gd = None if difficult is None else np.array(difficult, np.float32).reshape(1, -1, 1)
    metric.update(pb, pl, ps, gb, gl, gd)
    return metric.get()[1]


# 2 gts, 3 detections ranked TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
# 11-point: thresholds 0..0.5 (6 of them) see precision 1, 0.6..1.0 (5) see 2/3 -> 28/33.
# area: 1/2 * 1 + 1/2 * 2/3 = 5/6.
CASE_A = dict(dets=[(G1, 0, .9), (FAR, 0, .8), (G2, 0, .7)], gts=[(G1, 0), (G2, 0)])


def test_hand_worked_two_gts_three_dets():
    assert run(VOC07MApMetric, **CASE_A)[0] == pytest.approx(28 / 33)
    assert run(VOCMApMetric, **CASE_A)[0] == pytest.approx(5 / 6)


def test_iou_uses_plus_one_widths():
    # det [0,0,9,4] on gt [0,0,9,9]: (10*5)/(10*10) = 0.5 -> TP; plain widths give 36/81 < 0.5
    values = run(VOC07MApMetric, dets=[([0, 0, 9, 4], 0, .9)], gts=[(G1, 0)])
    assert values[0] == pytest.approx(1.0)
    values = run(VOC07MApMetric, dets=[([0, 0, 9, 3], 0, .9)], gts=[(G1, 0)])  # 0.4
    assert values[0] == pytest.approx(0.0)


def test_difficult_match_is_ignored():
    # ranked: ignored (difficult g1), FP, TP; one positive -> precision 1/2 at recall 1
    dets = [(G1, 0, .9), (FAR, 0, .8), (G2, 0, .7)]
    gts = [(G1, 0), (G2, 0)]
    assert run(VOC07MApMetric, dets, gts, difficult=[1, 0])[0] == pytest.approx(0.5)
    assert run(VOCMApMetric, dets, gts, difficult=[1, 0])[0] == pytest.approx(0.5)
    # a difficult gt that nothing finds costs nothing
    assert run(VOCMApMetric, [(G2, 0, .7)], gts, difficult=[1, 0])[0] == pytest.approx(1.0)


def test_duplicate_detection_is_false_positive():
    # second detection on g1 (even a better one) is FP: same ranking as CASE_A
    dets = [([0, 0, 9, 8], 0, .9), (G1, 0, .8), (G2, 0, .7)]
    assert run(VOC07MApMetric, dets, CASE_A["gts"])[0] == pytest.approx(28 / 33)


def test_taken_gt_does_not_fall_back_to_second_best():
    # d2 = [1,0,9,9]: IoU .9 with taken g1, .727 with free g2 -> FP. TP, FP: 11-pt 6/11, area 1/2
    g2 = [2, 0, 11, 9]
    dets = [(G1, 0, .9), ([1, 0, 9, 9], 0, .8)]
    gts = [(G1, 0), (g2, 0)]
    assert run(VOC07MApMetric, dets, gts)[0] == pytest.approx(6 / 11)
    assert run(VOCMApMetric, dets, gts)[0] == pytest.approx(0.5)


def test_class_without_gt_is_nan_and_left_out_of_map():
    dets = CASE_A["dets"] + [(FAR, 1, .95)]
    values = run(VOC07MApMetric, dets, CASE_A["gts"])
    assert values[0] == pytest.approx(28 / 33)
    assert math.isnan(values[1])
    assert values[2] == pytest.approx(28 / 33)


def test_unseen_class_name_is_nan_and_no_gt_class_has_zero_ap():
    values = run(VOCMApMetric, dets=[(G1, 0, .9)], gts=[(G1, 0), (G2, 1)],
                 class_names=("a", "b", "c"))
    assert values[0] == pytest.approx(1.0)
    assert values[1] == 0.0          # a gt, no detection
    assert math.isnan(values[2])     # never seen
    assert values[3] == pytest.approx(0.5)


def test_degenerate_and_border_boxes():
    # a one-pixel box [3,3,3,3] matched exactly; a box on the image border matched exactly
    dets = [([3, 3, 3, 3], 0, .9), ([0, 0, 415, 415], 0, .8)]
    gts = [([3, 3, 3, 3], 0), ([0, 0, 415, 415], 0)]
    assert run(VOCMApMetric, dets, gts)[0] == pytest.approx(1.0)


def test_padding_rows_are_ignored():
    pb = np.full((2, 5, 4), -1, np.float32)
    pl = np.full((2, 5, 1), -1, np.float32)
    ps = np.full((2, 5, 1), -1, np.float32)
    gb = np.full((2, 3, 4), -1, np.float32)
    gl = np.full((2, 3, 1), -1, np.float32)
    for i, (box, label, score) in enumerate(CASE_A["dets"]):
        pb[0, i], pl[0, i], ps[0, i] = box, label, score
    gb[0, :2], gl[0, :2] = [G1, G2], 0
    metric = VOC07MApMetric(class_names=["a"])   # image 1 is all padding
    metric.update(pb, pl, ps, gb, gl)
    assert metric.get()[1][0] == pytest.approx(28 / 33)


def _case_a_arrays():
    pb = np.array([d[0] for d in CASE_A["dets"]], np.float32)
    pl = np.array([d[1] for d in CASE_A["dets"]], np.float32)
    ps = np.array([d[2] for d in CASE_A["dets"]], np.float32)
    gb = np.array([g[0] for g in CASE_A["gts"]], np.float32)
    gl = np.array([g[1] for g in CASE_A["gts"]], np.float32)
    return pb, pl, ps, gb, gl


def test_batch_of_one_with_and_without_batch_axis_and_torch():
    pb, pl, ps, gb, gl = _case_a_arrays()
    for args in [(pb, pl, ps, gb, gl),                                    # no batch axis
                 (pb[None], pl[None], ps[None], gb[None], gl[None]),      # [1, K] labels
                 tuple(torch.from_numpy(a[None]) for a in (pb, pl, ps, gb, gl))]:
        metric = VOC07MApMetric(class_names=["a"])
        metric.update(*args)
        assert metric.get()[1][0] == pytest.approx(28 / 33)


def test_list_of_device_batches_and_accumulation():
    pb, pl, ps, gb, gl = _case_a_arrays()
    # image 1 holds det 0 and gt 0, image 2 the rest; sent as two "devices" of different K
    metric = VOC07MApMetric(class_names=["a"])
    metric.update([pb[None, :1], pb[None, 1:]], [pl[None, :1], pl[None, 1:]],
                  [ps[None, :1], ps[None, 1:]], [gb[None, :1], gb[None, 1:]],
                  [gl[None, :1], gl[None, 1:]], [None, None])
    assert metric.get()[1][0] == pytest.approx(28 / 33)
    metric.reset()
    metric.update(pb[None, :1], pl[None, :1], ps[None, :1], gb[None, :1], gl[None, :1])
    metric.update(pb[None, 1:], pl[None, 1:], ps[None, 1:], gb[None, 1:], gl[None, 1:])
    assert metric.get()[1][0] == pytest.approx(28 / 33)


def test_get_without_names_per_class_and_empty():
    metric = VOCMApMetric()
    assert math.isnan(metric.get()[1])
    metric.update(*(a[None] for a in _case_a_arrays()))
    name, value = metric.get()
    assert name == "VOCMeanAP" and value == pytest.approx(5 / 6)
    assert metric.per_class() == {0: pytest.approx(5 / 6)}
    rec, prec = metric.pr_curves()[0]
    np.testing.assert_allclose(rec, [.5, .5, 1])
    np.testing.assert_allclose(prec, [1, .5, 2 / 3])


@pytest.mark.parametrize("bad", [0.5, float("nan")])
def test_non_integer_label_is_an_error(bad):
    pb, pl, ps, gb, gl = _case_a_arrays()
    pl = pl.copy()
    pl[1] = bad
    with pytest.raises(ValueError, match="pred_labels"):
        VOCMApMetric().update(pb, pl, ps, gb, gl)


def test_shape_mismatch_is_an_error():
    pb, pl, ps, gb, gl = _case_a_arrays()
    with pytest.raises(ValueError):
        VOCMApMetric().update(pb[None], pl[None, :2], ps[None], gb[None], gl[None])


KEYS = ["pred_bboxes", "pred_labels", "pred_scores", "gt_bboxes", "gt_labels", "gt_difficults"]


@pytest.mark.parametrize("metric_cls,key", [(VOCMApMetric, "voc"), (VOC07MApMetric, "voc07")])
def test_matches_gluoncv_fixtures(metric_cls, key):
    data = np.load(FIXTURE)
    for c in range(int(data["num_cases"])):
        arrays = [data[f"c{c}_{k}"] for k in KEYS]
        expected = data[f"c{c}_{key}"]
        batch = int(data[f"c{c}_batch"])
        metric = metric_cls(class_names=[str(i) for i in range(expected.size - 1)])
        for s in range(0, arrays[0].shape[0], batch):
            metric.update(*[a[s:s + batch] for a in arrays])
        np.testing.assert_allclose(metric.get()[1], expected, rtol=0, atol=1e-12,
                                   err_msg=f"case {c}")


def test_gluoncv_fixture_with_torch_inputs_in_one_update():
    data = np.load(FIXTURE)
    arrays = [torch.from_numpy(data[f"c1_{k}"]) for k in KEYS]
    metric = VOC07MApMetric(class_names=[str(i) for i in range(data["c1_voc07"].size - 1)])
    metric.update(*arrays)
    np.testing.assert_allclose(metric.get()[1], data["c1_voc07"], rtol=0, atol=1e-12)


def test_inputs_reused_by_caller_after_update_do_not_change_result():
    arrays = [a[None].copy() for a in _case_a_arrays()]
    metric = VOC07MApMetric(class_names=["a"])
    metric.update(*arrays)
    for a in arrays:  # an eval loop refilling its buffers
        a[...] = -1
    metric.update(*arrays)
    assert metric.get()[1][0] == pytest.approx(28 / 33)
