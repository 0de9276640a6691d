"""Measuring speed: device timing, the matrix-product peak, FLOP counts and host syncs.

Used by ``scripts/benchmark_speed.py`` and ``scripts/gpu_check.py``:

- :func:`timed` runs a step ``warmup`` times, then ``iters`` times between two device
  synchronisations, and returns the seconds of the timed part (warm-up covers compilation,
  cuDNN's algorithm search and allocator growth);
- :func:`matmul_peak` is the machine's measured ceiling: FLOP/s of an ``n x n x n`` product in a
  dtype (2048 on a CPU, 8192 on a GPU), the reference for the fraction of the peak a model reaches;
- :func:`count_flops` counts a step's FLOPs with ``torch.utils.flop_counter.FlopCounterMode`` (2 per
  multiply-add of convolutions and matrix products; elementwise work, norms and NMS not counted);
- :class:`SyncCounter` counts, during a step, the operations that make the host wait for a CUDA
  device (``.item()``, ``bool(tensor)``, ``.tolist()``, data-dependent shapes such as ``nonzero``,
  boolean indexing, ``unique`` and torchvision's NMS, device-to-host copies), each with the
  ``gluon_bof`` source line that asked for it. It works on the CPU too, where nothing actually
  waits, so the syncs a GPU run would have can be found without a GPU.
"""
from __future__ import annotations

import collections
import os
import statistics
import sys
import time
from typing import Callable, Dict, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["synchronize", "timed", "matmul_peak", "count_flops", "SyncCounter"]

aten = torch.ops.aten


def synchronize(device: torch.device) -> None:
    """Waits for the work queued on ``device`` (CUDA); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], object], device: torch.device, *, iters: int, warmup: int = 1) -> Dict[str, float]:
    """Runs ``step()`` ``warmup`` times (timed one by one: ``first_s`` is the first call,
    compilation included), then ``iters`` times in one timed stretch between device
    synchronisations. Returns ``{'seconds', 'per_iter_s', 'first_s', 'cpu_s'}`` (``seconds``: the
    timed stretch's wall time; ``cpu_s``: the CPU time this process spent in it, all threads: on a
    CPU shared with other jobs, work per CPU-second is steadier than work per wall second)."""
    first = None
    for _ in range(warmup):
        synchronize(device)
        tic = time.perf_counter()
        step()
        synchronize(device)
        first = time.perf_counter() - tic if first is None else first
    synchronize(device)
    tic, cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    synchronize(device)
    seconds = time.perf_counter() - tic
    return {"seconds": seconds, "per_iter_s": seconds / max(iters, 1), "first_s": first,
            "cpu_s": time.process_time() - cpu}


def matmul_peak(device: torch.device, dtype: torch.dtype, n: Optional[int] = None, repeats: int = 5,
                tf32: Optional[bool] = None) -> float:
    """Measured FLOP/s (``2 n^3`` per product) of an ``n x n`` by ``n x n`` matrix product in
    ``dtype`` on ``device``, the median of ``repeats`` timed products after one warm-up, on random
    data (zeros run faster on some GPUs). ``n``: 8192 on CUDA, 2048 on the CPU. ``tf32`` (CUDA,
    float32): allow TensorFloat-32 for this measurement (the rate cuDNN's float32 convolutions
    reach under torch's default ``torch.backends.cudnn.allow_tf32 = True``)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    previous = torch.backends.cuda.matmul.allow_tf32
    if tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        times = []
        for i in range(repeats + 1):
            synchronize(device)
            tic = time.perf_counter()
            torch.mm(a, b)
            synchronize(device)
            if i:  # the first is the warm-up
                times.append(time.perf_counter() - tic)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2.0 * n ** 3 / statistics.median(times)


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one ``step()`` as ``FlopCounterMode`` counts them (forward and, if the step runs
    it, backward): 2 per multiply-add of convolutions and matrix products."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../gluon_bof
_ROOT = os.path.dirname(_PACKAGE)
_SELF = os.path.abspath(__file__)


def _site() -> str:
    """``path:line`` of the innermost ``gluon_bof`` frame of the current stack (else the innermost
    frame outside torch), the path relative to the repository."""
    frame = sys._getframe(2)
    fallback = None
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if path != _SELF:
            if path.startswith(_PACKAGE + os.sep):
                return f"{os.path.relpath(path, _ROOT)}:{frame.f_lineno}"
            if fallback is None and f"{os.sep}torch{os.sep}" not in path:
                fallback = f"{path}:{frame.f_lineno}"
        frame = frame.f_back
    return fallback or "?"


def _has_bool_index(indices) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (indices or ()))


