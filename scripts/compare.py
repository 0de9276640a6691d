#!/usr/bin/env python
"""Compare two evaluation runs: per-metric deltas and the paper's Fig. 7/8 bar chart.

    python scripts/compare.py runs/baseline/eval.json runs/freebies/eval.json --out delta.png

A and B are the ``eval.json`` files the eval scripts write (``--save-dir``; one entry per input
size) or ``fit``'s ``*_history.json`` (the last validated epoch is taken). Prints, for the
summary metrics (VOC: mAP; COCO: AP, AP50, AP75, APs, APm, APl) and then every category, A, B
and B - A, and draws the per-category AP change of B over A sorted from the largest gain to the
largest loss, gains green and losses red (Fig. 7: YOLOv3, Fig. 8: Faster R-CNN, with and without
the freebies). ``--key`` picks the input size when a file holds several (default: the first both
have).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_bof.utils.metrics.coco_detection import SUMMARY_NAMES  # noqa: E402
from gluon_bof.utils.viz import plot_ap_delta  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402


def load_results(path: str):
    """``({key: {name: value}}, meta)`` from an eval.json (``meta``: its model, metric, size
    header and image set) or a training history JSON (key 'last', the last validated epoch;
    ``meta`` empty: it does not say which images were scored)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: cannot read results JSON ({e})")
    if isinstance(data, dict) and isinstance(data.get("results"), dict):
        return data["results"], {k: data.get(k) for k in ("model", "metric", "size_header", "images")}
    if isinstance(data, list):  # fit's history: the last validated epoch
        validated = [h["val"] for h in data if isinstance(h, dict) and h.get("val")]
        if validated:
            return {"last": validated[-1]}, {}
    raise SystemExit(f"{path}: neither an eval.json ('results') nor a training history with validation")


def check_same_images(meta_a: dict, meta_b: dict, path_a: str, path_b: str) -> str:
    """A line saying which images both runs scored; SystemExit when they scored different sets
    (or when only one of them says which)."""
    ia, ib = meta_a.get("images") or {}, meta_b.get("images") or {}
    if ia.get("sha1") and ib.get("sha1"):
        if ia["sha1"] != ib["sha1"]:
            raise SystemExit(f"{path_a} scored {ia.get('num_images')} images, {path_b} {ib.get('num_images')} "
                             f"other ones (image sets differ): AP of different images does not compare "
                             f"(--allow-different-images to compare anyway)")
        return f"both scored the same {ia['num_images']} images"
    if ia.get("num_images") and ib.get("num_images") and ia["num_images"] != ib["num_images"]:
        raise SystemExit(f"{path_a} scored {ia['num_images']} images, {path_b} {ib['num_images']} "
                         f"(--allow-different-images to compare anyway)")
    return "image sets not recorded in both files: cannot check they are the same"


def pick(results: dict, key, path: str) -> dict:
    if key is None:
        key = next(iter(results))
    if str(key) not in results:
        raise SystemExit(f"{path}: no results for {key!r} (has {', '.join(map(str, results))})")
    return results[str(key)]


def compare(a: dict, b: dict):
    """``(rows, per-category names, per-category deltas)``; ``rows`` are ``(name, a, b, b - a)``
    for the summary metrics first, then the categories both runs have, in A's order."""
    names = [n for n in a if n in b]
    summary = [n for n in SUMMARY_NAMES if n in names]  # VOC: mAP; COCO: mAP, AP50 ... ARl
    categories = [n for n in names if n not in SUMMARY_NAMES]
    rows = [(n, float(a[n]), float(b[n]), float(b[n]) - float(a[n])) for n in summary + categories]
    return rows, categories, [float(b[n]) - float(a[n]) for n in categories]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter, epilog=__doc__)
    p.add_argument("a", help="results of run A (the reference)")
    p.add_argument("b", help="results of run B")
    p.add_argument("--key", default=None, help="input size / entry to compare (default: the first)")
    p.add_argument("--names", nargs=2, default=None, metavar=("A", "B"), help="labels of the two runs")
    p.add_argument("--out", default="ap_delta.png", help="the per-category bar chart (PNG)")
    p.add_argument("--allow-different-images", action="store_true",
                   help="compare runs that scored different image sets (refused otherwise)")
    args = p.parse_args(argv)
    (ra, meta_a), (rb, meta_b) = load_results(args.a), load_results(args.b)
    key = args.key if args.key is not None else next((k for k in ra if k in rb), None)
    a, b = pick(ra, key, args.a), pick(rb, key, args.b)
    try:
        images = check_same_images(meta_a, meta_b, args.a, args.b)
    except SystemExit:
        if not args.allow_different_images:
            raise
        images = "image sets differ (--allow-different-images)"
    rows, categories, deltas = compare(a, b)
    if not rows:
        raise SystemExit(f"{args.a} and {args.b} share no metric")
    label_a, label_b = args.names or ("A", "B")
    width = max(12, *(len(r[0]) for r in rows))
    print(f"{label_a}: {args.a}\n{label_b}: {args.b}")
    what = meta_a.get("size_header") or "entry"
    print(f"compared at {what} {key if key is not None else next(iter(ra))}"
          + (f" ({meta_a['metric']})" if meta_a.get("metric") else "") + f"; {images}\n")
    print(f"  {'metric':>{width}s}  {label_a:>8s}  {label_b:>8s}  {'delta':>8s}")
    for i, (name, va, vb, d) in enumerate(rows):
        if i == len(rows) - len(categories) and categories:
            print(f"  {'-' * width}")
        print(f"  {name:>{width}s}  {va:8.4f}  {vb:8.4f}  {d:+8.4f}")
    if categories:
        plot_ap_delta(categories, deltas, args.out, title=f"AP change per category: {label_b} over {label_a}")
        print(f"\nper-category chart: {args.out}")
    return rows


if __name__ == "__main__":
    run_script(main)
