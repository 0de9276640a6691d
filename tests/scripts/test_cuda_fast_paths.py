"""The fast paths on a CUDA device (``pytest -m cuda``; skipped without one; run by
scripts/gpu_check.py): float16 autocast with the loss scaler and a resume of it, bfloat16,
channels_last, torch.compile (inductor/Triton), DDP over NCCL in one process with the engine's
pipelined stop check, and the eval scripts' --dtype.

CUDA kernels are not bitwise reproducible run to run (atomics in the backward of upsampling and
gather), so a resumed run is compared with the uninterrupted one within a tolerance here, where
the CPU tests (tests/scripts/conftest.py) ask for equality.
"""
import pytest
import torch

import eval_yolo3
import train_yolo3
from gluon_bof import fit as fit_module
from gluon_bof.engine import StopRequest, compile_model, convert_channels_last
from gluon_bof.model_zoo import get_model
from gluon_bof.utils.checkpoint import load_checkpoint

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

NAME = "yolo3_mobilenet0.25_voc"
TINY = ["--network", "mobilenet0.25", "--head-channels", "32,16,16", "--batch-size", "4", "-j", "0",
        "--random-shape-min", "64", "--random-shape-max", "128", "--data-shape", "96", "--lr", "0.01",
        "--lr-mode", "cosine", "--warmup-epochs", "1", "--mixup", "--no-mixup-epochs", "1", "--label-smooth",
        "--no-wd", "--log-interval", "1", "--num-samples", "16", "--save-interval", "0", "--device", "cuda"]


def _close_states(a: dict, b: dict, rtol=2e-2, atol=1e-3):
    for k, v in a.items():
        if v.is_floating_point():
            torch.testing.assert_close(b[k].float(), v.float(), rtol=rtol, atol=atol, msg=k)
        else:
            assert torch.equal(v, b[k]), k


def _stop_and_resume(run, prefix, monkeypatch, after=3):
    class StopAfter(StopRequest):
        steps = 0

        @property
        def requested(self):
            StopAfter.steps += 1
            return StopAfter.steps >= after

        @requested.setter
        def requested(self, value):
            pass

    ckpt = prefix + f"{NAME}_last.pth"
    monkeypatch.setattr(fit_module, "StopRequest", StopAfter)
    run(prefix)
    stopped = load_checkpoint(ckpt)
    assert stopped["epoch"] == 0 and 0 < stopped["epoch_iter"] < 4
    monkeypatch.setattr(fit_module, "StopRequest", StopRequest)
    run(prefix, "--resume", ckpt)
    return stopped, load_checkpoint(ckpt)


def test_float16_with_loss_scaler_trains_and_resumes(synthetic_root, tmp_path, monkeypatch):
    def run(prefix, *extra):
        return train_yolo3.main(TINY + ["--epochs", "2", "--amp", "--amp-dtype", "float16", "--channels-last",
                                        "--data-root", synthetic_root, "--save-prefix", prefix, *extra])

    result = run(str(tmp_path / "full") + "/")
    assert all(torch.isfinite(torch.tensor(h["obj_loss"])) for h in result["history"])
    full = load_checkpoint(str(tmp_path / "full" / f"{NAME}_last.pth"))
    assert full["scaler"] is not None and full["scaler"]["scale"] > 0  # the GradScaler's state is saved
    stopped, resumed = _stop_and_resume(run, str(tmp_path / "part") + "/", monkeypatch)
    assert stopped["scaler"] is not None
    assert resumed["lr_scheduler"] == full["lr_scheduler"] and resumed["epoch"] == 2
    assert resumed["scaler"]["scale"] == full["scaler"]["scale"]
    _close_states(full["model"], resumed["model"])


