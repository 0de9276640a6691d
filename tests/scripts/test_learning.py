"""Training learns end to end, through the script a user runs: scripts/train_yolo3.py with the
whole recipe (mixup, label smoothing, cosine with warmup, no-wd, data augmentation) on a tiny
generated set, a few hundred updates; the VOC07 mAP on those same images (the test split lists
the training images) must clear a stated floor, where an untrained network scores about 0.
Slow (minutes on 2 cores): `make test-slow`.
"""
import json
import shutil

import pytest

import train_yolo3

FLOOR = 0.5  # see docs/benchmarks.md (measured 2026-12-03); untrained: ~0.00


@pytest.mark.slow
def test_yolo3_learns_the_generated_shapes(tmp_path):
    from gluon_bof.data.synthetic import generate

    root = generate(str(tmp_path / "data"), num_trainval=16, num_test=1, seed=11)
    sets = tmp_path / "data" / "VOC2007" / "ImageSets" / "Main"
    shutil.copyfile(sets / "trainval.txt", sets / "test.txt")  # score the training images
    result = train_yolo3.main([
        "--network", "mobilenet0.25", "--head-channels", "32,16,16", "--obj-prior", "0.01", "--data-root", root,
        "--batch-size", "8", "-j", "0", "--epochs", "150", "--no-random-shape", "--data-shape", "128",
        "--mixup", "--no-mixup-epochs", "50", "--label-smooth", "--no-wd", "--lr", "0.01", "--lr-mode", "cosine",
        "--warmup-epochs", "2", "--val-interval", "150", "--save-interval", "0", "--log-interval", "0",
        "--save-prefix", str(tmp_path) + "/"])  # 16 / 8 x 150 = 300 updates
    history = json.load(open(tmp_path / "yolo3_mobilenet0.25_voc_history.json"))
    assert history[-1]["obj_loss"] < history[0]["obj_loss"] / 3
    assert result["best_score"] >= FLOOR, result["best_score"]
