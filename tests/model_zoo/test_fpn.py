"""FPN Faster R-CNN (gluon_bof/model_zoo/rcnn/fpn.py, predefined.py): level assignment, FPN
maps, contracts on a tiny stand-in body, norm-layer selection, GluonCV's parameter names."""
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gluon_bof.model_zoo import rcnn  # noqa: F401  (registers the builders)
from gluon_bof.model_zoo.gluoncv import gluoncv_state
from gluon_bof.model_zoo.rcnn import (FasterRCNNFPN, FPNFeatureExpander, assign_levels,
                                      fpn_box_head)
from gluon_bof.model_zoo.rcnn.fpn_names import fpn_to_gluoncv
from gluon_bof.model_zoo.registry import get_model, list_models
from gluon_bof.nn.norm import FrozenBatchNorm2d

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NAMES = ("rpn_obj_loss", "rpn_box_loss", "rcnn_cls_loss", "rcnn_box_loss")
LABELS = torch.tensor([[[10.0, 20, 70, 90, 1, 1.0], [60, 30, 120, 110, 2, 0.6]],
                       [[5.0, 5, 50, 40, 0, 1.0], [-1, -1, -1, -1, -1, -1]]])


class TinyBody(nn.Module):
    """Four stride-2 3x3 convs after a stride-2 stem: C2..C5 at strides 4..32."""

    def __init__(self, channels=(8, 8, 8, 8)):
        super().__init__()
        chans = (8,) + tuple(channels)
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.stages = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1) for i in range(4))

    def forward(self, x):
        x = torch.relu(self.stem(x))
        outs = []
        for conv in self.stages:
            x = torch.relu(conv(x))
            outs.append(x)
        return outs


def tiny(classes=("a", "b", "c"), fpn_norm=None, head_norm=None, **kw):
    torch.manual_seed(0)
    features = FPNFeatureExpander(TinyBody(), [8, 8, 8, 8], 16, norm_layer=fpn_norm)
    head = fpn_box_head(16, (7, 7), hidden=32, norm_layer=head_norm)
    opts = dict(rpn_channel=16, rpn_train_pre_nms=600, rpn_train_post_nms=200,
                rpn_test_pre_nms=300, rpn_test_post_nms=20, num_sample=32, rpn_num_sample=64,
                post_nms=10, alloc_size=(64, 64), features_channels=16, top_channels=32)
    opts.update(kw)
    return FasterRCNNFPN(features, head, list(classes), **opts)


def test_assign_levels_hand_computed():
    # sqrt of the "+1" area: 10 -> 2 (clipped), 111 -> floor(2.987) = 2, 112 -> 3 (eps),
    # 56x224 -> 112 -> 3, 224 -> 4, 447 -> 4, 448 -> 5, 1000 -> 6.16 -> 5 (clipped)
    sides = [(10, 10), (111, 111), (112, 112), (56, 224), (224, 224), (447, 447), (448, 448),
             (1000, 1000)]
    rois = torch.tensor([[5.0, 7, 5 + w - 1, 7 + h - 1] for w, h in sides])
    assert assign_levels(rois).tolist() == [2, 2, 3, 3, 4, 4, 5, 5]
    assert assign_levels(rois, 2, 6).tolist()[-1] == 6


def test_fpn_maps_strides_and_top_down_sum():
    """Identity laterals and 3x3 convs (centre tap 1, bias 0): P5 = C5, P4 = C4 + up2(C5)
    cropped, ..., P6 = C5 subsampled by 2 (the stride-2 3x3 conv's centre tap)."""
    body = TinyBody((4, 4, 4, 4))
    fpn = FPNFeatureExpander(body, [4, 4, 4, 4], 4)
    with torch.no_grad():
        for name, m in fpn.named_children():
            if name.startswith("P"):
                m.weight.zero_()
                m.bias.zero_()
                k = m.kernel_size[0] // 2
                m.weight[:, :, k, k] = torch.eye(4)
        x = torch.randn(1, 3, 128, 144)
        c = body(x)
        p = fpn(x)
    assert [tuple(t.shape[-2:]) for t in p] == [(32, 36), (16, 18), (8, 9), (4, 5), (2, 3)]
    assert all(t.shape[:2] == (1, 4) for t in p)
    up = lambda t, h, w: t.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :h, :w]  # noqa
    p5 = c[3]
    p4 = c[2] + up(p5, 8, 9)
    p3 = c[1] + up(p4, 16, 18)
    p2 = c[0] + up(p3, 32, 36)
    for ours, ref in zip(p, [p2, p3, p4, p5, c[3][..., ::2, ::2]]):
        torch.testing.assert_close(ours, ref)
    fpn.p6_conv = False  # Detectron's P6: P5's output subsampled (kernel-1 max pool)
    with torch.no_grad():
        torch.testing.assert_close(fpn(x)[4], p5[..., ::2, ::2])


