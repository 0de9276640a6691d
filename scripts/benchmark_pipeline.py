"""Throughput of the YOLOv3 training data pipeline per core (one DataLoader worker's work).

    python scripts/benchmark_pipeline.py [--data-root data/synthetic] [--no-voc-size] [--size 416]
        [--num-images 300] [--rounds 3] [--no-mixup] [--gluoncv-python PYTHON]
        [--baseline-root DIR] [--device-augment [--device cuda]] [--profile 25] [--json FILE]

Per image: read + decode (VOCDetection), MixupDetection with Beta(1.5, 1.5) (a second read), the
YOLO3DefaultTrainTransform at ``--size``, YOLO target building and the batch's collate, in batches
of ``--target-batch`` images (GluonCV's batch per GPU). GluonCV builds targets per image in its
workers (the transform given the network) and batches with train_yolo3.py's ``Tuple(Stack() x 6,
Pad(-1))``; gluon-bof collates images and padded labels and builds targets inside the network, on
the training device, for a whole batch (``yolo_target.prefetch_targets``: timed here on the CPU,
per batch; ``--target-batch 1`` times them per image).

Images: by default VOC-sized (``--voc-size``): the first ``--num-images`` training images of the
built-in data set, resized (bicubic) to 500x375, or 375x500 where the source is taller than wide
(VOC's two common sizes), saved as JPEG quality 90 with their boxes scaled, under
``<data-root>-voc500`` (made once, deterministically). ``--no-voc-size``: the built-in images
as they are (256-416 px wide). ``--data-root`` is generated with ``gluon_bof.data.synthetic``
when it does not exist.

Every side runs in its own process pinned to one core, with OpenCV, torch and MXNet limited to
one thread, in ``--rounds`` interleaved rounds (the sides take turns, so a change in the
machine's load hits them alike); a side's rate is its median over the rounds. Rates are images
per CPU-second of that process (what a core gives, on a machine shared with other jobs) and per
wall-clock second. Sides: gluon-bof (this checkout); ``--baseline-root DIR`` another checkout of
gluon-bof (e.g. ``git worktree add /tmp/base HEAD~1``) on the same images; ``--gluoncv-python``
GluonCV's MixupDetection + YOLO3DefaultTrainTransform(net=yolo3_darknet53) in the reference
environment; ``--device-augment`` gluon-bof's device pipeline (``build.yolo3_train_loader(...,
device_augment=True)``): the workers' share per core (read the files, draw the augmentation, the
resize tables, the collate) and, separately, the device's share (``render_batch``: decode, blend,
resize, colour) on ``--device``, per image.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run by this checkout's (or the baseline's) python with argv[1] = JSON spec. Only public API that
# older checkouts have too, so a baseline runs the same code.
OURS_BENCH = r'''
import cProfile, io, json, os, pstats, sys, time
spec = json.load(open(sys.argv[1]))
sys.path.insert(0, spec["root"])
import cv2, numpy as np, torch
cv2.setNumThreads(1)
torch.set_num_threads(1)
from gluon_bof.data.voc import VOCDetection
from gluon_bof.data.mixup import MixupDetection
from gluon_bof.data.loader import detection_collate
from gluon_bof.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
try:
    from gluon_bof.model_zoo.yolo_target import prefetch_targets
except ImportError:
    prefetch_targets = None
s, B = spec["size"], spec["target_batch"]
dataset = VOCDetection(spec["data"], splits=((2007, "trainval"),))
device_augment = spec.get("device_augment", False)
transform = YOLO3DefaultTrainTransform(s, s, mixup=spec["mixup"])
collate = detection_collate
if device_augment:
    from gluon_bof.data.transforms.device import (EncodedDataset, YOLO3DeviceTrainTransform,
                                                  device_collate, render_batch)
    dataset = EncodedDataset(dataset)
    transform, collate = YOLO3DeviceTrainTransform(transform), device_collate
items = MixupDetection.beta(dataset, 1.5, 1.5) if spec["mixup"] else dataset
anchors = [torch.tensor(a, dtype=torch.float32) for a in (
    [[116, 90], [156, 198], [373, 326]], [[30, 61], [62, 45], [59, 119]], [[10, 13], [16, 30], [33, 23]])]
feats = [(s // k, s // k) for k in (32, 16, 8)]
T = time.thread_time
stages = dict.fromkeys(["read+mixup", "transform", "collate", "targets"], 0.0)
batches = []

def finish(batch, record):
    t0 = T()
    out = collate(batch)
    t1 = T()
    if device_augment:
        batches.append(out)
    elif prefetch_targets is not None:
        labels = out[1]
        prefetch_targets(anchors, feats, (s, s), labels[..., :4], labels[..., 4], len(dataset.classes),
                         gt_mix=labels[..., 5])
    if record:
        stages["collate"] += t1 - t0
        stages["targets"] += T() - t1

def run(idx, record):
    batch = []
    for i in idx:
        t0 = T()
        img, label = items[int(i)]
        t1 = T()
        batch.append(transform(img, label))
        t2 = T()
        if record:
            stages["read+mixup"] += t1 - t0
            stages["transform"] += t2 - t1
        if len(batch) == B:
            finish(batch, record)
            batch = []
    if batch:
        finish(batch, record)

np.random.seed(0)
order = np.random.permutation(len(items))
n = min(spec["n"], len(items))
run(order[:spec["warmup"]], False)
batches.clear()
wall, cpu = time.perf_counter(), time.process_time()
run(order[:n], True)
res = {"wall": n / (time.perf_counter() - wall), "cpu": n / (time.process_time() - cpu),
       "ms": {k: 1000 * v / n for k, v in stages.items()}, "targets": prefetch_targets is not None}
if device_augment:  # the device's share, after the workers' share was timed
    device = torch.device(spec["device"])
    render_batch(batches[0], device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    for b in batches:
        render_batch(b, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    res["device"] = {"wall": n / (time.perf_counter() - wall), "cpu": n / (time.process_time() - cpu),
                     "name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform_name}
if spec.get("profile"):
    prof = cProfile.Profile(timer=time.thread_time)
    prof.enable()
    run(order[:n], False)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(spec["profile"])
    res["profile"] = text.getvalue()
print(json.dumps(res))
'''.replace("platform_name", repr(platform.processor() or "cpu"))

# Run by the GluonCV interpreter: argv[1] = JSON spec written by this script.
GLUONCV_BENCH = r'''
import json, os, sys, time
spec = json.load(open(sys.argv[1]))
import numpy as np, mxnet as mx
from gluoncv import model_zoo
from gluoncv.data.mixup.detection import MixupDetection
from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
from gluoncv.data.batchify import Pad, Stack, Tuple
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
batchify = Tuple(*([Stack() for _ in range(6)] + [Pad(axis=0, pad_val=-1)]))  # train_yolo3.py's
np.random.seed(0)
def run(idx):
    batch = []
    for i in idx:
        batch.append(t(*dataset[int(i)]))
        mx.nd.waitall()
        if len(batch) == spec["target_batch"]:
            batchify(batch)
            mx.nd.waitall()
            batch = []
    if batch:
        batchify(batch)
        mx.nd.waitall()
order = np.random.permutation(len(dataset))
n = min(spec["n"], len(dataset))
run(order[:spec["warmup"]])
tic, cpu = time.perf_counter(), time.process_time()
run(order[:n])
print(json.dumps({"wall": n / (time.perf_counter() - tic),
                  "cpu": n / (time.process_time() - cpu)}))
'''


def voc_sized(src_root: str, dst_root: str, num: int) -> str:
    """The first ``num`` training images of the VOC-layout data at ``src_root`` resized to 500x375
    (375x500 when taller than wide), JPEG quality 90, boxes scaled, written at ``dst_root`` in the
    VOC layout (made once; remade when it holds fewer images or another source)."""
    import cv2
    from gluon_bof.data.base import read_image
    from gluon_bof.data.voc import VOCDetection

    stamp = os.path.join(dst_root, "made-from.json")
    want = {"source": os.path.abspath(src_root), "images": num, "size": [500, 375], "quality": 90}
    if os.path.isfile(stamp):
        with open(stamp) as f:
            have = json.load(f)
        if have.get("source") == want["source"] and have.get("images", 0) >= num:
            return dst_root
    src = VOCDetection(src_root, splits=((2007, "trainval"),))
    voc = os.path.join(dst_root, "VOC2007")
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    ids = []
    for i in range(min(num, len(src))):
        img = read_image(src.image_path(i))
        h, w = img.shape[:2]
        new_w, new_h = (500, 375) if w >= h else (375, 500)
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
        label = src.label(i)
        label[:, [0, 2]] *= new_w / w
        label[:, [1, 3]] *= new_h / h
        img_id = f"{i:06d}"
        ids.append(img_id)
        cv2.imwrite(os.path.join(voc, "JPEGImages", img_id + ".jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        objects = "".join(
            f"<object><name>{src.classes[int(r[4])]}</name><difficult>{int(r[5])}</difficult><bndbox>"
            f"<xmin>{r[0] + 1:.2f}</xmin><ymin>{r[1] + 1:.2f}</ymin><xmax>{r[2] + 1:.2f}</xmax>"
            f"<ymax>{r[3] + 1:.2f}</ymax></bndbox></object>" for r in label)  # VOC: 1-based
        with open(os.path.join(voc, "Annotations", img_id + ".xml"), "w") as f:
            f.write(f"<annotation><size><width>{new_w}</width><height>{new_h}</height><depth>3</depth>"
                    f"</size>{objects}</annotation>\n")
    with open(os.path.join(voc, "ImageSets", "Main", "trainval.txt"), "w") as f:
        f.write("".join(i + "\n" for i in ids))
    with open(os.path.join(dst_root, "classes.txt"), "w") as f:
        f.write("\n".join(src.classes) + "\n")
    with open(stamp, "w") as f:
        json.dump(want, f)
    return dst_root


def images(args):
    """``(VOC-layout root the sides read, its VOCDetection)``."""
    from gluon_bof.data.voc import VOCDetection

    root = args.data_root
    if not os.path.isdir(root):
        from gluon_bof.data.synthetic import generate
        print(f"{root} missing: generating the synthetic dataset there")
        generate(root)
    if args.voc_size:
        root = voc_sized(root, args.voc_root or root.rstrip("/") + "-voc500", args.num_images + args.warmup)
    return root, VOCDetection(root, splits=((2007, "trainval"),))


def core() -> int:
    return sorted(os.sched_getaffinity(0))[-1] if hasattr(os, "sched_getaffinity") else -1


def run_side(cmd, spec: dict, tmp: str, name: str) -> dict:
    path = os.path.join(tmp, f"spec-{name}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1",
               PYTHONPATH="")
    c = core()
    res = subprocess.run(cmd + [path], env=env, capture_output=True, text=True,
                         preexec_fn=(lambda: os.sched_setaffinity(0, {c})) if c >= 0 else None)
    if res.returncode != 0:
        raise RuntimeError(f"{name} benchmark failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def median(values):
    return float(np.median(values))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--data-root", default="data/synthetic",
                   help="VOC-layout data whose training images feed the pipeline (the built-in data, generated "
                        "when missing)")
    p.add_argument("--voc-size", action=argparse.BooleanOptionalAction, default=True,
                   help="time on VOC-sized copies (500x375 / 375x500, JPEG quality 90) of the images; "
                        "--no-voc-size: the images as they are")
    p.add_argument("--voc-root", default=None,
                   help="where the VOC-sized copies go (default: <data-root>-voc500)")
    p.add_argument("--size", type=int, default=416, help="training input size (YOLOv3 shapes are multiples of 32)")
    p.add_argument("--num-images", type=int, default=300, help="images timed per measurement")
    p.add_argument("--warmup", type=int, default=20, help="images run before timing")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds of every side; each side's rate is its median")
    p.add_argument("--target-batch", type=int, default=8,
                   help="images per batch: gluon-bof's collate and target building, GluonCV's batchify (its batch per "
                        "GPU); 1: targets per image")
    p.add_argument("--no-mixup", action="store_true",
                   help="time the pipeline without mixup (one image decoded per sample)")
    p.add_argument("--gluoncv-python", default=None,
                   help="the reference environment's python (../shared/tools/gluoncv-oracle.sh): also time GluonCV's "
                        "pipeline on the same images")
    p.add_argument("--baseline-root", default=None,
                   help="another gluon-bof checkout (its repository root) to time beside this one")
    p.add_argument("--device-augment", action="store_true",
                   help="also time the device pipeline (build.yolo3_train_loader(..., device_augment=True)): "
                        "its workers' share per core and the device's share")
    p.add_argument("--device", default="cuda",
                   help="device for --device-augment's device share (cpu when CUDA is unavailable)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="print the N functions where this checkout's pipeline spends most CPU time (cProfile)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures to FILE as JSON")
    args = p.parse_args(argv)
    if args.num_images < 1 or args.rounds < 1 or args.target_batch < 1 or args.warmup < 0:
        raise SystemExit("--num-images, --rounds and --target-batch must be >= 1, --warmup >= 0")
    if args.baseline_root and not os.path.isfile(os.path.join(args.baseline_root, "gluon_bof", "__init__.py")):
        raise SystemExit(f"--baseline-root {args.baseline_root}: no gluon_bof package there")

    import torch
    device = args.device if (args.device != "cuda" or torch.cuda.is_available()) else "cpu"
    root, dataset = images(args)
    n = min(args.num_images, len(dataset))
    mixup = not args.no_mixup
    spec = {"data": os.path.abspath(root), "size": args.size, "n": n, "warmup": args.warmup, "mixup": mixup,
            "target_batch": args.target_batch}
    sides = {"gluon-bof": ([sys.executable, "-c", OURS_BENCH], dict(spec, root=ROOT))}
    if args.baseline_root:
        sides["baseline"] = ([sys.executable, "-c", OURS_BENCH], dict(spec, root=os.path.abspath(args.baseline_root)))
    if args.device_augment:
        sides["device-augment"] = ([sys.executable, "-c", OURS_BENCH],
                                   dict(spec, root=ROOT, device_augment=True, device=device))
    with tempfile.TemporaryDirectory() as tmp:
        if args.gluoncv_python:
            labels = [dataset.label(i) for i in range(len(dataset))]
            np.savez(os.path.join(tmp, "labels.npz"), rows=np.concatenate(labels),
                     offsets=np.cumsum([0] + [len(lab) for lab in labels]))
            with open(os.path.join(tmp, "gluoncv_bench.py"), "w") as f:
                f.write(GLUONCV_BENCH)
            sides["GluonCV"] = ([args.gluoncv_python, os.path.join(tmp, "gluoncv_bench.py")],
                                dict(spec, paths=[dataset.image_path(i) for i in range(len(dataset))],
                                     labels=os.path.join(tmp, "labels.npz"), classes=list(dataset.classes)))
        names = list(sides)
        runs = {k: [] for k in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                cmd, side_spec = sides[name]
                runs[name].append(run_side(cmd, side_spec, tmp, name))
        profile = None
        if args.profile:
            cmd, side_spec = sides["gluon-bof"]
            profile = run_side(cmd, dict(side_spec, profile=args.profile), tmp, "profile")["profile"]

    result = {k: {"cpu": median([x["cpu"] for x in v]), "wall": median([x["wall"] for x in v]),
                  "rounds_cpu": [x["cpu"] for x in v]} for k, v in runs.items()}
    for k in ("gluon-bof", "baseline", "device-augment"):
        if k in runs:
            result[k]["ms"] = {s: median([x["ms"][s] for x in runs[k]]) for s in runs[k][0]["ms"]}
    if "device-augment" in runs:
        result["device-augment"]["device"] = {
            "name": runs["device-augment"][0]["device"]["name"], "device": device,
            "cpu": median([x["device"]["cpu"] for x in runs["device-augment"]]),
            "wall": median([x["device"]["wall"] for x in runs["device-augment"]])}
    ratios = {}
    for other in ("GluonCV", "baseline"):
        if other in runs:
            for k in ("gluon-bof", "device-augment"):
                if k in runs:  # median of the per-round ratios: each round's sides ran side by side
                    ratios[f"{k} / {other}"] = median([a["cpu"] / b["cpu"] for a, b in zip(runs[k], runs[other])])

    targets = runs["gluon-bof"][0]["targets"]
    print(f"{n} {'VOC-sized (500x375 / 375x500, JPEG q90)' if args.voc_size else 'built-in'} images of {root} "
          f"at {args.size}, mixup={mixup}, targets "
          + (f"per batch of {args.target_batch}" if targets else "absent (gluon_bof.model_zoo.yolo_target missing)")
          + f", {args.rounds} rounds on core {core()}")
    print("images/s per core: per CPU-second of the process (median of the rounds) / wall clock")
    for name, r in result.items():
        extra = ""
        if "ms" in r:
            extra = "   CPU ms per image: " + ", ".join(f"{k} {v:.2f}" for k, v in r["ms"].items())
        print(f"  {name:15s} {r['cpu']:7.1f} / {r['wall']:7.1f}{extra}")
        if "device" in r:
            d = r["device"]
            print(f"  {'':15s} device share on {d['device']} ({d['name']}): {d['wall']:.1f} images/s wall, "
                  f"{d['cpu']:.1f} per CPU-second of the training process")
    for k, v in ratios.items():
        print(f"  {k}: {v:.2f}x per core")
    if profile:
        print(f"\ngluon-bof's pipeline, top {args.profile} functions by own CPU time:\n{profile}")
    if args.json:
        record = {"date": datetime.date.today().isoformat(), "machine": machine(), "command": " ".join(sys.argv),
                  "images": {"root": root, "count": n, "voc_size": args.voc_size}, "size": args.size,
                  "mixup": mixup, "target_batch": args.target_batch, "rounds": args.rounds,
                  "results": result, "ratios": ratios}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        info["load_average"] = os.getloadavg()
    except (OSError, StopIteration):
        pass
    return info


if __name__ == "__main__":
    run_script(main)
