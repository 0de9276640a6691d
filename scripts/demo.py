#!/usr/bin/env python
"""Run a detector on images and write PNGs with the detections drawn.

    python scripts/demo.py --checkpoint runs/demo/yolo3_mobilenet0.25_voc_best.pth --out detections.png
    python scripts/demo.py --model yolo3_darknet53_voc --images a.jpg b.jpg --out-dir out/

Without --images it takes the first --num-images images of the test split under --data-root
(default: the built-in generated data). --out writes one grid of all images; --out-dir one PNG each.
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import matplotlib.pyplot as plt  # noqa: E402

from gluon_bof import model_zoo  # noqa: E402
from gluon_bof.data import build  # noqa: E402
from gluon_bof.data.base import read_image  # noqa: E402
from gluon_bof.evaluation import detect_images  # noqa: E402
from gluon_bof.utils.checkpoint import build_model_from_checkpoint  # noqa: E402
from gluon_bof.utils.viz import plot_bbox, save_figure  # noqa: E402
from gluon_bof.utils.cli import run_script  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Draw detections on images.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a gluon-bof checkpoint (.pth)")
    src.add_argument("--model", help="a zoo model name")
    p.add_argument("--images", nargs="*", default=None, help="image files (default: test split images)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--num-images", type=int, default=6)
    p.add_argument("--data-shape", type=int, default=None, help="input size (default: the checkpoint's)")
    p.add_argument("--thresh", type=float, default=0.5, help="score threshold for drawing")
    p.add_argument("--out", default="", help="one PNG grid of all images")
    p.add_argument("--out-dir", default="", help="one PNG per image")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not (args.out or args.out_dir):
        raise SystemExit("give --out FILE.png and/or --out-dir DIR")
    if args.checkpoint:
        net, state = build_model_from_checkpoint(args.checkpoint)
        shape = args.data_shape or state.get("args", {}).get("data_shape", 416)
    else:
        net, shape = model_zoo.get_model(args.model), args.data_shape or 416
    net.eval()
    paths = args.images
    if not paths:
        _, val_set = build.build_datasets("voc", args.data_root, train=False)
        paths = [val_set.image_path(i) for i in range(min(args.num_images, len(val_set)))]
    cols = min(3, len(paths))
    rows = math.ceil(len(paths) / cols)
    grid = plt.figure(figsize=(5 * cols, 5 * rows)) if args.out else None
    for i, path in enumerate(paths):
        img = read_image(path)
        ids, scores, bboxes = detect_images(net, [img], data_shape=shape)[0]
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
