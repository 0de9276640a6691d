#!/usr/bin/env python
"""The GPU check: on a fresh machine with torch, everything that needs CUDA, in one run of <= 8 minutes.

    python scripts/gpu_check.py --device cuda            # make gpu-check       (writes to $OUT or runs/gpu_check)
    python scripts/gpu_check.py --device cpu --quick     # make gpu-check DEVICE=cpu: the rehearsal, tiny sizes

Stages, each in its own process with its own time limit (a stage that would not fit in what is
left of ``--budget`` is skipped and says so):

1. ``setup``: wheels in ``.whl/`` (``make gpu-wheels``: pycocotools, faster-coco-eval) installed with
   ``pip --no-index --no-deps --target`` where they are missing, the repository on ``PYTHONPATH``,
   the built-in data generated;
2. ``tests``: ``pytest -m cuda`` (AMP float16 with the loss scaler and bfloat16, channels_last,
   torch.compile, NCCL DDP in one process, mixed-precision resume; they skip without CUDA);
3. ``train_yolo3`` / ``train_fpn``: ``scripts/train_yolo3.py`` (darknet53, random shapes 320-608,
   validation at 416) and ``scripts/train_faster_rcnn.py --use-fpn`` (800x1333) for a few hundred
   updates on the built-in data with the whole recipe (mixup, label smoothing, cosine schedule
   with warmup, no bias decay, augmentation) in bfloat16 with channels_last; passes when every
   epoch's losses are finite and the last epoch's total is below the first's;
4. ``bench_*``: ``scripts/benchmark_speed.py`` (images/s per precision, eager and compiled);
5. ``pipeline``: ``scripts/benchmark_pipeline.py`` (one core) and the YOLOv3 training loader's
   feeding rate with this machine's CPU workers;
6. ``memory``: ``scripts/benchmark_memory.py``, YOLOv3-darknet53 at 608, batch 16, with and without
   ``--grad-checkpoint``.

Then the issue's targets, met or not: YOLOv3-darknet53 416 training >= 1,000 images/s (bf16,
channels_last, compiled) and inference >= 3,000 images/s at batch 64; Faster R-CNN R50-FPN
800x1333 training >= 40 images/s; darknet53 608 batch 16 within 40 GB with --grad-checkpoint.

Writes three files to ``--out`` (default ``$OUT`` when set, else ``runs/gpu_check``):
``summary.json``, ``summary.md`` and ``logs.txt`` (every stage's output). Exit status 0 when every
stage that ran passed.
"""
import argparse
import datetime
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = os.path.join(tempfile.gettempdir(), "gluon_bof_site")
TARGETS = [  # (name, what, threshold, unit)
    ("yolo_train", "YOLOv3-darknet53 416 training (bf16, channels_last, compiled)", 1000.0, "images/s"),
    ("yolo_infer", "YOLOv3-darknet53 416 inference, batch 64", 3000.0, "images/s"),
    ("fpn_train", "Faster R-CNN R50-FPN 800x1333 training", 40.0, "images/s"),
    ("memory_608", "YOLOv3-darknet53 608 batch 16 with --grad-checkpoint", 40960.0, "MiB peak (at most)"),
]


