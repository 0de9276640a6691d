"""Training glue for image classification with the Bag of Tricks, on the detectors' library pieces.

- :class:`ClassifierWithLoss`: wraps a classifier so that ``losses = model(images, targets)``
  (``targets [B, K]`` probability rows from :class:`~gluon_bof.data.classification.MixupCollate`)
  returns ``{'loss': CE}``, or with a teacher ``{'hard_loss', 'soft_loss'}`` (their sum is the
  distillation loss), as :func:`gluon_bof.engine.train_one_epoch` expects. Its ``state_dict`` is
  the bare classifier's, so checkpoints rebuild with ``get_model(model_name, **model_kwargs)`` and
  load as a detector's ``pretrained_base``; the teacher is neither saved nor trained.
- :func:`topk_correct` / :func:`classification_evaluator`: top-1 and top-5 accuracy, gathered
  across processes, for ``fit(..., evaluate_fn=...)`` (names ``['top5', 'top1']``: top-1 last, the
  score ``fit`` keeps as best).
- :func:`build_teacher`, :func:`classification_loaders`.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .data.classification import ClassificationBatchSampler, MixupCollate, SeededTransformDataset, eval_collate
from .data.loader import DetectionBatchSampler
from .data.transforms.presets.imagenet import ImageNetTrainTransform, ImageNetValTransform
from .model_zoo import get_model
from .nn.classification import distillation_loss, soft_cross_entropy
from .training import build_model_from_checkpoint
from .utils.distributed import all_gather_object
from .utils.threads import worker_init

__all__ = ["ClassifierWithLoss", "topk_correct", "classification_evaluator", "build_teacher",
           "classification_loaders"]


class ClassifierWithLoss(nn.Module):
    """``forward(images [B,3,H,W], targets [B,K]) -> {'loss'}`` (or ``{'hard_loss', 'soft_loss'}``
    with a teacher: see :func:`gluon_bof.nn.classification.distillation_loss`); ``forward(images)``
    alone returns the logits ``[B, K]``.

    Args:
        net: the classifier (``[B,3,H,W] -> [B,K]`` logits).
        teacher: optional frozen classifier with the same K outputs, run in eval mode without
            gradients on the same (mixed) images; not part of ``state_dict`` or ``parameters``.
        temperature, hard_weight, distill_mode: see ``distillation_loss``.
    """

    def __init__(self, net: nn.Module, teacher: Optional[nn.Module] = None, *, temperature: float = 20.0,
                 hard_weight: float = 0.5, distill_mode: str = "paper"):
        super().__init__()
        self.net = net
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []
        self.temperature = temperature
        self.hard_weight = hard_weight
        self.distill_mode = distill_mode

    def _apply(self, fn, *args, **kwargs):  # .to()/.cuda() move the teacher too
        for t in self._teacher:
            t._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, images: torch.Tensor, targets: Optional[torch.Tensor] = None):
        logits = self.net(images)
        if targets is None:
            return logits
        if not self._teacher:
            return {"loss": soft_cross_entropy(logits, targets)}
        with torch.no_grad():
            teacher_logits = self._teacher[0](images)
        return distillation_loss(logits, targets, teacher_logits, temperature=self.temperature,
                                 hard_weight=self.hard_weight, mode=self.distill_mode)

    # checkpoints hold the bare classifier
    def state_dict(self, *args, **kwargs):
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> torch.Tensor:
    """``[B, len(ks)]`` bool: whether ``labels[b]`` is among the ``k`` highest logits of row b
    (k is capped at the number of classes; ties broken by ``torch.topk``)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # [B, kmax]
    hit = top == labels[:, None]
    return torch.stack([hit[:, :min(k, kmax)].any(dim=1) for k in ks], dim=1)


def classification_evaluator(loader, device: torch.device, ks: Sequence[int] = (1, 5)):
    """``evaluate_fn(net) -> (['top5', 'top1'], [acc5, acc1])`` over ``loader`` (batches
    ``(images, labels, indices)``, see ``eval_collate``). Per-sample results of all processes are
    gathered and de-duplicated by sample index (the sharding pads with repeats), so every process
    returns the accuracy over each validation image exactly once."""

    @torch.no_grad()
    def evaluate_fn(net):
        was_training = net.training
        net.eval()
        rows = []
        for images, labels, indices in loader:
            logits = net(images.to(device, non_blocking=True))
            hits = topk_correct(logits.float().cpu(), labels, ks)
            rows.append(np.concatenate([indices.numpy()[:, None], hits.numpy().astype(np.int64)], 1))
        net.train(was_training)
        local = np.concatenate(rows) if rows else np.zeros((0, 1 + len(ks)), np.int64)
        merged = np.concatenate(all_gather_object(local))
        _, first = np.unique(merged[:, 0], return_index=True)
        acc = merged[first, 1:].mean(axis=0) if len(first) else np.zeros(len(ks))
        names = [f"top{k}" for k in ks][::-1]
        return names, [float(a) for a in acc[::-1]]

    return evaluate_fn