def test_eval_contract():
    net = tiny().eval()
    with torch.no_grad():
        ids, scores, bboxes = net(torch.randn(2, 3, 128, 128))
    assert ids.shape == (2, 10, 1) and scores.shape == (2, 10, 1) and bboxes.shape == (2, 10, 4)
    valid = ids[..., 0] >= 0
    assert valid.any() and ((ids[valid] >= 0) & (ids[valid] < 3)).all()
    assert (scores[valid] > 0.01).all() and (scores[~valid] == -1).all()
    for b in range(2):
        v = scores[b, :, 0][valid[b]]
        assert (v[:-1] >= v[1:]).all()
    # the RPN spans P2..P6: 3 anchors per location of 32^2 + 16^2 + 8^2 + 4^2 + 2^2 maps
    with torch.no_grad():
        anchors = net.rpn(net.features(torch.zeros(1, 3, 128, 128)), [(128, 128)])[0]
    assert anchors.shape == (3 * (1024 + 256 + 64 + 16 + 4), 4)
    parts = np.load(FIXTURES / "rcnn_parts.npz")  # GluonCV's FPN anchor generators (gen_rcnn.py)
    offsets = np.cumsum([0, 1024, 256, 64, 16])
    for stride, start in zip((4, 8, 16, 32, 64), offsets):
        np.testing.assert_allclose(anchors[3 * start:3 * start + 3].numpy(),
                                   parts[f"anchors_fpn{stride}"])


def test_train_contract_backward_and_empty_images():
    net = tiny().train()
    losses = net(torch.randn(2, 3, 128, 128), LABELS)
    stats = {k: losses.pop(k) for k in ("rpn_pos", "rpn_neg", "rcnn_pos", "rcnn_neg")}  # sampler counts
    assert set(losses) == set(NAMES) and all(v >= 0 and not v.requires_grad for v in stats.values())
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    params = dict(net.named_parameters())
    for name in ("rpn.rpn_head.score.weight", "rpn.rpn_head.loc.weight", "class_predictor.weight",
                 "box_predictor.weight", "box_features.0.weight", "features.P2_conv_lat.weight",
                 "features.P2_conv1.weight", "features.P5_conv_lat.weight",
                 "features.body.stem.weight"):  # (P4..P6 anchors all cross a 128 px border)
        assert params[name].grad.abs().sum() > 0, name
    empty = net(torch.randn(1, 3, 96, 96), torch.full((1, 2, 6), -1.0))
    assert empty["rpn_box_loss"].item() == 0 and empty["rcnn_box_loss"].item() == 0
    # the paper's mixup weighting and label smoothing come from the shared loss module
    smooth = tiny(label_smooth=True).loss
    assert smooth.label_smooth and smooth.mixup_mode == "paper"


def test_norm_layer_selection():
    bn = tiny(fpn_norm=nn.BatchNorm2d, head_norm=nn.BatchNorm2d)
    assert isinstance(bn.features.P5_lat_bn, nn.BatchNorm2d)
    assert isinstance(bn.features.P3_conv1_bn, nn.BatchNorm2d)
    assert isinstance(bn.features.P2_bn, nn.BatchNorm2d)
    assert isinstance(bn.features.P6_pre_bn, nn.BatchNorm2d)
    assert bn.features.P2_conv1.bias is None and bn.features.P2_conv_lat.bias is None
    assert isinstance(bn.box_features[0], nn.Conv2d) and isinstance(bn.box_features[1],
                                                                    nn.BatchNorm2d)
    losses = bn.train()(torch.randn(2, 3, 96, 96), LABELS * torch.tensor([.7] * 4 + [1, 1]))
    assert all(torch.isfinite(v) for v in losses.values())
    frozen = tiny(fpn_norm=FrozenBatchNorm2d)
    assert isinstance(frozen.features.P4_bn, FrozenBatchNorm2d)
    plain = tiny()
    assert not any(n.endswith("_bn") for n, _ in plain.features.named_children())
    assert plain.features.P2_conv1.bias is not None
    # SyncBN: constructed only (it needs a process group to run in training)
    sync = get_model("faster_rcnn_fpn_resnet50_v1b_coco", norm_layer=nn.SyncBatchNorm,
                     fpn_norm_layer=nn.SyncBatchNorm, head_norm_layer=nn.SyncBatchNorm)
    assert isinstance(sync.features.resnetv1b.bn1, nn.SyncBatchNorm)
    assert isinstance(sync.features.P5_lat_bn, nn.SyncBatchNorm)
    assert isinstance(sync.box_features[1], nn.SyncBatchNorm)


