#!/usr/bin/env python
"""Convert GluonCV zoo weights (.params) to safetensors with gluon-bof's state-dict names, for
publishing converted weights.

    python scripts/convert_gluoncv.py yolo3_darknet53_voc                 # GluonCV's file, via the store
    python scripts/convert_gluoncv.py yolo3_darknet53_voc --params yolo3_darknet53_voc-f5ece5ce.params
    python scripts/convert_gluoncv.py resnet50_v1d --out published/resnet50_v1d

Writes three files to ``--out`` (default ``converted/NAME``):

- ``model.safetensors``: the model's whole state dict (parameters and buffers, our names), with
  metadata ``gluon_bof_model``, ``gluoncv_sha1``, ``gluon_bof_version``;
- ``model.safetensors.sha256``: its sha256 in ``sha256sum`` format (``sha256sum -c`` checks it);
- ``model.json``: name, file, sha256, the GluonCV file and its sha1 (and the sha1 GluonCV's table
  publishes for the name, if any), date, gluon-bof / torch / safetensors versions, tensor and
  element counts.

Without ``--params`` the GluonCV file comes from the weights store (cache, ``GLUON_BOF_MIRROR``,
``MXNET_GLUON_REPO`` or GluonCV's S3 bucket; sha1-verified). Load the result with
``get_model(NAME, pretrained='.../model.safetensors')``: the sha256 beside it is checked, and a
file that does not fit the model loads nothing and names what differs.
"""
import argparse
import datetime
import json
import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import gluon_bof  # noqa: E402
from gluon_bof.model_zoo import get_model, list_models, load_gluoncv_params  # noqa: E402
from gluon_bof.model_zoo.model_store import MODEL_SHA1, file_sha256, get_model_file  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402
from gluon_bof.utils.download import file_sha1  # noqa: E402
from gluon_bof.utils.fileio import atomic_open  # noqa: E402

logger = logging.getLogger("convert_gluoncv")

WEIGHTS, DIGEST, CARD = "model.safetensors", "model.safetensors.sha256", "model.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=HelpFormatter)
    p.add_argument("name", help="zoo name (GluonCV's), e.g. yolo3_darknet53_voc; see list_models()")
    p.add_argument("--params", default=None,
                   help="a local GluonCV .params file; None: GluonCV's published file, through the weights store")
    p.add_argument("--out", default=None, help="output directory; None: converted/NAME")
    args = p.parse_args(argv)
    if args.name.lower() not in list_models():
        p.error(f"unknown model {args.name!r}; gluon_bof.model_zoo.list_models() names them")
    if args.params is not None and not os.path.isfile(args.params):
        p.error(f"--params {args.params}: no such file")
    return args


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def convert(name: str, params: str, out: str) -> dict:
    """Converts the GluonCV file ``params`` of zoo model ``name`` into ``out``; returns the card."""
    from safetensors.torch import save_file

    name = name.lower()
    net = get_model(name)
    try:
        load_gluoncv_params(net, params)
    except ValueError as e:  # names every missing / unexpected / mis-shaped parameter
        raise SystemExit(f"{name}: {e}") from None
    state = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    sha1 = file_sha1(params)
    published = MODEL_SHA1.get(name)
    if published and published != sha1:
        logger.warning("%s: sha1 %s is not the %s GluonCV publishes for %s", params, sha1, published, name)
    os.makedirs(out, exist_ok=True)
    weights = os.path.join(out, WEIGHTS)
    tmp = weights + ".tmp"
    save_file(state, tmp, metadata={"gluon_bof_model": name, "gluoncv_sha1": sha1,
                                    "gluon_bof_version": gluon_bof.__version__, "format": "pt"})
    os.replace(tmp, weights)
    sha256 = file_sha256(weights)
    with atomic_open(os.path.join(out, DIGEST), "w") as f:
        f.write(f"{sha256}  {WEIGHTS}\n")
    card = {
        "name": name, "file": WEIGHTS, "sha256": sha256,
        "gluoncv_file": os.path.basename(params), "gluoncv_sha1": sha1, "gluoncv_published_sha1": published,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gluon_bof_version": gluon_bof.__version__, "torch_version": torch.__version__,
        "safetensors_version": _version("safetensors"),
        "tensors": len(state), "elements": int(sum(t.numel() for t in state.values())),
    }
    with atomic_open(os.path.join(out, CARD), "w") as f:
        f.write(json.dumps(card, indent=2) + "\n")
    return card


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    params = args.params or get_model_file(args.name)
    out = args.out or os.path.join("converted", args.name.lower())
    card = convert(args.name, params, out)
    print(f"{card['name']}: {card['tensors']} tensors, {card['elements']:,} elements from "
          f"{params} (sha1 {card['gluoncv_sha1']})\n  {os.path.join(out, WEIGHTS)} sha256 {card['sha256']}\n"
          f"  {os.path.join(out, DIGEST)}, {os.path.join(out, CARD)}")
    return card


if __name__ == "__main__":
    run_script(main)
