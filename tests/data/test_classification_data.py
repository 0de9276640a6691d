"""Classification data (gluon_bof/data/classification.py): image folders and their errors, the built-in
data's object crops, seeded batches and the mixup/smoothing collate."""
import os

import cv2
import numpy as np
import pytest
import torch

from gluon_bof.data.base import DatasetError
from gluon_bof.data.loader import SampleKey
from gluon_bof.data.classification import (ClassificationBatchSampler, ImageFolderDataset, MixupCollate,
                                           ObjectCrops, SeededTransformDataset,
                                           prepare_synthetic_classification)


def _write(path, value=0, size=(6, 5)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))


@pytest.fixture
def folder(tmp_path):
    for split, per in (("train", 2), ("val", 1)):
        for c in ("dog", "cat", "bird"):
            for i in range(per):
                _write(tmp_path / split / c / f"{i}.png", value=10 * i)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


def test_image_folder_layout_and_sorted_classes(folder):
    train = ImageFolderDataset(str(folder), "train")
    assert train.classes == ("bird", "cat", "dog") and len(train) == 6
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    img, label = train[3]
    assert img.shape == (6, 5, 3) and img.dtype == np.uint8 and label == 1
    val = ImageFolderDataset(str(folder), "val", classes=train.classes)
    assert len(val) == 3 and val.labels.tolist() == [0, 1, 2]


def test_val_may_lack_a_class_but_not_add_one(folder):
    import shutil
    shutil.rmtree(folder / "val" / "cat")
    assert ImageFolderDataset(str(folder), "val").labels.tolist() == [0, 2]  # indices of train's classes
    _write(folder / "val" / "zebra" / "0.png")
    with pytest.raises(DatasetError, match="zebra.*not a training class"):
        ImageFolderDataset(str(folder), "val")


