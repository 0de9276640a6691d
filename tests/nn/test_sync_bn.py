"""Tests for gluon_bof/nn/sync_bn.py: CrossGPUBatchNorm2d (MegDet's Cross-GPU BatchNorm).

The reference is ONE ``nn.BatchNorm2d`` over the concatenation of the ranks' batches (outputs and
gradients), and the running statistics worked out by formula from that concatenation (torch's
BatchNorm2d updates ``running_var`` with the unbiased variance; MXNet's rule uses the biased one).
One spawn of 2 gloo processes and one of 4 run every distributed check (``_spawn`` of
tests/utils/test_distributed.py), in float64 so the comparison holds to ~1e-12.
"""
import os
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn

from gluon_bof import model_zoo
from gluon_bof.nn import CrossGPUBatchNorm2d
from gluon_bof.nn.norm import FrozenBatchNorm2d
from gluon_bof.nn.sync_bn import convert_cross_gpu_bn, cross_gpu_batch_norm
from gluon_bof.nn.sync_bn import convert_sync_batchnorm
from gluon_bof.utils.distributed import bn_groups

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "utils"))
from test_distributed import _spawn  # noqa: E402  (the project's gloo launcher)

C, STEPS, EPS = 3, 2, 1e-5
WEIGHT, BIAS = [1.5, -0.5, 0.8], [0.1, 0.2, -0.3]


def _images(n, step, group=0, hw=(4, 5)):
    """``n`` float64 images of step ``step``; channels with different means and scales."""
    g = torch.Generator().manual_seed(100 * group + step)
    x = torch.randn(n, C, *hw, generator=g, dtype=torch.float64)
    return x * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64).view(1, C, 1, 1) + \
        torch.tensor([0.5, -1.0, 3.0], dtype=torch.float64).view(1, C, 1, 1)


def _dy(n, step, group=0, hw=(4, 5)):
    """The loss is ``(y * dy).sum()``: ``dy`` is the output gradient."""
    g = torch.Generator().manual_seed(1000 + 100 * group + step)
    return torch.randn(n, C, *hw, generator=g, dtype=torch.float64)


def _with_affine(bn):
    """``bn`` in float64 with the weight WEIGHT and bias BIAS, in training mode."""
    bn = bn.double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(WEIGHT, dtype=torch.float64))
        bn.bias.copy_(torch.tensor(BIAS, dtype=torch.float64))
    return bn.train()


def _train(bn, counts, index, group=0, hw=(4, 5), channels_last=False):
    """STEPS steps of ``bn`` on share ``index`` of each step's ``sum(counts)`` images."""
    lo, hi = sum(counts[:index]), sum(counts[:index + 1])
    steps = []
    for step in range(STEPS):
        x = _images(sum(counts), step, group, hw)[lo:hi]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        bn.zero_grad()
        y = bn(x)
        (y * _dy(sum(counts), step, group, hw)[lo:hi]).sum().backward()
        steps.append(dict(y=y.detach(), x_grad=x.grad, w_grad=bn.weight.grad.clone(), b_grad=bn.bias.grad.clone(),
                          channels_last=all(t.is_contiguous(memory_format=torch.channels_last) for t in (y, x.grad))))
    return dict(steps=steps, mean=bn.running_mean.clone(), var=bn.running_var.clone(),
                tracked=int(bn.num_batches_tracked))


def _batch_stats(x):
    """Per-channel mean, biased variance (by the textbook two-pass formula) and count of ``x``."""
    values = x.transpose(0, 1).reshape(x.shape[1], -1)
    mean = values.mean(1)
    return mean, ((values - mean[:, None]) ** 2).mean(1), values.shape[1]


