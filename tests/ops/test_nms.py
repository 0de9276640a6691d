"""Tests of gluon_bof/nn/nms.py: MXNet box_nms semantics (values probed on MXNet 1.9.1)."""
import pytest
import torch

from gluon_bof.ops.nms import box_nms


def _one_head(rows, num_class=2):
    """rows (class, score, x1, y1, x2, y2) -> boxes [1, n, 4], scores [1, n, C] (one class each)"""
    rows = torch.tensor(rows, dtype=torch.float32)
    scores = torch.zeros(1, len(rows), num_class)
    scores[0, torch.arange(len(rows)), rows[:, 0].long()] = rows[:, 1]
    return [rows[None, :, 2:]], [scores]


ROWS = [[0, .9, 0, 0, 10, 10],
        [0, .8, 0, 0, 10, 5],       # IoU .5 with the first
        [1, .85, 0, 0, 10, 10],     # other class, same box: kept
        [0, .01, 50, 50, 60, 60],   # score == valid_thresh: dropped
        [0, .0101, 70, 70, 80, 80],
        [0, .7, 0, 0, 10, 10.5]]    # IoU .95 with the first: suppressed


def test_matches_mxnet_box_nms():
    # MXNet box_nms(overlap .5 / .45, valid .01, topk -1) outputs, rows sorted, -1 padded
    ids, scores, boxes = box_nms(*_one_head(ROWS), 0.5, 0.01, -1, 6)
    assert ids.flatten().tolist() == [0, 1, 0, 0, -1, -1]   # IoU == thresh is kept
    assert torch.allclose(scores.flatten(), torch.tensor([.9, .85, .8, .0101, -1, -1]))
    assert boxes[0, 2].tolist() == [0, 0, 10, 5] and (boxes[0, 4:] == -1).all()
    ids, scores, _ = box_nms(*_one_head(ROWS), 0.45, 0.01, -1, 6)
    assert ids.flatten().tolist() == [0, 1, 0, -1, -1, -1]


def test_topk_before_nms_and_post_nms():
    ids, scores, _ = box_nms(*_one_head(ROWS), 0.45, 0.01, 2, 6)
    assert ids.flatten().tolist() == [0, 1, -1, -1, -1, -1]
    ids, scores, boxes = box_nms(*_one_head(ROWS), 0.45, 0.01, -1, 2)
    assert ids.shape == (1, 2, 1) and boxes.shape == (1, 2, 4)


def test_disabled_nms_returns_all_pairs_and_empty_batch():
    boxes, scores = _one_head(ROWS)
    ids, s, b = box_nms(boxes, scores, 0.0)
    assert ids.shape == (1, 12, 1)  # 6 boxes x 2 classes, GluonCV's (class, box) order
    assert ids[0, :6].eq(0).all() and ids[0, 6:].eq(1).all()
    ids, s, b = box_nms([torch.zeros(2, 3, 4)], [torch.zeros(2, 3, 2)], 0.45, 0.01, 400, 5)
    assert (ids == -1).all() and (b == -1).all() and b.shape == (2, 5, 4)


def test_degenerate_boxes_are_not_candidates():
    """An under-trained YOLOv3 predicts many zero-width copies ([230, 0, 230, 365]): their IoU is
    undefined, so NMS kept every copy. They are dropped before NMS; proper boxes are untouched."""
    import torch

    from gluon_bof.ops.nms import box_nms, non_degenerate

    boxes = torch.tensor([[[230.0, 0, 230, 365], [230.0, 0, 230, 365], [230.0, 0, 230.005, 365],
                           [10.0, 10, 50, 60], [100.0, 100, 140, 100]]])
    scores = torch.tensor([[[0.99], [0.98], [0.97], [0.6], [0.95]]])
    assert non_degenerate(boxes[0]).tolist() == [False, False, False, True, False]
    ids, kept, out = box_nms([boxes], [scores], nms_thresh=0.45, post_nms=5)
    assert kept[0, :, 0].tolist() == pytest.approx([0.6, -1, -1, -1, -1])
    assert out[0, 0].tolist() == [10.0, 10, 50, 60]
