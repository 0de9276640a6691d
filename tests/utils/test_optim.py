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
