"""Tests for gluon_bof/data/transforms/image.py: formulas, GluonCV fixtures, box consistency."""
import math
import os

import numpy as np
import pytest

from gluon_bof.data.transforms import bbox as tbbox
from gluon_bof.data.transforms import image as timage

FIX = np.load(os.path.join(os.path.dirname(__file__), "..", "fixtures", "transforms.npz"))


# ---- resize --------------------------------------------------------------------------------
@pytest.mark.parametrize("interp", range(5))
@pytest.mark.parametrize("name,size", [("down", (11, 9)), ("up", (29, 23))])
def test_imresize_matches_gluoncv(interp, name, size):
    src = FIX["resize_img"]
    got = timage.imresize(src, *size, interp=interp)
    want = FIX[f"imresize_{interp}_{name}_u8"]
    assert got.dtype == np.uint8 and got.shape == want.shape
    # bicubic differs by at most one level between OpenCV builds (MXNet bundles its own)
    assert np.abs(got.astype(int) - want).max() <= (1 if interp == 2 else 0)
    srcf = src.astype(np.float32) * np.float32(1.1) - 7
    gotf = timage.imresize(srcf, *size, interp=interp)
    assert gotf.dtype == np.float32
    np.testing.assert_allclose(gotf, FIX[f"imresize_{interp}_{name}_f32"], atol=1e-3)


def test_interp_codes():
    assert timage.get_interp(9, (10, 10, 20, 20)) == 2  # enlarge both: bicubic
    assert timage.get_interp(9, (10, 10, 5, 5)) == 3    # shrink both: area
    assert timage.get_interp(9, (10, 10, 20, 5)) == 1   # otherwise bilinear
    np.random.seed(0)
    assert {timage.get_interp(10) for _ in range(200)} == {0, 1, 2, 3, 4}
    with pytest.raises(ValueError, match="image.py"):
        timage.get_interp(7)


# ---- expand / flip -------------------------------------------------------------------------
def test_random_expand_places_image_and_fills():
    src = np.random.RandomState(0).randint(0, 256, (20, 30, 3)).astype(np.uint8)
    fill = (10, 20, 30)
    np.random.seed(0)
    for _ in range(20):
        out, (x, y, ow, oh) = timage.random_expand(src, max_ratio=4, fill=fill)
        assert out.shape == (oh, ow, 3) and out.dtype == np.uint8
        assert 30 <= ow <= 120 and 20 <= oh <= 80 and abs(ow / 30 - oh / 20) < 0.1  # keep ratio
        assert 0 <= x <= ow - 30 and 0 <= y <= oh - 20
        np.testing.assert_array_equal(out[y:y + 20, x:x + 30], src)
        mask = np.ones((oh, ow), bool)
        mask[y:y + 20, x:x + 30] = False
        np.testing.assert_array_equal(out[mask], np.tile(fill, (mask.sum(), 1)))
    same, crop = timage.random_expand(src, max_ratio=1)
    assert same is src and crop == (0, 0, 30, 20)
    with pytest.raises(ValueError, match="image.py"):
        timage.random_expand(src, fill=(1, 2))


