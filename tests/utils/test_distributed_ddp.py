"""Data-parallel training (DDP, gradient accumulation) and sharded evaluation on 2 gloo processes
(CPU) against one process.

One spawn of 2 processes (``_spawn`` of test_distributed.py) runs every distributed check; the
tests compare its results with single-process references computed here.

The model is a small YOLOv3 (MobileNet 0.25, narrow head, 64x64 inputs) with *frozen* BatchNorm:
in training mode BatchNorm normalises with the statistics of each process's (or micro-) batch, so
plain BN would make 2 x 2 images differ from 4 images by design (that is what --syncbn is for).
Every other layer treats images independently and the losses are per-image sums averaged over the
batch, so DDP's gradient average over 2 processes of 2 images equals the gradient of 4 images.
Everything runs in float64: the frozen statistics of this untrained net make its first conv's
gradient a sum of large terms that nearly cancel, so in float32 merely splitting the batch changes
that gradient by a few percent (float64: ~1e-15).
"""
import numpy as np
import pytest
import torch

from gluon_bof import model_zoo
from gluon_bof.data.build import faster_rcnn_val_loader, yolo3_val_loader
from gluon_bof.data.loader import EvalBatchSampler, eval_shard
from gluon_bof.data.loader import TrainBatch
from gluon_bof.engine import evaluate, train_one_epoch
from gluon_bof.nn.norm import convert_frozen_bn
from test_distributed import _spawn

B, STEPS, SIZE = 4, 3, 64


def frozen_yolo(classes=("a", "b")):
    """The small YOLOv3 with its BatchNorm statistics set from one batch of noise, then frozen
    (frozen at their initial values, the activations would vanish through the backbone)."""
    torch.manual_seed(0)
    net = model_zoo.get_model("yolo3_mobilenet0.25_custom", classes=list(classes), channels=[16, 8, 8])
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # running statistics = this batch's
    with torch.no_grad():
        net.train()(torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(9)),
                    -torch.ones(8, 1, 6))
    return convert_frozen_bn(net).double()


_model = frozen_yolo


def _batches():
    """STEPS global batches of B images; in step 0 the last two images (rank 1's share) have no box."""
    g = torch.Generator().manual_seed(3)
    out = []
    for step in range(STEPS):
        x = torch.randn(B, 3, SIZE, SIZE, generator=g, dtype=torch.float64)
        xy = torch.rand(B, 2, 2, generator=g) * 28
        wh = 8 + torch.rand(B, 2, 2, generator=g) * 24
        labels = torch.cat([xy, xy + wh, torch.randint(0, 2, (B, 2, 1), generator=g).float(),
                            torch.ones(B, 2, 1)], dim=-1)
        if step == 0:
            labels[2:] = -1
        out.append(TrainBatch(x, labels))
    return out


class _Schedule:
    steps = 0

    def step(self):
        self.steps += 1


class _SignalOnRank1:
    """A stop request (as SIGTERM sets) that reaches rank 1 only, after its second update."""

    def __init__(self, rank):
        self.rank, self.reads, self.set_to = rank, 0, None

    @property
    def requested(self):
        self.reads += 1
        return self.rank == 1 and self.reads >= 2

    @requested.setter
    def requested(self, value):
        self.set_to = value


def _train(rank, world_size, accumulate, stop=None):
    """Trains STEPS updates of the global batches on this process's share; returns the weights."""
    net = _model()
    model = torch.nn.parallel.DistributedDataParallel(net) if world_size > 1 else net
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    per = B // world_size
    loader = [TrainBatch(x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]) for x, y, _ in _batches()]
    stats = train_one_epoch(model, loader, opt, _Schedule(), epoch=0, device=torch.device("cpu"),
                            log_interval=0, accumulate=accumulate, stop=stop)
    return {"weights": {k: v.clone() for k, v in net.state_dict().items()}, "stats": stats,
            "stop_set_to": getattr(stop, "set_to", None)}


