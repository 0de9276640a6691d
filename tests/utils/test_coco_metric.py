"""Tests of gluon_bof/utils/metrics/coco_detection.py against pycocotools' COCOeval run directly."""
import contextlib
import io
import json
import os
import warnings

import cv2
import numpy as np
import pytest
import torch

from gluon_bof.data import COCODetection
from gluon_bof.utils.metrics.coco_detection import COCODetectionMetric

# image id -> (width, height); category json ids 3 ("cat"), 7 ("dog") -> contiguous 0, 1
IMAGES = {1: (64, 48), 2: (80, 60), 5: (50, 40)}
# image id -> [(x, y, w, h, category id)]; image 5 has no boxes
GTS = {1: [(4, 6, 20, 16, 3), (30, 10, 24, 30, 7)],
       2: [(10, 10, 40, 30, 3)],
       5: []}


@pytest.fixture
def dataset(tmp_path):
    os.makedirs(tmp_path / "annotations")
    os.makedirs(tmp_path / "val2017")
    images, anns = [], []
    for img_id, (w, h) in IMAGES.items():
        name = f"{img_id:012d}.jpg"
        cv2.imwrite(str(tmp_path / "val2017" / name), np.full((h, w, 3), 127, np.uint8))
        images.append({"id": img_id, "file_name": name, "width": w, "height": h})
        for x, y, bw, bh, cat in GTS[img_id]:
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat,
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}
    with open(tmp_path / "annotations" / "instances_val2017.json", "w") as f:
        json.dump(data, f)
    return COCODetection(str(tmp_path), splits=("instances_val2017",), skip_empty=False)


def _batch(rows_per_image, k=5):
    """[(x1, y1, x2, y2, cls, score), ...] per image -> -1 padded [B,K,4], [B,K,1], [B,K,1]."""
    out = -np.ones((len(rows_per_image), k, 6), np.float32)
    for b, rows in enumerate(rows_per_image):
        if rows:
            out[b, :len(rows)] = rows
    return out[..., :4], out[..., 4:5], out[..., 5:6]


