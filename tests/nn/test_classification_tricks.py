"""The Bag of Tricks' classification tricks against their formulas (gluon_bof/nn/classification.py),
plus the optimizer side (NAG, no-wd groups per model, warmup + cosine with the linear scaling rule)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from gluon_bof.classification import ClassifierWithLoss
from gluon_bof.fit import build_optimizer_and_schedule
from gluon_bof.model_zoo import get_model
from gluon_bof.nn.classification import (distillation_loss, init_weights, mixup, smooth_targets,
                                         soft_cross_entropy)


def test_smoothed_targets_paper_and_gluoncv():
    labels = torch.tensor([2, 0])
    paper = smooth_targets(labels, 4, 0.1, "paper")  # Eq. 4: 1 - eps, eps / (K - 1)
    torch.testing.assert_close(paper, torch.tensor([[0.1 / 3, 0.1 / 3, 0.9, 0.1 / 3],
                                                    [0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3]]))
    gcv = smooth_targets(labels, 4, 0.1, "gluoncv")  # one_hot(on=1-eps+eps/K, off=eps/K)
    torch.testing.assert_close(gcv, torch.tensor([[0.025, 0.025, 0.925, 0.025],
                                                  [0.925, 0.025, 0.025, 0.025]]))
    torch.testing.assert_close(smooth_targets(labels, 4, 0.0), torch.eye(4)[[2, 0]])
    one = smooth_targets(torch.tensor([0]), 1, 0.1)  # a single class: all mass on it
    torch.testing.assert_close(one, torch.tensor([[0.9]]))
    with pytest.raises(ValueError, match="labels"):
        smooth_targets(torch.tensor([4]), 4, 0.1)


def test_mixup_uses_the_reversed_batch():
    images = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 3, 2, 2)
    targets = torch.eye(3)
    x, y = mixup(images, targets, 0.7)
    # sample b is mixed with sample B-1-b: 0 <-> 2, 1 with itself
    torch.testing.assert_close(x[:, 0, 0, 0], torch.tensor([0.7 * 0 + 0.3 * 2, 1.0, 0.7 * 2 + 0.3 * 0]))
    torch.testing.assert_close(y, torch.tensor([[0.7, 0, 0.3], [0, 1.0, 0], [0.3, 0, 0.7]]))
    same_x, same_y = mixup(images, targets, 1.0)
    assert same_x is images and same_y is targets


def _np_log_softmax(z):
    z = np.asarray(z, np.float64)
    return z - z.max() - np.log(np.exp(z - z.max()).sum())


def test_soft_cross_entropy_by_hand():
    logits = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([[0.2, 0.8, 0.0], [1.0, 0.0, 0.0]])
    row0 = -(0.2 * _np_log_softmax([1, 2, 0])[0] + 0.8 * _np_log_softmax([1, 2, 0])[1])
    row1 = math.log(3.0)
    assert soft_cross_entropy(logits, targets).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_distillation_loss_three_classes_by_hand():
    z, r, p, t = [1.0, 2.0, 0.0], [0.5, 0.0, 1.5], [0.0, 1.0, 0.0], 2.0
    hard = -_np_log_softmax(z)[1]  # CE(p, softmax(z))
    q = np.exp(_np_log_softmax(np.array(r) / t))  # softmax(r / T)
    soft = -(q * _np_log_softmax(np.array(z) / t)).sum()  # CE(softmax(r/T), softmax(z/T))
    args = torch.tensor([z]), torch.tensor([p]), torch.tensor([r])
    gcv = distillation_loss(*args, temperature=t, hard_weight=0.3, mode="gluoncv")
    assert gcv["hard_loss"].item() == pytest.approx(0.3 * hard, rel=1e-6)
    assert gcv["soft_loss"].item() == pytest.approx(0.7 * t * t * soft, rel=1e-6)
    paper = distillation_loss(*args, temperature=t, mode="paper")  # Eq. 6
    assert sum(paper.values()).item() == pytest.approx(hard + t * t * soft, rel=1e-6)


def test_wrapper_returns_the_losses_and_saves_only_the_student():
    torch.manual_seed(0)
    student, teacher = nn.Linear(4, 3), nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.softmax(torch.randn(5, 3), 1)
    plain = ClassifierWithLoss(student)
    assert plain(x, y)["loss"].item() == pytest.approx(soft_cross_entropy(student(x), y).item())
    torch.testing.assert_close(plain(x), student(x))
    kd = ClassifierWithLoss(student, teacher, temperature=3.0, hard_weight=0.5)
    expected = distillation_loss(student(x), y, teacher(x), temperature=3.0, hard_weight=0.5)
    got = kd(x, y)
    assert set(got) == {"hard_loss", "soft_loss"}
    assert sum(got.values()).item() == pytest.approx(sum(expected.values()).item(), rel=1e-6)
    assert set(kd.state_dict()) == {"weight", "bias"}  # the bare student's keys
    assert [p.data_ptr() for p in kd.parameters()] == [p.data_ptr() for p in student.parameters()]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_xavier_and_msra_init_scales():
    torch.manual_seed(0)
    conv, fc = nn.Conv2d(64, 128, 3), nn.Linear(512, 1000)
    init_weights(nn.Sequential(conv, fc), "xavier")
    a = math.sqrt(6 / (64 * 9 + 128 * 9))  # fan_in = 64*3*3, fan_out = 128*3*3
    assert conv.weight.abs().max() <= a and conv.weight.abs().max() > 0.99 * a
    assert conv.weight.std().item() == pytest.approx(a / math.sqrt(3), rel=0.02)
    assert not conv.bias.any() and not fc.bias.any()
    init_weights(fc, "msra")  # MSRAPrelu: N(0, sqrt(m / ((fan_in + fan_out) / 2))), m = 2 / (1 + 0.25^2)
    assert fc.weight.std().item() == pytest.approx(math.sqrt(2 / 1.0625 / 756), rel=0.02)


def test_nag_warmup_and_cosine_with_linear_scaling():
    net = nn.Linear(2, 2)
    opt, sched = build_optimizer_and_schedule(
        net, lr=0.4, momentum=0.9, wd=1e-4, no_wd=False, nesterov=True, iters_per_epoch=10, batch_size=64,
        lr_base_batch=256, mode="cosine", epochs=10, warmup_epochs=1, warmup_lr=0.0)
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    base, warm, total = 0.4 * 64 / 256, 10, 100  # linear scaling rule: 0.1
    n = total - warm - 1

    def expected(it):  # warmup from 0 reaching base at it = W - 1, then cosine to 0 over N iterations
        return base * it / (warm - 1) if it < warm else base * (1 + math.cos(math.pi * (it - warm) / n)) / 2

    seen = {}
    for update in range(1, total + 1):  # the n-th update uses iteration n (MXNet's Trainer)
        seen[update] = opt.param_groups[0]["lr"]
        sched.step()
    for it in (1, 5, 9, 10, 40, 54, 99, 100):
        assert seen[it] == pytest.approx(expected(min(it, total - 1)), abs=1e-12), it
    assert seen[54] == pytest.approx(base * (1 + math.cos(math.pi * 44 / 89)) / 2)


# (model, decayed tensors = conv + linear weights, not decayed = 2 per BatchNorm + classifier bias)
NO_WD_COUNTS = [("mobilenet0.25", 27 + 1, 2 * 27 + 1),
                ("resnet18_v1b", 20 + 1, 2 * 20 + 1),  # 1 stem + 16 block + 3 shortcut convs
                ("resnet50_v1d", 55 + 1, 2 * 55 + 1),  # 3 stem + 48 block + 4 shortcut convs
                ("darknet53", 52 + 1, 2 * 52 + 1)]     # 1 + 5 downsampling + 2 x 23 block convs


@pytest.mark.parametrize("name,decayed,free", NO_WD_COUNTS)
def test_no_wd_groups_are_biases_and_bn_per_model(name, decayed, free):
    net = get_model(name, classes=7)
    opt, _ = build_optimizer_and_schedule(ClassifierWithLoss(net), lr=0.1, momentum=0.9, wd=1e-4, no_wd=True,
                                          iters_per_epoch=1, epochs=1, mode="constant")
    decay, no_decay = opt.param_groups
    assert (len(decay["params"]), len(no_decay["params"])) == (decayed, free)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert sum(p.numel() for p in no_decay["params"]) == sum(2 * m.num_features for m in bn) + 7
    assert all(p.dim() == 4 or p.dim() == 2 for p in decay["params"])


@pytest.mark.parametrize("name", ["resnet18_v1b", "resnet50_v1d"])
def test_zero_gamma_blocks_are_identities_on_post_relu_input(name):
    """--last-gamma: every fresh residual block without a projection returns its input unchanged
    (its input is the previous ReLU's output, >= 0, so relu(0 + x) = x)."""
    from gluon_bof.model_zoo.resnetv1b import BasicBlockV1b, BottleneckV1b

    net = init_weights(get_model(name, classes=5, last_gamma=True), "xavier").train()
    blocks = [m for m in net.modules() if isinstance(m, (BasicBlockV1b, BottleneckV1b)) and m.downsample is None]
    assert len(blocks) == (5 if name == "resnet18_v1b" else 12)  # [2,2,2,2] / [3,4,6,3] minus projections
    torch.manual_seed(0)
    for blk in blocks:
        x = torch.relu(torch.randn(2, blk.conv1.in_channels, 6, 6))
        assert torch.equal(blk(x), x)


def test_losses_keep_float64_and_upcast_half_precision():
    """A float64 network's loss stays float64 (it was computed in float32, so float64 training
    compared with GluonCV's --dtype float64 at float32 noise); autocast's half logits go to float32."""
    z = torch.tensor([[1.0, 2.0, 1e-9]], dtype=torch.float64)
    y = torch.tensor([[0.0, 1.0, 0.0]])
    exact = -_np_log_softmax([1.0, 2.0, 1e-9])[1]
    loss = soft_cross_entropy(z, y)
    assert loss.dtype == torch.float64 and loss.item() == pytest.approx(exact, rel=1e-15)
    kd = distillation_loss(z, y, z * 2, temperature=3.0, hard_weight=0.5, mode="gluoncv")
    assert all(v.dtype == torch.float64 for v in kd.values())
    for dtype in (torch.float16, torch.bfloat16):
        assert soft_cross_entropy(z.to(dtype), y).dtype == torch.float32
        assert all(v.dtype == torch.float32 for v in distillation_loss(z.to(dtype), y, z.to(dtype)).values())
