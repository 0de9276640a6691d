"""Large mini-batch pieces (MegDet): the linear scaling rule (``utils.optim.linear_scaled_lr``
through ``fit.build_optimizer_and_schedule``) and the batch arithmetic of ``fit.start_run``
(--batch-size = global batch of one update). Gradient accumulation: tests/utils/test_distributed_ddp.py."""
import pytest
import torch

from gluon_bof.errors import ConfigError
from gluon_bof.fit import build_optimizer_and_schedule, start_run
from gluon_bof.utils.optim import linear_scaled_lr


def test_linear_scaling_rule():
    assert linear_scaled_lr(0.001, 64, 16) == pytest.approx(0.004)
    assert linear_scaled_lr(0.02, 8, 16) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        linear_scaled_lr(0.1, 0, 16)


def test_optimizer_sees_the_scaled_lr():
    net = torch.nn.Linear(2, 2)
    kw = dict(momentum=0.9, wd=0.0, no_wd=False, iters_per_epoch=10, mode="step", epochs=2)
    opt, _ = build_optimizer_and_schedule(net, lr=0.01, batch_size=64, lr_base_batch=16, **kw)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.04)
    opt, _ = build_optimizer_and_schedule(net, lr=0.01, batch_size=64, **kw)  # default: --lr is for the batch
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    # warmup from a fraction of the lr (Faster R-CNN's): the fraction of the scaled lr
    opt, sched = build_optimizer_and_schedule(net, lr=0.01, batch_size=32, lr_base_batch=16, first_update=0,
                                              warmup_iters=5, warmup_factor=1 / 3, **kw)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02 / 3)
    for _ in range(4):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02)


def test_start_run_checks_batch_divides_into_processes_and_micro_batches(tmp_path):
    kw = dict(save_prefix=str(tmp_path / "run"), rank=0, seed=0, settings={})
    assert start_run(world_size=4, batch_size=32, accumulate=2, **kw) == 8  # per process per update
    with pytest.raises(ConfigError, match="--batch-size 24 does not split over 4 processes x --accumulate 4"):
        start_run(world_size=4, batch_size=24, accumulate=4, **kw)
    with pytest.raises(ConfigError, match="--batch-size 6 does not split over 4 processes [(]"):
        start_run(world_size=4, batch_size=6, **kw)
