"""Tests for gluon_bof/utils/distributed.py: bn_groups and convert_sync_batchnorm (MegDet group BN).

Multi-process checks spawn gloo processes on this machine (torch.multiprocessing.spawn).

What torch supports on CPU: ``nn.SyncBatchNorm``'s training forward raises ValueError
("SyncBatchNorm expected input tensor to be on GPU ...") for CPU tensors once a process group exists,
and its kernels (``aten::batch_norm_stats``, ``batch_norm_gather_stats_with_counts``) have no CPU
implementation. So on CPU we test group construction and the group-scoped communication, and assert
that rejection; the numerical comparisons against plain BatchNorm on the concatenated batch need CUDA
(all ranks share cuda:0 over gloo) and are skipped without it.
"""
import logging
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gluon_bof.utils.distributed import bn_groups, convert_sync_batchnorm

CPU_REASON = ("torch {} SyncBatchNorm supports only CUDA/XPU/PrivateUse1 inputs: its training forward "
              "raises ValueError on CPU and aten::batch_norm_stats has no CPU kernel".format(torch.__version__))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world_size, port, fn, out_dir, args):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.save(fn(rank, world_size, *args), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _spawn(fn, world_size, tmp_path, *args):
    """Runs ``fn(rank, world_size, *args)`` in ``world_size`` gloo processes; returns their results."""
    mp.spawn(_entry, args=(world_size, _free_port(), fn, str(tmp_path), args), nprocs=world_size)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())


def _batch(n):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 6, 6, generator=g, dtype=torch.float64) * 2 + 0.5


def test_bn_groups():
    assert bn_groups(4, 2) == [[0, 1], [2, 3]]
    assert bn_groups(8, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert bn_groups(3, 3) == [[0, 1, 2]]
    assert bn_groups(2, 1) == [[0], [1]]
    with pytest.raises(ValueError, match="group size 3 does not divide world size 4"):
        bn_groups(4, 3)
    with pytest.raises(ValueError, match="must be >= 1"):
        bn_groups(4, 0)


def test_single_process_warns_and_returns_model_unchanged(caplog):
    net = _net()
    with caplog.at_level(logging.WARNING):
        assert convert_sync_batchnorm(net, group_size=2) is net
    assert type(net[1]) is nn.BatchNorm2d
    assert "no effect in a single process" in caplog.text


def _groups_worker(rank, world_size):
    out = {}
    try:
        convert_sync_batchnorm(_net(), group_size=3)
    except ValueError as e:
        out["bad_group_error"] = str(e)
    plain = _net()
    out["group1_unchanged"] = convert_sync_batchnorm(plain, group_size=1) is plain
    world = convert_sync_batchnorm(_net())
    out["world_pg"] = world[1].process_group
    net = convert_sync_batchnorm(_net(), group_size=2)
    bn = net[1]
    out["type"] = type(bn).__name__
    out["ranks"] = dist.get_process_group_ranks(bn.process_group)
    t = torch.tensor([float(rank)])
    dist.all_reduce(t, group=bn.process_group)  # communication is scoped to this rank's group
    out["group_sum"] = t.item()
    try:  # documents torch's CPU limitation
        net.train()(_batch(2).float())
        out["cpu_train_forward"] = "ok"
    except ValueError as e:
        out["cpu_train_forward"] = str(e)
    net.eval()(_batch(2).float())  # eval mode does not synchronise: works on CPU
    return out


def test_group_construction_4_processes(tmp_path):
    res = _spawn(_groups_worker, 4, tmp_path)
    for rank, r in enumerate(res):
        assert "group size 3 does not divide world size 4" in r["bad_group_error"]
        assert r["group1_unchanged"]
        assert r["world_pg"] is None  # None = default (world) group
        assert r["type"] == "SyncBatchNorm"
        assert r["ranks"] == ([0, 1] if rank < 2 else [2, 3])
        assert r["group_sum"] == (0 + 1 if rank < 2 else 2 + 3)
        if r["cpu_train_forward"] == "ok":  # torch gained CPU support: enable the numeric tests on CPU
            pytest.fail("SyncBatchNorm now runs on CPU: update CPU_REASON and the skips below")
        assert "expected input tensor to be on GPU" in r["cpu_train_forward"]


def _numeric_worker(rank, world_size, group_size, per_rank):
    dev = torch.device("cuda", 0)
    net = convert_sync_batchnorm(_net().double().to(dev), group_size=group_size).train()
    x = _batch(per_rank * world_size)[rank * per_rank:(rank + 1) * per_rank].to(dev).requires_grad_()
    out = net(x)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=dev).view_as(out)).sum().backward()
    bn = net[1]
    return {k: v.detach().cpu() for k, v in dict(
        mean=bn.running_mean, var=bn.running_var, x_grad=x.grad, conv_grad=net[0].weight.grad,
        w_grad=bn.weight.grad, b_grad=bn.bias.grad).items()}


def _reference(x, weights):
    """Plain BatchNorm on the whole batch ``x``; ``weights`` is the loss weighting of each output."""
    net = _net().double().train()
    x = x.clone().requires_grad_()
    out = net(x)
    (out * weights).sum().backward()
    return dict(mean=net[1].running_mean, var=net[1].running_var, x_grad=x.grad,
                conv_grad=net[0].weight.grad, w_grad=net[1].weight.grad, b_grad=net[1].bias.grad)


def _weights(n_per_rank, n_ranks):
    one = torch.linspace(-1, 1, n_per_rank * 4 * 36, dtype=torch.float64).view(n_per_rank, 4, 6, 6)
    return one.repeat(n_ranks, 1, 1, 1)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason=CPU_REASON)
def test_syncbn_2_processes_match_plain_bn_on_concatenated_batch(tmp_path):
    res = _spawn(_numeric_worker, 2, tmp_path, None, 3)
    ref = _reference(_batch(6), _weights(3, 2))
    for r in res:
        torch.testing.assert_close(r["mean"], ref["mean"], atol=1e-5, rtol=0)
        torch.testing.assert_close(r["var"], ref["var"], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in res]), ref["x_grad"], atol=1e-5, rtol=0)
    for k in ("conv_grad", "w_grad", "b_grad"):  # each rank holds its share; DDP would all-reduce
        torch.testing.assert_close(res[0][k] + res[1][k], ref[k], atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason=CPU_REASON)
def test_syncbn_group_size_2_of_4_processes(tmp_path):
    res = _spawn(_numeric_worker, 4, tmp_path, 2, 2)
    x = _batch(8)
    halves = [_reference(x[:4], _weights(2, 2)), _reference(x[4:], _weights(2, 2))]
    for rank, r in enumerate(res):
        ref = halves[rank // 2]
        torch.testing.assert_close(r["mean"], ref["mean"], atol=1e-5, rtol=0)
        torch.testing.assert_close(r["var"], ref["var"], atol=1e-5, rtol=0)
    assert not torch.allclose(res[0]["mean"], res[2]["mean"], atol=1e-3)
    for g, ref in enumerate(halves):
        torch.testing.assert_close(torch.cat([res[2 * g]["x_grad"], res[2 * g + 1]["x_grad"]]),
                                   ref["x_grad"], atol=1e-5, rtol=0)
