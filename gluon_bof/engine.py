"""The training and evaluation loops every detection script shares.

``train_one_epoch`` runs one epoch of ``losses = model(images, labels)`` steps; ``evaluate`` runs
``ids, scores, bboxes = model(images)`` over a loader and feeds a GluonCV-style metric.
"""
import inspect
import logging
import math
import signal
import sys
import time
from contextlib import nullcontext
from typing import Callable, Optional

import torch
import torch.distributed as dist
from tqdm import tqdm

from .data.loader import EvalBatch, TrainBatch
from .errors import ConfigError
from .utils.distributed import all_gather_object, is_main_process
from .utils.logger import EpochMeter

__all__ = ["train_one_epoch", "evaluate", "detection_evaluator", "metric_values", "StopRequest", "amp_settings",
           "cpu_bf16_supported", "eval_autocast_dtype", "to_device", "convert_channels_last", "compile_model",
           "COMPILE_MODES"]

logger = logging.getLogger(__name__)


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step, so the run can write a
    checkpoint at a step boundary and exit instead of dying mid-update.

    A second signal aborts, unless it comes within ``grace`` seconds of the first: a scheduler
    (SLURM) that signals every worker while torchrun forwards the same signal delivers two at once,
    and that must still end with a checkpoint."""

    def __init__(self, grace: float = 2.0):
        self.requested = False
        self.grace = grace
        self._first = 0.0
        self._previous = {}

    def _handler(self, signum, frame):
        if self.requested:
            if time.monotonic() - self._first > self.grace:
                raise KeyboardInterrupt
            return
        self._first = time.monotonic()
        self.requested = True
        logger.warning("signal %d: stopping after this step (send again to abort)", signum)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc):
        for sig, h in self._previous.items():
            signal.signal(sig, h)
        return False


def cpu_bf16_supported() -> bool:
    """True when this CPU runs bfloat16 natively (AVX512-BF16 or AMX, as oneDNN reports it)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_settings(enabled: bool, dtype: str, device: torch.device, flag: str = "--amp"):
    """``(autocast dtype or None, GradScaler or None)`` for mixed precision (``flag``: the option
    the user gave, named in errors).

    CUDA: bfloat16, or float16 with a loss scaler. CPU: bfloat16 where the CPU supports it natively
    (AVX512-BF16, AMX), no scaler needed. Anything else is a :class:`~gluon_bof.errors.ConfigError`
    saying what to use instead, never a silent fall-back to float32."""
    if not enabled:
        return None, None
    amp_dtype = _autocast_dtype(dtype, device, flag)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and amp_dtype == torch.float16 else None
    return amp_dtype, scaler


def _autocast_dtype(dtype: str, device: torch.device, flag: str) -> torch.dtype:
    """``dtype`` ('bfloat16' or 'float16') as a torch dtype if ``device`` runs it, else a ConfigError."""
    if dtype not in ("bfloat16", "float16"):
        raise ConfigError(f"{flag}: mixed precision is bfloat16 or float16, not {dtype}")
    amp_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float16
    if device.type == "cuda":
        return amp_dtype
    if device.type != "cpu":
        raise ConfigError(f"{flag}: mixed precision on {device.type} is not supported; use CUDA or the CPU")
    if amp_dtype == torch.float16:
        raise ConfigError(f"{flag} float16 needs CUDA (the CPU has no fast float16 kernels); on the CPU use "
                          f"bfloat16, or train in float32")
    if not cpu_bf16_supported():
        raise ConfigError(f"{flag} bfloat16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); train in "
                          f"float32")
    return amp_dtype


def eval_autocast_dtype(dtype: str, device: torch.device, flag: str = "--dtype") -> Optional[torch.dtype]:
    """The autocast dtype of an evaluation in ``dtype`` ('float32': None, no autocast;
    'bfloat16' or 'float16': where :func:`amp_settings` allows them, errors naming ``flag``).
    Evaluation needs no loss scaler."""
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"{flag}: float32, bfloat16 or float16, not {dtype}")
    return None if dtype == "float32" else _autocast_dtype(dtype, device, flag)


