"""The learning rate of every optimizer update, recorded while the three training scripts run as a
user runs them, against GluonCV's schedule worked out by hand (the n-th update uses ``lr(n)``:
``gluon.Trainer`` asks its scheduler for ``num_update`` = 1, 2, ... in train_yolo3.py and
train_imagenet.py; train_faster_rcnn.py sets batch i's lr, i = 0, 1, ..., before its update).

The rates are read by a global optimizer step pre-hook, so they are what each update really used,
also across a stop and ``--resume`` in the middle of an epoch.
"""
import pytest
from torch.optim.optimizer import register_optimizer_step_pre_hook

import train_faster_rcnn
import train_imagenet
import train_yolo3
from test_train_faster_rcnn import TINY as FRCNN_TINY
from test_train_imagenet import tiny_folder  # noqa: F401  (fixture)


@pytest.fixture
def record_lrs():
    lrs = []
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
    yield lrs
    handle.remove()


def _stop_after(monkeypatch, steps):
    """Requests a stop after ``steps`` updates, as a SIGTERM would (see conftest.stop_resume_and_compare)."""
    from gluon_bof import fit as fit_module
    from gluon_bof.engine import StopRequest

    class StopAfter(StopRequest):
        count = 0

        @property
        def requested(self):
            StopAfter.count += 1
            return StopAfter.count >= steps

        @requested.setter
        def requested(self, value):
            pass

    monkeypatch.setattr(fit_module, "StopRequest", StopAfter)
    return lambda: monkeypatch.setattr(fit_module, "StopRequest", StopRequest)


YOLO = ["--network", "mobilenet0.25", "--head-channels", "16,8,8", "--batch-size", "4", "-j", "0",
        "--no-random-shape", "--data-shape", "64", "--epochs", "4", "--num-samples", "8", "--lr", "0.3",
        "--warmup-epochs", "2", "--lr-decay-epoch", "3", "--log-interval", "0", "--save-interval", "0",
        "--val-interval", "4"]
# GluonCV (issue 11's worked example): 2 warmup epochs of 2 updates from 0, x0.1 at epoch 3 of 4
YOLO_EXPECTED = [0.1, 0.2, 0.3, 0.3, 0.3, 0.03, 0.03, 0.03]


def test_yolo3_updates_use_gluoncv_rates(synthetic_root, tmp_path, record_lrs):
    train_yolo3.main(YOLO + ["--data-root", synthetic_root, "--save-prefix", str(tmp_path) + "/"])
    assert record_lrs == pytest.approx(YOLO_EXPECTED, rel=1e-12)


def test_yolo3_rates_continue_exactly_after_a_mid_epoch_resume(synthetic_root, tmp_path, record_lrs,
                                                                 monkeypatch):
    args = YOLO + ["--data-root", synthetic_root, "--save-prefix", str(tmp_path) + "/"]
    restore = _stop_after(monkeypatch, 3)  # stops in epoch 1 after its first update
    train_yolo3.main(args)
    assert len(record_lrs) == 3
    restore()
    train_yolo3.main(args + ["--resume", str(tmp_path / "yolo3_mobilenet0.25_voc_last.pth")])
    assert record_lrs == pytest.approx(YOLO_EXPECTED, rel=1e-12)


def test_faster_rcnn_updates_use_gluoncv_rates(tmp_path, record_lrs):
    # GluonCV: batch i of epoch 0 (i <= W) uses lr * (f (1 - i/W) + i/W); x0.1 from epoch 1 on
    from gluon_bof.data.synthetic import generate

    root = generate(str(tmp_path / "data"), num_trainval=8, num_test=2)
    lr, w, f = 0.01, 2, 1.0 / 3.0
    args = [a if a != "cosine" else "step" for a in FRCNN_TINY]
    train_faster_rcnn.main(args + ["--data-root", root, "--save-prefix", str(tmp_path) + "/", "--lr-warmup",
                                   str(w), "--lr-decay-epoch", "1", "--val-interval", "9", "--max-epoch-iters", "4"])
    expected = [lr * (f * (1 - i / w) + i / w) for i in range(w + 1)] + [lr] + [lr * 0.1] * 4
    assert record_lrs == pytest.approx(expected, rel=1e-12)


def test_imagenet_updates_use_gluoncv_rates(tiny_folder, tmp_path, record_lrs):  # noqa: F811
    # 24 images / 8 = 3 updates an epoch. GluonCV's LRSequential: iterations 0..2 warm up linearly
    # from 0 to lr (0, lr/2, lr), iterations 3..8 are cosine over N + 1 = 6 iterations,
    # lr (1 + cos(pi T / 5)) / 2 with T = it - 3; past the end the last value. Update n uses it = n.
    import math

    train_imagenet.main(["--model", "mobilenet0.25", "--input-size", "32", "--batch-size", "8", "-j", "0",
                         "--num-epochs", "3", "--lr", "0.4", "--lr-base-batch", "8", "--lr-mode", "cosine",
                         "--warmup-epochs", "1", "--log-interval", "0", "--save-frequency", "0",
                         "--val-interval", "9", "--data-dir", tiny_folder, "--save-dir", str(tmp_path)])
    lr = 0.4
    expected = [lr / 2, lr] + [lr * (1 + math.cos(math.pi * min(t, 5) / 5)) / 2 for t in range(0, 7)]
    assert record_lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
