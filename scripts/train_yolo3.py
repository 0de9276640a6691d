#!/usr/bin/env python
"""Train YOLOv3 with the Bag of Freebies (GluonCV's train_yolo3.py flags).

One process:      python scripts/train_yolo3.py --network mobilenet0.25 --mixup --label-smooth ...
Several devices:  torchrun --nproc_per_node 8 scripts/train_yolo3.py --syncbn ...
Each freebie is a flag: --mixup, --label-smooth [--label-smooth-mode gluoncv], --lr-mode cosine
--warmup-epochs N, --no-wd, --syncbn, random shapes (on unless --no-random-shape), --no-data-aug.
Large batches (docs/distributed.md): --lr-base-batch, --accumulate N, --grad-checkpoint, --bn-group-size.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (scripts/common.py)
from gluon_bof import model_zoo  # noqa: E402
from gluon_bof.data import build  # noqa: E402
from gluon_bof.data.loader import random_shape_sizes  # noqa: E402
from gluon_bof.engine import amp_settings, detection_evaluator  # noqa: E402
from gluon_bof.evaluation import make_metric  # noqa: E402
from gluon_bof.fit import start_run  # noqa: E402
from gluon_bof.model_zoo import yolo3  # noqa: E402
from gluon_bof.utils import distributed as dist  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, parse_ints, parser_error, run_script  # noqa: E402

logger = logging.getLogger("train_yolo3")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--network", default="darknet53", help="darknet53 | mobilenet1.0 | mobilenet0.25")
    parser.add_argument("--data-shape", type=int, default=416, help="validation size (training: random shapes)")
    parser.add_argument("--no-random-shape", action="store_true", help="train at --data-shape only")
    parser.add_argument("--random-shape-min", type=int, default=320, help="smallest random shape (GluonCV: 320)")
    parser.add_argument("--random-shape-max", type=int, default=608, help="largest random shape (GluonCV: 608)")
    parser.add_argument("--pretrained-base", default="",
                        help="backbone weights: GluonCV .params or a train_imagenet.py checkpoint .pth (default: random)")
    parser.add_argument("--head-channels", default=None,
                        help="detection block widths deep to shallow, e.g. 64,32,32 (default: GluonCV's)")
    parser.add_argument("--anchor-scale", type=float, default=1.0,
                        help="multiply GluonCV's anchors (sized for 320-608 inputs) for much smaller inputs")
    parser.add_argument("--obj-prior", type=float, default=None,
                        help="start every objectness at this probability (e.g. 0.01) when training "
                             "from scratch; default: PyTorch's init")
    parser.add_argument("--label-smooth-mode", default="paper", choices=["paper", "gluoncv"],
                        help="paper: 1-eps / eps/(K-1) (Eq. 3); gluoncv: GluonCV's min(1/C, 1/40)")
    parser.add_argument("--gpu-augment", action="store_true",
                        help="decode (nvjpeg on CUDA), mix, crop, resize and colour-jitter on the training device; "
                             "workers only read files and draw the augmentation (for when CPU workers cannot feed "
                             "a GPU; same batches as the CPU pipeline to float32 rounding)")
    parser.add_argument("--hue-mode", default="degrees", choices=["degrees", "gluoncv"],
                        help="hue jitter angle unit: degrees (correct) or GluonCV's radians behaviour")
    common.add_common_train_args(parser)
    args = common.check_train_args(parser, parser.parse_args(argv))
    if args.gpu_augment and args.no_data_aug:
        parser_error(parser, "--gpu-augment renders the augmented pipeline on the device; --no-data-aug (a plain "
                             "resize) runs on the CPU: drop one of them")
    return args


def main(argv=None):
    args = parse_args(argv)
    return dist.run_in_process_group(run, args, args.device)


def run(args, ctx):
    net_name = f"yolo3_{args.network}_{args.dataset}"
    save_prefix = args.save_prefix + net_name
    batch_size = start_run(save_prefix=save_prefix, rank=ctx.rank, world_size=ctx.world_size, seed=args.seed,
                           batch_size=args.batch_size, settings=vars(args), name=logger.name,
                           accumulate=args.accumulate, num_workers=args.num_workers, threads=args.threads)

    train_set, val_set = build.build_datasets(args.dataset, args.data_root, args.num_samples)
    model_name, model_kwargs = build.zoo_name("yolo3", args.network, args.dataset, val_set.classes)
    if args.anchor_scale != 1.0:
        model_kwargs["anchors"] = yolo3.scaled_anchors(args.anchor_scale)
    if args.obj_prior is not None:
        model_kwargs["obj_prior"] = args.obj_prior
    if args.head_channels:
        model_kwargs["channels"] = parse_ints(args.head_channels)
    loss = dict(label_smooth=args.label_smooth, label_smooth_eps=args.label_smooth_eps,
                label_smooth_mode=args.label_smooth_mode)
    model = model_zoo.get_model(model_name, pretrained_base=args.pretrained_base or False, **model_kwargs)
    model = common.prepare_model(args, model.configure_loss(**loss), ctx.device)

    sizes = (args.data_shape if args.no_random_shape
             else random_shape_sizes(args.random_shape_min, args.random_shape_max))
    mixup = (build.MixupSettings(args.mixup_alpha, args.mixup_beta, args.mixup_fixed) if args.mixup else None)
    train_loader, sampler, mixup_set = build.yolo3_train_loader(
        train_set, batch_size=batch_size, sizes=sizes, num_workers=args.num_workers, seed=args.seed,
        rank=ctx.rank, world_size=ctx.world_size, mixup=mixup, data_aug=not args.no_data_aug,
        hue_mode=args.hue_mode, device_augment=args.gpu_augment, device=ctx.device)
    val_loader = build.yolo3_val_loader(val_set, batch_size=batch_size, data_shape=args.data_shape,
                                        num_workers=args.num_workers, rank=ctx.rank, world_size=ctx.world_size)
    metric = make_metric("coco" if args.dataset == "coco" else "voc07", val_set,
                         data_shape=(args.data_shape, args.data_shape))
    optimizer, lr_scheduler = common.optimizer_and_schedule(args, model, iters_per_epoch=len(sampler))
    amp_dtype, scaler = amp_settings(args.amp, args.amp_dtype, ctx.device)
    config = common.run_config(args, save_prefix=save_prefix, device=ctx.device, model_name=model_name,
                               model_kwargs=model_kwargs, amp_dtype=amp_dtype, train_settings=loss,
                               score_name="AP@[.5:.95]" if args.dataset == "coco" else "mAP")
    return common.train(ctx, config, model=model, optimizer=optimizer, lr_scheduler=lr_scheduler, scaler=scaler,
                        train_loader=train_loader, sampler=sampler,
                        evaluate_fn=detection_evaluator(val_loader, metric, ctx.device,
                                                        channels_last=args.channels_last),
                        on_epoch_start=build.mixup_switch(mixup_set, mixup, epochs=args.epochs,
                                                          no_mixup_epochs=args.no_mixup_epochs))


if __name__ == "__main__":
    run_script(main)
