"""Eight Faster R-CNN updates through our training loop against GluonCV's own loop
(train_faster_rcnn.py).

The fixture ``tests/fixtures/rcnn_train.npz`` comes from ``tests/fixtures/gen_rcnn_train.py``:
GluonCV 0.10.5 / MXNet 1.9.1 training a narrow C4 ``FasterRCNN`` (features: conv 3->8 s2 +
frozen BatchNorm + ReLU, then 3 x (conv s2 + ReLU) to 24 channels at stride 16; top features:
conv 24->32 s2 + ReLU; 9 anchors, RPN 16 channels, 50 proposals, 16 RoIs per image, RoIAlign 4x4;
3 classes; the stem conv and its BatchNorm frozen by ``train_patterns``) for 8 updates as its
script does: RPN targets from ``FasterRCNNDefaultTrainTransform`` with the net's anchors, RoIs
from the network's ``RCNNTargetSampler``, the four losses normalised as ``ForwardBackwardTask``
does, ``gluon.Trainer('sgd', lr 0.01, wd 5e-4, momentum 0.9)``, the epoch-0 warmup
(``--lr-warmup 3``, factor 1/3), x0.1 at epoch 1 of 2 and ``trainer.step(batch_size)``; batch 2
as GluonCV trains it, one image per device (two CPU contexts).

Here the same model trains through ``gluon_bof.fit.fit``, with the optimizer and schedule from
``build_optimizer_and_schedule`` called with the keyword arguments scripts/train_faster_rcnn.py's
``run()`` passes, from the script's own ``parse_args`` of the matching flags (its
``warmup_schedule``, ``first_update=0``, default ``--sgd-rule mxnet``, no ``--no-wd``: GluonCV's
Faster R-CNN script has no such flag) after ``set_running_var_rule(model, args.bn_running_var)``,
fed GluonCV's batches in its order by a replay loader in our Faster R-CNN loader's format
(``images, labels [B, M, 6], image_sizes``). The model is our ``FasterRCNN(features,
top_features, classes, ...)`` built from the same parts (GluonCV's ``train_patterns`` -> the stem
conv's ``requires_grad_(False)`` and :class:`FrozenBatchNorm2d`, as the zoo builders freeze),
weights from ``draw_params`` (the generator's recipe) through ``load_gluoncv_params``.

Both sides draw their samples at random (GluonCV: NumPy for the 256 RPN anchors; MXNet for the
RoI shuffle, then sorts whose tie order on CPU is ``std::sort``'s, which makes duplicates that a
replayed shuffle through our stable slicing would not), so ours replays GluonCV's: the model's
``sample_draws`` is a :class:`ReplayDraws` that orders each image's anchors with GluonCV's sampled
ones first and picks the RoI candidates GluonCV's sampler drew (after checking that our labels of
them are GluonCV's). Everything else (matching, quotas, labels, encoding, losses) is our code.

Compared: the lr of every update (an optimizer step pre-hook), the four losses of every update (a
forward hook: the batch means, GluonCV's per-device values averaged), the first update's
gradients (in the pre-hook; GluonCV's summed over devices / batch size) and, after the last update,
the change of every parameter and BatchNorm statistic (the frozen ones must not move).

Precision: both sides run in float64 (GluonCV needs two dtype shims for it, see the generator). A
random network amplifies float32 noise (~1e-7 per layer) at ReLU kinks and in the proposal NMS and
sampler thresholds, so float32 runs of two implementations cannot be compared update by update.
Our proposals and losses are computed in float32 inside the float64 model (``generate_proposals``,
``FasterRCNNLoss``), so agreement is ~1e-7, not ~1e-12; the tolerances (losses 1e-4 relative;
gradients 1e-3 and updates 1e-4 of each tensor's largest absolute value) leave room for it and for
the fixture's float32 storage.

Sensitivity: the same run with ``--sgd-rule torch`` (torch's SGD, lr outside the momentum buffer)
must move the weights measurably elsewhere.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from random_weights import draw_params, unpack_spec  # tests/fixtures

import common  # scripts/common.py: what the training scripts build from their flags
import train_faster_rcnn
from gluon_bof.data.loader import TrainBatch
from gluon_bof.fit import fit
from gluon_bof.model_zoo.gluoncv import load_gluoncv_params
from gluon_bof.model_zoo.rcnn import FasterRCNN, SampleDraws
from gluon_bof.nn.norm import FrozenBatchNorm2d, set_running_var_rule
from gluon_bof.training import TrainingState

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "rcnn_train.npz"
LOSS_KEYS = ("rpn_obj_loss", "rpn_box_loss", "rcnn_cls_loss", "rcnn_box_loss")
LOSS_RTOL, GRAD_TOL, DELTA_TOL = 1e-4, 1e-3, 1e-4


@pytest.fixture(scope="module")
def fx():
    data = dict(np.load(FIXTURE))
    data["names"], data["shapes"], _ = unpack_spec(data)
    data["cfg"] = json.loads(str(data["config"]))
    return data


def script_args(cfg, *extra):
    """train_faster_rcnn.py's namespace for the generator's run."""
    args = train_faster_rcnn.parse_args([
        "--batch-size", str(cfg["batch_size"]), "--epochs", str(cfg["epochs"]), "--lr", str(cfg["lr"]),
        "--wd", str(cfg["wd"]), "--momentum", str(cfg["momentum"]), "--lr-decay", str(cfg["lr_decay"]),
        "--lr-decay-epoch", cfg["lr_decay_epoch"], "--lr-warmup", str(cfg["lr_warmup"]),
        "--short", str(cfg["model"]["short"]), "--max-size", str(cfg["model"]["max_size"]), *extra])
    assert args.lr_warmup_factor == cfg["lr_warmup_factor"]  # GluonCV's default 1/3 on both sides
    assert (args.rpn_smoothl1_rho, args.rcnn_smoothl1_rho) == (cfg["rpn_smoothl1_rho"], cfg["rcnn_smoothl1_rho"])
    return args


def build_model(fx, args):
    """The generator's network from our parts, with the loss options run() gives ``get_model``;
    ``set_running_var_rule`` as run(); GluonCV's weights; float64."""
    cfg = fx["cfg"]
    chans = cfg["features"]
    layers = [nn.Conv2d(3, chans[0], 3, 2, 1), FrozenBatchNorm2d(chans[0]), nn.ReLU(inplace=True)]
    for c_in, c in zip(chans[:-1], chans[1:]):
        layers += [nn.Conv2d(c_in, c, 3, 2, 1), nn.ReLU(inplace=True)]
    features = nn.Sequential(*layers)
    features[0].requires_grad_(False)  # GluonCV's train_patterns '^(?!stem_).*'
    top = nn.Sequential(nn.Conv2d(chans[-1], cfg["top"], 3, 2, 1), nn.ReLU(inplace=True))
    opts = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["model"].items()}
    model = FasterRCNN(features, top, cfg["classes"], **opts).configure_loss(
        label_smooth=args.label_smooth, label_smooth_eps=args.label_smooth_eps, mixup_mode=args.mixup_mode,
        rpn_smoothl1_rho=args.rpn_smoothl1_rho, rcnn_smoothl1_rho=args.rcnn_smoothl1_rho)
    model = set_running_var_rule(model, args.bn_running_var)
    load_gluoncv_params(model, draw_params(fx["names"], fx["shapes"], int(fx["seed"]), float(fx["gain"])))
    return model.double()


