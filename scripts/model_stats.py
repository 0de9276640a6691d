#!/usr/bin/env python
"""Parameters and multiply-adds of zoo models at their papers' input sizes, beside the papers' numbers.

    python scripts/model_stats.py                               # every model with a paper number
    python scripts/model_stats.py --models resnet50_v1 inceptionv3 yolo3_darknet53_coco@416
    python scripts/model_stats.py --json stats.json             # also write the rows as JSON

``--models NAME[@SIZE]``: a zoo name at a square input SIZE (default: the sizes the papers report
for it, else 224). Printed as a Markdown table:

- ``params (M)``: trainable parameters (BatchNorm running statistics and YOLO's constant anchor
  and offset buffers excluded);
- ``GMACs``: multiply-adds of one image, counted by ``torch.utils.flop_counter.FlopCounterMode``,
  which counts 2 FLOPs per multiply-add of every convolution and matrix product (bias additions,
  norms, activations and pooling are not counted): GMACs = its count / 2e9;
- ``ours / paper``: our count in the paper's own unit, beside the paper's number. Units differ:
  * Bag of Tricks (He et al., CVPR 2019) Table 5 "FLOPs" of ResNet-50 / -B / -C / -D (3.8 / 4.1 /
    4.3 / 4.3 G, 25 M parameters each) are multiply-adds: ResNet-50 v1b counts 4.09 G MACs (the
    paper's 4.1 G), 8.2 G FLOPs. Its ResNet-50 3.8 G is He et al. (2016)'s figure for ResNet-A,
    which counts 3.86 G: the paper truncates it where it rounds -B's 4.09 to 4.1;
  * Inception-V3 (Szegedy et al., CVPR 2016, abstract): "a computational cost of 5 billion
    multiply-adds per inference ... less than 25 million parameters" (a round figure; we count
    5.71 G MACs, 23.8 M parameters, at 299x299);
  * YOLOv3 at 320 / 416 / 608: 38.97 / 65.86 / 140.69 "Bn" (the Darknet YOLO page's table for
    YOLOv3-320/416/608): Darknet's BFLOPs, 2 FLOPs per multiply-add of its convolutions only
    (``2 * n * size * size * c * out_h * out_w`` per conv layer), so ours is 2 x GMACs there.
  ``agrees``: ours is within one unit of the paper's last printed digit.

Networks are built and run on the meta device (no weights, no arithmetic); models whose forward
is data-dependent (YOLOv3's NMS) run once on the CPU with random weights and a zero image instead
(15 s each at 320-608 on two cores).
"""
import argparse
import json
import logging
import os
import sys
from typing import Dict, List, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluon_bof import model_zoo  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402

logger = logging.getLogger("model_stats")

BOT = "Bag of Tricks Table 5"
MACS = "multiply-adds"
BOT_MACS = "'FLOPs' = multiply-adds"
DARKNET = "Darknet BFLOPs (2 per conv multiply-add)"
# (model, input size, paper's params in M or '', paper's number as printed, its unit, source)
PAPER = [
    ("resnet50_v1", 224, "25", "3.8", BOT_MACS, f"{BOT}, ResNet-50 (He et al. 2016 Table 1)"),
    ("resnet50_v1b", 224, "25", "4.1", BOT_MACS, f"{BOT}, ResNet-50-B"),
    ("resnet50_v1c", 224, "25", "4.3", BOT_MACS, f"{BOT}, ResNet-50-C"),
    ("resnet50_v1d", 224, "25", "4.3", BOT_MACS, f"{BOT}, ResNet-50-D"),
    ("inceptionv3", 299, "<25", "5", MACS, "Szegedy et al. 2016, abstract"),
    ("yolo3_darknet53_coco", 320, "", "38.97", DARKNET, "YOLOv3-320, Darknet YOLO page"),
    ("yolo3_darknet53_coco", 416, "", "65.86", DARKNET, "YOLOv3-416, Darknet YOLO page"),
    ("yolo3_darknet53_coco", 608, "", "140.69", DARKNET, "YOLOv3-608, Darknet YOLO page"),
]


def _count_on(name: str, size: int, device: str) -> Dict:
    with torch.device(device):
        net = model_zoo.get_model(name).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, size, size, device=device))
    return {"params": sum(p.numel() for p in net.parameters() if p.requires_grad),
            "macs": counter.get_total_flops() / 2, "device": device}


def count(name: str, size: int) -> Dict:
    """``{'params', 'macs', 'device'}`` of zoo model ``name`` (eval mode) on one ``size`` x ``size``
    image: trainable parameters, and multiply-adds (FlopCounterMode's FLOPs / 2)."""
    try:
        return _count_on(name, size, "meta")
    except (NotImplementedError, RuntimeError) as e:  # data-dependent ops (NMS) have no meta run
        logger.info("%s: no meta run (%s); counting on the CPU", name, type(e).__name__)
        return _count_on(name, size, "cpu")


def agrees(ours: float, printed: str) -> bool:
    """``ours`` lies within one unit of the last digit of the paper's ``printed`` number."""
    unit = 10.0 ** -(len(printed.split(".")[1]) if "." in printed else 0)
    return abs(ours - float(printed)) <= unit + 1e-9


def measure(name: str, size: int) -> Dict:
    """One table row: our counts and, where a paper reports this model and size, its numbers."""
    row = {"model": name, "input": size, **count(name, size)}
    paper = next((p for p in PAPER if p[0] == name and p[1] == size), None)
    if paper:
        _, _, params, printed, unit, source = paper
        ours = row["macs"] / 1e9 * (2 if unit == DARKNET else 1)
        row.update(paper_params_m=params, paper=printed, paper_unit=unit, source=source,
                   ours_in_paper_unit=ours, agrees=agrees(ours, printed))
    return row


def _targets(specs: Optional[List[str]]) -> List[tuple]:
    if not specs:
        return [(p[0], p[1]) for p in PAPER]
    out = []
    for spec in specs:
        name, _, size = spec.partition("@")
        if name.lower() not in model_zoo.list_models():
            raise SystemExit(f"--models {spec}: {name!r} is not in the zoo (see gluon_bof.model_zoo.list_models())")
        sizes = [int(size)] if size else ([p[1] for p in PAPER if p[0] == name.lower()] or [224])
        out += [(name.lower(), s) for s in sizes]
    return out


def to_markdown(rows: List[Dict]) -> str:
    lines = ["| model | input | params (M) | GMACs | paper params (M) | ours / paper | paper counts | agrees | source |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        paper = (f"{r['ours_in_paper_unit']:.3f} / {r['paper']}" if "paper" in r else "")
        agree = ("yes" if r["agrees"] else "no") if "paper" in r else ""
        lines.append(f"| {r['model']} | {r['input']} | {r['params'] / 1e6:.2f} | {r['macs'] / 1e9:.3f} | "
                     f"{r.get('paper_params_m', '')} | {paper} | {r.get('paper_unit', '')} | {agree} | "
                     f"{r.get('source', '')} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--models", nargs="+", default=None, metavar="NAME[@SIZE]",
                   help="zoo names, optionally @input size (default: every model with a paper number)")
    p.add_argument("--json", default="", help="also write the rows here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = [measure(name, size) for name, size in _targets(args.models)]
    print(to_markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    run_script(main)
