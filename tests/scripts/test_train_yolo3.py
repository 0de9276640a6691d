"""End-to-end runs of scripts/train_yolo3.py on a tiny generated dataset (CPU)."""
import json
import os


import train_yolo3
from gluon_bof.utils.checkpoint import load_checkpoint

TINY = ["--network", "mobilenet0.25", "--head-channels", "32,16,16", "--batch-size", "4", "-j", "0",
        "--random-shape-min", "64", "--random-shape-max", "128", "--data-shape", "96", "--epochs", "2",
        "--lr", "0.01", "--lr-mode", "cosine", "--warmup-epochs", "1", "--mixup", "--no-mixup-epochs", "1",
        "--label-smooth", "--no-wd", "--log-interval", "0", "--num-samples", "16", "--save-interval", "0"]


def _run(root, prefix, *extra):
    return train_yolo3.main(TINY + ["--data-root", root, "--save-prefix", prefix, *extra])


def test_train_writes_checkpoints_history_and_settings(synthetic_root, tmp_path):
    result = _run(synthetic_root, str(tmp_path) + "/")
    prefix = str(tmp_path / "yolo3_mobilenet0.25_voc")
    state = load_checkpoint(prefix + "_last.pth")
    assert state["epoch"] == 2 and state["epoch_iter"] == 0
    assert state["model_name"] == "yolo3_mobilenet0.25_custom"  # the generated classes are not VOC's
    assert state["model_kwargs"]["classes"][0] == "circle"
    settings = json.load(open(prefix + "_last.json"))
    assert settings["mixup"] is True and settings["lr_mode"] == "cosine"
    history = json.load(open(prefix + "_history.json"))
    assert [h["epoch"] for h in history] == [0, 1]
    assert all(k in history[0] for k in ("obj_loss", "center_loss", "scale_loss", "cls_loss", "lr"))
    assert result["best_score"] == max(h["val"]["mAP"] for h in history if "val" in h)  # the best kept
    assert [h["mixup"] for h in history] == [True, False]  # --no-mixup-epochs 1 of 2
    assert os.path.getsize(prefix + "_lr.png") > 1000 and os.path.getsize(prefix + "_history.png") > 1000


def test_stopped_and_resumed_run_equals_uninterrupted_run(synthetic_root, tmp_path, stop_resume_and_compare):
    _run(synthetic_root, str(tmp_path / "full") + "/")
    full = load_checkpoint(str(tmp_path / "full" / "yolo3_mobilenet0.25_voc_last.pth"))
    assert full["epoch"] == 2
    # stop in the middle of epoch 0 (4 batches per epoch: 16 images / 4), then resume
    stop_resume_and_compare(lambda prefix, *extra: _run(synthetic_root, prefix, *extra),
                            str(tmp_path / "part") + "/", "yolo3_mobilenet0.25_voc_last.pth", full)