def to_device(images: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A batch of images ``[B, 3, H, W]`` on ``device`` (a non-blocking copy: overlaps the
    device's work when the loader pins its memory), in ``torch.channels_last`` memory format
    when ``channels_last`` (same values and shape; NHWC strides, which cuDNN's and oneDNN's
    fastest convolutions take without a transpose)."""
    if channels_last:
        return images.to(device, non_blocking=True, memory_format=torch.channels_last)
    return images.to(device, non_blocking=True)


def convert_channels_last(model: torch.nn.Module, enable: bool = True) -> torch.nn.Module:
    """``model`` with every 4-D parameter and buffer (and gradient) in ``torch.channels_last``
    memory format, in place (``--channels-last``); ``enable=False`` makes them contiguous again.
    Values, shapes and ``state_dict`` keys are unchanged; tensors of other ranks (Faster R-CNN's
    5-D anchor map) are left alone, which ``model.to(memory_format=...)`` would refuse. Convert
    before wrapping in DistributedDataParallel."""
    layout = torch.channels_last if enable else torch.contiguous_format
    return model._apply(lambda t: t.contiguous(memory_format=layout) if t.dim() == 4 else t)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_model(model: torch.nn.Module, mode: str = "default") -> torch.nn.Module:
    """``torch.compile(model, mode=mode)`` (``--compile``): a wrapper whose ``_orig_mod`` is
    ``model``; :func:`gluon_bof.training.unwrap_model` finds the plain network again, so
    checkpoints keep plain keys, and ``train()``/``eval()`` reach the network. Compilation
    happens at the first call of each input shape (random shapes: a few recompilations, then one
    graph with dynamic sizes); data-dependent steps (target assignment, NMS) run eagerly between
    compiled graphs. Wrap after DistributedDataParallel (``torch.compile(DDP(model))``)."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"--compile-mode {mode}: one of {', '.join(COMPILE_MODES)}")
    return torch.compile(model, mode=mode)


class _StopPoll:
    """Whether any process asked to stop, the same answer on every process after every update.

    Without a process group: the flag itself. With one, the processes' flags are all-reduced after
    every update. On the CPU (gloo, synchronous anyway) the answer is read at once: every process
    stops after the update during which the request came. On CUDA (NCCL) the result of update
    ``n`` is read after update ``n + 1``, through a pinned copy and an event that waits for update
    ``n``'s work only, so the host never waits for the work queued since (an ``.item()`` every
    update would): every process stops after the same update, one update after the request."""

    def __init__(self, device: torch.device):
        self.device = device
        self.pipelined = dist.is_available() and dist.is_initialized()
        self._pending = None

    def __call__(self, requested: bool) -> bool:
        if not self.pipelined:
            return bool(requested)
        if self.device.type != "cuda":
            flag = torch.full((1,), 1.0 if requested else 0.0, device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item() > 0)
        decided = False
        if self._pending is not None:
            host, done = self._pending
            if done is not None:
                done.synchronize()
            decided = bool(host.item() > 0)  # a CPU tensor: no device sync
        flag = torch.full((1,), 1.0 if requested else 0.0, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if self.device.type == "cuda":
            host = torch.empty(1, pin_memory=True)
            host.copy_(flag, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        else:
            host, done = flag, None
        self._pending = (host, done)
        return decided


def _progress(iterable, total, desc):
    disable = not is_main_process()
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True,
                mininterval=1.0 if sys.stderr.isatty() else 30.0, leave=False)


def _window_means(window) -> dict:
    """Mean of each value over the ``window``'s updates (``[(values, images)]``, tensors on the
    device), weighted by images: one device-to-host transfer. A non-finite loss is a
    ``FloatingPointError`` naming it."""
    names = sorted({k for v, _ in window for k in v})
    rows = torch.stack([torch.stack([v[k].float().reshape(()) for k in names]) for v, _ in window]).cpu().tolist()
    count = sum(n for _, n in window)
    means = {k: sum(row[i] * n for row, (_, n) in zip(rows, window)) / count for i, k in enumerate(names)}
    bad = [k for k, x in means.items() if not math.isfinite(x)]
    if bad:
        raise FloatingPointError("non-finite loss in the last updates: "
                                 + ", ".join(f"{k}={means[k]:.4g}" for k in bad))
    return means


def train_one_epoch(model, loader, optimizer, lr_scheduler, *, epoch: int, device: torch.device,
                    scaler=None, amp_dtype: Optional[torch.dtype] = None, log_interval: int = 100,
                    start_iter: int = 0, on_step: Optional[Callable[[int], bool]] = None,
                    stop: Optional[StopRequest] = None, accumulate: int = 1,
                    meter: Optional[EpochMeter] = None, channels_last: bool = False) -> dict:
    """Trains for one epoch (from update ``start_iter`` when resuming mid-epoch).

    Batches are :class:`~gluon_bof.data.loader.TrainBatch` (labels whose column 5 is the mix
    weight); anything else is a TypeError, so that a validation batch (column 5 'difficult', 0 for
    most objects) cannot silently train every object with weight 0. The model returns a dict:
    the entries whose name ends in ``loss`` are summed into the loss; the others are statistics
    (e.g. Faster R-CNN's samples per image), averaged and logged like the losses. ``image_sizes`` (padded
    batches) goes to the model as ``image_sizes=``. Each batch is this process's share of one
    optimizer update.

    ``accumulate`` N > 1 (gradient accumulation): every batch is split into N equal micro-batches
    that run forward and backward one after the other, each loss scaled by 1/N, before the one
    optimizer update. The detection losses are means over the batch's images, so the summed
    gradients equal the whole batch's (exactly for layers that do not mix images: BatchNorm in
    training mode sees the micro-batch). Under DDP the gradient all-reduce runs with the last
    micro-batch only (``no_sync``). The batch must divide by N. ``channels_last``: images go to
    the device in ``torch.channels_last`` memory format (:func:`to_device`; the model should be
    converted too, :func:`convert_channels_last`).

    The optimizer updates with the learning rate the schedule has set for it, and
    ``lr_scheduler.step()`` after every update sets the next one's (the n-th update uses
    ``lr_at(n)``, as GluonCV's ``Trainer``; see :class:`~gluon_bof.utils.lr_scheduler.LRScheduler`).
    ``on_step(epoch_iter)`` runs after every update; the loop ends early when it returns True or
    when ``stop`` was requested (on any process: all stop after the same update, and
    ``stop.requested`` is then set on every process; under a process group on CUDA one update after
    the request, so that the check never waits for the device). ``meter`` (an
    :class:`~gluon_bof.utils.logger.EpochMeter`) accumulates the epoch's losses, images and seconds
    and may hold those of the updates before a resume. Returns the epoch's mean losses plus ``lr``,
    ``images_per_sec`` (both over the whole epoch, resumed or not), ``epoch_iter`` (updates done)
    and ``stopped``.
    """
    if accumulate < 1:
        raise ValueError(f"engine.py: accumulate must be >= 1, got {accumulate}")
    model.train()
    meter = meter if meter is not None else EpochMeter()
    window, window_start = [], time.time()  # the updates since the last log line
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext())
    no_sync = getattr(model, "no_sync", nullcontext)  # DDP: skip the all-reduce of early micro-batches
    stop_poll = _StopPoll(device)
    it = start_iter
    stopped = False
    lr = optimizer.param_groups[0]["lr"]
    bar = _progress(loader, total=len(loader), desc=f"epoch {epoch}")
    tic = time.time()
    for batch in bar:
        if not isinstance(batch, TrainBatch):
            raise TypeError(f"train_one_epoch takes TrainBatch batches (labels' column 5 = mix weight), got "
                            f"{type(batch).__name__}: a validation batch's column 5 is 'difficult' and would "
                            f"train every object with weight 0")
        n = batch.images.shape[0]
        if n % accumulate:
            raise ValueError(f"engine.py: a batch of {n} images does not split into "
                             f"{accumulate} equal micro-batches (--accumulate)")
        optimizer.zero_grad(set_to_none=True)
        values = {}
        parts = [t.chunk(accumulate) if t is not None else (None,) * accumulate for t in batch]
        for m, (images, labels, sizes) in enumerate(zip(*parts)):
            images = to_device(images, device, channels_last)
            labels = labels.to(device, non_blocking=True)
            extra = {"image_sizes": sizes.to(device, non_blocking=True)} if sizes is not None else {}
            with (no_sync() if m < accumulate - 1 else nullcontext()):
                with autocast:
                    losses = model(images, labels, **extra)
                loss = sum(v for k, v in losses.items() if k.endswith("loss"))  # others: statistics
                loss = loss / accumulate
                (scaler.scale(loss) if scaler is not None else loss).backward()
            for name, v in losses.items():  # stays on the device: no sync per update
                v = v.detach() / accumulate
                values[name] = values[name] + v if name in values else v
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        lr = optimizer.param_groups[0]["lr"]  # the rate this update used
        lr_scheduler.step()
        it += 1
        now = time.time()
        meter.update(values, n, now - tic, step=it)
        window.append((values, n))
        tic = now
        if log_interval and it % log_interval == 0:  # the losses reach the host here, once per interval
            means = _window_means(window)
            if is_main_process():
                speed = sum(k for _, k in window) / max(time.time() - window_start, 1e-9)
                bar.set_postfix(loss=f"{sum(v for k, v in means.items() if k.endswith('loss')):.3f}",
                                lr=f"{lr:.2e}", size=images.shape[-1], refresh=False)
                logger.info("[epoch %d][batch %d/%d] %s, lr=%.3e, %.1f images/s, shape %dx%d", epoch, it,
                            len(loader) + start_iter, ", ".join(f"{k}={v:.3f}" for k, v in means.items()),
                            lr, speed, images.shape[-1], images.shape[-2])
            window, window_start = [], time.time()
        if on_step is not None and on_step(it):
            stopped = True
            break
        if stop is not None and stop_poll(stop.requested):  # every process stops together
            stop.requested = stopped = True
            break
    bar.close()
    result = meter.summary()  # the epoch's losses reach the host (and are checked finite) here
    result.update(lr=lr, epoch_iter=it, stopped=stopped)
    return result


@torch.no_grad()
def evaluate(model, loader, metric, *, device: torch.device, clip: bool = True, desc: str = "eval",
             amp_dtype: Optional[torch.dtype] = None, channels_last: bool = False):
    """Runs detection over ``loader`` and returns ``metric_values(metric)``: ``(names, floats)``.

    Batches are :class:`~gluon_bof.data.loader.EvalBatch` (labels ``[B, M, 6]``: xyxy, class,
    difficult). Predictions from every process are gathered before the metric is computed, so all
    processes return the same numbers. Boxes are clipped to the input image when ``clip`` (YOLOv3's
    network does not clip; GluonCV's eval script does). ``image_sizes`` (each image's real height
    and width inside a zero-padded batch, see ``detection_pad_collate``) is passed to the model as
    ``image_sizes=`` and boxes are clipped to each image's own size. ``scales`` (``(sy, sx)`` from
    a validation transform's ``original_coords``) map the clipped boxes back to the original
    image, where the labels already are (GluonCV's ``im_scale``): the metric then scores in
    original-image pixels. ``amp_dtype``: the network runs under autocast in that dtype
    (``--dtype bfloat16``/``float16``; boxes and scores reach the metric as float32);
    ``channels_last``: images in that memory format (:func:`to_device`).
    """
    model.eval()
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext())
    records = []
    for batch in _progress(loader, total=len(loader), desc=desc):
        if not isinstance(batch, EvalBatch):
            raise TypeError(f"evaluate takes EvalBatch batches (labels' column 5 = difficult), got "
                            f"{type(batch).__name__}")
        images, labels = batch.images, batch.labels
        extra = {"image_sizes": batch.image_sizes.to(device)} if batch.image_sizes is not None else {}
        with autocast:
            ids, scores, bboxes = model(to_device(images, device, channels_last), **extra)
        ids, scores, bboxes = ids.float(), scores.float(), bboxes.float()
        if clip:  # to each image's real (h, w): its own size in a padded batch, else the input's
            hw = (batch.image_sizes if batch.image_sizes is not None
                  else torch.tensor(images.shape[-2:]).expand(len(images), 2))
            limits = hw.to(bboxes).flip(-1).repeat(1, 2)[:, None, :]  # [B, 1, 4] = w, h, w, h
            bboxes = torch.minimum(bboxes.clamp(min=0), limits)
        if batch.scales is not None:  # back to the original image: x * sx, y * sy
            bboxes = bboxes * batch.scales.to(bboxes).flip(-1).repeat(1, 2)[:, None, :]
        labels = labels.numpy()
        difficult = labels[..., 5:6] if labels.shape[-1] > 5 else None
        records.append((bboxes.float().cpu().numpy(), ids.float().cpu().numpy(), scores.float().cpu().numpy(),
                        labels[..., :4], labels[..., 4:5], difficult))
    metric.reset()
    for part in all_gather_object(records):
        for rec in part:
            metric.update(*rec)
    return metric_values(metric)


def detection_evaluator(loader, metric, device: torch.device, *, channels_last: bool = False):
    """``evaluate_fn(net) -> (names, values)`` for :func:`gluon_bof.fit.fit`: :func:`evaluate` of
    ``net`` over ``loader`` with ``metric`` (the detectors' validation, in float32; images in
    ``channels_last`` memory format when the model was converted)."""

    def evaluate_fn(net):
        return evaluate(net, loader, metric, device=device, desc="val", channels_last=channels_last)

    return evaluate_fn


def metric_values(metric):
    """``metric.get()`` as numbers: ``(names, floats)``, the score training tracks last.

    A metric whose ``get`` takes ``unrounded=True`` (COCO: GluonCV's strings otherwise) is asked
    for its unrounded values."""
    if "unrounded" in inspect.signature(metric.get).parameters:
        names, values = metric.get(unrounded=True)
    else:
        names, values = metric.get()
    return list(names), [float(v) for v in values]
