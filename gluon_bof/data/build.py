"""Dataset and loader assembly shared by the training and evaluation scripts.

Turns a dataset name and root into train/val datasets, and datasets into loaders: YOLOv3's
(random-shape batch sampler, mixup, the YOLOv3 presets) and Faster R-CNN's (aspect-ratio grouped
batches of padded images, mixup, the R-CNN presets). Library code: takes keyword arguments, never
an argparse namespace.
"""
import logging
import os
from dataclasses import dataclass
from functools import partial
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..errors import ConfigError
from ..utils.home import default_data_root
from ..utils.threads import worker_init
from .coco import COCODetection
from .loader import (DetectionBatchSampler, EvalBatchSampler, TransformDataset, detection_collate,
                     detection_pad_collate)
from .mixup import FixedRatio, MixupDetection
from .sampler import AspectRatioBatchSampler, aspect_ratio_groups
from .synthetic import ensure_generated
from .transforms.device import DeviceAugmentLoader, EncodedDataset, YOLO3DeviceTrainTransform, device_collate
from .transforms.presets.rcnn import FasterRCNNDefaultTrainTransform, FasterRCNNDefaultValTransform
from .transforms.presets.yolo import YOLO3DefaultTrainTransform, YOLO3DefaultValTransform
from .voc import VOCDetection

__all__ = ["build_datasets", "zoo_name", "MixupSettings", "loader_options", "yolo3_train_loader", "yolo3_val_loader", "set_mixup",
           "mixup_switch", "mixup_epochs", "faster_rcnn_train_loader", "faster_rcnn_val_loader"]


logger = logging.getLogger(__name__)


def mixup_epochs(mixup: bool, epochs: int, no_mixup_epochs: Optional[int]) -> Optional[int]:
    """Resolves how many final epochs train without mixup, refusing settings where it would
    silently do nothing.

    ``no_mixup_epochs`` None (the default) means the last 10 % of the epochs, rounded (GluonCV's
    20 of its 200 YOLOv3 epochs; 2 of Faster R-CNN's 20), so that mixup is on for most of any
    schedule. Raises :class:`~gluon_bof.errors.ConfigError` when mixup is asked for but no epoch
    would mix, or when a number of mixup-free epochs is given without mixup. Returns the number
    (None without mixup).
    """
    if not mixup:
        if no_mixup_epochs is not None:
            raise ConfigError(f"--no-mixup-epochs {no_mixup_epochs} has no effect without --mixup")
        return None
    if no_mixup_epochs is None:
        no_mixup_epochs = int(round(0.1 * epochs))
    if no_mixup_epochs < 0:
        raise ConfigError(f"--no-mixup-epochs must be >= 0, got {no_mixup_epochs}")
    if epochs - no_mixup_epochs <= 0:
        raise ConfigError(f"--mixup would never mix: --no-mixup-epochs {no_mixup_epochs} turns it off for the "
                          f"last {no_mixup_epochs} of --epochs {epochs}; give fewer (default: the last 10 %)")
    return no_mixup_epochs


def _voc_splits(root: str, train: bool):
    """GluonCV's VOC splits (07+12 trainval / 07 test), keeping only the years present under root."""
    if not train:
        return ((2007, "test"),)
    years = [y for y in (2007, 2012) if os.path.isdir(os.path.join(root, f"VOC{y}"))]
    return tuple((y, "trainval") for y in years) or ((2007, "trainval"),)


def build_datasets(dataset: str, root: Optional[str], num_samples: int = -1, train: bool = True):
    """Returns ``(train_set, val_set)`` for ``dataset`` ('voc' or 'coco') under ``root``.

    ``root=None`` selects the built-in generated data (written in the VOC layout; generated on
    first use). ``num_samples > 0`` keeps only the first images of the training set.
    """
    if root is None:
        if dataset != "voc":
            raise ValueError("the built-in data is in the VOC layout: use --dataset voc or give --data-root")
        root = ensure_generated(default_data_root())
    if dataset == "voc":
        train_set = VOCDetection(root, splits=_voc_splits(root, True)) if train else None
        val_set = VOCDetection(root, splits=_voc_splits(root, False))
    elif dataset == "coco":
        train_set = COCODetection(root, splits=("instances_train2017",)) if train else None
        val_set = COCODetection(root, splits=("instances_val2017",), skip_empty=False)
    else:
        raise ValueError(f"unknown dataset {dataset!r} (voc or coco)")
    if train_set is not None and num_samples > 0:
        classes = train_set.classes
        train_set = Subset(train_set, range(min(num_samples, len(train_set))))
        train_set.classes = classes
    return train_set, val_set