def gluoncv_keys(model):
    """GluonCV name -> our state-dict key (BatchNorm gamma/beta are our weight/bias)."""
    norms = {n for n, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)}
    out = {}
    for key in model.state_dict():
        prefix, _, leaf = key.rpartition(".")
        if prefix in norms:
            leaf = {"weight": "gamma", "bias": "beta"}.get(leaf, leaf)
        out[f"{prefix}.{leaf}"] = key
    return out


class ReplayDraws(SampleDraws):
    """GluonCV's samples, image after image (``FasterRCNN.sample_draws``): for the RPN an order
    of the anchors with the ones GluonCV's transform sampled first (so our quotas keep exactly
    those), for the RCNN the candidates GluonCV's sampler drew, after checking that our
    positive / negative labels of them are GluonCV's (``check``; a run that trains differently
    makes other proposals, and then only the indices are replayed)."""

    def __init__(self, rpn_sampled, rcnn_pick, rcnn_samples, check=True):
        super().__init__()
        self.check = check
        self.rpn = list(torch.from_numpy(rpn_sampled.reshape(-1, rpn_sampled.shape[-1])))
        self.rcnn = list(zip(torch.from_numpy(rcnn_pick.reshape(-1, rcnn_pick.shape[-1]).astype(np.int64)),
                             torch.from_numpy(rcnn_samples.reshape(-1, rcnn_samples.shape[-1]))))

    def rpn_order(self, n):
        sampled = self.rpn.pop(0)
        assert sampled.numel() == n
        return torch.cat([sampled.nonzero()[:, 0], (~sampled).nonzero()[:, 0]])

    def rcnn_pick(self, positive, negative, num_sample, max_pos):
        pick, samples = self.rcnn.pop(0)
        assert pick.numel() == num_sample and int(pick.max()) < positive.numel()
        if self.check:
            assert torch.equal(positive[pick], samples == 1) and torch.equal(negative[pick], samples == -1)
        return pick


