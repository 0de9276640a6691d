"""End-to-end runs of scripts/train_faster_rcnn.py on a tiny generated dataset (CPU).

The C4 ResNet-50 is cut down through GluonCV's custom-model options (few anchors, 4x4 RoIs, 16
sampled RoIs, 16 test proposals) so that a run on 8 images of ~128x160 takes a few seconds.
"""
import json

import pytest
import torch

import train_faster_rcnn
from gluon_bof.data.loader import TrainBatch
from gluon_bof.engine import train_one_epoch
from gluon_bof.utils.checkpoint import load_checkpoint
from gluon_bof.utils.lr_scheduler import LRScheduler

TINY = ["--short", "128", "--max-size", "192", "--batch-size", "2", "-j", "0", "--epochs", "2", "--lr", "0.01",
        "--lr-mode", "cosine", "--mixup", "--no-mixup-epochs", "1", "--label-smooth", "--no-wd",
        "--log-interval", "0", "--save-interval", "0", "--val-interval", "2", "--anchor-scales", "2,4,8",
        "--roi-size", "4,4", "--rpn-test-post-nms", "16", "--rcnn-num-samples", "16"]
NAME = "faster_rcnn_resnet50_v1b_voc"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from gluon_bof.data.synthetic import generate

    return generate(str(tmp_path_factory.mktemp("frcnn_data")), num_trainval=8, num_test=4)


def _run(root, prefix, *extra):
    return train_faster_rcnn.main(TINY + ["--data-root", root, "--save-prefix", prefix, *extra])


def test_dataset_defaults_follow_gluoncv_unless_given():
    voc = train_faster_rcnn.parse_args([])
    assert (voc.epochs, voc.lr, voc.lr_decay_epoch, voc.lr_warmup, voc.wd, voc.short, voc.max_size) == \
        (20, 1e-3, "14,20", -1, 5e-4, "600", 1000)
    assert (voc.batch_size, voc.save_interval, voc.no_mixup_epochs, voc.seed) == (1, 1, None, 233)
    # --mixup: off for the last 10 % of the epochs (2 of VOC's 20, 3 of COCO's 26), on for the rest
    assert train_faster_rcnn.parse_args(["--mixup"]).no_mixup_epochs == 2
    assert train_faster_rcnn.parse_args(["--mixup", "--dataset", "coco"]).no_mixup_epochs == 3
    coco = train_faster_rcnn.parse_args(["--dataset", "coco", "--lr", "0.02", "--image-short", "640,800"])
    assert (coco.epochs, coco.lr, coco.lr_decay_epoch, coco.lr_warmup, coco.wd, coco.short, coco.max_size) == \
        (26, 0.02, "17,23", 1000, 1e-4, "640,800", 1333)


def test_lr_schedule_matches_gluoncv_warmup_and_epoch_steps():
    # GluonCV: batch i of epoch 0 (i <= W) uses lr * get_lr_at_iter(i / W, f) with
    # get_lr_at_iter(a, f) = f * (1 - a) + a; the lr is multiplied by 0.1 from the first batch of
    # each --lr-decay-epoch on.
    lr, W, f, ipe = 0.01, 4, 1.0 / 3.0, 6
    sched = LRScheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr), first_update=0,
                        base_lr=lr, mode="step", epochs=4, iters_per_epoch=ipe, step_epochs=[2, 3],
                        step_factor=0.1, **train_faster_rcnn.warmup_schedule(W, f))
    lrs = []
    for _ in range(4 * ipe):
        lrs.append(sched.get_last_lr()[0])
        sched.step()
    expected = [lr * (f * (1 - i / W) + i / W) for i in range(W + 1)] + [lr] * (2 * ipe - W - 1) + \
        [lr * 0.1] * ipe + [lr * 0.01] * ipe
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_train_then_stopped_and_resumed_run_equals_uninterrupted_run(tiny_root, tmp_path, stop_resume_and_compare):
    result = _run(tiny_root, str(tmp_path / "full") + "/")
    prefix = str(tmp_path / "full" / NAME)
    full = load_checkpoint(prefix + "_last.pth")
    assert (full["epoch"], full["epoch_iter"]) == (2, 0)
    assert full["model_name"] == "faster_rcnn_resnet50_v1b_custom"  # the generated classes are not VOC's
    assert full["model_kwargs"]["classes"][0] == "circle"
    assert full["model_kwargs"]["short"] == 128 and "label_smooth" not in full["model_kwargs"]  # architecture only
    assert full["train_settings"]["label_smooth"] is True  # the loss settings are training settings
    settings = json.load(open(prefix + "_last.json"))
    assert settings["mixup"] is True and settings["lr_mode"] == "cosine" and settings["epochs"] == 2
    history = json.load(open(prefix + "_history.json"))
    assert [h["epoch"] for h in history] == [0, 1]
    assert all(k in history[0] for k in ("rpn_obj_loss", "rpn_box_loss", "rcnn_cls_loss", "rcnn_box_loss"))
    assert "val" not in history[0] and "mAP" in history[1]["val"]  # --val-interval 2
    assert result["best_score"] == history[1]["val"]["mAP"] and result["score_name"] == "mAP"
    for h in history:  # MegDet Table 1: the samplers' positives and negatives per image, and their ratio
        assert 0 < h["rpn_pos"] and h["rpn_pos"] + h["rpn_neg"] <= 256  # the RPN samples 256 anchors
        assert 0 < h["rcnn_pos"] and h["rcnn_pos"] + h["rcnn_neg"] <= 16  # --rcnn-num-samples 16
        assert h["rpn_pos_neg_ratio"] == pytest.approx(h["rpn_pos"] / h["rpn_neg"])
        assert h["rcnn_pos_neg_ratio"] == pytest.approx(h["rcnn_pos"] / h["rcnn_neg"])
    # 8 images: 6 landscape, 2 portrait -> 3 + 1 batches of 2 per epoch, one lr step each (first_update 0)
    assert full["lr_scheduler"]["num_update"] == 8

    # stop in the middle of epoch 0, then resume
    stop_resume_and_compare(lambda prefix, *extra: _run(tiny_root, prefix, *extra),
                            str(tmp_path / "part") + "/", NAME + "_last.pth", full)


def test_train_one_epoch_passes_image_sizes_to_the_model():
    seen = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, labels, image_sizes=None):
            seen.append(image_sizes)
            return {"loss": self.w * x.mean()}

    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sizes = torch.tensor([[4, 5], [6, 3]])
    loader = [TrainBatch(torch.ones(2, 3, 6, 5), -torch.ones(2, 1, 6), sizes)]
    sched = type("S", (), {"step": lambda self: None})()
    train_one_epoch(net, loader, opt, sched, epoch=0, device=torch.device("cpu"), log_interval=0)
    assert torch.equal(seen[0], sizes)


def test_fpn_variant_trains_and_records_its_model(tiny_root, tmp_path):
    train_faster_rcnn.main(["--use-fpn", "--short", "128", "--max-size", "192", "--batch-size", "2", "-j", "0",
                            "--epochs", "1", "--max-epoch-iters", "1", "--log-interval", "0", "--save-interval", "0",
                            "--rpn-test-post-nms", "16", "--rcnn-num-samples", "16", "--mixup", "--label-smooth",
                            "--data-root", tiny_root, "--save-prefix", str(tmp_path) + "/"])
    state = load_checkpoint(str(tmp_path / "faster_rcnn_fpn_resnet50_v1b_voc_last.pth"))
    assert state["model_name"] == "faster_rcnn_fpn_resnet50_v1b_custom"
    assert state["epoch"] == 1
