"""bn_groups (gluon_bof/utils/distributed.py) and convert_sync_batchnorm (gluon_bof/nn/sync_bn.py):
MegDet group BN.

Multi-process checks spawn gloo processes on this machine (torch.multiprocessing.spawn); one spawn of
4 processes runs every check of convert_sync_batchnorm. The layer itself (CrossGPUBatchNorm2d, uneven
and empty batches, the running-variance rules, eval mode) is tested in tests/nn/test_sync_bn.py.
"""
import logging
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gluon_bof.nn.sync_bn import convert_sync_batchnorm
from gluon_bof.utils.distributed import bn_groups


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world_size, port, fn, out_dir, args, backend):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        torch.save(fn(rank, world_size, *args), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _spawn(fn, world_size, tmp_path, *args, backend="gloo"):
    """Runs ``fn(rank, world_size, *args)`` in ``world_size`` processes of a ``backend`` process
    group (gloo; NCCL: rank r on cuda:r); returns their results."""
    mp.spawn(_entry, args=(world_size, _free_port(), fn, str(tmp_path), args, backend), nprocs=world_size)
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
    out["numeric_world"] = _numeric(rank, world_size, None, 2)
    out["numeric_groups"] = _numeric(rank, world_size, 2, 2)
    return out


@pytest.fixture(scope="module")
def four_processes(tmp_path_factory):
    return _spawn(_groups_worker, 4, tmp_path_factory.mktemp("groups"))


def test_group_construction_4_processes(four_processes):
    for rank, r in enumerate(four_processes):
        assert "group size 3 does not divide world size 4" in r["bad_group_error"]
        assert r["group1_unchanged"]
        assert r["world_pg"] is None  # None = default (world) group
        assert r["type"] == "CrossGPUBatchNorm2d"
        assert r["ranks"] == ([0, 1] if rank < 2 else [2, 3])
        assert r["group_sum"] == (0 + 1 if rank < 2 else 2 + 3)


def _numeric(rank, world_size, group_size, per_rank):
    """Trains one step of convert_sync_batchnorm(_net()) on this rank's ``per_rank`` images; torch's
    running-variance rule (unbiased), to compare with plain BatchNorm."""
    net = convert_sync_batchnorm(_net().double(), group_size=group_size, biased_running_var=False).train()
    x = _batch(per_rank * world_size)[rank * per_rank:(rank + 1) * per_rank].requires_grad_()
    out = net(x)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    bn = net[1]
    return {k: v.detach().clone() for k, v in dict(
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


def _close(a, b):
    torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_syncbn_4_processes_match_plain_bn_on_concatenated_batch(four_processes):
    res = [r["numeric_world"] for r in four_processes]
    ref = _reference(_batch(8), _weights(2, 4))
    for r in res:
        _close(r["mean"], ref["mean"])
        _close(r["var"], ref["var"])
    _close(torch.cat([r["x_grad"] for r in res]), ref["x_grad"])
    for k in ("conv_grad", "w_grad", "b_grad"):  # each rank holds its share; DDP would all-reduce
        _close(sum(r[k] for r in res), ref[k])


def test_syncbn_group_size_2_of_4_processes(four_processes):
    res = [r["numeric_groups"] for r in four_processes]
    x = _batch(8)
    halves = [_reference(x[:4], _weights(2, 2)), _reference(x[4:], _weights(2, 2))]
    for rank, r in enumerate(res):
        ref = halves[rank // 2]
        _close(r["mean"], ref["mean"])
        _close(r["var"], ref["var"])
    assert not torch.allclose(res[0]["mean"], res[2]["mean"], atol=1e-3)
    for g, ref in enumerate(halves):
        _close(torch.cat([res[2 * g]["x_grad"], res[2 * g + 1]["x_grad"]]), ref["x_grad"])
        for k in ("conv_grad", "w_grad", "b_grad"):
            _close(res[2 * g][k] + res[2 * g + 1][k], ref[k])
