"""Tests for gluon_bof/data/transforms/bbox.py: hand-computed values, GluonCV fixtures, pixels."""
import os

import numpy as np
import pytest

from gluon_bof.data.transforms import bbox as tbbox
from gluon_bof.ops.boxes import bbox_iou

FIX = np.load(os.path.join(os.path.dirname(__file__), "..", "fixtures", "transforms.npz"))
BOX = np.array([[10, 20, 50, 60, 3, 1]], np.float32)


def test_flip_by_hand():
    np.testing.assert_array_equal(tbbox.flip(BOX, (100, 80), flip_x=True),
                                  [[50, 20, 90, 60, 3, 1]])
    np.testing.assert_array_equal(tbbox.flip(BOX, (100, 80), flip_y=True),
                                  [[10, 20, 50, 60, 3, 1]])  # symmetric in y by chance: 80-60=20
    np.testing.assert_array_equal(tbbox.flip(BOX, (100, 90), flip_x=True, flip_y=True),
                                  [[50, 30, 90, 70, 3, 1]])
    np.testing.assert_array_equal(tbbox.flip(BOX, (100, 80)), BOX)


def test_resize_translate_by_hand():
    np.testing.assert_allclose(tbbox.resize(BOX, (100, 80), (200, 40)), [[20, 10, 100, 30, 3, 1]])
    np.testing.assert_array_equal(tbbox.translate(BOX, 5, -2), [[15, 18, 55, 58, 3, 1]])


def test_crop_by_hand():
    boxes = np.array([[10, 20, 50, 60, 0], [0, 0, 12, 12, 1], [90, 70, 100, 80, 2]], np.float32)
    # crop x 20..70, y 10..60: box 0 clipped to (20,20,50,60) -> (0,10,30,50); box 1 outside
    # (x < 20); box 2 outside.
    np.testing.assert_array_equal(tbbox.crop(boxes, (20, 10, 50, 50)), [[0, 10, 30, 50, 0]])
    # centre rule: box 0's centre (30, 40) lies outside x >= 35 -> dropped; without it kept
    np.testing.assert_array_equal(tbbox.crop(boxes, (35, 0, 65, 80)),
                                  [[0, 20, 15, 60, 0], [55, 70, 65, 80, 2]])
    np.testing.assert_array_equal(tbbox.crop(boxes, (35, 0, 65, 80), allow_outside_center=False),
                                  [[55, 70, 65, 80, 2]])
    # centre exactly on the crop's right edge is outside ([x, x + w) is half-open)
    assert len(tbbox.crop(boxes[:1], (0, 0, 30, 80), allow_outside_center=False)) == 0
    assert len(tbbox.crop(boxes[:1], (30, 0, 30, 80), allow_outside_center=False)) == 1
    np.testing.assert_array_equal(tbbox.crop(boxes, None), boxes)
    np.testing.assert_array_equal(tbbox.crop(boxes, (None, None, None, None)), boxes)


@pytest.mark.parametrize("name,fn", [
    ("flip_x", lambda b: tbbox.flip(b, (100, 80), flip_x=True)),
    ("flip_y", lambda b: tbbox.flip(b, (100, 80), flip_y=True)),
    ("flip_xy", lambda b: tbbox.flip(b, (100, 80), flip_x=True, flip_y=True)),
    ("resize", lambda b: tbbox.resize(b, (100, 80), (416, 320))),
    ("translate", lambda b: tbbox.translate(b, 7, -3)),
])
def test_matches_gluoncv(name, fn):
    np.testing.assert_allclose(fn(FIX["boxes"]), FIX[name], rtol=1e-6, atol=1e-4)


def test_crop_matches_gluoncv():
    for i, c in enumerate(FIX["crop_boxes"]):
        for key, allow in (("inside", True), ("center", False)):
            got = tbbox.crop(FIX["boxes"], tuple(c), allow_outside_center=allow)
            want = FIX[f"crop{i}_{key}"]
            assert got.shape == want.shape, (i, key)
            np.testing.assert_array_equal(got, want)


def test_inputs_untouched_extra_columns_kept_and_float32():
    boxes = np.array([[1, 2, 3, 4, 5, 6, 0.25]], np.float64)
    before = boxes.copy()
    for out in (tbbox.flip(boxes, (10, 10), True, True), tbbox.resize(boxes, (10, 10), (5, 5)),
                tbbox.translate(boxes, 1, 1), tbbox.crop(boxes, (0, 0, 10, 10))):
        assert out.dtype == np.float32 and out.shape == (1, 7)
        np.testing.assert_array_equal(out[:, 4:], before[:, 4:])
    np.testing.assert_array_equal(boxes, before)


def test_empty_boxes():
    empty = np.zeros((0, 6), np.float32)
    for out in (tbbox.flip(empty, (10, 10), True, True), tbbox.resize(empty, (10, 10), (5, 5)),
                tbbox.translate(empty, 1, 1), tbbox.crop(empty, (0, 0, 5, 5), False)):
        assert out.shape == (0, 6)
    np.random.seed(0)
    out, (x, y, w, h) = tbbox.random_crop_with_constraints(empty, (100, 80))
    assert out.shape == (0, 6) and 0 <= x <= 100 - w and 0 <= y <= 80 - h and w > 0 and h > 0


