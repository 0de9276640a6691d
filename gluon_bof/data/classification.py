"""Classification data: ImageNet-style folders, the built-in data's object crops, seeded batches.

Item contract: ``(img, label)`` with ``img`` an ``HxWx3`` uint8 RGB NumPy array and ``label`` the
int class index (classes in sorted folder order).

- :class:`ImageFolderDataset`: ``root/<split>/<class>/*.{jpg,jpeg,png,bmp}`` (ImageNet's
  ``train``/``val`` layout); a validation class unknown to ``train`` is an error.
- :class:`ObjectCrops`: the classification form of a detection dataset (the built-in generated
  data): every non-difficult object cropped with ``context`` (10%) of its box size around it,
  class = object class; deterministic. :func:`prepare_synthetic_classification` writes it once as
  an image folder (``python -m gluon_bof.data.classification --out DIR``).
- :class:`ClassificationBatchSampler` / :class:`SeededTransformDataset` / :class:`MixupCollate`:
  batches whose augmentation and mixup ratio are pure functions of ``(seed, epoch, batch)``, so a
  run resumed mid-epoch sees exactly the batches of the uninterrupted run, whatever the workers.
"""
from __future__ import annotations

import argparse
import os
import shutil
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from ..nn.classification import mixup, smooth_targets
from ..utils.cli import run_script
from ..utils.home import default_data_root
from .base import DatasetError, check_dir, read_image
from .loader import DetectionBatchSampler, SampleKey, TrainBatch
from .synthetic import ensure_generated
from .voc import VOCDetection

__all__ = ["ImageFolderDataset", "ObjectCrops", "write_image_folder", "prepare_synthetic_classification",
           "ClassificationBatchSampler", "SeededTransformDataset", "MixupCollate", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def _list_classes(split_dir: str) -> List[str]:
    classes = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    if not classes:
        raise DatasetError(f"{split_dir}: no class folders (expected {split_dir}/<class>/*.jpg)")
    return classes


class ImageFolderDataset:
    """Images in ``root/<split>/<class>/``; ``(img HxWx3 uint8 RGB, class index)`` items.

    Args:
        root: dataset root holding the split folders.
        split: 'train' or 'val' (any sub-folder name).
        classes: class names (index order); None: the sorted folders of ``root/train`` (or of
            this split when ``root/train`` does not exist). Every class folder of this split
            must be one of them, and must hold at least one image.
    """

    def __init__(self, root: str, split: str = "train", classes: Optional[Sequence[str]] = None):
        root = check_dir(root, "image folder root")
        self.split_dir = check_dir(os.path.join(root, split), f"'{split}' split folder")
        found = _list_classes(self.split_dir)
        if classes is None:
            train_dir = os.path.join(root, "train")
            classes = _list_classes(train_dir) if os.path.isdir(train_dir) else found
        self.classes = tuple(classes)
        index = {c: i for i, c in enumerate(self.classes)}
        self.samples: List[Tuple[str, int]] = []
        for c in found:
            if c not in index:
                raise DatasetError(f"{os.path.join(self.split_dir, c)}: class {c!r} is not a training "
                                   f"class ({len(self.classes)} classes: {', '.join(self.classes[:10])}...)")
            folder = os.path.join(self.split_dir, c)
            files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not files:
                raise DatasetError(f"{folder}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS)} images)")
            self.samples += [(os.path.join(folder, f), index[c]) for f in files]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int):
        path, label = self.samples[idx]
        return read_image(path), label  # DatasetError names the file when it is corrupt

    @property
    def labels(self) -> np.ndarray:
        return np.array([s[1] for s in self.samples], dtype=np.int64)


