"""The epoch loop every training script shares: resume, train, validate, checkpoint.

``fit(state, config, ...)`` is model-agnostic: the script builds the model, optimizer and schedule
(a :class:`~gluon_bof.training.TrainingState`), the run's :class:`~gluon_bof.training.RunConfig`,
the loaders and an ``evaluate_fn(net) -> (names, values)`` (detectors:
:func:`gluon_bof.engine.detection_evaluator`; classifiers:
:func:`gluon_bof.classification.classification_evaluator`), and passes an
``on_epoch_start(epoch)`` callback for per-epoch switches such as turning mixup off for the last
epochs. Checkpoints (all atomic, all resumable):

- ``{prefix}_last.pth``: at every epoch end, every ``checkpoint_iters`` updates, and when a
  SIGINT/SIGTERM stops the run;
- ``{prefix}_best.pth``: at the first validation and whenever the score improves;
- ``{prefix}_{epoch:04d}_{score:.4f}.pth``: every ``save_interval`` epochs (GluonCV's naming).

Also ``{prefix}_lr.png`` (the learning-rate schedule, at the start), ``{prefix}_history.json`` and
``{prefix}_history.png`` (losses and validation scores per epoch, at the end).
"""
import json
import logging
import os
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from .engine import StopRequest, train_one_epoch
from .errors import ConfigError
from .training import RunConfig, TrainingState
from .utils.distributed import barrier, is_main_process
from .utils.fileio import remove_stale_temporaries
from .utils.logger import EpochMeter, setup_logger
from .utils.lr_scheduler import LRScheduler, plot_lr_schedule
from .utils.optim import build_sgd, linear_scaled_lr, param_groups
from .utils.threads import configure_threads
from .utils.viz import plot_history

__all__ = ["fit", "start_run", "check_batch_split", "decay_epochs", "build_optimizer_and_schedule", "wrap_distributed"]

logger = logging.getLogger(__name__)


