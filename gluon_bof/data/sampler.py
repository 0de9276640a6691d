"""Aspect-ratio grouped batches (Faster R-CNN): each batch holds only landscape (width >= height)
or only portrait images, so padding a batch to its largest image wastes little.

GluonCV (``SplitSortedBucketSampler`` over ``get_im_aspect_ratio()``), torchvision
(``GroupedBatchSampler``) and detectron2 (``AspectRatioGroupedDataset``) all batch this way; we
follow torchvision/detectron2's two groups. The epoch's shuffled order and per-sample seeds are
those of :class:`~gluon_bof.data.loader.DetectionBatchSampler` (:func:`.loader.epoch_order`), so
augmentation is a pure function of ``(seed, epoch, position)`` and a run resumed mid-epoch with
``set_epoch(epoch, start_batch)`` sees exactly the batches the uninterrupted run saw.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np
from torch.utils.data import Sampler, Subset

from .loader import SampleKey, epoch_order, repeat_seeds, shard_indices

__all__ = ["AspectRatioBatchSampler", "aspect_ratio_groups", "base_image_size"]


def base_image_size(dataset, idx: int) -> Tuple[int, int]:
    """``(width, height)`` of item ``idx``, without decoding the image where possible.

    Looks through the wrappers that keep indices (``torch.utils.data.Subset``; ``MixupDetection``
    and :class:`~gluon_bof.data.loader.TransformDataset`, which expose ``.dataset``: a mixed
    image is grouped by its first image) down to a dataset with ``image_size(idx)`` (VOC, COCO).
    Any other dataset is read (``dataset[idx][0]``, an ``HxWx3`` image) to get the size.
    """
    while True:
        if hasattr(dataset, "image_size"):
            w, h = dataset.image_size(idx)
            return int(w), int(h)
        if isinstance(dataset, Subset):
            dataset, idx = dataset.dataset, int(dataset.indices[idx])
        elif hasattr(dataset, "dataset"):
            dataset = dataset.dataset
        else:
            h, w = np.asarray(dataset[idx][0]).shape[:2]
            return int(w), int(h)


def aspect_ratio_groups(dataset) -> np.ndarray:
    """Group id per item: 0 where width >= height, 1 elsewhere (int64 ``[len(dataset)]``)."""
    sizes = [base_image_size(dataset, i) for i in range(len(dataset))]
    return np.array([0 if w >= h else 1 for w, h in sizes], dtype=np.int64)


class AspectRatioBatchSampler(Sampler):
    """Shuffles, groups, batches and shards indices; every batch comes from one group.

    Per epoch, the samples are visited in :func:`.loader.epoch_order` and each is appended to
    its group's open batch; a batch is emitted as soon as it holds ``batch_size`` samples
    (detectron2's scheme). The leftover partial batches are emitted at the end (group 0 first)
    unless ``drop_last``. The epoch's batches are then sharded over processes: padded by
    repeating the first batches to a multiple of ``world_size``, process ``rank`` takes batches
    ``rank::world_size`` (so all processes run the same number of steps).

    Args:
        group_ids: group of every sample (e.g. :func:`aspect_ratio_groups`).
        batch_size: images per batch on this process.
        shuffle: reshuffle every epoch (seeded by ``seed`` and the epoch).
        drop_last: drop each group's last incomplete batch.
        seed, rank, world_size: as :class:`~gluon_bof.data.loader.DetectionBatchSampler`.

    Yields lists of keys ``(index, None, seed)`` for :class:`.loader.TransformDataset`.
    """

    def __init__(self, group_ids: Sequence[int], batch_size: int, shuffle: bool = True,
                 drop_last: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"sampler.py: batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"sampler.py: rank {rank} is outside world_size {world_size}")
        self.group_ids = np.asarray(group_ids, dtype=np.int64).reshape(-1)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    @classmethod
    def from_dataset(cls, dataset, batch_size: int, **kwargs) -> "AspectRatioBatchSampler":
        """Groups ``dataset`` by :func:`aspect_ratio_groups`."""
        return cls(aspect_ratio_groups(dataset), batch_size, **kwargs)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Selects the epoch (for shuffling) and skips its first ``start_batch`` batches."""
        self.epoch = epoch
        self.start_batch = start_batch

    def total_batches(self) -> int:
        """Batches of an epoch over all processes (the same every epoch)."""
        counts = np.unique(self.group_ids, return_counts=True)[1]
        divide = (lambda n: n // self.batch_size) if self.drop_last else (
            lambda n: math.ceil(n / self.batch_size))
        return int(sum(divide(int(n)) for n in counts))

    def num_batches(self) -> int:
        """Batches of an epoch on this process."""
        return math.ceil(self.total_batches() / self.world_size)

    def __len__(self) -> int:
        return self.num_batches() - self.start_batch

    def _epoch_batches(self, order: np.ndarray) -> List[List[int]]:
        """Positions (into ``order``) of every batch of the epoch, in emission order."""
        open_batches, batches = {}, []
        for pos, idx in enumerate(order):
            group = open_batches.setdefault(int(self.group_ids[idx]), [])
            group.append(pos)
            if len(group) == self.batch_size:
                batches.append(list(group))
                group.clear()
        if not self.drop_last:
            batches += [b for _, b in sorted(open_batches.items()) if b]
        return batches

    def __iter__(self):
        order, seeds = epoch_order(len(self.group_ids), seed=self.seed, epoch=self.epoch,
                                   shuffle=self.shuffle)
        batches = self._epoch_batches(order)
        if not batches:
            return
        src, repeated = shard_indices(len(batches), self.rank, self.world_size)
        for b in range(self.start_batch, len(src)):
            pos = np.asarray(batches[src[b]])
            batch_seeds = repeat_seeds(seeds[pos], np.full(len(pos), repeated[b]))
            yield [SampleKey(int(i), None, int(s)) for i, s in zip(order[pos], batch_seeds)]