def test_bfloat16_channels_last_training_and_eval_dtypes(synthetic_root, tmp_path):
    prefix = str(tmp_path) + "/"
    result = train_yolo3.main(TINY + ["--epochs", "1", "--amp", "--channels-last", "--data-root", synthetic_root,
                                      "--save-prefix", prefix])
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result["history"][0].items() if k.endswith("_loss"))
    ckpt = prefix + f"{NAME}_last.pth"
    state = load_checkpoint(ckpt)
    assert state["scaler"] is None and all(v.dtype != torch.bfloat16 for v in state["model"].values())
    maps = {}
    for dtype in ("float32", "bfloat16", "float16"):
        res = eval_yolo3.main(["--checkpoint", ckpt, "--data-root", synthetic_root, "--data-shape", "96", "-j", "0",
                               "--device", "cuda", "--dtype", dtype, "--channels-last"])
        maps[dtype] = res[96]["mAP"]
    assert abs(maps["bfloat16"] - maps["float32"]) < 0.05 and abs(maps["float16"] - maps["float32"]) < 0.05


def test_channels_last_matches_contiguous_on_cuda():
    torch.manual_seed(0)
    net = get_model("yolo3_darknet53_custom", classes=["a", "b"]).cuda().eval()
    x = torch.randn(2, 3, 128, 128, device="cuda")
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            ref = net._heads(x)[0]
            convert_channels_last(net)
            out = net._heads(x.contiguous(memory_format=torch.channels_last))[0]
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    for a, b in zip(ref, out):
        for u, v in zip(a, b):
            torch.testing.assert_close(v, u, rtol=1e-4, atol=1e-3)


def test_compiled_network_matches_eager_on_cuda():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.LeakyReLU(0.1),
                              torch.nn.Conv2d(16, 8, 3, padding=1)).cuda()
    x = torch.randn(4, 3, 32, 32, device="cuda")
    ref = net(x)
    ref.square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    compiled = compile_model(net)
    out = compiled(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)
    for p, g in zip(net.parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-3, atol=1e-3)
    compiled.eval()
    assert not net.training  # eval() reaches the network inside the wrapper


def test_nccl_ddp_one_process_stops_one_update_after_the_request(tmp_path):
    """DDP over NCCL in one process (bfloat16, channels_last, then torch.compile around DDP): the
    engine's stop check reads the all-reduced flag one update late instead of syncing every update,
    so a stop requested during update 2 ends the epoch after update 3, on every process alike."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from gluon_bof.data.loader import TrainBatch
    from gluon_bof.engine import train_one_epoch
    from gluon_bof.training import TrainingState, unwrap_model
    from gluon_bof.utils.optim import build_sgd, param_groups

    dist.init_process_group("nccl", init_method=f"file://{tmp_path}/pg", world_size=1, rank=0)
    try:
        torch.manual_seed(0)
        device = torch.device("cuda", 0)
        net = convert_channels_last(get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"],
                                              channels=[32, 16, 16]).to(device))
        model = DistributedDataParallel(net, device_ids=[0])
        optimizer = build_sgd(param_groups(net, 5e-4, False), lr=1e-3, momentum=0.9)
        labels = torch.tensor([[[8.0, 8.0, 60.0, 70.0, 0.0, 1.0], [30.0, 20.0, 90.0, 90.0, 1.0, 1.0]]] * 2)
        batches = [TrainBatch(torch.randn(2, 3, 96, 96), labels) for _ in range(6)]
        stop = StopRequest()

        def on_step(it):
            stop.requested = it >= 2
            return False

        class Constant:
            def step(self):
                pass

        for wrapped in (model, compile_model(model)):
            stop.requested = False
            result = train_one_epoch(wrapped, batches, optimizer, Constant(), epoch=0, device=device,
                                     amp_dtype=torch.bfloat16, log_interval=2, on_step=on_step, stop=stop,
                                     channels_last=True)
            assert result["stopped"] and result["epoch_iter"] == 3
            assert all(torch.isfinite(torch.tensor(v)) for k, v in result.items() if k.endswith("_loss"))
            state = TrainingState(wrapped, optimizer)
            assert unwrap_model(wrapped) is net and state.net is net
            assert not any(k.startswith(("module.", "_orig_mod.")) for k in state.net.state_dict())
    finally:
        dist.destroy_process_group()
