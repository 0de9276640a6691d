"""Tests for gluon_bof/data/transforms/presets/yolo.py."""
import os

import cv2
import numpy as np
import pytest
import torch

from gluon_bof.data.transforms import bbox as tbbox
from gluon_bof.data.transforms import image as timage
from gluon_bof.data.transforms.presets import yolo
from gluon_bof.data.transforms.presets.yolo import (YOLO3DefaultTrainTransform,
                                                    YOLO3DefaultValTransform)

FIX = np.load(os.path.join(os.path.dirname(__file__), "..", "fixtures", "transforms.npz"))
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _img(h=60, w=80, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)


# ---- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize("name,size", [("down", (32, 24)), ("up", (64, 48)), ("mixed", (48, 20))])
def test_val_matches_gluoncv(name, size):
    img, label = YOLO3DefaultValTransform(*size)(FIX["val_img"], FIX["val_lab"])
    assert isinstance(img, torch.Tensor) and img.dtype == torch.float32
    assert img.shape == (3, size[1], size[0])
    # bicubic ('up') may differ by one uint8 level between OpenCV builds: 1 / 255 / .224
    np.testing.assert_allclose(img.numpy(), FIX[f"val_{name}_img"], atol=0.018)
    np.testing.assert_allclose(label, FIX[f"val_{name}_label"], rtol=1e-6, atol=1e-4)
    assert label.dtype == np.float32


def test_val_normalisation_and_difficult_column():
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 1] = 255
    out, label = YOLO3DefaultValTransform(4, 4)(img, np.array([[0, 0, 2, 2, 5]], np.float32))
    np.testing.assert_allclose(out[:, 0, 0].numpy(), (np.array([0, 1, 0]) - MEAN) / STD, atol=1e-5)
    np.testing.assert_array_equal(label, [[0, 0, 2, 2, 5, 0]])
    _, label = YOLO3DefaultValTransform(8, 8)(img, np.zeros((0, 6), np.float32))
    assert label.shape == (0, 6)


# ---- training ------------------------------------------------------------------------------
def test_train_output_contract():
    label = np.array([[10, 10, 50, 40, 3, 1, 0.3], [0, 0, 80, 60, 1, 0, 0.7]], np.float32)
    np.random.seed(0)
    for mixup, weights in ((False, {1.0}), (True, {np.float32(0.3), np.float32(0.7)})):
        t = YOLO3DefaultTrainTransform(64, 32, mixup=mixup)
        for _ in range(10):
            img, out = t(_img(), label)
            assert img.shape == (3, 32, 64) and img.dtype == torch.float32 and img.is_contiguous()
            assert out.dtype == np.float32 and out.shape[1] == 6 and 1 <= len(out) <= 2
            assert set(out[:, 5]) <= weights and set(out[:, 4]) <= {1, 3}
            assert (out[:, :2] >= 0).all() and (out[:, 2] <= 64).all() and (out[:, 3] <= 32).all()
            assert (out[:, :2] < out[:, 2:4]).all()
        img, out = t(_img(), label, size=(96, 128))  # random-shape override, this call only
        assert img.shape == (3, 128, 96) and (out[:, 2] <= 96).all() and (out[:, 3] <= 128).all()
        assert t(_img(), label)[0].shape == (3, 32, 64)


@pytest.mark.parametrize("label", [np.zeros((0, 6), np.float32), np.zeros((0, 5), np.float32),
                                   np.array([[0, 0, 80, 60, 2]], np.float32),
                                   np.array([[79, 59, 80, 60, 2, 0]], np.float32)])
def test_train_empty_single_and_border_boxes(label):
    np.random.seed(1)
    t = YOLO3DefaultTrainTransform(32, 32)
    for _ in range(20):
        img, out = t(_img(), label)
        assert img.shape == (3, 32, 32) and torch.isfinite(img).all()
        assert out.shape[1] == 6 and len(out) <= len(label)
        if len(out):
            assert (out[:, 5] == 1).all() and (out[:, 4] == 2).all()