def _reference(n, biased, momentum, group=0, hw=(4, 5)):
    """Plain ``nn.BatchNorm2d`` over the whole batch of ``n`` images; running stats by formula."""
    bn = _with_affine(nn.BatchNorm2d(C, momentum=momentum))
    mean, var = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    steps = []
    for step in range(STEPS):
        x = _images(n, step, group, hw).requires_grad_()
        bn.zero_grad()
        y = bn(x)
        (y * _dy(n, step, group, hw)).sum().backward()
        steps.append(dict(y=y.detach(), x_grad=x.grad, w_grad=bn.weight.grad.clone(), b_grad=bn.bias.grad.clone()))
        m, v, count = _batch_stats(x.detach())
        f = momentum if momentum is not None else 1.0 / (step + 1)
        mean = (1 - f) * mean + f * m
        var = (1 - f) * var + f * (v if biased else v * count / (count - 1))
    torch.testing.assert_close(bn.running_mean, mean, atol=1e-14, rtol=0)  # the formula is torch's
    if not biased:
        torch.testing.assert_close(bn.running_var, var, atol=1e-14, rtol=0)
    return dict(steps=steps, mean=mean, var=var)


def _close(a, b, tol=1e-12):
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def _assert_matches(ranks, ref):
    """The ranks' results (in batch order) equal the reference over their concatenated batch."""
    for step, r in enumerate(ref["steps"]):
        mine = [res["steps"][step] for res in ranks]
        _close(torch.cat([m["y"] for m in mine]), r["y"])
        _close(torch.cat([m["x_grad"] for m in mine]), r["x_grad"])
        _close(sum(m["w_grad"] for m in mine), r["w_grad"])  # DDP all-reduces these shares
        _close(sum(m["b_grad"] for m in mine), r["b_grad"])
        assert all(torch.isfinite(m["y"]).all() and torch.isfinite(m["x_grad"]).all() for m in mine)
    for res in ranks:
        _close(res["mean"], ref["mean"])
        _close(res["var"], ref["var"])
        assert torch.equal(res["mean"], ranks[0]["mean"]) and torch.equal(res["var"], ranks[0]["var"])
        assert res["tracked"] == STEPS


# ---------------------------------------------------------------------------- distributed workers
CASES_2 = {  # name: counts per rank, biased_running_var, momentum, extra
    "biased": ([3, 3], True, 0.1, dict(channels_last=True)),
    "unbiased_cumulative": ([2, 4], False, None, {}),
    "one_value_each": ([1, 1], True, 0.1, dict(hw=(1, 1))),
}
CASES_4 = {
    "uneven": ([3, 1, 2, 2], True, 0.1, {}),
    "empty_rank": ([2, 0, 3, 1], False, 0.3, {}),
}


def _errors(rank, cases):
    """The ValueError each rank raises when the whole group has <= 1 value per channel."""
    out = {}
    for name, counts in cases.items():
        bn = CrossGPUBatchNorm2d(C).double()
        try:
            bn(torch.ones(counts[rank], C, 1, 1, dtype=torch.float64))
            out[name] = None
        except ValueError as e:
            out[name] = (str(e), bn.running_mean.clone(), int(bn.num_batches_tracked))
    return out


def _eval_without_communication():
    bn = _with_affine(CrossGPUBatchNorm2d(C)).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([0.25, 4.0, 1.5]))
    saved = dist.all_gather, dist.all_reduce

    def refuse(*args, **kwargs):
        raise AssertionError("eval mode communicated")
    dist.all_gather = dist.all_reduce = refuse
    try:
        y = bn(_images(2, 0))
    finally:
        dist.all_gather, dist.all_reduce = saved
    return dict(y=y.detach(), state={k: v.clone() for k, v in bn.state_dict().items()})


def _bfloat16(rank):
    bn = CrossGPUBatchNorm2d(C)
    x = _images(4, 0)[2 * rank:2 * rank + 2].bfloat16().requires_grad_()
    y = bn(x)
    (y.float() * _dy(4, 0)[2 * rank:2 * rank + 2].float()).sum().backward()
    return dict(y=y.detach(), x_grad=x.grad, mean=bn.running_mean.clone(), var=bn.running_var.clone())


def _yolo():
    torch.manual_seed(0)
    return model_zoo.get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"], channels=[16, 8, 8]).double()


