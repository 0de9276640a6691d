"""pixAcc / mIoU (gluon_bof/utils/metrics/segmentation.py) against GluonCV 0.10.5's
``SegmentationMetric`` (tests/fixtures/fcn.npz, tests/fixtures/gen_fcn.py) and by hand."""
from pathlib import Path

import numpy as np
import pytest
import torch

from gluon_bof.utils.metrics import SegmentationMetric

FX = np.load(Path(__file__).resolve().parents[1] / "fixtures" / "fcn.npz")


def test_equals_gluoncv_over_updates_with_ignored_pixels_and_device_lists():
    m = SegmentationMetric(int(FX["metric/nclass"]))
    for k in range(3):
        scores, labels = FX[f"metric/scores{k}"], FX[f"metric/labels{k}"]
        if k == 2:  # per-device lists, torch tensors this time
            m.update([torch.from_numpy(labels[:1]), torch.from_numpy(labels[1:])],
                     [torch.from_numpy(scores[:1]), torch.from_numpy(scores[1:])])
        else:
            m.update(labels, scores)
        pix_acc, miou = m.get()
        assert pix_acc == pytest.approx(float(FX["metric/pixacc"][k]), rel=1e-12)
        assert miou == pytest.approx(float(FX["metric/miou"][k]), rel=1e-12)


def test_a_class_never_seen_counts_as_iou_zero_as_in_gluoncv():
    m = SegmentationMetric(int(FX["metric/nclass"]))
    m.update(FX["metric/absent_labels"], FX["metric/absent_scores"])
    np.testing.assert_allclose(m.get(), FX["metric/absent"], rtol=1e-12)
    assert m.iou()[5] == 0.0 and m.get()[1] == pytest.approx(m.iou()[:5].sum() / 6)


def test_by_hand_and_class_index_predictions():
    label = np.array([[0, 0, 1, -1], [2, 1, 1, -1]])
    pred = np.array([[0, 1, 1, 2], [2, 2, 1, 0]])  # class indices (same ndim as the labels)
    m = SegmentationMetric(3)
    m.update(label, pred)
    # labelled 6, correct 4 (0, 1, 2, 1); class 0: inter 1, union 2; class 1: inter 2, union 4; class 2: 1, 2
    assert m.get()[0] == pytest.approx(4 / 6)
    np.testing.assert_allclose(m.iou(), [1 / 2, 2 / 4, 1 / 2])
    other = SegmentationMetric(3)
    other.merge([m.state(), m.state()])  # counts add up: the same ratios
    np.testing.assert_allclose(other.get(), m.get())
    m.reset()
    assert m.get() == (0.0, 0.0)


def test_mismatched_shapes_are_errors():
    with pytest.raises(ValueError, match="differ"):
        SegmentationMetric(3).update(np.zeros((1, 4, 4)), np.zeros((1, 3, 4, 5)))
