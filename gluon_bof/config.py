"""The training scripts' shared flags (GluonCV's names and defaults) and their checks.

Scripts call ``add_common_train_args(parser, **defaults)``, parse, then ``check_train_args`` and
turn the namespace into keyword arguments for library calls; the rest of the library never
receives the namespace. This module sits on top of the package (it may import any layer).
"""
import argparse
import os

from .data.build import mixup_epochs
from .errors import ConfigError, GluonBofError
from .utils.cli import parser_error

__all__ = ["add_common_train_args", "add_threads_arg", "check_batch_split", "add_semantics_args", "check_train_args",
           "device_for_gpus"]

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
    add_semantics_args(parser)
    return parser


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
    try:
        args.no_mixup_epochs = mixup_epochs(args.mixup, args.epochs, args.no_mixup_epochs)
        if args.gpus is not None:
            args.device = device_for_gpus(args.gpus, args.device)
        check_batch_split(args.batch_size, int(os.environ.get("WORLD_SIZE", "1")), args.accumulate)
    except GluonBofError as e:
        parser_error(parser, str(e))
    return args


def check_batch_split(batch_size: int, world_size: int, accumulate: int = 1) -> int:
    """The images each process runs per micro-batch: ``batch_size / (world_size * accumulate)``,
    a ConfigError when that does not divide (``--batch-size`` is the global batch of one update)."""
    if accumulate < 1:
        raise ConfigError(f"--accumulate needs >= 1 micro-batch, got {accumulate}")
    if batch_size < 1 or batch_size % (world_size * accumulate):
        raise ConfigError(f"--batch-size {batch_size} does not split over {world_size} processes"
                          + (f" x --accumulate {accumulate} micro-batches" if accumulate > 1 else "")
                          + " (it is the global batch of one update)")
    return batch_size // (world_size * accumulate)


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