class Check:
    """Runs the stages, keeps the summary, writes the three files."""

    def __init__(self, args):
        self.args, self.start = args, time.monotonic()
        self.quick, self.cuda = args.quick, args.device.startswith("cuda")
        self.work = tempfile.mkdtemp(prefix="gpu_check_")
        os.makedirs(args.out, exist_ok=True)
        self.log = open(os.path.join(args.out, "logs.txt"), "w")
        self.summary = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": args.device,
                        "quick": self.quick, "budget_s": args.budget, "stages": {}, "targets": {}}
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
            p for p in (SITE, ROOT, os.environ.get("PYTHONPATH", "")) if p))
        if self.quick:  # one thread: on a CPU shared with other jobs, OpenMP's spinning threads crawl
            self.env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.data = None

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.start)

    def sh(self, name: str, cmd, timeout: float) -> tuple:
        """Runs ``cmd``, its output into logs.txt; returns ``(returncode or 'timeout', output)``."""
        self.log.write(f"\n===== {name}: {' '.join(cmd)} (limit {timeout:.0f} s)\n")
        self.log.flush()
        try:
            res = subprocess.run(cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, timeout=max(timeout, 1))
            out, rc = res.stdout, res.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
        self.log.write(out)
        self.log.flush()
        return rc, out

    def stage(self, name: str, fn, need_s: float, limit_s: float) -> None:
        """Runs ``fn(limit) -> dict`` (raising on failure) unless under ``need_s`` seconds are left."""
        left = self.left()
        if left < need_s:
            self.summary["stages"][name] = {"status": "skipped", "reason": f"{left:.0f} s left of the budget"}
            print(f"[gpu_check] {name}: skipped ({left:.0f} s left)", flush=True)
            return
        tic = time.monotonic()
        try:
            record = {"status": "passed", **(fn(min(limit_s, left)) or {})}
        except Exception as e:  # noqa: BLE001 (a stage's failure is recorded, the others still run)
            record = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:2000]}
        record["seconds"] = round(time.monotonic() - tic, 1)
        self.summary["stages"][name] = record
        print(f"[gpu_check] {name}: {record['status']} in {record['seconds']} s"
              + (f" ({record['error'][:300]})" if "error" in record else ""), flush=True)

    # ---------------------------------------------------------------- stages
    def setup(self, limit):
        info = {}
        wheels = sorted(glob.glob(os.path.join(ROOT, ".whl", "*.whl")))
        missing = [m for m in ("pycocotools", "faster_coco_eval") if not _importable(m)]
        if wheels and missing:
            rc, out = self.sh("setup:wheels", [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                                               "--no-compile", "--no-cache-dir", "--upgrade", "--target", SITE,
                                               *wheels], limit / 2)
            if rc != 0:
                raise RuntimeError(f"pip install of .whl/ failed: {out[-500:]}")
            info["wheels"] = [os.path.basename(w) for w in wheels]
        info["missing_before"] = missing
        code = ("import json, torch, cv2, matplotlib, tqdm; import gluon_bof; "
                "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, "
                "'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "
                "'cudnn': torch.backends.cudnn.version() if torch.cuda.is_available() else None, "
                "'cpus': len(__import__('os').sched_getaffinity(0))}))")
        rc, out = self.sh("setup:env", [sys.executable, "-c", code], 120)
        if rc != 0:
            raise RuntimeError(f"the environment cannot import gluon_bof: {out[-800:]}")
        info.update(json.loads(out.strip().splitlines()[-1]))
        if self.cuda and not info["gpu"]:
            raise RuntimeError("--device cuda but torch sees no GPU")
        self.cpus = info["cpus"]
        self.data = os.path.join(self.work, "synthetic")
        sizes = ["--num-trainval", "16", "--num-test", "8"] if self.quick else []
        rc, out = self.sh("setup:data", [sys.executable, "-m", "gluon_bof.data.synthetic", "--out", self.data, *sizes],
                          limit)
        if rc != 0:
            raise RuntimeError(f"data generation failed: {out[-500:]}")
        self.summary["environment"] = info
        return info

    def tests(self, limit):
        rc, out = self.sh("tests", [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                                    "-o", "addopts=", "tests"], limit)
        last = out.strip().splitlines()[-1] if out.strip() else ""
        if rc != 0:
            raise RuntimeError(f"pytest -m cuda: {'timed out' if rc == 'timeout' else last}")
        return {"result": last}

    def _workers(self) -> int:
        return 0 if self.quick else max(1, min(8, self.cpus - 2))

    def train_yolo3(self, limit):
        prefix = os.path.join(self.work, "yolo") + "/"
        size = (["--batch-size", "2", "--epochs", "3", "--max-epoch-iters", "3", "--random-shape-min", "64",
                 "--random-shape-max", "96", "--data-shape", "64", "--log-interval", "1"] if self.quick else
                ["--batch-size", "16", "--epochs", "4", "--data-shape", "416", "--log-interval", "20"])
        cmd = [sys.executable, "scripts/train_yolo3.py", "--network", "darknet53", "--data-root", self.data,
               "-j", str(self._workers()), "--device", self.args.device, *size, "--mixup", "--no-mixup-epochs", "1",
               "--label-smooth", "--no-wd", "--lr-mode", "cosine", "--warmup-epochs", "1", "--save-interval", "0",
               "--val-interval", "100", "--save-prefix", prefix, *self._fast_flags()]
        return self._train(cmd, limit, prefix + "yolo3_darknet53_voc")

    def train_fpn(self, limit):
        prefix = os.path.join(self.work, "fpn") + "/"
        size = (["--batch-size", "1", "--epochs", "3", "--max-epoch-iters", "2", "--short", "128", "--max-size", "160",
                 "--log-interval", "1"] if self.quick else
                ["--batch-size", "4", "--epochs", "3", "--max-epoch-iters", "100", "--short", "800", "--max-size",
                 "1333", "--log-interval", "20"])
        cmd = [sys.executable, "scripts/train_faster_rcnn.py", "--use-fpn", "--network", "resnet50_v1b",
               "--data-root", self.data, "-j", str(self._workers()), "--device", self.args.device, *size,
               "--lr", "0.01", "--lr-base-batch", "8", "--lr-warmup", "2" if self.quick else "20",
               "--mixup", "--no-mixup-epochs", "1",
               "--label-smooth", "--no-wd", "--lr-mode", "cosine", "--save-interval", "0", "--val-interval", "100",
               "--save-prefix", prefix, *self._fast_flags()]
        return self._train(cmd, limit, prefix + "faster_rcnn_fpn_resnet50_v1b_voc")

    def _fast_flags(self):
        amp = self.cuda or _cpu_bf16()
        return (["--amp"] if amp else []) + ["--channels-last"] + (["--threads", "1"] if self.quick else [])

    def _train(self, cmd, limit, prefix):
        rc, out = self.sh(os.path.basename(cmd[1]), cmd, limit)
        if rc != 0:
            raise RuntimeError(f"{'timed out' if rc == 'timeout' else 'exit ' + str(rc)}: {out[-600:]}")
        return loss_record(json.load(open(prefix + "_history.json")), require_fall=not self.quick)

    def bench(self, name, flags, limit):
        out_dir = os.path.join(self.work, name)
        cmd = [sys.executable, "scripts/benchmark_speed.py", "--device", self.args.device, "--out", out_dir, *flags,
               *(["--threads", "1"] if self.quick else [])]
        rc, out = self.sh(name, cmd, limit)
        if rc != 0:
            raise RuntimeError(f"{'timed out' if rc == 'timeout' else 'exit ' + str(rc)}: {out[-600:]}")
        report = json.load(open(os.path.join(out_dir, "speed.json")))
        self.summary.setdefault("peaks", report["peaks"])
        self.summary.setdefault("bench", []).extend(report["results"])
        self.summary.setdefault("syncs", {}).update(report.get("syncs", {}))
        return {"rows": len(report["results"]), "errors": sum("error" in r for r in report["results"])}

    def pipeline(self, limit):
        rc, out = self.sh("pipeline", [sys.executable, "scripts/benchmark_pipeline.py", "--data-root", self.data,
                                       "--size", "416", "--num-images", "16" if self.quick else "200",
                                       "--warmup", "2" if self.quick else "10"], limit / 2)
        if rc != 0:
            raise RuntimeError(f"benchmark_pipeline.py: {out[-400:]}")
        per_core = [" ".join(line.split()) for line in out.splitlines() if line.strip().startswith("gluon-bof")]
        workers = max(1, self._workers())
        code = FEED_RATE.format(root=self.data, workers=workers, batch=8 if self.quick else 64,
                                batches=2 if self.quick else 12)
        rc, out = self.sh("pipeline:loader", [sys.executable, "-c", code], limit / 2)
        if rc != 0:
            raise RuntimeError(f"loader feeding rate: {out[-400:]}")
        rate = json.loads(out.strip().splitlines()[-1])
        return {"per_core": per_core[-1] if per_core else None, "loader": rate}

    def memory(self, limit):
        size, batch = ("128", "2") if self.quick else ("608", "16")
        out_json = os.path.join(self.work, "memory.json")
        rc, out = self.sh("memory", [sys.executable, "scripts/benchmark_memory.py", "--model", "yolo3_darknet53_voc",
                                     "--batch-size", batch, "--size", size, size, "--device", self.args.device,
                                     "--json", out_json], limit)
        if rc != 0:
            raise RuntimeError(f"benchmark_memory.py: {out[-400:]}")
        result = json.load(open(out_json))
        code = ("from gluon_bof import model_zoo; m = model_zoo.get_model('yolo3_darknet53_voc'); "
                "print(sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()]) / 2 ** 20)")
        rc, out = self.sh("memory:weights", [sys.executable, "-c", code], 60)
        result["params_mib"] = float(out.strip().splitlines()[-1]) if rc == 0 else 0.0
        self.summary["memory"] = result
        return {"results": result["results"]}

    # ---------------------------------------------------------------- targets and files
    def targets(self) -> None:
        rows = [r for r in self.summary.get("bench", []) if "images_per_s" in r]

        def best(**match):
            found = [r["images_per_s"] for r in rows if all(r.get(k) == v for k, v in match.items())]
            return max(found) if found else None
        values = {
            "yolo_train": best(model="yolo3_darknet53", input="416x416", mode="train", precision="bfloat16",
                               channels_last=True, compile=True),
            "yolo_infer": best(model="yolo3_darknet53", input="416x416", mode="infer", batch=64),
            "fpn_train": best(model="faster_rcnn_fpn_resnet50_v1b", input="800x1333", mode="train"),
            "memory_608": None,
        }
        mem = self.summary.get("memory")
        if mem and mem.get("size") == [608, 608] and mem.get("batch_size") == 16:
            ckpt = [r for r in mem["results"] if r["grad_checkpoint"] and "peak_mib" in r]
            values["memory_608"] = ckpt[0]["peak_mib"] + mem.get("params_mib", 0) if ckpt else None
        for name, what, threshold, unit in TARGETS:
            v = values[name]
            status = ("not measured" if v is None or not self.cuda else
                      "met" if (v <= threshold if name == "memory_608" else v >= threshold) else "not met")
            self.summary["targets"][name] = {"what": what, "target": threshold, "unit": unit, "value": v,
                                             "status": status}

    def write(self) -> None:
        self.summary["seconds"] = round(time.monotonic() - self.start, 1)
        with open(os.path.join(self.args.out, "summary.json"), "w") as f:
            json.dump(self.summary, f, indent=1)
        text = summary_markdown(self.summary)
        with open(os.path.join(self.args.out, "summary.md"), "w") as f:
            f.write(text)
        self.log.close()
        print(text, flush=True)
        shutil.rmtree(self.work, ignore_errors=True)


