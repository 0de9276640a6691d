"""FasterRCNN contracts (gluon_bof/model_zoo/rcnn/faster_rcnn.py, predefined.py) on a tiny
stand-in backbone, the zoo builders' GluonCV names, and an overfit check."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gluon_bof.model_zoo import rcnn  # noqa: F401  (registers the builders)
from gluon_bof.model_zoo.registry import get_model, list_models
from gluon_bof.model_zoo.gluoncv import gluoncv_state
from gluon_bof.model_zoo.rcnn import FasterRCNN, SampleDraws
from gluon_bof.nn.norm import FrozenBatchNorm2d

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NAMES = ("rpn_obj_loss", "rpn_box_loss", "rcnn_cls_loss", "rcnn_box_loss")


def tiny(classes=("a", "b", "c"), **kw):
    torch.manual_seed(0)

    def cbr(i, o, s):
        return [nn.Conv2d(i, o, 3, s, 1), nn.ReLU()]
    features = nn.Sequential(*cbr(3, 8, 2), *cbr(8, 16, 2), *cbr(16, 16, 2), *cbr(16, 32, 2))
    top = nn.Sequential(*cbr(32, 32, 2))
    opts = dict(rpn_channel=16, scales=(2, 4, 8), rpn_train_pre_nms=600, rpn_train_post_nms=200,
                rpn_test_pre_nms=300, rpn_test_post_nms=20, num_sample=32, rpn_num_sample=64,
                roi_size=(6, 6), post_nms=10)
    opts.update(kw)
    return FasterRCNN(features, top, list(classes), **opts)


LABELS = torch.tensor([[[10.0, 20, 70, 90, 1, 1.0], [60, 30, 120, 110, 2, 0.6]],
                       [[5.0, 5, 50, 40, 0, 1.0], [-1, -1, -1, -1, -1, -1]]])


def test_eval_contract():
    net = tiny().eval()
    with torch.no_grad():
        ids, scores, bboxes = net(torch.randn(2, 3, 128, 160))
    assert ids.shape == (2, 10, 1) and scores.shape == (2, 10, 1) and bboxes.shape == (2, 10, 4)
    valid = ids[..., 0] >= 0
    assert valid.any()
    assert ((ids[valid] >= 0) & (ids[valid] < 3)).all()
    assert (scores[valid] > 0.01).all() and (scores[~valid] == -1).all()
    s = scores[..., 0]
    for b in range(2):  # sorted by score
        v = s[b][valid[b]]
        assert (v[:-1] >= v[1:]).all()
    net.set_nms(post_nms=-1)
    with torch.no_grad():
        ids, _, _ = net(torch.randn(1, 3, 128, 160))
    assert ids.shape == (1, 20 * 3, 1)


def test_train_contract_backward_and_grads():
    net = tiny().train()
    losses = net(torch.randn(2, 3, 128, 160), LABELS)
    stats = {k: losses.pop(k) for k in ("rpn_pos", "rpn_neg", "rcnn_pos", "rcnn_neg")}  # sampler counts
    assert set(losses) == set(NAMES) and all(v >= 0 and not v.requires_grad for v in stats.values())
    for v in losses.values():
        assert v.dim() == 0 and torch.isfinite(v)
    sum(losses.values()).backward()
    for name in ("rpn.score.weight", "rpn.loc.weight", "class_predictor.weight",
                 "box_predictor.weight", "features.0.weight", "top_features.0.weight"):
        assert dict(net.named_parameters())[name].grad.abs().sum() > 0, name


def test_sample_draws_make_training_samples_repeatable():
    net = tiny().train()
    assert type(net.sample_draws) is SampleDraws  # torch's global RNG by default
    x = torch.randn(2, 3, 128, 160)
    runs = []
    for _ in range(2):
        net.sample_draws = SampleDraws(torch.Generator().manual_seed(5))
        runs.append({k: v.item() for k, v in net(x, LABELS).items()})
    assert runs[0] == runs[1]


def test_images_without_objects():
    net = tiny().train()
    empty = torch.full((2, 3, 6), -1.0)
    losses = net(torch.randn(2, 3, 96, 96), empty)
    assert losses["rpn_box_loss"].item() == 0 and losses["rcnn_box_loss"].item() == 0
    assert losses["rpn_obj_loss"].item() > 0 and losses["rcnn_cls_loss"].item() > 0
    # degenerate boxes are ignored like padding; labels with 5 columns work
    degen = torch.tensor([[[10.0, 10, 10, 50, 1]], [[20.0, 30, 60, 30, 0]]])
    losses = net(torch.randn(2, 3, 96, 96), degen)
    assert losses["rcnn_box_loss"].item() == 0


def test_padding_with_image_sizes():
    """Images of different sizes zero-padded into one batch: proposals are clipped to each
    real image, border anchors of each image are ignored, outputs keep the contract."""
    net = tiny(rpn_test_post_nms=1000).eval()
    padded = torch.zeros(2, 3, 128, 160)
    padded[0, :, :96, :112] = torch.randn(3, 96, 112)
    padded[1] = torch.randn(3, 128, 160)
    with torch.no_grad():
        ids, _, _ = net(padded, image_sizes=[(96, 112), (128, 160)])
        rois, _, valid = net.rpn(net.features(padded), [(96, 112), (128, 160)])[3]
    assert ids.shape == (2, 10, 1)
    assert rois[0][valid[0]][:, [0, 2]].max() <= 112 and rois[0][valid[0]][:, [1, 3]].max() <= 96
    assert rois[1][valid[1]][:, [0, 2]].max() > 112
    # anchors across the small image's border get no RPN target: the loss runs on both
    net.train()
    losses = net(padded, LABELS, image_sizes=torch.tensor([[96, 112], [128, 160]]))
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="image_sizes"):
        net(padded, LABELS, image_sizes=[(96, 112)])


def test_label_errors_name_the_file():
    net = tiny().train()
    with pytest.raises(ValueError, match="faster_rcnn.py: labels"):
        net(torch.randn(1, 3, 64, 64), torch.zeros(1, 4))


def test_reset_class_keeps_weights():
    net = tiny()
    old_cls = net.class_predictor.weight.detach().clone()
    old_box = net.box_predictor.weight.detach().clone()
    net.reset_class(["c", "x"], reuse_weights=["c"])
    assert net.num_class == 2 and net.class_predictor.out_features == 3
    torch.testing.assert_close(net.class_predictor.weight[0], old_cls[0])      # background
    torch.testing.assert_close(net.class_predictor.weight[1], old_cls[3])      # c: old 2 -> +1
    torch.testing.assert_close(net.box_predictor.weight[0:4], old_box[8:12])


def test_zoo_builders_and_gluoncv_names():
    for name in ("faster_rcnn_resnet50_v1b_voc", "faster_rcnn_resnet50_v1b_coco",
                 "faster_rcnn_resnet101_v1d_voc", "faster_rcnn_resnet101_v1d_coco",
                 "faster_rcnn_resnet50_v1b_custom", "faster_rcnn_resnet101_v1d_custom"):
        assert name in list_models()
    net = get_model("faster_rcnn_resnet50_v1b_voc")
    fx = np.load(FIXTURES / "rcnn_r50_voc.npz")
    names = [str(n) for n in fx["param_names"]]
    assert sorted(gluoncv_state(net)) == sorted(names)
    assert isinstance(net.features[1], FrozenBatchNorm2d)
    assert not net.features[0].weight.requires_grad            # GluonCV's train_patterns
    assert not any(p.requires_grad for p in net.features[4].parameters())
    assert net.features[5][0].conv1.weight.requires_grad
    assert net.rpn.anchor_generator.num_depth == 15 and net.rpn.test_post_nms == 300
    coco = get_model("faster_rcnn_resnet50_v1b_coco")
    assert (coco.num_class, coco.nms_thresh, coco.post_nms, coco.rpn.min_size,
            coco.rpn.test_post_nms, coco.rpn.clip) == (80, 0.5, -1, 1, 1000, 4.14)
    custom = get_model("faster_rcnn_resnet50_v1b_custom", classes=["x"], norm_layer=nn.BatchNorm2d)
    assert custom.num_class == 1 and custom.rpn.anchor_generator.num_depth == 9
    assert isinstance(custom.features[1], nn.BatchNorm2d)
    with pytest.raises(TypeError):
        get_model("faster_rcnn_resnet50_v1b_custom")


def test_overfit_two_images():
    """40 Adam steps on two 96x96 images: the summed loss falls (about 2.2 -> 0.9)."""
    torch.manual_seed(0)
    net = tiny(classes=("a", "b"), rpn_train_pre_nms=300, rpn_train_post_nms=100).train()
    x = torch.randn(2, 3, 96, 96)
    labels = torch.tensor([[[10.0, 12, 60, 72, 0, 1.0]], [[30.0, 20, 90, 80, 1, 1.0]]])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    hist = []
    for _ in range(40):
        total = sum(v for k, v in net(x, labels).items() if k.endswith("loss"))
        hist.append(total.item())
        opt.zero_grad()
        total.backward()
        opt.step()
    assert np.mean(hist[-5:]) < 0.6 * np.mean(hist[:5])


def test_pretrained_true_asks_the_store_for_the_zoo_name(tmp_path, monkeypatch):
    from gluon_bof.model_zoo.model_store import ModelStoreError

    monkeypatch.setenv("GLUON_BOF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", f"file://{tmp_path}/no-mirror/")
    # GluonCV's sha1 table: 447328d8... is faster_rcnn_resnet50_v1b_voc's published file
    with pytest.raises(ModelStoreError, match="faster_rcnn_resnet50_v1b_voc-447328d8"):
        get_model("faster_rcnn_resnet50_v1b_voc", pretrained=True)
