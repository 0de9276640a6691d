"""Tests for gluon_bof/data/coco.py on hand-made COCO JSON files."""
import json
import os
import warnings

import cv2
import numpy as np
import pytest

from gluon_bof.data.base import DatasetError
from gluon_bof.data.coco import COCODetection

# Category ids deliberately unsorted and non-contiguous: contiguous ids follow the sorted json ids.
CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]


def _ann(ann_id, image_id, cat, bbox, iscrowd=0, area=None):
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": iscrowd,
            "area": bbox[2] * bbox[3] if area is None else area}


def write_coco(root, images, annotations, split="instances_val2017", categories=CATEGORIES, raw=None):
    """images: [(id, file_name, width, height)]; writes the JSON and black JPEGs."""
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    img_dir = os.path.join(root, split.replace("instances_", ""))
    os.makedirs(img_dir, exist_ok=True)
    for _, name, w, h in images:
        cv2.imwrite(os.path.join(img_dir, name), np.zeros((h, w, 3), np.uint8))
    data = {"images": [{"id": i, "file_name": n, "width": w, "height": h} for i, n, w, h in images],
            "annotations": annotations, "categories": categories}
    with open(os.path.join(root, "annotations", split + ".json"), "w") as f:
        f.write(raw if raw is not None else json.dumps(data))
    return str(root)


IMAGES = [(7, "a.jpg", 100, 80), (3, "b.jpg", 50, 60), (9, "c.jpg", 40, 40)]


def test_xywh_to_xyxy_class_ids_and_crowd(tmp_path):
    anns = [_ann(1, 7, 18, [10, 20, 30, 40]),            # dog -> contiguous 2
            _ann(2, 7, 1, [0.5, 1.5, 2.0, 3.0]),          # person -> 0
            _ann(3, 3, 3, [5, 5, 10, 10], iscrowd=1),     # crowd: skipped by default
            _ann(4, 3, 3, [1, 2, 3, 4])]                  # car -> 1
    root = write_coco(tmp_path, IMAGES, anns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = COCODetection(root, splits="instances_val2017")
    assert ds.classes == ("person", "car", "dog") and ds.num_class == 3
    assert ds.contiguous_id_to_json == {0: 1, 1: 3, 2: 18}
    assert ds.json_id_to_contiguous == {1: 0, 3: 1, 18: 2}
    # Images in sorted id order (3, 7); image 9 has no annotations and is skipped.
    assert len(ds) == 2 and ds.image_ids == [3, 7]
    np.testing.assert_array_equal(ds.label(0), [[1, 2, 4, 6, 1, 0]])
    np.testing.assert_array_equal(ds.label(1), [[10, 20, 40, 60, 2, 0], [0.5, 1.5, 2.5, 4.5, 0, 0]])
    img, label = ds[1]
    assert img.shape == (80, 100, 3) and img.dtype == np.uint8
    assert label.dtype == np.float32 and label.shape == (2, 6)
    assert ds.image_size(0) == (50, 60)
    assert ds.image_path(1).endswith(os.path.join("val2017", "a.jpg"))
    assert sorted(ds.coco.getImgIds()) == [3, 7, 9]
    crowd = COCODetection(root, splits=("instances_val2017",), use_crowd=True)
    np.testing.assert_array_equal(crowd.label(0), [[5, 5, 15, 15, 1, 0], [1, 2, 4, 6, 1, 0]])


def test_skip_empty_and_min_area(tmp_path):
    anns = [_ann(1, 7, 18, [10, 20, 30, 40]), _ann(2, 3, 1, [0, 0, 2, 2]),
            _ann(3, 9, 1, [0, 0, 5, 5], iscrowd=1)]
    root = write_coco(tmp_path, IMAGES, anns)
    ds = COCODetection(root, splits=("instances_val2017",), skip_empty=False)
    assert ds.image_ids == [3, 7, 9]
    assert ds.label(2).shape == (0, 6) and ds.label(2).dtype == np.float32  # only a crowd box
    assert ds[2][1].shape == (0, 6)
    ds = COCODetection(root, splits=("instances_val2017",), min_object_area=5)
    assert ds.image_ids == [7]  # the 2x2 box (area 4) is ignored


def test_clipped_and_degenerate_boxes_warn_once(tmp_path):
    anns = [_ann(1, 7, 18, [-5, 10, 20, 100]),   # leaves the 100x80 image left and bottom
            _ann(2, 7, 1, [10, 10, 0, 5]),        # zero width
            _ann(3, 7, 1, [10, 10, 5, 5], area=0),
            _ann(4, 3, 3, [60, 0, 5, 5])]         # right of the 50-wide image
    root = write_coco(tmp_path, IMAGES, anns)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = COCODetection(root, splits=("instances_val2017",))
    assert len(w) == 1
    msg = str(w[0].message)
    assert "clipped 1 box" in msg and "dropped 3 degenerate" in msg and "a.jpg" in msg
    assert ds.image_ids == [7]
    np.testing.assert_array_equal(ds.label(0), [[0, 10, 15, 80, 2, 0]])


def test_malformed_json(tmp_path):
    root = write_coco(tmp_path, IMAGES, [], raw='{"images": [1, 2,')
    with pytest.raises(DatasetError, match=r"instances_val2017\.json.*malformed JSON.*line 1"):
        COCODetection(root, splits=("instances_val2017",))


def test_unknown_category_or_image(tmp_path):
    root = write_coco(tmp_path, IMAGES, [_ann(1, 7, 2, [1, 1, 5, 5])])
    with pytest.raises(DatasetError, match=r"instances_val2017\.json.*unknown category id 2"):
        COCODetection(root, splits=("instances_val2017",))
    root = write_coco(tmp_path, IMAGES, [_ann(1, 8, 1, [1, 1, 5, 5])])
    with pytest.raises(DatasetError, match=r"instances_val2017\.json.*unknown image id 8"):
        COCODetection(root, splits=("instances_val2017",))


def test_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        COCODetection(str(tmp_path / "nowhere"))
    root = write_coco(tmp_path, IMAGES, [_ann(1, 7, 1, [1, 1, 5, 5])])
    with pytest.raises(DatasetError, match=r"instances_train2017\.json.*not found"):
        COCODetection(root)
    os.remove(os.path.join(root, "val2017", "c.jpg"))
    with pytest.raises(DatasetError, match=r"c\.jpg.*not found"):
        COCODetection(root, splits=("instances_val2017",))