class _Indexer(torch.nn.Module):
    """Predicts nothing; evaluate hands the metric each image's ground truth, which encodes its index."""

    def forward(self, x, image_sizes=None):
        b = x.shape[0]
        return -torch.ones(b, 1, 1), -torch.ones(b, 1, 1), -torch.ones(b, 1, 4)


class _Recorder:
    def reset(self):
        self.seen = []

    def update(self, boxes, ids, scores, gt_boxes, gt_ids, difficult):
        self.seen += [int(v) for v in gt_boxes[:, 0, 0]]

    def get(self):
        return ["n"], [float(len(self.seen))]


class _Images:
    """``n`` images of ``size`` (h, w) (``(w, h)`` for those in ``portrait``); image i has one box
    whose xmin is i."""

    def __init__(self, n, size=(32, 32), portrait=()):
        self.n, self.size, self.portrait = n, size, set(portrait)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        h, w = self.size[::-1] if i in self.portrait else self.size
        return np.zeros((h, w, 3), np.uint8), np.array([[i, 1, i + 4, 6, 0, 0]], np.float32)


def _seen(loader):
    metric = _Recorder()
    evaluate(_Indexer(), loader, metric, device=torch.device("cpu"), clip=False)
    return metric.seen


def _eval(rank, world_size):
    out = {}
    for n in (5, 1):  # 5 images: shards of 3 and 2; 1 image: rank 1 has none
        ds = _Images(n)
        out[f"yolo{n}"] = _seen(yolo3_val_loader(ds, batch_size=2, data_shape=32, num_workers=0,
                                                 rank=rank, world_size=world_size))
    ds = _Images(7, size=(32, 48), portrait=(1, 2, 5))
    out["rcnn7"] = _seen(faster_rcnn_val_loader(ds, batch_size=2, short=32, max_size=48, num_workers=0,
                                                rank=rank, world_size=world_size))
    return out


def _worker(rank, world_size):
    return {"acc1": _train(rank, world_size, 1), "acc2": _train(rank, world_size, 2),
            "stop": _train(rank, world_size, 1, stop=_SignalOnRank1(rank)), "eval": _eval(rank, world_size)}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    return _spawn(_worker, 2, tmp_path_factory.mktemp("ddp"))


@pytest.fixture(scope="module")
def single():
    return _train(0, 1, 1)


def _assert_same_weights(a, b):
    for k, v in b.items():
        torch.testing.assert_close(a[k], v, atol=1e-9, rtol=1e-7, msg=lambda m, k=k: f"{k}: {m}")


def test_ddp_steps_with_global_batch_equal_one_process(two_processes, single):
    # 3 updates, 2 processes x 2 images (DDP averages gradients) == 1 process x 4 images
    for r in two_processes:
        _assert_same_weights(r["acc1"]["weights"], single["weights"])
    assert not torch.equal(single["weights"]["yolo_outputs.0.prediction.weight"],
                           _model().state_dict()["yolo_outputs.0.prediction.weight"])  # it did train


def test_ddp_with_accumulation_equals_one_process(two_processes, single):
    # 2 processes x 2 micro-batches of 1 image (no_sync for the first) == 1 process x 4 images
    for r in two_processes:
        _assert_same_weights(r["acc2"]["weights"], single["weights"])


def test_rank_without_boxes_trains_finite(two_processes, single):
    # step 0 gives rank 1 two images without any box: no hang, finite losses on both ranks
    for r in two_processes:
        assert all(np.isfinite(v) for k, v in r["acc1"]["stats"].items() if k.endswith("loss"))
    assert two_processes[0]["acc1"]["stats"]["epoch_iter"] == STEPS


def test_a_stop_reaching_one_process_stops_all_after_the_same_update(two_processes):
    for r in two_processes:
        assert r["stop"]["stats"]["stopped"] and r["stop"]["stats"]["epoch_iter"] == 2
        assert r["stop"]["stop_set_to"] is True  # so fit takes the stop branch (rank 0 checkpoints)


