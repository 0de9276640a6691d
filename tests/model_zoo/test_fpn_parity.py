"""GluonCV 0.10.5 parity of faster_rcnn_fpn_resnet50_v1b_coco (deterministic parts, eval mode).

Fixture ``tests/fixtures/fpn_r50_coco.npz`` from ``tests/fixtures/gen_fpn.py``: GluonCV's own
builder with ``rpn_test_post_nms=50``, weights drawn from ``np.random.RandomState`` by the
recipe of ``draw_params`` (imported from test_faster_rcnn_parity.py) on dotted aliases of
GluonCV's flat FPN names, loaded through ``load_gluoncv_params``. Compared: P2..P6, the shared
RPN head's raw outputs per level, the proposals after the cross-level NMS, multi-level RoIAlign
(on the proposals and on hand-made RoIs over levels 2..5), the box head, and the detections.
"""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gluon_bof.ops.nms import MIN_BOX_SIZE

from gluon_bof.model_zoo import rcnn  # noqa: F401
from gluon_bof.model_zoo.gluoncv import load_gluoncv_params
from gluon_bof.model_zoo.registry import get_model
from random_weights import draw_params, unpack_spec

FX_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "fpn_r50_coco.npz"
POST = 50


def draw_fpn_params(names, shapes, seed, gain):
    """tests/fixtures/gen_fpn.py's ``draw_fpn_params`` (must stay identical)."""
    alias = {re.sub(r"_(weight|bias|gamma|beta|running_mean|running_var)$", r".\1", n): n
             for n in names}
    drawn = draw_params(list(alias), {a: shapes[n] for a, n in alias.items()}, seed, gain)
    return {alias[a]: v for a, v in drawn.items()}


@pytest.fixture(scope="module")
def setup():
    fx = dict(np.load(FX_PATH))
    names, shapes, images = unpack_spec(fx)
    net = get_model("faster_rcnn_fpn_resnet50_v1b_coco", rpn_test_post_nms=POST).eval()
    result = load_gluoncv_params(net, draw_fpn_params(names, shapes, int(fx["seed"]),
                                                      float(fx["gain"])))
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.from_numpy(images)
    with torch.no_grad():
        feats = net.features(x)
    return fx, net, x, feats


def test_fpn_features_and_rpn_heads(setup):
    fx, net, x, feats = setup
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 36), (16, 18), (8, 9), (4, 5), (2, 3)]
    with torch.no_grad():
        for i, f in enumerate(feats):
            np.testing.assert_allclose(f[0, :4].numpy(), fx[f"feat{i}_slice"], rtol=1e-4,
                                       atol=1e-4)
            np.testing.assert_allclose(f.double().abs().sum().item(), fx[f"feat{i}_sums"][1],
                                       rtol=1e-5)
            h = net.rpn.rpn_head.conv1(f)
            np.testing.assert_allclose(net.rpn.rpn_head.score(h).numpy(), fx[f"rpn_score{i}"],
                                       atol=1e-4)
            np.testing.assert_allclose(net.rpn.rpn_head.loc(h).numpy(), fx[f"rpn_loc{i}"],
                                       atol=1e-4)


def test_proposals_pooling_and_box_head(setup):
    fx, net, x, feats = setup
    with torch.no_grad():
        _, _, _, (rois, scores, valid) = net.rpn(feats, [tuple(x.shape[2:])])
        assert valid.all()
        np.testing.assert_allclose(scores[0].numpy(), fx["rpn_scores"][0, :, 0], atol=1e-5)
        np.testing.assert_allclose(rois[0].numpy(), fx["rpn_boxes"][0], atol=1e-2)
        rois = torch.from_numpy(fx["rpn_boxes"])  # the reference's, to isolate the RoI head
        pooled = net._pool(feats, rois)
        ours = pooled.double().reshape(POST, -1)
        np.testing.assert_allclose(ours.abs().sum(1).numpy(), fx["pooled_sums"][:, 1],
                                   rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(pooled[:, 0, :3, :3].numpy(), fx["pooled_slice"], atol=1e-4)
        cls_pred, box_pred = net._head(pooled)
        np.testing.assert_allclose(cls_pred.numpy(), fx["cls_pred"], atol=1e-4)
        np.testing.assert_allclose(box_pred.numpy(), fx["box_pred"], atol=1e-4)
        # hand-made RoIs over levels 2..5 (and their borders)
        crois = torch.from_numpy(fx["custom_rois"][:, 1:])[None]
        np.testing.assert_allclose(net._pool(feats, crois)[:, :8].numpy(), fx["custom_pooled"],
                                   rtol=1e-4, atol=1e-4)


def test_detections_parity(setup):
    fx, net, x, _ = setup
    with torch.no_grad():
        ids, scores, bboxes = net(x)
    v = fx["ids"][0, :, 0] >= 0
    ref = np.concatenate([fx["ids"][0][v], fx["scores"][0][v], fx["bboxes"][0][v]], axis=1)
    # GluonCV keeps zero-area boxes (clipped off the image): they never suppress another box (IoU 0),
    # and we drop them before NMS as torchvision does, so the rest is the same set
    ref = ref[((ref[:, 4] - ref[:, 2]) >= MIN_BOX_SIZE) & ((ref[:, 5] - ref[:, 3]) >= MIN_BOX_SIZE)]
    ref = ref[np.argsort(-ref[:, 1], kind="stable")]  # GluonCV returns them per class
    ours = torch.cat([ids[0], scores[0], bboxes[0]], dim=1).numpy()
    ours = ours[ours[:, 0] >= 0]
    assert len(ours) == len(ref) > 100
    np.testing.assert_allclose(ours[:, 1], ref[:, 1], atol=1e-5)
    # near-equal scores may order rows differently: every row of ours must have a reference
    # row of the same class, score and box, and vice versa
    same = ((ours[:, None, 0] == ref[None, :, 0])
            & (np.abs(ours[:, None, 1] - ref[None, :, 1]) < 1e-5)
            & (np.abs(ours[:, None, 2:] - ref[None, :, 2:]) < 1e-2).all(-1))
    assert same.any(1).all() and same.any(0).all()