def _direct_stats(ds, results):
    """COCOeval stats computed straight from hand-written xywh results."""
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(ds.coco, ds.coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.array(ev.stats)


def test_ground_truth_as_detections_gives_ap_one(dataset):
    assert dataset.image_ids == [1, 2, 5]
    rows = [[list(b[:5]) + [0.9] for b in dataset.label(i)] for i in range(len(dataset))]
    metric = COCODetectionMetric(dataset)
    metric.update(*_batch(rows))
    stats = metric.get_stats()
    assert stats.shape == (12,)
    assert stats[0] == 1.0 and stats[1] == 1.0 and stats[2] == 1.0 and stats[8] == 1.0
    names, values = metric.get()
    assert names[0] == "~~~~ Summary metrics ~~~~\n"
    assert values[0].startswith("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all")
    assert names[1:3] == ["cat", "dog"]
    assert values[1:] == ["100.0", "100.0", "100.0"]
    assert names[-1] == "~~~~ MeanAP @ IoU=[0.50,0.95] ~~~~\n"


def test_hand_built_case_matches_cocoeval(dataset):
    rows = [
        [(4, 6, 24, 20, 0, 0.9),      # exact cat
         (28, 12, 54, 40, 1, 0.8),    # dog, shifted: IoU 0.74
         (0, 0, 10, 10, 1, 0.7),      # false positive
         (1, 1, 5, 5, 0, 0.01),       # below score_thresh: dropped
         (1, 1, 5, 5, 9, 0.9)],       # not a dataset class: dropped
        [(12, 8, 52, 42, 0, 0.6),     # cat, IoU 0.78
         (10, 10, 50, 40, 1, 0.95)],  # right box, wrong class
        [(5, 5, 20, 20, 0, 0.3)],     # image without gt: false positive
    ]
    expected = [
        {"image_id": 1, "category_id": 3, "bbox": [4, 6, 20, 14], "score": 0.9},
        {"image_id": 1, "category_id": 7, "bbox": [28, 12, 26, 28], "score": 0.8},
        {"image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 10], "score": 0.7},
        {"image_id": 2, "category_id": 3, "bbox": [12, 8, 40, 34], "score": 0.6},
        {"image_id": 2, "category_id": 7, "bbox": [10, 10, 40, 30], "score": 0.95},
        {"image_id": 5, "category_id": 3, "bbox": [5, 5, 15, 15], "score": 0.3},
    ]
    # also check torch inputs and the list-of-batches (multi-device) form
    boxes, labels, scores = (torch.from_numpy(a) for a in _batch(rows))
    metric = COCODetectionMetric(dataset)
    metric.update([boxes[:2], boxes[2:]], [labels[:2, :, 0], labels[2:, :, 0]],
                  [scores[:2], scores[2:]], "ground truth args are ignored")
    ref = _direct_stats(dataset, expected)
    assert 0 < ref[0] < 1
    np.testing.assert_allclose(metric.get_stats(), ref, rtol=0, atol=1e-12)
    _, values = metric.get()
    assert values[-1] == f"{100 * ref[0]:.1f}"
    # reset forgets everything
    metric.reset()
    assert metric.results == []


def test_legacy_plus_one_widths(dataset, tmp_path):
    rows = [[(4, 6, 24, 20, 0, 0.9)], [], []]
    for plus_one, wh in ((False, [20, 14]), (True, [21, 15])):
        prefix = str(tmp_path / "out" / f"legacy{int(plus_one)}")
        metric = COCODetectionMetric(dataset, save_prefix=prefix, cleanup=False,
                                     legacy_plus_one=plus_one)
        metric.update(*_batch(rows))
        metric.get()
        with open(prefix + "_results.json") as f:
            written = json.load(f)
        assert len(written) == 1
        assert written[0]["bbox"] == [4, 6] + wh
        assert written[0]["image_id"] == 1 and written[0]["category_id"] == 3
        np.testing.assert_allclose(written[0]["score"], 0.9, rtol=1e-6)
    # cleanup removes the file after evaluation
    prefix = str(tmp_path / "gone")
    metric = COCODetectionMetric(dataset, save_prefix=prefix, cleanup=True)
    metric.update(*_batch(rows))
    metric.get()
    assert not os.path.exists(prefix + "_results.json")


def test_data_shape_rescales_to_original_size(dataset):
    # input 32x32 (h, w); image 1 is 64x48 (w, h): x * 2, y * 1.5;
    # image 2 is 80x60: x * 2.5, y * 1.875
    rows = [[(2, 4, 12, 14, 0, 0.9)], [(4, 16, 20, 32, 0, 0.8)], []]
    metric = COCODetectionMetric(dataset, data_shape=(32, 32))
    metric.update(*_batch(rows))
    got = [(r["image_id"], r["bbox"]) for r in metric.results]
    assert got == [(1, [4.0, 6.0, 20.0, 15.0]), (2, [10.0, 30.0, 40.0, 30.0])]
    with pytest.raises(ValueError, match="data_shape"):
        COCODetectionMetric(dataset, data_shape=(32,))


def test_images_without_detections(dataset):
    # image 1 gets nothing, image 2 its exact box, image 5 (no gt) nothing
    rows = [[], [(10, 10, 50, 40, 0, 0.9)], []]
    metric = COCODetectionMetric(dataset)
    metric.update(*_batch(rows))
    ref = _direct_stats(dataset, [{"image_id": 2, "category_id": 3, "bbox": [10, 10, 40, 30],
                                   "score": 0.9}])
    np.testing.assert_allclose(metric.get_stats(), ref, rtol=0, atol=1e-12)
    # no detection anywhere: classes with gt score 0, nothing crashes
    metric = COCODetectionMetric(dataset)
    metric.update(*_batch([[], [], []]))
    stats = metric.get_stats()
    assert stats[0] == 0.0 and stats[8] == 0.0
    names, values = metric.get()
    assert values[1:] == ["0.0", "0.0", "0.0"]


def test_incomplete_and_overflow(dataset):
    metric = COCODetectionMetric(dataset)
    metric.update(*_batch([[(10, 10, 50, 40, 0, 0.9)]]))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        metric.get_stats()
    assert any("1 out of 3" in str(x.message) for x in w)
    with pytest.raises(ValueError, match="only 3"):
        metric.update(*_batch([[], [], []]))


def _noisy_detections(ds, rng, per_image=12):
    """Ground truth jittered, duplicated and mislabelled, plus random boxes, with random scores."""
    rows = []
    for i in range(len(ds)):
        w, h = ds.image_size(i)
        out = []
        for x1, y1, x2, y2, cls, *_ in ds.label(i).tolist():
            for _ in range(3):
                j = rng.normal(0, 0.08 * max(x2 - x1, y2 - y1), 4)
                c = cls if rng.random() > 0.15 else rng.integers(0, len(ds.classes))
                out.append([x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3], c, rng.random()])
        while len(out) < per_image:
            x, y = rng.random(2) * [w, h]
            bw, bh = rng.random(2) * [w - x, h - y] + 1
            out.append([x, y, x + bw, y + bh, rng.integers(0, len(ds.classes)), rng.random()])
        rows.append(out[:per_image])
    return rows


@pytest.mark.parametrize("legacy", [False, True])
def test_faster_coco_eval_agrees_with_pycocotools_to_every_printed_digit(tmp_path, legacy):
    pytest.importorskip("faster_coco_eval")
    from gluon_bof.data.convert import voc_to_coco
    from gluon_bof.data.synthetic import generate

    voc = generate(str(tmp_path / "voc"), num_trainval=2, num_test=40, seed=3)
    ds = COCODetection(voc_to_coco(voc, str(tmp_path / "coco")), splits=("instances_val2017",), skip_empty=False)
    rows = _noisy_detections(ds, np.random.default_rng(0), per_image=30)
    out = {}
    for backend in ("pycocotools", "faster_coco_eval"):
        metric = COCODetectionMetric(ds, legacy_plus_one=legacy, backend=backend)
        metric.update(*_batch(rows, k=30))
        out[backend] = (metric.get_stats(), metric.get())
    ref, fast = out["pycocotools"], out["faster_coco_eval"]
    assert 0.05 < ref[0][0] < 0.95  # a non-trivial case
    np.testing.assert_array_equal(np.round(fast[0], 3), np.round(ref[0], 3))  # summarize() prints 3 digits
    np.testing.assert_allclose(fast[0], ref[0], atol=1e-12)
    assert fast[1] == ref[1]  # GluonCV's strings: summary text, per-class AP, mean


@pytest.mark.parametrize("mode", ["native", "shape"])
def test_legacy_plus_one_reproduces_gluoncv(tmp_path, mode):
    """GluonCV 0.10.5's COCODetectionMetric on the same annotations and detections
    (tests/fixtures/gen_coco_metric.py): identical strings with ``legacy_plus_one=True``."""
    fx = np.load(os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "coco_metric.npz"))
    data = json.loads(str(fx["annotations"]))
    os.makedirs(tmp_path / "annotations")
    os.makedirs(tmp_path / "val2017")
    for img in data["images"]:
        cv2.imwrite(str(tmp_path / "val2017" / img["file_name"]), np.zeros((img["height"], img["width"], 3), np.uint8))
    with open(tmp_path / "annotations" / "instances_val2017.json", "w") as f:
        json.dump(data, f)
    ds = COCODetection(str(tmp_path), splits=("instances_val2017",), skip_empty=False)
    boxes = fx["pred_bboxes"] if mode == "native" else fx["shape_pred_bboxes"]
    metric = COCODetectionMetric(ds, legacy_plus_one=True, data_shape=(320, 256) if mode == "shape" else None)
    for s in range(0, len(boxes), 5):  # a few update calls, as an evaluation loop makes
        metric.update(boxes[s:s + 5], fx["pred_labels"][s:s + 5], fx["pred_scores"][s:s + 5])
    names, values = metric.get()
    assert names == list(fx[f"{mode}_names"]) and values == list(fx[f"{mode}_values"])
    exact = COCODetectionMetric(ds, data_shape=(320, 256) if mode == "shape" else None)
    exact.update(boxes, fx["pred_labels"], fx["pred_scores"])
    assert exact.get()[1][1:] != values[1:]  # the +1 makes a difference on these boxes


