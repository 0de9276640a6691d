#!/usr/bin/env python
"""Training and inference images/s of the detectors, per precision, memory format and torch.compile.

    python scripts/benchmark_speed.py --out runs/bench                       # this device's default matrix
    python scripts/benchmark_speed.py --device cuda --models yolo3_darknet53 --sizes 416 \
        --precisions bfloat16 --compile on --channels-last on --batch-size 64 --out runs/bench
    python scripts/benchmark_speed.py --device cpu --gluoncv-python $(../shared/tools/gluoncv-oracle.sh)

Models (``--models NAME[@SIZE]``, SIZE = N or HxW): ``yolo3_darknet53`` and ``yolo3_mobilenet1.0``
(VOC heads, square inputs of ``--sizes``), ``faster_rcnn_resnet50_v1b`` (C4, VOC, 600x1000) and
``faster_rcnn_fpn_resnet50_v1b`` (COCO, 800x1333). Random weights and random images (speed does not
depend on them); training labels are four boxes per image.

Every combination of ``--precisions`` (float32, bfloat16, float16: autocast; float16 with the loss
scaler, CUDA only), ``--compile`` (off/on: ``torch.compile``) and ``--channels-last`` (off/on) is
timed for ``--modes``: ``train`` is one update of ``gluon_bof.engine.train_one_epoch`` (the
training scripts' loop: forward, losses, backward, MXNet-rule SGD), ``infer`` the network in eval
mode, NMS included. Images/s = batch x timed iterations / their wall time between device
synchronisations, after ``--warmup`` untimed iterations (compilation happens there; its time is
reported as ``first s``).

Also measured in the same run: the device's matrix-product peak (2048^3 on a CPU, 8192^3 on a GPU,
in float32, bfloat16 and on CUDA TF32 and float16), each model's FLOPs per image
(``FlopCounterMode``: convolutions and matrix products, 2 per multiply-add) and so the achieved
fraction of the peak of the precision used (float32 on CUDA: the TF32 peak, as cuDNN's float32
convolutions use TF32 by default); the host syncs of one training update and one inference batch
(``gluon_bof.utils.speed.SyncCounter``: what makes the host wait for a CUDA device, with the source
line); and with ``--gluoncv-python``, GluonCV 0.10.5's YOLOv3-darknet53 (float32, hybridized) beside
ours: inference at 416 batch 1 and a training step at 320 batch 4, same threads.

``--out DIR`` receives ``speed.json`` and ``speed.md``.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluon_bof import model_zoo  # noqa: E402
from gluon_bof.data.loader import TrainBatch  # noqa: E402
from gluon_bof.engine import (amp_settings, compile_model, convert_channels_last, cpu_bf16_supported,  # noqa: E402
                              to_device, train_one_epoch)
from gluon_bof.errors import ConfigError  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402
from gluon_bof.utils.optim import build_sgd, param_groups  # noqa: E402
from gluon_bof.utils.speed import SyncCounter, count_flops, matmul_peak, timed  # noqa: E402
from gluon_bof.utils.threads import configure_threads  # noqa: E402

# short name -> (zoo name, kind, default size (h, w) or None: --sizes)
MODELS = {
    "yolo3_darknet53": ("yolo3_darknet53_voc", "yolo", None),
    "yolo3_mobilenet1.0": ("yolo3_mobilenet1.0_voc", "yolo", None),
    "faster_rcnn_resnet50_v1b": ("faster_rcnn_resnet50_v1b_voc", "rcnn", (600, 1000)),
    "faster_rcnn_fpn_resnet50_v1b": ("faster_rcnn_fpn_resnet50_v1b_coco", "rcnn", (800, 1333)),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

GLUONCV_BENCH = r'''
import json, sys, time
import numpy as np, mxnet as mx
from mxnet import autograd, gluon
from gluoncv import model_zoo
from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
spec = json.loads(sys.argv[1])
net = model_zoo.get_model("yolo3_darknet53_voc", pretrained_base=False)
net.initialize(mx.init.Xavier())
net.hybridize()
# training on its own network: a hybridized block keeps one call structure (net(x) for inference,
# net(x, gt, *targets) for training); GluonCV's train_yolo3.py builds the transform from the net
# before hybridizing it (a hybridized copy would replay the inference graph: 3 outputs, not 8)
tnet = model_zoo.get_model("yolo3_darknet53_voc", pretrained_base=False)
tnet.initialize(mx.init.Xavier())
b, s = 4, 320
transform = YOLO3DefaultTrainTransform(s, s, tnet)
tnet.hybridize()
def timeit(step, warmup, iters):
    first = None
    for _ in range(warmup):
        t = time.perf_counter(); step(); mx.nd.waitall(); first = first or time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    mx.nd.waitall()
    return {"seconds": time.perf_counter() - t, "cpu_s": time.process_time() - cpu, "first_s": first}
rng = np.random.RandomState(0)
x = mx.nd.array(rng.randn(1, 3, 416, 416).astype("float32"))
def infer():
    net(x)
out = {"infer": timeit(infer, spec["warmup"], spec["iters"])}
items = []
for i in range(b):
    img = mx.nd.array(rng.randint(0, 255, (s, s, 3)).astype("uint8"))
    xy = rng.rand(4, 2) * s / 2
    lab = np.concatenate([xy, xy + s / 4, np.zeros((4, 1)), np.ones((4, 1))], 1).astype("float32")
    items.append(transform(img, lab))
data = mx.nd.stack(*[it[0] for it in items])
targets = [mx.nd.stack(*[it[k] for it in items]) for k in range(1, 6)]
gt = mx.nd.stack(*[it[6] for it in items])
trainer = gluon.Trainer(tnet.collect_params(), "sgd", {"learning_rate": 1e-5, "wd": 5e-4, "momentum": 0.9})
def train():
    with autograd.record():
        losses = tnet(data, gt, *targets)
        autograd.backward([sum(losses)])
    trainer.step(b)
out["train"] = timeit(train, spec["warmup"], spec["iters"])
print(json.dumps(out))
'''


def parse_models(specs, sizes):
    """``[(short name, zoo name, kind, (h, w))]`` for ``--models NAME[@SIZE]``."""
    out = []
    for spec in specs:
        name, _, size = spec.partition("@")
        if name not in MODELS:
            raise ConfigError(f"--models {spec}: one of {', '.join(MODELS)} (optionally @SIZE or @HxW)")
        zoo, kind, default = MODELS[name]
        if size:
            h, _, w = size.partition("x")
            shapes = [(int(h), int(w or h))]
        else:
            shapes = [default] if default else [(s, s) for s in sizes]
        out += [(name, zoo, kind, hw) for hw in shapes]
    return out


def random_labels(batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """``[batch, 4, 6]`` boxes (xyxy within the image, class 0..3, mix weight 1)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, 4, 2, generator=g) * torch.tensor([w / 2, h / 2])
    wh = (0.1 + torch.rand(batch, 4, 2, generator=g) * 0.4) * torch.tensor([w, h])
    cls = torch.arange(4, dtype=torch.float32).expand(batch, 4)[..., None]
    return torch.cat([xy, xy + wh, cls, torch.ones(batch, 4, 1)], -1)


