"""Batching for detection: label padding, random-shape batches, per-sample seeds, sharding.

Each batch the sampler yields is a list of keys ``(index, (width, height), seed)``. The dataset
wrapper seeds NumPy's global RNG with ``seed`` before reading and transforming that sample, so every
sample's augmentation (and its mixup partner) is a pure function of ``(seed, epoch, position)``:
the same whatever the number of workers, and a run resumed mid-epoch sees exactly the batches the
uninterrupted run would have seen.
"""
import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

__all__ = ["SampleKey", "TrainBatch", "EvalBatch", "pad_labels", "detection_collate", "detection_pad_collate", "TransformDataset",
           "DetectionBatchSampler", "random_shape_sizes", "epoch_order", "shard_indices", "repeat_seeds",
           "eval_shard", "EvalBatchSampler"]


class SampleKey(NamedTuple):
    """What a batch sampler yields per sample, the one key protocol of every training loader.

    ``index``: the dataset item. ``size``: the input ``(height, width)`` of its batch (random-shape
    training), or None for the transform's own size. ``seed``: the sample's seed (its augmentation
    and mixup-partner draws; a pure function of the run's seed, the epoch and the sample's place).
    ``batch_seed``: a seed shared by the whole batch on every process (the classification mixup
    ratio, one per global batch as GluonCV draws it); 0 where nothing is drawn per batch."""
    index: int
    size: Optional[Tuple[int, int]]
    seed: int
    batch_seed: int = 0


class TrainBatch(NamedTuple):
    """A training batch. ``images [B, 3, H, W]``; ``labels``: detection ``[B, M, 6]`` = XYXY input
    pixels, class id, **mix weight** (the object's mixup ratio, 1 without mixup), rows padded with
    -1; classification ``[B, K]`` soft targets. ``image_sizes [B, 2]`` (h, w) of each image inside a
    zero-padded batch (Faster R-CNN), else None."""
    images: torch.Tensor
    labels: torch.Tensor
    image_sizes: Optional[torch.Tensor] = None


class EvalBatch(NamedTuple):
    """A validation batch. ``images [B, 3, H, W]``; ``labels [B, M, 6]`` = XYXY, class id,
    **difficult** (0/1), padded with -1 (in original-image pixels when ``scales`` is given);
    ``image_sizes [B, 2]`` (h, w) inside a padded batch or None; ``scales [B, 2]`` (sy, sx) from
    the input back to the original image, or None."""
    images: torch.Tensor
    labels: torch.Tensor
    image_sizes: Optional[torch.Tensor] = None
    scales: Optional[torch.Tensor] = None


def pad_labels(labels: Sequence[np.ndarray], pad_value: float = -1.0) -> torch.Tensor:
    """Stacks ``[N_i, C]`` label arrays into a ``[B, max(N_i), C]`` float tensor padded with -1.

    ``max(N_i)`` is at least 1 so that a batch without any box still has a well-formed tensor.
    """
    cols = max((np.asarray(l).reshape(len(l), -1).shape[1] for l in labels if len(l)), default=6)
    m = max(1, max(len(l) for l in labels))
    out = np.full((len(labels), m, cols), pad_value, dtype=np.float32)
    for i, l in enumerate(labels):
        if len(l):
            out[i, : len(l)] = np.asarray(l, dtype=np.float32).reshape(len(l), -1)
    return torch.from_numpy(out)


def detection_collate(batch: List[Tuple[torch.Tensor, np.ndarray]], train: bool = True):
    """Collates ``(image [3,H,W], label [N,C])`` pairs of one size into a :class:`TrainBatch`
    (``train``: labels' column 5 is the mix weight) or an :class:`EvalBatch` (column 5 is
    ``difficult``). In a DataLoader worker the images are stacked straight into shared memory
    (``default_collate``), saving the copy the trip to the main process would otherwise make."""
    images = default_collate([torch.as_tensor(b[0]) for b in batch])
    return (TrainBatch if train else EvalBatch)(images, pad_labels([b[1] for b in batch]))