def test_random_expand_float_fill_and_boxes_follow():
    src = np.zeros((20, 30, 3), np.float32)
    src[5:15, 8:20] = 255
    box = np.array([[8, 5, 20, 15, 0]], np.float32)
    np.random.seed(1)
    out, (x, y, _, _) = timage.random_expand(src, fill=(123.675, 116.28, 103.53))
    assert out[0, 0, 0] == np.float32(123.675) or (x, y) == (0, 0)
    ys, xs = np.nonzero(out[..., 0] == 255)
    np.testing.assert_array_equal([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                                  tbbox.translate(box, x, y)[0, :4])


def test_random_flip():
    src = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out, flips = timage.random_flip(src, px=1)
    assert flips == (True, False)
    np.testing.assert_array_equal(out, src[:, ::-1])
    out, flips = timage.random_flip(src, py=1)
    assert flips == (False, True)
    np.testing.assert_array_equal(out, src[::-1])
    out, flips = timage.random_flip(src)
    assert flips == (False, False) and out is src
    np.random.seed(0)
    rate = np.mean([timage.random_flip(src, px=0.5)[1][0] for _ in range(1000)])
    assert 0.45 < rate < 0.55


# ---- colour --------------------------------------------------------------------------------
def _scripted(monkeypatch, draws, coin):
    seq = list(draws)
    monkeypatch.setattr(np.random, "uniform", lambda *a, **k: seq.pop(0))
    monkeypatch.setattr(np.random, "randint", lambda *a, **k: coin)
    return seq


def _by_hand(img, draws, coin, hue_mode):
    """GluonCV's colour recipe written out per pixel (float64), from the scripted draws."""
    draws = list(draws)
    x = img.astype(np.float64)
    if draws.pop(0) > 0.5:
        x = x + draws.pop(0)

    def contrast(x):
        return x * draws.pop(0) if draws.pop(0) > 0.5 else x

    def saturation(x):
        if draws.pop(0) > 0.5:
            a = draws.pop(0)
            gray = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
            x = a * x + (1 - a) * gray[..., None]
        return x

    def hue(x):
        if draws.pop(0) > 0.5:
            alpha = draws.pop(0)
            theta = alpha * math.pi if hue_mode == "gluoncv" else math.radians(alpha)
            r, g, b = x[..., 0], x[..., 1], x[..., 2]
            yy = 0.299 * r + 0.587 * g + 0.114 * b
            i = 0.596 * r - 0.274 * g - 0.321 * b
            q = 0.211 * r - 0.523 * g + 0.311 * b
            c, s = math.cos(theta), math.sin(theta)
            i, q = c * i - s * q, s * i + c * q
            x = np.stack([yy + 0.956 * i + 0.621 * q, yy - 0.272 * i - 0.647 * q,
                          yy - 1.107 * i + 1.705 * q], axis=-1)
        return x

    x = hue(saturation(contrast(x))) if coin else contrast(hue(saturation(x)))
    assert not draws
    return x


@pytest.mark.parametrize("k", range(5))
def test_color_distort_matches_gluoncv(monkeypatch, k):
    draws, coin = FIX[f"color{k}_draws"], int(FIX[f"color{k}_coin"])
    left = _scripted(monkeypatch, draws, coin)
    got = timage.random_color_distort(FIX["color_img"], hue_mode="gluoncv")
    assert not left and got.dtype == np.float32 and got.shape == FIX["color_img"].shape
    np.testing.assert_allclose(got, FIX[f"color{k}_out"], atol=2e-3)


@pytest.mark.parametrize("hue_mode", ["gluoncv", "degrees"])
@pytest.mark.parametrize("k", range(5))
def test_color_distort_formulas(monkeypatch, hue_mode, k):
    draws, coin = FIX[f"color{k}_draws"], int(FIX[f"color{k}_coin"])
    _scripted(monkeypatch, draws, coin)
    got = timage.random_color_distort(FIX["color_img"], hue_mode=hue_mode)
    np.testing.assert_allclose(got, _by_hand(FIX["color_img"], draws, coin, hue_mode),
                               atol=2e-3)


def test_color_distort_is_not_clipped_and_hue_degrees_is_small():
    img = FIX["color_img"]
    assert FIX["color0_out"].max() > 255  # GluonCV keeps out-of-range values; so do we
    # 3 degrees barely moves colours; GluonCV's 3 * pi radians is a half-turn of the chroma
    small = timage.apply_color_matrix(img, timage.hue_matrix(3.0, "degrees"))
    turned = timage.apply_color_matrix(img, timage.hue_matrix(3.0, "gluoncv"))
    assert np.abs(small - img).max() < 15 < np.abs(turned - img).max()
    with pytest.raises(ValueError, match="image.py"):
        timage.hue_matrix(1.0, "radians")


def test_color_distort_random_draws_are_in_range():
    """Every op fires about half the time and keeps gray pixels gray (hue, saturation)."""
    gray = np.full((2, 2, 3), 100, np.uint8)
    np.random.seed(0)
    vals = np.array([timage.random_color_distort(gray)[0, 0] for _ in range(2000)])
    # gray stays gray up to the YIQ matrices' rounding; brightness/contrast bound the value
    assert np.abs(vals - vals.mean(axis=1, keepdims=True)).max() < 1.5
    assert vals.min() > (100 - 32) * 0.5 - 2 and vals.max() < (100 + 32) * 1.5 + 2
    # saturation keeps gray exactly; hue nearly (GluonCV's YIQ matrices are inverse to ~1e-3):
    # unchanged iff no brightness, no contrast and no hue: 1/8 of draws
    assert 0.1 < np.mean(np.abs(vals[:, 0] - 100) < 1e-3) < 0.15
