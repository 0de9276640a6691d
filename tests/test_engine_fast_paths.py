"""engine.py's fast paths: channels_last batches, autocast in evaluation, the eval --dtype rules and
the stop check that needs no host sync per update under a process group."""
import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from gluon_bof.data.loader import EvalBatch, TrainBatch
from gluon_bof.engine import (StopRequest, compile_model, cpu_bf16_supported, eval_autocast_dtype, evaluate, to_device,
                              train_one_epoch)
from gluon_bof.errors import ConfigError


class _Tiny(nn.Module):
    """A 'detector' whose loss is a conv's mean square; records its inputs' layout and autocast."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.seen = []

    def forward(self, x, labels=None, image_sizes=None):
        self.seen.append((x.is_contiguous(memory_format=torch.channels_last), torch.is_autocast_enabled("cpu")))
        y = self.conv(x)
        if labels is not None:
            return {"loss": y.float().square().mean()}
        b = x.shape[0]
        score = y.mean(dim=(1, 2, 3))[:, None, None]
        return torch.zeros(b, 1, 1, dtype=y.dtype), score, torch.tensor([[1.0, 2.0, 5.0, 6.0]]).repeat(b, 1, 1)


class _Constant:
    def step(self):
        pass


def _batches(n):
    g = torch.Generator().manual_seed(0)
    return [TrainBatch(torch.randn(2, 3, 8, 8, generator=g), torch.zeros(2, 1, 6)) for _ in range(n)]


def _train(model, n=6, stop_at=None, **kwargs):
    stop = StopRequest()

    def on_step(it):
        stop.requested = stop_at is not None and it >= stop_at
        return False

    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return train_one_epoch(model, _batches(n), opt, _Constant(), epoch=0, device=torch.device("cpu"),
                           log_interval=0, on_step=on_step, stop=stop, **kwargs)


def test_channels_last_batches_reach_the_model_in_that_layout():
    net = _Tiny()
    _train(net, n=2, channels_last=True)
    _train(net, n=1)
    assert [s[0] for s in net.seen] == [True, True, False]
    x = to_device(torch.zeros(1, 3, 4, 4), torch.device("cpu"), channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last) and x.shape == (1, 3, 4, 4)


def test_stop_without_a_process_group_ends_after_the_requesting_update():
    result = _train(_Tiny(), stop_at=2)
    assert result["stopped"] and result["epoch_iter"] == 2


def test_stop_under_a_gloo_process_group_ends_after_the_requesting_update(tmp_path):
    """On the CPU the all-reduced flag is read at once (gloo's all-reduce is synchronous anyway);
    the one-update lag that spares the host a CUDA sync is tested on CUDA
    (tests/scripts/test_cuda_fast_paths.py)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", world_size=1, rank=0)
    try:
        net = _Tiny()
        ddp = nn.parallel.DistributedDataParallel(net)
        result = _train(ddp, stop_at=2)
        assert result["stopped"] and result["epoch_iter"] == 2
        assert _train(ddp)["epoch_iter"] == 6 and not _train(ddp)["stopped"]
    finally:
        dist.destroy_process_group()


class _Metric:
    def reset(self):
        self.calls = []

    def update(self, *args):
        self.calls.append(args)

    def get(self):
        return ["mAP"], [0.0]


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bfloat16")
def test_evaluate_under_autocast_hands_float32_to_the_metric():
    net, metric = _Tiny(), _Metric()
    labels = torch.from_numpy(np.array([[[1, 2, 3, 4, 0, 0]]], np.float32))
    evaluate(net, [EvalBatch(torch.randn(1, 3, 8, 8), labels)], metric, device=torch.device("cpu"),
             amp_dtype=torch.bfloat16, channels_last=True)
    assert net.seen == [(True, True)]
    boxes, ids, scores = metric.calls[0][:3]
    assert boxes.dtype == ids.dtype == scores.dtype == np.float32


def test_eval_dtype_rules():
    cpu = torch.device("cpu")
    assert eval_autocast_dtype("float32", cpu) is None
    with pytest.raises(ConfigError, match="--dtype float16 needs CUDA"):
        eval_autocast_dtype("float16", cpu)
    if cpu_bf16_supported():
        assert eval_autocast_dtype("bfloat16", cpu) is torch.bfloat16
    assert eval_autocast_dtype("float16", torch.device("cuda")) is torch.float16  # no scaler for evaluation
    with pytest.raises(ConfigError, match="--compile-mode"):
        compile_model(nn.Linear(1, 1), "fastest")
