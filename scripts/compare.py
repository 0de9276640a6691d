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
from gluon_bof.utils.cli import run_script  # noqa: E402


def load_results(path: str) -> dict:
    """``{key: {name: value}}`` from an eval.json or a training history JSON (key 'last')."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: cannot read results JSON ({e})")
    if isinstance(data, dict) and isinstance(data.get("results"), dict):
        return data["results"]
    if isinstance(data, list):  # fit's history: the last validated epoch
        validated = [h["val"] for h in data if isinstance(h, dict) and h.get("val")]
        if validated:
            return {"last": validated[-1]}
    raise SystemExit(f"{path}: neither an eval.json ('results') nor a training history with validation")


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
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("a", help="results of run A (the reference)")
    p.add_argument("b", help="results of run B")
    p.add_argument("--key", default=None, help="input size / entry to compare (default: the first)")
    p.add_argument("--names", nargs=2, default=None, metavar=("A", "B"), help="labels of the two runs")
    p.add_argument("--out", default="ap_delta.png", help="the per-category bar chart (PNG)")
    args = p.parse_args(argv)
    ra, rb = load_results(args.a), load_results(args.b)
    key = args.key if args.key is not None else next((k for k in ra if k in rb), None)
    a, b = pick(ra, key, args.a), pick(rb, key, args.b)
    rows, categories, deltas = compare(a, b)
    if not rows:
        raise SystemExit(f"{args.a} and {args.b} share no metric")
    label_a, label_b = args.names or ("A", "B")
    width = max(12, *(len(r[0]) for r in rows))
    print(f"{label_a}: {args.a}\n{label_b}: {args.b}\n")
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
