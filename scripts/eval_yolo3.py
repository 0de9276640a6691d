#!/usr/bin/env python
"""Evaluate YOLOv3 (a gluon-bof checkpoint or a zoo model) at one or more input sizes.

    python scripts/eval_yolo3.py --checkpoint runs/demo/yolo3_mobilenet0.25_voc_best.pth \
        --data-shape 320 416 608 --save-dir runs/eval

Prints per-class AP and mAP (VOC07 11-point by default, ``--metric voc`` for the area under the
curve; COCO data: ``--metric coco``, AP@[.5:.95], AP50, AP75, APs/m/l, boxes scaled back to each
original image, ``--legacy-plus-one`` for GluonCV's numbers) for each size, and one table of all
sizes; under --save-dir: ``eval.json``, ``eval.md`` (the table), one per-class AP PNG per size and,
for COCO, the detections as ``coco_{size}_results.json``.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gluon_bof.data import build  # noqa: E402
from gluon_bof.evaluation import (add_eval_metric_args, add_eval_source_args, eval_metric_factory,  # noqa: E402
                                  evaluate_at_sizes, image_set, load_eval_model, resolve_device)
from gluon_bof.utils.logger import setup_logger  # noqa: E402
import common  # noqa: E402  (scripts/common.py)
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402
from gluon_bof.utils.threads import configure_threads  # noqa: E402

logger = logging.getLogger("eval_yolo3")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_eval_source_args(p)
    p.add_argument("--data-shape", type=int, nargs="+", default=[416],
                   help="input sizes to evaluate at (the paper's Table 5: 320 416 608)")
    p.add_argument("--dataset", default="voc", choices=["voc", "coco"],
                   help="data format: voc (VOC07 mAP) or coco (AP@[.5:.95] ...)")
    p.add_argument("--data-root", default=None, help="dataset root (default: the built-in generated data)")
    add_eval_metric_args(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per batch")
    p.add_argument("--num-workers", "-j", dest="num_workers", type=int, default=2, help="data loader workers")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    common.add_threads_arg(p)
    common.add_speed_args(p, dtype=True)
    p.add_argument("--save-dir", default="", help="write eval.json and per-class AP PNGs here")
    return common.check_speed_args(p, p.parse_args(argv))


def main(argv=None):
    args = parse_args(argv)
    setup_logger()
    configure_threads(args.num_workers, args.threads)
    device = resolve_device(args.device)
    amp_dtype = common.eval_dtype(args, device)
    _, val_set = build.build_datasets(args.dataset, args.data_root, train=False)
    net, name = load_eval_model(checkpoint=args.checkpoint, model=args.model, pretrained=args.pretrained,
                                classes=val_set.classes, device=device)
    net = common.prepare_eval_model(args, net)
    metric_name, metric = eval_metric_factory(args.metric, args.dataset, val_set, save_dir=args.save_dir,
                                              legacy_plus_one=args.legacy_plus_one, coco_backend=args.coco_backend,
                                              data_shape=lambda key: (key, key))
    runs = [(shape, f"{shape}x{shape}", build.yolo3_val_loader(val_set, batch_size=args.batch_size, data_shape=shape,
                                                                 num_workers=args.num_workers))
            for shape in args.data_shape]
    return evaluate_at_sizes(net, runs, metric=metric, device=device, name=name, num_images=len(val_set),
                             images=image_set(val_set),
                             metric_name=metric_name, save_dir=args.save_dir, size_header="data shape",
                             amp_dtype=amp_dtype, channels_last=args.channels_last)


if __name__ == "__main__":
    run_script(main)
