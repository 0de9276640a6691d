#!/usr/bin/env python
"""Evaluate zoo models and compare them with GluonCV's published numbers (gluon_bof/model_zoo/zoo.csv).

    python scripts/benchmark_zoo.py --models yolo3_darknet53_voc yolo3_mobilenet1.0_voc \
        --dataset voc --data-root ~/.gluon_bof/datasets/voc --data-shape 320 416 --pretrained
    python scripts/benchmark_zoo.py --models yolo3_mobilenet0.25_voc --weights runs/x_best.pth ...
    python scripts/benchmark_zoo.py --markdown          # the table as Markdown, nothing evaluated

Weights: ``--pretrained`` fetches GluonCV's weights through the store
(``gluon_bof.model_zoo.model_store``); ``--weights`` gives one file per model, a GluonCV
``.params`` or a gluon-bof ``.pth`` (a training checkpoint rebuilds the model it records).
Prints, per model and data shape, GluonCV's published number beside the one measured here (in
percent): VOC07 mAP@0.5 on VOC, COCO AP@[.5:.95] on COCO (``--legacy-plus-one`` scores boxes as
GluonCV did for its published COCO numbers). YOLOv3 runs at each ``--data-shape``; Faster R-CNN at
each ``--short``/``--max-size`` pair (default: the model's own, 600x1000 VOC, 800x1333 COCO). ``--write`` stores measured numbers in the table's ``measured`` column, only for rows
whose name and metric match what was measured, with the date, command and data in
``measured_note``.
"""
import argparse
import datetime
import logging
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from gluon_bof import model_zoo  # noqa: E402
from gluon_bof.data import build  # noqa: E402
from gluon_bof.engine import evaluate  # noqa: E402
from gluon_bof.evaluation import make_metric  # noqa: E402
from gluon_bof.model_zoo import zoo_table  # noqa: E402
from gluon_bof.training import build_model_from_checkpoint  # noqa: E402
from gluon_bof.utils.logger import setup_logger  # noqa: E402
from gluon_bof.errors import ConfigError  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402

logger = logging.getLogger("benchmark_zoo")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--models", nargs="+", default=[], help="zoo names, e.g. yolo3_darknet53_voc")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pretrained", action="store_true", help="GluonCV's weights, through the store")
    src.add_argument("--weights", nargs="+", default=None,
                     help="one weights file per model: GluonCV .params or gluon-bof .pth")
    p.add_argument("--dataset", default="voc", choices=["voc", "coco"],
                   help="evaluation data: voc (VOC07 mAP@0.5) or coco (AP@[.5:.95])")
    p.add_argument("--legacy-plus-one", action="store_true",
                   help="COCO: GluonCV's w = x2 - x1 + 1 boxes (how its published numbers were scored)")
    p.add_argument("--short", type=int, nargs="+", default=None, help="Faster R-CNN shorter sides")
    p.add_argument("--max-size", type=int, nargs="+", default=None, help="Faster R-CNN longer-side bounds")
    p.add_argument("--data-root", default=None, help="dataset root (default: the built-in generated data)")
    p.add_argument("--data-shape", type=int, nargs="+", default=[416], help="YOLOv3 input sizes")
    p.add_argument("--batch-size", type=int, default=16, help="YOLOv3 images per batch (Faster R-CNN: 1)")
    p.add_argument("--num-workers", "-j", dest="num_workers", type=int, default=2, help="data loader workers")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    p.add_argument("--table", default=zoo_table.DEFAULT_TABLE, help="the zoo table (CSV)")
    p.add_argument("--write", action="store_true", help="store the measured numbers in the table")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = p.parse_args(argv)
    if not args.models and not args.markdown:
        p.error("nothing to do: give --models NAME ... with --pretrained or --weights (evaluate them), "
                "or --markdown (print the zoo table)")
    if args.write and not args.models:
        p.error("--write stores measured numbers: give --models to measure")
    if args.models and not (args.pretrained or args.weights):
        p.error("give --pretrained or --weights: random weights are not worth measuring")
    if args.weights is not None and len(args.weights) != len(args.models):
        p.error(f"--weights needs one file per model ({len(args.models)}), got {len(args.weights)}")
    return args