class ReplaySampler:
    """Epoch e, batch i is GluonCV's update ``e * per_epoch + i``."""

    def __init__(self, per_epoch):
        self.per_epoch, self.epoch, self.start = per_epoch, 0, 0

    def set_epoch(self, epoch, start_batch=0):
        self.epoch, self.start = epoch, start_batch

    def __len__(self):
        return self.per_epoch

    def __iter__(self):
        return iter(range(self.epoch * self.per_epoch + self.start, (self.epoch + 1) * self.per_epoch))


class ReplayLoader:
    """``(images [B, 3, H, W] float64, labels [B, M, 6] (xyxy, class, mix weight 1; -1 rows),
    image_sizes [B, 2])`` in the sampler's order."""

    def __init__(self, batches, sampler):
        self.batches, self.sampler = batches, sampler

    def __len__(self):
        return len(self.sampler) - self.sampler.start

    def __iter__(self):
        return (self.batches[i] for i in self.sampler)


def replay_batches(fx):
    lut = fx["lut"]  # GluonCV's to_tensor + normalize of each byte value, per channel
    batches = []
    for images, labels in zip(fx["images"], fx["labels"]):
        x = np.stack([lut[c][images[:, c]] for c in range(3)], axis=1)  # [B, 3, H, W] float32
        mix = np.where(labels[..., 4:5] >= 0, 1.0, -1.0).astype(np.float32)
        sizes = torch.tensor([x.shape[-2:]] * len(x), dtype=torch.int64)
        batches.append(TrainBatch(torch.from_numpy(x).double(), torch.from_numpy(np.concatenate([labels, mix], -1)),
                                  sizes))
    return batches