PROBE_SIZE = 64  # side of the input that checks a teacher's outputs (raised to its minimum)


def build_teacher(name_or_checkpoint: str, num_classes: int, device: torch.device,
                  input_size: Optional[int] = None) -> nn.Module:
    """The distillation teacher: a gluon-bof checkpoint (``.pth``, rebuilt from its recorded
    ``model_name``/``model_kwargs``) or a zoo name with GluonCV's pretrained weights
    (``pretrained=True``: 1000 ImageNet classes). Its outputs must number ``num_classes``.

    The check runs the teacher on an ``input_size`` square (the training crop, when given; a
    teacher that cannot take it, such as Inception-V3 below 75 px, is an error naming both),
    else on :data:`PROBE_SIZE` raised to the model's ``min_input_size`` (Inception-V3: 75)."""
    if os.path.isfile(name_or_checkpoint):
        teacher, _ = build_model_from_checkpoint(name_or_checkpoint)
    else:
        teacher = get_model(name_or_checkpoint, pretrained=True)
    smallest = int(getattr(teacher, "min_input_size", 1))
    if input_size is not None and input_size < smallest:
        raise ValueError(f"--teacher {name_or_checkpoint}: {type(teacher).__name__} needs inputs of "
                         f"at least {smallest}x{smallest}, the training crops are {input_size}x{input_size}")
    side = input_size if input_size is not None else max(PROBE_SIZE, smallest)
    with torch.no_grad():
        probe = teacher.eval()(torch.zeros(1, 3, side, side))
    if probe.shape[1] != num_classes:
        raise ValueError(f"--teacher {name_or_checkpoint}: it has {probe.shape[1]} outputs, the data "
                         f"has {num_classes} classes")
    return teacher.to(device)


def classification_loaders(train_set, val_set, *, batch_size: int, input_size: int = 224,
                           crop_ratio: float = 0.875, num_workers: int = 4, seed: int = 0,
                           rank: int = 0, world_size: int = 1, mixup_alpha: float = 0.0,
                           smoothing_eps: float = 0.0, smoothing_mode: str = "paper",
                           jitter_mode: str = "paper", val_batch_size: Optional[int] = None):
    """Training and validation loaders for ``(img, label)`` datasets with ``classes``.

    Returns ``(train_loader, train_sampler, collate, val_loader)``: training batches are
    ``(images [B,3,S,S], targets [B,K])`` (``collate`` is the :class:`MixupCollate`, whose
    ``enabled`` switches mixup), validation batches ``(images, labels [B], indices [B])``.
    ``val_set=None`` gives ``val_loader=None``.
    """
    collate = MixupCollate(len(train_set.classes), alpha=mixup_alpha, eps=smoothing_eps,
                           smoothing_mode=smoothing_mode)
    sampler = ClassificationBatchSampler(len(train_set), batch_size, shuffle=True, drop_last=True,
                                         seed=seed, rank=rank, world_size=world_size)
    if sampler.num_batches() == 0:
        raise ValueError(f"{len(train_set)} training images make no full batch of {batch_size} per process")
    train_loader = DataLoader(
        SeededTransformDataset(train_set, ImageNetTrainTransform(input_size, jitter_mode=jitter_mode)),
        batch_sampler=sampler, num_workers=num_workers, collate_fn=collate, persistent_workers=False,
        worker_init_fn=worker_init,
        generator=torch.Generator().manual_seed(seed))
    val_loader = None
    if val_set is not None:
        val_sampler = DetectionBatchSampler(len(val_set), val_batch_size or batch_size, sizes=0, shuffle=False,
                                            drop_last=False, rank=rank, world_size=world_size)
        val_loader = DataLoader(SeededTransformDataset(val_set, ImageNetValTransform(input_size, crop_ratio)),
                                batch_sampler=val_sampler, num_workers=num_workers, collate_fn=eval_collate,
                                worker_init_fn=worker_init)
    return train_loader, sampler, collate, val_loader
