"""What the evaluation scripts share: pick the device, load the network (a checkpoint or a zoo
name), run it on images, evaluate it at several input sizes and print/write one table."""
import json
import os
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .data.transforms.presets.yolo import YOLO3DefaultValTransform
from .engine import evaluate, to_device
from .errors import ConfigError
from .model_zoo import get_model
from .training import build_model_from_checkpoint
from .utils.metrics import COCODetectionMetric, VOC07MApMetric, VOCMApMetric
from .utils.metrics.coco_detection import SUMMARY_NAMES
from .utils.viz import plot_ap

__all__ = ["resolve_device", "load_eval_model", "add_eval_source_args", "image_set", "detect_images", "make_metric",
           "add_eval_metric_args", "eval_metric_factory", "table_columns", "format_table", "evaluate_at_sizes"]


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as given ('cpu', 'cuda:1')."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_eval_model(*, checkpoint: Optional[str] = None, model: Optional[str] = None, pretrained=None,
                    classes: Optional[Sequence[str]], device: torch.device):
    """The network to evaluate, in eval mode on ``device``: rebuilt from a gluon-bof
    ``checkpoint``, or built from a zoo name ``model`` with ``pretrained`` weights: True for
    GluonCV's published weights (fetched and verified by the weights store), or a file (GluonCV
    ``.params`` or a gluon-bof ``.pth``). A ``*_custom`` zoo name is built for ``classes``, as
    GluonCV's ``get_model(name, classes=...)``. Random weights are refused: they measure nothing.
    The network's classes must be ``classes`` (the dataset's) unless that is None (drawing on
    images). Returns ``(net, display_name)``.

    Raises :class:`~gluon_bof.errors.ConfigError` (a message naming what to change) for a missing
    ``pretrained``, a custom model without weights or classes that differ from the dataset's."""
    if checkpoint:
        net, _ = build_model_from_checkpoint(checkpoint)
        name = os.path.basename(checkpoint)
    else:
        if not pretrained:
            raise ConfigError(f"--model {model} alone has random weights: add --pretrained (GluonCV's published "
                              f"weights) or --pretrained FILE (.params or .pth), or use --checkpoint")
        custom = model.lower().endswith("_custom")
        if custom and pretrained is True:
            raise ConfigError(f"{model} has no published weights (its classes are yours): --pretrained FILE")
        if custom and classes is None:
            raise ConfigError(f"{model} needs the classes of a dataset (--data-root)")
        net = get_model(model, pretrained=pretrained, **({"classes": list(classes)} if custom else {}))
        name = model if pretrained is True else f"{model} ({os.path.basename(str(pretrained))})"
    if classes is not None and list(net.classes) != list(classes):
        raise ConfigError(f"{name} predicts {len(net.classes)} classes {list(net.classes)[:4]}..., the dataset "
                          f"has {len(classes)} {list(classes)[:4]}...: evaluate on its dataset (--dataset, "
                          f"--data-root) or use the *_custom model for these classes")
    return net.to(device).eval(), name