def detection_pad_collate(batch: List[Tuple[torch.Tensor, np.ndarray]], size_divisibility: int = 0,
                          train: bool = True):
    """Collates ``(image [3,H_i,W_i], label [N,C])`` pairs of different sizes (Faster R-CNN).

    Images are zero-padded at the bottom/right to the batch's largest height and width (zero is
    the mean after normalisation; GluonCV's ``Pad`` also pads with 0), each side then rounded up
    to a multiple of ``size_divisibility`` when it is > 1 (FPN-style models).
    Returns a :class:`TrainBatch` (``train``) or :class:`EvalBatch` with ``images [B,3,H,W]``,
    ``labels [B,M,C]`` padded with -1 and ``image_sizes [B,2]`` int64, ``image_sizes[i] = (H_i,
    W_i)``, the real size of image i inside the padded batch. Validation items ``(image, label,
    scale)`` (a validation transform's ``original_coords``) give the batch ``scales [B,2]`` float32.
    """
    images = [torch.as_tensor(b[0]) for b in batch]
    sizes = torch.tensor([tuple(im.shape[-2:]) for im in images], dtype=torch.int64)
    h, w = (int(v) for v in sizes.max(dim=0).values)
    if size_divisibility > 1:
        h = -(-h // size_divisibility) * size_divisibility
        w = -(-w // size_divisibility) * size_divisibility
    out = images[0].new_zeros((len(images), images[0].shape[0], h, w))
    for i, im in enumerate(images):
        out[i, :, :im.shape[-2], :im.shape[-1]] = im
    labels = pad_labels([b[1] for b in batch])
    if train:
        return TrainBatch(out, labels, sizes)
    scales = (torch.as_tensor(np.stack([np.asarray(b[2], np.float32) for b in batch])) if len(batch[0]) > 2
              else None)
    return EvalBatch(out, labels, sizes, scales)


class TransformDataset(Dataset):
    """Applies ``transform(img, label, size=...)`` to a dataset's items, keyed by sampler keys.

    A key is an index, or a :class:`SampleKey` as the batch samplers yield: NumPy's global RNG is
    seeded with its ``seed`` before the item is read (the dataset may be a ``MixupDetection`` that
    draws its partner from that RNG) and transformed at its ``size``.
    """

    def __init__(self, dataset, transform):
        self.dataset = dataset
        self.transform = transform

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        size = None
        if isinstance(key, tuple):
            key = SampleKey(*key)
            np.random.seed(key.seed)
            key, size = key.index, key.size
        img, label = self.dataset[key]
        if size is None:  # fixed-size batches: the transform's own size
            return self.transform(img, label)
        return self.transform(img, label, size=size)


def epoch_order(num_samples: int, *, seed: int, epoch: int, shuffle: bool = True):
    """An epoch's sample order and per-sample seeds, a pure function of ``(seed, epoch)``.

    Returns ``(order, seeds)``: int arrays ``[num_samples]``; ``seeds[p]`` seeds the sample at
    position ``p`` of the order (its augmentation and mixup partner, see :class:`TransformDataset`).
    """
    rng = np.random.default_rng([seed, 0, epoch])
    order = rng.permutation(num_samples) if shuffle else np.arange(num_samples)
    seeds = rng.integers(0, 2**32 - 1, size=num_samples, dtype=np.int64)
    return order, seeds


def shard_indices(num_items: int, rank: int = 0, world_size: int = 1):
    """This process's share of ``num_items`` items (samples or batches), as DistributedSampler.

    The items are padded by repeating the start up to a multiple of ``world_size``, and process
    ``rank`` takes positions ``rank::world_size``. Returns ``(src, repeated)``: the source item of
    each of its ``ceil(num_items / world_size)`` positions, and whether that position is a repeat.
    """
    total = math.ceil(num_items / world_size) * world_size
    positions = np.arange(rank, total, world_size)
    return positions % max(num_items, 1), positions >= num_items


def eval_shard(num_items: int, rank: int = 0, world_size: int = 1) -> range:
    """This process's share of ``num_items`` evaluation items: a contiguous, disjoint, unpadded range.

    Shard sizes differ by at most one (the first ``num_items % world_size`` ranks take one more);
    a rank may get none. Concatenated in rank order the shards are ``range(num_items)``, so
    predictions gathered from all processes come back in dataset order, each item exactly once.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"loader.py: rank {rank} is outside world_size {world_size}")
    base, extra = divmod(num_items, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


class EvalBatchSampler(Sampler):
    """Evaluation batches: dataset order, this process's :func:`eval_shard`, no padding, no repeats.

    Batches hold up to ``batch_size`` consecutive indices; with ``group_ids`` (e.g. aspect-ratio
    groups) a batch also ends where the group changes, so every batch holds one group and the
    dataset order is kept (the COCO metric assigns predictions to images in that order).
    Yields lists of plain indices (keys of :class:`TransformDataset`: the transform's own size).
    """

    def __init__(self, num_samples: int, batch_size: int, *, group_ids: Optional[Sequence[int]] = None,
                 rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"loader.py: batch_size must be >= 1, got {batch_size}")
        if group_ids is not None and len(group_ids) != num_samples:
            raise ValueError(f"loader.py: {len(group_ids)} group ids for {num_samples} samples")
        self.indices = eval_shard(num_samples, rank, world_size)
        self.batch_size = batch_size
        self.group_ids = None if group_ids is None else np.asarray(group_ids).reshape(-1)

    def _batches(self) -> List[List[int]]:
        batches, current = [], []
        for i in self.indices:
            if current and (len(current) == self.batch_size or (
                    self.group_ids is not None and self.group_ids[i] != self.group_ids[current[0]])):
                batches.append(current)
                current = []
            current.append(i)
        return batches + ([current] if current else [])

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self):
        return iter(self._batches())


def repeat_seeds(seeds: np.ndarray, repeated: np.ndarray) -> np.ndarray:
    """Gives repeated (padding) positions a seed of their own, so a repeated image is augmented
    differently from its first occurrence."""
    return np.where(repeated, seeds ^ 0x5BD1E995, seeds)


def random_shape_sizes(min_size: int = 320, max_size: int = 608, step: int = 32) -> List[int]:
    """GluonCV's random-shape set: ``range(min_size, max_size + 1, step)`` (320..608 by 32)."""
    if min_size % 32 or max_size % 32 or min_size > max_size:
        raise ValueError(f"random shapes need multiples of 32 with min <= max, got {min_size}..{max_size}")
    return list(range(min_size, max_size + 1, step))


class DetectionBatchSampler(Sampler):
    """Shuffles, shards and batches indices, with one input size per batch.

    Args:
        num_samples: dataset length.
        batch_size: images per batch on this process.
        sizes: candidate square sizes; one is drawn uniformly every ``interval`` batches (GluonCV's
            random-shape training). A single int means a fixed size.
        interval: batches per size draw (GluonCV: 10).
        shuffle: reshuffle every epoch (seeded by ``seed`` and the epoch).
        drop_last: drop the last incomplete batch (GluonCV's 'rollover' keeps full batches only).
        seed: the run's seed; size draws, order and per-sample seeds derive from it and the epoch,
            so every process draws the same size for the same batch.
        rank, world_size: this process's shard (samples ``rank::world_size`` of the padded order).
    """

    def __init__(self, num_samples: int, batch_size: int, sizes=416, interval: int = 10,
                 shuffle: bool = True, drop_last: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.sizes = [sizes] if isinstance(sizes, int) else list(sizes)
        self.interval = max(1, interval)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0
        self.per_rank = math.ceil(num_samples / world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Selects the epoch (for shuffling and size draws) and skips its first ``start_batch`` batches."""
        self.epoch = epoch
        self.start_batch = start_batch

    def num_batches(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return math.ceil(self.per_rank / self.batch_size)

    def __len__(self) -> int:
        return self.num_batches() - self.start_batch

    def batch_sizes(self, epoch: Optional[int] = None) -> List[int]:
        """The input size of every batch of an epoch (identical on all processes)."""
        rng = np.random.default_rng([self.seed, 1, self.epoch if epoch is None else epoch])
        n = self.num_batches()
        draws = rng.integers(0, len(self.sizes), size=math.ceil(n / self.interval))
        return [self.sizes[draws[b // self.interval]] for b in range(n)]

    def __iter__(self):
        order, seeds = epoch_order(self.num_samples, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        src, repeated = shard_indices(self.num_samples, self.rank, self.world_size)
        order, seeds = order[src], repeat_seeds(seeds[src], repeated)
        sizes = self.batch_sizes()
        for b in range(self.start_batch, self.num_batches()):
            part = slice(b * self.batch_size, (b + 1) * self.batch_size)
            size = None if len(self.sizes) == 1 else (sizes[b], sizes[b])  # fixed: the transform's own size
            yield [SampleKey(int(i), size, int(s)) for i, s in zip(order[part], seeds[part])]
