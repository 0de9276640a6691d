"""The epoch loop every detection training script shares: resume, train, validate, checkpoint.

``fit`` is detector-agnostic: the script builds the model, loaders, metric, optimizer and schedule,
and passes an ``on_epoch_start(epoch)`` callback for per-epoch switches such as turning mixup off
for the last epochs. Checkpoints (all atomic, all resumable):

- ``{prefix}_last.pth``: at every epoch end, every ``checkpoint_iters`` batches, and when a
  SIGINT/SIGTERM stops the run;
- ``{prefix}_best.pth``: whenever the validation mAP improves;
- ``{prefix}_{epoch:04d}_{map:.4f}.pth``: every ``save_interval`` epochs (GluonCV's naming).

Also ``{prefix}_lr.png`` (the learning-rate schedule, at the start), ``{prefix}_history.json`` and
``{prefix}_history.png`` (losses and validation mAP per epoch, at the end).
"""
import json
import logging
import time
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from .engine import StopRequest, evaluate, train_one_epoch
from .errors import CheckpointError, ConfigError
from .utils.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from .utils.distributed import barrier, is_main_process
from .utils.lr_scheduler import plot_lr_schedule
from .utils.threads import configure_threads
from .utils.viz import plot_history

__all__ = ["fit", "restore", "training_semantics", "start_run", "decay_epochs", "build_optimizer_and_schedule",
           "wrap_distributed"]

logger = logging.getLogger(__name__)


def training_semantics(model, optimizer) -> dict:
    """How ``model`` and ``optimizer`` train, recorded in every checkpoint: ``sgd_rule`` ('mxnet':
    :class:`~gluon_bof.utils.optim.MXNetSGD`, lr inside the momentum buffer; 'torch':
    ``torch.optim.SGD``), ``bn_running_var`` ('biased' as MXNet, 'unbiased' as torch; 'none'
    when nothing updates BatchNorm statistics) and ``lr_indexing`` (the n-th update uses
    ``lr_at(n)`` set before it, the schedule's ``first_update`` offset included)."""
    from .utils.optim import MXNetSGD

    rules = {bool(m.biased_running_var) for m in model.modules() if hasattr(m, "biased_running_var")}
    plain = any(type(m) in (torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm) for m in model.modules())
    if plain:
        rules.add(False)
    bn = "none" if not rules else "mixed" if len(rules) > 1 else "biased" if rules.pop() else "unbiased"
    return {"sgd_rule": "mxnet" if isinstance(optimizer, MXNetSGD) else "torch", "bn_running_var": bn,
            "lr_indexing": "after-update"}


