"""What the evaluation scripts share: pick the device, load the network (a checkpoint or a zoo
name), evaluate it at several input sizes and print/write one table."""
import json
import os
from typing import Any, Optional, Sequence, Tuple

import torch

from .engine import evaluate

__all__ = ["resolve_device", "load_eval_model", "evaluate_at_sizes"]


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as given ('cpu', 'cuda:1')."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_eval_model(*, checkpoint: Optional[str] = None, model: Optional[str] = None, classes: Sequence[str],
                    device: torch.device):
    """The network to evaluate, in eval mode on ``device``: rebuilt from a gluon-bof
    ``checkpoint`` or built from a zoo name ``model``. Its classes must be ``classes`` (the
    dataset's). Returns ``(net, display_name)``."""
    from .model_zoo import get_model
    from .utils.checkpoint import build_model_from_checkpoint

    if checkpoint:
        net, _ = build_model_from_checkpoint(checkpoint)
        name = os.path.basename(checkpoint)
    else:
        net, name = get_model(model), model
    if list(net.classes) != list(classes):
        raise SystemExit(f"the model's classes {list(net.classes)} differ from the dataset's {list(classes)}")
    return net.to(device).eval(), name


def evaluate_at_sizes(net, runs: Sequence[Tuple[Any, str, Any]], *, metric, device: torch.device, name: str,
                      num_images: int, metric_name: str = "voc07", save_dir: str = "",
                      size_header: str = "data shape") -> dict:
    """Evaluates ``net`` once per ``(key, label, loader)`` of ``runs`` (e.g. one per input size).

    Prints per-class AP and mAP for each run (``label`` names the size), then, for several runs,
    one table of mAP per ``key``. With ``save_dir``: a per-class AP PNG per run
    (``per_class_ap_{key}.png``) and ``eval.json`` (``{'model', 'metric', 'results'}``).
    Returns ``{key: {class name or 'mAP': AP}}``.
    """
    from .utils.viz import plot_ap

    results = {}
    for key, label, loader in runs:
        names, values = evaluate(net, loader, metric, device=device, desc=f"eval {key}")
        results[key] = dict(zip(names, map(float, values)))
        print(f"\n{name} at {label} ({metric_name} AP@0.5, {num_images} images)")
        for n, v in zip(names, values):
            print(f"  {n:>16s}: {v:.4f}")
        if save_dir:
            plot_ap(names, values, os.path.join(save_dir, f"per_class_ap_{key}.png"),
                    title=f"{name} @ {key}: {metric_name} AP")
    if len(results) > 1:
        width = max(10, len(size_header), *(len(str(k)) for k in results))
        print(f"\n  {size_header:>{width}s}   mAP")
        for key, res in results.items():
            print(f"  {str(key):>{width}s}   {res['mAP']:.4f}")
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        with open(os.path.join(save_dir, "eval.json"), "w") as f:
            json.dump({"model": name, "metric": metric_name, "results": results}, f, indent=1)
    return results