def test_bad_input_names_the_file():
    with pytest.raises(ValueError, match="bbox.py"):
        tbbox.flip(np.zeros((3,)), (10, 10))
    with pytest.raises(ValueError, match="bbox.py"):
        tbbox.resize(BOX, (10, 10, 3), (5, 5))


def _rect_image(box, w=100, h=80):
    img = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = (int(v) for v in box[:4])
    img[y0:y1, x0:x1] = 1
    return img


def _bounds(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("box", [[10, 20, 50, 60], [0, 0, 100, 80], [0, 70, 1, 80],
                                 [99, 0, 100, 5]])
def test_boxes_follow_pixels(box):
    """A filled rectangle, transformed with its box, is still bounded exactly by the box."""
    box = np.array([box + [0]], np.float32)
    img = _rect_image(box[0])
    np.testing.assert_array_equal(_bounds(img[:, ::-1]), tbbox.flip(box, (100, 80), True)[0, :4])
    np.testing.assert_array_equal(_bounds(img[::-1]),
                                  tbbox.flip(box, (100, 80), flip_y=True)[0, :4])
    canvas = np.zeros((100, 130), np.uint8)
    canvas[13:93, 21:121] = img
    np.testing.assert_array_equal(_bounds(canvas), tbbox.translate(box, 21, 13)[0, :4])
    big = np.kron(img, np.ones((2, 3), np.uint8))  # exact 3x / 2x upscale
    np.testing.assert_array_equal(_bounds(big), tbbox.resize(box, (100, 80), (300, 160))[0, :4])
    x, y, w, h = 5, 7, 60, 50
    cropped = tbbox.crop(box, (x, y, w, h))
    if img[y:y + h, x:x + w].any():
        np.testing.assert_array_equal(_bounds(img[y:y + h, x:x + w]), cropped[0, :4])
    else:
        assert len(cropped) == 0


def _check_random_crop(boxes, size, constraints=None):
    w, h = size
    out, (x, y, cw, ch) = tbbox.random_crop_with_constraints(boxes, size, constraints=constraints)
    assert 0 <= x and 0 <= y and x + cw <= w and y + ch <= h
    if (x, y, cw, ch) != (0, 0, w, h):
        # scale in [.3, 1] and aspect ratio in [.5, 2] (up to int truncation)
        assert 0.3 ** 2 * w * h * 0.9 - 2 * (w + h) <= cw * ch <= w * h
        assert 0.5 * 0.9 <= (cw / w) / (ch / h) <= 2 / 0.9
    np.testing.assert_array_equal(out, tbbox.crop(boxes, (x, y, cw, ch), False))
    return out, (x, y, cw, ch)


def test_random_crop_constraints_hold():
    np.random.seed(1)
    boxes = np.array([[30, 30, 70, 60, 0], [10, 50, 40, 78, 1], [60, 5, 95, 40, 2]], np.float32)
    for _ in range(100):
        out, crop = _check_random_crop(boxes, (100, 80))
        assert len(out) >= 1
    for _ in range(100):
        out, crop = _check_random_crop(boxes[:1], (100, 80), constraints=((0.5, None),))
        if crop != (0, 0, 100, 80):
            x, y, cw, ch = crop
            iou = bbox_iou(boxes[:1], np.array([[x, y, x + cw, y + ch]], np.float32))
            assert iou.min() >= 0.5


def test_random_crop_picks_candidates_uniformly():
    """One always-satisfied constraint: candidates {full image, one sampled crop}, each picked
    with probability 1/2; the crop is rejected (-> full image) when it misses the box centre, so
    P(full) = 1/2 + q/2 with q = P(a sampled crop misses the centre)."""
    np.random.seed(2)
    n = 1000
    # with no boxes the function returns its first sampled crop: estimates q independently
    centre = np.array([50, 40])
    misses = 0
    for _ in range(n):
        _, (x, y, cw, ch) = tbbox.random_crop_with_constraints(np.zeros((0, 5)), (100, 80))
        misses += not (x <= centre[0] < x + cw and y <= centre[1] < y + ch)
    box = np.array([[45, 35, 55, 45, 0]], np.float32)
    full = sum(_check_random_crop(box, (100, 80), ((None, None),))[1] == (0, 0, 100, 80)
               for _ in range(n))
    assert abs(full / n - (0.5 + 0.5 * misses / n)) < 0.05


def test_random_crop_border_and_tiny_boxes():
    np.random.seed(3)
    boxes = np.array([[0, 0, 5, 5, 0], [95, 75, 100, 80, 1], [0, 0, 100, 80, 2]], np.float32)
    for _ in range(50):
        _check_random_crop(boxes, (100, 80))
    # a box no crop keeps (degenerate): falls back to the full image and the boxes as given
    degenerate = np.array([[50, 40, 50, 40, 0]], np.float32)
    out, crop = tbbox.random_crop_with_constraints(degenerate, (100, 80))
    assert crop == (0, 0, 100, 80)
    np.testing.assert_array_equal(out, degenerate)