def train(fx, tmp_path, *flags, check_labels=True):
    """Trains through ``fit`` as run() does; returns the per-update lrs and losses, the first
    update's gradients and the model."""
    args = script_args(fx["cfg"], *flags)
    model = build_model(fx, args)
    model.sample_draws = ReplayDraws(fx["rpn_cls"] >= 0, fx["rcnn_pick"], fx["rcnn_samples"], check=check_labels)
    batches = replay_batches(fx)
    sampler = ReplaySampler(len(batches) // args.epochs)
    loader = ReplayLoader(batches, sampler)
    # as scripts/train_faster_rcnn.py run(): the same helpers, from the script's own flags
    optimizer, lr_scheduler = common.optimizer_and_schedule(
        args, model, iters_per_epoch=len(sampler), first_update=0,
        **train_faster_rcnn.warmup_schedule(args.lr_warmup, args.lr_warmup_factor, args.warmup_epochs, args.warmup_lr))
    config = common.run_config(args, save_prefix=str(tmp_path / f"frcnn_{args.sgd_rule}"), device=torch.device("cpu"),
                               model_name="faster_rcnn_narrow", model_kwargs={})
    names = {id(p): n for n, p in model.named_parameters()}
    lrs, losses, grads = [], [], {}

    def pre_step(opt, a, kw):
        lrs.append([g["lr"] for g in opt.param_groups])
        if not grads:
            grads.update({names[id(p)]: p.grad.detach().clone() for g in opt.param_groups for p in g["params"]})

    def on_forward(module, inputs, output):
        losses.append([output[k].item() for k in LOSS_KEYS])

    hooks = [register_optimizer_step_pre_hook(pre_step), model.register_forward_hook(on_forward)]
    try:
        fit(TrainingState(model, optimizer, lr_scheduler), config, train_loader=loader, train_sampler=sampler)
    finally:
        for h in hooks:
            h.remove()
    assert not model.sample_draws.rpn and not model.sample_draws.rcnn  # every recorded draw replayed
    assert all(len(set(group_lrs)) == 1 for group_lrs in lrs)
    return np.array([g[0] for g in lrs]), np.array(losses), grads, model


def _max_err(ours, ref):
    """``max |ours - ref|`` over ``max |ref|`` (0 when both vanish)."""
    scale = np.abs(ref).max()
    err = np.abs(ours - ref).max()
    return err / scale if scale > 0 else err


def deltas(fx, model):
    """``{GluonCV name: (our change, GluonCV's change)}`` of every parameter and statistic."""
    initial = draw_params(fx["names"], fx["shapes"], int(fx["seed"]), float(fx["gain"]))
    state = model.state_dict()
    return {g: (state[k].numpy() - initial[g].astype(np.float64), fx[f"update.{g}"])
            for g, k in gluoncv_keys(model).items() if g in initial}


def test_updates_match_gluoncv_training_loop(fx, tmp_path):
    lrs, losses, grads, model = train(fx, tmp_path)
    np.testing.assert_allclose(lrs, fx["lrs"], rtol=1e-12)
    # GluonCV's warmup over batches 0..3 of epoch 0 from lr / 3, then x0.1 at epoch 1
    np.testing.assert_allclose(lrs / fx["cfg"]["lr"], [1 / 3, 5 / 9, 7 / 9, 1, .1, .1, .1, .1], rtol=1e-12)
    np.testing.assert_allclose(losses, fx["losses"], rtol=LOSS_RTOL)

    keys = gluoncv_keys(model)
    ref_grads = {k[5:]: v for k, v in fx.items() if k.startswith("grad.")}
    assert sorted(ref_grads) == sorted(g for g, k in keys.items() if k in grads)  # the stem is frozen
    worst = {g: _max_err(grads[keys[g]].numpy(), ref) for g, ref in ref_grads.items()}
    assert max(worst.values()) < GRAD_TOL, sorted(worst.items(), key=lambda kv: -kv[1])[:5]

    changes = deltas(fx, model)
    frozen = [g for g in changes if g.startswith(("features.0.", "features.1."))]
    assert len(frozen) == 6 and all(not changes[g][0].any() and not changes[g][1].any() for g in frozen)
    assert all(np.abs(ref).max() > 0 for g, (ours, ref) in changes.items() if g not in frozen)
    worst = {g: _max_err(ours, ref) for g, (ours, ref) in changes.items()}
    assert max(worst.values()) < DELTA_TOL, sorted(worst.items(), key=lambda kv: -kv[1])[:5]


def test_comparison_detects_torch_sgd_rule(fx, tmp_path):
    """Not vacuous: torch's SGD rule (lr outside the momentum buffer) moves the weights
    measurably elsewhere under the warmup and the decay."""
    _, _, _, model = train(fx, tmp_path, "--sgd-rule", "torch", check_labels=False)
    assert max(_max_err(ours, ref) for ours, ref in deltas(fx, model).values()) > 100 * DELTA_TOL
