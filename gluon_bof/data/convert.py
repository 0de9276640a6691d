"""Pascal VOC layout -> MS COCO layout, so VOC-style data (the built-in generated data included)
can be scored with the COCO metrics and trained with ``--dataset coco``.

    python -m gluon_bof.data.convert --voc-root data/synthetic --out data/synthetic_coco

writes ``out/annotations/instances_{train,val}2017.json`` and links (or copies) the images to
``out/{train,val}2017/`` — the layout :class:`~gluon_bof.data.COCODetection` reads. ``train`` is
the VOC trainval splits, ``val`` VOC2007 test (the splits the scripts use for VOC).

Boxes: our VOC labels ``(x1, y1, x2, y2)`` (GluonCV's VOC convention, XML minus 1) become
``[x1, y1, x2 - x1, y2 - y1]``, so ``COCODetection`` reads back exactly the VOC label. Difficult
objects are written with ``iscrowd=1``: COCOeval then ignores them (detections on them are neither
true nor false positives, VOC's rule for difficult) and ``COCODetection`` skips them for training.
Image ids are 1-based positions; category ids are 1-based in class order.
"""
import argparse
import json
import os
import shutil
from typing import Sequence, Tuple

from ..utils.cli import run_script
from .voc import VOCDetection
from ..utils.fileio import atomic_open

__all__ = ["voc_to_coco", "voc_split_to_coco"]


def voc_split_to_coco(dataset, image_dir: str) -> dict:
    """The COCO annotation dict of a :class:`~gluon_bof.data.VOCDetection`; its images are
    linked (hard link where possible, else copied) into ``image_dir``."""
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for idx in range(len(dataset)):
        src = dataset.image_path(idx)
        file_name = f"{idx + 1:06d}{os.path.splitext(src)[1]}"
        dst = os.path.join(image_dir, file_name)
        if not os.path.exists(dst):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        width, height = dataset.image_size(idx)
        images.append({"id": idx + 1, "file_name": file_name, "width": int(width), "height": int(height)})
        for row in dataset.label(idx).tolist():
            x1, y1, x2, y2, cls = row[:5]
            difficult = len(row) > 5 and row[5] > 0
            w, h = x2 - x1, y2 - y1
            annotations.append({"id": len(annotations) + 1, "image_id": idx + 1, "category_id": int(cls) + 1,
                                "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": int(difficult)})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(dataset.classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def voc_to_coco(voc_root: str, out: str, splits: Sequence[Tuple[str, Sequence[Tuple[int, str]]]] = (
        ("train2017", ((2007, "trainval"), (2012, "trainval"))), ("val2017", ((2007, "test"),)))) -> str:
    """Converts the VOC dataset under ``voc_root`` into a COCO layout under ``out``.

    ``splits``: ``(coco split name, VOC (year, split) pairs)``; VOC years absent under ``voc_root``
    are left out. Prints one line per split: images, objects, difficult objects (written as
    ``iscrowd``) and the images without any other object, which ``COCODetection`` leaves out of
    training (``skip_empty``). Returns ``out``.
    """
    for name, voc_splits in splits:
        present = tuple((y, s) for y, s in voc_splits if os.path.isdir(os.path.join(voc_root, f"VOC{y}")))
        if not present:
            raise FileNotFoundError(f"{voc_root}: none of the VOC splits {list(voc_splits)} for {name}")
        dataset = VOCDetection(voc_root, splits=present)
        coco = voc_split_to_coco(dataset, os.path.join(out, name))
        os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
        with atomic_open(os.path.join(out, "annotations", f"instances_{name}.json"), "w") as f:
            json.dump(coco, f)
        print(summary(name, coco))
    return out


def summary(name: str, coco: dict) -> str:
    """One line on a converted split: what was written and what a training run will leave out."""
    crowd = sum(a["iscrowd"] for a in coco["annotations"])
    usable = {a["image_id"] for a in coco["annotations"] if not a["iscrowd"]}
    empty = len(coco["images"]) - len(usable)
    line = (f"{name}: {len(coco['images'])} images, {len(coco['annotations'])} objects ({crowd} difficult, "
            f"written as iscrowd: COCOeval ignores them)")
    if empty:
        line += (f"; {empty} images have no other object: COCODetection leaves them out of training "
                 f"(skip_empty), evaluation keeps them")
    return line


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Convert a Pascal VOC layout to an MS COCO layout.")
    parser.add_argument("--voc-root", required=True, help="folder holding VOC2007/ (and VOC2012/)")
    parser.add_argument("--out", required=True, help="output folder (annotations/, train2017/, val2017/)")
    args = parser.parse_args(argv)
    print("wrote", voc_to_coco(args.voc_root, args.out))


if __name__ == "__main__":
    run_script(main)
