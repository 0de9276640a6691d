"""scripts/eval_yolo3.py and scripts/demo.py on a checkpoint trained for a few batches."""
import json
import os

import pytest

import demo
import eval_yolo3
import train_yolo3
from gluon_bof.nn.sync_bn import convert_sync_batchnorm


@pytest.fixture(scope="module")
def checkpoint(synthetic_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run")) + "/"
    train_yolo3.main(["--network", "mobilenet0.25", "--head-channels", "32,16,16", "--batch-size", "4",
                      "-j", "0", "--no-random-shape", "--data-shape", "96", "--epochs", "1",
                      "--max-epoch-iters", "2", "--log-interval", "0", "--data-root", synthetic_root,
                      "--save-prefix", out, "--save-interval", "0"])
    return out + "yolo3_mobilenet0.25_voc_last.pth"


def test_eval_several_shapes_writes_json_and_plots(checkpoint, synthetic_root, tmp_path, capsys):
    results = eval_yolo3.main(["--checkpoint", checkpoint, "--data-root", synthetic_root, "--data-shape",
                               "64", "96", "--batch-size", "4", "-j", "0", "--save-dir", str(tmp_path)])
    assert set(results) == {64, 96}
    for res in results.values():
        assert set(res) == {"circle", "square", "triangle", "star", "cross", "ring", "mAP"}
    saved = json.load(open(tmp_path / "eval.json"))
    assert saved["metric"] == "voc07" and set(saved["results"]) == {"64", "96"}
    assert os.path.getsize(tmp_path / "per_class_ap_64.png") > 1000
    assert "data shape" in capsys.readouterr().out  # the multi-shape table


def test_demo_writes_grid_and_per_image_pngs(checkpoint, synthetic_root, tmp_path):
    demo.main(["--checkpoint", checkpoint, "--data-root", synthetic_root, "--num-images", "2",
               "--thresh", "0.0", "--out", str(tmp_path / "grid.png"), "--out-dir", str(tmp_path / "each")])
    assert os.path.getsize(tmp_path / "grid.png") > 1000
    assert len(os.listdir(tmp_path / "each")) == 2


def test_syncbn_in_one_process_warns_and_changes_nothing(caplog):
    import torch.nn as nn

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert convert_sync_batchnorm(net) is net and type(net[1]) is nn.BatchNorm2d
    assert "no effect in a single process" in caplog.text


def test_eval_on_coco_data_writes_markdown_and_reusable_results(checkpoint, synthetic_root, tmp_path, capsys):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from gluon_bof.data.convert import voc_to_coco

    coco_root = voc_to_coco(synthetic_root, str(tmp_path / "coco"))
    out = tmp_path / "eval"
    results = eval_yolo3.main(["--checkpoint", checkpoint, "--dataset", "coco", "--data-root", coco_root,
                               "--data-shape", "64", "96", "--batch-size", "4", "-j", "0", "--save-dir", str(out)])
    assert set(results) == {64, 96}
    saved = json.load(open(out / "eval.json"))
    assert saved["metric"] == "coco"
    md = open(out / "eval.md").read().splitlines()
    assert md[2] == "| data shape | AP | AP50 | AP75 | APs | APm | APl |" and md[4].startswith("| 64 | ")
    assert "AP50" in capsys.readouterr().out
    # the kept detections, scored by pycocotools directly, give the reported statistics
    gt = COCO(f"{coco_root}/annotations/instances_val2017.json")
    for shape in (64, 96):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt, gt.loadRes(str(out / f"coco_{shape}_results.json")), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert results[shape]["mAP"] == ev.stats[0] and results[shape]["AP50"] == ev.stats[1]
