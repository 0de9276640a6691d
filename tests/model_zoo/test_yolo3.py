"""Tests of gluon_bof/model_zoo/yolo3.py: every registered YOLOv3 builds, runs eval and train,
matches GluonCV's parameter counts and names, and decodes boxes as GluonCV does."""
import pytest
import torch

from gluon_bof.model_zoo.gluoncv import gluoncv_state

from gluon_bof.model_zoo import yolo3  # noqa: F401  (registers the builders)
from gluon_bof.model_zoo.registry import get_model, list_models

YOLO_MODELS = [m for m in list_models() if m.startswith("yolo3_")]
# printed once from GluonCV 0.10.5 (pretrained_base=False): trainable parameters and the number
# of names in net._collect_params_with_prefix() (anchors and offsets included)
GLUONCV = {"yolo3_darknet53_voc": (61626049, 372), "yolo3_darknet53_coco": (61949149, 372),
           "yolo3_mobilenet1.0_voc": (24248097, 247), "yolo3_mobilenet1.0_coco": (24571197, 247),
           "yolo3_mobilenet0.25_voc": (6173489, 247), "yolo3_mobilenet0.25_coco": (6358349, 247)}
LABELS = torch.tensor([[[10., 12., 50., 70., 1., 1.], [40., 30., 90., 95., 0., 0.5]],
                       [[-1.] * 6, [-1.] * 6]])


def _build(name, **kwargs):
    if name.endswith("_custom"):
        kwargs.setdefault("classes", ["a", "b"])
    return get_model(name, **kwargs)


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if "darknet" in n else n for n in names]


def test_registry_has_gluoncv_names():
    assert set(YOLO_MODELS) == set(GLUONCV) | {"yolo3_darknet53_custom",
                                              "yolo3_mobilenet1.0_custom",
                                              "yolo3_mobilenet0.25_custom"}


@pytest.mark.parametrize("name", sorted(GLUONCV))
def test_counts_and_names_match_gluoncv(name):
    net = _build(name)
    trainable, num_names = GLUONCV[name]
    assert sum(p.numel() for p in net.parameters()) == trainable
    keys = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    assert len(keys) == num_names
    for key in ("stages.0.0.weight" if "mobilenet" in name else "stages.0.0.0.weight",
                "yolo_blocks.0.body.4.1.running_var", "yolo_blocks.2.tip.0.weight",
                "transitions.1.1.weight", "yolo_outputs.0.anchors", "yolo_outputs.2.offsets"):
        assert key in keys
    assert net.yolo_outputs[0].anchors.flatten().tolist() == [116, 90, 156, 198, 373, 326]
    assert [o.stride for o in net.yolo_outputs] == [32, 16, 8]
    assert net.yolo_outputs[0].offsets.shape == (1, 128, 128, 2)  # 4-D: channels_last works
    assert gluoncv_state(net)["yolo_outputs.0.offsets"].shape == (1, 1, 128, 128, 2)  # GluonCV's


@pytest.mark.parametrize("name", _params(YOLO_MODELS))
def test_eval_and_train_contracts(name):
    net = _build(name).eval()
    with torch.no_grad():
        ids, scores, bboxes = net(torch.randn(2, 3, 96, 96))
    assert ids.shape == (2, 100, 1) and scores.shape == (2, 100, 1) and bboxes.shape == (2, 100, 4)
    for t in (ids, scores, bboxes):
        assert torch.isfinite(t).all()
    valid = ids >= 0
    assert ((ids < net.num_class) | ~valid).all()
    assert (scores[valid] > 0.01).all() and (scores[~valid] == -1).all()
    net.train()
    losses = net(torch.randn(2, 3, 96, 96), LABELS)
    assert sorted(losses) == ["center_loss", "cls_loss", "obj_loss", "scale_loss"]
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert all(v > 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def _small(**kwargs):
    torch.manual_seed(0)
    return get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"], **kwargs)


def test_decoding_by_hand_and_no_clipping():
    net = _small().eval()
    for out in net.yolo_outputs:
        torch.nn.init.zeros_(out.prediction.weight)
        torch.nn.init.zeros_(out.prediction.bias)
    net.set_nms(0)  # NMS off: every (box, class) pair in GluonCV's order
    with torch.no_grad():
        ids, scores, bboxes = net(torch.randn(1, 3, 96, 96))
    n = (9 + 36 + 144) * 3 * 2
    assert ids.shape == (1, n, 1)
    assert torch.allclose(scores, torch.full_like(scores, 0.25))  # sigmoid(0) * sigmoid(0)
    # head 0 (stride 32, 3x3), class 0, cell (0, 0): centre (.5 + 0) * 32, size = anchor
    assert bboxes[0, 0].tolist() == [16 - 58, 16 - 45, 16 + 58, 16 + 45]  # not clipped
    assert bboxes[0, 1].tolist() == [16 - 78, 16 - 99, 16 + 78, 16 + 99]
    # anchor 0 of cell (y=0, x=1), then class 1 repeats the boxes
    assert bboxes[0, 3].tolist() == [48 - 58, 16 - 45, 48 + 58, 16 + 45]
    assert ids[0, 27].item() == 1 and bboxes[0, 27].tolist() == bboxes[0, 0].tolist()
    net.set_nms(0.45, 400, 7)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 96, 96))[0].shape == (1, 7, 1)


