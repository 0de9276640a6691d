#!/usr/bin/env python
"""Evaluate a segmentation network (a gluon-bof checkpoint or a zoo model): pixAcc, mIoU and the
IoU of every class, with predicted masks drawn beside the ground truth.

    python scripts/eval_segmentation.py --checkpoint runs/ade20k/fcn/resnet50/default_best.pth \\
        --data-root ~/.gluon_bof/datasets/ade --save-dir runs/eval
    python scripts/eval_segmentation.py --model fcn_resnet50_ade --pretrained --data-root ~/.gluon_bof/datasets/ade

--mode testval (default) scores every validation image whole, one at a time, as GluonCV 0.10.5's
scripts/segmentation/test.py --eval does (its multi-scale MultiEvalModel branch is unreachable
there: ``if 'icnet' or 'fastscnn' in args.model`` is always true); --mode val scores the centre
--crop-size crops that training validates on. Under --save-dir: eval.json, eval.md (per-class
IoU) and masks.png (the first --num-viz images: image, ground truth, prediction).
Without --data-root: the built-in generated data (ADE20K layout, 7 classes).
"""
import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (scripts/common.py)
from gluon_bof.errors import ConfigError  # noqa: E402
from gluon_bof.evaluation import add_eval_source_args, load_eval_model, resolve_device  # noqa: E402
from gluon_bof.segmentation import DATASETS, evaluate_segmentation, segmentation_datasets, segmentation_val_loader  # noqa: E402,E501
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402
from gluon_bof.utils.logger import setup_logger  # noqa: E402
from gluon_bof.utils.threads import configure_threads  # noqa: E402

logger = logging.getLogger("eval_segmentation")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=HelpFormatter)
    add_eval_source_args(p)
    a = p.add_argument
    a("--dataset", default="ade20k", choices=sorted(DATASETS), help="dataset")
    a("--data-root", default=None, help="folder holding ADEChallengeData2016; None: the built-in generated data")
    a("--mode", default="testval", choices=["testval", "val"],
      help="testval: whole images (GluonCV's test.py --eval); val: centre --crop-size crops (training's validation)")
    a("--crop-size", type=int, default=None, help="--mode val crop; None: the model's crop_size")
    a("--batch-size", type=int, default=16, help="images per batch in --mode val (testval: 1)")
    a("--workers", "-j", "--num-workers", dest="num_workers", type=int, default=2, help="data loader workers")
    a("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    common.add_threads_arg(p)
    common.add_speed_args(p, dtype=True)
    a("--save-dir", default="", help="write eval.json, eval.md and masks.png here")
    a("--num-viz", type=int, default=6, help="images drawn in masks.png")
    return common.check_speed_args(p, p.parse_args(argv))


def main(argv=None) -> dict:
    args = parse_args(argv)
    setup_logger()
    configure_threads(args.num_workers, args.threads)
    device = resolve_device(args.device)
    _, val_set = segmentation_datasets(args.dataset, args.data_root)
    net, name = load_eval_model(checkpoint=args.checkpoint, model=args.model, pretrained=args.pretrained,
                                classes=None, device=device)
    if net.nclass != val_set.num_class:
        raise ConfigError(f"{name} predicts {net.nclass} classes, the data has {val_set.num_class} "
                          f"({', '.join(val_set.classes[:4])} ...): evaluate on its dataset (--data-root)")
    crop = None if args.mode == "testval" else (args.crop_size or net.crop_size)
    loader = segmentation_val_loader(val_set, batch_size=args.batch_size, crop_size=crop, num_workers=args.num_workers)
    viz = os.path.join(args.save_dir, "masks.png") if args.save_dir else None
    amp_dtype = common.eval_dtype(args, device)
    metric = evaluate_segmentation(common.prepare_eval_model(args, net), loader, val_set.num_class, device,
                                   viz_path=viz, classes=val_set.classes, num_viz=args.num_viz, amp_dtype=amp_dtype)
    pix_acc, miou = metric.get()
    ious = dict(zip(val_set.classes, map(float, metric.iou())))
    table = ["| class | IoU |", "|---|---|"] + [f"| {c} | {v:.4f} |" for c, v in ious.items()]
    table += [f"| **mIoU** | **{miou:.4f}** |", f"| pixAcc | {pix_acc:.4f} |"]
    print(f"{name} on {len(val_set)} {args.dataset} validation images ({args.mode}"
          f"{'' if crop is None else f', {crop}x{crop} centre crops'}):")
    print("\n".join(table))
    result = {"model": name, "dataset": args.dataset, "mode": args.mode, "crop_size": crop, "num_images": len(val_set),
              "pixAcc": pix_acc, "mIoU": miou, "per_class_iou": ious}
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        with open(os.path.join(args.save_dir, "eval.json"), "w") as f:
            json.dump(result, f, indent=1)
        with open(os.path.join(args.save_dir, "eval.md"), "w") as f:
            f.write("\n".join(table) + "\n")
        logger.info("wrote eval.json, eval.md and masks.png under %s", args.save_dir)
    return result


if __name__ == "__main__":
    run_script(main)
