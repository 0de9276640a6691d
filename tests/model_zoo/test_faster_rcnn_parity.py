"""GluonCV 0.10.5 parity of faster_rcnn_resnet50_v1b_voc (deterministic parts, eval mode).

Fixture ``tests/fixtures/rcnn_r50_voc.npz`` from ``tests/fixtures/gen_rcnn.py``: GluonCV's
network built as its builder does but with ``rpn_test_post_nms=30`` (a cheap RoI head), weights
drawn from ``np.random.RandomState`` with the recipe below (identical to the generator's), loaded
here through ``load_gluoncv_params``. Compared: backbone features, raw RPN scores and deltas,
proposals after NMS, the RoI head's logits and deltas, and the final per-class NMS detections.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from gluon_bof.ops.nms import MIN_BOX_SIZE

from random_weights import draw_params, unpack_spec  # tests/fixtures: the generators' weight recipe

from gluon_bof.model_zoo import rcnn  # noqa: F401
from gluon_bof.model_zoo.gluoncv import load_gluoncv_params
from gluon_bof.model_zoo.registry import get_model

FX_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "rcnn_r50_voc.npz"


@pytest.fixture(scope="module")
def setup():
    fx = dict(np.load(FX_PATH))
    names, shapes, images = unpack_spec(fx)
    net = get_model("faster_rcnn_resnet50_v1b_voc", rpn_test_post_nms=30).eval()
    result = load_gluoncv_params(net, draw_params(names, shapes, int(fx["seed"]),
                                                  float(fx["gain"])))
    assert not result.missing_keys and not result.unexpected_keys
    return fx, net, torch.from_numpy(images)


def test_backbone_rpn_head_parity(setup):
    fx, net, x = setup
    with torch.no_grad():
        feat = net.features(x)
        np.testing.assert_allclose(feat[0, :8].numpy(), fx["feat_slice"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(feat.double().abs().sum().item(), fx["feat_sums"][1], rtol=1e-5)
        h = net.rpn.conv1(feat)
        np.testing.assert_allclose(net.rpn.score(h).numpy(), fx["rpn_score_raw"], atol=1e-4)
        np.testing.assert_allclose(net.rpn.loc(h).numpy(), fx["rpn_loc_raw"], atol=1e-4)
        _, _, _, (rois, scores, valid) = net.rpn(feat, [tuple(x.shape[2:])])
        assert valid.all()
        np.testing.assert_allclose(scores[0].numpy(), fx["rpn_scores"][0, :, 0], atol=1e-5)
        np.testing.assert_allclose(rois[0].numpy(), fx["rpn_boxes"][0], atol=1e-2)
        cls_pred, box_pred = net._head(net._pool(feat, rois))
        np.testing.assert_allclose(cls_pred.numpy(), fx["cls_pred"], atol=1e-4)
        np.testing.assert_allclose(box_pred.numpy(), fx["box_pred"], atol=1e-4)


def test_detections_parity(setup):
    fx, net, x = setup
    with torch.no_grad():
        ids, scores, bboxes = net(x)
    v = fx["ids"][0, :, 0] >= 0
    ref = np.concatenate([fx["ids"][0][v], fx["scores"][0][v], fx["bboxes"][0][v]], axis=1)
    # GluonCV keeps zero-area boxes (clipped off the image): they never suppress another box (IoU 0),
    # and we drop them before NMS as torchvision does, so the rest is the same set
    ref = ref[((ref[:, 4] - ref[:, 2]) >= MIN_BOX_SIZE) & ((ref[:, 5] - ref[:, 3]) >= MIN_BOX_SIZE)]
    ref = ref[np.argsort(-ref[:, 1], kind="stable")][:100]  # GluonCV returns all, unsorted
    ours = torch.cat([ids[0], scores[0], bboxes[0]], dim=1).numpy()
    ours = ours[ours[:, 0] >= 0]
    assert len(ours) == len(ref) > 20
    np.testing.assert_array_equal(ours[:, 0], ref[:, 0])
    np.testing.assert_allclose(ours[:, 1], ref[:, 1], atol=1e-5)
    np.testing.assert_allclose(ours[:, 2:], ref[:, 2:], atol=1e-2)
