"""End-to-end runs of scripts/train_segmentation.py and scripts/eval_segmentation.py on tiny
generated masks (CPU), exact resume, the user's mistakes, and (slow) FCN trained to an mIoU floor."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import eval_segmentation
import train_segmentation
from gluon_bof.data.synthetic_segmentation import generate
from gluon_bof.utils.checkpoint import load_checkpoint
from gluon_bof.utils.cli import run_script
from gluon_bof.utils.lr_scheduler import lr_at

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--backbone", "resnet18", "--aux", "--base-size", "40", "--crop-size", "32", "--batch-size", "2", "-j", "0",
        "--epochs", "2", "--lr", "0.05", "--log-interval", "0", "--save-interval", "0", "--test-batch-size", "4",
        "--threads", "1"]


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory):
    """8 training and 3 validation images with masks, ADE20K layout."""
    return generate(str(tmp_path_factory.mktemp("seg")), num_train=8, num_val=3, seed=1)


def _run(root, save_dir, *extra):
    return train_segmentation.main(TINY + ["--data-root", root, "--save-dir", save_dir, *extra])


def test_train_writes_checkpoints_history_masks_and_follows_gluoncvs_schedule(seg_root, tmp_path):
    result = _run(seg_root, str(tmp_path))
    prefix = str(tmp_path / "default")
    state = load_checkpoint(prefix + "_last.pth")
    assert (state["epoch"], state["epoch_iter"]) == (2, 0)
    assert state["model_name"] == "fcn_resnet18_ade"
    assert state["model_kwargs"] == {"aux": True, "base_size": 40, "crop_size": 32, "nclass": 7}
    assert state["train_settings"] == {"aux_weight": 0.5, "normalization": "gluoncv"}
    assert state["score_name"] == "mIoU" and 0.0 <= result["best_score"] <= 1.0
    history = json.load(open(prefix + "_history.json"))
    assert [h["epoch"] for h in history] == [0, 1]
    assert {"loss", "aux_loss"} <= set(history[0]) and set(history[-1]["val"]) == {"pixAcc", "mIoU"}
    # 8 images / batch 2 = 4 updates an epoch; update n used poly(n) (power 0.9, GluonCV's indexing)
    sched = state["lr_scheduler"]
    assert sched["num_update"] == 8 and sched["schedule"]["power"] == 0.9 and sched["schedule"]["mode"] == "poly"
    assert history[0]["lr"] == pytest.approx(lr_at(4, **sched["schedule"]))
    groups = {g["lr_mult"]: g for g in state["optimizer"]["param_groups"]}
    assert set(groups) == {1.0, 10.0}
    assert os.path.getsize(prefix + "_val_masks.png") > 1000 and os.path.getsize(prefix + "_lr.png") > 1000


def test_stopped_and_resumed_run_equals_uninterrupted_run(seg_root, tmp_path, stop_resume_and_compare):
    _run(seg_root, str(tmp_path / "full"))
    full = load_checkpoint(str(tmp_path / "full" / "default_last.pth"))
    stop_resume_and_compare(lambda part, *extra: _run(seg_root, part, *extra), str(tmp_path / "part"),
                            "/default_last.pth", full)


def test_eval_script_and_eval_flag_score_the_checkpoint(seg_root, tmp_path, capsys):
    _run(seg_root, str(tmp_path), "--epochs", "1")
    ckpt = str(tmp_path / "default_best.pth")
    out = eval_segmentation.main(["--checkpoint", ckpt, "--data-root", seg_root, "--save-dir", str(tmp_path / "ev"),
                                  "-j", "0", "--mode", "val"])
    assert out["crop_size"] == 32 and set(out["per_class_iou"]) == {
        "background", "circle", "square", "triangle", "star", "cross", "ring"}
    saved = load_checkpoint(ckpt)["history"][-1]["val"]  # the same images and crops as training's validation
    assert out["mIoU"] == pytest.approx(saved["mIoU"]) and out["pixAcc"] == pytest.approx(saved["pixAcc"])
    assert json.load(open(tmp_path / "ev" / "eval.json"))["mIoU"] == out["mIoU"]
    assert "| **mIoU** |" in capsys.readouterr().out and (tmp_path / "ev" / "masks.png").stat().st_size > 1000
    whole = eval_segmentation.main(["--checkpoint", ckpt, "--data-root", seg_root, "-j", "0"])
    assert whole["mode"] == "testval" and whole["crop_size"] is None
    again = _run(seg_root, str(tmp_path / "e"), "--eval", "--resume", ckpt)
    assert again["mIoU"] == pytest.approx(saved["mIoU"])


def test_help_shows_gluoncv_flags_with_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        train_segmentation.parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--backbone", "--dataset", "--aux", "--aux-weight", "--lr", "--momentum",
                 "--weight-decay", "--epochs", "--batch-size", "--crop-size", "--base-size", "--workers",
                 "--resume", "--checkname", "--no-val", "--syncbn", "--pretrained-base", "--loss-normalization"):
        assert flag in text, flag
    assert "(default: 0.5)" in text and "(default: 480)" in text and "Differences from GluonCV" in text


@pytest.mark.parametrize("args, fragments", [
    (["--pretrained"], ["--model-zoo"]),
    (["--eval"], ["--eval needs weights"]),
    (["--ngpus", "2"], ["--ngpus", "torchrun --nproc_per_node 2"]),
    (["--dataset", "pascal_voc"], ["invalid choice"]),
    (["--model-zoo", "fcn_resnet50_coco"], ["not in the zoo"]),
    (["--backbone", "resnet18", "--pretrained-base", "no/such.pth", "--epochs", "1"], ["no/such.pth"]),
])
def test_mistakes_end_in_one_line_and_status_2(args, fragments, seg_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_script(train_segmentation.main, ["--data-root", seg_root, "--save-dir", str(tmp_path), "-j", "0",
                                             "--threads", "1", *args])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in last and all(f in last for f in fragments), last


def test_a_mistake_typed_at_the_command_line(seg_root, tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "train_segmentation.py"), "--data-root", seg_root,
           "--save-dir", str(tmp_path), "--start_epoch", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "error: --start_epoch" in last and "--resume" in last, last


@pytest.mark.slow
def test_torchrun_two_processes_score_every_validation_image_once(seg_root, tmp_path):
    """2 gloo processes (1 image each per update, --syncbn): training validation gathers both
    shards' counts, so it equals one process scoring the saved weights (3 images: shards 2 + 1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master-port", str(port),
           os.path.join(ROOT, "scripts", "train_segmentation.py"), *TINY, "--data-root", seg_root, "--epochs", "1",
           "--syncbn", "--save-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = open(tmp_path / "default_train.log").read()
    assert log.count("[epoch 0] validation") == 1 and "2 processes x 1 micro-batches x 1 images" in log
    saved = load_checkpoint(str(tmp_path / "default_best.pth"))
    alone = eval_segmentation.main(["--checkpoint", str(tmp_path / "default_best.pth"), "--data-root", seg_root,
                                    "--mode", "val", "-j", "0", "--threads", "1"])
    assert alone["mIoU"] == pytest.approx(saved["history"][-1]["val"]["mIoU"], abs=1e-12)
    assert alone["pixAcc"] == pytest.approx(saved["history"][-1]["val"]["pixAcc"], abs=1e-12)


