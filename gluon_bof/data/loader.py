"""Batching for detection: label padding, random-shape batches, per-sample seeds, sharding.

Each batch the sampler yields is a list of keys ``(index, (width, height), seed)``. The dataset
wrapper seeds NumPy's global RNG with ``seed`` before reading and transforming that sample, so every
sample's augmentation (and its mixup partner) is a pure function of ``(seed, epoch, position)``:
the same whatever the number of workers, and a run resumed mid-epoch sees exactly the batches the
uninterrupted run would have seen.
"""
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["pad_labels", "detection_collate", "TransformDataset", "DetectionBatchSampler",
           "random_shape_sizes"]


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


def detection_collate(batch: List[Tuple[torch.Tensor, np.ndarray]]):
    """Collates ``(image [3,H,W], label [N,C])`` pairs of one size into ``([B,3,H,W], [B,M,C])``."""
    images = torch.stack([torch.as_tensor(b[0]) for b in batch])
    return images, pad_labels([b[1] for b in batch])


class TransformDataset(Dataset):
    """Applies ``transform(img, label, size=...)`` to a dataset's items, keyed by sampler keys.

    A key is an index, or ``(index, size, seed)`` as yielded by :class:`DetectionBatchSampler`;
    with a seed, NumPy's global RNG is seeded with it before the item is read (the dataset may be a
    ``MixupDetection`` that draws its partner from that RNG) and transformed.
    """

    def __init__(self, dataset, transform):
        self.dataset = dataset
        self.transform = transform

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        size = None
        if isinstance(key, tuple):
            key, size, seed = key
            np.random.seed(seed)
        img, label = self.dataset[key]
        if size is None:  # fixed-size batches: the transform's own size
            return self.transform(img, label)
        return self.transform(img, label, size=size)


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
        rng = np.random.default_rng([self.seed, 0, self.epoch])
        order = rng.permutation(self.num_samples) if self.shuffle else np.arange(self.num_samples)
        seeds = rng.integers(0, 2**32 - 1, size=self.num_samples, dtype=np.int64)
        total = self.per_rank * self.world_size
        if total > self.num_samples:  # pad by repeating the start, as DistributedSampler does
            pad = np.resize(np.arange(self.num_samples), total - self.num_samples)
            order = np.concatenate([order, order[pad]])
            seeds = np.concatenate([seeds, seeds[pad] ^ 0x5BD1E995])
        positions = np.arange(self.rank, total, self.world_size)
        sizes = self.batch_sizes()
        for b in range(self.start_batch, self.num_batches()):
            pos = positions[b * self.batch_size:(b + 1) * self.batch_size]
            size = None if len(self.sizes) == 1 else (sizes[b], sizes[b])  # fixed: the transform's own size
            yield [(int(order[p]), size, int(seeds[p])) for p in pos]
