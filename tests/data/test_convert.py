"""gluon_bof/data/convert.py: a VOC layout read back through COCODetection gives the VOC labels."""
import json

import numpy as np
import pytest

from gluon_bof.data import COCODetection, VOCDetection
from gluon_bof.data.convert import voc_to_coco


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from gluon_bof.data.synthetic import generate

    root = tmp_path_factory.mktemp("conv")
    voc = generate(str(root / "voc"), num_trainval=6, num_test=5, seed=4)
    return voc, voc_to_coco(voc, str(root / "coco"))


@pytest.mark.parametrize("coco_split,voc_split", [("train2017", "trainval"), ("val2017", "test")])
def test_round_trip_keeps_every_box(converted, coco_split, voc_split):
    voc_root, coco_root = converted
    voc = VOCDetection(voc_root, splits=((2007, voc_split),))
    coco = COCODetection(coco_root, splits=(f"instances_{coco_split}",), skip_empty=False, use_crowd=True)
    assert list(coco.classes) == list(voc.classes) and len(coco) == len(voc)
    for i in range(len(voc)):
        assert coco.image_size(i) == voc.image_size(i)
        np.testing.assert_array_equal(coco[i][0], voc[i][0])  # the same pixels
        ref = voc.label(i)
        got = coco.label(i)
        np.testing.assert_allclose(got[:, :5], ref[:, :5], atol=1e-4)  # xywh -> xyxy is exact
    data = json.load(open(f"{coco_root}/annotations/instances_{coco_split}.json"))
    crowd = sum(a["iscrowd"] for a in data["annotations"])
    difficult = sum(int((voc.label(i)[:, 5] > 0).sum()) for i in range(len(voc)))
    assert crowd == difficult  # difficult objects become COCO crowd (ignored) boxes
    skipped = COCODetection(coco_root, splits=(f"instances_{coco_split}",), skip_empty=False)
    assert sum(len(skipped.label(i)) for i in range(len(voc))) == len(data["annotations"]) - crowd


def test_missing_split_names_the_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        voc_to_coco(str(tmp_path), str(tmp_path / "out"))


def test_summary_counts_what_training_leaves_out(capsys):
    from gluon_bof.data.convert import summary

    coco = {"images": [{"id": 1}, {"id": 2}, {"id": 3}],
            "annotations": [{"image_id": 1, "iscrowd": 0}, {"image_id": 2, "iscrowd": 1}]}
    line = summary("train2017", coco)
    assert line.startswith("train2017: 3 images, 2 objects (1 difficult")
    assert "2 images have no other object: COCODetection leaves them out of training" in line


def test_coco_dataset_says_how_many_images_it_leaves_out(tmp_path, caplog):
    import logging
    import os

    import cv2

    os.makedirs(tmp_path / "annotations")
    os.makedirs(tmp_path / "train2017")
    for i in (1, 2):
        cv2.imwrite(str(tmp_path / "train2017" / f"{i}.jpg"), np.zeros((20, 20, 3), np.uint8))
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 20, "height": 20} for i in (1, 2)],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}]}))
    with caplog.at_level(logging.INFO, logger="gluon_bof.data.coco"):
        ds = COCODetection(str(tmp_path), splits=("instances_train2017",))
    assert len(ds) == 1 and ds.num_skipped == 1
    assert "1 of 2 images have no usable box" in caplog.text