def test_eval_shards_score_each_image_once_in_dataset_order(two_processes):
    for r in two_processes:  # gathered on every process
        assert r["eval"]["yolo5"] == [0, 1, 2, 3, 4]
        assert r["eval"]["yolo1"] == [0]  # rank 1's shard is empty
        assert r["eval"]["rcnn7"] == list(range(7))


def test_eval_shard_is_contiguous_disjoint_and_unpadded():
    assert [list(eval_shard(5, r, 2)) for r in range(2)] == [[0, 1, 2], [3, 4]]
    assert [list(eval_shard(2, r, 4)) for r in range(4)] == [[0], [1], [], []]
    assert [len(eval_shard(10, r, 4)) for r in range(4)] == [3, 3, 2, 2]
    with pytest.raises(ValueError, match="rank 2 is outside world_size 2"):
        eval_shard(4, 2, 2)


def test_eval_batches_keep_dataset_order_and_split_at_group_changes():
    groups = [0, 1, 1, 0, 0, 0, 1]
    assert list(EvalBatchSampler(7, 2, group_ids=groups)) == [[0], [1, 2], [3, 4], [5], [6]]
    assert list(EvalBatchSampler(7, 2, group_ids=groups, rank=1, world_size=2)) == [[4, 5], [6]]
    assert list(EvalBatchSampler(3, 2)) == [[0, 1], [2]]
    assert len(EvalBatchSampler(1, 2, rank=1, world_size=2)) == 0


def _train_one(accumulate, batches, scaler=None):
    net = _model()
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)
    sched = _Schedule()
    stats = train_one_epoch(net, batches, opt, sched, epoch=0, device=torch.device("cpu"), log_interval=0,
                            accumulate=accumulate, scaler=scaler)
    return net.state_dict(), stats, sched.steps


@pytest.mark.parametrize("accumulate", [2, 4])
def test_accumulating_micro_batches_equals_one_batch(accumulate):
    batches = _batches()[1:]  # 2 updates of 4 images
    ref, ref_stats, ref_steps = _train_one(1, batches)
    acc, stats, steps = _train_one(accumulate, batches)
    assert steps == ref_steps == 2  # the schedule steps once per update, not per micro-batch
    assert stats["epoch_iter"] == 2
    _assert_same_weights(acc, ref)
    for k in ("obj_loss", "center_loss", "scale_loss", "cls_loss"):  # logged: the whole batch's losses
        assert stats[k] == pytest.approx(ref_stats[k], rel=1e-5)


def test_accumulation_with_a_loss_scaler():
    # AMP's GradScaler: each micro-batch's scaled loss is backpropagated, one unscale + step per update
    ref, _, _ = _train_one(1, _batches()[:1])
    acc, _, _ = _train_one(2, _batches()[:1], scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    _assert_same_weights(acc, ref)


def test_batch_that_does_not_split_into_micro_batches_is_an_error():
    with pytest.raises(ValueError, match="3 images does not split into 2 equal micro-batches"):
        _train_one(2, [TrainBatch(*(t[:3] for t in _batches()[0][:2]))])


@pytest.mark.parametrize("name,kwargs", [
    ("yolo3_mobilenet0.25_custom", dict(channels=[8, 8, 8])),
    ("faster_rcnn_resnet50_v1b_custom", dict(scales=(2, 4), roi_size=(4, 4), num_sample=16)),
    ("faster_rcnn_fpn_resnet50_v1b_custom", dict(num_sample=16)),
])
def test_batch_without_boxes_gives_finite_losses_and_every_gradient(name, kwargs):
    # a process whose whole batch has no box must still produce a gradient for every trainable
    # parameter: DDP's all-reduce (find_unused_parameters=False) would otherwise wait forever
    torch.manual_seed(0)
    net = model_zoo.get_model(name, classes=["a", "b"], **kwargs).train()
    losses = net(torch.randn(2, 3, 64, 96), -torch.ones(2, 1, 6))
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert [k for k, p in net.named_parameters() if p.requires_grad and p.grad is None] == []