def test_empty_labels_batch_of_one_and_odd_size():
    net = _small().train()
    losses = net(torch.randn(1, 3, 100, 100), torch.full((1, 3, 6), -1.0))
    assert losses["obj_loss"] > 0
    assert losses["center_loss"] == losses["scale_loss"] == losses["cls_loss"] == 0
    losses = net(torch.randn(1, 3, 100, 100), torch.zeros(1, 0, 6))
    assert losses["cls_loss"] == 0


def test_mix_weight_column_scales_box_losses():
    net = _small().train()
    x = torch.randn(1, 3, 128, 128)
    box = torch.tensor([[[20., 30., 90., 100., 1.]]])
    full = net(x, torch.cat([box, torch.ones(1, 1, 1)], -1))
    half = net(x, torch.cat([box, torch.full((1, 1, 1), 0.5)], -1))
    five_columns = net(x, box)
    for key in ("center_loss", "scale_loss", "cls_loss"):
        assert half[key].item() == pytest.approx(0.5 * full[key].item(), rel=1e-5)
        assert five_columns[key].item() == pytest.approx(full[key].item(), rel=1e-6)


def test_label_smoothing_changes_only_class_loss():
    x = torch.randn(1, 3, 96, 96)
    labels = LABELS[:1]
    plain = _small().train()(x, labels)
    smooth = _small(label_smooth=True, label_smooth_mode="gluoncv").train()(x, labels)
    assert smooth["cls_loss"] != plain["cls_loss"]
    for key in ("obj_loss", "center_loss", "scale_loss"):
        assert smooth[key].item() == pytest.approx(plain[key].item(), rel=1e-6)


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="yolo3.py"):
        _small().train()(torch.randn(1, 3, 64, 64), torch.zeros(1, 4))


def test_reset_class_reuses_weights():
    net = _small()
    old = net.yolo_outputs[0].prediction.weight.detach().clone()  # [3 * 7, C, 1, 1]
    net.reset_class(["b", "c", "a"], reuse_weights=["a", "b"])
    new = net.yolo_outputs[0].prediction.weight
    assert net.classes == ["b", "c", "a"] and new.shape[0] == 3 * 8
    for a in range(3):
        assert torch.equal(new[a * 8:a * 8 + 5], old[a * 7:a * 7 + 5])
        assert torch.equal(new[a * 8 + 5], old[a * 7 + 6])   # b
        assert torch.equal(new[a * 8 + 7], old[a * 7 + 5])   # a
    net.eval()
    with torch.no_grad():
        ids, _, _ = net(torch.randn(1, 3, 64, 64))
    assert ids.max() < 3
    with pytest.raises(ValueError):
        net.reset_class(["x"], reuse_weights={0: 5})


def test_custom_needs_classes():
    with pytest.raises(TypeError):
        get_model("yolo3_mobilenet0.25_custom")


def test_pretrained_base_from_a_gluoncv_params_file(tmp_path, monkeypatch):
    from gluon_bof.model_zoo.gluoncv import export_gluoncv_params
    backbone = get_model("mobilenet0.25")
    export_gluoncv_params(backbone, tmp_path / "mobilenet0.25.params")
    net = get_model("yolo3_mobilenet0.25_voc",
                    pretrained_base=str(tmp_path / "mobilenet0.25.params"))
    assert torch.equal(net.stages[0][0].weight, backbone.features[0].weight)
    assert torch.equal(net.stages[2][10].running_var, backbone.features[79].running_var)
    export_gluoncv_params(net, tmp_path / "yolo.params")
    again = get_model("yolo3_mobilenet0.25_voc", pretrained=str(tmp_path / "yolo.params"))
    assert torch.equal(again.yolo_outputs[1].prediction.weight,
                       net.yolo_outputs[1].prediction.weight)
    monkeypatch.setenv("GLUON_BOF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", f"file://{tmp_path}/no-mirror/")
    from gluon_bof.model_zoo.model_store import ModelStoreError
    with pytest.raises(ModelStoreError, match="mobilenet0.25-f0046a3d.params"):
        get_model("yolo3_mobilenet0.25_voc", pretrained_base=True)


def test_obj_prior_sets_initial_objectness_loss_by_formula():
    import math

    net = get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"], channels=[16, 8, 8], obj_prior=0.01)
    with torch.no_grad():
        for out in net.yolo_outputs:
            out.prediction.weight.zero_()
    net.train()
    labels = torch.full((2, 1, 6), -1.0)  # no objects: every anchor is a negative
    losses = net(torch.randn(2, 3, 64, 64), labels)
    anchors = 3 * (2 * 2 + 4 * 4 + 8 * 8)  # strides 32, 16, 8 on a 64 px input
    assert losses["obj_loss"].item() == pytest.approx(anchors * -math.log(1 - 0.01), rel=1e-5)
    with pytest.raises(ValueError):
        net.init_objectness(1.5)


