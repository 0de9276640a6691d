"""gluon_bof/data/sampler.py (aspect-ratio grouped batches) and the padding collate of loader.py."""
import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from gluon_bof.data.loader import DetectionBatchSampler, SampleKey, detection_pad_collate
from gluon_bof.data.mixup import MixupDetection
from gluon_bof.data.sampler import AspectRatioBatchSampler, aspect_ratio_groups, base_image_size

GROUPS = np.array([0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1])  # 14 x 0, 9 x 1


def _indices(batches):
    return [k[0] for b in batches for k in b]


def test_every_batch_is_one_group_and_every_index_once_per_epoch():
    s = AspectRatioBatchSampler(GROUPS, 4, drop_last=False, seed=1)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert all(len({GROUPS[k[0]] for k in b}) == 1 for b in batches)
        assert sorted(_indices(batches)) == list(range(len(GROUPS)))
        # 14 = 4+4+4+2 and 9 = 4+4+1: 4 + 3 batches, all full but the two last (one per group)
        assert len(batches) == len(s) == 7
        assert sorted(len(b) for b in batches) == [1, 2, 4, 4, 4, 4, 4]


def test_drop_last_keeps_full_batches_only():
    s = AspectRatioBatchSampler(GROUPS, 4, drop_last=True, seed=1)
    batches = list(s)
    assert len(batches) == len(s) == 3 + 2  # floor(14 / 4) + floor(9 / 4)
    assert all(len(b) == 4 for b in batches)
    assert len(set(_indices(batches))) == 20


def test_batches_follow_the_shuffled_order_detectron2_style():
    # all in one group, batch 1: the batches are exactly the epoch's shuffled order
    s = AspectRatioBatchSampler(np.zeros(10, int), 1, seed=7, drop_last=False)
    s.set_epoch(2)
    expected = np.random.default_rng([7, 0, 2]).permutation(10).tolist()
    assert _indices(list(s)) == expected


def test_per_sample_seeds_match_detection_batch_sampler():
    # the same (seed, epoch) gives every image the seed DetectionBatchSampler gives it
    s = AspectRatioBatchSampler(GROUPS, 3, seed=11, drop_last=False)
    ref = DetectionBatchSampler(len(GROUPS), 1, sizes=320, seed=11, drop_last=False)
    s.set_epoch(4)
    ref.set_epoch(4)
    ref_seeds = {b[0].index: b[0].seed for b in ref}
    keys = [k for b in s for k in b]
    assert all(isinstance(k, SampleKey) and k.size is None and k.batch_seed == 0 for k in keys)
    assert {k.index: k.seed for k in keys} == ref_seeds


def test_deterministic_per_epoch_and_different_across_epochs():
    a = AspectRatioBatchSampler(GROUPS, 2, seed=3)
    b = AspectRatioBatchSampler(GROUPS, 2, seed=3)
    a.set_epoch(5)
    b.set_epoch(5)
    assert list(a) == list(b)
    a.set_epoch(6)
    assert list(a) != list(b)
    c = AspectRatioBatchSampler(GROUPS, 2, seed=4)
    c.set_epoch(5)
    assert list(c) != list(b)


