"""scripts/eval_faster_rcnn.py on a checkpoint trained for a few batches, and evaluation of padded
batches (engine.evaluate with image sizes)."""
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import eval_faster_rcnn
import train_faster_rcnn
from gluon_bof.data.loader import EvalBatch
from gluon_bof.engine import evaluate
from gluon_bof.utils.checkpoint import load_checkpoint

CLASSES = {"circle", "square", "triangle", "star", "cross", "ring"}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from gluon_bof.data.synthetic import generate

    return generate(str(tmp_path_factory.mktemp("frcnn_eval_data")), num_trainval=8, num_test=4)


@pytest.fixture(scope="module")
def checkpoint(tiny_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("frcnn_run")) + "/"
    # also exercises GluonCV's mixup mode and the iteration warmup from lr / 3
    train_faster_rcnn.main(["--short", "128", "--max-size", "192", "--batch-size", "2", "-j", "0", "--epochs", "1",
                            "--max-epoch-iters", "3", "--lr-warmup", "1", "--mixup", "--mixup-mode", "gluoncv",
                            "--no-mixup-epochs", "0", "--log-interval", "0", "--save-interval", "0",
                            "--anchor-scales", "2,4,8", "--roi-size", "4,4", "--rpn-test-post-nms", "16",
                            "--rcnn-num-samples", "16", "--data-root", tiny_root, "--save-prefix", out])
    return out + "faster_rcnn_resnet50_v1b_voc_last.pth"


def test_training_settings_reach_the_checkpoint(checkpoint):
    state = load_checkpoint(checkpoint)
    assert state["train_settings"]["mixup_mode"] == "gluoncv" and "mixup_mode" not in state["model_kwargs"]
    # GluonCV's warmup over batches 0..W (W = 1): lr/3 at batch 0, lr at batch 1; 3 updates done
    assert state["lr_scheduler"]["num_update"] == 3
    assert state["lr_scheduler"]["schedule"]["warmup_iters"] == 2
    assert state["lr_scheduler"]["schedule"]["warmup_factor"] == pytest.approx(1 / 3)


def test_eval_several_sizes_writes_json_plots_and_table(checkpoint, tiny_root, tmp_path, capsys):
    results = eval_faster_rcnn.main(["--checkpoint", checkpoint, "--data-root", tiny_root, "--short", "96", "128",
                                     "--max-size", "160", "192", "--batch-size", "2", "-j", "0",
                                     "--save-dir", str(tmp_path)])
    assert set(results) == {"96x160", "128x192"}
    for res in results.values():
        assert set(res) == CLASSES | {"mAP"} and 0.0 <= res["mAP"] <= 1.0
    saved = json.load(open(tmp_path / "eval.json"))
    assert saved["metric"] == "voc07" and set(saved["results"]) == {"96x160", "128x192"}
    assert os.path.getsize(tmp_path / "per_class_ap_96x160.png") > 1000
    out = capsys.readouterr().out
    assert "short x max" in out and "short 128, max size 192" in out


def test_default_size_is_the_models_and_one_max_size_serves_all():
    net = SimpleNamespace(short=128, max_size=192)
    assert eval_faster_rcnn.eval_sizes(None, None, net) == [(128, 192)]
    assert eval_faster_rcnn.eval_sizes([600, 800], [1000], net) == [(600, 1000), (800, 1000)]
    assert eval_faster_rcnn.eval_sizes([600, 800], [1000, 1333], net) == [(600, 1000), (800, 1333)]
    assert eval_faster_rcnn.eval_sizes(None, None, SimpleNamespace(short=(640, 800), max_size=1333)) == [(800, 1333)]
    with pytest.raises(SystemExit):
        eval_faster_rcnn.parse_args(["--model", "x", "--short", "1", "2", "3", "--max-size", "4", "5"])


def test_evaluate_clips_boxes_to_each_images_own_size():
    class Net(torch.nn.Module):
        def forward(self, x, image_sizes=None):
            self.sizes = image_sizes
            boxes = torch.tensor([[[-5.0, 2.0, 50.0, 70.0]], [[1.0, -3.0, 40.0, 30.0]]])
            return torch.zeros(2, 1, 1), torch.ones(2, 1, 1), boxes

    class Recorder:
        def reset(self):
            self.updates = []

        def update(self, *args):
            self.updates.append(args)

        def get(self):
            return ["mAP"], [0.0]

    net, metric = Net(), Recorder()
    sizes = torch.tensor([[20, 30], [64, 16]])  # (h, w) inside a 64x32 padded batch
    batch = EvalBatch(torch.zeros(2, 3, 64, 32), torch.zeros(2, 1, 6), sizes)
    evaluate(net, [batch], metric, device=torch.device("cpu"))
    assert torch.equal(net.sizes, sizes)
    boxes = metric.updates[0][0]
    np.testing.assert_array_equal(boxes, [[[0, 2, 30, 20]], [[1, 0, 16, 30]]])