def test_float64_model_computes_its_losses_in_float64():
    """Targets are made in float32 (as GluonCV's pipeline makes them) but meet a float64 model's
    predictions in float64: torch's BCE would return (and differentiate in) the float32 target's
    dtype, rounding the losses of a float64 run to float32 (~1e-7 relative)."""
    import math

    net = get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"], channels=[16, 8, 8]).double().train()
    net.init_objectness(0.01)  # after the cast: a float64 bias
    with torch.no_grad():
        for out in net.yolo_outputs:
            out.prediction.weight.zero_()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    losses = net(x, torch.full((2, 1, 6), -1.0))  # no objects: every anchor is a negative
    anchors = 3 * (2 * 2 + 4 * 4 + 8 * 8)
    assert losses["obj_loss"].dtype == torch.float64
    assert losses["obj_loss"].item() == pytest.approx(anchors * -math.log(1 - 0.01), rel=1e-13)
    losses = net(x, LABELS * torch.tensor([.5, .5, .5, .5, 1, 1]))
    assert all(v.dtype == torch.float64 for v in losses.values())
    assert losses["scale_loss"] > 0 and losses["cls_loss"] > 0


def test_builder_head_widths_and_scaled_anchors():
    from gluon_bof.model_zoo.yolo3 import YOLO3_ANCHORS, scaled_anchors

    anchors = scaled_anchors(0.5)
    assert anchors[0] == [5.0, 6.5, 8.0, 15.0, 16.5, 11.5] and anchors[2][-2:] == [186.5, 163.0]
    net = get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"], channels=[24, 16, 8], anchors=anchors)
    # heads are stored deepest first: yolo_outputs.0 is stride 32 with the largest anchors
    assert net.yolo_outputs[0].anchors.flatten().tolist() == anchors[2]
    assert net.yolo_outputs[2].anchors.flatten().tolist() == anchors[0]
    assert [o.prediction.in_channels for o in net.yolo_outputs] == [48, 32, 16]  # tips are 2 x width
    default = get_model("yolo3_mobilenet0.25_custom", classes=["a"])
    assert default.yolo_outputs[0].anchors.flatten().tolist() == list(YOLO3_ANCHORS[2])
    assert [o.prediction.in_channels for o in default.yolo_outputs] == [512, 256, 256]  # GluonCV's


def test_channels_last_conversion_keeps_outputs():
    net = get_model("yolo3_mobilenet0.25_custom", classes=["a", "b"], channels=[16, 8, 8]).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        before, _ = net._heads(x)  # decoded boxes, raw centres/scales, objectness, classes per head
        net = net.to(memory_format=torch.channels_last)
        after, _ = net._heads(x.to(memory_format=torch.channels_last))
    for head_before, head_after in zip(before, after):
        for a, b in zip(head_before, head_after):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-4)


def test_gluoncv_transfer_entry_point_keeps_the_shared_classes(tmp_path):
    """GluonCV's fine-tuning call, get_model('yolo3_..._custom', classes=[...], transfer='voc'):
    the VOC model's published weights (here a local GluonCV .params), then reset_class keeping
    the rows of the classes both know (person, dog) and new rows for the others."""
    from gluon_bof.model_zoo import export_gluoncv_params, get_model

    torch.manual_seed(0)
    voc = get_model("yolo3_mobilenet0.25_voc", channels=[16, 8, 8])
    path = str(tmp_path / "voc.params")
    export_gluoncv_params(voc, path)
    net = get_model("yolo3_mobilenet0.25_custom", classes=["dog", "circle", "person"], transfer="voc",
                    pretrained=path, channels=[16, 8, 8])
    assert net.classes == ["dog", "circle", "person"]
    old, new = voc.yolo_outputs[0].prediction.weight, net.yolo_outputs[0].prediction.weight
    per_old, per_new = 5 + 20, 5 + 3  # rows per anchor: box, objectness, classes
    dog, person = voc.classes.index("dog"), voc.classes.index("person")
    for a in range(3):  # each anchor's box/objectness rows and the shared classes' rows are kept
        torch.testing.assert_close(new[a * per_new:a * per_new + 5], old[a * per_old:a * per_old + 5])
        torch.testing.assert_close(new[a * per_new + 5], old[a * per_old + 5 + dog])
        torch.testing.assert_close(new[a * per_new + 7], old[a * per_old + 5 + person])
    for (k, p), q in zip(voc.stages.named_parameters(), net.stages.parameters()):  # the backbone too
        torch.testing.assert_close(q, p, msg=lambda m, k=k: f"{k}: {m}")
    with pytest.raises(ValueError, match="transfer must be 'voc' or 'coco'"):
        get_model("yolo3_mobilenet0.25_custom", classes=["a"], transfer="imagenet")