def test_train_without_augmentation_is_resize_and_normalise():
    label = np.array([[10, 10, 50, 40, 3, 1]], np.float32)
    img = _img()
    out, lab = YOLO3DefaultTrainTransform(40, 30, data_aug=False)(img, label)
    ref, ref_lab = YOLO3DefaultValTransform(40, 30)(img, label)
    torch.testing.assert_close(out, ref)
    np.testing.assert_allclose(lab, [[5, 5, 25, 20, 3, 1]])  # weight 1, not difficult


def _reference(img, label, size, seed, mean=MEAN, std=STD):
    """GluonCV's unfused order built from the (separately GluonCV-checked) primitives."""
    np.random.seed(seed)
    x = timage.random_color_distort(img)
    bbox = np.concatenate([label[:, :5], np.ones((len(label), 1), np.float32)], 1)
    if np.random.uniform(0, 1) > 0.5:
        x, (ox, oy, _, _) = timage.random_expand(x, fill=[m * 255 for m in mean])
        bbox = tbbox.translate(bbox, ox, oy)
    h, w = x.shape[:2]
    bbox, (cx, cy, cw, ch) = tbbox.random_crop_with_constraints(bbox, (w, h))
    x = x[cy:cy + ch, cx:cx + cw]
    x = timage.imresize(x, *size, interp=np.random.randint(0, 5))
    bbox = tbbox.resize(bbox, (cw, ch), size)
    if np.random.random_sample() >= 0.5:
        x = x[:, ::-1]
        bbox = tbbox.flip(bbox, size, flip_x=True)
    x = (x / np.float32(255) - mean) / std
    return x.transpose(2, 0, 1), bbox


def test_train_fused_pipeline_equals_unfused_gluoncv_order():
    label = np.array([[10, 12, 50, 40, 3, 0], [30, 5, 79, 59, 1, 1]], np.float32)
    t = YOLO3DefaultTrainTransform(48, 40)
    for seed in range(40):
        img = _img(seed=seed)
        np.random.seed(seed)
        got, got_lab = t(img, label)
        want, want_lab = _reference(img, label, (48, 40), seed)
        np.testing.assert_allclose(got.numpy(), want, atol=2e-4, err_msg=f"seed {seed}")
        np.testing.assert_allclose(got_lab, want_lab, atol=1e-4)


def test_train_boxes_follow_pixels(monkeypatch):
    """A white rectangle on black, with colour jitter off, is bounded by the output box."""
    monkeypatch.setattr(yolo.timage, "sample_color_distort",
                        lambda **kw: timage.brightness_matrix(0))
    img = np.zeros((60, 80, 3), np.uint8)
    img[15:45, 20:60] = 255
    label = np.array([[20, 15, 60, 45, 0]], np.float32)
    t = YOLO3DefaultTrainTransform(64, 48)
    white = (1 - MEAN[0]) / STD[0]  # black is -mean/std, the expansion fill 0
    np.random.seed(3)
    checked = 0
    for _ in range(60):
        out, lab = t(img, label)
        if not len(lab):
            continue
        ys, xs = np.nonzero(out[0].numpy() > white / 2)
        if len(xs) == 0:  # box of under a pixel after resizing
            continue
        found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        np.testing.assert_allclose(found, lab[0, :4], atol=1.5)
        checked += 1
    assert checked > 30


def test_bad_hue_mode_and_label():
    with pytest.raises(ValueError, match="image.py"):
        YOLO3DefaultTrainTransform(32, 32, hue_mode="rad")
    with pytest.raises(ValueError, match="yolo.py"):
        YOLO3DefaultTrainTransform(32, 32)(_img(), np.zeros((2, 3), np.float32))


