"""Tests for gluon_bof/data/synthetic.py: the generated VOC tree and the statistics of its content."""
import filecmp
import os

import numpy as np
import pytest

from gluon_bof.data import synthetic
from gluon_bof.data.synthetic import CLASSES, generate, render_image
from gluon_bof.data.voc import VOCDetection


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate(str(tmp_path_factory.mktemp("syn")), num_trainval=6, num_test=3, seed=1)


@pytest.fixture(scope="module")
def rendered():
    """200 images drawn straight from ``render_image`` (no disk)."""
    return [render_image(np.random.default_rng([5, i])) for i in range(200)]


def test_layout_is_readable_by_voc_detection(small):
    assert open(os.path.join(small, "classes.txt")).read().split() == list(CLASSES)
    train = VOCDetection(small, splits=((2007, "trainval"),))
    test = VOCDetection(small, splits=((2007, "test"),))
    assert len(train) == 6 and len(test) == 3 and train.classes == CLASSES
    for ds in (train, test):
        for i in range(len(ds)):
            img, label = ds[i]
            w, h = ds.image_size(i)
            assert img.shape == (h, w, 3) and 256 <= w <= 416 and 224 <= h <= 384
            assert 1 <= len(label) <= 10 and label.shape[1] == 6
            # VOC 1-based inclusive indices minus 1: boxes lie on pixel indices inside the image.
            assert (label[:, :2] >= 0).all() and (label[:, 2] <= w - 1).all() and (label[:, 3] <= h - 1).all()
            assert (label[:, 2] > label[:, 0]).all() and (label[:, 3] > label[:, 1]).all()
            assert np.isin(label[:, 4], range(len(CLASSES))).all() and np.isin(label[:, 5], [0, 1]).all()


def test_deterministic_for_a_seed(small, tmp_path):
    again = generate(str(tmp_path / "again"), num_trainval=6, num_test=3, seed=1)
    other = generate(str(tmp_path / "other"), num_trainval=6, num_test=3, seed=2)
    voc = os.path.join("VOC2007", "Annotations")
    names = sorted(os.listdir(os.path.join(small, voc)))
    assert len(names) == 9
    match, mismatch, errors = filecmp.cmpfiles(os.path.join(small, voc), os.path.join(again, voc), names,
                                               shallow=False)
    assert len(match) == 9
    jpgs = [n.replace(".xml", ".jpg") for n in names]
    match, _, _ = filecmp.cmpfiles(os.path.join(small, "VOC2007", "JPEGImages"),
                                   os.path.join(again, "VOC2007", "JPEGImages"), jpgs, shallow=False)
    assert len(match) == 9
    match, _, _ = filecmp.cmpfiles(os.path.join(small, voc), os.path.join(other, voc), names, shallow=False)
    assert len(match) == 0


def _pixel_box(mask):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max(), ys.max()


@pytest.mark.parametrize("name", CLASSES)
def test_shapes_fill_their_canvas(name):
    # Boxes are tight: each drawn shape reaches (within a pixel) all four sides of its w x h canvas.
    for w, h in ((9, 12), (40, 31), (120, 150)):
        mask = synthetic._shape_mask(name, w, h, np.random.default_rng(0)) >= 128
        x0, y0, x1, y1 = _pixel_box(mask)
        assert x0 <= 1 and y0 <= 1 and x1 >= w - 2 and y1 >= h - 2, (name, w, h)
    ring = synthetic._shape_mask("ring", 60, 60, np.random.default_rng(0))
    assert ring[30, 30] == 0 and synthetic._shape_mask("circle", 60, 60, np.random.default_rng(0))[30, 30] == 255


def test_boxes_are_tight_around_object_pixels(rendered):
    # Object colours are saturated (HSV S >= 170, the background's < 90 plus blotches), so each edge
    # row/column of a tight box holds a strongly saturated pixel, while the lines one pixel further
    # out often do not (they would if boxes were loose).
    import cv2

    def hit_rate(grow):
        edges = hits = 0
        for img, objects in rendered[:40]:
            H, W = img.shape[:2]
            sat = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 1]
            for o in objects:
                x0, y0, x1, y1 = o["box"]
                x0, y0, x1, y1 = max(x0 - grow, 0), max(y0 - grow, 0), min(x1 + grow, W - 1), min(y1 + grow, H - 1)
                for line in (sat[y0, x0:x1 + 1], sat[y1, x0:x1 + 1], sat[y0:y1 + 1, x0], sat[y0:y1 + 1, x1]):
                    edges += 1
                    hits += int(line.max() >= 120)
        return hits / edges

    assert hit_rate(0) > 0.97 and hit_rate(1) < 0.75


def test_content_statistics(rendered):
    counts = np.array([len(objs) for _, objs in rendered])
    assert counts.min() >= 1 and counts.max() <= 10 and counts.max() >= 8
    sizes, difficult, classes = [], [], []
    for img, objects in rendered:
        H, W = img.shape[:2]
        for o in objects:
            x0, y0, x1, y1 = o["box"]
            assert 0 <= x0 < x1 < W and 0 <= y0 < y1 < H
            sizes.append(np.sqrt((x1 - x0 + 1) * (y1 - y0 + 1)))
            difficult.append(o["difficult"])
            classes.append(CLASSES.index(o["name"]))
            if max(x1 - x0, y1 - y0) + 1 < 10 or o["visible"] < 0.4:
                assert o["difficult"] == 1
    sizes = np.array(sizes)
    assert sizes.min() < 12 and sizes.max() > 150  # spans tiny to large
    assert 0.7 < np.mean((sizes >= 20) & (sizes <= 150))  # most are 20-150 px
    assert 0 < np.mean(difficult) < 0.15
    assert np.bincount(classes, minlength=len(CLASSES)).min() > 0.1 * len(classes)


def test_cli_with_preview(tmp_path):
    preview = str(tmp_path / "preview.png")
    synthetic.main(["--out", str(tmp_path / "d"), "--num-trainval", "4", "--num-test", "1",
                    "--preview", preview])
    import cv2

    mosaic = cv2.imread(preview)
    assert mosaic is not None and mosaic.shape == (384, 4 * 416, 3)


@pytest.mark.slow
def test_default_size_generates_every_split(tmp_path):
    # speed is reported by `python -m gluon_bof.data.synthetic` (it prints the time), not asserted here
    root = generate(str(tmp_path / "full"), 1000, 250, 0)
    for split, n in (("trainval", 1000), ("test", 250)):
        ids = open(os.path.join(root, "VOC2007", "ImageSets", "Main", f"{split}.txt")).read().split()
        assert len(ids) == n
