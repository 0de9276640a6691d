#!/usr/bin/env python
"""Evaluate Faster R-CNN (a gluon-bof checkpoint or a zoo model) at one or more input sizes.

    python scripts/eval_faster_rcnn.py --checkpoint runs/frcnn/faster_rcnn_resnet50_v1b_voc_best.pth \
        --short 600 800 --max-size 1000 1333 --save-dir runs/eval_frcnn

Each ``--short`` pairs with the ``--max-size`` at the same position (one --max-size serves all);
without --short the model's own training size is used (GluonCV: 600x1000 VOC, 800x1333 COCO).
Images keep their aspect ratio; as GluonCV, one image per batch by default (--batch-size > 1 pads
images of one aspect-ratio group together). Detections are mapped back to each original image and
scored there (GluonCV's eval does the same). Prints per-class AP and mAP (VOC07 11-point by default,
``--metric voc`` for the area under the curve; COCO data: ``--metric coco``, AP@[.5:.95], AP50,
AP75, APs/m/l, ``--legacy-plus-one`` for GluonCV's numbers) per size and one table; under
--save-dir: ``eval.json``, ``eval.md`` (the table), one per-class AP PNG per size and, for COCO,
the detections as ``coco_{short}x{max}_results.json``.
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

logger = logging.getLogger("eval_faster_rcnn")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Evaluate Faster R-CNN on VOC-style data.",
                                formatter_class=HelpFormatter, epilog=__doc__)
    add_eval_source_args(p)
    p.add_argument("--short", type=int, nargs="+", default=None, help="shorter sides, e.g. 600 800")
    p.add_argument("--max-size", type=int, nargs="+", default=None, help="longer-side bounds, e.g. 1000 1333")
    p.add_argument("--dataset", default="voc", choices=["voc", "coco"],
                   help="data format: voc (VOC07 mAP) or coco (AP@[.5:.95] ...)")
    p.add_argument("--data-root", default=None, help="dataset root (default: the built-in generated data)")
    add_eval_metric_args(p)
    p.add_argument("--batch-size", type=int, default=1, help="images per batch (GluonCV: 1 per device)")
    p.add_argument("--num-workers", "-j", dest="num_workers", type=int, default=2, help="data loader workers")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    common.add_threads_arg(p)
    common.add_speed_args(p, dtype=True)
    p.add_argument("--save-dir", default="", help="write eval.json and per-class AP PNGs here")
    args = common.check_speed_args(p, p.parse_args(argv))
    if args.short and args.max_size and len(args.max_size) not in (1, len(args.short)):
        p.error(f"--max-size takes one value or one per --short ({len(args.short)}), got {len(args.max_size)}")
    return args


def eval_sizes(short, max_size, net):
    """``[(short, max_size)]`` to evaluate: the flags' pairs, else the model's training size."""
    default_short = net.short[-1] if isinstance(net.short, (list, tuple)) else net.short
    shorts = short or [default_short]
    maxes = max_size or [net.max_size]
    return [(s, maxes[0] if len(maxes) == 1 else maxes[i]) for i, s in enumerate(shorts)]


def main(argv=None):
    args = parse_args(argv)
    setup_logger()
    configure_threads(args.num_workers, args.threads)
    device = resolve_device(args.device)
    amp_dtype = common.eval_dtype(args, device)
    _, val_set = build.build_datasets(args.dataset, args.data_root, train=False)
    net, name = load_eval_model(checkpoint=args.checkpoint, model=args.model, pretrained=args.pretrained,
                                classes=val_set.classes, device=device)
    metric_name, metric = eval_metric_factory(args.metric, args.dataset, val_set, save_dir=args.save_dir,
                                              legacy_plus_one=args.legacy_plus_one, coco_backend=args.coco_backend)
    runs = [(f"{s}x{m}", f"short {s}, max size {m}",
             build.faster_rcnn_val_loader(val_set, batch_size=args.batch_size, short=s, max_size=m,
                                          num_workers=args.num_workers))
            for s, m in eval_sizes(args.short, args.max_size, net)]
    net = common.prepare_eval_model(args, net)
    return evaluate_at_sizes(net, runs, metric=metric, device=device, name=name, num_images=len(val_set),
                             images=image_set(val_set),
                             metric_name=metric_name, save_dir=args.save_dir, size_header="short x max",
                             amp_dtype=amp_dtype, channels_last=args.channels_last)


if __name__ == "__main__":
    run_script(main)
