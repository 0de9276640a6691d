"""End-to-end runs of scripts/train_imagenet.py (CPU, tiny), exact resume, and the hand-over of its
checkpoints to the detectors' --pretrained-base."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

import train_imagenet
import train_yolo3
from gluon_bof.engine import cpu_bf16_supported
from gluon_bof.errors import ConfigError
from gluon_bof.model_zoo import get_model
from gluon_bof.training import save_model_checkpoint
from gluon_bof.utils.checkpoint import load_checkpoint

TINY = ["--model", "mobilenet0.25", "--input-size", "32", "--batch-size", "4", "-j", "0", "--num-epochs", "2",
        "--lr", "0.4", "--lr-mode", "cosine", "--warmup-epochs", "1", "--mixup", "--mixup-off-epoch", "1",
        "--label-smoothing", "--no-wd", "--log-interval", "0", "--save-frequency", "0"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """3 classes of coloured squares: 8 training and 2 validation images each."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 2)):
        for c, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
            os.makedirs(root / split / f"class{c}")
            for i in range(n):
                img = rng.integers(0, 60, (24 + i, 28, 3)).astype(np.uint8)
                img[6:18, 6:18] = colour
                cv2.imwrite(str(root / split / f"class{c}" / f"{i}.png"), img[..., ::-1])
    return str(root)


def _run(data, save_dir, *extra):
    return train_imagenet.main(TINY + ["--data-dir", data, "--save-dir", save_dir, *extra])


def test_train_writes_checkpoints_history_and_top1_top5(tiny_folder, tmp_path):
    result = _run(tiny_folder, str(tmp_path))
    prefix = str(tmp_path / "imagenet_mobilenet0.25")
    state = load_checkpoint(prefix + "_last.pth")
    assert (state["epoch"], state["epoch_iter"]) == (2, 0)
    assert state["model_name"] == "mobilenet0.25" and state["model_kwargs"] == {"classes": 3}
    assert not any(k.startswith("net.") for k in state["model"])  # the bare classifier
    assert state["optimizer"]["param_groups"][0]["nesterov"]
    history = json.load(open(prefix + "_history.json"))
    assert [h["epoch"] for h in history] == [0, 1] and "loss" in history[0]
    assert set(history[-1]["val"]) == {"top1", "top5"} and history[-1]["val"]["top5"] == 1.0  # 3 classes
    assert result["score_name"] == "top1" and result["best_score"] == max(h["val"]["top1"] for h in history)
    assert json.load(open(prefix + "_last.json"))["mixup"] is True
    assert os.path.getsize(prefix + "_lr.png") > 1000


def test_stopped_and_resumed_run_equals_uninterrupted_run(tiny_folder, tmp_path, stop_resume_and_compare):
    _run(tiny_folder, str(tmp_path / "full"))
    full = load_checkpoint(str(tmp_path / "full" / "imagenet_mobilenet0.25_last.pth"))
    # 24 images / batch 4 = 6 batches per epoch; stop after 3 of epoch 0, then resume
    stop_resume_and_compare(lambda part, *extra: _run(tiny_folder, part, *extra), str(tmp_path / "part"),
                            "/imagenet_mobilenet0.25_last.pth", full)


