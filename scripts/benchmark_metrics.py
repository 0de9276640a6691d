"""Time gluon-bof's VOC07MApMetric (and optionally GluonCV's) on a synthetic evaluation.

    python scripts/benchmark_metrics.py [--images 5000] [--dets 100] [--batch 50]
        [--gluoncv-python /root/.cache/gluoncv-oracle/bin/python]
    python scripts/benchmark_metrics.py --coco      # COCODetectionMetric: pycocotools vs faster-coco-eval

The inputs are random (fixed seed, 20 classes, all scores distinct): per image up to 20 ground
truths (20% difficult) and ``--dets`` detections, most of them jittered copies of a ground truth.
They are fed to ``update`` in batches of ``--batch`` images, as an evaluation loop would. With
``--gluoncv-python`` the same inputs go (through a temporary .npz) to GluonCV's VOC07MApMetric in
a subprocess of that interpreter, and both times, their ratio and the mAP agreement are printed.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluon_bof.utils.metrics import VOC07MApMetric  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402

NUM_CLASSES = 20

_GLUONCV_RUNNER = r"""
import json, sys, time
import numpy as np
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric
d = np.load(sys.argv[1])
batch = int(d['batch'])
arrays = [d[k] for k in ('pb', 'pl', 'ps', 'gb', 'gl', 'gd')]
metric = VOC07MApMetric(iou_thresh=0.5, class_names=[str(i) for i in range(int(d['classes']))])
tic = time.perf_counter()
for s in range(0, arrays[0].shape[0], batch):
    metric.update(*[a[s:s + batch] for a in arrays])
