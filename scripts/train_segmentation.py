#!/usr/bin/env python
"""Train FCN semantic segmentation (Bag of Tricks, Table 9) with GluonCV's
scripts/segmentation/train.py flags.

One process:      python scripts/train_segmentation.py --model fcn --backbone resnet50 --dataset ade20k \\
                      --data-root ~/.gluon_bof/datasets/ade --aux --lr 0.01 --pretrained-base CKPT.pth ...
Several devices:  torchrun --nproc_per_node 8 scripts/train_segmentation.py ... --syncbn
Without --data-root it trains on the built-in generated data in the ADE20K layout (7 classes,
written once under data/synthetic_seg). The Table 9 hand-over: --pretrained-base takes a
scripts/train_imagenet.py checkpoint of the backbone (resnet50_v1s for --backbone resnet50).

As GluonCV trains: GluonCV's transforms (random scale of the longer side to [0.5, 2] x
--base-size, flip, pad, --crop-size crop, blur), SGD with momentum and MXNet's update rule, the heads
at 10x the learning rate (--head-lr-mult), poly learning rate (power 0.9) after --warmup-epochs,
MixSoftmaxCrossEntropyLoss with GluonCV's normalisation (--loss-normalization); validation is
pixAcc and mIoU on the centre crops of the validation images (mIoU keeps the best checkpoint), and
each validation draws predicted masks beside the ground truth ({prefix}_val_masks.png).

Differences from GluonCV's script: --batch-size and --lr mean the same, but --aux-weight scales
the auxiliary gradient too (GluonCV's only scales the logged value: --aux-weight 1 for its
updates, see docs/segmentation.md); --resume PATH continues a gluon-bof checkpoint exactly
(GluonCV's loads weights only; --start_epoch is refused); --dataset reads ade20k only;
--pretrained-base defaults to no weights (GluonCV always downloads ImageNet weights: pass
--pretrained-base gluoncv); --ngpus/--no-cuda pick the device and several GPUs run under torchrun;
--kvstore, --mode (hybridisation) and --logging-file do not exist here (the log is
{prefix}_train.log); validation scores every image once (GluonCV's 'rollover' loader skips the
last incomplete batch).
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (scripts/common.py)
from gluon_bof import model_zoo  # noqa: E402
from gluon_bof.engine import amp_settings  # noqa: E402
from gluon_bof.errors import ConfigError, GluonBofError  # noqa: E402
from gluon_bof.fit import check_batch_split, start_run  # noqa: E402
from gluon_bof.model_zoo.fcn import SEG_BACKBONES  # noqa: E402
from gluon_bof.nn.segmentation import LOSS_NORMALIZATIONS  # noqa: E402
from gluon_bof.segmentation import (DATASETS, segmentation_datasets, segmentation_evaluator,  # noqa: E402
                                    segmentation_loaders, segmentation_optimizer)
from gluon_bof.training import build_model_from_checkpoint  # noqa: E402
from gluon_bof.utils import distributed as dist  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, parser_error, run_script  # noqa: E402

logger = logging.getLogger("train_segmentation")
BACKBONES = sorted(SEG_BACKBONES) + [f"resnet{d}_v1{v}" for d in (50, 101) for v in "bcdes"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=HelpFormatter)
    a = p.add_argument
    # model and dataset (GluonCV's names)
    a("--model", default="fcn", choices=["fcn"], help="segmentation model family")
    a("--model-zoo", default=None, help="build this zoo name instead of fcn_<backbone>_<dataset> "
                                        "(e.g. fcn_resnet50_ade); with --pretrained, GluonCV's weights")
    a("--pretrained", action="store_true", help="with --model-zoo: start from GluonCV's published weights")
    a("--backbone", default="resnet50", choices=BACKBONES, metavar="BACKBONE",
      help="dilated backbone: resnet50/101 = resnet50/101_v1s (GluonCV's); resnet18 = resnet18_v1b, a cheap "
           "model for CPU runs (GluonCV's FCN cannot use it); resnet{50,101}_v1{b,c,d,e,s}: that classifier "
           "(ours; e.g. resnet50_v1d for the Bag of Tricks classifiers' checkpoints)")
    a("--dataset", default="ade20k", choices=sorted(DATASETS), help="dataset (GluonCV's default is pascal)")
    a("--data-root", default=None, help="folder holding ADEChallengeData2016; None: the built-in generated data")
    a("--workers", "-j", "--num-workers", dest="num_workers", type=int, default=4,
      help="data loader workers per process (GluonCV: 16)")
    a("--base-size", type=int, default=520, help="base image size: training scales its longer side to 0.5-2x this")
    a("--crop-size", type=int, default=480, help="training crop and validation centre crop size")
    a("--train-split", default="train", choices=["train", "val"], help="training split")
    # training hyper-parameters
    a("--aux", action="store_true", help="auxiliary FCN head on layer3 and its loss")
    a("--aux-weight", type=float, default=0.5,
      help="auxiliary loss weight, applied to its gradient (GluonCV applies it to the logged value only: 1 "
           "reproduces GluonCV's updates)")
    a("--epochs", type=int, default=50, help="training epochs")
    a("--start_epoch", type=int, default=0, help="GluonCV's; refused: --resume restores the epoch")
    a("--batch-size", type=int, default=16, help="global mini-batch of one update (all processes)")
    a("--test-batch-size", type=int, default=16, help="validation batch (all processes)")
    a("--optimizer", default="sgd", choices=["sgd"], help="only SGD with momentum (GluonCV also has adam)")
    a("--lr", type=float, default=1e-3, help="learning rate (the backbone's; the heads get --head-lr-mult x)")
    a("--warmup-epochs", type=int, default=0, help="linear warmup from 0 before the poly schedule")
    a("--momentum", type=float, default=0.9, help="SGD momentum")
    a("--weight-decay", "--wd", dest="weight_decay", type=float, default=1e-4, help="weight decay")
    a("--no-wd", action="store_true", help="no weight decay on biases and BatchNorm gamma/beta")
    a("--head-lr-mult", type=float, default=10.0, help="learning-rate multiple of the FCN heads (GluonCV's lr_mult)")
    a("--loss-normalization", default="gluoncv", choices=LOSS_NORMALIZATIONS,
      help="gluoncv: each output's mean CE over the process's valid pixels, divided by its images (GluonCV's "
           "gradients, so its --lr values carry over); mean: the plain mean over valid pixels (torchvision's)")
    a("--power", type=float, default=0.9, help="poly schedule exponent")
    a("--pretrained-base", default="",
      help="backbone weights: a scripts/train_imagenet.py checkpoint (.pth) or GluonCV .params of the backbone's "
           "classifier, or 'gluoncv' for GluonCV's ImageNet weights (default: random)")
    # devices
    a("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    a("--no-cuda", action="store_true", help="train on the CPU")
    a("--ngpus", type=int, default=None, help="GluonCV's: 0 = CPU, 1 = one GPU; more GPUs run under torchrun")
    a("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
      help="autocast dtype (CUDA; float16 with loss scaling)")
    common.add_threads_arg(p)
    a("--syncbn", action="store_true", help="BatchNorm statistics over all processes (torchrun)")
    a("--bn-group-size", type=int, default=None, help="with --syncbn: processes per BatchNorm group; default: all")
    a("--accumulate", type=int, default=1, help="micro-batches per update (the batch splits into N)")
    a("--grad-checkpoint", action="store_true", help="recompute the backbone stages' activations in backward")
    common.add_speed_args(p)
    # checkpoints, logging, evaluation
    a("--resume", default="", help="gluon-bof checkpoint (.pth) to continue exactly (GluonCV: weights only)")
    a("--checkname", default="default", help="name of this run: checkpoints are <save-dir>/<checkname>_*.pth")
    a("--save-dir", default=None, help="folder of checkpoints and logs; None: runs/<dataset>/<model>/<backbone>/")
    a("--save-interval", type=int, default=10, help="keep a checkpoint every N epochs (0: never)")
    a("--checkpoint-iters", type=int, default=0, help="also refresh *_last.pth every N updates")
    a("--log-interval", type=int, default=20, help="log losses, lr and images/s every N updates (0: epochs only)")
    a("--eval", action="store_true", help="evaluation only: validate --resume (or --model-zoo --pretrained) and stop")
    a("--no-val", action="store_true", help="skip validation during training")
    a("--val-interval", type=int, default=1, help="validate every N epochs (and after the last)")
    a("--seed", type=int, default=233, help="random seed (data order, augmentation, initialisation)")
    a("--max-epoch-iters", type=int, default=0, help="cap updates per epoch (quick runs; 0: no cap)")
    common.add_semantics_args(p)
    args = common.check_speed_args(p, p.parse_args(argv))
    try:
        _check(args)
    except GluonBofError as e:
        parser_error(p, str(e))
    return args


def _check(args) -> None:
    if args.start_epoch:
        raise ConfigError("--start_epoch: gluon-bof checkpoints record their epoch; continue with --resume CHECKPOINT")
    if args.pretrained and not args.model_zoo:
        raise ConfigError("--pretrained loads GluonCV's weights of a --model-zoo name "
                          "(e.g. --model-zoo fcn_resnet50_ade)")
    if args.eval and not (args.resume or (args.model_zoo and args.pretrained)):
        raise ConfigError("--eval needs weights: --resume CHECKPOINT or --model-zoo NAME --pretrained")
    if args.no_cuda or args.ngpus is not None:
        gpus = "" if args.no_cuda else ",".join(map(str, range(args.ngpus)))
        try:
            args.device = common.device_for_gpus(gpus, args.device)
        except ConfigError as e:
            raise ConfigError(str(e).replace("--gpus", "--no-cuda" if args.no_cuda else "--ngpus")) from None
    check_batch_split(args.batch_size, int(os.environ.get("WORLD_SIZE", "1")), args.accumulate)
    name = model_name(args)
    if name not in model_zoo.list_models():
        raise ConfigError(f"--model-zoo {name}: not in the zoo (FCN names: "
                          f"{', '.join(m for m in model_zoo.list_models() if m.startswith('fcn_'))})")
    if args.pretrained_base not in ("", "gluoncv") and not os.path.isfile(args.pretrained_base):
        raise ConfigError(f"--pretrained-base {args.pretrained_base}: no such file (a train_imagenet.py checkpoint, "
                          f"a GluonCV .params, or 'gluoncv')")
    if args.save_dir is None:
        args.save_dir = os.path.join("runs", args.dataset, args.model, args.backbone)


def main(argv=None):
    args = parse_args(argv)
    return dist.run_in_process_group(run, args, args.device)


def model_name(args) -> str:
    """``--model-zoo``, or GluonCV's ``fcn_<backbone depth>_<dataset acronym>``."""
    return args.model_zoo or f"fcn_{args.backbone.split('_')[0]}_{DATASETS[args.dataset][1]}"


