"""scripts/train_imagenet.py trains a ResNet v1d as GluonCV's train_imagenet.py does, update for
update: the trajectory of tests/fixtures/imagenet_train.npz (tests/fixtures/gen_imagenet_train.py:
GluonCV's own loop, 'nag' through ``gluon.Trainer``, ``LRSequential`` warmup + cosine, ``--no-wd``,
``--last-gamma``, GluonCV's label smoothing, mixup with the reversed batch, 9 updates).

Our side is the script as a user runs it, ``train_imagenet.main(argv)`` with the same flags
(``--label-smoothing-mode gluoncv``: GluonCV's ``1 - eps + eps / K`` instead of our default, the
paper's Eq. 4; ``--lr-base-batch`` = ``--batch-size``: GluonCV's literal ``--lr``; NAG, the MXNet
SGD rule and the biased BatchNorm running variance are the defaults), so ``build_model``
(``last_gamma``, ``set_running_var_rule``), ``ClassifierWithLoss``, ``build_optimizer_and_schedule``,
the script's mixup switch (``on_epoch_start``), ``MixupCollate`` and ``fit`` all run. Replaced,
because a test cannot train on ImageNet in seconds:

- the network: ``resnet50_v1d`` with one bottleneck per stage (``_STAGES[50]`` patched; 8.1 M
  parameters, the generator builds the same GluonCV ``ResNetV1b``), built in float64 (the default
  dtype while the script runs; the generator casts GluonCV's net to float64): a random network's
  ReLU kinks amplify float32 noise, float64 on both sides leaves only the rules' differences;
- the from-scratch initialisation: ``init_weights`` loads ``draw_params`` (the generator's recipe)
  into every parameter and running statistic except the ``last_gamma`` scales, which must already
  be zero (our ``last_gamma``) as GluonCV's ``gamma_initializer='zeros'`` left them;
- the data: ``ImageFolderDataset`` / ``classification_loaders`` give a torch ``DataLoader`` over
  the fixture's 3 batches (the same batches every epoch) with the script's real ``MixupCollate``,
  whose ratio draw (:meth:`MixupCollate.draw`) replays GluonCV's ``np.random.beta`` draws;
  whether a batch is mixed at all stays the script's decision (``--mixup-off-epoch``);
- ``fit``'s checkpoints and plots are not written (their calls are counted).

Compared: every update's lr (read by an optimizer step pre-hook; 1e-12 relative), every update's
loss (a forward hook on the ``ClassifierWithLoss``; 1e-4 relative), the first update's gradients
(1e-3 of each tensor's largest |gradient|), and every parameter's and BatchNorm running statistic's
change over the run (1e-4 of each tensor's largest |change|). Large tensors are compared at the
fixture's 256 stored positions plus their sum, sum of |.|, L2 norm and max |.| (see the
generator). A second run with ``--sgd-rule torch --bn-running-var unbiased`` must miss the same
tolerances by far, so the comparison cannot pass vacuously. Also GluonCV's distillation loss values
against ``--distill-mode gluoncv`` (and Eq. 6 against ``paper``), and both smoothing rules.

Precision: float64 throughout (the targets are float32 on both sides, as GluonCV's ``one_hot``).
Measured: the first loss agrees to 2e-16, the lrs exactly, the first gradients to 4e-8 of their
maxima (the fixture stores them in float32); from the second update on the losses differ by up to
1e-7 and the final changes by up to 6e-6 of their maxima (BatchNorm over 4 values in layer4),
because MXNet's ``nag_mom_update`` takes lr, momentum and wd, and its BatchNorm its momentum, as
float32 operator parameters (0.01 -> 0.009999999776), which MXNetSGD and torch, in float64, do
not round. Rounding them the same way (tried, not kept: a 2e-8 effect) brings the losses to 4e-14
and every change to 5e-8, the float32 storage. The tolerances leave 18x and more. GluonCV's cosine
ends at lr 0 for the last two updates (num_update is capped at ``niters - 1``); both sides do.
"""
import json
import os

import numpy as np
import pytest
import torch
from torch.nn.modules.module import register_module_forward_hook
from torch.optim.optimizer import register_optimizer_step_pre_hook

