"""gluon_bof/nn/grad_checkpoint.py: checkpointed backbone stages give the plain model's outputs,
gradients and BatchNorm statistics (plain autograd is the reference), and keep the state dict."""
import copy

import pytest
import torch

from gluon_bof import model_zoo
from gluon_bof.nn.grad_checkpoint import backbone_stages, is_checkpointed, set_grad_checkpointing


def _labels(b, size):
    rows = torch.tensor([[4, 6, size // 2, size // 2 + 4, 0, 1.0], [size // 3, 2, size - 3, size - 9, 1, 1.0]])
    labels = rows.expand(b, 2, 6).clone()
    labels[-1] = -1  # an image without boxes
    return labels


def _compare(plain, x, labels, seed=0):
    """Runs ``plain`` and a checkpointed copy on the same step; asserts equal losses, gradients and
    buffers (BatchNorm running statistics are updated once, not again by the recomputation)."""
    ckpt = set_grad_checkpointing(copy.deepcopy(plain))
    results = []
    for net in (plain, ckpt):
        torch.manual_seed(seed)  # Faster R-CNN samples anchors and RoIs from the global generator
        losses = net.train()(x, labels)
        sum(v for k, v in losses.items() if k.endswith("loss")).backward()
        results.append((losses, dict(net.named_parameters()), dict(net.named_buffers())))
    (l0, p0, b0), (l1, p1, b1) = results
    for k in l0:
        torch.testing.assert_close(l1[k], l0[k], rtol=0, atol=1e-6)
    graded = [k for k, p in p0.items() if p.grad is not None]
    assert graded
    for k in graded:
        torch.testing.assert_close(p1[k].grad, p0[k].grad, rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    for k, v in b0.items():
        torch.testing.assert_close(b1[k], v, rtol=0, atol=1e-7, msg=lambda m, k=k: f"{k}: {m}")
    return ckpt


@pytest.mark.parametrize("name,kwargs", [
    ("yolo3_mobilenet0.25_custom", dict(channels=[16, 8, 8])),
    ("yolo3_darknet53_custom", dict(channels=[32, 16, 16])),
])
def test_yolo3_stages_match_plain(name, kwargs):
    torch.manual_seed(0)
    net = model_zoo.get_model(name, classes=["a", "b"], **kwargs)
    ckpt = _compare(net, torch.randn(3, 3, 64, 64), _labels(3, 64))
    assert [is_checkpointed(s) for s in ckpt.stages] == [True, True, True]
    assert list(ckpt.state_dict()) == list(net.state_dict())  # checkpoints stay interchangeable
    ckpt.eval()
    with torch.no_grad():  # eval: the plain forward, same detections
        for a, b in zip(ckpt(torch.ones(1, 3, 64, 64)), net.eval()(torch.ones(1, 3, 64, 64))):
            torch.testing.assert_close(a, b)


def test_faster_rcnn_resnet_layers_match_plain():
    torch.manual_seed(0)
    net = model_zoo.get_model("faster_rcnn_resnet50_v1b_custom", classes=["a", "b"], norm_layer=torch.nn.BatchNorm2d,
                              short=64, max_size=96, scales=(2, 4), roi_size=(4, 4), num_sample=16,
                              rpn_test_post_nms=16)
    assert [len(s) for s in backbone_stages(net)] == [3, 4, 6, 3]  # layer1..layer4 (C4: layer4 on the RoIs)
    _compare(net, torch.randn(2, 3, 64, 96), _labels(2, 64))


def test_switching_off_restores_the_plain_forward():
    net = model_zoo.get_model("yolo3_mobilenet0.25_custom", classes=["a"], channels=[8, 8, 8])
    set_grad_checkpointing(net)
    set_grad_checkpointing(net, enable=False)
    assert not any(is_checkpointed(s) for s in net.stages)
    assert all("forward" not in s.__dict__ for s in net.stages)


def test_model_that_declares_no_stages_is_an_error():
    with pytest.raises(ValueError, match="Linear declares no stages to checkpoint"):
        set_grad_checkpointing(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", ["resnet18_v1", "resnet18_v1b"])
def test_classifiers_declare_their_four_stages_and_train_alike(name):
    """ResNet-A (v1) and v1b classifiers declare their 4 residual stages; checkpointed, a training
    step gives the plain model's loss, gradients and BatchNorm statistics."""
    torch.manual_seed(0)
    plain = model_zoo.get_model(name, classes=3)
    assert len(backbone_stages(plain)) == 4
    ckpt = set_grad_checkpointing(copy.deepcopy(plain))
    x = torch.randn(2, 3, 32, 32)
    for net in (plain, ckpt):
        net.train()(x).square().mean().backward()
    for (k, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    for (k, b), c in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(c, b, rtol=0, atol=1e-7, msg=lambda m, k=k: f"{k}: {m}")
