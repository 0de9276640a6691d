"""Tests for gluon_bof/data/voc.py (and the helpers of gluon_bof/data/base.py) on hand-made VOC trees."""
import os
import warnings

import cv2
import numpy as np
import pytest

from gluon_bof.data.base import DatasetError, read_image
from gluon_bof.data.voc import VOCDetection


def _xml(width, height, objects):
    objs = "".join(
        f"<object><name>{name}</name><difficult>{diff}</difficult><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, diff, (x0, y0, x1, y1) in objects)
    return (f"<annotation><filename>x.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objs}</annotation>")


def write_voc(root, items, year=2007, split="trainval", classes=None):
    """items: {img_id: (width, height, [(name, difficult, (xmin, ymin, xmax, ymax)), ...])}."""
    sub = os.path.join(root, f"VOC{year}")
    for d in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(sub, d), exist_ok=True)
    for img_id, (w, h, objects) in items.items():
        with open(os.path.join(sub, "Annotations", img_id + ".xml"), "w") as f:
            f.write(_xml(w, h, objects))
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 2] = 255  # BGR red
        cv2.imwrite(os.path.join(sub, "JPEGImages", img_id + ".jpg"), img)
    with open(os.path.join(sub, "ImageSets", "Main", split + ".txt"), "w") as f:
        f.write("\n".join(items) + "\n\n")  # a trailing blank line is ignored
    if classes is not None:
        with open(os.path.join(root, "classes.txt"), "w") as f:
            f.write("\n".join(classes) + "\n")
    return str(root)


def test_offset_difficult_and_voc_classes(tmp_path):
    root = write_voc(tmp_path, {"a": (40, 30, [("dog", 1, (1, 2, 10, 20)), ("person", 0, (5, 6, 40, 30))])})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean dataset warns nothing
        ds = VOCDetection(root, splits=((2007, "trainval"),))
    assert ds.classes == VOCDetection.CLASSES and ds.num_class == 20 and len(ds) == 1
    # VOC's 1-based coordinates minus 1; dog = 11, person = 14 in the VOC class list.
    expected = np.array([[0, 1, 9, 19, 11, 1], [4, 5, 39, 29, 14, 0]], np.float32)
    img, label = ds[0]
    assert label.dtype == np.float32 and label.shape == (2, 6)
    np.testing.assert_array_equal(label, expected)
    np.testing.assert_array_equal(ds.label(0), expected)
    assert img.shape == (30, 40, 3) and img.dtype == np.uint8
    assert img[..., 0].min() > 240 and img[..., 2].max() < 15  # RGB order: red first
    assert ds.image_size(0) == (40, 30)
    assert ds.image_path(0).endswith(os.path.join("VOC2007", "JPEGImages", "a.jpg"))
    assert "images=1" in repr(ds) and "2007" in repr(ds)


def test_classes_file_index_map_and_classes_argument(tmp_path):
    root = write_voc(tmp_path, {"a": (50, 50, [("Star", 0, (1, 1, 5, 5)), ("circle", 0, (2, 2, 9, 9))])},
                     classes=["circle", "square", "star"])
    ds = VOCDetection(root, splits=((2007, "trainval"),))
    assert ds.classes == ("circle", "square", "star")
    np.testing.assert_array_equal(ds.label(0)[:, 4], [2, 0])  # name match ignores case
    ds = VOCDetection(root, splits=((2007, "trainval"),), index_map={"circle": 7, "square": 1, "star": 3})
    np.testing.assert_array_equal(ds.label(0)[:, 4], [3, 7])
    ds = VOCDetection(root, splits=((2007, "trainval"),), classes=("star", "circle"))
    np.testing.assert_array_equal(ds.label(0)[:, 4], [0, 1])


def test_two_splits_transform_and_lazy_labels(tmp_path):
    write_voc(tmp_path, {"a": (20, 20, [("cat", 0, (1, 1, 5, 5))])}, year=2007)
    write_voc(tmp_path, {"b": (30, 20, []), "c": (20, 30, [("cow", 0, (3, 3, 8, 8))])}, year=2012)
    splits = ((2007, "trainval"), (2012, "trainval"))
    ds = VOCDetection(str(tmp_path), splits=splits, transform=lambda im, lb: (im.shape, lb.sum()))
    assert len(ds) == 3
    assert ds[2] == ((30, 20, 3), 2 + 2 + 7 + 7 + 9)  # cow = 9
    assert ds.label(1).shape == (0, 6)  # an image without objects
    lazy = VOCDetection(str(tmp_path), splits=splits, preload_label=False)
    assert lazy.image_size(-1) == (20, 30)
    np.testing.assert_array_equal(lazy.label(0), [[0, 0, 4, 4, 7, 0]])


