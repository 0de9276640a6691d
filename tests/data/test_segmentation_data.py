"""ADE20K segmentation data (gluon_bof/data/segmentation.py), GluonCV's segmentation transforms
(gluon_bof/data/transforms/segmentation.py, presets/segmentation.py) and the built-in generated
masks (gluon_bof/data/synthetic_segmentation.py).

GluonCV's transform outputs come from tests/fixtures/fcn.npz (tests/fixtures/gen_fcn.py): its
``_sync_transform`` after ``random.seed(seed)`` and ``_val_sync_transform`` on stored images and raw
ADE masks. Our train transform replays the same draws with ``rng=random.Random(seed)``.
"""
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gluon_bof.data.base import DatasetError
from gluon_bof.data.segmentation import ADE20K_CLASSES, ADE20KSegmentation
from gluon_bof.data.synthetic_segmentation import CLASSES, generate, render_scene
from gluon_bof.data.transforms import segmentation as tseg
from gluon_bof.data.transforms.presets.segmentation import (IMAGENET_MEAN, IMAGENET_STD, SegmentationTrainTransform,
                                                            SegmentationValTransform, to_tensor_pair)

FX = np.load(Path(__file__).resolve().parents[1] / "fixtures" / "fcn.npz")
CASES = sorted({k.split("/")[1] for k in FX.files if k.startswith("transform/")})


def _write_ade(root, pairs, split="training"):
    """Writes ``{stem: (img, raw mask or None)}`` in the ADE20K layout under ``root``."""
    base = root / "ADEChallengeData2016"
    for sub in ("images", "annotations"):
        (base / sub / split).mkdir(parents=True, exist_ok=True)
    for stem, (img, raw) in pairs.items():
        if img is not None:
            cv2.imwrite(str(base / "images" / split / f"{stem}.jpg"), img[..., ::-1])
        if raw is not None:
            cv2.imwrite(str(base / "annotations" / split / f"{stem}.png"), raw)
    return root


def _pair(h=20, w=30, top=3, seed=0):
    rs = np.random.RandomState(seed)
    return rs.randint(0, 256, (h, w, 3)).astype(np.uint8), rs.randint(0, top + 1, (h, w)).astype(np.uint8)


def test_reads_pairs_in_order_and_maps_labels(tmp_path):
    img, raw = _pair()
    raw[0, :4] = [0, 1, 2, 3]
    _write_ade(tmp_path, {"b": (img, raw), "a": _pair(seed=1)})
    ds = ADE20KSegmentation(tmp_path, "train")
    assert len(ds) == 2 and ds.images[0].endswith("a.jpg") and ds.masks[1].endswith("b.png")
    assert ds.classes == ADE20K_CLASSES and ds.num_class == 150 and ds.pred_offset == 1
    image, mask = ds[1]
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert mask.dtype == np.int32 and mask[0, :4].tolist() == [-1, 0, 1, 2]  # ADE's 0 = other -> ignored
    np.testing.assert_array_equal(mask, raw.astype(np.int32) - 1)
    # the ADEChallengeData2016 folder itself is accepted too
    assert len(ADE20KSegmentation(tmp_path / "ADEChallengeData2016", "train")) == 2


def test_classes_file_and_transform(tmp_path):
    _write_ade(tmp_path, {"a": _pair(top=2)}, split="validation")
    (tmp_path / "classes.txt").write_text("bg\nthing\n")
    ds = ADE20KSegmentation(tmp_path, "val", transform=lambda img, mask: (img.shape, mask.max()))
    assert ds.classes == ("bg", "thing") and ds[0] == ((20, 30, 3), 1)


def test_an_image_without_annotation_names_it(tmp_path):
    _write_ade(tmp_path, {"a": _pair(), "lonely": (_pair()[0], None)})
    with pytest.raises(DatasetError, match=r"lonely\.jpg: no annotation.*lonely\.png"):
        ADE20KSegmentation(tmp_path, "train")