def build_model(args, nclass: int):
    """``(net, model_name, model_kwargs)`` from the model flags, for ``nclass`` classes."""
    name, variant = model_name(args), args.backbone.partition("_")[2]
    kwargs = {"aux": args.aux, "base_size": args.base_size, "crop_size": args.crop_size}
    if args.pretrained:  # GluonCV's weights, for their own classes
        net = model_zoo.get_model(name, pretrained=True, **kwargs)
        if net.nclass != nclass:
            raise ConfigError(f"--model-zoo {name} --pretrained predicts {net.nclass} classes, the data has {nclass}")
        return net, name, {"nclass": nclass, **kwargs}
    kwargs["nclass"] = nclass
    if variant and not args.model_zoo:
        kwargs["base_model"] = args.backbone
    base = {"": False, "gluoncv": True}.get(args.pretrained_base, args.pretrained_base)
    return model_zoo.get_model(name, pretrained_base=base, **kwargs), name, kwargs


def run(args, ctx):
    save_prefix = os.path.join(args.save_dir, args.checkname)
    batch_size = start_run(save_prefix=save_prefix, rank=ctx.rank, world_size=ctx.world_size, seed=args.seed,
                           batch_size=args.batch_size, settings=vars(args), name=logger.name,
                           accumulate=args.accumulate, num_workers=args.num_workers, threads=args.threads)
    train_set, val_set = segmentation_datasets(args.dataset, args.data_root, args.train_split)
    logger.info("data: %d training, %d validation images, %d classes (%s)", len(train_set), len(val_set),
                train_set.num_class, ", ".join(train_set.classes[:8]) + (" ..." if train_set.num_class > 8 else ""))
    train_loader, sampler, val_loader = segmentation_loaders(
        train_set, val_set, batch_size=batch_size, val_batch_size=max(args.test_batch_size // ctx.world_size, 1),
        base_size=args.base_size, crop_size=args.crop_size, num_workers=args.num_workers, seed=args.seed,
        rank=ctx.rank, world_size=ctx.world_size)
    evaluate_fn = segmentation_evaluator(val_loader, train_set.num_class, ctx.device, classes=train_set.classes,
                                         viz_path=f"{save_prefix}_val_masks.png")
    if args.eval:
        return _evaluate_only(args, ctx, evaluate_fn, train_set.num_class)

    net, model_name, model_kwargs = build_model(args, train_set.num_class)
    loss = {"aux_weight": args.aux_weight, "normalization": args.loss_normalization}
    model = common.prepare_model(args, net.configure_loss(**loss), ctx.device)
    optimizer, lr_scheduler = segmentation_optimizer(
        model, lr=args.lr, momentum=args.momentum, wd=args.weight_decay, no_wd=args.no_wd,
        iters_per_epoch=len(sampler), epochs=args.epochs, warmup_epochs=args.warmup_epochs, power=args.power,
        head_lr_mult=args.head_lr_mult, sgd_rule=args.sgd_rule, max_epoch_iters=args.max_epoch_iters)
    amp_dtype, scaler = amp_settings(args.dtype != "float32", args.dtype, ctx.device, flag="--dtype")
    config = common.run_config(args, save_prefix=save_prefix, device=ctx.device, model_name=model_name,
                               model_kwargs=model_kwargs, amp_dtype=amp_dtype, train_settings=loss, score_name="mIoU")
    return common.train(ctx, config, model=model, optimizer=optimizer, lr_scheduler=lr_scheduler, scaler=scaler,
                        train_loader=train_loader, sampler=sampler, evaluate_fn=None if args.no_val else evaluate_fn)


def _evaluate_only(args, ctx, evaluate_fn, nclass: int) -> dict:
    """GluonCV's --eval: validate the given weights once."""
    if args.resume:
        net, _ = build_model_from_checkpoint(args.resume)
    else:
        net = build_model(args, nclass)[0]
    if net.nclass != nclass:
        raise ConfigError(f"the model predicts {net.nclass} classes, the data has {nclass}")
    names, values = evaluate_fn(net.to(ctx.device))
    logger.info("validation: %s", ", ".join(f"{n}={v:.4f}" for n, v in zip(names, values)))
    return dict(zip(names, values))


if __name__ == "__main__":
    run_script(main)
