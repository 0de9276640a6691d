"""The fast paths' flags through the scripts: --channels-last, --compile [--compile-mode], the eval
scripts' and demo's --dtype. Their defaults leave GluonCV's float32 numerics alone.

torch.compile's inductor needs a C++ build per graph (about a minute per model on 2 loaded cores),
so the fast tests here swap ``torch.compile`` for a wrapper of the same structure as its
``OptimizedModule`` (the network as the child ``_orig_mod``, running eagerly): they test what the
scripts do with a compiled model (checkpoint keys, resume, train/eval). The real compiler runs in
the slow tests below and, on CUDA, in tests/test_cuda.py.
"""
import json

import pytest
import torch
from torch import nn

import demo
import eval_faster_rcnn
import eval_yolo3
import train_faster_rcnn
import train_imagenet
import train_yolo3
from gluon_bof.engine import compile_model, convert_channels_last, cpu_bf16_supported
from gluon_bof.model_zoo import get_model
from gluon_bof.training import TrainingState, unwrap_model
from gluon_bof.utils.checkpoint import load_checkpoint

TINY = ["--network", "mobilenet0.25", "--head-channels", "32,16,16", "--batch-size", "4", "-j", "0",
        "--random-shape-min", "64", "--random-shape-max", "96", "--data-shape", "64", "--epochs", "2",
        "--lr", "0.01", "--lr-mode", "cosine", "--warmup-epochs", "1", "--mixup", "--no-mixup-epochs", "1",
        "--label-smooth", "--no-wd", "--log-interval", "0", "--num-samples", "16", "--save-interval", "0"]
NAME = "yolo3_mobilenet0.25_voc"


class EagerCompiled(nn.Module):
    """``torch.compile``'s wrapper structure (``_orig_mod``, attribute fall-through), run eagerly;
    counts its calls."""

    calls = 0

    def __init__(self, mod, **kwargs):
        super().__init__()
        self._orig_mod = mod

    def forward(self, *args, **kwargs):
        EagerCompiled.calls += 1
        return self._orig_mod(*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._orig_mod, name)


@pytest.fixture
def eager_compile(monkeypatch):
    EagerCompiled.calls = 0
    monkeypatch.setattr(torch, "compile", EagerCompiled)
    return EagerCompiled


def test_the_fake_has_the_real_wrappers_structure():
    net = nn.Linear(2, 2)
    real = compile_model(net)  # compiles nothing until called
    assert real._modules["_orig_mod"] is net and unwrap_model(real) is net
    assert list(real.state_dict()) == ["_orig_mod.weight", "_orig_mod.bias"]  # why the checkpoint unwraps
    ddp_like = nn.Module()
    ddp_like.module = real  # torch.compile inside a DistributedDataParallel-style .module wrapper
    assert unwrap_model(ddp_like) is net and unwrap_model(EagerCompiled(ddp_like)) is net
    state = TrainingState(EagerCompiled(net))
    assert state.net is net


@pytest.mark.parametrize("module, argv", [
    (train_yolo3, []), (train_faster_rcnn, []), (train_imagenet, ["--model", "resnet18_v1b"]),
    (eval_yolo3, ["--checkpoint", "x.pth"]), (eval_faster_rcnn, ["--checkpoint", "x.pth"]),
    (demo, ["--checkpoint", "x.pth"])])
def test_defaults_keep_eager_float32_contiguous(module, argv):
    args = module.parse_args(argv)
    assert (args.channels_last, args.compile, args.compile_mode) == (False, False, None)
    assert getattr(args, "dtype", "float32") == "float32"
    assert not getattr(args, "amp", False)


def test_compile_mode_without_compile_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        train_yolo3.parse_args(["--compile-mode", "max-autotune"])
    assert e.value.code == 2 and "--compile-mode max-autotune needs --compile" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eval_yolo3.parse_args(["--checkpoint", "x.pth", "--compile-mode", "default"])


def test_channels_last_model_gives_the_same_outputs():
    torch.manual_seed(0)
    net = get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"], channels=[32, 16, 16]).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = net(x)
        convert_channels_last(net)
        assert net.stages[0][0].weight.is_contiguous(memory_format=torch.channels_last)
        out = net(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(ref, out):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)  # boxes in pixels; the same detections
    assert net.state_dict().keys() == get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"],
                                                channels=[32, 16, 16]).state_dict().keys()
    rcnn = get_model("faster_rcnn_resnet50_v1b_custom", classes=["a"], pretrained_base=False)
    convert_channels_last(rcnn)  # its 5-D anchor map stays as it is (model.to(memory_format) refuses it)
    assert rcnn.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    convert_channels_last(rcnn, False)
    assert rcnn.features[0].weight.is_contiguous()


def test_train_compiled_channels_last_keeps_plain_keys_and_resumes_exactly(synthetic_root, tmp_path, eager_compile,
                                                                           stop_resume_and_compare):
    def run(prefix, *extra):
        return train_yolo3.main(TINY + ["--data-root", synthetic_root, "--save-prefix", prefix, "--compile",
                                        "--channels-last", *extra])

    run(str(tmp_path / "full") + "/")
    assert eager_compile.calls >= 8  # every training batch went through the compiled wrapper
    full = load_checkpoint(str(tmp_path / "full" / f"{NAME}_last.pth"))
    plain = get_model(full["model_name"], **full["model_kwargs"]).state_dict()
    assert list(full["model"]) == list(plain)  # no _orig_mod. prefix
    assert full["model"]["stages.0.0.weight"].is_contiguous(memory_format=torch.channels_last)
    assert full["args"]["compile"] and full["args"]["channels_last"]
    stop_resume_and_compare(run, str(tmp_path / "part") + "/", f"{NAME}_last.pth", full)