def test_post_affine_and_use_time_as_gluoncv(dataset, tmp_path):
    # image 1 is 64x48; an input of 32x32 mapped back by x' = 2x + 1, y' = 1.5y - 2
    calls = []

    def affine(w, h, in_w, in_h):
        calls.append((w, h, in_w, in_h))
        return np.array([[2.0, 0.0, 1.0], [0.0, 1.5, -2.0]])

    metric = COCODetectionMetric(dataset, save_prefix=str(tmp_path / "out" / "run"), use_time=True, cleanup=False,
                                 data_shape=(32, 32), post_affine=affine)
    metric.update(*_batch([[[2, 4, 10, 12, 0, 0.9]], [], []]))
    assert calls == [(64, 48, 32, 32), (80, 60, 32, 32), (50, 40, 32, 32)]  # per image, as GluonCV
    assert metric.results[0]["bbox"] == pytest.approx([5, 4, 16, 12])  # (5, 4)-(21, 16) as xywh
    metric.get_stats()
    written = [p.name for p in (tmp_path / "out").iterdir()]
    assert len(written) == 1 and written[0].startswith("run_20") and written[0].endswith(".json")
    with pytest.raises(ValueError, match="post_affine needs data_shape"):
        COCODetectionMetric(dataset, post_affine=affine)
