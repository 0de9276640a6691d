"""BatchNorm2d with MXNet's running-variance rule, and set_running_var_rule."""
import os

import numpy as np
import pytest
import torch
from torch import nn

from gluon_bof.nn.norm import BatchNorm2d, FrozenBatchNorm2d, set_running_var_rule

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "batchnorm.npz")


def test_running_statistics_equal_mxnet_batchnorm():
    """Two training steps in float64 against gluon.nn.BatchNorm (MXNet 1.9.1, fixture). MXNet holds
    the momentum 0.9 as a float32 operator argument (0.89999998): 2.4e-7 relative, hence 1e-6; the
    unbiased rule is 1/(N-1) = 2.6e-2 away here."""
    fx = np.load(FIXTURE)
    bn = BatchNorm2d(3).double().train()
    for k in (1, 2):
        bn(torch.from_numpy(fx[f"x{k}"]))
        np.testing.assert_allclose(bn.running_mean.numpy(), fx[f"mean{k}"], rtol=1e-6)
        np.testing.assert_allclose(bn.running_var.numpy(), fx[f"var{k}"], rtol=1e-6)


def test_biased_and_unbiased_rules_by_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64) * 3 + 1
    n = 2 * 4 * 4
    biased = BatchNorm2d(3, momentum=0.25).double()
    unbiased = BatchNorm2d(3, momentum=0.25, biased_running_var=False).double()
    ref = nn.BatchNorm2d(3, momentum=0.25).double()
    yb, yu, yr = biased(x), unbiased(x), ref(x)
    var_n = x.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(biased.running_var, 0.75 + 0.25 * var_n)
    torch.testing.assert_close(unbiased.running_var, 0.75 + 0.25 * var_n * n / (n - 1))
    torch.testing.assert_close(unbiased.running_var, ref.running_var)
    torch.testing.assert_close(biased.running_mean, 0.25 * x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(yb, yr)  # outputs normalise with the biased variance either way
    torch.testing.assert_close(yu, yr)
    assert int(biased.num_batches_tracked) == 1


def test_gradients_equal_torch_batchnorm_and_momentum_none_is_a_cumulative_average():
    torch.manual_seed(1)
    xs = [torch.randn(3, 2, 5, 5, dtype=torch.float64) for _ in range(3)]
    bn = BatchNorm2d(2, momentum=None).double()
    ref = nn.BatchNorm2d(2).double()
    ref.load_state_dict(bn.state_dict())
    for x in xs:
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        (bn(a) * torch.arange(50.0, dtype=torch.float64).reshape(1, 1, 5, 10)[..., :5]).sum().backward()
        (ref(b) * torch.arange(50.0, dtype=torch.float64).reshape(1, 1, 5, 10)[..., :5]).sum().backward()
        torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(bn.weight.grad, ref.weight.grad)
    expected = torch.stack([x.var(dim=(0, 2, 3), unbiased=False) for x in xs]).mean(0)
    torch.testing.assert_close(bn.running_var, expected)


def test_eval_mode_uses_running_statistics():
    bn = BatchNorm2d(2).double()
    bn.running_mean.fill_(1.0)
    bn.running_var.fill_(4.0)
    bn.eval()
    x = torch.full((1, 2, 2, 2), 3.0, dtype=torch.float64)
    torch.testing.assert_close(bn(x), torch.full_like(x, 2.0 / (4.0 + 1e-5) ** 0.5))


def test_set_running_var_rule_converts_in_place_and_keeps_the_state_dict():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)),
                        FrozenBatchNorm2d(4))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    weight = net[1].weight
    out = set_running_var_rule(net, "biased")
    assert out is net and type(net[1]) is BatchNorm2d and type(net[2][0]) is BatchNorm2d
    assert type(net[3]) is FrozenBatchNorm2d
    assert net[1].weight is weight  # the same parameter: an optimizer built before still holds it
    assert net.state_dict().keys() == state.keys()
    set_running_var_rule(net, "unbiased")
    assert net[1].biased_running_var is False
    with pytest.raises(ValueError, match="unknown running-variance rule"):
        set_running_var_rule(net, "exact")