def zoo_name(family: str, network: str, dataset: str, classes: Sequence[str]) -> Tuple[str, dict]:
    """The registered model for a dataset: ``{family}_{network}_{dataset}`` when ``classes`` are that
    dataset's standard classes, else ``{family}_{network}_custom`` with ``classes``.

    Returns ``(name, kwargs)`` for ``get_model``.
    """
    standard = {"voc": tuple(VOCDetection.CLASSES), "coco": tuple(getattr(COCODetection, "CLASSES", ()))}
    if tuple(classes) == standard.get(dataset):
        return f"{family}_{network}_{dataset}", {}
    return f"{family}_{network}_custom", {"classes": list(classes)}


@dataclass
class MixupSettings:
    """Mixup ratio distribution: Beta(alpha, beta) (paper: 1.5, 1.5), or a fixed ratio."""

    alpha: float = 1.5
    beta: float = 1.5
    fixed: Optional[float] = None

    def draw(self) -> Tuple:
        """``(fn, *args)`` for ``MixupDetection.set_mixup``."""
        if self.fixed is not None:
            return (FixedRatio(self.fixed),)
        return (np.random.beta, self.alpha, self.beta)

    def describe(self) -> str:
        return f"ratio {self.fixed}" if self.fixed is not None else f"ratio ~ Beta({self.alpha}, {self.beta})"


def set_mixup(mixup_set, settings: MixupSettings, enabled: bool) -> None:
    """Switches a ``MixupDetection`` on (with ``settings``) or off (weight 1, no second image)."""
    if enabled:
        mixup_set.set_mixup(*settings.draw())
    else:
        mixup_set.set_mixup(None)


def loader_options(num_workers: int, *, pin_memory: Optional[bool] = None,
                   persistent_workers: Optional[bool] = None,
                   prefetch_factor: Optional[int] = None) -> dict:
    """DataLoader keyword arguments every gluon-bof loader shares.

    ``pin_memory`` (default: when CUDA is available): batches in page-locked memory, so the
    engine's non-blocking copy to the GPU overlaps compute. ``persistent_workers`` (default: when
    ``num_workers > 0``): the workers live across epochs instead of being forked again at every
    epoch (mixup switched on or off still reaches them: ``MixupDetection`` keeps the switch in
    shared memory). ``prefetch_factor``: batches each worker prepares ahead (torch's default, 2,
    when None); only with workers, refused without them."""
    if num_workers < 0:
        raise ConfigError(f"--num-workers must be >= 0, got {num_workers}")
    if prefetch_factor is not None and (num_workers == 0 or prefetch_factor < 1):
        raise ConfigError(f"--prefetch-factor {prefetch_factor} needs worker processes (--num-workers > 0) "
                          "and a value >= 1")
    options = {"num_workers": num_workers, "worker_init_fn": worker_init,
               "pin_memory": torch.cuda.is_available() if pin_memory is None else bool(pin_memory),
               "persistent_workers": num_workers > 0 if persistent_workers is None else bool(persistent_workers)}
    if options["persistent_workers"] and num_workers == 0:
        raise ConfigError("persistent workers need worker processes (--num-workers > 0)")
    if prefetch_factor is not None:
        options["prefetch_factor"] = int(prefetch_factor)
    return options