def _yolo_batch():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, 64, 64, generator=g, dtype=torch.float64)
    xy = torch.rand(4, 2, 2, generator=g) * 28
    wh = 8 + torch.rand(4, 2, 2, generator=g) * 24
    labels = torch.cat([xy, xy + wh, torch.randint(0, 2, (4, 2, 1), generator=g).float(), torch.ones(4, 2, 1)], -1)
    return x, labels.double()


def _yolo_step(net, x, labels):
    losses = net(x, labels)
    sum(losses.values()).backward()
    net = getattr(net, "module", net)  # DDP's wrapped model
    return dict(stats={k: v.clone() for k, v in net.state_dict().items() if "running" in k},
                grads={k: p.grad.clone() for k, p in net.named_parameters()})


def _ddp_yolo(rank, world_size):
    """One DDP training step of the small YOLOv3 after --syncbn's conversion (torch's var rule)."""
    net = convert_sync_batchnorm(_yolo(), biased_running_var=False).train()
    kinds = {type(m).__name__ for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    x, labels = _yolo_batch()
    per = x.shape[0] // world_size
    ddp = nn.parallel.DistributedDataParallel(net)
    return dict(_yolo_step(ddp, x[rank * per:(rank + 1) * per], labels[rank * per:(rank + 1) * per]),
                kinds=kinds)


def _worker_2(rank, world_size):
    out = {name: _train(_with_affine(CrossGPUBatchNorm2d(C, momentum=m, biased_running_var=b)), counts, rank, **kw)
           for name, (counts, b, m, kw) in CASES_2.items()}
    out["errors"] = _errors(rank, {"one_value": [1, 0], "no_value": [0, 0]})
    out["eval"] = _eval_without_communication()
    out["bfloat16"] = _bfloat16(rank)
    out["ddp_yolo"] = _ddp_yolo(rank, world_size)
    return out


def _worker_4(rank, world_size):
    out = {name: _train(_with_affine(CrossGPUBatchNorm2d(C, momentum=m, biased_running_var=b)), counts, rank, **kw)
           for name, (counts, b, m, kw) in CASES_4.items()}
    mine = None
    for ranks in bn_groups(world_size, 2):  # every rank creates every group, in the same order
        group = dist.new_group(ranks)
        mine = group if rank in ranks else mine
    bn = _with_affine(CrossGPUBatchNorm2d(C, process_group=mine))
    out["groups"] = _train(bn, [2, 2], rank % 2, group=rank // 2)
    return out


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    return _spawn(_worker_2, 2, tmp_path_factory.mktemp("sbn2"))


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    return _spawn(_worker_4, 4, tmp_path_factory.mktemp("sbn4"))


# --------------------------------------------------------------------------------- distributed tests
@pytest.mark.parametrize("name", list(CASES_2))
def test_2_processes_equal_one_batchnorm_over_the_concatenated_batch(two, name):
    counts, biased, momentum, kw = CASES_2[name]
    _assert_matches([r[name] for r in two], _reference(sum(counts), biased, momentum, hw=kw.get("hw", (4, 5))))
    if kw.get("channels_last"):
        assert all(s["channels_last"] for r in two for s in r[name]["steps"])


@pytest.mark.parametrize("name", list(CASES_4))
def test_4_processes_uneven_and_empty_batches_equal_the_reference(four, name):
    counts, biased, momentum, _ = CASES_4[name]
    ranks = [r[name] for r in four]
    _assert_matches(ranks, _reference(sum(counts), biased, momentum))
    if 0 in counts:
        empty = ranks[counts.index(0)]["steps"]
        assert all(s["y"].shape == (0, C, 4, 5) and s["x_grad"].shape == (0, C, 4, 5) for s in empty)
        assert all(torch.equal(s["w_grad"], torch.zeros(C, dtype=torch.float64)) for s in empty)


def test_group_size_2_of_4_processes(four):
    refs = [_reference(4, True, 0.1, group=g) for g in (0, 1)]
    for g in (0, 1):
        _assert_matches([four[2 * g]["groups"], four[2 * g + 1]["groups"]], refs[g])
    assert not torch.allclose(four[0]["groups"]["mean"], four[2]["groups"]["mean"], atol=1e-3)


def test_fewer_than_two_values_in_the_group_raise_on_every_rank(two):
    for r in two:
        for name in ("one_value", "no_value"):
            message, mean, tracked = r["errors"][name]
            assert "more than 1 value per channel" in message and "over the process group" in message
            assert torch.equal(mean, torch.zeros(C, dtype=torch.float64)) and tracked == 0  # no update


def test_eval_mode_uses_running_stats_without_communication(two):
    ref = nn.BatchNorm2d(C).double()
    ref.load_state_dict(two[0]["eval"]["state"])
    expected = ref.eval()(_images(2, 0))
    for r in two:
        _close(r["eval"]["y"], expected)
        _close(r["eval"]["state"]["running_mean"], torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
        assert int(r["eval"]["state"]["num_batches_tracked"]) == 0


def test_bfloat16_statistics_in_float32(two):
    x = _images(4, 0).bfloat16()
    xr = x.float().requires_grad_()  # the same values in float32
    y = nn.BatchNorm2d(C)(xr)
    (y * _dy(4, 0).float()).sum().backward()
    mean, var, _ = _batch_stats(x.double())
    for r in two:
        b = r["bfloat16"]
        assert b["y"].dtype == torch.bfloat16 and b["mean"].dtype == torch.float32
        _close(b["mean"], (0.1 * mean).float(), tol=1e-6)
        _close(b["var"], (0.9 + 0.1 * var).float(), tol=1e-6)
    _close(torch.cat([r["bfloat16"]["y"] for r in two]).float(), y.detach(), tol=2e-2)
    _close(torch.cat([r["bfloat16"]["x_grad"] for r in two]).float(), xr.grad, tol=2e-2)


def test_syncbn_conversion_trains_a_yolo_under_ddp_as_one_process(two):
    ref = _yolo_step(_yolo().train(), *_yolo_batch())  # plain BatchNorm2d, 4 images in one process
    for r in two:
        assert r["ddp_yolo"]["kinds"] == {"CrossGPUBatchNorm2d"}
        for k, v in ref["stats"].items():
            _close(r["ddp_yolo"]["stats"][k], v, tol=1e-10)
            assert torch.equal(r["ddp_yolo"]["stats"][k], two[0]["ddp_yolo"]["stats"][k]), k
        for k, v in ref["grads"].items():  # DDP's average of the 2 ranks' gradients
            torch.testing.assert_close(r["ddp_yolo"]["grads"][k], v, atol=1e-10, rtol=1e-7, msg=k)


# ------------------------------------------------------------------------------ single process
@pytest.mark.parametrize("biased,momentum", [(True, 0.1), (True, None), (False, 0.1)])
def test_single_process_is_a_local_batchnorm(biased, momentum):
    assert not dist.is_initialized()
    bn = _with_affine(CrossGPUBatchNorm2d(C, momentum=momentum, biased_running_var=biased))
    _assert_matches([_train(bn, [5], 0)], _reference(5, biased, momentum))


def test_single_process_rejects_one_value_per_channel_and_non_4d_input():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        CrossGPUBatchNorm2d(C)(torch.ones(1, C, 1, 1))
    with pytest.raises(ValueError, match=r"expected a 4-D input \[B, C, H, W\], got shape \(2, 3\)"):
        CrossGPUBatchNorm2d(C)(torch.ones(2, C))


def test_single_process_bfloat16_and_autocast_keep_the_input_dtype():
    x = _images(2, 0).float()
    bn = CrossGPUBatchNorm2d(C)
    y = bn(x.bfloat16())
    assert y.dtype == torch.bfloat16 and bn.running_var.dtype == torch.float32
    _close(bn.running_var, (0.9 + 0.1 * _batch_stats(x.bfloat16().double())[1]).float(), tol=1e-6)
    net = nn.Sequential(nn.Conv2d(C, C, 1), CrossGPUBatchNorm2d(C))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_functional_form_needs_a_process_group():
    with pytest.raises(RuntimeError, match="needs an initialised process group"):
        cross_gpu_batch_norm(_images(2, 0), None, None)


def test_convert_keeps_parameters_buffers_and_settings():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, eps=1e-3, momentum=None),
                        nn.SyncBatchNorm(4, affine=False), nn.Sequential(nn.BatchNorm2d(4).double()),
                        FrozenBatchNorm2d(4))
    net[1].running_mean.fill_(2.0)
    net.eval()
    before = net.state_dict(keep_vars=True)
    assert convert_cross_gpu_bn(net, biased_running_var=False) is net
    assert [type(m) for m in net[1:4]] == [CrossGPUBatchNorm2d, CrossGPUBatchNorm2d, nn.Sequential]
    assert type(net[3][0]) is CrossGPUBatchNorm2d and type(net[4]) is FrozenBatchNorm2d
    after = net.state_dict(keep_vars=True)
    assert list(after) == list(before)
    assert all(after[k] is v for k, v in before.items())  # the same tensors: optimizers keep them
    assert (net[1].eps, net[1].momentum, net[2].affine, net[1].training) == (1e-3, None, False, False)
    assert net[3][0].weight.dtype == torch.float64 and net[1].running_mean[0] == 2.0
    assert not net[1].biased_running_var and isinstance(net[1], nn.BatchNorm2d)
    assert isinstance(convert_cross_gpu_bn(nn.BatchNorm2d(2)), CrossGPUBatchNorm2d)


# --------------------------------------------------------------------------------------- CUDA
def _nccl_worker(rank, world_size):
    """torch's SyncBatchNorm vs ours (torch's var rule) on cuda:0 in a 1-process NCCL group: the
    module (local path, as torch's in a group of one) and the collective path (functional form)."""
    dev = torch.device("cuda", rank)
    torch_bn = _with_affine(nn.SyncBatchNorm(C)).to(dev)
    ours = _with_affine(CrossGPUBatchNorm2d(C, biased_running_var=False)).to(dev)
    out = {"torch": _train(torch_bn, [4], 0, channels_last=True), "module": _train(ours, [4], 0)}
    weight, bias = (nn.Parameter(torch.tensor(v, dtype=torch.float64, device=dev)) for v in (WEIGHT, BIAS))
    mean, var = torch.zeros(C, dtype=torch.float64, device=dev), torch.ones(C, dtype=torch.float64, device=dev)
    x = _images(4, 0).to(dev).requires_grad_()
    y = cross_gpu_batch_norm(x, mean, var, weight, bias, 0.1, EPS, biased_running_var=False)
    (y * _dy(4, 0).to(dev)).sum().backward()
    out["functional"] = dict(steps=[dict(y=y.detach(), x_grad=x.grad, w_grad=weight.grad, b_grad=bias.grad)],
                             mean=mean, var=var)
    return _to_cpu(out)


def _to_cpu(tree):
    if isinstance(tree, dict):
        return {k: _to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to_cpu(v) for v in tree]
    return tree.cpu() if torch.is_tensor(tree) else tree


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (NCCL and torch's SyncBatchNorm)")
def test_cuda_nccl_agrees_with_torch_syncbatchnorm(tmp_path):
    (res,) = _spawn(_nccl_worker, 1, tmp_path, backend="nccl")
    ref = res["torch"]
    for mine in (res["module"], res["functional"]):
        for s, r in zip(mine["steps"], ref["steps"]):
            for k in ("y", "x_grad", "w_grad", "b_grad"):
                _close(s[k], r[k], 1e-10)
    _close(res["module"]["mean"], ref["mean"], 1e-10)
    _close(res["module"]["var"], ref["var"], 1e-10)
    mean, var, n = _batch_stats(_images(4, 0))  # the functional form ran one step, momentum 0.1
    _close(res["functional"]["mean"], 0.1 * mean, 1e-10)
    _close(res["functional"]["var"], 0.9 + 0.1 * var * n / (n - 1), 1e-10)
