"""Eight YOLOv3 updates through our training loop against GluonCV's own loop (train_yolo3.py).

The fixture ``tests/fixtures/yolo3_train.npz`` comes from ``tests/fixtures/gen_yolo3_train.py``:
GluonCV 0.10.5 / MXNet 1.9.1 training a narrow YOLOv3 (Darknet ``[1, 1, 1, 1, 1]`` x ``[4, 8, 8,
16, 16, 32]``, head channels ``[16, 8, 8]``, 3 classes, anchors x0.15, 64x64 inputs, batch 2, lr
1e-4) for 8 updates as its script does: targets from ``YOLO3DefaultTrainTransform``'s generator
with the mix-weight column, ``--no-wd``, ``--label-smooth``, ``LRSequential`` warmup + step (x0.1
at epoch 3 of 4, warmup 2) or cosine (warmup 1), ``gluon.Trainer('sgd', wd 5e-4, momentum 0.9)``,
``autograd.backward`` of the summed per-image losses and ``trainer.step(batch_size)``.

Here the same model trains through ``gluon_bof.fit.fit`` with the optimizer and schedule from
``build_optimizer_and_schedule`` called with the keyword arguments scripts/train_yolo3.py's
``run()`` passes (``--no-wd``, ``--lr-mode``, ``--warmup-epochs``, ``--lr-decay-epoch``, the
default ``--sgd-rule mxnet``), after ``set_running_var_rule(model, 'biased')`` (the default
``--bn-running-var``), fed the fixture's four batches (with their mix weights) in GluonCV's order
by a replay loader. The model is ``YOLOV3`` built by hand from a narrow ``DarknetV3`` cut as
``_yolo3`` cuts Darknet-53, with the keyword arguments run() gives ``get_model``
(``label_smooth=True, label_smooth_mode='gluoncv'``: GluonCV's min(1/C, 1/40) smoothing, not our
paper default); the zoo builders only offer full-width backbones, and nothing but argument passing
lies between ``get_model`` and ``YOLOV3``. Weights come from ``draw_params`` (the generator's
recipe) through ``load_gluoncv_params``.

Compared: the lr of every update (an optimizer step pre-hook), the four losses of every update (a
forward hook), the first update's gradients (in the pre-hook) and, after the last update, the
change of every parameter and BatchNorm running statistic.

Precision: both sides run in float64, since a random network amplifies float32 noise at
LeakyReLU kinks and in train-mode BatchNorm (a 1e-10 relative weight perturbation moves this
network's gradients by ~5e-8) into percent-level gradient differences. MXNet's float64 run still
rounds to float32 in places (its LeakyReLU computes negative outputs in float32; SGD's lr and
momentum and BatchNorm's momentum are float32 parameters), so its first gradients lie ~1e-6 from
ours and the runs end ~1e-5 apart (GluonCV's default lr 1e-3 would make that percent level: the
trajectory is chaotic there, see the generator). Tolerances: losses 1e-4 relative; gradients 1e-3
and changes 1e-4 of each tensor's largest absolute value.

Sensitivity: the same run with ``sgd_rule='torch'`` (torch's SGD, lr outside the momentum buffer)
moves the weights measurably elsewhere; with weight decay on BatchNorm and biases (no ``--no-wd``)
too; with torch's unbiased BatchNorm running variance the weights stay and the running variances
move elsewhere.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from random_weights import draw_images, draw_params, unpack_spec  # tests/fixtures

import common  # scripts/common.py: what the training scripts build from their flags
import train_yolo3
from gluon_bof.data.loader import TrainBatch
from gluon_bof.fit import fit
from gluon_bof.model_zoo.darknet import DarknetV3
from gluon_bof.model_zoo.gluoncv import load_gluoncv_params
from gluon_bof.model_zoo.yolo3 import YOLO3_STRIDES, YOLOV3, scaled_anchors
from gluon_bof.nn.norm import set_running_var_rule
from gluon_bof.training import TrainingState

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "yolo3_train.npz"
LOSS_KEYS = ("obj_loss", "center_loss", "scale_loss", "cls_loss")
LOSS_RTOL, GRAD_TOL, DELTA_TOL = 1e-4, 1e-3, 1e-4
# the generator's model and run (tests/fixtures/gen_yolo3_train.py)
DARKNET, CUTS, HEAD_CHANNELS = ([1, 1, 1, 1, 1], [4, 8, 8, 16, 16, 32]), (0, 7, 9, 11), [16, 8, 8]
CLASSES, ANCHOR_SCALE, SIZE = ["a", "b", "c"], 0.15, 64
BATCH, ITERS_PER_EPOCH, EPOCHS = 2, 2, 4
SCHEDULES = {"step": ("step", 2, "3"), "cosine": ("cosine", 1, "3")}  # --lr-mode, --warmup-epochs, --lr-decay-epoch


@pytest.fixture(scope="module")
def fx():
    data = dict(np.load(FIXTURE))
    data["names"], data["shapes"], _ = unpack_spec(data)
    for seed, checksum in zip(data["image_seeds"], data["image_checksums"]):
        assert draw_images(int(seed), (BATCH, SIZE, SIZE)).sum(dtype=np.float64) == pytest.approx(float(checksum))
    return data


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: on a shared 2-core machine idle OpenMP threads cost 100x
    yield
    torch.set_num_threads(threads)


def build_model(fx, bn_running_var="biased"):
    """The generator's YOLOv3 as run() builds a zoo model: ``YOLOV3`` with the label-smoothing
    keyword arguments, then ``set_running_var_rule``; GluonCV's weights; float64."""
    base = DarknetV3(*DARKNET)
    stages = [nn.Sequential(*list(base.features)[a:b]) for a, b in zip(CUTS[:-1], CUTS[1:])]
    anchors = scaled_anchors(ANCHOR_SCALE)
    np.testing.assert_allclose(anchors, fx["anchors"], rtol=1e-12)
    model = YOLOV3(stages, HEAD_CHANNELS, anchors, YOLO3_STRIDES, CLASSES).configure_loss(
        label_smooth=True, label_smooth_eps=0.1, label_smooth_mode="gluoncv")
    model = set_running_var_rule(model, bn_running_var)
    load_gluoncv_params(model, draw_params(fx["names"], fx["shapes"], int(fx["seed"]), float(fx["gain"])))
    return model.double()


