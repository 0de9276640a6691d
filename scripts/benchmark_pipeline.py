"""Throughput of the YOLOv3 training data pipeline on one core (one DataLoader worker's work).

    python scripts/benchmark_pipeline.py [--data-root data/synthetic] [--size 416]
        [--num-images 300] [--no-mixup] [--gluoncv-python /root/.cache/gluoncv-oracle/bin/python]

Per image: read + decode (VOCDetection), MixupDetection with Beta(1.5, 1.5) (a second read), the
YOLO3DefaultTrainTransform at ``--size``, and YOLO target building (``yolo_target.
prefetch_targets`` for one image, where that module is available: GluonCV builds targets in its
workers, gluon-bof inside the network). Everything runs in this process, pinned to one core, with
OpenCV and torch limited to one thread. With ``--gluoncv-python`` the same images and labels go
through GluonCV's MixupDetection + YOLO3DefaultTrainTransform(net=yolo3_darknet53) in that
interpreter (also one core, one thread) and the ratio is printed. ``--data-root`` is generated
with ``gluon_bof.data.synthetic`` when it does not exist.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluon_bof.data.mixup import MixupDetection  # noqa: E402
from gluon_bof.data.transforms.presets.yolo import YOLO3DefaultTrainTransform  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402

# Run by the GluonCV interpreter: argv[1] = JSON spec written by this script.
GLUONCV_BENCH = r'''
import json, os, sys, time
spec = json.load(open(sys.argv[1]))
import numpy as np, mxnet as mx
from gluoncv import model_zoo
from gluoncv.data.mixup.detection import MixupDetection
from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
flat = np.load(spec["labels"])  # rows of all labels + offsets (no pickles across numpy versions)
labels = np.split(flat["rows"], flat["offsets"][1:-1])

class Items(mx.gluon.data.Dataset):  # as gluoncv VOCDetection: imread + preloaded labels
    def __len__(self):
        return len(spec["paths"])
    def __getitem__(self, i):
        return mx.image.imread(spec["paths"][i], 1), labels[i]

net = model_zoo.get_model("yolo3_darknet53_custom", classes=spec["classes"], pretrained_base=False)
net.initialize()
s = spec["size"]
dataset = Items()
if spec["mixup"]:
    dataset = MixupDetection(dataset, np.random.beta, 1.5, 1.5)
t = YOLO3DefaultTrainTransform(s, s, net, mixup=spec["mixup"])
np.random.seed(0)
def run(idx):
    for i in idx:
        out = t(*dataset[int(i)])
        mx.nd.waitall()
order = np.random.permutation(len(dataset))
run(order[:spec["warmup"]])
tic, cpu = time.perf_counter(), time.process_time()
run(order[:spec["n"]])
print(json.dumps({"wall": spec["n"] / (time.perf_counter() - tic),
                  "cpu": spec["n"] / (time.process_time() - cpu)}))
'''


def one_core() -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})


def load_dataset(root: str):
    from gluon_bof.data.voc import VOCDetection
    if not os.path.isdir(root):
        from gluon_bof.data.synthetic import generate
        print(f"{root} missing: generating the synthetic dataset there")
        generate(root)
    return VOCDetection(root, splits=((2007, "trainval"),))


def target_builder(size: int, num_class: int):
    """Per-image YOLO target building as GluonCV does it in workers, or None if unavailable."""
    try:
        from gluon_bof.model_zoo.yolo_target import prefetch_targets
    except ImportError:
        return None
    anchors = [torch.tensor(a, dtype=torch.float32) for a in (
        [[116, 90], [156, 198], [373, 326]], [[30, 61], [62, 45], [59, 119]],
        [[10, 13], [16, 30], [33, 23]])]
    feats = [(size // s, size // s) for s in (32, 16, 8)]

    def build(label: np.ndarray):
        lab = torch.from_numpy(label)[None]
        return prefetch_targets(anchors, feats, (size, size), lab[..., :4], lab[..., 4],
                                num_class, gt_mix=lab[..., 5])
    return build


def bench_ours(dataset, size: int, n: int, warmup: int, mixup: bool):
    items = MixupDetection.beta(dataset, 1.5, 1.5) if mixup else dataset
    transform = YOLO3DefaultTrainTransform(size, size, mixup=mixup)
    build = target_builder(size, len(dataset.classes))
    np.random.seed(0)
    order = np.random.permutation(len(items))
    stages = {"read+mixup": 0.0, "transform": 0.0, "targets": 0.0}

    def run(idx, record):
        for i in idx:
            t0 = time.perf_counter()
            img, label = items[int(i)]
            t1 = time.perf_counter()
            img, label = transform(img, label)
            t2 = time.perf_counter()
            if build is not None:
                build(label)
            t3 = time.perf_counter()
            if record:
                stages["read+mixup"] += t1 - t0
                stages["transform"] += t2 - t1
                stages["targets"] += t3 - t2

    run(order[:warmup], False)
    tic, cpu = time.perf_counter(), time.process_time()
    run(order[:n], True)
    rates = {"wall": n / (time.perf_counter() - tic), "cpu": n / (time.process_time() - cpu)}
    ms = {k: 1000 * v / n for k, v in stages.items()}
    return rates, ms, build is not None


def bench_gluoncv(python: str, dataset, size: int, n: int, warmup: int, mixup: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        labels = [dataset.label(i) for i in range(len(dataset))]
        offsets = np.cumsum([0] + [len(lab) for lab in labels])
        np.savez(os.path.join(tmp, "labels.npz"), rows=np.concatenate(labels), offsets=offsets)
        spec = {"paths": [dataset.image_path(i) for i in range(len(dataset))],
                "labels": os.path.join(tmp, "labels.npz"), "classes": list(dataset.classes),
                "size": size, "n": n, "warmup": warmup, "mixup": mixup}
        with open(os.path.join(tmp, "spec.json"), "w") as f:
            json.dump(spec, f)
        with open(os.path.join(tmp, "bench.py"), "w") as f:
            f.write(GLUONCV_BENCH)
        env = dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1",
                   PYTHONPATH="")
        core = str(sorted(os.sched_getaffinity(0))[-1]) if hasattr(os, "sched_getaffinity") else ""
        cmd = ([python, os.path.join(tmp, "bench.py"), os.path.join(tmp, "spec.json")])
        res = subprocess.run(cmd, env=env, capture_output=True, text=True,
                             preexec_fn=(lambda: os.sched_setaffinity(0, {int(core)})) if core
                             else None)
        if res.returncode != 0:
            raise RuntimeError(f"GluonCV benchmark failed:\n{res.stderr[-3000:]}")
        return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--data-root", default="data/synthetic",
                   help="VOC-layout data whose training images feed the pipeline")
    p.add_argument("--size", type=int, default=416, help="training input size (YOLOv3 shapes are multiples of 32)")
    p.add_argument("--num-images", type=int, default=300, help="images timed per measurement")
    p.add_argument("--warmup", type=int, default=20, help="images run before timing")
    p.add_argument("--no-mixup", action="store_true",
                   help="time the pipeline without mixup (one image decoded per sample)")
    p.add_argument("--gluoncv-python", default=None,
                   help="the reference environment's python (../shared/tools/gluoncv-oracle.sh): also time GluonCV's "
                        "pipeline on the same images")
    args = p.parse_args(argv)

    one_core()
    dataset = load_dataset(args.data_root)
    n = min(args.num_images, len(dataset))
    mixup = not args.no_mixup
    ours, ms, targets = bench_ours(dataset, args.size, n, args.warmup, mixup)
    print(f"{n} images of {args.data_root} at {args.size}, mixup={mixup}, "
          f"targets={'yes' if targets else 'absent (gluon_bof.model_zoo.yolo_target missing)'}")
    print("images/s per worker: wall clock (affected by other load on the machine) / "
          "per CPU-second of this process")
    print(f"  gluon-bof: {ours['wall']:6.1f} / {ours['cpu']:6.1f}   (ms per image, wall: "
          + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()) + ")")
    if args.gluoncv_python:
        theirs = bench_gluoncv(args.gluoncv_python, dataset, args.size, n, args.warmup, mixup)
        print(f"  GluonCV:   {theirs['wall']:6.1f} / {theirs['cpu']:6.1f}")
        print(f"  gluon-bof / GluonCV: {ours['wall'] / theirs['wall']:.2f}x wall, "
              f"{ours['cpu'] / theirs['cpu']:.2f}x CPU")


if __name__ == "__main__":
    run_script(main)
