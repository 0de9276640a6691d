#!/usr/bin/env python
"""The Bag of Freebies' 2x2 mixup study (paper Tables 6 and 7), end to end, at any scale.

1. classifier pre-training with and without --mixup (scripts/train_imagenet.py);
2. YOLOv3 on each classifier (--pretrained-base <its best checkpoint>), with and without --mixup
   (scripts/train_yolo3.py);
3. a table of the classifiers' top-1 and the detectors' mAP (and every run's time), written to
   <out>/mixup_study.md and .json.

Defaults are the small CPU study of docs/classification.md (built-in data, MobileNet 0.25, a few
minutes a run). For the paper's scale pass the real settings through --cls-args / --det-args, e.g.
--cls-args "--data-dir ~/imagenet --model darknet53 --batch-size 256 --num-epochs 200 ..." and
--det-args "--data-root ~/VOCdevkit --epochs 200 ..." (each run gets its own --save-dir/--save-prefix).
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402

CLS_SMALL = ("--input-size 64 --batch-size 64 --num-epochs 6 --lr 0.4 --lr-mode cosine --warmup-epochs 1 "
             "--no-wd --label-smoothing -j 1 --save-frequency 0 --log-interval 1000")
DET_SMALL = ("--head-channels 64,32,32 --obj-prior 0.01 --epochs 6 --batch-size 8 -j 1 "
             "--random-shape-min 128 --random-shape-max 224 --data-shape 192 "
             "--label-smooth --no-wd --lr 0.005 --lr-mode cosine --warmup-epochs 1 --val-interval 6 "
             "--save-interval 0 --log-interval 1000")


def _run(cmd, log_path):
    tic = time.time()
    with open(log_path, "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.time() - tic


def _best(history_json, key):
    with open(history_json) as f:
        history = json.load(f)
    values = [rec["val"][key] for rec in history if "val" in rec]
    return max(values) if values else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--out", default="runs/mixup_study", help="output folder")
    p.add_argument("--model", default="mobilenet0.25", help="classifier = detector backbone (YOLOv3: "
                                                             "darknet53, mobilenet1.0, mobilenet0.25)")
    p.add_argument("--cls-args", default=CLS_SMALL, help="extra train_imagenet.py flags")
    p.add_argument("--det-args", default=DET_SMALL, help="extra train_yolo3.py flags")
    p.add_argument("--cls-mixup-args", default="--mixup --mixup-off-epoch 1",
                   help="train_imagenet.py flags of the mixup classifier runs only")
    p.add_argument("--det-mixup-args", default="--mixup --no-mixup-epochs 2",
                   help="train_yolo3.py flags of the mixup detector runs only")
    p.add_argument("--data-root", default=None, help="detection data (default: built-in); the classifier "
                                                     "uses its crops unless --cls-args has --data-dir")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    py = sys.executable
    results = {"classifier": {}, "detector": {}}
    for cls_mixup in (False, True):
        tag = "cls_mixup" if cls_mixup else "cls_plain"
        save_dir = os.path.join(args.out, tag)
        cmd = [py, os.path.join(HERE, "train_imagenet.py"), "--model", args.model, "--save-dir", save_dir,
               *shlex.split(args.cls_args), *(shlex.split(args.cls_mixup_args) if cls_mixup else [])]
        seconds = _run(cmd, os.path.join(args.out, f"{tag}.log"))
        prefix = os.path.join(save_dir, f"imagenet_{args.model}")
        results["classifier"][tag] = {"top1": _best(prefix + "_history.json", "top1"), "seconds": seconds,
                                      "checkpoint": prefix + "_best.pth"}
        print(f"{tag}: top-1 {results['classifier'][tag]['top1']:.4f} in {seconds:.0f} s", flush=True)
    for cls_tag, cls in results["classifier"].items():
        for det_mixup in (False, True):
            tag = f"{cls_tag}__{'det_mixup' if det_mixup else 'det_plain'}"
            cmd = [py, os.path.join(HERE, "train_yolo3.py"), "--network", args.model,
                   "--pretrained-base", cls["checkpoint"], "--save-prefix", os.path.join(args.out, tag) + "/",
                   *(["--data-root", args.data_root] if args.data_root else []),
                   *shlex.split(args.det_args), *(shlex.split(args.det_mixup_args) if det_mixup else [])]
            seconds = _run(cmd, os.path.join(args.out, f"{tag}.log"))
            history = os.path.join(args.out, tag, f"yolo3_{args.model}_voc_history.json")
            if not os.path.isfile(history):  # custom classes (the built-in data)
                history = os.path.join(args.out, tag, f"yolo3_{args.model}_custom_history.json")
            results["detector"][tag] = {"mAP": _best(history, _map_key(history)), "seconds": seconds}
            print(f"{tag}: mAP {results['detector'][tag]['mAP']:.4f} in {seconds:.0f} s", flush=True)
    with open(os.path.join(args.out, "mixup_study.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out, "mixup_study.md"), "w") as f:
        f.write(table(results))
    print(table(results))


def _map_key(history_json):
    with open(history_json) as f:
        history = json.load(f)
    for rec in history:
        if "val" in rec:
            return list(rec["val"])[-1]  # the score fit tracks (mAP)
    return "mAP"


def table(results) -> str:
    c, d = results["classifier"], results["detector"]
    rows = ["| classifier pre-training | top-1 | detector without mixup | detector with mixup |",
            "|---|---|---|---|"]
    for tag, name in (("cls_plain", "without mixup"), ("cls_mixup", "with mixup")):
        rows.append(f"| {name} | {c[tag]['top1']:.4f} ({c[tag]['seconds']:.0f} s) | "
                    f"{d[tag + '__det_plain']['mAP']:.4f} ({d[tag + '__det_plain']['seconds']:.0f} s) | "
                    f"{d[tag + '__det_mixup']['mAP']:.4f} ({d[tag + '__det_mixup']['seconds']:.0f} s) |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    run_script(main)