names, values = metric.get()
print(json.dumps({'seconds': time.perf_counter() - tic, 'values': [float(v) for v in values]}))
"""


def make_inputs(images: int, dets: int, max_gts: int = 20, seed: int = 0) -> dict:
    """Random detections / ground truths, float32, -1 padded, label arrays [B, N, 1]."""
    rng = np.random.RandomState(seed)
    n_gt = rng.randint(1, max_gts + 1, images)
    gxy = rng.uniform(0, 400, (images, max_gts, 2))
    gwh = rng.uniform(16, 200, (images, max_gts, 2))
    gb = np.concatenate([gxy, gxy + gwh], -1).round().astype(np.float32)
    gl = rng.randint(0, NUM_CLASSES, (images, max_gts)).astype(np.float32)
    gd = (rng.rand(images, max_gts) < 0.2).astype(np.float32)
    pad = np.arange(max_gts)[None] >= n_gt[:, None]
    gb[pad], gl[pad], gd[pad] = -1, -1, -1

    # detections: 70% jittered copies of a gt (same class 90% of the time), 30% random boxes
    src = (rng.rand(images, dets) * n_gt[:, None]).astype(int)
    copy = rng.rand(images, dets) < 0.7
    jitter = rng.normal(0, 1, (images, dets, 4)) * rng.choice([2.0, 8.0, 30.0], (images, dets, 1))
    pb = np.take_along_axis(gb, src[..., None], 1) + jitter
    rxy = rng.uniform(0, 400, (images, dets, 2))
    rbox = np.concatenate([rxy, rxy + rng.uniform(16, 200, (images, dets, 2))], -1)
    pb = np.where(copy[..., None], pb, rbox).astype(np.float32)
    pl = np.take_along_axis(gl, src, 1)
    relabel = ~copy | (rng.rand(images, dets) < 0.1)
    pl = np.where(relabel, rng.randint(0, NUM_CLASSES, (images, dets)), pl).astype(np.float32)
    total = images * dets
    ps = ((rng.permutation(total) + 1) / (total + 1)).astype(np.float32).reshape(images, dets)
    return {"pb": pb, "pl": pl[..., None], "ps": ps[..., None], "gb": gb, "gl": gl[..., None],
            "gd": gd[..., None]}


def time_ours(inputs: dict, batch: int) -> tuple[float, list]:
    metric = VOC07MApMetric(iou_thresh=0.5, class_names=[str(i) for i in range(NUM_CLASSES)])
    arrays = [inputs[k] for k in ("pb", "pl", "ps", "gb", "gl", "gd")]
    tic = time.perf_counter()
    for s in range(0, arrays[0].shape[0], batch):
        metric.update(*[a[s:s + batch] for a in arrays])
    _, values = metric.get()
    return time.perf_counter() - tic, values


def time_gluoncv(python: str, inputs: dict, batch: int) -> tuple[float, list]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inputs.npz")
        np.savez(path, batch=batch, classes=NUM_CLASSES, **inputs)
        out = subprocess.run([python, "-c", _GLUONCV_RUNNER, path], check=True,
                             capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["seconds"], result["values"]


class _CocoGroundTruth:
    """The attributes COCODetectionMetric reads, for the synthetic ground truth (images 416x416)."""

    def __init__(self, inputs: dict):
        from pycocotools.coco import COCO

        images, anns = [], []
        for i, (boxes, labels, difficult) in enumerate(zip(inputs["gb"], inputs["gl"][..., 0], inputs["gd"][..., 0])):
            images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 416, "height": 416})
            for box, label, diff in zip(boxes, labels, difficult):
                if label >= 0:
                    w, h = float(box[2] - box[0]), float(box[3] - box[1])
                    anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                                 "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": int(diff)})
        self.coco = COCO()
        self.coco.dataset = {"images": images, "annotations": anns,
                             "categories": [{"id": c + 1, "name": str(c)} for c in range(NUM_CLASSES)]}
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        self.image_ids = [im["id"] for im in images]
        self.contiguous_id_to_json = {c: c + 1 for c in range(NUM_CLASSES)}
        self.classes = [str(c) for c in range(NUM_CLASSES)]


def time_coco(inputs: dict, batch: int, backend: str) -> tuple[float, list]:
    from gluon_bof.utils.metrics import COCODetectionMetric

    metric = COCODetectionMetric(_CocoGroundTruth(inputs), backend=backend)
    tic = time.perf_counter()
    for s in range(0, inputs["pb"].shape[0], batch):
        metric.update(inputs["pb"][s:s + batch], inputs["pl"][s:s + batch], inputs["ps"][s:s + batch])
    with contextlib.redirect_stdout(io.StringIO()):
        stats = metric.get_stats()
    return time.perf_counter() - tic, stats


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--images", type=int, default=5000, help="images in the synthetic evaluation")
    parser.add_argument("--dets", type=int, default=100, help="detections per image")
    parser.add_argument("--batch", type=int, default=50, help="images per update() call")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic boxes and scores")
    parser.add_argument("--repeat", type=int, default=3, help="report the best of N runs (ours)")
    parser.add_argument("--gluoncv-python", default=None,
                        help="python of a GluonCV environment, to time GluonCV on the same inputs")
    parser.add_argument("--coco", action="store_true",
                        help="time COCODetectionMetric (update + COCOeval) with pycocotools and faster-coco-eval")
    args = parser.parse_args(argv)

    inputs = make_inputs(args.images, args.dets, seed=args.seed)
    if args.coco:
        print(f"inputs: {args.images} images x {args.dets} detections, {NUM_CLASSES} classes (COCO AP@[.5:.95])")
        ref_time, ref = time_coco(inputs, args.batch, "pycocotools")
        print(f"COCODetectionMetric, pycocotools:      {ref_time:.2f} s  AP={ref[0]:.6f}")
        fast_time, fast = time_coco(inputs, args.batch, "faster_coco_eval")
        print(f"COCODetectionMetric, faster_coco_eval: {fast_time:.2f} s  AP={fast[0]:.6f}")
        print(f"speed-up: {ref_time / fast_time:.1f}x   all 12 stats agree within 1e-12: "
              f"{bool(np.allclose(ref, fast, rtol=0, atol=1e-12))}")
        return
    runs = [time_ours(inputs, args.batch) for _ in range(max(1, args.repeat))]
    ours, values = min(runs, key=lambda r: r[0])
    print(f"inputs: {args.images} images x {args.dets} detections, {NUM_CLASSES} classes, "
          f"update batch {args.batch}")
    print(f"gluon-bof VOC07MApMetric: {ours:.3f} s  mAP={values[-1]:.6f}")
    if args.gluoncv_python:
        theirs, ref = time_gluoncv(args.gluoncv_python, inputs, args.batch)
        agree = np.allclose(values, ref, rtol=0, atol=1e-9, equal_nan=True)
        max_diff = float(np.nanmax(np.abs(np.array(values) - np.array(ref))))
        print(f"GluonCV   VOC07MApMetric: {theirs:.3f} s  mAP={ref[-1]:.6f}")
        print(f"speed-up: {theirs / ours:.1f}x   per-class APs and mAP agree: {agree} "
              f"(max |diff| {max_diff:.2e})")


if __name__ == "__main__":
    run_script(main)
