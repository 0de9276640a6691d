#!/usr/bin/env python
"""The elephant in the room (Bag of Freebies Table 2 and Fig. 5; Rosenfeld et al., 2018): paste an
object patch into a scene at every grid position and size, run the detector on every frame, and
report the recall of the inserted object and the share of clean-scene objects that disappear.

    python scripts/elephant_in_the_room.py --model runs/demo/yolo3_mobilenet0.25_voc_best.pth
    python scripts/elephant_in_the_room.py --models A.pth B.pth --scene room.jpg \
        --patch elephant.png --patch-class elephant --sizes 0.2 0.35 --grid 5 --gif --out runs/elephant

A model is a gluon-bof checkpoint (.pth) or a zoo name. Without --scene/--patch both come from the
built-in generated data (test split under --data-root): test images --scene-index ..
--scene-index + --num-scenes - 1 are the scenes (statistics pooled), and the patch is the largest
non-difficult object (of --patch-class, if given) that touches no other box, cropped from a later image.
A patch PNG with an alpha channel is alpha-blended, any other patch pasted as a rectangle. The rules
(matching, occlusion) are in ``gluon_bof/experiments/elephant.py``. Writes OUT/elephant.json,
OUT/<model>_sheet.png (a contact sheet of frames), with --gif OUT/<model>.gif, and OUT/scene<i>.png,
OUT/patch.png (the inputs used).
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from gluon_bof import model_zoo  # noqa: E402
from gluon_bof.data.base import read_image  # noqa: E402
from gluon_bof.evaluation import detect_images, resolve_device  # noqa: E402
from gluon_bof.experiments import elephant  # noqa: E402
from gluon_bof.training import build_model_from_checkpoint  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402


SHOWN = 10  # clean objects listed per model (all are in elephant.json)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a checkpoint (.pth) or a zoo name")
    src.add_argument("--models", nargs="+", help="several models side by side (Table 2)")
    p.add_argument("--scene", default=None, help="scene image (default: a built-in test image)")
    p.add_argument("--patch", default=None, help="patch image, PNG alpha respected (default: a built-in crop)")
    p.add_argument("--patch-class", default=None, help="class name of the patch (required with --patch)")
    p.add_argument("--data-root", default=None, help="built-in data for the default scene/patch")
    p.add_argument("--scene-index", type=int, default=2, help="first test image used as a default scene")
    p.add_argument("--num-scenes", type=int, default=1, help="default scenes: this many test images from "
                   "--scene-index on (statistics pooled over all their frames)")
    p.add_argument("--data-shape", type=int, default=None, help="input size (default: the checkpoint's, or 416)")
    p.add_argument("--thresh", type=float, default=0.5, help="score threshold of every detection used")
    p.add_argument("--iou", type=float, default=0.5, help="IoU for a detection to match a box")
    p.add_argument("--max-cover", type=float, default=0.25,
                   help="clean objects covered more than this by the patch are left out of that frame")
    p.add_argument("--sizes", type=float, nargs="+", default=[0.15, 0.25],
                   help="patch's longer side as a fraction of the scene's shorter side")
    p.add_argument("--grid", type=int, default=5, help="positions per axis")
    p.add_argument("--stride", type=int, default=None, help="positions every N pixels instead of --grid")
    p.add_argument("--batch-size", type=int, default=16, help="frames per forward pass")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    p.add_argument("--out", default="runs/elephant", help="output folder (elephant.json, contact sheets, GIFs)")
    p.add_argument("--gif", action="store_true", help="also write an animated GIF per model")
    p.add_argument("--max-frames", type=int, default=36, help="frames on the contact sheet")
    return p.parse_args(argv)


def builtin_scenes_and_patch(root, scene_indices, patch_class=None):
    """``(scenes, patch rgb, patch class name)`` from the built-in data's test split; the patch
    comes from the first image after the scenes (wrapping around) that has a suitable object."""
    from gluon_bof.data import build

    _, val_set = build.build_datasets("voc", root, train=False)
    if not all(0 <= i < len(val_set) for i in scene_indices):
        raise SystemExit(f"scene indices {list(scene_indices)} are outside the {len(val_set)} test images")
    scenes = [val_set[i][0] for i in scene_indices]
    last = max(scene_indices)
    for j in [k % len(val_set) for k in range(last + 1, last + 1 + len(val_set))]:
        if j in scene_indices:
            continue
        img, label = val_set[j]
        rows = [r for i, r in enumerate(label) if not r[5] and max(r[2] - r[0], r[3] - r[1]) >= 32
                and (patch_class is None or val_set.classes[int(r[4])] == patch_class)
                and not any(k != i and _overlaps(o, r) for k, o in enumerate(label))]  # a clean crop
        if rows:
            x0, y0, x1, y1, c = (int(v) for v in max(rows, key=lambda r: (r[2] - r[0]) * (r[3] - r[1]))[:5])
            return scenes, np.ascontiguousarray(img[y0:y1 + 1, x0:x1 + 1]), val_set.classes[c]
    raise SystemExit(f"no isolated object{' of class ' + patch_class if patch_class else ''} of 32 px or more "
                     "in the other test images to use as the patch")


def _overlaps(a, b) -> bool:
    return min(a[2], b[2]) >= max(a[0], b[0]) and min(a[3], b[3]) >= max(a[1], b[1])


def load_model(spec: str):
    """``(net in eval mode, data shape recorded with it or None, display name)``."""
    if os.path.isfile(spec):
        net, state = build_model_from_checkpoint(spec)
        return net.eval(), state.get("args", {}).get("data_shape"), os.path.basename(spec)
    return model_zoo.get_model(spec).eval(), None, spec


def run_model(spec, scenes, frames, patch_name, args, device):
    net, shape, name = load_model(spec)
    shape = args.data_shape or shape or 416
    classes = list(net.classes)
    if patch_name not in classes:
        raise SystemExit(f"{name}: the patch class {patch_name!r} is not one of its classes {classes}")
    net.to(device)
    parts, frame_dets = [], []
    for scene, fr in zip(scenes, frames):
        dets = detect_images(net, [scene] + fr["images"], data_shape=shape, batch_size=args.batch_size,
                             device=device)
        parts.append(elephant.elephant_stats(dets[0], dets[1:], fr["boxes"], patch_class=classes.index(patch_name),
                                             thresh=args.thresh, iou=args.iou, max_cover=args.max_cover,
                                             sizes=fr["sizes"]))
        frame_dets += dets[1:]
    stats = elephant.merge_stats(parts)
    images = [img for fr in frames for img in fr["images"]]
    boxes = np.concatenate([fr["boxes"] for fr in frames])
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(name)[0])
    draw = dict(class_names=classes, thresh=args.thresh)
    elephant.contact_sheet(images, frame_dets, boxes, stats, os.path.join(args.out, f"{tag}_sheet.png"),
                           max_frames=args.max_frames, title=f"{name}: '{patch_name}' patch recall "
                           f"{fmt(stats['recall'])}, disappearing {fmt(stats['disappear_share'])}", **draw)
    if args.gif:
        elephant.save_gif(images, frame_dets, boxes, stats, os.path.join(args.out, f"{tag}.gif"), **draw)
    for o in stats["clean_objects"]:
        o["name"] = classes[o["cls"]]
    per_scene = [{k: p[k] for k in ("frames", "hits", "recall", "pairs", "disappeared", "disappear_share")}
                 for p in parts]
    return dict(model=name, data_shape=shape, per_scene=per_scene, **stats)


def fmt(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def main(argv=None):
    args = parse_args(argv)
    if args.patch and not args.patch_class:
        raise SystemExit("--patch needs --patch-class (the patch's class name)")
    os.makedirs(args.out, exist_ok=True)
    indices = list(range(args.scene_index, args.scene_index + args.num_scenes))
    scenes = [read_image(args.scene)] if args.scene else None
    alpha = None
    if args.patch:
        rgb, alpha = elephant.load_patch(args.patch)
        patch_name = args.patch_class
        if scenes is None:
            scenes = builtin_scenes_and_patch(args.data_root, indices)[0]
    else:
        default_scenes, rgb, patch_name = builtin_scenes_and_patch(args.data_root, indices, args.patch_class)
        scenes = scenes or default_scenes
    for i, scene in enumerate(scenes):
        cv2.imwrite(os.path.join(args.out, f"scene{i}.png"), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    cv2.imwrite(os.path.join(args.out, "patch.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    frames = [elephant.make_frames(scene, rgb, alpha, sizes=args.sizes, grid=args.grid, stride=args.stride)
              for scene in scenes]
    device = resolve_device(args.device)
    results = [run_model(spec, scenes, frames, patch_name, args, device) for spec in (args.models or [args.model])]

    n = sum(len(fr["images"]) for fr in frames)
    print(f"\npatch '{patch_name}' ({'alpha' if alpha is not None else 'rectangle'}) in {len(scenes)} scene(s), "
          f"{n} frames (sizes {args.sizes}); score >= {args.thresh}, IoU >= {args.iou}")
    width = max(5, *(len(r["model"]) for r in results))
    print(f"| {'model':<{width}} | recall of inserted object | share of disappearing objects | clean objects |")
    print(f"|{'-' * (width + 2)}|---|---|---|")
    for r in results:
        print(f"| {r['model']:<{width}} | {fmt(r['recall'])} ({r['hits']}/{n}) | "
              f"{fmt(r['disappear_share'])} ({r['disappeared']}/{r['pairs']} pairs) | {len(r['clean_objects'])} |")
    for r in results:  # the objects lost most often; every object is in elephant.json
        objects = sorted(r["clean_objects"], key=lambda o: -(o["share"] or 0.0))
        print(f"{r['model']}: {len(objects)} clean objects" + (", most often lost:" if objects else ""))
        for o in objects[:SHOWN]:
            print(f"    scene {o['scene']} {o['name']:>10s} {o['score']:.2f} at {[round(v) for v in o['box']]}: "
                  f"lost in {o['lost']}/{o['counted']} frames")
        if len(objects) > SHOWN:
            print(f"    ... {len(objects) - SHOWN} more in elephant.json")
    summary = dict(scenes=[args.scene] if args.scene else [f"built-in test image {i}" for i in indices],
                   patch=args.patch or "built-in crop", patch_class=patch_name, alpha=alpha is not None,
                   sizes=args.sizes, grid=args.grid, stride=args.stride, thresh=args.thresh, iou=args.iou,
                   max_cover=args.max_cover, frame_boxes=[fr["boxes"].tolist() for fr in frames], results=results)
    with open(os.path.join(args.out, "elephant.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"wrote {args.out}/elephant.json and contact sheets")
    return summary


if __name__ == "__main__":
    run_script(main)