def test_no_shuffle_keeps_dataset_order_within_groups():
    s = AspectRatioBatchSampler(GROUPS, 100, shuffle=False, drop_last=False)
    assert [[k[0] for k in b] for b in s] == [np.flatnonzero(GROUPS == 0).tolist(),
                                             np.flatnonzero(GROUPS == 1).tolist()]


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_are_disjoint_and_equally_long(world_size):
    ranks = [AspectRatioBatchSampler(GROUPS, 2, seed=9, drop_last=False, rank=r, world_size=world_size)
             for r in range(world_size)]
    for r in ranks:
        r.set_epoch(1)
    batches = [list(r) for r in ranks]
    total = 7 + 5  # ceil(14 / 2) + ceil(9 / 2) batches over all processes
    per_rank = -(-total // world_size)
    assert all(len(b) == len(r) == per_rank for b, r in zip(batches, ranks))
    # the batches of all ranks, interleaved, are the one-process epoch (padded by repeats)
    single = AspectRatioBatchSampler(GROUPS, 2, seed=9, drop_last=False)
    single.set_epoch(1)
    one = list(single)
    for r in range(world_size):
        own = one[r::world_size]
        assert [[k[0] for k in b] for b in batches[r][:len(own)]] == [[k[0] for k in b] for b in own]
    firsts = [_indices(b[:len(one[r::world_size])]) for r, b in enumerate(batches)]
    flat = [i for f in firsts for i in f]
    assert len(flat) == len(set(flat)) == len(GROUPS)


def test_padding_batches_repeat_the_first_with_new_seeds():
    ranks = [AspectRatioBatchSampler(GROUPS, 4, seed=2, drop_last=False, rank=r, world_size=2) for r in range(2)]
    single = list(AspectRatioBatchSampler(GROUPS, 4, seed=2, drop_last=False))
    last = list(ranks[1])[-1]  # 7 batches over 2 ranks: rank 1's 4th batch repeats batch 0
    assert [k[0] for k in last] == [k[0] for k in single[0]]
    assert all(a[2] != b[2] for a, b in zip(last, single[0]))


def test_start_batch_resumes_the_same_sequence():
    s = AspectRatioBatchSampler(GROUPS, 3, seed=5, drop_last=False, rank=1, world_size=2)
    s.set_epoch(3)
    full = list(s)
    s.set_epoch(3, start_batch=2)
    assert len(s) == len(full) - 2
    assert list(s) == full[2:]


def test_one_image_and_bad_arguments():
    s = AspectRatioBatchSampler([1], 2, drop_last=False)
    assert len(s) == 1 and [[k[0] for k in b] for b in s] == [[0]]
    assert len(AspectRatioBatchSampler([1], 2, drop_last=True)) == 0
    assert list(AspectRatioBatchSampler([1], 2, drop_last=True)) == []
    with pytest.raises(ValueError):
        AspectRatioBatchSampler([0, 1], 0)
    with pytest.raises(ValueError):
        AspectRatioBatchSampler([0, 1], 1, rank=2, world_size=2)


class _Sized:
    """Items of given (width, height); counts image reads."""

    classes = ("a",)

    def __init__(self, sizes):
        self.sizes = sizes
        self.reads = 0

    def __len__(self):
        return len(self.sizes)

    def image_size(self, idx):
        return self.sizes[idx]

    def __getitem__(self, idx):
        self.reads += 1
        w, h = self.sizes[idx]
        return np.zeros((h, w, 3), np.uint8), np.zeros((0, 6), np.float32)


def test_groups_from_image_size_through_wrappers_without_reading_images():
    base = _Sized([(40, 30), (30, 40), (50, 50), (10, 60)])
    assert aspect_ratio_groups(base).tolist() == [0, 1, 0, 1]  # width >= height -> 0 (squares too)
    sub = Subset(base, [3, 0])
    assert base_image_size(sub, 0) == (10, 60)
    assert aspect_ratio_groups(MixupDetection(sub)).tolist() == [1, 0]
    assert base.reads == 0
    s = AspectRatioBatchSampler.from_dataset(MixupDetection(base), 2, drop_last=False, shuffle=False)
    assert [[k[0] for k in b] for b in s] == [[0, 2], [1, 3]]


def test_groups_of_a_dataset_without_image_size_read_the_images():
    class Plain:
        def __init__(self):
            self.inner = _Sized([(20, 10), (10, 20)])

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return self.inner[i]

    assert aspect_ratio_groups(Plain()).tolist() == [0, 1]


# ------------------------------------------------------------------ detection_pad_collate
def test_pad_collate_pads_bottom_right_with_zero_and_returns_sizes():
    a = torch.full((3, 4, 5), 2.0)
    b = torch.full((3, 6, 3), -1.5)
    la = np.array([[0, 0, 4, 3, 1, 1]], np.float32)
    lb = np.zeros((0, 6), np.float32)
    images, labels, sizes = detection_pad_collate([(a, la), (b, lb)])
    assert images.shape == (2, 3, 6, 5) and images.dtype == torch.float32
    assert torch.equal(images[0, :, :4, :5], a) and (images[0, :, 4:] == 0).all()
    assert torch.equal(images[1, :, :6, :3], b) and (images[1, :, :, 3:] == 0).all()
    assert sizes.tolist() == [[4, 5], [6, 3]] and sizes.dtype == torch.int64
    assert labels.shape == (2, 1, 6)
    assert torch.equal(labels[0, 0], torch.from_numpy(la[0])) and (labels[1] == -1).all()


def test_pad_collate_rounds_up_to_the_size_divisibility():
    images, _, sizes = detection_pad_collate([(torch.ones(3, 33, 64), np.zeros((0, 6), np.float32))],
                                             size_divisibility=32)
    assert images.shape == (1, 3, 64, 64)  # 33 -> 64, 64 stays
    assert sizes.tolist() == [[33, 64]]
    assert images[0, :, :33].eq(1).all() and images[0, :, 33:].eq(0).all()
