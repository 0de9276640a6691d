"""engine.evaluate: what it hands the metric (clipped boxes, labels split into gt columns)."""
import numpy as np
import pytest
import torch

from gluon_bof.data.loader import EvalBatch
from gluon_bof.engine import evaluate


class _OutsideBox(torch.nn.Module):
    """Predicts one box reaching past every border of any image."""

    def forward(self, x, image_sizes=None):
        b = x.shape[0]
        return torch.zeros(b, 1, 1), torch.ones(b, 1, 1), torch.tensor([[-5.0, -7.0, 500.0, 600.0]]).repeat(b, 1, 1)


class _Recorder:
    def reset(self):
        self.calls = []

    def update(self, *args):
        self.calls.append(args)

    def get(self):
        return ["mAP"], [0.0]


def _labels(b):
    lab = np.full((b, 1, 6), -1, np.float32)
    lab[:, 0] = [1, 2, 3, 4, 0, 1]
    return torch.from_numpy(lab)


def test_boxes_are_clipped_to_the_input_size():
    metric = _Recorder()
    evaluate(_OutsideBox(), [EvalBatch(torch.zeros(2, 3, 32, 48), _labels(2))], metric, device=torch.device("cpu"))
    boxes, ids, scores, gt_boxes, gt_ids, difficult = metric.calls[0]
    np.testing.assert_array_equal(boxes[:, 0], [[0, 0, 48, 32]] * 2)
    np.testing.assert_array_equal(gt_boxes[:, 0], [[1, 2, 3, 4]] * 2)
    assert gt_ids[0, 0, 0] == 0 and difficult[0, 0, 0] == 1


def test_padded_batches_clip_each_image_to_its_own_size():
    metric = _Recorder()
    sizes = torch.tensor([[20, 30], [32, 48]])  # (h, w) of each real image inside the padded batch
    evaluate(_OutsideBox(), [EvalBatch(torch.zeros(2, 3, 32, 48), _labels(2), sizes)], metric, device=torch.device("cpu"))
    np.testing.assert_array_equal(metric.calls[0][0][:, 0], [[0, 0, 30, 20], [0, 0, 48, 32]])


def test_evaluate_scales_clipped_boxes_back_to_the_original_image():
    metric = _Recorder()
    sizes = torch.tensor([[32, 48], [32, 40]])  # (h, w) inside the padded batch
    scales = torch.tensor([[2.0, 2.5], [0.5, 1.0]])  # (sy, sx): original / resized
    labels = _labels(2)
    evaluate(_OutsideBox(), [EvalBatch(torch.zeros(2, 3, 32, 48), labels, sizes, scales)], metric,
             device=torch.device("cpu"))
    boxes, _, _, gt_boxes, _, _ = metric.calls[0]
    # clipped to (0, 0, w, h) first, then x * sx, y * sy; labels are passed through unscaled
    np.testing.assert_allclose(boxes[:, 0], [[0, 0, 48 * 2.5, 32 * 2.0], [0, 0, 40 * 1.0, 32 * 0.5]])
    np.testing.assert_array_equal(gt_boxes[:, 0], [[1, 2, 3, 4]] * 2)


def test_metric_values_are_numbers_and_coco_is_asked_unrounded():
    from gluon_bof.engine import metric_values

    class Coco:
        def get(self, unrounded=False):
            return (["a", "mAP"], [0.123456, 0.5]) if unrounded else (["a", "mAP"], ["12.3", "50.0"])

    assert metric_values(Coco()) == (["a", "mAP"], [0.123456, 0.5])
    assert metric_values(_Recorder()) == (["mAP"], [0.0])


def test_a_second_signal_aborts_only_after_the_grace_period(monkeypatch):
    import signal

    from gluon_bof import engine

    now = [100.0]
    monkeypatch.setattr(engine.time, "monotonic", lambda: now[0])
    with engine.StopRequest(grace=2.0) as stop:
        stop._handler(signal.SIGTERM, None)
        assert stop.requested
        now[0] = 101.5  # the same signal forwarded by torchrun and sent by the scheduler
        stop._handler(signal.SIGTERM, None)
        now[0] = 102.5  # a user pressing Ctrl-C again, later: abort
        with pytest.raises(KeyboardInterrupt):
            stop._handler(signal.SIGINT, None)


class _LossAt:
    """A 'model' whose loss is finite except at one update, plus a statistic that is not a loss."""

    def __init__(self, bad_update):
        self.w = torch.nn.Parameter(torch.ones(1))
        self.bad_update, self.calls = bad_update, 0

    def train(self):
        return self

    def __call__(self, images, labels):
        self.calls += 1
        value = float("nan") if self.calls == self.bad_update else 1.0
        return {"a_loss": self.w * value, "b_loss": 2 * self.w, "seen_pos": torch.tensor(3.0)}


def test_losses_are_summed_statistics_are_not_and_a_nan_is_named():
    from gluon_bof.data.loader import TrainBatch
    from gluon_bof.engine import train_one_epoch
    from gluon_bof.utils.logger import EpochMeter

    batches = [TrainBatch(torch.zeros(2, 3, 4, 4), -torch.ones(2, 1, 6))] * 3
    model = _LossAt(bad_update=0)
    opt = torch.optim.SGD([model.w], lr=0.0)
    sched = type("S", (), {"step": lambda self: None})()
    stats = train_one_epoch(model, batches, opt, sched, epoch=0, device=torch.device("cpu"), log_interval=0)
    assert (stats["a_loss"], stats["b_loss"], stats["seen_pos"]) == (1.0, 2.0, 3.0)
    assert model.w.grad.item() == 3.0  # d(a + b)/dw: the statistic is not part of the loss
    model = _LossAt(bad_update=2)
    with pytest.raises(FloatingPointError, match="non-finite loss at update 2: a_loss=nan"):
        train_one_epoch(model, batches, opt, sched, epoch=0, device=torch.device("cpu"), log_interval=0,
                        meter=EpochMeter())
