"""Every registered model (gluon_bof/model_zoo/registry.py): it builds, runs forward in eval mode
and forward + backward in train mode on a tiny input, with finite outputs of the documented
shapes (each family file's docstring) and finite gradients for every trainable parameter.

A family is known by a row of ``FAMILIES`` (name pattern, kind, input ``(B, H, W)``); a name no
row matches fails ``test_every_name_has_a_family`` unless ``PENDING`` lists its family with the
reason, so a new family is added here on purpose. ``*_custom`` builders get ``classes=['a',
'b']``. ``SLOW`` marks the 101/152-layer models and the variants whose builder a fast row already
runs.
"""
import re
from typing import NamedTuple, Optional, Tuple

import pytest
import torch
from torch.nn import functional as F

from gluon_bof.model_zoo import get_model, list_models


class Family(NamedTuple):
    pattern: str                  # re.fullmatch against the registered name
    kind: str                     # 'classifier' | 'yolo3' | 'rcnn' | 'segmentation': which checks run
    shape: Tuple[int, int, int]   # input (B, H, W)
    kwargs: Optional[dict] = None  # builder options that keep the run small


# Faster R-CNN: few proposals and RoIs (the C4 head runs ResNet's layer4 on every RoI: GluonCV's
# 1000 test proposals cost ~1 TFLOP here)
SMALL_RCNN = dict(rpn_train_pre_nms=256, rpn_train_post_nms=64, rpn_test_pre_nms=256,
                  rpn_test_post_nms=8, num_sample=8)
FAMILIES = (
    Family(r"faster_rcnn_.+", "rcnn", (2, 96, 96), SMALL_RCNN),
    Family(r"yolo3_.+", "yolo3", (2, 64, 64)),       # H, W multiples of 32
    Family(r"inceptionv3", "classifier", (2, 75, 75)),  # its smallest input
    Family(r"resnet\d+_v1[bcdes]?|mobilenet[\d.]+|darknet53", "classifier", (2, 32, 32)),
    Family(r"fcn_.+", "segmentation", (2, 40, 48)),   # output stride 8; logits resized to the input
)
# families registered but not yet described here: {name prefix: why}
PENDING = {}
# slow: 101/152-layer backbones, and variants whose builder a fast row already runs (another
# dataset's classes and settings, or a sibling ResNet stem), to keep the default run near a minute
SLOW = re.compile(r".*(101|152).*|resnet50_v1[ces]?|yolo3_(darknet53|mobilenet1\.0)_(coco|custom)"
                  r"|faster_rcnn_resnet50_v1b_voc|faster_rcnn_fpn_resnet50_v1b_(voc|custom)")
CUSTOM = {"classes": ["a", "b"]}
# [B, M, 6] = xmin, ymin, xmax, ymax, class, mix weight in input pixels; -1 rows pad
DETECTOR_LABELS = torch.tensor([[[8.0, 10, 40, 50, 1, 1.0], [20, 16, 60, 62, 0, 0.7]],
                                [[5.0, 5, 30, 28, 0, 1.0], [-1, -1, -1, -1, -1, -1]]])


def _family(name):
    return next((f for f in FAMILIES if re.fullmatch(f.pattern, name)), None)


def _pending(name):
    return next((why for prefix, why in PENDING.items() if name.startswith(prefix)), None)


def _params():
    out = []
    for name in list_models():
        marks = [pytest.mark.slow] if SLOW.fullmatch(name) else []
        if _family(name) is None and _pending(name):
            marks.append(pytest.mark.skip(reason=_pending(name)))
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def test_every_name_has_a_family():
    unknown = [n for n in list_models() if _family(n) is None and _pending(n) is None]
    assert not unknown, f"registered models of no family in FAMILIES or PENDING: {unknown}"
    described = [p for p in PENDING if any(_family(n) for n in list_models() if n.startswith(p))]
    assert not described, f"PENDING families now in FAMILIES, remove them from PENDING: {described}"


def _build(name):
    torch.manual_seed(0)
    kwargs = dict(_family(name).kwargs or {}, **(CUSTOM if name.endswith("_custom") else {}))
    return get_model(name, **kwargs)


def _labels(b, h, w):
    labels = DETECTOR_LABELS[:b].clone()
    labels[..., :4] = labels[..., :4].clamp(max=min(h, w) - 1)
    return labels


def _check_grads(net):
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [n for n, p in trainable if p.grad is None]
    assert not no_grad, f"trainable parameters the loss does not reach: {no_grad[:5]}"
    bad = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"


def _check_detections(net, out, b):
    ids, scores, bboxes = out
    k = ids.shape[1]
    assert ids.shape == (b, k, 1) and scores.shape == (b, k, 1) and bboxes.shape == (b, k, 4)
    for t in out:
        assert torch.isfinite(t).all()
    valid = ids[..., 0] >= 0
    assert (ids[valid] < net.num_class).all()
    assert (scores[~valid] == -1).all()
    return k


@pytest.mark.parametrize("name", _params())
def test_builds_runs_eval_and_trains(name):
    family = _family(name)
    b, h, w = family.shape
    net = _build(name)
    x = torch.randn(b, 3, h, w)
    net.eval()
    with torch.no_grad():
        out = net(x)
    if family.kind == "classifier":
        classes = 2 if name.endswith("_custom") else 1000
        assert out.shape == (b, classes) and torch.isfinite(out).all()
    elif family.kind == "segmentation":  # (main, aux) logits [B, nclass, H, W]
        assert len(out) == 2 and all(o.shape == (b, net.nclass, h, w) and torch.isfinite(o).all() for o in out)
    elif family.kind == "yolo3":
        assert _check_detections(net, out, b) == 100  # post_nms
    else:  # Faster R-CNN: post_nms rows, or every (proposal, class) with post_nms -1
        k = _check_detections(net, out, b)
        if net.post_nms > 0:
            assert k == net.post_nms
        else:
            assert k % net.num_class == 0 and 0 < k // net.num_class <= net.rpn.test_post_nms

    net.train()
    if family.kind == "classifier":
        loss = F.cross_entropy(net(x), torch.arange(b) % 2)
        assert torch.isfinite(loss)
    elif family.kind == "segmentation":  # masks [B, H, W], -1 ignored
        losses = net(x, torch.arange(b * h * w).reshape(b, h, w) % (net.nclass + 1) - 1)
        assert sorted(losses) == ["aux_loss", "loss"] and all(torch.isfinite(v) for v in losses.values())
        loss = sum(losses.values())
    else:
        out = net(x, _labels(b, h, w))  # scalars; keys not ending in 'loss' are statistics
        losses = {k: v for k, v in out.items() if k.endswith("loss")}
        names = (["center_loss", "cls_loss", "obj_loss", "scale_loss"] if family.kind == "yolo3"
                 else ["rcnn_box_loss", "rcnn_cls_loss", "rpn_box_loss", "rpn_obj_loss"])
        assert sorted(losses) == names
        assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
        loss = sum(losses.values())
    loss.backward()
    _check_grads(net)