def restore(path: str, model, optimizer=None, lr_scheduler=None, scaler=None) -> dict:
    """Loads a checkpoint into the given objects; returns it (``epoch``, ``epoch_iter``, ``best_map``).

    With an ``optimizer``, the checkpoint's recorded training semantics (``training_semantics``)
    must match the run's: a momentum buffer of one SGD rule means something else to the other, so
    a mismatch is an error naming the flag to change. Checkpoints from before the record trained
    with torch's SGD rule, torch's running variance and the lr one update ahead."""
    state = load_checkpoint(path)
    if optimizer is not None:
        saved = state.get("semantics") or {"sgd_rule": "torch", "bn_running_var": "unbiased",
                                            "lr_indexing": "before-update"}
        now = training_semantics(model, optimizer)
        if saved.get("sgd_rule") != now["sgd_rule"]:
            raise CheckpointError(f"checkpoint {path!r} was trained with the {saved.get('sgd_rule')} SGD rule, "
                             f"this run uses {now['sgd_rule']}: resume with --sgd-rule {saved.get('sgd_rule')}")
        if saved.get("lr_indexing") != now["lr_indexing"]:
            logger.warning("checkpoint %s was written when the lr ran one update ahead; resuming with "
                           "each update's own lr", path)
    net = model.module if hasattr(model, "module") else model
    net.load_state_dict(state["model"])
    for obj, key in ((optimizer, "optimizer"), (lr_scheduler, "lr_scheduler"), (scaler, "scaler")):
        if obj is not None and state.get(key) is not None:
            obj.load_state_dict(state[key])
    if state.get("rng"):
        set_rng_state(state["rng"])
    return state


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
    from .utils.logger import setup_logger

    setup_logger(save_prefix + "_train.log", rank)
    log = logging.getLogger(name)
    log.info("arguments: %s", settings)
    configure_threads(num_workers, threads)
    torch.manual_seed(seed)
    if accumulate < 1:
        raise ConfigError(f"gradient accumulation needs >= 1 micro-batch, got {accumulate}")
    if batch_size % (world_size * accumulate):
        raise ConfigError(f"the batch of {batch_size} images does not split over {world_size} processes"
                          + (f" x {accumulate} micro-batches" if accumulate > 1 else "")
                          + " (--batch-size is the global batch of one update)")
    log.info("batch %d per update = %d processes x %d micro-batches x %d images", batch_size, world_size,
             accumulate, batch_size // (world_size * accumulate))
    return batch_size // world_size


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
    from .utils.lr_scheduler import LRScheduler
    from .utils.optim import build_sgd, linear_scaled_lr, param_groups

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


def fit(*, model, train_loader, train_sampler, val_loader, metric, optimizer, lr_scheduler,
        epochs: int, device: torch.device, save_prefix: str, model_name: str, model_kwargs: dict,
        args: dict, scaler=None, amp_dtype=None, resume: Optional[str] = None, save_interval: int = 10,
        val_interval: int = 1, log_interval: int = 100, checkpoint_iters: int = 0,
        on_epoch_start: Optional[Callable[[int], None]] = None, max_epoch_iters: int = 0,
        evaluate_fn: Optional[Callable[[torch.nn.Module], Tuple[List[str], List[float]]]] = None,
        accumulate: int = 1) -> dict:
    """Trains ``model`` for ``epochs`` epochs (continuing from ``resume`` if given).

    ``train_sampler`` must offer ``set_epoch(epoch, start_batch)`` (see ``DetectionBatchSampler``).
    ``on_epoch_start(epoch)`` runs before each epoch (e.g. switching mixup) and may return a dict
    of flags kept in that epoch's history record (``{'mixup': True}``).
    ``max_epoch_iters`` > 0 stops each epoch after that many batches (for quick experiments).
    ``accumulate`` N splits every batch into N micro-batches (see ``train_one_epoch``); batches,
    ``epoch_iter`` and checkpoints count optimizer updates, so a resume is exact.
    Validation runs ``evaluate(net, val_loader, metric)`` (detection), or ``evaluate_fn(net)`` when
    given (e.g. classification accuracy); either returns ``(names, floats)`` whose last value is the
    score kept as ``best_map`` (higher is better: VOC mAP, COCO AP@[.5:.95], top-1 accuracy).
    The first validation always writes ``_best.pth`` (even at a score of 0), later ones when
    they beat it. Returns ``{'best_map', 'history'}`` where history lists each epoch's losses and
    validation; ``best_map`` is None when no validation ran.
    """
    start_epoch, start_iter, best_map, history = 0, 0, None, []  # None: nothing validated yet
    if resume:
        state = restore(resume, model, optimizer, lr_scheduler, scaler)
        start_epoch, start_iter = state["epoch"], state["epoch_iter"]
        best_map = state.get("best_map")
        history = state.get("history", [])
        logger.info("resumed from %s at epoch %d, batch %d (best score %s)", resume, start_epoch,
                    start_iter, "none yet" if best_map is None else f"{best_map:.4f}")

    def checkpoint(path, epoch, epoch_iter):
        if is_main_process():
            save_checkpoint(path, model=model, optimizer=optimizer, lr_scheduler=lr_scheduler,
                            scaler=scaler, epoch=epoch, epoch_iter=epoch_iter, model_name=model_name,
                            model_kwargs=model_kwargs, best_map=best_map, args=args,
                            extra={"history": history, "semantics": semantics})

    last = f"{save_prefix}_last.pth"
    net = model.module if hasattr(model, "module") else model
    semantics = training_semantics(net, optimizer)
    logger.info("training semantics: %s", semantics)
    if is_main_process() and getattr(lr_scheduler, "schedule", None):
        total = epochs * (min(len(train_sampler), max_epoch_iters) if max_epoch_iters else len(train_sampler))
        plot_lr_schedule(lr_scheduler.schedule, total, f"{save_prefix}_lr.png")
    with StopRequest() as stop:
        for epoch in range(start_epoch, epochs):
            epoch_flags = (on_epoch_start(epoch) if on_epoch_start is not None else None) or {}
            train_sampler.set_epoch(epoch, start_batch=start_iter if epoch == start_epoch else 0)

            def on_step(epoch_iter, epoch=epoch):
                if checkpoint_iters and epoch_iter % checkpoint_iters == 0:
                    checkpoint(last, epoch, epoch_iter)
                return bool(max_epoch_iters) and epoch_iter >= max_epoch_iters

            tic = time.time()
            stats = train_one_epoch(model, train_loader, optimizer, lr_scheduler, epoch=epoch, device=device,
                                    scaler=scaler, amp_dtype=amp_dtype, log_interval=log_interval,
                                    start_iter=start_iter if epoch == start_epoch else 0, on_step=on_step,
                                    stop=stop, accumulate=accumulate)
            if stats["stopped"] and stop.requested:
                checkpoint(last, epoch, stats["epoch_iter"])
                logger.warning("stopped at epoch %d batch %d; resume with --resume %s", epoch,
                               stats["epoch_iter"], last)
                break
            losses = {k: v for k, v in stats.items() if k.endswith("loss")}
            logger.info("[epoch %d] %.1fs, %s, lr=%.3e, %.1f images/s", epoch, time.time() - tic,
                        ", ".join(f"{k}={v:.3f}" for k, v in losses.items()), stats["lr"],
                        stats["images_per_sec"])
            record = {"epoch": epoch, "lr": stats["lr"], "images_per_sec": stats["images_per_sec"], **losses,
                      **epoch_flags}
            current = None
            validate = val_loader is not None or evaluate_fn is not None
            if validate and ((epoch + 1) % val_interval == 0 or epoch + 1 == epochs):
                if evaluate_fn is not None:
                    names, values = evaluate_fn(net)
                else:
                    names, values = evaluate(net, val_loader, metric, device=device, desc=f"val {epoch}")
                current = float(values[-1])
                coco = "AP50" in names  # COCO's score is AP@[.5:.95], keyed 'mAP' like VOC's
                logger.info("[epoch %d] validation: %s", epoch, ", ".join(
                    f"{'AP@[.5:.95]' if coco and n == 'mAP' else n}={v:.4f}" for n, v in zip(names, values)))
                record["val"] = dict(zip(names, map(float, values)))
            history.append(record)
            if current is not None and (best_map is None or current > best_map):  # the first always counts
                best_map = current
                checkpoint(f"{save_prefix}_best.pth", epoch + 1, 0)
                if is_main_process():
                    with open(f"{save_prefix}_best_map.log", "a") as f:
                        f.write(f"{epoch:04d}:\t{current:.4f}\n")
            if save_interval and (epoch + 1) % save_interval == 0:
                checkpoint(f"{save_prefix}_{epoch:04d}_{current or 0.0:.4f}.pth", epoch + 1, 0)
            checkpoint(last, epoch + 1, 0)
            barrier()
    if is_main_process():
        with open(f"{save_prefix}_history.json", "w") as f:
            json.dump(history, f, indent=1)
        if history:
            plot_history(history, f"{save_prefix}_history.png")
    return {"best_map": best_map, "history": history}
