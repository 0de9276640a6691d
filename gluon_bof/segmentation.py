"""Training glue for semantic segmentation (FCN, Bag of Tricks Table 9) on the library's pieces.

- :func:`segmentation_datasets`: ADE20K (or the built-in generated data in its layout).
- :func:`segmentation_loaders`: training batches ``TrainBatch(images [B,3,S,S], labels [B,S,S]
  int64, -1 ignored)`` from GluonCV's training transform, seeded per sample (exact resume);
  validation batches ``(images, masks)`` of the centre-cropped validation transform, each image
  once across processes.
- :func:`segmentation_evaluator`: pixAcc and mIoU (:class:`~gluon_bof.utils.metrics.
  SegmentationMetric`) for ``fit(..., evaluate_fn=...)``, names ``['pixAcc', 'mIoU']`` (mIoU
  last: the score kept as best), optionally a PNG of predicted masks beside the ground truth.
- :func:`segmentation_optimizer`: SGD with GluonCV's 10x learning rate on the heads and its
  poly schedule (power 0.9) after an optional linear warmup, as scripts/segmentation/train.py.
"""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from .data.loader import DetectionBatchSampler, EvalBatchSampler, TrainBatch, TransformDataset
from .data.segmentation import ADE20KSegmentation
from .data.synthetic_segmentation import default_root, ensure_generated
from .data.transforms.presets.segmentation import (IMAGENET_MEAN, IMAGENET_STD, SegmentationTrainTransform,
                                                   SegmentationValTransform)
from .errors import ConfigError
from .model_zoo.fcn import head_parameters
from .utils.distributed import all_gather_object, is_main_process
from .utils.lr_scheduler import LRScheduler
from .utils.metrics.segmentation import SegmentationMetric
from .utils.optim import NORM_TYPES, build_sgd
from .utils.segmentation_viz import plot_segmentation
from .utils.threads import worker_init

__all__ = ["DATASETS", "segmentation_datasets", "segmentation_loaders", "evaluate_segmentation",
           "segmentation_val_loader", "segmentation_evaluator", "predict_masks",
           "segmentation_param_groups", "segmentation_optimizer", "denormalize"]

logger = logging.getLogger(__name__)

# GluonCV's --dataset names -> (reader, the model-name acronym of get_fcn)
DATASETS = {"ade20k": (ADE20KSegmentation, "ade")}


def segmentation_datasets(dataset: str, root: Optional[str], train_split: str = "train"):
    """``(train_set, val_set)`` of ``dataset`` under ``root``; ``root`` None is the built-in
    generated data (:mod:`gluon_bof.data.synthetic_segmentation`, generated on first use).
    Only ADE20K is read here: GluonCV's other segmentation sets are a ConfigError."""
    if dataset not in DATASETS:
        raise ConfigError(f"--dataset {dataset}: only {sorted(DATASETS)} is implemented here (GluonCV also reads "
                          f"pascal_voc, pascal_aug, coco, citys); the built-in data is in the ADE20K layout")
    reader = DATASETS[dataset][0]
    if root is None:
        root = ensure_generated(default_root())
    return reader(root, train_split), reader(root, "val")


def _train_collate(batch) -> TrainBatch:
    images, masks = default_collate(batch)
    return TrainBatch(images, masks)


def segmentation_loaders(train_set, val_set, *, batch_size: int, val_batch_size: Optional[int] = None,
                         base_size: int = 520, crop_size: int = 480, num_workers: int = 4, seed: int = 0,
                         rank: int = 0, world_size: int = 1):
    """``(train_loader, train_sampler, val_loader)`` (``val_loader`` None without ``val_set``).

    Training: shuffled, this process's shard, ``batch_size`` images per batch, incomplete batches
    dropped (GluonCV's 'rollover' also runs ``len // batch`` batches per epoch), each sample's
    augmentation seeded from ``(seed, epoch, position)``. Validation: dataset order, this process's
    contiguous shard, every image exactly once (GluonCV's 'rollover' validation loader skips the
    last incomplete batch)."""
    sampler = DetectionBatchSampler(len(train_set), batch_size, sizes=crop_size, shuffle=True, drop_last=True,
                                    seed=seed, rank=rank, world_size=world_size)
    if sampler.num_batches() == 0:
        raise ConfigError(f"{len(train_set)} training images make no full batch of {batch_size} per process")
    train_loader = DataLoader(TransformDataset(train_set, SegmentationTrainTransform(base_size, crop_size)),
                              batch_sampler=sampler, num_workers=num_workers, collate_fn=_train_collate,
                              worker_init_fn=worker_init, persistent_workers=False,
                              generator=torch.Generator().manual_seed(seed))  # not the global RNG (resume)
    val_loader = None
    if val_set is not None:
        val_loader = segmentation_val_loader(val_set, batch_size=val_batch_size or batch_size, crop_size=crop_size,
                                             num_workers=num_workers, rank=rank, world_size=world_size)
    return train_loader, sampler, val_loader


def segmentation_val_loader(val_set, *, batch_size: int, crop_size: Optional[int] = 480, num_workers: int = 4,
                            rank: int = 0, world_size: int = 1) -> DataLoader:
    """Validation batches ``(images, masks)`` in dataset order, this process's contiguous shard,
    each image once: GluonCV's 'val' transform (shorter side to ``crop_size``, centre crop), or
    with ``crop_size`` None its 'testval' mode, whole images one at a time (sizes differ)."""
    if crop_size is None:
        batch_size = 1
    sampler = EvalBatchSampler(len(val_set), batch_size, rank=rank, world_size=world_size)
    return DataLoader(TransformDataset(val_set, SegmentationValTransform(crop_size)), batch_sampler=sampler,
                      num_workers=num_workers, worker_init_fn=worker_init, generator=torch.Generator().manual_seed(0))


def denormalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """``[B, 3, H, W]`` normalised images -> ``[B, H, W, 3]`` uint8 RGB."""
    x = images.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    x = (x * np.asarray(std, np.float32) + np.asarray(mean, np.float32)) * 255.0
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


@torch.no_grad()
def predict_masks(net, images: torch.Tensor, amp_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``[B, H, W]`` int64 class indices: the argmax of the network's main output (run under
    autocast in ``amp_dtype`` when given)."""
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        return net(images)[0].argmax(1)


@torch.no_grad()
def evaluate_segmentation(net, loader, nclass: int, device: torch.device, *, viz_path: Optional[str] = None,
                          classes: Optional[Sequence[str]] = None, num_viz: int = 4,
                          amp_dtype: Optional[torch.dtype] = None) -> SegmentationMetric:
    """Runs ``net`` (eval mode) over ``loader`` (batches ``(images, masks)``) and returns the
    :class:`~gluon_bof.utils.metrics.SegmentationMetric` of every process's counts summed (the
    whole validation set on every process). With ``viz_path``, rank 0 also writes its first
    ``num_viz`` images with their ground truth and predicted masks. ``amp_dtype``: autocast."""
    was_training = net.training
    net.eval()
    metric = SegmentationMetric(nclass)
    drawn = []
    for images, masks in loader:
        preds = predict_masks(net, images.to(device, non_blocking=True), amp_dtype).cpu()
        metric.update(masks, preds)
        if viz_path and len(drawn) < num_viz and is_main_process():
            k = min(num_viz - len(drawn), len(images))
            drawn += list(zip(denormalize(images[:k]), masks[:k].numpy(), preds[:k].numpy()))
    net.train(was_training)
    if drawn:
        plot_segmentation(*(list(x) for x in zip(*drawn)), viz_path, classes=classes)
    merged = SegmentationMetric(nclass)
    merged.merge(all_gather_object(metric.state()))
    return merged


def segmentation_evaluator(loader, nclass: int, device: torch.device, **kwargs):
    """``evaluate_fn(net) -> (['pixAcc', 'mIoU'], [pix_acc, miou])`` for ``fit``: see
    :func:`evaluate_segmentation` (``kwargs``: ``viz_path``, ``classes``, ``num_viz``)."""

    def evaluate_fn(net):
        return ["pixAcc", "mIoU"], list(evaluate_segmentation(net, loader, nclass, device, **kwargs).get())

    return evaluate_fn


def segmentation_param_groups(model: torch.nn.Module, weight_decay: float, no_wd: bool = False,
                              head_lr_mult: float = 10.0) -> List[dict]:
    """Trainable parameters in groups of ``(weight_decay, lr_mult)``: the FCN heads
    (:func:`~gluon_bof.model_zoo.fcn.head_parameters`) train at ``head_lr_mult`` times the learning
    rate (GluonCV: 10), the rest at 1; with ``no_wd`` biases and norm-layer parameters get no weight
    decay (GluonCV's ``wd_mult = 0`` for ``beta|gamma|bias``). :class:`~gluon_bof.utils.
    lr_scheduler.LRScheduler` applies ``lr_mult`` at every update. Empty groups are left out."""
    net = model.module if hasattr(model, "module") else model
    heads = {id(p) for p in head_parameters(net)}
    groups = {}
    for module in net.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            decay = not (no_wd and (name == "bias" or isinstance(module, NORM_TYPES)))
            mult = head_lr_mult if id(p) in heads else 1.0
            groups.setdefault((decay, mult), []).append(p)
    return [{"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr_mult": mult}
            for (decay, mult), ps in groups.items()]


def segmentation_optimizer(model: torch.nn.Module, *, lr: float, momentum: float, wd: float, no_wd: bool,
                           iters_per_epoch: int, epochs: int, warmup_epochs: int = 0, power: float = 0.9,
                           head_lr_mult: float = 10.0, sgd_rule: str = "mxnet", max_epoch_iters: int = 0):
    """``(optimizer, lr_scheduler)`` as GluonCV's scripts/segmentation/train.py: SGD with momentum
    (MXNet's update rule by default) over :func:`segmentation_param_groups`, and
    ``LRSequential([linear warmup 0 -> lr over warmup_epochs, poly(power) over the rest])``
    stepped every update (the n-th update uses the schedule's value n, as MXNet's Trainer).
    ``iters_per_epoch`` is capped by ``max_epoch_iters`` when > 0."""
    optimizer = build_sgd(segmentation_param_groups(model, wd, no_wd, head_lr_mult), lr=lr, momentum=momentum,
                          rule=sgd_rule)
    if max_epoch_iters:
        iters_per_epoch = min(iters_per_epoch, max_epoch_iters)
    scheduler = LRScheduler(optimizer, base_lr=lr, mode="poly", power=power, epochs=epochs,
                            iters_per_epoch=iters_per_epoch, warmup_epochs=warmup_epochs, warmup_lr=0.0)
    return optimizer, scheduler