# ---- the drawn augmentation and the two resize routes ---------------------------------------
def _canvas_render(img, aug):
    """The pre-resample implementation: materialise the crop (fill 0), cv2.resize, flip."""
    h, w = img.shape[:2]
    (ox, oy), (cx, cy, cw, ch) = aug.offset, aug.crop
    canvas = np.zeros((max(cy + ch, oy + h), max(cx + cw, ox + w), 3), np.float32)
    canvas[oy:oy + h, ox:ox + w] = timage.apply_color_matrix(img, aug.color)
    out = cv2.resize(canvas[cy:cy + ch, cx:cx + cw], aug.size, interpolation=aug.interp)
    return (out[:, ::-1] if aug.flip else out).transpose(2, 0, 1)


def test_call_is_draw_then_render():
    label = np.array([[30, 40, 200, 150, 3, 0], [100, 20, 300, 290, 1, 0]], np.float32)
    img = _img(300, 400, seed=4)
    t = YOLO3DefaultTrainTransform(96, 64)
    for seed in range(10):
        np.random.seed(seed)
        out, lab = t(img, label, size=(128, 96))
        np.random.seed(seed)
        aug, lab2 = t.draw(300, 400, label, size=(128, 96))
        np.testing.assert_array_equal(lab, lab2)
        torch.testing.assert_close(out, yolo.render(img, aug), rtol=0, atol=0)
        assert aug.size == (128, 96) and isinstance(aug.flip, bool) and 0 <= aug.interp <= 4
    with pytest.raises(ValueError, match="data_aug"):
        YOLO3DefaultTrainTransform(32, 32, data_aug=False).draw(10, 10, label)


@pytest.mark.parametrize("interp", range(5))
def test_render_equals_the_materialised_canvas(interp):
    """Crops holding expansion fill are resized from the image part alone (resample.py) when the
    canvas is large: the same pixels as cv2.resize of the materialised canvas, to float32 rounding
    (sparse route for nearest, area, Lanczos: OpenCV's generic code, which it mirrors)."""
    rng = np.random.default_rng(interp)
    img = _img(75, 100, seed=interp)
    color = timage.compose_color(timage.sample_color_distort(), yolo._normalizer(MEAN, STD))
    worst = 0.0
    for _ in range(12):
        scale = rng.uniform(1, 4)
        ew, eh = int(100 * scale), int(75 * scale)
        ox, oy = int(rng.integers(0, ew - 100 + 1)), int(rng.integers(0, eh - 75 + 1))
        cw, ch = int(rng.integers(20, ew + 1)), int(rng.integers(20, eh + 1))
        cx, cy = int(rng.integers(0, ew - cw + 1)), int(rng.integers(0, eh - ch + 1))
        aug = yolo.YOLO3Augmentation(color, (ox, oy), (cx, cy, cw, ch), interp, bool(rng.integers(2)),
                                     (32, 24))
        got = yolo.render(img, aug).numpy()
        want = _canvas_render(img, aug)
        worst = max(worst, np.abs(got - want).max())
    assert worst < 1e-5, worst


def test_render_takes_the_sparse_route_for_large_fill(monkeypatch):
    calls = []
    real = yolo.resample.resize_embedded
    monkeypatch.setattr(yolo.resample, "resize_embedded", lambda *a, **k: calls.append(a) or real(*a, **k))
    img = _img(30, 40)
    color = yolo._normalizer(MEAN, STD)
    big = yolo.YOLO3Augmentation(color, (50, 50), (0, 0, 160, 120), 4, False, (32, 32))
    inside = yolo.YOLO3Augmentation(color, (0, 0), (5, 5, 20, 20), 4, False, (32, 32))
    bilinear = big._replace(interp=1)  # bilinear and bicubic stay with OpenCV (IPP) throughout
    for aug in (big, inside, bilinear):
        np.testing.assert_allclose(yolo.render(img, aug).numpy(), _canvas_render(img, aug), atol=1e-5)
    assert len(calls) == 1
