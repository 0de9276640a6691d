"""Tests for gluon_bof/utils/lr_scheduler.py: hand-computed values and GluonCV fixtures."""
import json
import os

import numpy as np
import pytest
import torch

from gluon_bof.errors import ConfigError
from gluon_bof.utils.lr_scheduler import LRScheduler, lr_at, plot_lr_schedule

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "lr.npz")
BASE = 1e-3


def test_warmup_from_zero_reaches_base_at_last_warmup_iteration():
    kw = dict(base_lr=BASE, mode="step", total_iters=100, warmup_iters=11)
    assert lr_at(0, **kw) == 0.0
    assert lr_at(5, **kw) == pytest.approx(BASE / 2)        # midpoint: 5 / (11 - 1)
    assert lr_at(10, **kw) == pytest.approx(BASE)
    assert lr_at(11, **kw) == pytest.approx(BASE)


def test_warmup_factor_and_warmup_lr():
    kw = dict(base_lr=BASE, mode="step", total_iters=100, warmup_iters=11)
    assert lr_at(0, warmup_factor=1 / 3, **kw) == pytest.approx(BASE / 3)
    assert lr_at(5, warmup_factor=1 / 3, **kw) == pytest.approx(BASE * 2 / 3)
    assert lr_at(5, warmup_lr=2e-4, **kw) == pytest.approx(6e-4)
    # warmup given in epochs: 2 epochs x 10 iterations
    assert lr_at(10, base_lr=BASE, epochs=5, iters_per_epoch=10, warmup_epochs=2) == \
        pytest.approx(BASE * 10 / 19)


def test_step_boundaries_fall_on_absolute_epochs_after_warmup():
    kw = dict(base_lr=BASE, mode="step", epochs=20, iters_per_epoch=10, warmup_epochs=2,
              step_epochs=(12, 16), step_factor=0.1)
    assert lr_at(19, **kw) == pytest.approx(BASE)
    assert lr_at(119, **kw) == pytest.approx(BASE)
    assert lr_at(120, **kw) == pytest.approx(BASE * 0.1)
    assert lr_at(159, **kw) == pytest.approx(BASE * 0.1)
    assert lr_at(160, **kw) == pytest.approx(BASE * 0.01)
    assert lr_at(10_000, **kw) == pytest.approx(BASE * 0.01)    # past the end: last value
    assert lr_at(125, **dict(kw, step_epochs=(), step_iters=(125,))) == pytest.approx(BASE * .1)


def test_cosine_poly_linear_midpoints_and_ends():
    # 20 warmup + 101 iterations: T = it - 20 over N = 100
    kw = dict(base_lr=BASE, total_iters=121, warmup_iters=20)
    assert lr_at(20, mode="cosine", **kw) == pytest.approx(BASE)
    assert lr_at(70, mode="cosine", **kw) == pytest.approx(BASE / 2)
    assert lr_at(95, mode="cosine", **kw) == pytest.approx(BASE * (1 + np.cos(.75 * np.pi)) / 2)
    assert lr_at(120, mode="cosine", **kw) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(70, mode="cosine", target_lr=1e-4, **kw) == pytest.approx(5.5e-4)
    assert lr_at(70, mode="poly", **kw) == pytest.approx(BASE * 0.25)            # power 2
    assert lr_at(70, mode="poly", power=0.9, **kw) == pytest.approx(BASE * 0.5 ** 0.9)
    assert lr_at(70, mode="linear", **kw) == pytest.approx(BASE / 2)
    assert lr_at(70, mode="constant", **kw) == pytest.approx(BASE)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        lr_at(0, base_lr=BASE, mode="exp", total_iters=10)
    with pytest.raises(ConfigError, match="10 updates in all leave none after its 10 warmup"):
        lr_at(0, base_lr=BASE, total_iters=10, warmup_iters=10)  # a user's schedule: one line, exit 2
    with pytest.raises(ValueError):
        lr_at(-1, base_lr=BASE, total_iters=10)
    with pytest.raises(ValueError, match="epochs"):
        lr_at(0, base_lr=BASE)


def test_matches_gluoncv_lrsequential_fixtures():
    data = np.load(FIXTURE)
    for k in range(int(data["num_configs"])):
        cfg = json.loads(str(data[f"cfg{k}"]))
        ours = [lr_at(int(it), **cfg) for it in data[f"iters{k}"]]
        np.testing.assert_allclose(ours, data[f"lrs{k}"], rtol=1e-12, atol=0,
                                   err_msg=json.dumps(cfg))


def _optimizer():
    w, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [w]}, {"params": [b], "lr_mult": 2.0}], lr=1.0,
                           momentum=0.9)


SCHED = dict(base_lr=BASE, mode="cosine", epochs=4, iters_per_epoch=5, warmup_epochs=1)


def test_scheduler_sets_group_lrs_like_mxnet_trainer():
    opt = _optimizer()
    sched = LRScheduler(opt, **SCHED)
    # the n-th update (n = 1, 2, ...) uses lr_at(n): warmup 5 iters -> 1/4 of base at n = 1
    assert sched.get_last_lr() == pytest.approx([BASE / 4, BASE / 2])
    for n in range(1, 12):
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_at(n, **SCHED))
        assert opt.param_groups[1]["lr"] == pytest.approx(2 * lr_at(n, **SCHED))
        opt.step()
        sched.step()
    torch_style = LRScheduler(_optimizer(), first_update=0, **SCHED)
    assert torch_style.get_last_lr() == [0.0, 0.0]


def test_scheduler_state_dict_resume_is_exact():
    opt = _optimizer()
    sched = LRScheduler(opt, **SCHED)
    for _ in range(7):
        sched.step()
    state = sched.state_dict()
    resumed = LRScheduler(_optimizer(), **SCHED)
    resumed.load_state_dict(state)
    assert resumed.num_update == 7
    assert resumed.get_last_lr() == sched.get_last_lr()
    sched.step()
    resumed.step()
    assert resumed.get_last_lr() == sched.get_last_lr()


def test_plot_lr_schedule_writes_png(tmp_path):
    path = plot_lr_schedule(dict(SCHED, mode="step", step_epochs=(3,)), 20,
                            str(tmp_path / "lr.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    path = plot_lr_schedule(lambda it: 0.1 * it, 10, str(tmp_path / "fn.png"))
    assert os.path.getsize(path) > 1000
