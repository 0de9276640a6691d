#!/usr/bin/env python
"""Train an image classifier with the Bag of Tricks (GluonCV's train_imagenet.py flags).

One process:      python scripts/train_imagenet.py --model resnet50_v1d --data-dir ~/imagenet ...
Several devices:  torchrun --nproc_per_node 8 scripts/train_imagenet.py --model resnet50_v1d ...
Without --data-dir it trains on the built-in generated data's classification form (object crops,
written once under <data root>/classification). Each trick is a flag: --last-gamma, --no-wd,
--lr-mode cosine, --warmup-epochs N, --label-smoothing, --mixup [--mixup-alpha --mixup-off-epoch],
--teacher NAME_OR_CHECKPOINT [--temperature --hard-weight], --dtype float16|bfloat16; NAG and the
paper's Xavier initialisation are the defaults (--no-nag, --init). See docs/classification.md.

Differences from GluonCV's script: --batch-size is the GLOBAL batch (all processes), not per
device; --lr is the learning rate for --lr-base-batch (256) images and is scaled linearly with the
batch (pass --lr-base-batch equal to --batch-size for GluonCV's literal --lr); --resume PATH
continues a checkpoint exactly (instead of --resume-epoch/--resume-params/--resume-states); data
are image folders (no RecordIO).
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import common  # noqa: E402  (scripts/common.py)
from gluon_bof import model_zoo  # noqa: E402
from gluon_bof.classification import (ClassifierWithLoss, build_teacher, classification_evaluator,  # noqa: E402
                                      classification_loaders)
from gluon_bof.data.classification import ImageFolderDataset, prepare_synthetic_classification  # noqa: E402
from gluon_bof.engine import amp_settings  # noqa: E402
from gluon_bof.fit import check_batch_split, start_run  # noqa: E402
from gluon_bof.nn.classification import DISTILL_MODES, INIT_MODES, SMOOTHING_MODES, init_weights  # noqa: E402
from gluon_bof.utils import distributed as dist  # noqa: E402
from gluon_bof.errors import ConfigError  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, parser_error, run_script  # noqa: E402
from gluon_bof.utils.logger import setup_logger  # noqa: E402

logger = logging.getLogger("train_imagenet")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train an image classifier with the Bag of Tricks.",
                                epilog=__doc__.split("\n\n")[-1], formatter_class=HelpFormatter)
    a = p.add_argument
    a("--model", required=True, help="zoo classifier: resnet{18,34,50,101,152}_v1[b,c,d,e,s], inceptionv3, "
                                     "darknet53, mobilenet{1.0,0.75,0.5,0.25}")
    a("--data-dir", default=None, help="image folder with train/<class>/* and val/<class>/* "
                                       "(default: the built-in data's object crops)")
    a("--batch-size", type=int, default=32, help="GLOBAL mini-batch (all processes; GluonCV: per device)")
    a("--num-workers", "-j", dest="num_workers", type=int, default=4, help="data loader workers per process")
    a("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    common.add_threads_arg(p)
    a("--num-gpus", type=int, default=None,
      help="GluonCV's flag: 0 trains on the CPU, 1 on the GPU; more GPUs run one process each under torchrun "
           "(--nproc_per_node N), so N > 1 is refused with that command")
    a("--num-epochs", "--epochs", dest="num_epochs", type=int, default=3, help="training epochs")
    a("--lr", type=float, default=0.1, help="learning rate for --lr-base-batch images (paper: 0.1 per 256)")
    a("--lr-base-batch", type=int, default=256, help="batch --lr is meant for (linear scaling rule)")
    a("--momentum", type=float, default=0.9, help="SGD / NAG momentum")
    a("--wd", type=float, default=1e-4, help="weight decay")
    a("--lr-mode", default="step", choices=["step", "cosine", "poly", "linear"],
      help="learning-rate schedule after the warmup")
    a("--lr-decay", type=float, default=0.1, help="step decay factor")
    a("--lr-decay-period", type=int, default=0, help="decay every N epochs (0: use --lr-decay-epoch)")
    a("--lr-decay-epoch", default="40,60", help="epochs at which the step mode decays")
    a("--warmup-lr", type=float, default=0.0, help="learning rate the linear warmup starts from")
    a("--warmup-epochs", type=int, default=0, help="linear warmup epochs (the paper: 5)")
    a("--no-nag", action="store_true", help="plain momentum SGD instead of NAG (Nesterov)")
    a("--init", default="xavier", choices=INIT_MODES,
      help="from-scratch init: xavier (paper), msra (GluonCV's MSRAPrelu), torch (PyTorch defaults)")
    a("--input-size", type=int, default=None,
      help="training crop side (default: the model's own, 299 for inceptionv3, 224 for the others)")
    a("--crop-ratio", type=float, default=0.875,
      help="validation: resize to ceil(input-size / crop-ratio), centre crop")
    a("--jitter-mode", default="paper", choices=["paper", "gluoncv"],
      help="paper: brightness/saturation/hue x U(0.6,1.4); gluoncv: brightness/contrast/saturation")
    a("--use-pretrained", action="store_true", help="start from GluonCV's ImageNet weights")
    a("--use_se", action="store_true", help="GluonCV flag; no SE variants in the zoo (an error)")
    a("--batch-norm", action="store_true", help="GluonCV flag for VGG; no VGG in the zoo (an error)")
    a("--last-gamma", action="store_true", help="zero-init the last BN gamma of each residual block")
    a("--no-wd", action="store_true", help="no weight decay on biases and BatchNorm gamma/beta")
    a("--label-smoothing", action="store_true", help="label smoothing, eps 0.1")
    a("--label-smoothing-eps", type=float, default=0.1, help="epsilon of label smoothing")
    a("--label-smoothing-mode", default="paper", choices=SMOOTHING_MODES,
      help="paper: 1-eps / eps/(K-1); gluoncv: 1-eps+eps/K / eps/K")
    a("--mixup", action="store_true", help="mixup with the reversed batch")
    a("--mixup-alpha", type=float, default=0.2, help="mixup ratio ~ Beta(alpha, alpha) (the paper: 0.2)")
    a("--mixup-off-epoch", type=int, default=0, help="no mixup in the last N epochs")
    a("--teacher", default=None, help="distillation teacher: zoo name (GluonCV weights) or checkpoint .pth")
    a("--temperature", type=float, default=20.0, help="distillation temperature T (the paper: 20)")
    a("--hard-weight", type=float, default=0.5, help="--distill-mode gluoncv: weight of the hard-label loss")
    a("--distill-mode", default="paper", choices=DISTILL_MODES,
      help="paper (default): Eq. 6, hard + T^2*soft; gluoncv: h*hard + (1-h)*T^2*soft with --hard-weight h")
    a("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
      help="mixed precision: float16 (CUDA, with loss scaling) or bfloat16 (CUDA, or CPUs with native "
           "bfloat16); float32 without")
    a("--accumulate", type=int, default=1, help="micro-batches per update (the batch splits into N)")
    a("--grad-checkpoint", action="store_true",
      help="recompute the ResNet stages' activations in backward (less memory, one more forward)")
    a("--resume", default="", help="checkpoint (.pth) to continue from, exactly where it stopped")
    a("--save-dir", default="params", help="folder of checkpoints and logs")
    a("--save-prefix", default="", help="file name prefix inside --save-dir")
    a("--save-frequency", type=int, default=10, help="keep a checkpoint every N epochs (0: never)")
    a("--checkpoint-iters", type=int, default=0, help="also refresh *_last.pth every N batches")
    a("--val-interval", type=int, default=1, help="validate every N epochs (and after the last)")
    a("--log-interval", type=int, default=50, help="log losses, lr and throughput every N updates (0: epochs only)")
    a("--logging-file", default=None, help="log file (default: <save prefix>_train.log)")
    a("--seed", type=int, default=233, help="random seed (data order, augmentation, mixup, initialisation)")
    a("--max-epoch-iters", type=int, default=0, help="cap batches per epoch (quick runs; 0: no cap)")
    common.add_speed_args(p)
    common.add_semantics_args(p)
    args = p.parse_args(argv)
    common.check_speed_args(p, args)
    if args.input_size is None:
        args.input_size = 299 if args.model.lower().startswith("inception") else 224
    if args.mixup and args.mixup_off_epoch >= args.num_epochs:
        parser_error(p, f"--mixup would never mix: --mixup-off-epoch {args.mixup_off_epoch} turns it off for the last "
                f"{args.mixup_off_epoch} of --num-epochs {args.num_epochs}")
    if args.num_gpus is not None:
        try:
            args.device = common.device_for_gpus(",".join(map(str, range(args.num_gpus))), args.device)
        except ConfigError as e:
            parser_error(p, str(e).replace("--gpus", "--num-gpus"))
    try:
        check_batch_split(args.batch_size, int(os.environ.get("WORLD_SIZE", "1")), args.accumulate)
    except ConfigError as e:
        parser_error(p, str(e))
    if not args.mixup and args.mixup_off_epoch:
        parser_error(p, f"--mixup-off-epoch {args.mixup_off_epoch} has no effect without --mixup")
    return args


def main(argv=None):
    args = parse_args(argv)
    return dist.run_in_process_group(run, args, args.device)


def build_model(args, num_classes: int):
    """``(classifier, model_name, model_kwargs)`` for ``--model`` and the tricks that change it."""
    if args.use_se or args.batch_norm:
        raise ConfigError("--use_se / --batch-norm select SE-ResNet / VGG variants, which the zoo does not have")
    name = args.model.lower()
    if name not in model_zoo.list_models():
        raise ConfigError(f"--model {args.model}: not in the zoo (see gluon_bof.model_zoo.list_models())")
    kwargs = {"classes": num_classes}
    if args.last_gamma:
        if not name.startswith("resnet"):
            raise ConfigError(f"--last-gamma: {name} has no residual blocks with a last BatchNorm")
        kwargs["last_gamma"] = True
    try:
        net = common.prepare_model(args, model_zoo.get_model(name, **kwargs), torch.device("cpu"))
    except ValueError as e:
        raise ConfigError(f"--grad-checkpoint: {e}") from e
    if args.use_pretrained:  # GluonCV's ImageNet weights; a head of another size keeps its init
        pretrained = model_zoo.get_model(name, **{**kwargs, "classes": 1000}, pretrained=True).state_dict()
        own = net.state_dict()
        net.load_state_dict({k: v for k, v in pretrained.items() if v.shape == own[k].shape}, strict=False)
    else:
        init_weights(net, args.init)  # conv and linear weights only: last_gamma's zeros stay
    return net, name, kwargs


def run(args, ctx):
    save_prefix = os.path.join(args.save_dir, f"{args.save_prefix}imagenet_{args.model.lower()}")
    batch_size = start_run(save_prefix=save_prefix, rank=ctx.rank, world_size=ctx.world_size, seed=args.seed,
                           batch_size=args.batch_size, settings=vars(args), name=logger.name,
                           accumulate=args.accumulate, num_workers=args.num_workers, threads=args.threads)
    if args.logging_file:  # GluonCV's --logging-file instead of <save prefix>_train.log
        setup_logger(args.logging_file, ctx.rank)
    data_dir = args.data_dir
    if data_dir is None:
        if ctx.is_main:
            data_dir = prepare_synthetic_classification()
        dist.barrier()
        data_dir = prepare_synthetic_classification()
    train_set = ImageFolderDataset(data_dir, "train")
    val_set = ImageFolderDataset(data_dir, "val", classes=train_set.classes)
    logger.info("data %s: %d training, %d validation images, %d classes", data_dir, len(train_set),
                len(val_set), len(train_set.classes))

    net, model_name, model_kwargs = build_model(args, len(train_set.classes))
    teacher = (build_teacher(args.teacher, len(train_set.classes), ctx.device, input_size=args.input_size)
               if args.teacher else None)
    model = ClassifierWithLoss(net, teacher, temperature=args.temperature, hard_weight=args.hard_weight,
                               distill_mode=args.distill_mode).to(ctx.device)

    train_loader, sampler, collate, val_loader = classification_loaders(
        train_set, val_set, batch_size=batch_size, input_size=args.input_size, crop_ratio=args.crop_ratio,
        num_workers=args.num_workers, seed=args.seed, rank=ctx.rank, world_size=ctx.world_size,
        mixup_alpha=args.mixup_alpha if args.mixup else 0.0,
        smoothing_eps=args.label_smoothing_eps if args.label_smoothing else 0.0,
        smoothing_mode=args.label_smoothing_mode, jitter_mode=args.jitter_mode)

    optimizer, lr_scheduler = common.optimizer_and_schedule(args, model, iters_per_epoch=len(sampler),
                                                            epochs=args.num_epochs, nesterov=not args.no_nag)
    amp_dtype, scaler = amp_settings(args.dtype != "float32", args.dtype, ctx.device, flag="--dtype")
    config = common.run_config(args, save_prefix=save_prefix, device=ctx.device, model_name=model_name,
                               model_kwargs=model_kwargs, amp_dtype=amp_dtype, score_name="top1",
                               epochs=args.num_epochs, save_interval=args.save_frequency,
                               train_settings=dict(label_smoothing=args.label_smoothing,
                                                   label_smoothing_mode=args.label_smoothing_mode,
                                                   mixup=args.mixup, distill_mode=args.distill_mode))

    def on_epoch_start(epoch: int) -> dict:
        collate.enabled = args.mixup and epoch < args.num_epochs - args.mixup_off_epoch
        if args.mixup:
            logger.info("[epoch %d] mixup %s", epoch, f"on (alpha {args.mixup_alpha})" if collate.enabled
                        else f"off (the last {args.mixup_off_epoch} epochs)")
        return {"mixup": collate.enabled}

    return common.train(ctx, config, model=model, optimizer=optimizer, lr_scheduler=lr_scheduler, scaler=scaler,
                        train_loader=train_loader, sampler=sampler,
                        evaluate_fn=classification_evaluator(val_loader, ctx.device), on_epoch_start=on_epoch_start)


if __name__ == "__main__":
    run_script(main)