def gluoncv_keys(model):
    """GluonCV name -> our state-dict key (BatchNorm gamma/beta are our weight/bias)."""
    norms = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    out = {}
    for key in model.state_dict():
        prefix, _, leaf = key.rpartition(".")
        if leaf in ("num_batches_tracked", "anchors", "offsets"):
            continue
        if prefix in norms:
            leaf = {"weight": "gamma", "bias": "beta"}.get(leaf, leaf)
        out[f"{prefix}.{leaf}"] = key
    return out


class ReplaySampler:
    """Batch indices of GluonCV's run: epoch e, batch i is batch ``(e * per_epoch + i) % count``."""

    def __init__(self, count, per_epoch):
        self.count, self.per_epoch, self.epoch, self.start = count, per_epoch, 0, 0

    def set_epoch(self, epoch, start_batch=0):
        self.epoch, self.start = epoch, start_batch

    def __len__(self):
        return self.per_epoch

    def __iter__(self):
        first = self.epoch * self.per_epoch
        return iter([(first + i) % self.count for i in range(self.start, self.per_epoch)])


class ReplayLoader:
    """``(images [B, 3, 64, 64] float64, labels [B, M, 6])`` in the sampler's order."""

    def __init__(self, batches, sampler):
        self.batches, self.sampler = batches, sampler

    def __len__(self):
        return len(self.sampler) - self.sampler.start

    def __iter__(self):
        return (self.batches[i] for i in self.sampler)


def train(fx, tmp_path, schedule, sgd_rule="mxnet", bn_running_var="biased", no_wd=True):
    """Trains through ``fit`` as run() does; returns the per-update lrs and losses, the first
    update's gradients (by our parameter name) and the model."""
    mode, warmup, lr_decay_epoch = SCHEDULES[schedule]
    model = build_model(fx, bn_running_var)
    batches = [TrainBatch(torch.from_numpy(draw_images(int(s), (BATCH, SIZE, SIZE))).double(), torch.from_numpy(lab))
               for s, lab in zip(fx["image_seeds"], fx["labels"])]
    sampler = ReplaySampler(len(batches), ITERS_PER_EPOCH)
    loader = ReplayLoader(batches, sampler)
    # the script's own flags, turned into the optimizer, schedule and run configuration as run() does
    args = train_yolo3.parse_args([
        "--lr", str(float(fx["lr"])), "--momentum", str(float(fx["momentum"])), "--wd", str(float(fx["wd"])),
        "--batch-size", str(BATCH), "--epochs", str(EPOCHS), "--lr-mode", mode, "--warmup-epochs", str(warmup),
        "--lr-decay-epoch", lr_decay_epoch, "--sgd-rule", sgd_rule, "--bn-running-var", bn_running_var,
        "--save-interval", "0", "--log-interval", "0", "--save-prefix", str(tmp_path) + "/",
        *(["--no-wd"] if no_wd else [])])
    optimizer, lr_scheduler = common.optimizer_and_schedule(args, model, iters_per_epoch=len(sampler))
    config = common.run_config(args, save_prefix=str(tmp_path / f"{schedule}_{sgd_rule}_{bn_running_var}_{no_wd}"),
                               device=torch.device("cpu"), model_name="yolo3_narrow", model_kwargs={})
    names = {id(p): n for n, p in model.named_parameters()}
    lrs, losses, grads = [], [], {}

    def pre_step(opt, args, kwargs):
        lrs.append([g["lr"] for g in opt.param_groups])
        if not grads:
            grads.update({names[id(p)]: p.grad.detach().clone() for g in opt.param_groups for p in g["params"]})

    def on_forward(module, inputs, output):
        losses.append([output[k].detach().item() for k in LOSS_KEYS])

    hooks = [register_optimizer_step_pre_hook(pre_step), model.register_forward_hook(on_forward)]
    try:
        fit(TrainingState(model, optimizer, lr_scheduler), config, train_loader=loader, train_sampler=sampler)
    finally:
        for h in hooks:
            h.remove()
    assert all(len(set(group_lrs)) == 1 for group_lrs in lrs)  # decayed and no-wd groups alike
    return np.array([g[0] for g in lrs]), np.array(losses), grads, model


