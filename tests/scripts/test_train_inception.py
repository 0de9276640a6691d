"""scripts/train_imagenet.py with Inception-V3 and the ResNet V1 family: the Bag of Tricks flags
as typed, on a tiny image folder (75x75 inputs, the smallest Inception-V3 accepts; 2 updates)."""
import json

import pytest
import torch

import train_imagenet
from gluon_bof.errors import ConfigError
from gluon_bof.model_zoo import get_model
from gluon_bof.training import save_model_checkpoint
from gluon_bof.utils.checkpoint import load_checkpoint
from test_train_imagenet import tiny_folder  # noqa: F401  (the 3-class image folder fixture)

TRICKS = ["--batch-size", "4", "-j", "0", "--num-epochs", "2", "--max-epoch-iters", "1",
          "--lr", "0.4", "--lr-mode", "cosine", "--warmup-epochs", "1", "--no-wd", "--label-smoothing",
          "--mixup", "--mixup-off-epoch", "1", "--log-interval", "0", "--save-frequency", "0",
          "--val-interval", "2"]  # validation after the last epoch only


def test_input_size_defaults_to_the_models_own():
    assert train_imagenet.parse_args(["--model", "inceptionv3"]).input_size == 299
    assert train_imagenet.parse_args(["--model", "resnet50_v1"]).input_size == 224
    assert train_imagenet.parse_args(["--model", "inceptionv3", "--input-size", "107"]).input_size == 107


def test_inception_v3_trains_with_every_trick(tiny_folder, tmp_path):  # noqa: F811
    """NAG, warmup + cosine, no bias/BN decay, label smoothing, mixup (off in the last epoch) and
    distillation from a ResNet teacher checkpoint, through the script's own loop."""
    teacher = str(tmp_path / "teacher.pth")
    save_model_checkpoint(teacher, model=get_model("resnet18_v1", classes=3), model_name="resnet18_v1",
                    model_kwargs={"classes": 3})
    train_imagenet.main(["--model", "inceptionv3", "--input-size", "75", "--data-dir", tiny_folder,
                         "--save-dir", str(tmp_path), "--teacher", teacher, "--temperature", "20",
                         "--hard-weight", "0.5", *TRICKS])
    prefix = str(tmp_path / "imagenet_inceptionv3")
    state = load_checkpoint(prefix + "_last.pth")
    assert state["model_name"] == "inceptionv3" and state["model_kwargs"] == {"classes": 3}
    groups = state["optimizer"]["param_groups"]
    assert groups[0]["nesterov"] and [g["weight_decay"] for g in groups] == [1e-4, 0.0]
    assert len(groups[1]["params"]) == 94 * 2 + 1  # BN gamma and beta, the output's bias
    settings = json.load(open(prefix + "_last.json"))
    assert settings["input_size"] == 75 and settings["mixup"] and settings["label_smoothing"]
    history = json.load(open(prefix + "_history.json"))
    assert [h["epoch"] for h in history] == [0, 1] and "top1" in history[-1]["val"]
    assert {"hard_loss", "soft_loss"} <= set(history[0])
    net = get_model("inceptionv3", classes=3)
    net.load_state_dict(state["model"])
    assert all(torch.isfinite(v).all() for v in net.state_dict().values())
    with pytest.raises(ConfigError, match="last-gamma"):  # no residual blocks: refused
        train_imagenet.main(["--model", "inceptionv3", "--last-gamma", "--input-size", "75",
                             "--data-dir", tiny_folder, "--save-dir", str(tmp_path / "refused"), *TRICKS])


def test_resnet_v1_trains_with_last_gamma(tiny_folder, tmp_path):  # noqa: F811
    train_imagenet.main(["--model", "resnet18_v1", "--last-gamma", "--input-size", "32",
                         "--data-dir", tiny_folder, "--save-dir", str(tmp_path), *TRICKS])
    state = load_checkpoint(str(tmp_path / "imagenet_resnet18_v1_last.pth"))
    assert state["model_kwargs"] == {"classes": 3, "last_gamma": True}
