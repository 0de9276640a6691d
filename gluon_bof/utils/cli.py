"""Command-line flags shared by the training scripts (GluonCV's names and defaults).

Scripts call ``add_common_train_args(parser, **defaults)`` and then turn the parsed namespace into
keyword arguments for library calls; library code never receives the namespace.
"""
import argparse
import os

__all__ = ["add_common_train_args", "add_semantics_args", "default_data_root", "parse_ints"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_data_root() -> str:
    """The built-in generated dataset (``make data`` writes it; scripts generate it if absent)."""
    return os.environ.get("GLUON_BOF_DATA", os.path.join(REPO_ROOT, "data", "synthetic"))


def parse_ints(text: str):
    """"160,180" -> [160, 180]."""
    return [int(x) for x in str(text).split(",") if x.strip()]


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
    a("--device", default="auto", help="auto | cpu | cuda")
    a("--gpus", default=None, help="accepted for GluonCV compatibility; use torchrun for several GPUs")
    a("--epochs", type=int, default=epochs)
    a("--resume", default="", help="checkpoint (.pth) to continue from, exactly where it stopped")
    a("--lr", type=float, default=lr, help="learning rate for --lr-base-batch images")
    a("--lr-base-batch", type=int, default=None,
      help="batch --lr is tuned for: the lr used is lr x batch-size / this (linear scaling rule); "
           "default: --batch-size (no scaling, GluonCV's meaning)")
    a("--lr-mode", default="step", choices=["step", "cosine", "poly"])
    a("--lr-decay", type=float, default=0.1, help="step decay factor")
    a("--lr-decay-period", type=int, default=0, help="decay every N epochs (0: use --lr-decay-epoch)")
    a("--lr-decay-epoch", default=lr_decay_epoch, help="epochs at which the step mode decays")
    a("--warmup-lr", type=float, default=0.0, help="learning rate warmup starts from")
    a("--warmup-epochs", type=int, default=0)
    a("--momentum", type=float, default=0.9)
    a("--wd", type=float, default=wd)
    a("--no-wd", action="store_true", help="no weight decay on biases and BatchNorm gamma/beta")
    a("--log-interval", type=int, default=100)
    a("--save-prefix", default="", help="prefix of checkpoints and logs (a directory ends with /)")
    a("--save-interval", type=int, default=10, help="keep a checkpoint every N epochs")
    a("--checkpoint-iters", type=int, default=0, help="also refresh *_last.pth every N batches")
    a("--val-interval", type=int, default=1)
    a("--seed", type=int, default=seed)
    a("--num-samples", type=int, default=-1, help="use only the first N training images (-1: all)")
    a("--max-epoch-iters", type=int, default=0, help="cap batches per epoch (quick runs; 0: no cap)")
    a("--syncbn", action="store_true", help="SyncBatchNorm across processes (torchrun)")
    a("--bn-group-size", type=int, default=None,
      help="with --syncbn: processes per BatchNorm group (MegDet's 'BN size'); default: all")
    a("--mixup", action="store_true", help="visually coherent image mixup")
    a("--mixup-alpha", type=float, default=1.5, help="Beta(alpha, beta) of the mixup ratio")
    a("--mixup-beta", type=float, default=1.5)
    a("--mixup-fixed", type=float, default=None, help="fixed mixup ratio instead of Beta (paper Table 1: 0.5)")
    a("--no-mixup-epochs", type=int, default=20, help="turn mixup off for the last N epochs")
    a("--label-smooth", action="store_true", help="label smoothing of the classification targets")
    a("--label-smooth-eps", type=float, default=0.1, help="epsilon of the paper's Eq. 3")
    a("--no-data-aug", action="store_true", help="no data augmentation (the paper's '- data augmentation' row)")
    a("--amp", action="store_true", help="mixed precision autocast (CUDA)")
    a("--amp-dtype", default="bfloat16", choices=["bfloat16", "float16"])
    add_semantics_args(parser)
    return parser
