"""Classification glue (gluon_bof/classification.py): top-1/top-5 by hand, the evaluator's de-duplication
of padded shards, and a classifier overfitting a few images through train_one_epoch."""
import numpy as np
import torch
from torch import nn

from gluon_bof.data.loader import TrainBatch
from gluon_bof.classification import ClassifierWithLoss, classification_evaluator, topk_correct
from gluon_bof.engine import train_one_epoch
from gluon_bof.fit import build_optimizer_and_schedule
from gluon_bof.model_zoo import get_model
from gluon_bof.nn.classification import init_weights, smooth_targets


def test_topk_by_hand():
    logits = torch.tensor([[0.1, 0.5, 0.2, 0.9, 0.0, 0.3, 0.4],   # order 3 1 6 5 2 0 4
                           [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                           [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])  # order 6 5 4 3 2 1 0
    labels = torch.tensor([1, 0, 1])
    hits = topk_correct(logits, labels, (1, 5))
    assert hits.tolist() == [[False, True], [True, True], [False, False]]
    few = topk_correct(torch.tensor([[0.2, 0.1]]), torch.tensor([1]), (1, 5))  # k capped at 2 classes
    assert few.tolist() == [[False, True]]


def test_evaluator_counts_each_sample_once():
    class Fixed(nn.Module):  # class = first pixel value, class 0 second (logits 2 and 0.1)
        def forward(self, x):
            return 2 * nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float() + torch.tensor([0.1, 0, 0])

    images = torch.tensor([0.0, 1.0, 2.0, 0.0]).view(4, 1, 1, 1).expand(4, 3, 1, 1)
    labels = torch.tensor([0, 1, 0, 0])  # third: top-1 wrong (2), top-2 right (2, 0)
    # the shard repeats sample 0 at its end (padding): it must count once -> top-1 2 of 3
    loader = [(images, labels, torch.tensor([0, 1, 2, 0]))]
    names, values = classification_evaluator(loader, torch.device("cpu"), ks=(1, 2))(Fixed())
    assert names == ["top2", "top1"]
    assert values == [1.0, 2 / 3]


def test_overfits_a_few_images():
    torch.manual_seed(0)
    images = torch.randn(8, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    net = init_weights(get_model("resnet18_v1b", classes=4, last_gamma=True), "xavier")
    model = ClassifierWithLoss(net)
    loader = [TrainBatch(images, smooth_targets(labels, 4, 0.0))] * 30
    opt, sched = build_optimizer_and_schedule(model, lr=0.05, momentum=0.9, wd=0.0, no_wd=True, nesterov=True,
                                              iters_per_epoch=len(loader), epochs=2, mode="constant")
    first = train_one_epoch(model, loader, opt, sched, epoch=0, device=torch.device("cpu"), log_interval=0)
    last = train_one_epoch(model, loader, opt, sched, epoch=1, device=torch.device("cpu"), log_interval=0)
    assert last["loss"] < 0.1 * first["loss"]
    eval_loader = [(images, labels, torch.arange(8))]
    names, values = classification_evaluator(eval_loader, torch.device("cpu"))(model)
    assert dict(zip(names, values))["top1"] == 1.0
    assert np.isfinite(values).all()


def test_inceptionv3_teacher_by_name(tmp_path, monkeypatch):
    """``--teacher inceptionv3`` as typed: GluonCV's weights through the store (here a random
    Inception-V3 exported in GluonCV's format, served from a local mirror), checked at 75 px,
    Inception-V3's smallest input (the 64 px probe of other teachers is too small for it)."""
    import hashlib

    import pytest

    from gluon_bof.classification import build_teacher
    from gluon_bof.model_zoo import export_gluoncv_params, model_store

    torch.manual_seed(0)
    weights = tmp_path / "w.params"
    export_gluoncv_params(get_model("inceptionv3"), weights)
    sha1 = hashlib.sha1(weights.read_bytes()).hexdigest()
    previous = model_store.register_model_sha1("inceptionv3", sha1)
    try:
        mirror = tmp_path / "mirror"
        mirror.mkdir()
        weights.rename(mirror / f"inceptionv3-{sha1[:8]}.params")
        monkeypatch.setenv("GLUON_BOF_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("GLUON_BOF_MIRROR", str(mirror))
        monkeypatch.setenv("MXNET_GLUON_REPO", f"file://{tmp_path}/no-repo/")
        teacher = build_teacher("inceptionv3", 1000, torch.device("cpu"))
        assert type(teacher).__name__ == "Inception3" and not teacher.training
        with pytest.raises(ValueError, match="at least 75x75, the training crops are 64x64"):
            build_teacher("inceptionv3", 1000, torch.device("cpu"), input_size=64)
        with pytest.raises(ValueError, match="1000 outputs, the data has 5 classes"):
            build_teacher("inceptionv3", 5, torch.device("cpu"))
    finally:
        model_store.register_model_sha1("inceptionv3", previous)