def yolo3_train_loader(dataset, *, batch_size: int, sizes, num_workers: int = 4, seed: int = 0,
                       rank: int = 0, world_size: int = 1, mixup: Optional[MixupSettings] = None,
                       data_aug: bool = True, hue_mode: str = "degrees", device_augment: bool = False,
                       device=None, pin_memory: Optional[bool] = None,
                       persistent_workers: Optional[bool] = None, prefetch_factor: Optional[int] = None):
    """The YOLOv3 training loader: (mixup) + ``YOLO3DefaultTrainTransform`` at random shapes.

    Returns ``(loader, batch_sampler, mixup_dataset_or_None)``; batches are
    :class:`~gluon_bof.data.loader.TrainBatch` ``([B,3,S,S], [B,M,6])``.

    ``device_augment`` (``--gpu-augment``): workers only read the image files and draw each
    sample's augmentation; decoding (nvjpeg on CUDA), mixup blending, crop, resize, colour and
    normalisation run on ``device`` (required then) as each batch is taken from the loader, which
    yields batches already on ``device`` (:mod:`.transforms.device`; the same batches as the CPU
    pipeline to float32 rounding, and nvjpeg's decoding differences on CUDA). For when CPU workers
    cannot feed the GPU. ``pin_memory``, ``persistent_workers``, ``prefetch_factor``: see
    :func:`loader_options`.
    """
    if device_augment:
        if device is None:
            raise ConfigError("device augmentation needs the device to augment on (device=...)")
        if not data_aug:
            raise ConfigError("--gpu-augment renders the augmented pipeline; --no-data-aug (a plain resize) "
                              "runs on the CPU: drop one of them")
        dataset = EncodedDataset(dataset)
    mixup_set = None
    if mixup is not None:
        mixup_set = MixupDetection(dataset, *mixup.draw())
        dataset = mixup_set
    first = sizes if isinstance(sizes, int) else sizes[0]
    transform = YOLO3DefaultTrainTransform(first, first, mixup=mixup is not None, data_aug=data_aug,
                                           hue_mode=hue_mode)
    collate = detection_collate
    if device_augment:
        transform, collate = YOLO3DeviceTrainTransform(transform), device_collate
    sampler = DetectionBatchSampler(len(dataset), batch_size, sizes=sizes, interval=10, shuffle=True,
                                    drop_last=True, seed=seed, rank=rank, world_size=world_size)
    loader = DataLoader(TransformDataset(dataset, transform), batch_sampler=sampler, collate_fn=collate,
                        **loader_options(num_workers, pin_memory=pin_memory, persistent_workers=persistent_workers,
                                         prefetch_factor=prefetch_factor))
    if device_augment:
        loader = DeviceAugmentLoader(loader, device)
    return loader, sampler, mixup_set


def yolo3_val_loader(dataset, *, batch_size: int, data_shape: int, num_workers: int = 4, rank: int = 0,
                     world_size: int = 1, pin_memory: Optional[bool] = None,
                     persistent_workers: Optional[bool] = None, prefetch_factor: Optional[int] = None):
    """The YOLOv3 validation loader at ``data_shape``: batches ``([B,3,S,S], [B,M,6] with difficult)``.

    Under torchrun each process reads a contiguous, disjoint shard (:class:`.loader.EvalBatchSampler`):
    every image is scored exactly once and the gathered predictions are in dataset order.
    ``pin_memory``, ``persistent_workers``, ``prefetch_factor``: see :func:`loader_options`."""
    transform = YOLO3DefaultValTransform(data_shape, data_shape)
    sampler = EvalBatchSampler(len(dataset), batch_size, rank=rank, world_size=world_size)
    return DataLoader(TransformDataset(dataset, transform), batch_sampler=sampler,
                      collate_fn=partial(detection_collate, train=False),
                      **loader_options(num_workers, pin_memory=pin_memory, persistent_workers=persistent_workers,
                                       prefetch_factor=prefetch_factor))


def mixup_switch(mixup_set, settings: Optional[MixupSettings], *, epochs: int, no_mixup_epochs: Optional[int]):
    """``on_epoch_start(epoch)`` for :func:`gluon_bof.fit.fit`: mixup on (with ``settings``) except
    in the last ``no_mixup_epochs`` epochs. It logs the epoch's state and returns
    ``{'mixup': bool}`` for the epoch's history record (always False when ``mixup_set`` is None)."""

    def on_epoch_start(epoch: int) -> dict:
        enabled = mixup_set is not None and epoch < epochs - (no_mixup_epochs or 0)
        if mixup_set is not None:
            set_mixup(mixup_set, settings, enabled=enabled)
            logger.info("[epoch %d] mixup %s", epoch, f"on ({settings.describe()})" if enabled
                        else f"off (the last {no_mixup_epochs} epochs train without it)")
        return {"mixup": enabled}

    return on_epoch_start


