"""ImageNet presets (gluon_bof/data/transforms/presets/imagenet.py): shapes, the random resized crop's
area and aspect ranges (read back from a coordinate-coded image), flip, the validation resize and
centre crop by hand, PCA lighting and hue scaling by their formulas."""
import colorsys

import numpy as np
import pytest
import torch

from gluon_bof.data.transforms.presets.imagenet import (IMAGENET_EIGVAL, IMAGENET_EIGVEC, IMAGENET_MEAN,
                                                        IMAGENET_STD, ImageNetTrainTransform,
                                                        ImageNetValTransform, RandomHueScale,
                                                        RandomLighting)

MEAN = torch.tensor(IMAGENET_MEAN)[:, None, None]
STD = torch.tensor(IMAGENET_STD)[:, None, None]


def _coords(h, w):
    """R = column, G = row, B = 0 (uint8, so h, w <= 256)."""
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.uint8)


def _pixels(out):
    return (out * STD + MEAN) * 255.0


def test_train_output_shape_and_dtype():
    torch.manual_seed(0)
    out = ImageNetTrainTransform(32)(np.random.randint(0, 255, (40, 70, 3), np.uint8))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out = ImageNetTrainTransform(32, jitter_mode="gluoncv")(np.zeros((20, 20, 3), np.uint8))
    assert out.shape == (3, 32, 32)


def test_random_resized_crop_area_and_aspect_ranges():
    torch.manual_seed(0)
    t = ImageNetTrainTransform(48, jitter=0.0, lighting=0.0)
    img = _coords(200, 200)
    areas, ratios, flipped = [], [], 0
    for _ in range(300):
        px = _pixels(t(img))
        x, y = px[0], px[1]
        w = (x.max() - x.min()).item() + 1
        h = (y.max() - y.min()).item() + 1
        areas.append(w * h / 200 ** 2)
        ratios.append(w / h)
        flipped += bool(x[0, 0] > x[0, -1])
    areas, ratios = np.array(areas), np.array(ratios)
    # resampling blurs the edges by about a pixel: small tolerances
    assert areas.min() > 0.08 * 0.85 and areas.max() <= 1.0 + 1e-6
    assert ratios.min() > 0.75 * 0.9 and ratios.max() < 4 / 3 * 1.1
    assert areas.min() < 0.2 and areas.max() > 0.8  # the whole range is used
    assert 100 < flipped < 200  # horizontal flip with probability 0.5


def test_val_resizes_shorter_side_and_centre_crops():
    t = ImageNetValTransform(56, 0.875)
    assert t.resize == 64 and ImageNetValTransform().resize == 256  # ceil(224 / 0.875)
    img = _coords(128, 192)  # shorter side 128 -> 64 (scale 1/2): 64 x 96, crop rows 4..59, cols 20..75
    px = _pixels(t(img))
    assert px.shape == (3, 56, 56)
    for i in (0, 27, 55):  # output pixel i covers input pixels 2 * (offset + i) .. + 1
        assert px[0, 10, i].item() == pytest.approx(2 * (20 + i) + 0.5, abs=0.6)
        assert px[1, i, 10].item() == pytest.approx(2 * (4 + i) + 0.5, abs=0.6)


def test_pca_lighting_by_formula():
    img = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    out = RandomLighting(0.1)(img)
    torch.manual_seed(3)
    alpha = torch.randn(3).numpy() * 0.1
    rgb = (np.array(IMAGENET_EIGVEC) * alpha) @ np.array(IMAGENET_EIGVAL)  # GluonCV's random_pca_lighting
    np.testing.assert_allclose((out - img).numpy(), np.broadcast_to(rgb[:, None, None] / 255, (3, 4, 5)),
                               atol=1e-6)
    assert torch.equal(RandomLighting(0.0)(img), img)


def test_hue_scaling_by_formula():
    pixels = [[0.9, 0.6, 0.2], [0.5, 0.5, 0.5], [0.4, 0.7, 0.1]]  # RGB of 3 pixels, the second grey
    img = torch.tensor(pixels).T[:, :, None]  # [3, 3, 1]
    torch.manual_seed(7)
    out = RandomHueScale(0.4)(img)
    torch.manual_seed(7)
    factor = 1.0 + (torch.rand(()).item() * 2 - 1) * 0.4
    for p in range(3):
        h, s, v = colorsys.rgb_to_hsv(*img[:, p, 0].tolist())
        expected = colorsys.hsv_to_rgb((h * factor) % 1.0, s, v)
        np.testing.assert_allclose(out[:, p, 0].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(out[:, 1, 0].numpy(), [0.5, 0.5, 0.5])  # grey is unchanged