def test_an_annotation_without_image_names_it(tmp_path):
    _write_ade(tmp_path, {"a": _pair(), "orphan": (None, _pair()[1])})
    with pytest.raises(DatasetError, match=r"orphan\.png: no image for this annotation"):
        ADE20KSegmentation(tmp_path, "train")


def test_mask_of_another_size_names_both_files(tmp_path):
    img, _ = _pair()
    _write_ade(tmp_path, {"a": (img, _pair(h=21)[1])})
    ds = ADE20KSegmentation(tmp_path, "train")
    with pytest.raises(DatasetError, match=r"a\.png: annotation is 30x21 pixels, its image .*a\.jpg is 30x20"):
        ds[0]


def test_label_out_of_range_names_the_file(tmp_path):
    img, raw = _pair()
    raw[3, 3] = 3
    _write_ade(tmp_path, {"a": (img, raw)})
    (tmp_path / "classes.txt").write_text("x\ny\n")
    with pytest.raises(DatasetError, match=r"a\.png: label value 3 is out of range: this dataset has 2 classes"):
        ADE20KSegmentation(tmp_path, "train")[0]


def test_colour_annotation_names_the_file(tmp_path):
    img, _ = _pair()
    _write_ade(tmp_path, {"a": (img, img)})
    with pytest.raises(DatasetError, match=r"a\.png: the annotation has 3 channels"):
        ADE20KSegmentation(tmp_path, "train")[0]


def test_missing_folders_and_bad_split(tmp_path):
    with pytest.raises(DatasetError, match="scripts/datasets/ade20k.py"):
        ADE20KSegmentation(tmp_path, "train")
    _write_ade(tmp_path, {"a": _pair()})
    with pytest.raises(DatasetError, match="validation.*not found"):
        ADE20KSegmentation(tmp_path, "val")
    with pytest.raises(DatasetError, match="split must be one of"):
        ADE20KSegmentation(tmp_path, "test")


# ------------------------------------------------------------------------------------ transforms
@pytest.mark.parametrize("case", CASES)
def test_train_transform_equals_gluoncvs_sync_transform(case):
    base, crop, seed = FX[f"transform/{case}/params"].tolist()
    img, raw = FX[f"transform/{case}/img"], FX[f"transform/{case}/raw"]
    t = SegmentationTrainTransform(base, crop, rng=random.Random(seed))
    out_img, out_mask = t.augment(img, raw.astype(np.int32) - 1)
    np.testing.assert_array_equal(out_img, FX[f"transform/{case}/train_img"])
    np.testing.assert_array_equal(out_mask, FX[f"transform/{case}/train_mask"])


@pytest.mark.parametrize("case", CASES)
def test_val_transform_equals_gluoncvs_val_sync_transform(case):
    _, crop, _ = FX[f"transform/{case}/params"].tolist()
    img, raw = FX[f"transform/{case}/img"], FX[f"transform/{case}/raw"]
    out_img, out_mask = SegmentationValTransform(crop).augment(img, raw.astype(np.int32) - 1)
    np.testing.assert_array_equal(out_img, FX[f"transform/{case}/val_img"])
    np.testing.assert_array_equal(out_mask, FX[f"transform/{case}/val_mask"])


def test_fixture_cases_cover_padding_blur_and_both_orientations():
    """What the parity cases exercise, worked out from the stored draws: padding with the ignore
    label (a crop larger than the scaled image), the blur branch, portrait and landscape."""
    padded = FX["transform/pad/train_mask"]
    assert (padded[-1] == -1).all() or (padded[:, -1] == -1).all()
    blurred = []
    for case in CASES:
        r = random.Random(int(FX[f"transform/{case}/params"][2]))
        r.random(), r.randint(0, 1), r.randint(0, 0), r.randint(0, 0)  # flip, scale, x1, y1 draws
        blurred.append(r.random() < 0.5)
    assert any(blurred)
    shapes = [FX[f"transform/{c}/img"].shape for c in CASES]
    assert any(h > w for h, w, _ in shapes) and any(w > h for h, w, _ in shapes)