def _build(name: str, weights):
    """``(net, description of the weights, name of the model built)`` for the zoo ``name``."""
    if weights is None:
        from gluon_bof.model_zoo.model_store import short_hash
        return model_zoo.get_model(name, pretrained=True), f"GluonCV {name}-{short_hash(name)}", name
    if not weights.endswith(".params"):
        blob = torch.load(weights, map_location="cpu", weights_only=False)
        if isinstance(blob, dict) and blob.get("model_name"):
            net, _ = build_model_from_checkpoint(weights)
            if blob["model_name"].lower() != name.lower():
                logger.warning("%s holds a %s, not a %s: its numbers are not written to the %s rows",
                               weights, blob["model_name"], name, name)
            return net, weights, blob["model_name"]
    return model_zoo.get_model(name, pretrained=weights), weights, name


def _runs(net, built: str, val_set, args):
    """``(size label, loader, COCO rescaling shape)`` per evaluation size of the model."""
    if built.startswith("faster_rcnn"):
        from eval_faster_rcnn import eval_sizes

        for s, m in eval_sizes(args.short, args.max_size, net):
            yield f"{s}x{m}", build.faster_rcnn_val_loader(val_set, batch_size=1, short=s, max_size=m,
                                                           num_workers=args.num_workers), None
        return
    for shape in args.data_shape:
        yield shape, build.yolo3_val_loader(val_set, batch_size=args.batch_size, data_shape=shape,
                                            num_workers=args.num_workers), (shape, shape)


def _fmt(value) -> str:
    return "-" if value in (None, "") else str(value)


def main(argv=None):
    args = parse_args(argv)
    setup_logger()
    rows = zoo_table.read_table(args.table)
    results = []  # (name, metric, measured, weights description, model built)
    if args.models:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if args.device == "auto" else args.device))
        _, val_set = build.build_datasets(args.dataset, args.data_root, train=False)
        for i, name in enumerate(args.models):
            net, source, built = _build(name, None if args.pretrained else args.weights[i])
            if list(net.classes) != list(val_set.classes):
                raise ConfigError(f"{name}: the model's classes {list(net.classes)} differ from the "
                                 f"dataset's {list(val_set.classes)}")
            net.to(device).eval()
            for shape, loader, data_shape in _runs(net, built, val_set, args):
                metric = make_metric("coco" if args.dataset == "coco" else "voc07", val_set, data_shape=data_shape,
                                     legacy_plus_one=args.legacy_plus_one)
                names, values = evaluate(net, loader, metric, device=device, desc=f"{name} @{shape}")
                measured = round(100.0 * float(dict(zip(names, values))["mAP"]), 2)
                results.append((name, zoo_table.metric_name(args.dataset, shape), measured, source, built))
        print(f"\n{'model':<28s} {'metric':<22s} {'GluonCV published':>17s} {'paper':>6s} "
              f"{'measured here':>13s}  weights")
        for name, metric, measured, source, _ in results:
            row = zoo_table.find_row(rows, name, metric) or {}
            print(f"{name:<28s} {metric:<22s} {_fmt(row.get('gluoncv_published')):>17s} "
                  f"{_fmt(row.get('paper')):>6s} {measured:>13.2f}  {source}")
    if args.write and results:
        command = "python scripts/benchmark_zoo.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        data = os.path.abspath(os.path.expanduser(args.data_root)) if args.data_root else "built-in data"
        written = 0
        for name, metric, measured, source, built in results:
            row = zoo_table.find_row(rows, name, metric)
            if built.lower() != name.lower():
                continue  # another model's number (warned above)
            if row is None:
                logger.warning("no row (%s, %s) in %s: %s not written", name, metric, args.table, measured)
                continue
            row["measured"] = f"{measured:.2f}"
            row["measured_note"] = (f"{datetime.date.today().isoformat()}; {command}; data {data}; "
                                    f"weights {source}")
            written += 1
        if written:
            zoo_table.write_table(rows, args.table)
        print(f"\nwrote {written} measured number(s) to {args.table}")
    if args.markdown:
        if results:
            print()
        print(zoo_table.to_markdown(rows), end="")
    return results


if __name__ == "__main__":
    run_script(main)