class SyncCounter(TorchDispatchMode):
    """Counts the operations of a region that make the host wait for a CUDA device.

    ``with SyncCounter() as c: step()``; then ``c.total``, ``c.by_kind`` (``{kind: n}``) and
    ``c.sites`` (``{(site, kind): n}``, site = ``gluon_bof/...py:line``). Kinds: ``item`` (``.item()``,
    ``bool()``, ``int()``, ``float()`` of a tensor: ``aten._local_scalar_dense``), ``tolist``,
    ``nonzero`` (also ``torch.where(mask)``), ``bool-index`` (``x[mask]``, ``x[mask] = v``),
    ``masked_select``, ``unique``, ``repeat_interleave`` (without ``output_size``), ``nms``
    (torchvision's CUDA NMS copies its mask to the host) and ``device-to-host`` copies. On the
    CPU nothing waits, but the same calls are made: the count is what a CUDA run would pay.
    """

    KINDS = {
        aten._local_scalar_dense.default: "item",
        aten.nonzero.default: "nonzero",
        aten.masked_select.default: "masked_select",
        aten._unique2.default: "unique",
        aten.unique_dim.default: "unique",
        aten.unique_consecutive.default: "unique",
    }

    def __init__(self):
        super().__init__()
        self.sites = collections.Counter()
        self._tolist = None
        self._in_tolist = False

    def _add(self, kind: str) -> None:
        self.sites[(_site(), kind)] += 1

    def __enter__(self):
        counter, original = self, torch.Tensor.tolist

        def tolist(t, *args, **kwargs):
            if counter._in_tolist:
                return original(t, *args, **kwargs)
            counter._add("tolist")
            counter._in_tolist = True
            try:
                return original(t, *args, **kwargs)
            finally:
                counter._in_tolist = False

        self._tolist = original
        torch.Tensor.tolist = tolist
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = self._kind(func, args, kwargs)
        if kind is not None and not self._in_tolist:
            self._add(kind)
        return func(*args, **kwargs)

    def _kind(self, func, args, kwargs) -> Optional[str]:
        if func in self.KINDS:
            return self.KINDS[func]
        packet = func.overloadpacket
        if packet in (aten.index, aten._unsafe_index) and _has_bool_index(args[1] if len(args) > 1 else None):
            return "bool-index"
        if packet in (aten.index_put, aten.index_put_, aten._index_put_impl_) and _has_bool_index(args[1]):
            return "bool-index"
        if packet is aten.repeat_interleave and func is aten.repeat_interleave.Tensor \
                and kwargs.get("output_size") is None:
            return "repeat_interleave"
        if str(packet).endswith("torchvision.nms"):
            return "nms"
        if packet in (aten._to_copy, aten.copy_):
            src = args[1] if packet is aten.copy_ else args[0]
            dst_device = args[0].device if packet is aten.copy_ else kwargs.get("device")
            if isinstance(src, torch.Tensor) and src.device.type == "cuda" and dst_device is not None \
                    and torch.device(dst_device).type == "cpu":
                return "device-to-host"
        return None

    @property
    def total(self) -> int:
        return sum(self.sites.values())

    @property
    def by_kind(self) -> Dict[str, int]:
        out = collections.Counter()
        for (_, kind), n in self.sites.items():
            out[kind] += n
        return dict(out)

    def table(self) -> list:
        """``[{'site', 'kind', 'count'}]``, most frequent first."""
        return [{"site": s, "kind": k, "count": n} for (s, k), n in self.sites.most_common()]