def test_geometry_by_hand():
    assert tseg.long_side_size(200, 100, 50) == (50, 25) and tseg.long_side_size(30, 61, 40) == (20, 40)
    assert tseg.short_side_size(200, 100, 50) == (100, 50) and tseg.short_side_size(33, 50, 20) == (20, 30)
    assert tseg.center_crop_offset(51, 50, 48) == (2, 1)  # round(1.5) = 2, round(1.0) = 1
    assert tseg.center_crop_offset(49, 49, 48) == (0, 0)  # round(0.5) = 0: Python's halves to even
    img, mask = np.zeros((3, 5, 3), np.uint8), np.arange(15).reshape(3, 5)
    pimg, pmask = tseg.pad_to_crop(img + 7, mask, 4)
    assert pimg.shape == (4, 5, 3) and (pimg[3] == 0).all() and (pmask[3] == -1).all() and (pmask[:3] == mask).all()
    fimg, fmask = tseg.hflip(img, mask)
    assert fmask[0].tolist() == [4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="leaves"):
        tseg.crop(img, mask, 2, 0, 4)


def test_to_tensor_normalises_and_keeps_labels():
    img = np.full((2, 3, 3), 255, np.uint8)
    img[0, 0] = 0
    x, m = to_tensor_pair(img, np.array([[-1, 0, 1], [2, 3, 4]]))
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32 and m.dtype == torch.int64
    expected = (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x[:, 1, 1].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(x[:, 0, 0].numpy(), -np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD), rtol=1e-6)
    assert m[0, 0] == -1


def test_train_transform_output_and_seeded_draws():
    img, raw = _pair(h=50, w=70)
    t = SegmentationTrainTransform(40, 32)
    np.random.seed(3)
    x1, m1 = t(img, raw.astype(np.int32) - 1)
    np.random.seed(3)
    x2, m2 = t(img, raw.astype(np.int32) - 1)
    assert x1.shape == (3, 32, 32) and m1.shape == (32, 32) and torch.equal(x1, x2) and torch.equal(m1, m2)
    assert set(np.unique(m1.numpy())) <= {-1, 0, 1, 2}


# ----------------------------------------------------------------------------- generated masks
def test_generated_scene_is_deterministic_and_labelled():
    img1, ann1 = render_scene(np.random.default_rng([0, 10, 3]))
    img2, ann2 = render_scene(np.random.default_rng([0, 10, 3]))
    assert np.array_equal(img1, img2) and np.array_equal(ann1, ann2)
    assert img1.shape[:2] == ann1.shape and 128 <= img1.shape[1] <= 224 and 112 <= img1.shape[0] <= 192
    assert ann1.dtype == np.uint8 and ann1.max() <= len(CLASSES)
    assert (ann1 == 1).mean() > 0.2 and (ann1 >= 2).any() and (ann1 == 0).any()  # background, shapes, rims


def test_generated_dataset_reads_back(tmp_path):
    generate(str(tmp_path), num_train=6, num_val=2, seed=4)
    train, val = ADE20KSegmentation(tmp_path, "train"), ADE20KSegmentation(tmp_path, "val")
    assert train.classes == CLASSES == ("background", "circle", "square", "triangle", "star", "cross", "ring")
    assert (len(train), len(val)) == (6, 2) and train.images[0].endswith("ADE_train_00000001.jpg")
    seen = set()
    for i in range(len(train)):
        img, mask = train[i]
        assert mask.shape == img.shape[:2] and mask.min() >= -1 and mask.max() < 7
        seen |= set(np.unique(mask).tolist())
    assert {-1, 0} <= seen and len(seen - {-1, 0}) >= 3
    again = tmp_path / "again"
    generate(str(again), num_train=6, num_val=2, seed=4)
    assert (again / "ADEChallengeData2016/annotations/training/ADE_train_00000006.png").read_bytes() == \
        (tmp_path / "ADEChallengeData2016/annotations/training/ADE_train_00000006.png").read_bytes()