FEED_RATE = r'''
import json, time, torch
from gluon_bof.data import build
from gluon_bof.data.loader import random_shape_sizes
train, _ = build.build_datasets("voc", "{root}")
loader, sampler, _ = build.yolo3_train_loader(train, batch_size={batch}, sizes=random_shape_sizes(320, 608),
                                              num_workers={workers}, mixup=build.MixupSettings(), seed=0)
sampler.set_epoch(0, start_batch=0)
it, n = iter(loader), 0
next(it)
tic = time.perf_counter()
for _ in range({batches}):
    try:
        n += next(it).images.shape[0]
    except StopIteration:
        break
print(json.dumps({{"workers": {workers}, "batch": {batch}, "images": n,
                  "images_per_s": n / (time.perf_counter() - tic)}}))
'''


def _importable(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def _cpu_bf16() -> bool:
    code = "import torch; print(bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return res.stdout.strip() == "True"


def loss_record(history, require_fall: bool = True) -> dict:
    """Per epoch the total loss (the sum of the ``*_loss`` entries) and images/s; passes when all
    are finite and (``require_fall``) the last total is below the first; ``AssertionError``
    otherwise. The rehearsal's few tiny updates cannot show learning reliably: there the fall is
    recorded (``loss_fell``) but not required."""
    totals = [sum(v for k, v in h.items() if k.endswith("_loss")) for h in history]
    record = {"epochs": len(history), "total_loss": [round(t, 4) for t in totals],
              "images_per_s": [round(h["images_per_sec"], 2) for h in history],
              "val": history[-1].get("val", {}).get("mAP") if history else None}
    if not totals or not all(math.isfinite(t) for t in totals):
        raise AssertionError(f"non-finite or missing losses: {record}")
    record["loss_fell"] = totals[-1] < totals[0]
    if require_fall and not record["loss_fell"]:
        raise AssertionError(f"the loss did not fall: {record}")
    return record


def summary_markdown(s: dict) -> str:
    env = s.get("environment", {})
    lines = [f"# GPU check, {s['date']}: {env.get('gpu') or s['device']} (torch {env.get('torch')}, CUDA "
             f"{env.get('cuda')}, {env.get('cpus')} CPUs){' - quick rehearsal' if s['quick'] else ''}", "",
             f"{s.get('seconds')} s of a {s['budget_s']} s budget.", "", "| stage | status | s | details |",
             "|---|---|---|---|"]
    for name, r in s["stages"].items():
        details = r.get("error") or r.get("reason") or ", ".join(
            f"{k} {v}" for k, v in r.items() if k not in ("status", "seconds", "results"))
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', '')} | {str(details)[:300]} |")
    lines += ["", "| target | value | target | status |", "|---|---|---|---|"]
    for t in s["targets"].values():
        value = "" if t["value"] is None else f"{t['value']:.1f}"
        lines.append(f"| {t['what']} | {value} {t['unit']} | {t['target']:.0f} | {t['status']} |")
    if s.get("peaks"):
        lines += ["", "matmul peaks (TFLOP/s): " + ", ".join(f"{k} {v / 1e12:.1f}" for k, v in s["peaks"].items())]
    if s.get("bench"):
        lines += ["", "| model | input | mode | batch | precision | channels_last | compile | images/s | first s | "
                      "of peak |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in s["bench"]:
            speed = (f"{r['images_per_s']:.1f} | {r['first_s'] or 0:.1f} | {r.get('peak_fraction', float('nan')):.1%}"
                     if "images_per_s" in r else f"{r.get('error', '')[:60]} | | ")
            lines.append(f"| {r['model']} | {r['input']} | {r['mode']} | {r.get('batch', '')} | {r['precision']} | "
                         f"{'on' if r['channels_last'] else 'off'} | {'on' if r['compile'] else 'off'} | {speed} |")
    for name, modes in s.get("syncs", {}).items():
        lines.append("")
        lines += [f"host syncs, {name} {mode}: {x['total']} ({', '.join(f'{k} {v}' for k, v in x['by_kind'].items())})"
                  for mode, x in modes.items()]
    if s.get("memory"):
        lines += ["", f"memory, {s['memory']['model']} batch {s['memory']['batch_size']} at {s['memory']['size']}: "
                  + "; ".join(f"grad-checkpoint {'on' if r['grad_checkpoint'] else 'off'}: saved "
                              f"{r['saved_mib']:.0f} MiB" + (f", peak {r['peak_mib']:.0f} MiB" if "peak_mib" in r else "")
                              for r in s["memory"]["results"])]
    return "\n".join(lines) + "\n"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """gluon_bof.utils.cli's: this script runs before it knows that the package imports here."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (the rehearsal)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps (the default with --device cpu)")
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "runs", "gpu_check"),
                   help="where summary.json, summary.md and logs.txt go (default: $OUT, else runs/gpu_check)")
    p.add_argument("--budget", type=float, default=None, help="seconds for all stages (default 470 on CUDA)")
    p.add_argument("--stages", nargs="+", default=None, help="run only these stages (setup always runs)")
    args = p.parse_args(argv)
    args.quick = args.quick or args.device == "cpu"
    args.budget = args.budget or (470.0 if not args.quick else 3600.0)
    return args


def bench_plan(quick: bool):
    """``[(stage, flags, need_s, limit_s)]``: the benchmark runs, most important first."""
    if quick:
        tiny = ["--iters", "1", "--warmup", "1", "--matmul-size", "256"]
        return [("bench_yolo", ["--models", "yolo3_darknet53@64", "--precisions", "float32", "--channels-last", "on",
                                *tiny], 30, 900),
                ("bench_fpn", ["--models", "faster_rcnn_fpn_resnet50_v1b@128x160", "--precisions", "float32",
                               "--channels-last", "on", "--modes", "train", "--no-syncs", *tiny], 30, 900)]
    return [
        ("bench_yolo416", ["--models", "yolo3_darknet53@416", "--precisions", "bfloat16", "--channels-last", "on",
                           "--compile", "on", "off", "--batch-size", "64", "--infer-batch-size", "64", "--iters", "10",
                           "--warmup", "3"], 60, 200),
        ("bench_fpn", ["--models", "faster_rcnn_fpn_resnet50_v1b", "--precisions", "bfloat16", "--channels-last", "on",
                       "--batch-size", "8", "--infer-batch-size", "8", "--iters", "5", "--warmup", "2"], 40, 90),
        ("bench_precisions", ["--models", "yolo3_darknet53@416", "--precisions", "float32", "float16",
                              "--channels-last", "on", "off", "--batch-size", "64", "--infer-batch-size", "64",
                              "--iters", "5", "--warmup", "2", "--no-syncs", "--no-flops"], 40, 90),
        ("bench_sizes", ["--models", "yolo3_darknet53@320", "yolo3_darknet53@608", "yolo3_mobilenet1.0@416",
                         "faster_rcnn_resnet50_v1b", "--precisions", "bfloat16", "--channels-last", "on",
                         "--iters", "5", "--warmup", "2", "--no-syncs"], 40, 100),
    ]


def main(argv=None) -> int:
    args = parse_args(argv)
    check = Check(args)
    wanted = set(args.stages or []) | {"setup"}

    def want(name):
        return args.stages is None or name in wanted or any(name.startswith(w) for w in wanted)
    check.stage("setup", check.setup, 0, 120)
    if check.summary["stages"]["setup"]["status"] == "passed":
        plan = [("tests", check.tests, 30, 150 if not args.quick else 1200),
                ("train_yolo3", check.train_yolo3, 40, 110 if not args.quick else 1200),
                ("train_fpn", check.train_fpn, 40, 100 if not args.quick else 1200)]
        plan += [(name, lambda limit, f=flags, n=name: check.bench(n, f, limit), need, lim)
                 for name, flags, need, lim in bench_plan(args.quick)[:2]]
        plan += [("memory", check.memory, 20, 60 if not args.quick else 600),
                 ("pipeline", check.pipeline, 20, 45 if not args.quick else 600)]
        plan += [(name, lambda limit, f=flags, n=name: check.bench(n, f, limit), need, lim)
                 for name, flags, need, lim in bench_plan(args.quick)[2:]]
        for name, fn, need, limit in plan:
            if want(name):
                check.stage(name, fn, need, limit)
    check.targets()
    check.write()
    failed = [n for n, r in check.summary["stages"].items() if r["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