import train_imagenet
from gluon_bof import fit as fit_module
from random_weights import draw_params, unpack_spec  # tests/fixtures: the generators' recipe
from gluon_bof.classification import ClassifierWithLoss
from gluon_bof.data.classification import MixupCollate
from gluon_bof.model_zoo import resnetv1b
from gluon_bof.model_zoo.gluoncv import _gluoncv_names, _mapping_for
from gluon_bof.training import TrainingState
from gluon_bof.nn.classification import distillation_loss, mixup, smooth_targets, soft_cross_entropy

FX = np.load(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                          "imagenet_train.npz"))
CFG = json.loads(str(FX["config"]))
NAMES, SHAPES, IMAGES = unpack_spec(FX)
LAST_GAMMAS = {str(n) for n in FX["last_gamma_names"]}
TOL = {"loss": 1e-4, "grad": 1e-3, "update": 1e-4}

ARGV = ["--model", "resnet50_v1d", "--last-gamma", "--no-wd", "--label-smoothing", "--label-smoothing-mode",
        "gluoncv", "--mixup", "--mixup-alpha", str(CFG["mixup_alpha"]), "--mixup-off-epoch",
        str(CFG["mixup_off_epoch"]), "--lr", str(CFG["lr"]), "--lr-base-batch", str(CFG["batch_size"]),
        "--batch-size", str(CFG["batch_size"]), "--lr-mode", CFG["lr_mode"], "--warmup-epochs",
        str(CFG["warmup_epochs"]), "--num-epochs", str(CFG["num_epochs"]), "--momentum", str(CFG["momentum"]),
        "--wd", str(CFG["wd"]), "--input-size", str(CFG["size"]), "-j", "0", "--device", "cpu",
        "--log-interval", "0", "--save-frequency", "0", "--data-dir", "replay",
        "--threads", "1"]  # batch-4 tensors: next to other jobs on 2 cores, a second OpenMP thread costs 10x


class ReplayFolder:
    """Stands in for ``ImageFolderDataset``: the fixture's classes and number of images."""

    def __init__(self, root, split="train", classes=None):
        self.classes = tuple(f"class{i}" for i in range(CFG["classes"]))
        self.size = len(IMAGES) if split == "train" else 0

    def __len__(self):
        return self.size


class ReplaySampler:
    """The fixture's batches in order, every epoch; keys ``(image index, batch seed)`` where the
    batch seed is the update's number (0-based), which the collate's ``draw`` replays."""

    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch, start_batch=0):
        assert start_batch == 0
        self.epoch = epoch

    def __len__(self):
        return CFG["nbatch"]

    def __iter__(self):
        b = CFG["batch_size"]
        for i in range(CFG["nbatch"]):
            yield [(i * b + j, self.epoch * CFG["nbatch"] + i) for j in range(b)]


class ReplayImages(torch.utils.data.Dataset):
    """``SeededTransformDataset``'s item contract ``(image, label, index, batch_seed)``, float64."""

    def __len__(self):
        return len(IMAGES)

    def __getitem__(self, key):
        index, batch_seed = key
        return (torch.from_numpy(IMAGES[index].astype(np.float64)), int(FX["labels"].ravel()[index]), index,
                batch_seed)


class ReplayMixupCollate(MixupCollate):
    """The script's collate, drawing GluonCV's recorded ratios instead of its own."""

    def draw(self, batch_seed):
        return float(FX["lam_drawn"][batch_seed])


def _replay_loaders(seen):
    def classification_loaders(train_set, val_set, *, batch_size, mixup_alpha, smoothing_eps, smoothing_mode,
                               **_):
        seen.update(batch_size=batch_size, mixup_alpha=mixup_alpha, eps=smoothing_eps, mode=smoothing_mode)
        collate = ReplayMixupCollate(len(train_set.classes), alpha=mixup_alpha, eps=smoothing_eps,
                                     smoothing_mode=smoothing_mode)
        sampler = ReplaySampler()
        loader = torch.utils.data.DataLoader(ReplayImages(), batch_sampler=sampler, collate_fn=collate)
        return loader, sampler, collate, []  # no validation images
    return classification_loaders