def test_zoo_builders_match_gluoncv_names():
    for name in ("faster_rcnn_fpn_resnet50_v1b_coco", "faster_rcnn_fpn_resnet101_v1d_coco",
                 "faster_rcnn_fpn_resnet50_v1b_voc", "faster_rcnn_fpn_resnet50_v1b_custom"):
        assert name in list_models()
    net = get_model("faster_rcnn_fpn_resnet50_v1b_coco")
    fx = np.load(FIXTURES / "fpn_r50_coco.npz")
    names = [str(n) for n in fx["param_names"]]  # GluonCV's _collect_params_with_prefix()
    ours = gluoncv_state(net)
    assert len(ours) == len(names) == 302 and sorted(ours) == sorted(names)
    assert ours["rpn.anchor_generator.0.anchors"].shape == (1, 1, 384, 384, 12)
    assert ours["rpn.anchor_generator.4.anchors"].shape == (1, 1, 24, 24, 12)
    assert isinstance(net.features.resnetv1b.bn1, FrozenBatchNorm2d)
    assert not net.features.resnetv1b.conv1.weight.requires_grad   # GluonCV's train_patterns
    assert not any(p.requires_grad for p in net.features.resnetv1b.layer1.parameters())
    assert net.features.resnetv1b.layer2[0].conv1.weight.requires_grad
    assert (net.num_class, net.nms_thresh, net.post_nms, net.rpn.min_size, net.rpn.test_post_nms,
            net.rpn.clip, net.rcnn_sampling["num_sample"], net._roi_size) == (
        80, 0.5, -1, 1, 1000, 4.14, 512, (7, 7))
    # resnet101_v1d: 567 names in GluonCV (printed once in the oracle); deep stem and avg_down
    r101 = gluoncv_state(get_model("faster_rcnn_fpn_resnet101_v1d_coco"))
    assert len(r101) == 567
    for key, shape in {"features.resnetv1d_conv2_weight": (64, 32, 3, 3),
                       "features.resnetv1d_batchnorm2_gamma": (64,),
                       "features.resnetv1d_layers3_conv68_weight": (1024, 256, 1, 1),
                       "features.resnetv1d_down4_conv0_weight": (2048, 1024, 1, 1),
                       "features.resnetv1d_down2_batchnorm0_running_var": (512,)}.items():
        assert r101[key].shape == shape, key
    custom = get_model("faster_rcnn_fpn_resnet50_v1b_custom", classes=["x"])
    assert custom.num_class == 1 and custom.class_predictor.out_features == 2


def test_gluoncv_name_mapping_by_hand():
    assert (fpn_to_gluoncv("features.resnetv1b.layer1.2.conv3.weight")
            == "features.resnetv1b_layers1_conv8_weight")
    assert (fpn_to_gluoncv("features.resnetv1b.layer3.0.downsample.1.gamma")
            == "features.resnetv1b_down3_batchnorm0_gamma")
    assert fpn_to_gluoncv("features.resnetv1b.bn1.beta") == "features.resnetv1b_batchnorm0_beta"
    assert (fpn_to_gluoncv("features.resnetv1d.conv1.4.gamma")
            == "features.resnetv1d_batchnorm1_gamma")
    assert fpn_to_gluoncv("features.resnetv1d.conv1.6.weight") == "features.resnetv1d_conv2_weight"
    assert fpn_to_gluoncv("features.P5_lat_bn.running_mean") == "features.P5_lat_bn_moving_mean"
    assert fpn_to_gluoncv("rpn.rpn_head.conv1.0.bias") == "rpn.rpn_head.conv1.0.bias"


def test_fpn_detector_moves_between_devices_and_dtypes():
    # nn.Module.to() goes through Module._apply; the FPN must not shadow it
    net = get_model("faster_rcnn_fpn_resnet50_v1b_custom", classes=["a", "b"])
    net.to(torch.device("cpu")).to(torch.float64)
    assert next(net.parameters()).dtype == torch.float64
