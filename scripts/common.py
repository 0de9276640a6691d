"""What the scripts share at the command line: the training flags (GluonCV's names and defaults),
their checks, and the objects built once from them (the run configuration, the optimizer and its
schedule). This is the script boundary: the one module besides the scripts that reads an argparse
namespace; the library (``gluon_bof``) only takes keyword arguments.

Scripts import it as ``common`` (``scripts/`` is on ``sys.path`` when a script runs, and in the
tests through tests/scripts/conftest.py).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import logging  # noqa: E402

from gluon_bof.data.build import mixup_epochs  # noqa: E402
from gluon_bof.engine import COMPILE_MODES, compile_model, convert_channels_last, eval_autocast_dtype  # noqa: E402
from gluon_bof.errors import ConfigError, GluonBofError  # noqa: E402
from gluon_bof.fit import build_optimizer_and_schedule, check_batch_split, decay_epochs, fit, wrap_distributed  # noqa: E402,E501
from gluon_bof.nn.grad_checkpoint import set_grad_checkpointing  # noqa: E402
from gluon_bof.nn.norm import set_running_var_rule  # noqa: E402
from gluon_bof.nn.sync_bn import convert_sync_batchnorm  # noqa: E402
from gluon_bof.training import RunConfig, TrainingState  # noqa: E402
from gluon_bof.utils.cli import parse_ints, parser_error  # noqa: E402

logger = logging.getLogger("train")

__all__ = ["add_common_train_args", "add_threads_arg", "add_semantics_args", "add_speed_args", "check_speed_args",
           "check_train_args", "device_for_gpus", "run_config", "optimizer_and_schedule", "prepare_model",
           "prepare_eval_model", "eval_dtype", "train"]

def add_common_train_args(parser: argparse.ArgumentParser, *, batch_size=64, epochs=200, lr=1e-3,
                          lr_decay_epoch="160,180", wd=5e-4, seed=233) -> argparse.ArgumentParser:
    """Adds the flags every detection training script has (GluonCV's names and meaning)."""
    a = parser.add_argument
    a("--dataset", default="voc", choices=["voc", "coco"], help="dataset format (default voc)")
    a("--data-root", default=None, help="dataset root (default: the built-in generated data)")
    a("--batch-size", type=int, default=batch_size,
      help="global mini-batch of one update (all processes and --accumulate micro-batches)")
    a("--accumulate", type=int, default=1,
      help="gradient accumulation: run each process's batch as N micro-batches (same update, less memory)")
    a("--grad-checkpoint", action="store_true",
      help="recompute the backbone stages' activations in backward (torch.utils.checkpoint): less memory")
    a("--num-workers", "-j", dest="num_workers", type=int, default=4, help="data loader workers per process")
    a("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    add_threads_arg(parser)
    a("--gpus", default=None,
      help="GluonCV's flag: one GPU id ('0') trains on that GPU; several GPUs run one process each under "
           "torchrun (--nproc_per_node N), so a list is refused with that command")
    a("--epochs", type=int, default=epochs, help="training epochs")
    a("--resume", default="", help="checkpoint (.pth) to continue from, exactly where it stopped")
    a("--lr", type=float, default=lr, help="learning rate for --lr-base-batch images")
    a("--lr-base-batch", type=int, default=None,
      help="batch --lr is tuned for: the lr used is lr x batch-size / this (linear scaling rule); "
           "default: --batch-size (no scaling, GluonCV's meaning)")
    a("--lr-mode", default="step", choices=["step", "cosine", "poly"], help="learning-rate schedule after the warmup")
    a("--lr-decay", type=float, default=0.1, help="step decay factor")
    a("--lr-decay-period", type=int, default=0, help="decay every N epochs (0: use --lr-decay-epoch)")
    a("--lr-decay-epoch", default=lr_decay_epoch, help="epochs at which the step mode decays")
    a("--warmup-lr", type=float, default=0.0, help="learning rate warmup starts from")
    a("--warmup-epochs", type=int, default=0, help="linear warmup epochs from --warmup-lr")
    a("--momentum", type=float, default=0.9, help="SGD momentum")
    a("--wd", type=float, default=wd, help="weight decay")
    a("--no-wd", action="store_true", help="no weight decay on biases and BatchNorm gamma/beta")
    a("--log-interval", type=int, default=100, help="log losses, lr and throughput every N updates (0: epochs only)")
    a("--save-prefix", default="", help="prefix of checkpoints and logs (a directory ends with /)")
    a("--save-interval", type=int, default=10, help="keep a checkpoint every N epochs")
    a("--checkpoint-iters", type=int, default=0, help="also refresh *_last.pth every N batches")
    a("--val-interval", type=int, default=1, help="validate every N epochs (and after the last)")
    a("--seed", type=int, default=seed, help="random seed (data order, augmentation, mixup, initialisation)")
    a("--num-samples", type=int, default=-1, help="use only the first N training images (-1: all)")
    a("--max-epoch-iters", type=int, default=0, help="cap batches per epoch (quick runs; 0: no cap)")
    a("--syncbn", action="store_true", help="SyncBatchNorm across processes (torchrun)")
    a("--bn-group-size", type=int, default=None,
      help="with --syncbn: processes per BatchNorm group (MegDet's 'BN size'); default: all")
    a("--mixup", action="store_true", help="visually coherent image mixup")
    a("--mixup-alpha", type=float, default=1.5, help="Beta(alpha, beta) of the mixup ratio")
    a("--mixup-beta", type=float, default=1.5, help="the Beta's second parameter (see --mixup-alpha)")
    a("--mixup-fixed", type=float, default=None, help="fixed mixup ratio instead of Beta (paper Table 1: 0.5)")
    a("--no-mixup-epochs", type=int, default=None,
      help="with --mixup: train the last N epochs without it (default: the last 10%% of --epochs, "
           "GluonCV's 20 of 200); refused when no epoch would mix")
    a("--label-smooth", action="store_true", help="label smoothing of the classification targets")
    a("--label-smooth-eps", type=float, default=0.1, help="epsilon of the paper's Eq. 3")
    a("--no-data-aug", action="store_true", help="no data augmentation (the paper's '- data augmentation' row)")
    a("--amp", action="store_true",
      help="mixed precision autocast in --amp-dtype: CUDA, or bfloat16 on CPUs with native bfloat16")
    a("--amp-dtype", default="bfloat16", choices=["bfloat16", "float16"],
      help="--amp precision: bfloat16, or float16 (CUDA, with a loss scaler)")
    add_speed_args(parser)
    add_semantics_args(parser)
    return parser


def add_speed_args(parser: argparse.ArgumentParser, *, dtype: bool = False) -> argparse.ArgumentParser:
    """The fast paths that leave the arithmetic float32 (docs/benchmarks.md, "Fast paths"):
    ``--channels-last`` and ``--compile`` [``--compile-mode``]; with ``dtype`` (evaluation and the
    demo) also ``--dtype float32|bfloat16|float16``, the autocast precision of the network."""
    a = parser.add_argument
    a("--channels-last", action="store_true",
      help="weights and input batches in torch.channels_last (NHWC) memory format: same values, faster "
           "convolutions on GPUs with tensor cores and on CPUs through oneDNN")
    a("--compile", action="store_true",
      help="torch.compile the network (compiles at the first batch of each input shape; checkpoints keep "
           "plain keys)")
    a("--compile-mode", default=None, choices=COMPILE_MODES,
      help="torch.compile mode with --compile (default: 'default')")
    if dtype:
        a("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
          help="precision the network runs in (autocast): bfloat16 on CUDA or CPUs with native bfloat16, "
               "float16 on CUDA; float32 without")
    return parser


def check_speed_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """``--compile-mode`` without ``--compile`` would do nothing: refused (exit status 2)."""
    if args.compile_mode is not None and not args.compile:
        parser_error(parser, f"--compile-mode {args.compile_mode} needs --compile")
    return args


def add_semantics_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--sgd-rule`` and ``--bn-running-var``: GluonCV's (MXNet's) training semantics by default,
    torch's habits on request (docs/fidelity.md)."""
    parser.add_argument(
        "--sgd-rule", default="mxnet", choices=["mxnet", "torch"],
        help="momentum update rule (default: %(default)s). mxnet: as GluonCV trained, the lr inside the "
             "momentum buffer (v = m*v - lr*g; w += v), so after an lr change old steps keep their old "
             "rate; NAG as MXNet 1.9.1. torch: torch.optim.SGD, lr outside the buffer (b = m*b + g; "
             "w -= lr*b): same updates only at constant lr, ~1.5x larger early in a linear warmup, "
             "~0.11x right after a x0.1 decay")
    parser.add_argument(
        "--bn-running-var", default="biased", choices=["biased", "unbiased"],
        help="BatchNorm running-variance update (default: %(default)s). biased: the batch variance "
             "over N values per channel, as MXNet/GluonCV; unbiased: over N-1, as torch")
    return parser


def add_threads_arg(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--threads``: the CPU threads of this process's own work (see ``gluon_bof.utils.threads``)."""
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op CPU threads of this process (default: the cores it may use, shared by "
                             "the processes on the node, minus one per data worker; at least 1)")
    return parser


def check_train_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Resolves and checks the shared training flags after parsing; a combination that could not do
    what it says ends the script through ``parser.error`` (usage, one line, exit status 2)."""
    check_speed_args(parser, args)
    try:
        args.no_mixup_epochs = mixup_epochs(args.mixup, args.epochs, args.no_mixup_epochs)
        if args.gpus is not None:
            args.device = device_for_gpus(args.gpus, args.device)
        check_batch_split(args.batch_size, int(os.environ.get("WORLD_SIZE", "1")), args.accumulate)
    except GluonBofError as e:
        parser_error(parser, str(e))
    return args


def device_for_gpus(gpus: str, device: str = "auto") -> str:
    """GluonCV's ``--gpus`` / ``--num-gpus`` as this project's ``--device``: '' -> 'cpu', '0' ->
    'cuda:0'; several GPUs need one process each (torchrun), so a list is a ConfigError naming the
    torchrun command."""
    ids = [g for g in str(gpus).split(",") if g.strip()]
    if len(ids) > 1:
        raise ConfigError(f"--gpus {gpus}: several GPUs train with one process each: torchrun --nproc_per_node "
                          f"{len(ids)} <script> ... (CUDA_VISIBLE_DEVICES={gpus} to choose them)")
    if device not in ("auto", "cuda" if ids else "cpu"):
        raise ConfigError(f"--gpus {gpus!r} contradicts --device {device}")
    return f"cuda:{int(ids[0])}" if ids else "cpu"


def run_config(args: argparse.Namespace, *, save_prefix: str, device, model_name: str, model_kwargs: dict,
               amp_dtype=None, train_settings=None, score_name: str = "mAP", epochs: int = None,
               save_interval: int = None) -> RunConfig:
    """The :class:`~gluon_bof.training.RunConfig` of a training script's flags (the classifier's
    names differ: pass ``epochs``/``save_interval``)."""
    return RunConfig(epochs=args.epochs if epochs is None else epochs, save_prefix=save_prefix, device=device,
                     model_name=model_name, model_kwargs=model_kwargs, settings=vars(args),
                     train_settings=dict(train_settings or {}), score_name=score_name, amp_dtype=amp_dtype,
                     resume=args.resume or None,
                     save_interval=args.save_interval if save_interval is None else save_interval,
                     val_interval=args.val_interval, log_interval=args.log_interval,
                     checkpoint_iters=args.checkpoint_iters, max_epoch_iters=args.max_epoch_iters,
                     accumulate=args.accumulate, channels_last=args.channels_last,
                     compile_mode=(args.compile_mode or "default") if args.compile else None)


def optimizer_and_schedule(args: argparse.Namespace, model, *, iters_per_epoch: int, epochs: int = None,
                           **overrides):
    """``(optimizer, lr_scheduler)`` from the training flags (``--lr``, ``--lr-base-batch``,
    ``--momentum``, ``--wd``, ``--no-wd``, ``--sgd-rule``, ``--lr-mode``, ``--lr-decay*``, warmup),
    through :func:`gluon_bof.fit.build_optimizer_and_schedule`; ``overrides`` replace or add
    keyword arguments (Faster R-CNN: ``first_update=0`` and its iteration warmup; classifiers:
    ``nesterov``)."""
    epochs = args.epochs if epochs is None else epochs
    kwargs = dict(lr=args.lr, momentum=args.momentum, wd=args.wd, no_wd=args.no_wd, iters_per_epoch=iters_per_epoch,
                  batch_size=args.batch_size, lr_base_batch=args.lr_base_batch, sgd_rule=args.sgd_rule,
                  max_epoch_iters=args.max_epoch_iters, mode=args.lr_mode, epochs=epochs,
                  warmup_epochs=args.warmup_epochs, warmup_lr=args.warmup_lr, step_factor=args.lr_decay, power=2.0,
                  step_epochs=decay_epochs(epochs, parse_ints(args.lr_decay_epoch), args.lr_decay_period))
    if "warmup_iters" in overrides:  # an iteration warmup replaces the epoch one
        kwargs.pop("warmup_epochs")
        kwargs.pop("warmup_lr")
    kwargs.update(overrides)
    return build_optimizer_and_schedule(model, **kwargs)


def prepare_model(args: argparse.Namespace, model, device):
    """The training flags' changes to a built network, on ``device``: BatchNorm's running-variance
    rule (``--bn-running-var``), MegDet's cross-GPU BatchNorm (``--syncbn``, ``--bn-group-size``),
    ``--grad-checkpoint`` and ``--channels-last`` (before any DDP wrapping; ``--compile`` wraps
    later, in :func:`train`)."""
    model = set_running_var_rule(model.to(device), args.bn_running_var)
    if getattr(args, "syncbn", False):
        model = convert_sync_batchnorm(model, group_size=args.bn_group_size,
                                            biased_running_var=args.bn_running_var == "biased")
    if args.grad_checkpoint:
        set_grad_checkpointing(model)
    if args.channels_last:
        convert_channels_last(model)
    return model


def eval_dtype(args: argparse.Namespace, device):
    """The autocast dtype of ``--dtype`` on ``device`` for the eval scripts and the demo (None
    for float32); an unsupported combination is a ConfigError naming ``--dtype``."""
    return eval_autocast_dtype(args.dtype, device)


def prepare_eval_model(args: argparse.Namespace, net):
    """The network the eval scripts run: ``--channels-last`` converts it, ``--compile`` wraps it
    (``torch.compile``; the wrapper is what they call)."""
    if args.channels_last:
        convert_channels_last(net)
    return compile_model(net, args.compile_mode or "default") if args.compile else net


def train(ctx, config: RunConfig, *, model, optimizer, lr_scheduler, scaler, train_loader, sampler,
          evaluate_fn=None, on_epoch_start=None) -> dict:
    """Wraps the model for the process group (and ``torch.compile`` with ``config.compile_mode``),
    gathers the :class:`~gluon_bof.training.TrainingState` and runs :func:`gluon_bof.fit.fit`; logs
    the best score. Returns fit's result."""
    model = wrap_distributed(model, ctx.device, ctx.distributed)
    if config.compile_mode is not None:  # torch.compile(DDP(model)): after the wrapping
        model = compile_model(model, config.compile_mode)
    state = TrainingState(model, optimizer, lr_scheduler, scaler)
    result = fit(state, config, train_loader=train_loader, train_sampler=sampler, evaluate_fn=evaluate_fn,
                 on_epoch_start=on_epoch_start)
    best = result["best_score"]
    logger.info("best validation %s %s; checkpoints under %s_*.pth", config.score_name,
                "none (no validation ran)" if best is None else f"{best:.4f}", config.save_prefix)
    return result