def _max_err(ours, ref):
    """``max |ours - ref|`` over ``max |ref|``."""
    return np.abs(ours - ref).max() / np.abs(ref).max()


def changes(fx, model, schedule):
    """``{GluonCV name: (our change, GluonCV's change)}`` of every parameter and running stat."""
    initial = draw_params(fx["names"], fx["shapes"], int(fx["seed"]), float(fx["gain"]))
    state = model.state_dict()
    return {g: (state[k].numpy() - initial[g].astype(np.float64), fx[f"{schedule}_delta.{g}"])
            for g, k in gluoncv_keys(model).items()}


def _worst(errors):
    return sorted(errors.items(), key=lambda kv: -kv[1])[:5]


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_updates_match_gluoncv_training_loop(fx, tmp_path, schedule):
    lrs, losses, grads, model = train(fx, tmp_path, schedule)
    np.testing.assert_allclose(lrs, fx[f"{schedule}_lr"], rtol=1e-12, atol=1e-18)
    if schedule == "step":  # GluonCV's eight updates at 1/3, 2/3, 1, 1, 1, .1, .1, .1 of lr
        np.testing.assert_allclose(lrs / float(fx["lr"]), [1 / 3, 2 / 3, 1, 1, 1, .1, .1, .1], rtol=1e-12)
    np.testing.assert_allclose(losses, fx[f"{schedule}_losses"], rtol=LOSS_RTOL)

    keys = gluoncv_keys(model)
    prefix = f"{schedule}_grad."
    ref_grads = {k[len(prefix):]: v for k, v in fx.items() if k.startswith(prefix)}
    assert sorted(ref_grads) == sorted(g for g, k in keys.items() if k in grads)  # every trainable one
    errors = {g: _max_err(grads[keys[g]].numpy(), ref) for g, ref in ref_grads.items()}
    assert max(errors.values()) < GRAD_TOL, _worst(errors)

    moved = changes(fx, model, schedule)
    assert all(np.abs(ref).max() > 0 for _, ref in moved.values())
    errors = {g: _max_err(ours, ref) for g, (ours, ref) in moved.items()}
    assert max(errors.values()) < DELTA_TOL, _worst(errors)


def test_comparison_detects_other_training_rules(fx, tmp_path):
    """Not vacuous: torch's SGD rule, or weight decay on BatchNorm and biases, moves the weights
    measurably elsewhere; torch's unbiased running variance leaves the weights but moves the
    running variances elsewhere."""
    def errors(model, which):
        return [_max_err(ours, ref) for g, (ours, ref) in changes(fx, model, "step").items() if which(g)]

    is_stat = lambda g: g.endswith(("running_mean", "running_var"))  # noqa: E731
    assert max(errors(train(fx, tmp_path, "step", sgd_rule="torch")[3], lambda g: not is_stat(g))) > 100 * DELTA_TOL
    assert max(errors(train(fx, tmp_path, "step", no_wd=False)[3], lambda g: not is_stat(g))) > 10 * DELTA_TOL
    unbiased = train(fx, tmp_path, "step", bn_running_var="unbiased")[3]
    assert max(errors(unbiased, lambda g: not g.endswith("running_var"))) < DELTA_TOL
    assert max(errors(unbiased, lambda g: g.endswith("running_var"))) > 10 * DELTA_TOL