def test_errors_name_the_file_or_folder(folder, tmp_path):
    os.makedirs(folder / "train" / "emu")
    with pytest.raises(DatasetError, match=r"train/emu: empty class folder"):
        ImageFolderDataset(str(folder), "train")
    os.rmdir(folder / "train" / "emu")
    (folder / "train" / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = ImageFolderDataset(str(folder), "train")
    with pytest.raises(DatasetError, match=r"dog/1\.png"):
        ds[5]
    with pytest.raises(DatasetError, match="not found"):
        ImageFolderDataset(str(tmp_path / "nowhere"), "train")
    os.makedirs(tmp_path / "flat" / "train")
    with pytest.raises(DatasetError, match="no class folders"):
        ImageFolderDataset(str(tmp_path / "flat"), "train")


class _Detections:
    classes = ("a", "b")

    def __init__(self):
        self.img = np.arange(40 * 50 * 3, dtype=np.uint32).reshape(40, 50, 3).astype(np.uint8)
        self.labels = [np.array([[10, 5, 29, 14, 1, 0],     # 20 x 10 box: context 2 x 1 px
                                 [0, 0, 9, 9, 0, 1],        # difficult: skipped
                                 [45, 30, 49, 39, 0, 0]], np.float32),  # at the border: clipped
                       np.zeros((0, 6), np.float32)]        # an image without objects

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return self.img, self.labels[i]


def test_object_crops_by_hand():
    crops = ObjectCrops(_Detections(), context=0.1)
    assert len(crops) == 2 and crops.labels.tolist() == [1, 0]
    img, label = crops[0]
    # box x 10..29, y 5..14 grown by 10% of 19 / 9: x floor(8.1)..ceil(30.9), y floor(4.1)..ceil(14.9)
    assert label == 1 and img.shape == (16 - 4, 32 - 8, 3)
    np.testing.assert_array_equal(img, _Detections().img[4:16, 8:32])
    img, label = crops[1]  # x1 = ceil(49.4) + 1 = 51 -> clipped to the width 50
    np.testing.assert_array_equal(img, _Detections().img[29:40, 44:50])


def test_built_in_classification_form(tmp_path):
    from gluon_bof.data.synthetic import CLASSES, generate
    from gluon_bof.data.voc import VOCDetection

    det = generate(str(tmp_path / "det"), num_trainval=6, num_test=6, seed=3)
    try:
        root = prepare_synthetic_classification(str(tmp_path / "cls"), det)
    except DatasetError as e:  # a tiny draw can miss a class; the error must say which
        assert "no crops of class" in str(e)
        return
    train = ImageFolderDataset(root, "train")
    assert train.classes == tuple(sorted(CLASSES))
    voc = VOCDetection(det, splits=((2007, "trainval"),))
    easy = sum(int((voc.label(i)[:, 5] == 0).sum()) for i in range(len(voc)))
    assert len(train) == easy
    assert prepare_synthetic_classification(str(tmp_path / "cls"), det) == root  # reused


def test_batch_seeds_are_shared_across_processes_and_resume():
    full = ClassificationBatchSampler(10, 2, seed=5, rank=0, world_size=2)
    other = ClassificationBatchSampler(10, 2, seed=5, rank=1, world_size=2)
    a, b = list(full), list(other)
    assert len(a) == 2 and [k[0].batch_seed for k in a] == [k[0].batch_seed for k in b]  # one seed per batch
    assert all(len({k.batch_seed for k in batch}) == 1 and k.size is None for batch in a for k in batch)
    assert len({batch[0].batch_seed for batch in a}) == 2  # batches differ
    assert not {k.index for batch in a for k in batch} & {k.index for batch in b for k in batch}
    full.set_epoch(0, start_batch=1)
    assert list(full) == a[1:]  # resume mid-epoch: the same remaining batches
    full.set_epoch(1)
    assert list(full) != a


def test_seeded_transform_is_a_function_of_the_seed():
    ds = SeededTransformDataset([(np.zeros((2, 2, 3), np.uint8), 1)], lambda img: torch.rand(3))
    state = torch.get_rng_state()
    x1, label, index, batch_seed = ds[SampleKey(0, None, 123, batch_seed=77)]
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    torch.manual_seed(123)
    assert torch.equal(x1, torch.rand(3)) and (label, index, batch_seed) == (1, 0, 77)


def test_mixup_collate_targets_by_hand():
    batch = [(torch.full((3, 2, 2), float(i)), label, i, 42) for i, label in enumerate([0, 2, 1])]
    collate = MixupCollate(3, alpha=0.2, eps=0.1, smoothing_mode="paper")
    lam = float(np.random.default_rng([42, 3]).beta(0.2, 0.2))
    images, targets, _ = collate(batch)
    q = lambda c: np.where(np.arange(3) == c, 0.9, 0.05)  # noqa: E731  smoothed one-hot
    expected = [lam * q(0) + (1 - lam) * q(1), lam * q(2) + (1 - lam) * q(2), lam * q(1) + (1 - lam) * q(0)]
    np.testing.assert_allclose(targets.numpy(), np.array(expected), rtol=1e-6)
    np.testing.assert_allclose(images[:, 0, 0, 0].numpy(), [2 * (1 - lam), 1.0, 2 * lam], rtol=1e-6)
    collate.enabled = False  # --mixup-off-epoch
    images, targets, _ = collate(batch)
    np.testing.assert_allclose(targets.numpy(), np.array([q(0), q(2), q(1)]), rtol=1e-6)
    assert images[0, 0, 0, 0] == 0.0


def test_mixup_collate_draw_is_the_one_ratio_hook():
    """``draw`` replaces the Beta draw (replaying recorded ratios); ``enabled`` still decides."""
    batch = [(torch.full((3, 2, 2), float(i)), label, i, 5) for i, label in enumerate([0, 2, 1])]
    assert MixupCollate(3, alpha=0.2).lam(5) == float(np.random.default_rng([5, 3]).beta(0.2, 0.2))

    class Replay(MixupCollate):
        def draw(self, batch_seed):
            return {5: 0.25}[batch_seed]

    collate = Replay(3, alpha=0.2)
    images, targets, _ = collate(batch)
    np.testing.assert_allclose(images[:, 0, 0, 0].numpy(), [0.25 * 0 + 0.75 * 2, 1.0, 0.25 * 2 + 0.75 * 0])
    np.testing.assert_allclose(targets[0].numpy(), [0.25, 0.75, 0.0])
    collate.enabled = False
    assert collate.lam(5) == 1.0 and Replay(3, alpha=0.0).lam(5) == 1.0  # off, or no --mixup
