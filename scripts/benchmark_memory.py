#!/usr/bin/env python
"""Training-step memory with and without ``--grad-checkpoint`` (backbone stages recomputed in backward).

    python scripts/benchmark_memory.py [--model yolo3_darknet53_voc] [--batch-size 2] [--size 416 416]
        [--device auto] [--repeat 1] [--json out.json]

For each setting the script runs one training step (forward with random labels, backward) of the
model and prints:

- ``saved MiB``: bytes of the activations autograd keeps for backward, counted on any device by
  ``torch.autograd.graph.saved_tensors_hooks`` (unique storages, parameters and buffers excluded),
  plus the inputs the checkpointed stages keep for their recomputation. On CPU this is the honest
  measure: the process's RSS / tracemalloc do not see torch's allocator reliably;
- ``peak MiB`` (CUDA only): ``torch.cuda.max_memory_allocated`` over the step, minus the memory
  held before it (weights, gradients of the previous step are freed);
- ``step s``: wall time of forward + backward (the recomputation's price).

Faster R-CNN models take ``--size H W`` as the (already resized) input; their RoI sampling uses
torch's global generator, seeded identically for both settings.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluon_bof import model_zoo  # noqa: E402
from gluon_bof.nn.grad_checkpoint import backbone_stages, set_grad_checkpointing  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402

MIB = 2.0 ** 20


class SavedBytes:
    """Counts the unique storages autograd saves for backward (parameters and buffers excluded)."""

    def __init__(self, model: torch.nn.Module):
        self.exclude = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        self.storages = {}

    def add(self, t):
        if isinstance(t, torch.Tensor) and t.numel():
            s = t.untyped_storage()
            if s.data_ptr() not in self.exclude:
                self.storages[s.data_ptr()] = s.nbytes()
        return t

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def _labels(batch: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(batch, 4, 2, generator=g) * torch.tensor([w / 2, h / 2])
    wh = (0.1 + torch.rand(batch, 4, 2, generator=g) * 0.4) * torch.tensor([w, h])
    return torch.cat([xy, xy + wh, torch.zeros(batch, 4, 1), torch.ones(batch, 4, 1)], -1)


def measure(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, checkpointed: bool) -> dict:
    set_grad_checkpointing(model, enable=checkpointed)
    model.train().zero_grad(set_to_none=True)
    counter = SavedBytes(model)
    def keep_inputs(module, args):  # a checkpointed stage keeps its inputs for the recomputation
        for a in args:
            counter.add(a)

    hooks = [s.register_forward_pre_hook(keep_inputs) for s in backbone_stages(model)] if checkpointed else []
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    tic = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(counter.add, lambda t: t):
        loss = sum(model(x, labels).values())
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - tic
    for h in hooks:
        h.remove()
    out = {"grad_checkpoint": checkpointed, "saved_mib": counter.total / MIB, "step_s": seconds}
    if cuda:
        out["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / MIB
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--model", default="yolo3_darknet53_voc", help="zoo name of the detector measured")
    p.add_argument("--batch-size", type=int, default=2, help="images per training step")
    p.add_argument("--size", type=int, nargs=2, default=(416, 416), metavar=("H", "W"), help="input height and width")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    p.add_argument("--repeat", type=int, default=1, help="steps per setting (the last is reported)")
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(0)
    model = model_zoo.get_model(args.model).to(device)
    h, w = args.size
    x = torch.randn(args.batch_size, 3, h, w, device=device)
    labels = _labels(args.batch_size, h, w).to(device)
    rows = []
    for checkpointed in (False, True):
        for _ in range(args.repeat):
            result = measure(model, x, labels, checkpointed)
        rows.append(result)
    print(f"{args.model}, batch {args.batch_size}, {h}x{w}, {device} (torch {torch.__version__})")
    for r in rows:
        peak = f", peak {r['peak_mib']:.0f} MiB" if "peak_mib" in r else ""
        print(f"  grad-checkpoint {'on ' if r['grad_checkpoint'] else 'off'}: saved activations "
              f"{r['saved_mib']:.0f} MiB{peak}, step {r['step_s']:.2f} s")
    print(f"  saved activations with checkpointing: {rows[1]['saved_mib'] / rows[0]['saved_mib']:.0%} of plain")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "batch_size": args.batch_size, "size": [h, w],
                       "device": str(device), "torch": torch.__version__, "results": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    run_script(main)
