import torch.nn as nn

from gluon_bof.utils.optim import param_groups


def test_no_wd_groups_are_exactly_biases_and_norm_parameters():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 5, 1), nn.Linear(5, 2))
    groups = param_groups(net, 5e-4, no_wd=True)
    decay, no_decay = groups
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    # decayed: conv0.weight, conv2.weight, linear.weight; not: bn weight/bias, conv2.bias, linear.bias
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[2].weight), id(net[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(net[1].weight), id(net[1].bias), id(net[2].bias),
                                                   id(net[3].bias)}


def test_without_no_wd_everything_decays():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    groups = param_groups(net, 1e-4)
    assert len(groups) == 1 and len(groups[0]["params"]) == 4


# --- MXNetSGD: MXNet 1.9.1's SGD and NAG updates (fixture: tests/fixtures/gen_optim.py) ---

import os  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gluon_bof.utils.optim import MXNetSGD, build_sgd  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "optim.npz")


def _run(fx, nesterov, foreach=True, opt_cls=MXNetSGD):
    w = torch.nn.Parameter(torch.from_numpy(fx["w0"].copy()))
    b = torch.nn.Parameter(torch.from_numpy(fx["b0"].copy()))
    opt = opt_cls([{"params": [w], "weight_decay": float(fx["wd"])}, {"params": [b], "weight_decay": 0.0}],
                  lr=0.1, momentum=float(fx["momentum"]), nesterov=nesterov,
                  **({"foreach": foreach} if opt_cls is MXNetSGD else {}))
    out = []
    for k, lr in enumerate(fx["lrs"]):
        for g in opt.param_groups:
            g["lr"] = float(lr)
        w.grad = torch.from_numpy(fx["grads_w"][k].copy())
        b.grad = torch.from_numpy(fx["grads_b"][k].copy())
        opt.step()
        out.append((w.detach().numpy().copy(), b.detach().numpy().copy()))
    return out


@pytest.mark.parametrize("name", ["sgd", "nag"])
@pytest.mark.parametrize("foreach", [True, False])
def test_mxnet_sgd_equals_mxnet_update_for_update(name, foreach):
    """Eight updates across a warmup and a x0.1 decay equal gluon.Trainer's (MXNet 1.9.1) to float
    precision of MXNet's float32 operator arguments (lr, wd are float32 there: ~1e-8)."""
    fx = np.load(FIXTURE)
    for k, (w, b) in enumerate(_run(fx, nesterov=name == "nag", foreach=foreach), 1):
        np.testing.assert_allclose(w, fx[f"{name}_w{k}"], rtol=0, atol=1e-6, err_msg=f"{name} weight, update {k}")
        np.testing.assert_allclose(b, fx[f"{name}_b{k}"], rtol=0, atol=1e-6, err_msg=f"{name} bias, update {k}")


@pytest.mark.parametrize("name", ["sgd", "nag"])
def test_torch_sgd_is_not_mxnet_once_the_lr_changes(name):
    """The reason MXNetSGD exists: torch's SGD (lr outside the buffer) drifts from MXNet's updates
    as soon as the learning rate moves (here already during the warmup)."""
    fx = np.load(FIXTURE)
    w, _ = _run(fx, nesterov=name == "nag", opt_cls=torch.optim.SGD)[-1]
    assert np.abs(w - fx[f"{name}_w8"]).max() > 1e-2


def test_mxnet_sgd_by_hand():
    """Two updates worked out by hand: v = .9 v - lr (g + wd w); w += v (lr .5 then .1)."""
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = MXNetSGD([w], lr=0.5, momentum=0.9, weight_decay=0.1)
    w.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()  # v = -.5 * (2 + .1) = -1.05; w = -0.05
    assert w.item() == pytest.approx(-0.05)
    opt.param_groups[0]["lr"] = 0.1
    w.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()  # v = .9 * -1.05 - .1 * (1 - .005) = -1.0445; w = -1.0945
    assert w.item() == pytest.approx(-1.0945)
    assert opt.state[w]["momentum_buffer"].item() == pytest.approx(-1.0445)


def test_mxnet_sgd_works_with_the_grad_scaler_and_resumes_exactly():
    """GradScaler unscales then steps: the result equals the unscaled step; a state_dict round trip
    mid-run continues exactly."""
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    ref = torch.nn.Linear(4, 2)
    ref.load_state_dict(net.state_dict())
    x = torch.randn(8, 4)
    opt = MXNetSGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt_ref = MXNetSGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for step in range(3):
        opt.zero_grad()
        scaler.scale(net(x).square().sum()).backward()
        scaler.step(opt)
        scaler.update()
        opt_ref.zero_grad()
        ref(x).square().sum().backward()
        opt_ref.step()
        if step == 1:  # resume opt_ref from a copy of its state
            state = opt_ref.state_dict()
            opt_ref = MXNetSGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
            opt_ref.load_state_dict(state)
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_build_sgd_rules():
    p = [torch.nn.Parameter(torch.zeros(1))]
    assert isinstance(build_sgd(p, lr=0.1, momentum=0.9, rule="mxnet"), MXNetSGD)
    assert type(build_sgd(p, lr=0.1, momentum=0.9, rule="torch")) is torch.optim.SGD
    with pytest.raises(ValueError, match="unknown SGD rule"):
        build_sgd(p, lr=0.1, momentum=0.9, rule="adam")
