#!/usr/bin/env python
"""Evaluate YOLOv3 (a gluon-bof checkpoint or a zoo model) at one or more input sizes.

    python scripts/eval_yolo3.py --checkpoint runs/demo/yolo3_mobilenet0.25_voc_best.pth \
        --data-shape 320 416 608 --save-dir runs/eval

Prints per-class AP and mAP (VOC07 11-point by default, ``--metric voc`` for the area under the
curve) for each size, and writes ``eval.json`` and one per-class AP PNG per size under --save-dir.
"""
import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from gluon_bof import model_zoo  # noqa: E402
from gluon_bof.data import build  # noqa: E402
from gluon_bof.engine import evaluate  # noqa: E402
from gluon_bof.utils.checkpoint import build_model_from_checkpoint  # noqa: E402
from gluon_bof.utils.logger import setup_logger  # noqa: E402
from gluon_bof.utils.metrics import VOC07MApMetric, VOCMApMetric  # noqa: E402
from gluon_bof.utils.viz import plot_ap  # noqa: E402

logger = logging.getLogger("eval_yolo3")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Evaluate YOLOv3 on VOC-style data.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a gluon-bof training checkpoint (.pth)")
    src.add_argument("--model", help="a zoo name, e.g. yolo3_darknet53_voc (random weights unless --pretrained)")
    p.add_argument("--data-shape", type=int, nargs="+", default=[416])
    p.add_argument("--dataset", default="voc", choices=["voc"])
    p.add_argument("--data-root", default=None, help="dataset root (default: the built-in generated data)")
    p.add_argument("--metric", default="voc07", choices=["voc07", "voc"])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-workers", "-j", dest="num_workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--save-dir", default="", help="write eval.json and per-class AP PNGs here")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logger()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    _, val_set = build.build_datasets(args.dataset, args.data_root, train=False)
    if args.checkpoint:
        net, _ = build_model_from_checkpoint(args.checkpoint)
        name = os.path.basename(args.checkpoint)
    else:
        net, name = model_zoo.get_model(args.model), args.model
    if list(net.classes) != list(val_set.classes):
        raise SystemExit(f"the model's classes {list(net.classes)} differ from the dataset's {list(val_set.classes)}")
    net.to(device).eval()
    metric_cls = VOC07MApMetric if args.metric == "voc07" else VOCMApMetric
    results = {}
    for shape in args.data_shape:
        loader = build.yolo3_val_loader(val_set, batch_size=args.batch_size, data_shape=shape,
                                        num_workers=args.num_workers)
        names, values = evaluate(net, loader, metric_cls(iou_thresh=0.5, class_names=val_set.classes),
                                 device=device, desc=f"eval {shape}")
        results[shape] = dict(zip(names, map(float, values)))
        print(f"\n{name} at {shape}x{shape} ({args.metric} AP@0.5, {len(val_set)} images)")
        for n, v in zip(names, values):
            print(f"  {n:>16s}: {v:.4f}")
        if args.save_dir:
            plot_ap(names, values, os.path.join(args.save_dir, f"per_class_ap_{shape}.png"),
                    title=f"{name} @ {shape}: {args.metric} AP")
    if len(args.data_shape) > 1:
        print("\n  data shape   mAP")
        for shape, res in results.items():
            print(f"  {shape:>10d}   {res['mAP']:.4f}")
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        with open(os.path.join(args.save_dir, "eval.json"), "w") as f:
            json.dump({"model": name, "metric": args.metric, "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