def _loader_generator(seed: int) -> torch.Generator:
    """A DataLoader's own generator. Every ``iter(loader)`` draws its workers' base seed from the
    loader's generator, by default torch's global one; Faster R-CNN samples anchors and RoIs from
    the global generator, whose state checkpoints save, so the draw would shift a run resumed
    mid-epoch (its iterator starts after the restore) against the uninterrupted run."""
    return torch.Generator().manual_seed(seed)


def faster_rcnn_train_loader(dataset, *, batch_size: int, short=600, max_size: int = 1000,
                             num_workers: int = 4, seed: int = 0, rank: int = 0, world_size: int = 1,
                             mixup: Optional[MixupSettings] = None, data_aug: bool = True,
                             size_divisibility: int = 0, pin_memory: Optional[bool] = None,
                             persistent_workers: Optional[bool] = None, prefetch_factor: Optional[int] = None):
    """The Faster R-CNN training loader: (mixup) + ``FasterRCNNDefaultTrainTransform(short,
    max_size)`` (``short`` an int, or ``(lo, hi)`` for a random shorter side per image), batches of
    one aspect-ratio group (:class:`.sampler.AspectRatioBatchSampler`, per-sample seeds) zero-padded
    by :func:`.loader.detection_pad_collate` (to multiples of ``size_divisibility`` if > 1).

    Returns ``(loader, batch_sampler, mixup_dataset_or_None)``; batches are
    ``(images [B,3,H,W], labels [B,M,6] (xyxy, class, mix weight), image_sizes [B,2] (h, w))``.
    ``pin_memory``, ``persistent_workers``, ``prefetch_factor``: see :func:`loader_options`.
    """
    mixup_set = None
    if mixup is not None:
        mixup_set = MixupDetection(dataset, *mixup.draw())
        dataset = mixup_set
    transform = FasterRCNNDefaultTrainTransform(short, max_size, mixup=mixup is not None, data_aug=data_aug)
    sampler = AspectRatioBatchSampler.from_dataset(dataset, batch_size, shuffle=True, drop_last=True,
                                                   seed=seed, rank=rank, world_size=world_size)
    loader = DataLoader(TransformDataset(dataset, transform), batch_sampler=sampler,
                        collate_fn=partial(detection_pad_collate, size_divisibility=size_divisibility),
                        generator=_loader_generator(seed),
                        **loader_options(num_workers, pin_memory=pin_memory, persistent_workers=persistent_workers,
                                         prefetch_factor=prefetch_factor))
    return loader, sampler, mixup_set


def faster_rcnn_val_loader(dataset, *, batch_size: int = 1, short: int = 600, max_size: int = 1000,
                           num_workers: int = 4, rank: int = 0, world_size: int = 1,
                           size_divisibility: int = 0, original_coords: bool = True,
                           pin_memory: Optional[bool] = None, persistent_workers: Optional[bool] = None,
                           prefetch_factor: Optional[int] = None):
    """The Faster R-CNN validation loader (``FasterRCNNDefaultValTransform``, dataset order, batches
    of consecutive images of one aspect-ratio group, zero-padded; under torchrun a contiguous,
    disjoint shard per process, see :class:`.loader.EvalBatchSampler`). GluonCV evaluates one
    image per device: with ``batch_size=1`` no image is padded (unless ``size_divisibility`` > 1). Batches are
    ``(images [B,3,H,W], labels [B,M,6] (xyxy, class, difficult), image_sizes [B,2] (h, w),
    scales [B,2])``: labels stay in original-image pixels and ``scales`` maps predictions back
    (``evaluate`` does), so metrics score in original pixels as GluonCV's eval does.
    ``original_coords=False``: labels in resized pixels and no ``scales``. ``pin_memory``,
    ``persistent_workers``, ``prefetch_factor``: see :func:`loader_options`."""
    transform = FasterRCNNDefaultValTransform(short, max_size, original_coords=original_coords)
    sampler = EvalBatchSampler(len(dataset), batch_size, rank=rank, world_size=world_size,
                               group_ids=aspect_ratio_groups(dataset) if batch_size > 1 else None)
    return DataLoader(TransformDataset(dataset, transform), batch_sampler=sampler,
                      collate_fn=partial(detection_pad_collate, size_divisibility=size_divisibility, train=False),
                      generator=_loader_generator(0),
                      **loader_options(num_workers, pin_memory=pin_memory, persistent_workers=persistent_workers,
                                       prefetch_factor=prefetch_factor))