class ObjectCrops:
    """Object crops of a detection dataset (items ``(img, label [N, 6])``, GluonCV's contract).

    Every object whose difficult flag (column 5) is 0 becomes one item: its box grown by
    ``context`` times its width / height on each side, clipped to the image; ``label`` = its
    class id. Crops are listed in (image, object) order; ``classes`` are the detection classes.
    """

    def __init__(self, detection_dataset, context: float = 0.1, min_size: int = 1):
        self.dataset = detection_dataset
        self.context = float(context)
        self.classes = tuple(detection_dataset.classes)
        self.items: List[Tuple[int, np.ndarray, int]] = []
        for i in range(len(detection_dataset)):
            label = np.asarray(_label_of(detection_dataset, i), dtype=np.float32)
            for row in label:
                difficult = row.shape[0] > 5 and row[5] > 0
                if difficult or min(row[2] - row[0], row[3] - row[1]) < min_size:
                    continue
                self.items.append((i, row[:4].copy(), int(row[4])))

    def __len__(self) -> int:
        return len(self.items)

    def crop_box(self, box: np.ndarray, width: int, height: int) -> Tuple[int, int, int, int]:
        """Integer ``(x0, y0, x1, y1)`` (exclusive end) of ``box`` grown by the context, clipped."""
        x0, y0, x1, y1 = (float(v) for v in box)
        dx, dy = (x1 - x0) * self.context, (y1 - y0) * self.context
        return (max(0, int(np.floor(x0 - dx))), max(0, int(np.floor(y0 - dy))),
                min(width, int(np.ceil(x1 + dx)) + 1), min(height, int(np.ceil(y1 + dy)) + 1))

    def __getitem__(self, idx: int):
        i, box, cls = self.items[idx]
        img = self.dataset[i][0]
        x0, y0, x1, y1 = self.crop_box(box, img.shape[1], img.shape[0])
        return np.ascontiguousarray(img[y0:y1, x0:x1]), cls

    @property
    def labels(self) -> np.ndarray:
        return np.array([it[2] for it in self.items], dtype=np.int64)


def _label_of(dataset, i: int) -> np.ndarray:
    """A detection item's label without decoding its image when the dataset can (VOC's ``label``)."""
    getter = getattr(dataset, "label", None)
    return getter(i) if callable(getter) else dataset[i][1]


def write_image_folder(dataset, out_dir: str, classes: Sequence[str]) -> str:
    """Writes a ``(img, label)`` dataset as ``out_dir/<class>/<index:06d>.jpg`` (JPEG quality 95);
    returns ``out_dir``.
    Every class gets a folder (a class without items would make an empty folder: an error)."""
    counts = np.bincount(np.asarray(dataset.labels, dtype=np.int64), minlength=len(classes))
    missing = [c for c, n in zip(classes, counts) if n == 0]
    if missing:
        raise DatasetError(f"{out_dir}: no crops of class(es) {', '.join(missing)}")
    for c in classes:
        os.makedirs(os.path.join(out_dir, c), exist_ok=True)
    for idx in range(len(dataset)):
        img, label = dataset[idx]
        path = os.path.join(out_dir, classes[label], f"{idx:06d}.jpg")
        if not cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"{path}: could not write the image")
    return out_dir


def prepare_synthetic_classification(out: Optional[str] = None, detection_root: Optional[str] = None,
                                     context: float = 0.1) -> str:
    """The built-in data's classification form as an image folder, written once; returns its root.

    ``detection_root`` (default: the built-in generated detection data, generated if absent) is
    read in the VOC layout: ``trainval`` crops go to ``out/train``, ``test`` crops to ``out/val``.
    ``out`` defaults to ``<detection_root>/classification``. An existing complete folder (it holds
    ``classes.txt``) is reused; the folder is written under a temporary name and renamed.
    """

    detection_root = detection_root or default_data_root()
    out = out or os.path.join(detection_root, "classification")
    if os.path.isfile(os.path.join(out, "classes.txt")):
        return out

    ensure_generated(detection_root)
    tmp = f"{out}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for split, voc_split in (("train", "trainval"), ("val", "test")):
        crops = ObjectCrops(VOCDetection(detection_root, splits=((2007, voc_split),)), context=context)
        write_image_folder(crops, os.path.join(tmp, split), crops.classes)
    with open(os.path.join(tmp, "classes.txt"), "w") as f:
        f.write("\n".join(crops.classes) + "\n")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