def test_default_data_is_the_built_in_crops(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GLUON_BOF_DATA", synthetic_root)
    train_imagenet.main(["--model", "resnet18_v1b", "--last-gamma", "--input-size", "32", "--batch-size", "8",
                         "-j", "0", "--num-epochs", "1", "--max-epoch-iters", "2", "--log-interval", "0",
                         "--save-dir", str(tmp_path), "--dtype", "bfloat16" if cpu_bf16_supported() else "float32"])
    state = load_checkpoint(str(tmp_path / "imagenet_resnet18_v1b_last.pth"))
    assert state["model_kwargs"] == {"classes": 6, "last_gamma": True}
    assert os.path.isfile(os.path.join(synthetic_root, "classification", "classes.txt"))


def test_flags_that_do_not_fit_the_model_are_errors(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="last-gamma"):
        _run(tiny_folder, str(tmp_path), "--last-gamma")
    with pytest.raises(ConfigError, match="not in the zoo"):
        _run(tiny_folder, str(tmp_path), "--model", "resnet9000")


def test_distillation_from_a_checkpoint_teacher(tiny_folder, tmp_path):
    teacher = str(tmp_path / "teacher.pth")
    save_model_checkpoint(teacher, model=get_model("mobilenet0.5", classes=3), model_name="mobilenet0.5",
                    model_kwargs={"classes": 3})
    _run(tiny_folder, str(tmp_path), "--teacher", teacher, "--temperature", "4", "--max-epoch-iters", "2")
    history = json.load(open(tmp_path / "imagenet_mobilenet0.25_history.json"))
    assert {"hard_loss", "soft_loss"} <= set(history[0])
    save_model_checkpoint(teacher, model=get_model("mobilenet0.5", classes=5), model_name="mobilenet0.5",
                    model_kwargs={"classes": 5})
    with pytest.raises(ValueError, match="5 outputs, the data has 3 classes"):
        _run(tiny_folder, str(tmp_path), "--teacher", teacher)


def _classifier_checkpoint(path, name, classes):
    torch.manual_seed(1)
    net = get_model(name, classes=classes)
    save_model_checkpoint(path, model=net, model_name=name, model_kwargs={"classes": classes}, settings={})
    return net.state_dict()


def test_hand_over_to_yolo3_backbone(tmp_path):
    """A train_imagenet checkpoint (other classes) as --pretrained-base: the backbone gets its
    weights (the classifier head is not part of YOLOv3); another architecture is an error."""
    ckpt = str(tmp_path / "imagenet_mobilenet0.25_best.pth")
    state = _classifier_checkpoint(ckpt, "mobilenet0.25", 6)
    yolo = get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"], pretrained_base=ckpt).state_dict()
    cuts = [(0, 33), (33, 69), (69, 81)]  # features -> stages (re-indexed from 0)
    compared = 0
    for key, value in state.items():
        if not key.startswith("features."):
            continue
        idx, rest = key.split(".", 2)[1:]
        stage = next(s for s, (a, b) in enumerate(cuts) if a <= int(idx) < b)
        assert torch.equal(yolo[f"stages.{stage}.{int(idx) - cuts[stage][0]}.{rest}"], value), key
        compared += 1
    assert compared == 27 * 6  # 27 conv weights + 27 BN x (weight, bias, mean, var, count)
    with pytest.raises(ValueError, match="holds a 'mobilenet0.25' model.*'darknet53'"):
        get_model("yolo3_darknet53_custom", classes=["a"], pretrained_base=ckpt)
    assert train_yolo3.parse_args(["--pretrained-base", ckpt]).pretrained_base == ckpt


def test_hand_over_to_faster_rcnn_backbone(tmp_path):
    ckpt = str(tmp_path / "imagenet_resnet50_v1b_best.pth")
    state = _classifier_checkpoint(ckpt, "resnet50_v1b", 6)
    net = get_model("faster_rcnn_resnet50_v1b_custom", classes=["a", "b"], pretrained_base=ckpt)
    ours = net.state_dict()
    assert torch.equal(ours["features.0.weight"], state["conv1.weight"])
    assert torch.equal(ours["features.6.5.bn3.running_var"], state["layer3.5.bn3.running_var"])
    assert torch.equal(ours["top_features.0.2.conv3.weight"], state["layer4.2.conv3.weight"])
    with pytest.raises(ValueError, match="holds a 'resnet50_v1b' model.*'resnet101_v1d'"):
        get_model("faster_rcnn_resnet101_v1d_custom", classes=["a"], pretrained_base=ckpt)


def test_grad_checkpoint_trains_the_same_weights(tiny_folder, tmp_path):
    args = ["--model", "resnet18_v1b", "--last-gamma", "--input-size", "32", "--batch-size", "8", "-j", "0",
            "--num-epochs", "1", "--max-epoch-iters", "2", "--log-interval", "0", "--data-dir", tiny_folder]
    train_imagenet.main(args + ["--save-dir", str(tmp_path / "plain")])
    train_imagenet.main(args + ["--save-dir", str(tmp_path / "ckpt"), "--grad-checkpoint"])
    plain = load_checkpoint(str(tmp_path / "plain" / "imagenet_resnet18_v1b_last.pth"))["model"]
    ckpt = load_checkpoint(str(tmp_path / "ckpt" / "imagenet_resnet18_v1b_last.pth"))["model"]
    assert plain.keys() == ckpt.keys()
    for k in plain:  # parameters and BatchNorm statistics (updated once per step, not twice)
        torch.testing.assert_close(ckpt[k], plain[k], rtol=1e-5, atol=1e-6, msg=k)
    with pytest.raises(ConfigError, match="grad-checkpoint"):  # MobileNet declares no stages
        _run(tiny_folder, str(tmp_path / "m"), "--grad-checkpoint")