def add_eval_source_args(parser) -> None:
    """``--checkpoint`` or ``--model NAME --pretrained [FILE]``: what the eval scripts evaluate."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a gluon-bof training checkpoint (.pth)")
    src.add_argument("--model", help="a zoo name (e.g. yolo3_darknet53_voc); needs --pretrained")
    parser.add_argument("--pretrained", nargs="?", const=True, default=None, metavar="FILE",
                        help="with --model: GluonCV's published weights (no FILE: downloaded, sha1-checked and "
                             "cached under GLUON_BOF_HOME), or FILE, a GluonCV .params or a gluon-bof .pth")


@torch.no_grad()
def detect_images(net, images: Sequence[np.ndarray], *, data_shape: int, batch_size: int = 16,
                  device="cpu", amp_dtype: Optional[torch.dtype] = None,
                  channels_last: bool = False) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Runs a YOLOv3-style ``net`` (eval mode, the ``ids, scores, bboxes = net(x)`` contract) on
    HxWx3 uint8 RGB images, each resized to ``data_shape`` square by ``YOLO3DefaultValTransform``,
    in batches. Returns per image ``(ids [K], scores [K], boxes [K, 4])``: the valid rows
    (id >= 0), boxes scaled back to that image's pixels and clipped to it. ``amp_dtype``: the
    network runs under autocast in it (``--dtype``); ``channels_last``: the batches' memory
    format (``--channels-last``)."""
    transform = YOLO3DefaultValTransform(data_shape, data_shape)
    device = torch.device(device)
    empty = np.zeros((0, 6), np.float32)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        x = to_device(torch.stack([transform(img, empty)[0] for img in chunk]), device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs = net(x)
        ids, scores, bboxes = (t.float().cpu().numpy() for t in outputs)
        for i, img in enumerate(chunk):
            h, w = img.shape[:2]
            keep = ids[i, :, 0] >= 0
            boxes = bboxes[i, keep].copy()
            boxes[:, 0::2] = np.clip(boxes[:, 0::2] * w / data_shape, 0, w)
            boxes[:, 1::2] = np.clip(boxes[:, 1::2] * h / data_shape, 0, h)
            out.append((ids[i, keep, 0].astype(np.int64), scores[i, keep, 0], boxes))
    return out


def make_metric(name: str, dataset, *, data_shape: Optional[Sequence[int]] = None, legacy_plus_one: bool = False,
                save_prefix: Optional[str] = None, coco_backend: str = "pycocotools"):
    """The validation metric ``name`` over ``dataset``: 'voc07' (11-point VOC07 AP@0.5), 'voc'
    (area under the curve) or 'coco' (COCOeval AP@[.5:.95], AP50, ...; needs a COCO-format
    dataset). For 'coco', ``data_shape=(h, w)`` scales boxes predicted on a resized input back to
    each image (YOLOv3; Faster R-CNN's loader already does), ``legacy_plus_one`` is GluonCV's box
    conversion, ``save_prefix`` keeps the results JSON at ``save_prefix + '_results.json'`` and
    ``coco_backend`` picks pycocotools or faster_coco_eval."""
    if name == "coco":
        if not hasattr(dataset, "coco"):
            raise ConfigError(f"--metric coco needs a COCO-format dataset (--dataset coco), not {dataset}; "
                              "python -m gluon_bof.data.convert turns a VOC layout into one")
        return COCODetectionMetric(dataset, save_prefix=save_prefix, cleanup=save_prefix is None,
                                   data_shape=data_shape, legacy_plus_one=legacy_plus_one, backend=coco_backend)
    if name not in ("voc07", "voc"):
        raise ValueError(f"unknown metric {name!r} (voc07, voc or coco)")
    return (VOC07MApMetric if name == "voc07" else VOCMApMetric)(iou_thresh=0.5, class_names=dataset.classes)


def add_eval_metric_args(parser) -> None:
    """``--metric`` and ``--legacy-plus-one``, the eval scripts' metric flags."""
    parser.add_argument("--metric", default=None, choices=["voc07", "voc", "coco"],
                        help="voc07 (11-point AP@0.5), voc (area AP@0.5) or coco (AP@[.5:.95] ...); "
                             "default: voc07 on VOC data, coco on COCO data")
    parser.add_argument("--legacy-plus-one", action="store_true",
                        help="COCO: GluonCV's w = x2 - x1 + 1 box conversion (reproduces its zoo numbers)")
    parser.add_argument("--coco-backend", default="pycocotools", choices=["pycocotools", "faster_coco_eval"],
                        help="COCOeval implementation (faster_coco_eval: same numbers, faster)")


def eval_metric_factory(metric: Optional[str], dataset: str, val_set, *, save_dir: str = "",
                        legacy_plus_one: bool = False, data_shape=None, coco_backend: str = "pycocotools"):
    """``(metric name, metric(key))`` for the eval scripts: the default metric of ``dataset``
    when ``metric`` is None; ``data_shape(key)`` gives the COCO rescaling size of a run (YOLOv3)
    and the COCO results JSON is kept as ``{save_dir}/coco_{key}_results.json``."""
    name = metric or ("coco" if dataset == "coco" else "voc07")

    def build(key):
        prefix = os.path.join(save_dir, f"coco_{key}") if save_dir else None
        return make_metric(name, val_set, data_shape=data_shape(key) if data_shape else None,
                           legacy_plus_one=legacy_plus_one, save_prefix=prefix, coco_backend=coco_backend)

    return name, build


COCO_COLUMNS = SUMMARY_NAMES[:6]  # mAP (AP@[.5:.95]), AP50, AP75, APs, APm, APl


def table_columns(metric_name: str):
    """The summary columns of a results table: COCO's six APs, or the VOC mAP."""
    return COCO_COLUMNS if metric_name == "coco" else ("mAP",)


def format_table(results: dict, columns: Sequence[str], header: str, markdown: bool = False) -> str:
    """``results`` (``{key: {column: value}}``) as aligned text or a Markdown table; values are
    printed as percentages (AP x 100, two decimals) for COCO and as fractions (four decimals) for
    VOC, the way GluonCV reports each."""
    percent = len(columns) > 1
    fmt = (lambda v: f"{100 * v:.2f}") if percent else (lambda v: f"{v:.4f}")
    names = ["AP" if c == "mAP" and percent else c for c in columns]
    rows = [[str(k)] + [fmt(res[c]) for c in columns] for k, res in results.items()]
    if markdown:
        lines = ["| " + " | ".join([header, *names]) + " |", "|" + "---|" * (len(names) + 1)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
    width = max(10, len(header), *(len(r[0]) for r in rows))
    lines = [f"  {header:>{width}s}" + "".join(f"  {n:>6s}" for n in names)]
    lines += [f"  {r[0]:>{width}s}" + "".join(f"  {v:>6s}" for v in r[1:]) for r in rows]
    return "\n".join(lines)


def image_set(dataset) -> dict:
    """What identifies the images a run scored: ``{'num_images', 'sha1'}``, the sha1 over the
    images' file names in dataset order (``compare.py`` refuses to compare different sets)."""
    import hashlib

    digest = hashlib.sha1()
    for i in range(len(dataset)):
        name = os.path.basename(dataset.image_path(i)) if hasattr(dataset, "image_path") else str(i)
        digest.update(name.encode() + b"\n")
    return {"num_images": len(dataset), "sha1": digest.hexdigest()}


def evaluate_at_sizes(net, runs: Sequence[Tuple[Any, str, Any]], *, metric, device: torch.device, name: str,
                      num_images: int, metric_name: str = "voc07", save_dir: str = "",
                      size_header: str = "data shape", images: Optional[dict] = None,
                      amp_dtype: Optional[torch.dtype] = None, channels_last: bool = False) -> dict:
    """Evaluates ``net`` once per ``(key, label, loader)`` of ``runs`` (e.g. one per input size).

    ``metric`` is a metric or a callable ``metric(key)`` returning a fresh one per run (COCO:
    its ``data_shape`` and results file depend on the size). Prints per-class AP and the summary
    for each run (``label`` names the size), then one table of the summary columns (VOC: mAP;
    COCO: AP, AP50, AP75, APs, APm, APl) per ``key``. With ``save_dir``: a per-class AP PNG per
    run (``per_class_ap_{key}.png``), ``eval.json`` (``{'model', 'metric', 'size_header',
    'images', 'results'}``; ``images`` from :func:`image_set`) and ``eval.md`` (the table in
    Markdown). ``amp_dtype`` and ``channels_last`` go to :func:`~gluon_bof.engine.evaluate` (the
    precision is recorded in ``eval.json`` as ``dtype``). Returns ``{key: {class name, summary
    name: value}}``.
    """
    columns = table_columns(metric_name)
    results = {}
    for key, label, loader in runs:
        run_metric = metric(key) if callable(metric) and not hasattr(metric, "update") else metric
        names, values = evaluate(net, loader, run_metric, device=device, desc=f"eval {key}", amp_dtype=amp_dtype,
                                 channels_last=channels_last)
        results[key] = dict(zip(names, values))
        what = "AP@[.5:.95] per class" if metric_name == "coco" else "AP@0.5"
        print(f"\n{name} at {label} ({metric_name} {what}, {num_images} images)")
        for n, v in zip(names, values):
            print(f"  {n:>16s}: {v:.4f}")
        if save_dir:
            classes = [n for n in names if n not in SUMMARY_NAMES]
            plot_ap(classes + ["mAP"], [results[key][n] for n in classes + ["mAP"]],
                    os.path.join(save_dir, f"per_class_ap_{key}.png"), title=f"{name} @ {key}: {metric_name} AP")
    print(f"\n{name} ({metric_name}, {num_images} images)")
    print(format_table(results, columns, size_header))
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        with open(os.path.join(save_dir, "eval.json"), "w") as f:
            json.dump({"model": name, "metric": metric_name, "size_header": size_header,
                       "images": images or {"num_images": num_images},
                       "dtype": str(amp_dtype or torch.float32).replace("torch.", ""), "results": results}, f,
                      indent=1)
        with open(os.path.join(save_dir, "eval.md"), "w") as f:
            f.write(f"{name}, {metric_name}, {num_images} images\n\n")
            f.write(format_table(results, columns, size_header, markdown=True))
    return results