class _Constant:
    """A learning-rate schedule that leaves the rate alone (``train_one_epoch`` steps it)."""

    def step(self):
        pass


def host_batch(batch: int, h: int, w: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))
    return x.pin_memory() if device.type == "cuda" else x


class Bench:
    """One model at one size on one device, in any precision / format / compilation."""

    def __init__(self, zoo: str, hw, device: torch.device, train_batch: int, infer_batch: int):
        torch.manual_seed(0)
        self.net = model_zoo.get_model(zoo).to(device)
        self.device, self.hw = device, hw
        self.train_batch, self.infer_batch = train_batch, infer_batch
        h, w = hw
        self.batches = [TrainBatch(host_batch(train_batch, h, w, device, s), random_labels(train_batch, h, w, s))
                        for s in range(2)]
        self.infer_x = host_batch(infer_batch, h, w, device)
        self.optimizer = build_sgd(param_groups(self.net, 5e-4, False), lr=1e-5, momentum=0.9, rule="mxnet")

    def model(self, channels_last: bool, compiled: bool):
        torch._dynamo.reset()  # no compiled code or recompilation count carried between configurations
        convert_channels_last(self.net, channels_last)
        return compile_model(self.net) if compiled else self.net

    def train_steps(self, model, n: int, amp_dtype, scaler, channels_last: bool):
        loader = [self.batches[i % 2] for i in range(n)]
        train_one_epoch(model, loader, self.optimizer, _Constant(), epoch=0, device=self.device, scaler=scaler,
                        amp_dtype=amp_dtype, log_interval=0, channels_last=channels_last)

    def infer_step(self, model, amp_dtype, channels_last: bool):
        model.eval()
        with torch.no_grad(), torch.autocast(self.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            model(to_device(self.infer_x, self.device, channels_last))

    def flops(self, mode: str) -> int:
        """FLOPs per image of one eager float32 step (forward + backward for ``train``)."""
        net = self.model(False, False)
        if mode == "infer":
            net.eval()
            with torch.no_grad():
                return count_flops(lambda: net(self.infer_x.to(self.device))) // self.infer_batch
        net.train()
        b = self.batches[0]

        def step():
            losses = net(b.images.to(self.device), b.labels.to(self.device))
            sum(v for k, v in losses.items() if k.endswith("loss")).backward()
        flops = count_flops(step) // self.train_batch
        net.zero_grad(set_to_none=True)
        return flops

    def syncs(self, mode: str) -> dict:
        """Host syncs of one eager float32 training update (through ``train_one_epoch``, its epoch-end
        flush included) or one inference batch."""
        net = self.model(False, False)
        with SyncCounter() as counter:
            if mode == "train":
                self.train_steps(net, 1, None, None, False)
            else:
                self.infer_step(net, None, False)
        return {"total": counter.total, "by_kind": counter.by_kind, "sites": counter.table()}

    def run(self, mode: str, precision: str, channels_last: bool, compiled: bool, iters: int, warmup: int) -> dict:
        amp_dtype, scaler = amp_settings(precision != "float32", precision, self.device, flag="--precisions")
        model = self.model(channels_last, compiled)
        if mode == "train":
            def steps(n):
                return lambda: self.train_steps(model, n, amp_dtype, scaler, channels_last)
            t = timed(steps(1), self.device, iters=0, warmup=warmup)
            t.update({k: v for k, v in timed(steps(iters), self.device, iters=1, warmup=0).items()  # one epoch
                      if k in ("seconds", "cpu_s")})
            batch = self.train_batch
        else:
            t = timed(lambda: self.infer_step(model, amp_dtype, channels_last), self.device, iters=iters,
                      warmup=warmup)
            batch = self.infer_batch
        seconds = t["seconds"]
        return {"batch": batch, "iters": iters, "seconds": seconds, "images_per_s": batch * iters / seconds,
                "images_per_cpu_s": batch * iters / max(t["cpu_s"], 1e-9), "first_s": t["first_s"]}


def measure_peaks(device: torch.device, precisions, n=None) -> dict:
    peaks = {"float32": matmul_peak(device, torch.float32, n)}
    if device.type == "cuda":
        peaks["tf32"] = matmul_peak(device, torch.float32, n, tf32=True)
    for p in precisions:
        if p != "float32" and p not in peaks:
            peaks[p] = matmul_peak(device, DTYPES[p], n)
    return peaks


def peak_key(precision: str, device: torch.device) -> str:
    if precision == "float32" and device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return precision


def device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "cpu": cpu_model(), "cpu_bf16": cpu_bf16_supported()}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def run_gluoncv(python: str, iters: int, warmup: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()),
               MXNET_CPU_WORKER_NTHREADS=str(torch.get_num_threads()), PYTHONPATH="")
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "bench.py")
        with open(script, "w") as f:
            f.write(GLUONCV_BENCH)
        res = subprocess.run([python, script, json.dumps({"iters": iters, "warmup": warmup})], env=env,
                             capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"GluonCV benchmark failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {f"{mode}_{what}": {"images_per_s": iters * b / out[mode]["seconds"],
                               "images_per_cpu_s": iters * b / out[mode]["cpu_s"]}
            for mode, what, b in (("infer", "416_b1", 1), ("train", "320_b4", 4))}