def test_label_without_image_read(tmp_path):
    root = write_voc(tmp_path, {"a": (20, 20, [("cat", 0, (1, 1, 5, 5))])})
    ds = VOCDetection(root, splits=((2007, "trainval"),))
    os.remove(ds.image_path(0))
    np.testing.assert_array_equal(ds.label(0), [[0, 0, 4, 4, 7, 0]])
    with pytest.raises(DatasetError, match="a.jpg.*not found"):
        ds[0]


def test_missing_root_and_split_file(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        VOCDetection(str(tmp_path / "nowhere"))
    write_voc(tmp_path, {"a": (20, 20, [])})
    with pytest.raises(DatasetError, match=r"ImageSets.Main.test\.txt"):
        VOCDetection(str(tmp_path), splits=((2007, "test"),))
    with pytest.raises(DatasetError, match=r"VOC2012.ImageSets"):
        VOCDetection(str(tmp_path))  # default splits include 2012


def test_missing_files_fail_at_construction(tmp_path):
    root = write_voc(tmp_path, {"a": (20, 20, []), "b": (20, 20, [])})
    os.remove(os.path.join(root, "VOC2007", "Annotations", "b.xml"))
    with pytest.raises(DatasetError, match=r"b\.xml.*not found"):
        VOCDetection(root, splits=((2007, "trainval"),), preload_label=False)


def test_corrupt_and_truncated_images(tmp_path):
    root = write_voc(tmp_path, {"a": (64, 48, []), "b": (64, 48, [])})
    ds = VOCDetection(root, splits=((2007, "trainval"),))
    with open(ds.image_path(0), "wb") as f:
        f.write(b"this is not a jpeg")
    with pytest.raises(DatasetError, match=r"a\.jpg.*decode"):
        ds[0]
    path = ds.image_path(1)
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", noise)[1].tobytes()
    cut = np.frombuffer(data[: len(data) * 2 // 3], np.uint8)
    with open(path, "wb") as f:
        f.write(cut.tobytes())
    with pytest.raises(DatasetError, match=r"b\.jpg.*truncated"):
        ds[1]
    with pytest.raises(DatasetError, match="not found"):
        read_image(str(tmp_path / "none.jpg"))


def test_malformed_xml(tmp_path):
    root = write_voc(tmp_path, {"a": (20, 20, [])})
    with open(os.path.join(root, "VOC2007", "Annotations", "a.xml"), "w") as f:
        f.write("<annotation><size><width>20</width>")
    with pytest.raises(DatasetError, match=r"a\.xml.*malformed XML"):
        VOCDetection(root, splits=((2007, "trainval"),))
    with open(os.path.join(root, "VOC2007", "Annotations", "a.xml"), "w") as f:
        f.write(_xml(20, 20, [("cat", 0, (1, "one", 5, 5))]))
    with pytest.raises(DatasetError, match=r"a\.xml.*ymin.*not a number"):
        VOCDetection(root, splits=((2007, "trainval"),))


def test_unknown_class(tmp_path):
    root = write_voc(tmp_path, {"a": (20, 20, [("unicorn", 0, (1, 1, 5, 5))])})
    with pytest.raises(DatasetError) as e:
        VOCDetection(root, splits=((2007, "trainval"),))
    msg = str(e.value)
    assert "a.xml" in msg and "'unicorn'" in msg and "aeroplane" in msg and "tvmonitor" in msg


def test_boxes_outside_clipped_and_degenerate_dropped_with_one_warning(tmp_path):
    root = write_voc(tmp_path, {
        "a": (40, 30, [("cat", 0, (-4, 1, 50, 10)), ("dog", 0, (5, 5, 10, 10))]),
        "b": (40, 30, [("cat", 0, (10, 5, 10, 20)),    # zero width
                       ("cat", 0, (20, 20, 15, 25)),   # xmax < xmin
                       ("dog", 1, (45, 5, 60, 9)),     # entirely right of the image
                       ("cow", 0, (1, 1, 3, 40))]),    # ymax below the image
    })
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = VOCDetection(root, splits=((2007, "trainval"),))
    assert len(w) == 1
    msg = str(w[0].message)
    assert "clipped 2 box" in msg and "dropped 3 degenerate" in msg and "a.xml" in msg and "b.xml" in msg
    # xmin -5 -> 0, xmax 49 -> 40 (the image width); ymax 39 -> 30.
    np.testing.assert_array_equal(ds.label(0), [[0, 0, 40, 9, 7, 0], [4, 4, 9, 9, 11, 0]])
    np.testing.assert_array_equal(ds.label(1), [[0, 0, 2, 30, 9, 0]])