class ClassificationBatchSampler(DetectionBatchSampler):
    """:class:`~gluon_bof.data.loader.DetectionBatchSampler` at one size whose
    :class:`~gluon_bof.data.loader.SampleKey` s carry a ``batch_seed`` derived from ``(seed, epoch,
    batch)`` only, so every process draws the same mixup ratio for the same batch (as GluonCV's
    one ``lam`` per global batch)."""

    def __init__(self, num_samples: int, batch_size: int, **kwargs):
        super().__init__(num_samples, batch_size, sizes=0, **kwargs)

    def __iter__(self):
        seeds = np.random.default_rng([self.seed, 2, self.epoch]).integers(
            0, 2**31 - 1, size=max(self.num_batches(), 1))
        for b, keys in enumerate(super().__iter__(), start=self.start_batch):
            yield [key._replace(batch_seed=int(seeds[b])) for key in keys]


class SeededTransformDataset(torch.utils.data.Dataset):
    """``(transform(img), label, index, batch_seed)`` items for
    :class:`~gluon_bof.data.loader.SampleKey` keys (or a plain index). With a seed, torch's generator is seeded with it for the transform and
    restored afterwards, so each sample's augmentation is a pure function of its seed."""

    def __init__(self, dataset, transform):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        batch_seed, seed = 0, None
        if isinstance(key, tuple):
            key = SampleKey(*key)
            key, batch_seed, seed = key.index, key.batch_seed, key.seed
        img, label = self.dataset[key]
        if seed is None:
            return self.transform(img), int(label), int(key), batch_seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return self.transform(img), int(label), int(key), batch_seed


class MixupCollate:
    """Collates ``SeededTransformDataset`` items into a training batch ``(images [B,3,S,S],
    targets [B,K])``: targets are (smoothed) one-hot rows (:func:`~gluon_bof.nn.classification.
    smooth_targets`), then with ``alpha`` > 0 and ``enabled``, images and targets are mixed with
    the reversed batch with ``lam ~ Beta(alpha, alpha)`` drawn from the batch seed (GluonCV smooths
    both mixed targets with the same eps). ``enabled`` is switched per epoch (``--mixup-off-epoch``).

    :meth:`draw` is the one place the ratio is drawn: a subclass that overrides it replays
    recorded ratios (tests/scripts/test_imagenet_trajectory.py replays GluonCV's) while
    ``enabled`` and ``alpha`` keep deciding, as for every user, whether a batch is mixed at all.
    """

    def __init__(self, num_classes: int, *, alpha: float = 0.0, eps: float = 0.0,
                 smoothing_mode: str = "paper"):
        self.num_classes = num_classes
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.smoothing_mode = smoothing_mode
        self.enabled = self.alpha > 0

    def draw(self, batch_seed: int) -> float:
        """``Beta(alpha, alpha)`` drawn from the batch seed alone (the same on every process)."""
        return float(np.random.default_rng([int(batch_seed), 3]).beta(self.alpha, self.alpha))

    def lam(self, batch_seed: int) -> float:
        """The batch's mixup ratio: :meth:`draw` while mixup is on, 1 when it is off."""
        if not (self.enabled and self.alpha > 0):
            return 1.0
        return self.draw(batch_seed)

    def __call__(self, batch) -> TrainBatch:
        images = torch.stack([b[0] for b in batch])
        labels = torch.tensor([b[1] for b in batch], dtype=torch.int64)
        targets = smooth_targets(labels, self.num_classes, self.eps, self.smoothing_mode)
        return TrainBatch(*mixup(images, targets, self.lam(batch[0][3])))


def eval_collate(batch):
    """``(images [B,3,S,S], labels [B] int64, indices [B] int64)`` for validation."""
    return (torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch], dtype=torch.int64),
            torch.tensor([b[2] for b in batch], dtype=torch.int64))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Write the built-in data's classification form (object crops).")
    p.add_argument("--out", default=None, help="output root (default: <data root>/classification)")
    p.add_argument("--data-root", default=None, help="detection data in the VOC layout (default: built-in)")
    p.add_argument("--context", type=float, default=0.1, help="context around each box, fraction of its size")
    args = p.parse_args(argv)
    root = prepare_synthetic_classification(args.out, args.data_root, args.context)
    for split in ("train", "val"):
        ds = ImageFolderDataset(root, split)
        print(f"{root}/{split}: {len(ds)} images, {len(ds.classes)} classes, per class "
              f"{np.bincount(ds.labels, minlength=len(ds.classes)).tolist()}")


if __name__ == "__main__":
    run_script(main)
