"""gluon_bof/evaluation.py: the metric choice and the tables, and the whole evaluation chain
(loader -> network -> back to the original image -> metric) scored with an oracle network that
predicts the ground truth, which must score AP 1 whatever the resizing."""
import numpy as np
import pytest
import torch

from gluon_bof.data import COCODetection, VOCDetection, build
from gluon_bof.data.convert import voc_to_coco
from gluon_bof.engine import evaluate
from gluon_bof.errors import ConfigError
from gluon_bof.evaluation import format_table, make_metric

CPU = torch.device("cpu")


class Oracle(torch.nn.Module):
    """Predicts the dataset's non-difficult boxes, resized to the network input (images in order)."""

    def __init__(self, dataset, shift=0.0):
        super().__init__()
        self.dataset, self.next, self.shift = dataset, 0, shift

    def forward(self, x, image_sizes=None):
        sizes = image_sizes if image_sizes is not None else torch.tensor(x.shape[-2:]).expand(len(x), 2)
        out = -torch.ones(len(x), 20, 6)
        for b, (h, w) in enumerate(sizes.tolist()):
            width, height = self.dataset.image_size(self.next)
            label = self.dataset.label(self.next)
            label = label[label[:, 5] == 0] if label.shape[1] > 5 else label
            boxes = torch.from_numpy(label[:, :4]) * torch.tensor([w / width, h / height] * 2) + self.shift
            out[b, :len(boxes), :4] = boxes
            out[b, :len(boxes), 4] = torch.from_numpy(label[:, 4])
            out[b, :len(boxes), 5] = 0.9
            self.next += 1
        return out[..., 4:5], out[..., 5:6], out[..., :4]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from gluon_bof.data.synthetic import generate

    root = tmp_path_factory.mktemp("evaldata")
    voc_root = generate(str(root / "voc"), num_trainval=2, num_test=12, seed=5)
    coco_root = voc_to_coco(voc_root, str(root / "coco"))
    return (VOCDetection(voc_root, splits=((2007, "test"),)),
            COCODetection(coco_root, splits=("instances_val2017",), skip_empty=False))


def _yolo_loader(ds, shape):
    return build.yolo3_val_loader(ds, batch_size=4, data_shape=shape, num_workers=0)


def _rcnn_loader(ds, short, max_size):
    return build.faster_rcnn_val_loader(ds, batch_size=1, short=short, max_size=max_size, num_workers=0)


@pytest.mark.parametrize("shape", [64, 160])
def test_coco_ap_is_one_after_mapping_yolo_boxes_back(data, shape):
    _, coco = data
    metric = make_metric("coco", coco, data_shape=(shape, shape))
    names, values = evaluate(Oracle(coco), _yolo_loader(coco, shape), metric, device=CPU)
    assert names[-1] == "mAP" and values[-1] == pytest.approx(1.0)
    assert dict(zip(names, values))["AP50"] == pytest.approx(1.0)


def test_legacy_plus_one_inflates_boxes_and_loses_ap(data):
    _, coco = data
    metric = make_metric("coco", coco, data_shape=(160, 160), legacy_plus_one=True)
    _, values = evaluate(Oracle(coco), _yolo_loader(coco, 160), metric, device=CPU)
    # every box 1 px wider and taller: small objects fall under the high IoU thresholds
    assert 0.3 < values[-1] < 0.99


@pytest.mark.parametrize("metric_name", ["voc07", "coco"])
@pytest.mark.parametrize("short,max_size", [(80, 120), (200, 260)])
def test_faster_rcnn_boxes_are_scored_in_original_pixels(data, metric_name, short, max_size):
    voc, coco = data
    ds = coco if metric_name == "coco" else voc
    _, values = evaluate(Oracle(ds), _rcnn_loader(ds, short, max_size), make_metric(metric_name, ds), device=CPU)
    assert values[-1] == pytest.approx(1.0)


def test_a_shift_in_input_pixels_is_scaled_to_original_pixels(data):
    voc, _ = data
    calls = []

    class Recorder:
        def reset(self):
            pass

        def update(self, boxes, *rest):
            calls.append(boxes)

        def get(self):
            return ["mAP"], [0.0]

    loader = _rcnn_loader(voc, 80, 120)
    evaluate(Oracle(voc, shift=1.0), loader, Recorder(), device=CPU, clip=False)
    _, _, _, scales = next(iter(loader))
    sy, sx = scales[0].tolist()
    assert sx > 1.5 and sy > 1.5  # the images were shrunk
    label = voc.label(0)
    label = label[label[:, 5] == 0]
    # (box * input / original + 1) * original / input = box + (sx, sy, sx, sy)
    np.testing.assert_allclose(calls[0][0, :len(label)], label[:, :4] + [sx, sy, sx, sy], atol=1e-3)


def test_format_table_text_and_markdown():
    results = {416: {"mAP": 0.81234, "x": 1.0}, 608: {"mAP": 0.8}}
    assert format_table(results, ("mAP",), "data shape", markdown=True) == (
        "| data shape | mAP |\n|---|---|\n| 416 | 0.8123 |\n| 608 | 0.8000 |\n")
    coco = {320: dict(zip(("mAP", "AP50", "AP75", "APs", "APm", "APl"), (0.331, 0.5, 0.35, 0.1, 0.3, 0.5)))}
    md = format_table(coco, ("mAP", "AP50", "AP75", "APs", "APm", "APl"), "data shape", markdown=True)
    assert md.splitlines()[0] == "| data shape | AP | AP50 | AP75 | APs | APm | APl |"
    assert md.splitlines()[2] == "| 320 | 33.10 | 50.00 | 35.00 | 10.00 | 30.00 | 50.00 |"
    text = format_table(results, ("mAP",), "data shape").splitlines()
    assert text[0].split() == ["data", "shape", "mAP"] and text[2].split() == ["608", "0.8000"]


def test_coco_metric_needs_a_coco_dataset(data):
    voc, _ = data
    with pytest.raises(ConfigError, match="gluon_bof.data.convert"):
        make_metric("coco", voc)
    with pytest.raises(ValueError, match="unknown metric"):
        make_metric("voc12", voc)
