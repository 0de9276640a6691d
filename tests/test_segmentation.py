"""Segmentation training glue (gluon_bof/segmentation.py): GluonCV's poly schedule and head
learning rate, parameter groups, loaders and the pixAcc/mIoU evaluator."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gluon_bof.data.loader import TrainBatch
from gluon_bof.data.segmentation import ADE20KSegmentation
from gluon_bof.data.synthetic_segmentation import generate
from gluon_bof.errors import ConfigError
from gluon_bof.model_zoo import get_model
from gluon_bof.segmentation import (segmentation_datasets, segmentation_evaluator, segmentation_loaders,
                                    segmentation_optimizer, segmentation_param_groups)
from gluon_bof.utils.metrics import SegmentationMetric
from gluon_bof.utils.optim import MXNetSGD

FX = np.load(Path(__file__).resolve().parent / "fixtures" / "fcn.npz")


@pytest.mark.parametrize("warmup", [0, 1])
def test_poly_schedule_per_update_equals_gluoncvs_lrsequential(warmup):
    """train.py's LRSequential([linear warmup, poly power 0.9]); the n-th update uses its value n;
    the heads' groups run at 10x."""
    epochs, iters, base = FX["lr/settings"].tolist()
    net = get_model("fcn_resnet18_ade", nclass=3)
    opt, sched = segmentation_optimizer(net, lr=base, momentum=0.9, wd=1e-4, no_wd=False, iters_per_epoch=int(iters),
                                        epochs=int(epochs), warmup_epochs=warmup)
    assert isinstance(opt, MXNetSGD)
    seen, heads = [], []
    for _ in range(int(epochs * iters)):
        groups = {g["lr_mult"]: g["lr"] for g in opt.param_groups}
        seen.append(groups[1.0])
        heads.append(groups[10.0])
        sched.step()
    np.testing.assert_allclose(seen, FX[f"lr/warmup{warmup}"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(heads, 10 * FX[f"lr/warmup{warmup}"], rtol=1e-12, atol=1e-14)


def test_param_groups_heads_at_lr_mult_and_no_wd():
    net = get_model("fcn_resnet18_ade", nclass=3)
    groups = segmentation_param_groups(net, 1e-4, no_wd=True)
    by_key = {(g["weight_decay"], g["lr_mult"]): g["params"] for g in groups}
    heads = {id(p) for p in list(net.head.parameters()) + list(net.auxlayer.parameters())}
    assert {id(p) for p in by_key[(1e-4, 10.0)] + by_key[(0.0, 10.0)]} == heads
    assert len(by_key[(1e-4, 10.0)]) == 4  # the two heads' 3x3 and 1x1 conv weights
    assert all(p.dim() == 1 for p in by_key[(0.0, 1.0)] + by_key[(0.0, 10.0)])  # biases, gamma, beta
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    one = segmentation_param_groups(net, 1e-4, no_wd=False, head_lr_mult=1.0)
    assert len(one) == 1 and one[0]["lr_mult"] == 1.0


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(str(tmp_path_factory.mktemp("seg")), num_train=6, num_val=3, seed=2)


def test_loaders_give_train_batches_and_every_val_image_once(tiny_root):
    train, val = segmentation_datasets("ade20k", tiny_root)
    loader, sampler, val_loader = segmentation_loaders(train, val, batch_size=2, base_size=40, crop_size=32,
                                                       num_workers=0, seed=1)
    sampler.set_epoch(0)
    batch = next(iter(loader))
    assert isinstance(batch, TrainBatch) and batch.images.shape == (2, 3, 32, 32)
    assert batch.labels.shape == (2, 32, 32) and batch.labels.dtype == torch.int64 and len(loader) == 3
    again = next(iter(loader))  # the same seeded augmentation
    assert torch.equal(batch.images, again.images) and torch.equal(batch.labels, again.labels)
    shards = [segmentation_loaders(train, val, batch_size=1, crop_size=32, num_workers=0, rank=r, world_size=2)[2]
              for r in (0, 1)]
    assert [len(list(s)) for s in shards] == [2, 1]
    with pytest.raises(ConfigError, match="only"):
        segmentation_datasets("pascal_voc", tiny_root)
    with pytest.raises(ConfigError, match="no full batch"):
        segmentation_loaders(train, None, batch_size=7)


def test_evaluator_scores_argmax_of_the_main_output(tiny_root, tmp_path):
    val = ADE20KSegmentation(tiny_root, "val")
    _, _, loader = segmentation_loaders(val, val, batch_size=2, crop_size=32, num_workers=0)

    class ByColour(nn.Module):  # a fixed 'network': class scores from the pixel colours
        def forward(self, x):
            return (torch.cat([x, -x, x[:, :1] * 0], 1)[:, :7] * 3,)

    net = ByColour()
    evaluate_fn = segmentation_evaluator(loader, 7, torch.device("cpu"), viz_path=str(tmp_path / "masks.png"),
                                         classes=val.classes)
    names, values = evaluate_fn(net)
    metric = SegmentationMetric(7)
    for images, masks in loader:
        metric.update(masks, net(images)[0])
    assert names == ["pixAcc", "mIoU"] and values == list(metric.get())
    assert (tmp_path / "masks.png").stat().st_size > 1000


def test_default_data_is_the_built_in_masks(tiny_root, tmp_path, monkeypatch):
    """No --data-root: $GLUON_BOF_SEG_DATA (default data/synthetic_seg), generated when absent."""
    monkeypatch.setenv("GLUON_BOF_SEG_DATA", tiny_root)
    train, val = segmentation_datasets("ade20k", None)
    assert (len(train), len(val), train.num_class) == (6, 3, 7)
    import gluon_bof.data.synthetic_segmentation as synthetic_segmentation

    calls = []
    monkeypatch.setattr(synthetic_segmentation, "generate", lambda root: calls.append(root) or root)
    assert synthetic_segmentation.ensure_generated(str(tmp_path)) == str(tmp_path) and calls == [str(tmp_path)]