def start_run(*, save_prefix: str, rank: int, world_size: int, seed: int, batch_size: int,
              settings: dict, name: str = "train", accumulate: int = 1, num_workers: int = 0,
              threads: Optional[int] = None) -> int:
    """Common start of a training script: logs to ``{save_prefix}_train.log`` (rank 0), logs the
    resolved ``settings``, sets the CPU thread counts (``utils.threads.configure_threads`` for
    ``num_workers`` data workers; ``threads`` overrides), seeds torch, and returns the per-process
    batch size ``batch_size / world_size``.

    ``batch_size`` is the global batch of one optimizer update (GluonCV's meaning). With gradient
    accumulation (``accumulate`` N) each process runs it as N micro-batches of
    ``batch_size / (world_size * N)`` images; an error when that does not divide."""
    setup_logger(save_prefix + "_train.log", rank)
    log = logging.getLogger(name)
    if rank == 0:  # checkpoint writes a SIGKILL interrupted
        remove_stale_temporaries(os.path.dirname(os.path.abspath(save_prefix)))
    log.info("arguments: %s", settings)
    configure_threads(num_workers, threads)
    torch.manual_seed(seed)
    check_batch_split(batch_size, world_size, accumulate)
    log.info("batch %d per update = %d processes x %d micro-batches x %d images", batch_size, world_size,
             accumulate, batch_size // (world_size * accumulate))
    return batch_size // world_size


def check_batch_split(batch_size: int, world_size: int, accumulate: int = 1) -> int:
    """The images each process runs per micro-batch: ``batch_size / (world_size * accumulate)``,
    a ConfigError when that does not divide (``--batch-size`` is the global batch of one update)."""
    if accumulate < 1:
        raise ConfigError(f"--accumulate needs >= 1 micro-batch, got {accumulate}")
    if batch_size < 1 or batch_size % (world_size * accumulate):
        raise ConfigError(f"--batch-size {batch_size} does not split over {world_size} processes"
                          + (f" x --accumulate {accumulate} micro-batches" if accumulate > 1 else "")
                          + " (it is the global batch of one update)")
    return batch_size // (world_size * accumulate)


def decay_epochs(epochs: int, lr_decay_epoch: Sequence[int], lr_decay_period: int = 0) -> List[int]:
    """Step-decay epochs: every ``lr_decay_period`` epochs when > 0, else ``lr_decay_epoch``."""
    if lr_decay_period:
        return list(range(lr_decay_period, epochs, lr_decay_period))
    return list(lr_decay_epoch)


def build_optimizer_and_schedule(model: torch.nn.Module, *, lr: float, momentum: float, wd: float,
                                 no_wd: bool, iters_per_epoch: int, max_epoch_iters: int = 0,
                                 first_update: int = 1, batch_size: Optional[int] = None,
                                 lr_base_batch: Optional[int] = None, nesterov: bool = False,
                                 sgd_rule: str = "mxnet", **schedule):
    """SGD over the trainable parameters (``--no-wd``: no decay on biases and norm layers) and its
    per-iteration :class:`~gluon_bof.utils.lr_scheduler.LRScheduler`.

    ``sgd_rule`` 'mxnet' (default): :class:`~gluon_bof.utils.optim.MXNetSGD`, MXNet's SGD/NAG
    updates as GluonCV trained; 'torch': ``torch.optim.SGD`` (see ``optim.build_sgd``).

    ``lr`` is the learning rate for ``lr_base_batch`` images; the schedule's base learning rate is
    ``lr * batch_size / lr_base_batch`` (the linear scaling rule, logged when ``batch_size`` is
    given; ``lr`` itself when ``lr_base_batch`` is None, GluonCV's meaning of ``--lr``). Warmup by
    ``warmup_factor`` scales with it; an absolute ``warmup_lr`` does not.
    ``iters_per_epoch`` is capped by ``max_epoch_iters`` when > 0; ``schedule`` holds the other
    keyword arguments of :func:`~gluon_bof.utils.lr_scheduler.lr_at` (``mode``, ``epochs``,
    ``step_epochs``, ``step_factor``, warmup ...). Returns ``(optimizer, lr_scheduler)``.
    """
    if batch_size is not None:
        base = lr_base_batch or batch_size
        scaled = linear_scaled_lr(lr, batch_size, base)
        logger.info("learning rate %.6g for batch %d (--lr %.6g x batch %d / --lr-base-batch %d, linear "
                    "scaling rule)", scaled, batch_size, lr, batch_size, base)
        lr = scaled
    optimizer = build_sgd(param_groups(model, wd, no_wd), lr=lr, momentum=momentum,
                          nesterov=nesterov, rule=sgd_rule)  # nesterov: NAG (Bag of Tricks, Section 3.1)
    if max_epoch_iters:
        iters_per_epoch = min(iters_per_epoch, max_epoch_iters)
    lr_scheduler = LRScheduler(optimizer, base_lr=lr, iters_per_epoch=iters_per_epoch,
                               first_update=first_update, **schedule)
    return optimizer, lr_scheduler


def wrap_distributed(model: torch.nn.Module, device: torch.device, distributed: bool) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``model`` under torchrun; the model itself otherwise."""
    if not distributed:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def fit(state: TrainingState, config: RunConfig, *, train_loader, train_sampler,
        evaluate_fn: Optional[Callable[[torch.nn.Module], Tuple[List[str], List[float]]]] = None,
        on_epoch_start: Optional[Callable[[int], Optional[dict]]] = None) -> dict:
    """Trains ``state``'s model to ``config.epochs`` (continuing from ``config.resume`` if given).

    ``train_sampler`` must offer ``set_epoch(epoch, start_batch)`` (see ``DetectionBatchSampler``).
    ``on_epoch_start(epoch)`` runs before each epoch (e.g. switching mixup) and may return a dict
    of flags kept in that epoch's history record (``{'mixup': True}``). Updates, ``epoch_iter``
    and checkpoints count optimizer updates (``config.accumulate`` micro-batches each), so a
    resume is exact: the weights, the schedule and the epoch's logged means and images/s equal
    the uninterrupted run's (the running epoch's meters are part of the checkpoint).
    Validation runs ``evaluate_fn(net)`` every ``config.val_interval`` epochs and after the last;
    it returns ``(names, floats)`` whose last value is the score (higher is better: VOC mAP, COCO
    AP@[.5:.95], top-1). The first validation always writes ``_best.pth`` (even at a score of 0),
    later ones when they beat it. Returns ``{'best_score', 'score_name', 'history'}``;
    ``best_score`` is None when no validation ran.
    """
    if config.resume:
        state.load(config.resume)
        logger.info("resumed from %s at epoch %d, update %d (best %s %s)", config.resume, state.epoch,
                    state.epoch_iter, config.score_name,
                    "none yet" if state.best_score is None else f"{state.best_score:.4f}")
    prefix, main = config.save_prefix, is_main_process()
    last = f"{prefix}_last.pth"

    def checkpoint(path, **kwargs):
        if main:
            state.save(path, config, **kwargs)

    logger.info("training semantics: %s", state.semantics())
    if main and getattr(state.lr_scheduler, "schedule", None):
        per_epoch = len(train_sampler)
        if config.max_epoch_iters:
            per_epoch = min(per_epoch, config.max_epoch_iters)
        plot_lr_schedule(state.lr_scheduler.schedule, config.epochs * per_epoch, f"{prefix}_lr.png")
    with StopRequest() as stop:
        while state.epoch < config.epochs:
            epoch = state.epoch
            flags = (on_epoch_start(epoch) if on_epoch_start is not None else None) or {}
            train_sampler.set_epoch(epoch, start_batch=state.epoch_iter)

            def on_step(epoch_iter):
                state.epoch_iter = epoch_iter
                if config.checkpoint_iters and epoch_iter % config.checkpoint_iters == 0:
                    checkpoint(last)
                return bool(config.max_epoch_iters) and epoch_iter >= config.max_epoch_iters

            stats = train_one_epoch(state.model, train_loader, state.optimizer, state.lr_scheduler, epoch=epoch,
                                    device=config.device, scaler=state.scaler, amp_dtype=config.amp_dtype,
                                    log_interval=config.log_interval, start_iter=state.epoch_iter,
                                    on_step=on_step, stop=stop, accumulate=config.accumulate, meter=state.meter,
                                    channels_last=config.channels_last)
            state.epoch_iter = stats["epoch_iter"]
            if stats["stopped"] and stop.requested:
                checkpoint(last)
                logger.warning("stopped at epoch %d update %d; resume with --resume %s", epoch, state.epoch_iter,
                               last)
                break
            losses = {k: v for k, v in stats.items() if k not in ("lr", "images_per_sec", "epoch_iter", "stopped")}
            for key in [k[:-4] for k in losses if k.endswith("_pos") and k[:-4] + "_neg" in losses]:
                neg = losses[key + "_neg"]  # MegDet Table 1: positive to negative samples
                losses[key + "_pos_neg_ratio"] = losses[key + "_pos"] / neg if neg else float("nan")
            logger.info("[epoch %d] %.1fs, %s, lr=%.3e, %.1f images/s", epoch, state.meter.seconds,
                        ", ".join(f"{k}={v:.3f}" for k, v in losses.items()), stats["lr"], stats["images_per_sec"])
            record = {"epoch": epoch, "lr": stats["lr"], "images_per_sec": stats["images_per_sec"], **losses, **flags}
            score = None
            if evaluate_fn is not None and ((epoch + 1) % config.val_interval == 0 or epoch + 1 == config.epochs):
                names, values = evaluate_fn(state.net)
                score = float(values[-1])
                coco = "AP50" in names  # COCO's score is AP@[.5:.95], keyed 'mAP' like VOC's
                logger.info("[epoch %d] validation: %s", epoch, ", ".join(
                    f"{'AP@[.5:.95]' if coco and n == 'mAP' else n}={v:.4f}" for n, v in zip(names, values)))
                record["val"] = dict(zip(names, map(float, values)))
            state.history.append(record)
            if score is not None and (state.best_score is None or score > state.best_score):  # the first counts
                state.best_score = score
                checkpoint(f"{prefix}_best.pth", epoch_done=True)
                if main:
                    with open(f"{prefix}_best_map.log", "a") as f:
                        f.write(f"{epoch:04d}:\t{score:.4f}\n")
            if config.save_interval and (epoch + 1) % config.save_interval == 0:
                checkpoint(f"{prefix}_{epoch:04d}_{score or 0.0:.4f}.pth", epoch_done=True)
            state.epoch, state.epoch_iter, state.meter = epoch + 1, 0, EpochMeter()
            checkpoint(last)
            barrier()
    if main:
        with open(f"{prefix}_history.json", "w") as f:
            json.dump(state.history, f, indent=1)
        if state.history:
            plot_history(state.history, f"{prefix}_history.png")
    return {"best_score": state.best_score, "score_name": config.score_name, "history": state.history}
