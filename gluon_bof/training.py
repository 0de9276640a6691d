"""The two objects a training run is made of: its :class:`RunConfig` (how it runs, built once from
the flags at the script boundary) and its :class:`TrainingState` (what a checkpoint saves and
restores together: model, optimizer, schedule, scaler, position, the running epoch's meters,
history and RNG). ``TrainingState`` is the one place the checkpoint schema is written and read.

Checkpoint schema (``format`` 2; a dict saved with ``torch.save``, atomically):
``model``, ``optimizer``, ``lr_scheduler``, ``scaler`` (state dicts), ``epoch`` (epochs done),
``epoch_iter`` (updates done in the current epoch), ``epoch_meter`` (its loss sums, images and
seconds so far), ``best_score`` and ``score_name`` (the best validation score: VOC mAP, COCO
AP@[.5:.95], top-1), ``history`` (one record per epoch), ``rng`` (Python, NumPy, torch, CUDA
generators), ``model_name`` and ``model_kwargs`` (``get_model`` rebuilds the network from them),
``train_settings`` (loss settings that only training uses), ``semantics`` (the SGD rule,
BatchNorm's running-variance rule and the lr indexing that trained it) and ``args`` (the resolved
settings, also written beside the checkpoint as JSON). Format 1 (before this module) stored
``best_map`` instead of ``best_score`` and no ``epoch_meter``; both are read.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import torch

from .errors import CheckpointError
from .model_zoo import get_model
from .utils.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from .utils.logger import EpochMeter
from .utils.optim import MXNetSGD

__all__ = ["RunConfig", "TrainingState", "training_semantics", "save_model_checkpoint",
           "build_model_from_checkpoint", "unwrap_model", "CHECKPOINT_FORMAT"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2


@dataclass
class RunConfig:
    """How a training run runs (not what it trains), built once from the flags.

    Args:
        epochs: epochs in the run (the schedule's length).
        save_prefix: checkpoints and logs are ``{save_prefix}_last.pth``, ``_best.pth`` ...
        device: where the model and batches live.
        model_name, model_kwargs: ``get_model(model_name, **model_kwargs)`` rebuilds the network
            (architecture only: what evaluation needs).
        settings: the resolved settings, written beside every checkpoint.
        train_settings: settings only training uses (loss options), kept apart from the
            architecture so that an evaluation rebuild does not depend on them.
        score_name: what the validation score is ('mAP', 'AP@[.5:.95]', 'top1').
        amp_dtype: autocast dtype or None.
        resume: checkpoint to continue from.
        save_interval: also keep ``{prefix}_{epoch:04d}_{score:.4f}.pth`` every N epochs (0: never).
        val_interval: validate every N epochs (and after the last).
        log_interval: log every N updates (0: epochs only).
        checkpoint_iters: refresh ``_last.pth`` every N updates (0: at epoch ends only).
        max_epoch_iters: cap the updates of every epoch (0: none).
        accumulate: micro-batches per update.
        channels_last: batches go to the device in ``torch.channels_last`` memory format (the
            model was converted by the script: ``--channels-last``).
    """

    epochs: int
    save_prefix: str
    device: torch.device
    model_name: str
    model_kwargs: dict
    settings: dict = field(default_factory=dict)
    train_settings: dict = field(default_factory=dict)
    score_name: str = "mAP"
    amp_dtype: Optional[torch.dtype] = None
    resume: Optional[str] = None
    save_interval: int = 10
    val_interval: int = 1
    log_interval: int = 100
    checkpoint_iters: int = 0
    max_epoch_iters: int = 0
    accumulate: int = 1
    channels_last: bool = False
    compile_mode: Optional[str] = None


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside its wrappers: ``DistributedDataParallel`` (``.module``) and
    ``torch.compile`` (``._orig_mod``), in either order and nested. Its ``state_dict`` has the
    plain keys a checkpoint stores (no ``module.`` or ``_orig_mod.`` prefix)."""
    while True:
        inner = model._modules
        if "_orig_mod" in inner:  # torch.compile's OptimizedModule
            model = inner["_orig_mod"]
        elif "module" in inner:  # DistributedDataParallel, DataParallel
            model = inner["module"]
        else:
            return model


def training_semantics(model: torch.nn.Module, optimizer) -> dict:
    """How ``model`` and ``optimizer`` train, recorded in every checkpoint: ``sgd_rule`` ('mxnet':
    :class:`~gluon_bof.utils.optim.MXNetSGD`, lr inside the momentum buffer; 'torch':
    ``torch.optim.SGD``), ``bn_running_var`` ('biased' as MXNet, 'unbiased' as torch; 'none'
    when nothing updates BatchNorm statistics) and ``lr_indexing`` (the n-th update uses
    ``lr_at(n)`` set before it, the schedule's ``first_update`` offset included)."""
    rules = {bool(m.biased_running_var) for m in model.modules() if hasattr(m, "biased_running_var")}
    if any(type(m) in (torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm) for m in model.modules()):
        rules.add(False)
    bn = "none" if not rules else "mixed" if len(rules) > 1 else "biased" if rules.pop() else "unbiased"
    return {"sgd_rule": "mxnet" if isinstance(optimizer, MXNetSGD) else "torch", "bn_running_var": bn,
            "lr_indexing": "after-update"}


class TrainingState:
    """Everything a training run saves and restores together.

    ``model`` may be wrapped (DDP, ``torch.compile``): ``net`` is the module itself
    (:func:`unwrap_model`), whose plain ``state_dict`` keys the checkpoints hold. ``epoch`` counts
    finished epochs, ``epoch_iter`` the updates of the current one, ``meter`` its running totals;
    ``best_score`` is None until a validation ran; ``history`` holds one dict per epoch.
    """

    def __init__(self, model: torch.nn.Module, optimizer=None, lr_scheduler=None, scaler=None):
        self.model, self.optimizer, self.lr_scheduler, self.scaler = model, optimizer, lr_scheduler, scaler
        self.epoch = 0
        self.epoch_iter = 0
        self.meter = EpochMeter()
        self.best_score: Optional[float] = None
        self.history: list = []

    @property
    def net(self) -> torch.nn.Module:
        return unwrap_model(self.model)

    def semantics(self) -> dict:
        return training_semantics(self.net, self.optimizer)

    def state_dict(self, config: RunConfig) -> dict:
        """The checkpoint (the module docstring's schema) at the current position."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch, "epoch_iter": self.epoch_iter,
            "epoch_meter": self.meter.state_dict() if self.epoch_iter else None,
            "best_score": self.best_score, "score_name": config.score_name, "history": list(self.history),
            "rng": get_rng_state(),
            "model_name": config.model_name, "model_kwargs": dict(config.model_kwargs),
            "train_settings": dict(config.train_settings),
            "semantics": self.semantics() if self.optimizer is not None else None,
            "args": dict(config.settings),
        }

    def save(self, path: str, config: RunConfig, *, epoch_done: bool = False) -> None:
        """Writes the checkpoint atomically, and the settings beside it as JSON. ``epoch_done``:
        written as the end of the current epoch (``epoch + 1``, no partial meters: the best and
        periodic checkpoints)."""
        state = self.state_dict(config)
        if epoch_done:
            state.update(epoch=self.epoch + 1, epoch_iter=0, epoch_meter=None)
        save_checkpoint(path, state, config.settings)

    def load(self, path: str) -> dict:
        """Restores everything from the checkpoint ``path``; returns the checkpoint dict.

        The recorded SGD rule must be this optimizer's (a momentum buffer of one rule means
        something else to the other): a mismatch is a :class:`~gluon_bof.errors.CheckpointError`
        naming the flag. Checkpoints from before the record trained with torch's rule."""
        state = load_checkpoint(path)
        if self.optimizer is not None:
            saved = state.get("semantics") or {"sgd_rule": "torch", "bn_running_var": "unbiased",
                                                "lr_indexing": "before-update"}
            now = self.semantics()
            if saved.get("sgd_rule") != now["sgd_rule"]:
                raise CheckpointError(f"checkpoint {path!r} was trained with the {saved.get('sgd_rule')} SGD "
                                      f"rule, this run uses {now['sgd_rule']}: resume with --sgd-rule "
                                      f"{saved.get('sgd_rule')}")
            if saved.get("lr_indexing") != now["lr_indexing"]:
                logger.warning("checkpoint %s was written when the lr ran one update ahead; resuming with "
                               "each update's own lr", path)
        self.net.load_state_dict(state["model"])
        for obj, key in ((self.optimizer, "optimizer"), (self.lr_scheduler, "lr_scheduler"),
                         (self.scaler, "scaler")):
            if obj is not None and state.get(key) is not None:
                obj.load_state_dict(state[key])
        if state.get("rng"):
            set_rng_state(state["rng"])
        self.epoch, self.epoch_iter = int(state["epoch"]), int(state["epoch_iter"])
        self.best_score = state.get("best_score", state.get("best_map"))
        self.history = list(state.get("history") or [])
        self.meter = EpochMeter()
        if state.get("epoch_meter") and self.epoch_iter:
            self.meter.load_state_dict(state["epoch_meter"])
        return state


def save_model_checkpoint(path: str, model: torch.nn.Module, model_name: str, model_kwargs: Optional[dict] = None,
                          settings: Optional[dict] = None) -> None:
    """A checkpoint of a model alone (no optimizer, position 0): what ``get_model(name,
    pretrained=path)``, ``--pretrained-base`` and the eval scripts read."""
    config = RunConfig(epochs=0, save_prefix="", device=torch.device("cpu"), model_name=model_name,
                       model_kwargs=dict(model_kwargs or {}), settings=dict(settings or {}))
    TrainingState(model).save(path, config)


def build_model_from_checkpoint(path: str, map_location="cpu", **overrides):
    """Rebuilds the network a checkpoint was trained with (``get_model(model_name,
    **model_kwargs)``, ``overrides`` on top) and loads its weights. Returns ``(model, checkpoint)``."""
    state = load_checkpoint(path, map_location)
    if not state.get("model_name"):
        raise CheckpointError(f"checkpoint {path!r} does not record its model name")
    model = get_model(state["model_name"], **{**(state.get("model_kwargs") or {}), **overrides})
    model.load_state_dict(state["model"])
    return model, state