def _drawn_initialisation(seen):
    """Stands in for the script's ``init_weights``: the generator's drawn weights, in float64."""
    drawn = draw_params(NAMES, SHAPES, int(FX["seed"]), float(FX["gain"]))

    @torch.no_grad()
    def init_weights(net, mode):
        names = _gluoncv_names(net, _mapping_for(net))  # our key -> GluonCV name
        assert sorted(names.values()) == sorted(NAMES)  # GluonCV's layout, name for name
        sd = net.state_dict()
        initial = {}
        for key, gname in names.items():
            if gname in LAST_GAMMAS:  # left as build_model's last_gamma made it
                assert not sd[key].any(), gname
            else:
                sd[key].copy_(torch.from_numpy(drawn[gname]))
            initial[gname] = sd[key].double().clone()
        seen.update(net=net, names=names, initial=initial)
        return net
    return init_weights


def train_as_user(monkeypatch, tmp_path, *extra):
    """Runs the script; returns its lrs, losses, first gradients and final changes (GluonCV names)."""
    seen, lrs, losses, grads = {}, [], [], {}
    monkeypatch.setitem(resnetv1b._STAGES, 50, (resnetv1b.BottleneckV1b, [1, 1, 1, 1]))
    monkeypatch.setattr(train_imagenet, "ImageFolderDataset", ReplayFolder)
    monkeypatch.setattr(train_imagenet, "classification_loaders", _replay_loaders(seen))
    monkeypatch.setattr(train_imagenet, "init_weights", _drawn_initialisation(seen))
    saved = []  # 130 MB float64 checkpoints and two plots: seconds that cannot change an update
    monkeypatch.setattr(TrainingState, "save", lambda self, path, config, epoch_done=False:
                        saved.append(self.epoch + int(epoch_done)))
    monkeypatch.setattr(fit_module, "plot_lr_schedule", lambda *a, **kw: None)
    monkeypatch.setattr(fit_module, "plot_history", lambda *a, **kw: None)

    def pre_step(optimizer, args, kwargs):
        rates = {g["lr"] for g in optimizer.param_groups}
        assert len(rates) == 1
        lrs.append(rates.pop())
        if len(lrs) == 1:
            for key, p in seen["net"].named_parameters():
                grads[seen["names"][key]] = p.grad.detach().double().clone()

    def forward_hook(module, args, output):
        if isinstance(module, ClassifierWithLoss) and isinstance(output, dict):
            losses.append(sum(output.values()).item())

    hooks = [register_optimizer_step_pre_hook(pre_step), register_module_forward_hook(forward_hook)]
    default_dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    try:
        train_imagenet.main(ARGV + ["--save-dir", str(tmp_path), *extra])
    finally:
        torch.set_default_dtype(default_dtype)
        torch.set_num_threads(threads)
        for h in hooks:
            h.remove()
    assert saved and saved[-1] == CFG["num_epochs"]  # fit ran every epoch to its end
    assert seen["batch_size"] == CFG["batch_size"] and seen["mixup_alpha"] == CFG["mixup_alpha"]
    assert (seen["eps"], seen["mode"]) == (0.1, "gluoncv")
    sd = seen["net"].state_dict()
    assert all(v.dtype == torch.float64 for v in sd.values() if v.is_floating_point())
    updates = {g: sd[k].double() - seen["initial"][g] for k, g in seen["names"].items()}
    return np.array(lrs), np.array(losses), grads, updates


def _ratio(diff, scale):
    return diff / scale if scale > 0 else (0.0 if diff == 0 else np.inf)


def _worst(ours, kind, tol):
    """The largest difference from GluonCV in units of the tolerance (<= 1 passes) over every
    tensor's stored values (``tol`` x the tensor's max |GluonCV|) and stats (``tol`` x the
    statistic; the sum: ``tol`` x the sum of |GluonCV|), and the tensor where it occurs."""
    worst, where = 0.0, None
    for name, t in ours.items():
        flat = t.numpy().ravel()
        ref = FX[f"{kind}_stats/{name}"]  # sum, sum |.|, L2, max |.|
        values = flat[FX[f"index/{name}"]] if f"index/{name}" in FX.files else flat
        stats = np.array([flat.sum(), np.abs(flat).sum(), np.sqrt((flat ** 2).sum()), np.abs(flat).max()])
        ratio = max(_ratio(np.abs(values - FX[f"{kind}/{name}"]).max(), tol * ref[3]),
                    _ratio(abs(stats[0] - ref[0]), tol * ref[1]),
                    *(_ratio(abs(x - y), tol * y) for x, y in zip(stats[1:], ref[1:])))
        if ratio >= worst:
            worst, where = ratio, name
    return worst, where


@pytest.fixture(scope="module")
def gluoncv_like_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return train_as_user(mp, tmp_path_factory.mktemp("trajectory"))


