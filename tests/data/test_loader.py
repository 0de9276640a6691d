import numpy as np
import pytest
import torch

from gluon_bof.data.loader import (DetectionBatchSampler, TransformDataset, detection_collate, pad_labels,
                                   random_shape_sizes)


def test_pad_labels_pads_with_minus_one():
    a = np.array([[1, 2, 3, 4, 0, 1]], np.float32)
    b = np.zeros((0, 6), np.float32)
    c = np.arange(18, dtype=np.float32).reshape(3, 6)
    out = pad_labels([a, b, c])
    assert out.shape == (3, 3, 6)
    assert torch.equal(out[0, 0], torch.tensor([1, 2, 3, 4, 0, 1.0]))
    assert (out[0, 1:] == -1).all() and (out[1] == -1).all()
    assert torch.equal(out[2], torch.from_numpy(c))


def test_pad_labels_all_empty_batch_is_well_formed():
    out = pad_labels([np.zeros((0, 6), np.float32)] * 2)
    assert out.shape == (2, 1, 6) and (out == -1).all()


def test_collate_stacks_images():
    batch = [(torch.ones(3, 8, 8), np.zeros((1, 6), np.float32)), (torch.zeros(3, 8, 8), np.zeros((2, 6), np.float32))]
    out = detection_collate(batch)
    assert type(out).__name__ == "TrainBatch" and out.image_sizes is None
    images, labels = out.images, out.labels
    assert type(detection_collate(batch, train=False)).__name__ == "EvalBatch"
    assert images.shape == (2, 3, 8, 8) and labels.shape == (2, 2, 6)


def test_random_shape_sizes_match_gluoncv():
    assert random_shape_sizes() == [x * 32 for x in range(10, 20)]  # GluonCV: range(10, 20) * 32
    with pytest.raises(ValueError):
        random_shape_sizes(300, 608)


def test_sampler_size_changes_only_every_interval_batches():
    s = DetectionBatchSampler(1000, 4, sizes=random_shape_sizes(), interval=10, seed=1)
    sizes = [batch[0][1] for batch in s]
    assert len(sizes) == 250
    for start in range(0, 250, 10):
        assert len(set(sizes[start:start + 10])) == 1
    assert len(set(sizes)) > 3  # draws vary across groups
    assert all(len(set(k[1] for k in batch)) == 1 for batch in s)  # one size per batch


def test_sampler_same_sizes_on_every_rank_and_disjoint_shards():
    ranks = [DetectionBatchSampler(101, 5, sizes=[320, 352, 384], seed=3, rank=r, world_size=4) for r in range(4)]
    for r in ranks:
        r.set_epoch(2)
    batches = [list(r) for r in ranks]
    sizes = [[b[0][1] for b in bs] for bs in batches]
    assert all(s == sizes[0] for s in sizes)
    seen = [k[0] for bs in batches for b in bs for k in b]
    # 101 samples, 4 ranks: 26 each (padded), 5 batches of 5 per rank with drop_last
    assert len(seen) == 4 * 25 and len(set(seen)) == len(seen)


def test_sampler_epochs_shuffle_differently_and_deterministically():
    s = DetectionBatchSampler(50, 5, sizes=320, seed=0)
    s.set_epoch(0)
    e0 = [k for b in s for k in b]
    s.set_epoch(1)
    e1 = [k for b in s for k in b]
    s2 = DetectionBatchSampler(50, 5, sizes=320, seed=0)
    s2.set_epoch(1)
    assert e1 == [k for b in s2 for k in b]
    assert [k[0] for k in e0] != [k[0] for k in e1]
    assert sorted(k[0] for k in e0) == list(range(50))
    assert all(k[1] is None for k in e0)  # a fixed size leaves the transform's own size


def test_sampler_start_batch_resumes_the_same_sequence():
    s = DetectionBatchSampler(64, 4, sizes=[320, 416], seed=5, interval=2)
    s.set_epoch(3)
    full = list(s)
    s.set_epoch(3, start_batch=7)
    assert len(s) == len(full) - 7
    assert list(s) == full[7:]


def test_transform_dataset_seeds_each_sample():
    class Data:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return np.random.rand(), i

    ds = TransformDataset(Data(), lambda img, label, size=None: (img, label, size))
    a = ds[(1, (320, 320), 99)]
    b = ds[(1, (320, 320), 99)]
    assert a == b and a[2] == (320, 320)
    np.random.seed(99)
    assert a[0] == np.random.rand()