def gluoncv_comparison(python: str, device: torch.device, iters: int, warmup: int) -> list:
    """GluonCV's YOLOv3-darknet53 and ours (float32, eager, contiguous), inference 416 b1 and
    train 320 b4, one after the other in this run."""
    ours = {"infer_416_b1": Bench("yolo3_darknet53_voc", (416, 416), device, 4, 1).run(
        "infer", "float32", False, False, iters, warmup),
        "train_320_b4": Bench("yolo3_darknet53_voc", (320, 320), device, 4, 1).run(
        "train", "float32", False, False, iters, warmup)}
    theirs = run_gluoncv(python, iters, warmup)
    return [{"what": k, "ours_images_per_s": ours[k]["images_per_s"], "ours_images_per_cpu_s": ours[k]["images_per_cpu_s"],
             "gluoncv_images_per_s": theirs[k]["images_per_s"],
             "gluoncv_images_per_cpu_s": theirs[k]["images_per_cpu_s"],
             "ratio": ours[k]["images_per_s"] / theirs[k]["images_per_s"],
             "ratio_cpu": ours[k]["images_per_cpu_s"] / theirs[k]["images_per_cpu_s"]}
            for k in ("infer_416_b1", "train_320_b4")]


def markdown(report: dict) -> str:
    info, peaks = report["device_info"], report["peaks"]
    lines = [f"# Speed on {info.get('gpu', info['cpu'])} ({info['device']}, torch {info['torch']}, "
             f"{info['threads']} threads), {report['date']}", "", f"`{report['command']}`", "",
             "| matmul peak | TFLOP/s |", "|---|---|"]
    lines += [f"| {k} | {v / 1e12:.3f} |" for k, v in peaks.items()]
    lines += ["", "| model | input | mode | batch | precision | channels_last | compile | images/s | per CPU-s | "
                  "first s | GFLOP/image | TFLOP/s | of peak |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        head = (f"| {r['model']} | {r['input']} | {r['mode']} | {r.get('batch', '')} | {r['precision']} | "
                f"{'on' if r['channels_last'] else 'off'} | {'on' if r['compile'] else 'off'} |")
        if "error" in r:
            lines.append(head + f" error: {r['error'][:80]} | | | | | |")
            continue
        flops = r.get("flops_per_image")
        first = f"{r['first_s']:.1f}" if r.get("first_s") is not None else ""
        lines.append(head + f" {r['images_per_s']:.2f} | {r['images_per_cpu_s']:.2f} | {first} | "
                     + (f"{flops / 1e9:.1f} | {r['achieved_flops'] / 1e12:.3f} | {r['peak_fraction']:.1%} |"
                        if flops else " | | |"))
    for name, modes in report.get("syncs", {}).items():
        for mode, s in modes.items():
            lines += ["", f"Host syncs, {name} {mode}: {s['total']} ({', '.join(f'{k} {v}' for k, v in s['by_kind'].items())})",
                      "", "| site | kind | count |", "|---|---|---|"]
            lines += [f"| {x['site']} | {x['kind']} | {x['count']} |" for x in s["sites"]]
    if report.get("gluoncv"):
        lines += ["", "| YOLOv3-darknet53, float32 | gluon-bof images/s (per CPU-s) | GluonCV images/s (per CPU-s) | "
                      "ratio wall (CPU) |", "|---|---|---|---|"]
        lines += [f"| {c['what']} | {c['ours_images_per_s']:.2f} ({c['ours_images_per_cpu_s']:.2f}) | "
                  f"{c['gluoncv_images_per_s']:.2f} ({c['gluoncv_images_per_cpu_s']:.2f}) | "
                  f"{c['ratio']:.2f}x ({c['ratio_cpu']:.2f}x) |" for c in report["gluoncv"]]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
                                epilog="Defaults depend on --device: CPU: yolo3_darknet53 and yolo3_mobilenet1.0 at "
                                       "320, batch 1, float32 and bfloat16 (where native), eager, channels_last off "
                                       "and on, 2 timed iterations. CUDA: every model at 320 416 608, float32 "
                                       "bfloat16 float16, eager and compiled, channels_last on, train batch 32 "
                                       "(YOLO) / 4 (R-CNN), inference batch 64 / 4, 10 timed iterations.")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    p.add_argument("--models", nargs="+", default=None, help=f"NAME[@SIZE|@HxW], NAME in {', '.join(MODELS)}")
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="YOLOv3 input sizes")
    p.add_argument("--precisions", nargs="+", default=None, choices=list(DTYPES), help="autocast precisions")
    p.add_argument("--compile", nargs="+", default=None, choices=["off", "on"], help="torch.compile off and/or on")
    p.add_argument("--channels-last", nargs="+", default=None, choices=["off", "on"],
                   help="channels_last memory format off and/or on")
    p.add_argument("--modes", nargs="+", default=["train", "infer"], choices=["train", "infer"], help="what to time")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default by device and model)")
    p.add_argument("--infer-batch-size", type=int, default=None, help="inference batch (default by device and model)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations per configuration")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations first (compilation runs there)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP counts (one more eager step per model)")
    p.add_argument("--no-syncs", action="store_true", help="skip counting host syncs")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores this process may use)")
    p.add_argument("--matmul-size", type=int, default=None, help="n of the n^3 peak product (default: 8192 CUDA, 2048 CPU)")
    p.add_argument("--gluoncv-python", default=None,
                   help="the reference environment's python: also time GluonCV's YOLOv3-darknet53 (CPU)")
    p.add_argument("--out", default="runs/bench", help="folder for speed.json and speed.md")
    return p.parse_args(argv)