def test_fixture_is_gluoncv_training():
    assert "gluoncv 0.10.5" in str(FX["made_by"]) and "mxnet 1.9.1" in str(FX["made_by"])
    assert len(FX["lrs"]) == CFG["num_epochs"] * CFG["nbatch"] == 9
    np.testing.assert_array_equal(FX["lam_used"][:6], FX["lam_drawn"][:6])
    assert FX["lam_used"][6:].tolist() == [1.0] * 3  # --mixup-off-epoch 1: drawn, then replaced by 1


def test_every_update_matches_gluoncv(gluoncv_like_run):
    lrs, losses, grads, updates = gluoncv_like_run
    np.testing.assert_allclose(lrs, FX["lrs"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(losses, FX["losses"], rtol=TOL["loss"])
    worst, where = _worst(grads, "grad", TOL["grad"])
    assert worst <= 1, f"first-update gradient of {where}: {worst:.3g} x the tolerance"
    assert sorted(grads) == sorted(n for n in NAMES if not n.endswith(("running_mean", "running_var")))
    worst, where = _worst(updates, "update", TOL["update"])
    assert worst <= 1, f"change of {where}: {worst:.3g} x the tolerance"
    assert sorted(updates) == sorted(NAMES)


def test_torch_sgd_and_unbiased_variance_are_caught(gluoncv_like_run, monkeypatch, tmp_path):
    """Not vacuous: torch's SGD rule changes the weights (train-mode BatchNorm never reads its running
    statistics, so the variance rule cannot), and the weights and the variance rule both change the
    running variances, far beyond the tolerances."""
    lrs, _, _, updates = train_as_user(monkeypatch, tmp_path, "--sgd-rule", "torch", "--bn-running-var",
                                       "unbiased")
    np.testing.assert_allclose(lrs, FX["lrs"], rtol=1e-12, atol=1e-15)  # the rates are not the difference
    weights = {k: v for k, v in updates.items() if k.endswith("weight")}
    variances = {k: v for k, v in updates.items() if k.endswith("running_var")}
    assert _worst(weights, "update", TOL["update"])[0] > 100
    assert _worst(variances, "update", TOL["update"])[0] > 100


def _distill_targets(kind):
    eps, lam = FX["distill/config"]
    labels = torch.from_numpy(FX["distill/labels"])
    k = FX["distill/student"].shape[1]
    if kind == "sparse":
        return smooth_targets(labels, k, 0.0).double()
    smooth = smooth_targets(labels, k, float(eps), "gluoncv").double()
    return mixup(torch.zeros(len(labels), 1), smooth, float(lam))[1]


@pytest.mark.parametrize("kind", ["sparse", "dense"])
@pytest.mark.parametrize("temperature", [20.0, 2.0])
def test_distillation_loss_values(kind, temperature):
    """``--distill-mode gluoncv`` is GluonCV's DistillationSoftmaxCrossEntropyLoss (the script's
    teacher_prob = softmax(r / T)); ``paper`` is Eq. 6, hard + T^2 soft, from GluonCV's own pieces."""
    z, r = torch.from_numpy(FX["distill/student"]), torch.from_numpy(FX["distill/teacher"])
    y = _distill_targets(kind)
    for h in (0.5, 0.3):
        ours = sum(distillation_loss(z, y, r, temperature=temperature, hard_weight=h, mode="gluoncv").values())
        assert ours.dtype == torch.float64
        assert ours.item() == pytest.approx(float(FX[f"distill/{kind}_T{temperature:g}_h{h:g}"]), rel=1e-12)
    paper = sum(distillation_loss(z, y, r, temperature=temperature, hard_weight=0.3, mode="paper").values())
    assert paper.item() == pytest.approx(float(FX[f"distill/{kind}_T{temperature:g}_paper"]), rel=1e-12)


@pytest.mark.parametrize("mode", ["gluoncv", "paper"])
def test_label_smoothing_loss_values(mode):
    """GluonCV's smoothing (the script's one_hot) and the paper's Eq. 4 (by formula on MXNet)."""
    z = torch.from_numpy(FX["distill/student"])
    targets = smooth_targets(torch.from_numpy(FX["distill/labels"]), z.shape[1], 0.1, mode)
    assert soft_cross_entropy(z, targets).item() == pytest.approx(float(FX[f"smooth/{mode}"]), rel=1e-12)