@pytest.fixture(scope="module")
def checkpoint(synthetic_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fast_paths")) + "/"
    train_yolo3.main(["--network", "mobilenet0.25", "--head-channels", "32,16,16", "--batch-size", "4", "-j", "0",
                      "--no-random-shape", "--data-shape", "96", "--epochs", "1", "--max-epoch-iters", "3",
                      "--log-interval", "0", "--data-root", synthetic_root, "--save-prefix", out,
                      "--save-interval", "0", "--lr", "0.01"])
    return out + f"{NAME}_last.pth"


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bfloat16")
def test_eval_bfloat16_channels_last_compiled_runs_and_records_dtype(checkpoint, synthetic_root, tmp_path,
                                                                     eager_compile):
    common = ["--checkpoint", checkpoint, "--data-root", synthetic_root, "--data-shape", "96", "--batch-size", "4",
              "-j", "0"]
    ref = eval_yolo3.main(common + ["--save-dir", str(tmp_path / "fp32")])
    out = eval_yolo3.main(common + ["--dtype", "bfloat16", "--channels-last", "--compile",
                                    "--save-dir", str(tmp_path / "bf16")])
    assert eager_compile.calls == 2  # 8 test images, batches of 4
    assert json.load(open(tmp_path / "bf16" / "eval.json"))["dtype"] == "bfloat16"
    assert json.load(open(tmp_path / "fp32" / "eval.json"))["dtype"] == "float32"
    assert abs(out[96]["mAP"] - ref[96]["mAP"]) < 0.05  # an untrained model's few detections; see docs
    demo.main(["--checkpoint", checkpoint, "--data-root", synthetic_root, "--num-images", "1", "--dtype", "bfloat16",
               "--channels-last", "--out", str(tmp_path / "grid.png")])


def test_eval_float16_on_the_cpu_is_refused_by_name(checkpoint, synthetic_root, capsys):
    from gluon_bof.utils.cli import run_script

    with pytest.raises(SystemExit) as e:
        run_script(eval_yolo3.main, ["--checkpoint", checkpoint, "--data-root", synthetic_root, "--device", "cpu",
                                     "--dtype", "float16"])
    assert e.value.code == 2
    assert "--dtype float16 needs CUDA" in capsys.readouterr().err


@pytest.mark.slow
def test_inductor_compiled_training_matches_eager_and_resumes(synthetic_root, tmp_path):
    """The real torch.compile (inductor, C++ on the CPU) through the script: the same losses as
    eager within float32 reordering, plain checkpoint keys, and a resumed run."""
    torch._dynamo.reset()
    tiny = ["--network", "mobilenet0.25", "--head-channels", "16,8,8", "--batch-size", "4", "-j", "0",
            "--no-random-shape", "--data-shape", "64", "--lr", "0.01", "--log-interval", "0", "--num-samples", "8",
            "--save-interval", "0", "--max-epoch-iters", "2", "--data-root", synthetic_root]
    eager = train_yolo3.main(tiny + ["--epochs", "1", "--save-prefix", str(tmp_path / "e") + "/"])
    compiled = train_yolo3.main(tiny + ["--epochs", "1", "--save-prefix", str(tmp_path / "c") + "/", "--compile"])
    for k in ("obj_loss", "center_loss", "scale_loss", "cls_loss"):
        assert compiled["history"][0][k] == pytest.approx(eager["history"][0][k], rel=1e-3)
    last = str(tmp_path / "c" / f"{NAME}_last.pth")
    assert not any("_orig_mod" in k for k in load_checkpoint(last)["model"])
    resumed = train_yolo3.main(tiny + ["--epochs", "2", "--save-prefix", str(tmp_path / "c") + "/", "--compile",
                                       "--resume", last])
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]


def test_gpu_augment_trains_as_the_cpu_pipeline(synthetic_root, tmp_path):
    """``--gpu-augment`` on the CPU device (libjpeg-turbo through torchvision instead of OpenCV, the
    resize as weight tables): the same samples, crops and flips for the same seed, so the same
    losses to float32 rounding, through the script a user runs (mixup on in the first epoch).
    At learning rate 0: from scratch, this network's gradients are chaotic (a 1e-6 change of the
    input moves some by 5 % of their size), so only updates that change nothing compare batches."""
    def losses(prefix, *extra):
        train_yolo3.main(TINY + ["--data-root", synthetic_root, "--save-prefix", prefix, "--max-epoch-iters", "2",
                                 "--lr", "0", *extra])
        history = load_checkpoint(prefix + f"{NAME}_last.pth")["history"]
        return [{k: v for k, v in epoch.items() if k.endswith("loss")} for epoch in history]

    cpu = losses(str(tmp_path / "cpu") + "/")
    device = losses(str(tmp_path / "dev") + "/", "--gpu-augment")
    assert len(cpu) == len(device) == 2
    for a, b in zip(cpu, device):
        assert a.keys() == b.keys() and a
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4), key


def test_gpu_augment_without_data_aug_is_refused(synthetic_root, capsys):
    with pytest.raises(SystemExit) as exc:
        train_yolo3.main(TINY + ["--data-root", synthetic_root, "--gpu-augment", "--no-data-aug"])
    assert exc.value.code == 2
    assert "--gpu-augment" in capsys.readouterr().err