def resolve_defaults(args, device: torch.device) -> None:
    cuda = device.type == "cuda"
    if args.models is None:
        args.models = list(MODELS) if cuda else ["yolo3_darknet53", "yolo3_mobilenet1.0"]
    args.sizes = args.sizes or ([320, 416, 608] if cuda else [320])
    if args.precisions is None:
        args.precisions = (["float32", "bfloat16", "float16"] if cuda
                           else ["float32"] + (["bfloat16"] if cpu_bf16_supported() else []))
    args.compile = args.compile or (["off", "on"] if cuda else ["off"])
    args.channels_last = args.channels_last or (["on"] if cuda else ["off", "on"])
    args.iters = args.iters or (10 if cuda else 2)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device here")
    configure_threads(0, args.threads)
    resolve_defaults(args, device)
    for p in args.precisions:  # refuse what the device cannot do before measuring anything
        amp_settings(p != "float32", p, device, flag="--precisions")
    cuda = device.type == "cuda"
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join(["python scripts/benchmark_speed.py"] + list(argv if argv is not None else sys.argv[1:])),
              "device_info": device_info(device), "matmul_size": args.matmul_size or (8192 if cuda else 2048),
              "peaks": measure_peaks(device, args.precisions, args.matmul_size),
              "results": [], "syncs": {}}
    print("matmul peaks (TFLOP/s): " + ", ".join(f"{k} {v / 1e12:.2f}" for k, v in report["peaks"].items()),
          flush=True)
    for name, zoo, kind, hw in parse_models(args.models, args.sizes):
        train_b = args.batch_size or ((32 if kind == "yolo" else 4) if cuda else 1)
        infer_b = args.infer_batch_size or ((64 if kind == "yolo" else 4) if cuda else 1)
        bench = Bench(zoo, hw, device, train_b, infer_b)
        flops = {} if args.no_flops else {m: bench.flops(m) for m in args.modes}
        if not args.no_syncs and name not in report["syncs"]:
            report["syncs"][name] = {m: bench.syncs(m) for m in args.modes}
        for mode in args.modes:
            for precision in args.precisions:
                for cl in args.channels_last:
                    for comp in args.compile:
                        row = {"model": name, "zoo": zoo, "input": f"{hw[0]}x{hw[1]}", "mode": mode,
                               "precision": precision, "channels_last": cl == "on", "compile": comp == "on"}
                        try:
                            row.update(bench.run(mode, precision, cl == "on", comp == "on", args.iters, args.warmup))
                        except (RuntimeError, torch.OutOfMemoryError) as e:  # noqa: PERF203
                            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                            if cuda:
                                torch.cuda.empty_cache()
                        if mode in flops and "images_per_s" in row:
                            key = peak_key(precision, device)
                            row.update(flops_per_image=flops[mode], peak=key,
                                       achieved_flops=flops[mode] * row["images_per_s"])
                            row["peak_fraction"] = row["achieved_flops"] / report["peaks"][key]
                        report["results"].append(row)
                        print(json.dumps(row), flush=True)
        del bench
    torch._dynamo.reset()
    if args.gluoncv_python:
        try:
            report["gluoncv"] = gluoncv_comparison(args.gluoncv_python, device, args.iters, args.warmup)
        except RuntimeError as e:  # keep what was measured; say why the comparison is missing
            report["gluoncv_error"] = str(e)[-2000:]
            print(f"GluonCV comparison failed: {str(e)[-500:]}", file=sys.stderr, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "speed.json"), "w") as f:
        json.dump(report, f, indent=1)
    text = markdown(report)
    with open(os.path.join(args.out, "speed.md"), "w") as f:
        f.write(text)
    print(text)
    return report


if __name__ == "__main__":
    run_script(main)
