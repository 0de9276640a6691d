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
