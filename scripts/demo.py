#!/usr/bin/env python
"""Run a detector on images and write PNGs with the detections drawn.

    python scripts/demo.py --checkpoint runs/demo/yolo3_mobilenet0.25_voc_best.pth --out detections.png
    python scripts/demo.py --model yolo3_darknet53_voc --pretrained --images a.jpg b.jpg --out-dir out/

Without --images it takes the first --num-images images of the test split under --data-root
(default: the built-in generated data). --out writes one grid of all images; --out-dir one PNG each.
Each image's line says how many detections it drew (score >= --thresh) and its highest score, so a
weak model's empty pictures are explained.
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import matplotlib.pyplot as plt  # noqa: E402

from gluon_bof.data import build  # noqa: E402
from gluon_bof.data.base import read_image  # noqa: E402
import common  # noqa: E402  (scripts/common.py)
from gluon_bof.errors import ConfigError  # noqa: E402
from gluon_bof.evaluation import add_eval_source_args, detect_images, load_eval_model, resolve_device  # noqa: E402
from gluon_bof.utils.checkpoint import load_checkpoint  # noqa: E402
from gluon_bof.utils.threads import configure_threads  # noqa: E402
from gluon_bof.utils.viz import plot_bbox, save_figure  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_eval_source_args(p)
    p.add_argument("--images", nargs="*", default=None, help="image files (default: test split images)")
    p.add_argument("--data-root", default=None,
                   help="VOC-layout data whose test images are drawn without --images, and whose classes a "
                        "*_custom --model is built for (default: the built-in generated data)")
    p.add_argument("--num-images", type=int, default=6, help="test images drawn without --images")
    p.add_argument("--data-shape", type=int, default=None, help="input size (default: the checkpoint's, else 416)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    common.add_threads_arg(p)
    common.add_speed_args(p, dtype=True)
    p.add_argument("--thresh", type=float, default=0.5, help="score threshold for drawing")
    p.add_argument("--out", default="", help="one PNG grid of all images")
    p.add_argument("--out-dir", default="", help="one PNG per image")
    return common.check_speed_args(p, p.parse_args(argv))


def main(argv=None):
    args = parse_args(argv)
    if not (args.out or args.out_dir):
        raise ConfigError("give --out FILE.png and/or --out-dir DIR")
    configure_threads(0, args.threads)
    val_set = None
    if not args.images or (args.model and args.model.lower().endswith("_custom")):
        _, val_set = build.build_datasets("voc", args.data_root, train=False)
    shape = args.data_shape
    if args.checkpoint:
        shape = shape or load_checkpoint(args.checkpoint).get("args", {}).get("data_shape", 416)
        classes = None
    else:
        shape = shape or 416
        classes = val_set.classes if val_set is not None and args.model.lower().endswith("_custom") else None
    device = resolve_device(args.device)
    amp_dtype = common.eval_dtype(args, device)
    net, name = load_eval_model(checkpoint=args.checkpoint, model=args.model, pretrained=args.pretrained,
                                classes=classes, device=device)
    net = common.prepare_eval_model(args, net)
    paths = args.images or [val_set.image_path(i) for i in range(min(args.num_images, len(val_set)))]
    cols = min(3, len(paths))
    rows = math.ceil(len(paths) / cols)
    grid = plt.figure(figsize=(5 * cols, 5 * rows)) if args.out else None
    for i, path in enumerate(paths):
        img = read_image(path)
        ids, scores, bboxes = detect_images(net, [img], data_shape=shape, device=device, amp_dtype=amp_dtype,
                                            channels_last=args.channels_last)[0]
        shown = scores >= args.thresh
        top = f"highest score {scores.max():.3f}" if len(scores) else "no detection at all"
        print(f"{os.path.basename(path)}: {int(shown.sum())} detections with score >= {args.thresh} "
              f"({top}{'; lower --thresh to see weaker ones' if len(scores) and not shown.any() else ''})")
        if grid is not None:
            plot_bbox(img, bboxes, scores, ids, thresh=args.thresh, class_names=net.classes,
                      ax=grid.add_subplot(rows, cols, i + 1))
        if args.out_dir:
            fig = plt.figure(figsize=(8, 8))
            plot_bbox(img, bboxes, scores, ids, thresh=args.thresh, class_names=net.classes,
                      ax=fig.add_subplot(1, 1, 1))
            name = os.path.splitext(os.path.basename(path))[0]
            print("wrote", save_figure(fig, os.path.join(args.out_dir, f"{name}_detections.png")))
    if grid is not None:
        print("wrote", save_figure(grid, args.out))


if __name__ == "__main__":
    run_script(main)