# The slow check: FCN in the cheap configuration (fcn_resnet18_ade: dilated ResNet-18 v1b, GluonCV's
# heads on its 512/256 channels; 48-pixel crops of base size 64, batch 4, lr 0.03 with GluonCV's loss
# normalisation, poly schedule, heads at 10x), trained from scratch on 300 generated images for 4
# epochs (300 updates), validated on 60 (48-pixel centre crops). Measured (2-core reference machine,
# one thread, torch 2.14): mIoU 0.173 / 0.302 / 0.371 / 0.381 after epochs 1-4 (pixAcc 0.89; predicting
# background everywhere scores mIoU 0.126), 2 to 10 minutes depending on the machine's load.
SLOW = ["--backbone", "resnet18", "--aux", "--base-size", "64", "--crop-size", "48", "--batch-size", "4", "-j", "0",
        "--epochs", "4", "--lr", "0.03", "--log-interval", "0", "--save-interval", "0", "--test-batch-size", "20",
        "--val-interval", "2", "--threads", "1", "--checkname", "fcn"]
FLOOR = 0.30


@pytest.mark.slow
def test_fcn_learns_the_generated_masks(tmp_path):
    root = generate(str(tmp_path / "data"), num_train=300, num_val=60, seed=0)
    result = train_segmentation.main(SLOW + ["--data-root", root, "--save-dir", str(tmp_path / "run")])
    history = result["history"]
    print("validation:", [h.get("val") for h in history])
    assert result["best_score"] >= FLOOR, history[-1]["val"]
    assert history[-1]["val"]["pixAcc"] > 0.88 and np.isfinite(history[-1]["loss"])
