"""Faster R-CNN presets (gluon_bof/data/transforms/presets/rcnn.py) against GluonCV 0.10.5
(fixture tests/fixtures/rcnn_parts.npz, tf_* entries, from gen_rcnn.py) and by hand."""
from pathlib import Path

import numpy as np
import pytest

from gluon_bof.data.transforms.presets.rcnn import (FasterRCNNDefaultTrainTransform,
                                                     FasterRCNNDefaultValTransform,
                                                     resize_short_within_size)

FX = dict(np.load(Path(__file__).resolve().parents[1] / "fixtures" / "rcnn_parts.npz"))
SETTINGS = {"s": (60, 100), "m": (80, 100)}


def test_resize_size_by_hand():
    assert resize_short_within_size(375, 500, 600, 1000) == (600, 800)
    assert resize_short_within_size(300, 900, 600, 1000) == (333, 1000)   # longer side bound
    assert resize_short_within_size(480, 640, 800, 1333) == (800, 1067)
    assert resize_short_within_size(800, 1200, 800, 1200, mult_base=32) == (800, 1184)


@pytest.mark.parametrize("key", ["s", "m"])
@pytest.mark.parametrize("flip", [0, 1])
def test_train_matches_gluoncv(key, flip):
    short, max_size = SETTINGS[key]
    t = FasterRCNNDefaultTrainTransform(short, max_size, flip_p=float(flip))
    img, label = t(FX["tf_img"], FX["tf_label"])
    ref_img, ref_label = FX[f"tf_train_{key}{flip}_img"], FX[f"tf_train_{key}{flip}_label"]
    assert img.shape == ref_img.shape and img.dtype.is_floating_point
    np.testing.assert_allclose(img.numpy(), ref_img, atol=1e-5)
    np.testing.assert_allclose(label[:, :5], ref_label[:, :5], atol=1e-4)
    np.testing.assert_array_equal(label[:, 5], 1.0)  # mix weight column (no mixup)


@pytest.mark.parametrize("key", ["s", "m"])
def test_val_matches_gluoncv(key):
    img, label = FasterRCNNDefaultValTransform(*SETTINGS[key])(FX["tf_img"], FX["tf_label"])
    np.testing.assert_allclose(img.numpy(), FX[f"tf_val_{key}_img"], atol=1e-5)
    np.testing.assert_allclose(label, FX[f"tf_val_{key}_label"], atol=1e-4)  # difficult kept


def test_mixup_weight_no_aug_and_empty():
    lab = np.array([[3, 4, 40, 30, 2, 0, 0.3]], np.float32)  # difficult, then mix weight
    np.random.seed(0)
    t = FasterRCNNDefaultTrainTransform(60, 100, mixup=True, data_aug=False, flip_p=1.0)
    img, label = t(FX["tf_img"], lab)
    np.testing.assert_allclose(label[0], [3.6, 4.8, 48, 36, 2, 0.3], rtol=1e-6)  # no flip
    img, label = t(FX["tf_img"], np.zeros((0, 6), np.float32))
    assert img.shape == (3, 60, 84) and label.shape == (0, 6)
    short_range = FasterRCNNDefaultTrainTransform((50, 52), 1000)
    sizes = {short_range(FX["tf_img"], lab[:, :6])[0].shape[1] for _ in range(30)}
    assert sizes <= {50, 51, 52} and len(sizes) > 1
    with pytest.raises(ValueError, match="presets/rcnn.py"):
        FasterRCNNDefaultValTransform()(FX["tf_img"], np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("key,size", [("s", (60, 84)), ("m", (71, 100))])
def test_val_original_coords(key, size):
    # 50x70 input: short 60 -> 60x84; short 80 would give 80x112 > 100, so 100 / 70 -> 71x100
    img, label, scale = FasterRCNNDefaultValTransform(*SETTINGS[key], original_coords=True)(
        FX["tf_img"], FX["tf_label"])
    assert tuple(img.shape[-2:]) == size
    np.testing.assert_array_equal(label, FX["tf_label"])  # left in the input's pixels
    np.testing.assert_allclose(scale, [50 / size[0], 70 / size[1]], rtol=1e-6)
    # the scaled-back resized labels (GluonCV's route) are the original labels again
    np.testing.assert_allclose(FX[f"tf_val_{key}_label"][:, [0, 2]] * scale[1], label[:, [0, 2]], atol=1e-3)
    np.testing.assert_allclose(FX[f"tf_val_{key}_label"][:, [1, 3]] * scale[0], label[:, [1, 3]], atol=1e-3)
