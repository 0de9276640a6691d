#!/usr/bin/env python
"""Train Faster R-CNN (C4, or FPN with --use-fpn) with the Bag of Freebies (GluonCV's train_faster_rcnn.py flags).

One process:      python scripts/train_faster_rcnn.py --network resnet50_v1b --dataset voc ...
Several devices:  torchrun --nproc_per_node 8 scripts/train_faster_rcnn.py --batch-size 8 ...
MegDet:           torchrun ... --use-fpn --syncbn --bn-group-size 8 --lr-base-batch 16 --accumulate 2
                  --grad-checkpoint (see docs/distributed.md)
Freebies: --mixup [--mixup-mode gluoncv], --label-smooth, --lr-mode cosine, --lr-warmup N, --no-wd,
--no-data-aug (no flip). Images keep their aspect ratio (shorter side --short, longer at most
--max-size); batches hold only landscape or only portrait images, zero-padded to a common size.

Defaults follow GluonCV by --dataset when a flag is not given:
  voc:  --epochs 20 --lr 0.001 --lr-decay-epoch 14,20 --lr-warmup -1 (none) --wd 5e-4 --short 600 --max-size 1000
  coco: --epochs 26 --lr 0.00125 --lr-decay-epoch 17,23 --lr-warmup 1000 --wd 1e-4 --short 800 --max-size 1333
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from torch import nn  # noqa: E402

import common  # noqa: E402  (scripts/common.py)
from gluon_bof import model_zoo  # noqa: E402
from gluon_bof.data import build  # noqa: E402
from gluon_bof.engine import amp_settings, detection_evaluator  # noqa: E402
from gluon_bof.errors import ConfigError  # noqa: E402
from gluon_bof.evaluation import make_metric  # noqa: E402
from gluon_bof.fit import start_run  # noqa: E402
from gluon_bof.model_zoo.rcnn.anchors import anchors_inside, min_anchor_side  # noqa: E402
from gluon_bof.model_zoo.rcnn.predefined import fpn_syncbn_options  # noqa: E402
from gluon_bof.utils import distributed as dist  # noqa: E402
from gluon_bof.utils.cli import HelpFormatter, parse_ints, run_script  # noqa: E402

logger = logging.getLogger("train_faster_rcnn")

# GluonCV's train_faster_rcnn.py defaults per dataset (used where the flag is not given).
DATASET_DEFAULTS = {
    "voc": dict(epochs=20, lr=0.001, lr_decay_epoch="14,20", lr_warmup=-1, wd=5e-4, short="600", max_size=1000),
    "coco": dict(epochs=26, lr=0.00125, lr_decay_epoch="17,23", lr_warmup=1000, wd=1e-4, short="800",
                 max_size=1333),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train Faster R-CNN with the Bag of Freebies.",
                                epilog=__doc__.split("\n\n")[-1], formatter_class=HelpFormatter)
    p.add_argument("--network", default="resnet50_v1b", help="resnet50_v1b | resnet101_v1d")
    p.add_argument("--short", "--image-short", dest="short", default=None,
                   help="shorter image side, or lo,hi for a random side per image (voc 600, coco 800)")
    p.add_argument("--max-size", "--image-max-size", dest="max_size", type=int, default=None,
                   help="bound of the longer side (voc 1000, coco 1333)")
    p.add_argument("--lr-warmup", type=int, default=None,
                   help="warmup iterations from --lr-warmup-factor * lr to lr (voc -1: none, coco 1000)")
    p.add_argument("--lr-warmup-factor", type=float, default=1.0 / 3.0, help="warmup start factor (GluonCV 1/3)")
    p.add_argument("--use-fpn", action="store_true", help="Faster R-CNN with a feature pyramid network")
    p.add_argument("--norm-layer", default=None, choices=["syncbn"],
                   help="norm: frozen BatchNorm in the backbone (default, GluonCV's) or trainable "
                        "SyncBatchNorm (same as --syncbn; with --use-fpn also in the FPN and box head, "
                        "as GluonCV's faster_rcnn_fpn_syncbn; groups: --bn-group-size)")
    p.add_argument("--pretrained-base", default="",
                   help="backbone weights: GluonCV .params or a train_imagenet.py checkpoint .pth (default: random)")
    p.add_argument("--mixup-mode", default="paper", choices=["paper", "gluoncv"],
                   help="paper: Beta(--mixup-alpha, --mixup-beta) ratio, losses weighted per box; "
                        "gluoncv: GluonCV's fixed 0.5 ratio and whole loss * 0.5")
    p.add_argument("--rpn-smoothl1-rho", type=float, default=1.0 / 9.0, help="RPN box loss L1/L2 transition")
    p.add_argument("--rcnn-smoothl1-rho", type=float, default=1.0, help="RCNN box loss L1/L2 transition")
    # a few of GluonCV's custom-model options (default: the zoo builder's values)
    p.add_argument("--anchor-scales", default=None, help="anchor scales w.r.t. 16 px, e.g. 2,4,8,16,32")
    p.add_argument("--roi-size", default=None, help="RoIAlign output h,w (C4 default 14,14)")
    p.add_argument("--rpn-test-post-nms", type=int, default=None, help="proposals kept at test time")
    p.add_argument("--rcnn-num-samples", type=int, default=None, help="RoIs sampled per training image (128)")
    common.add_common_train_args(p, batch_size=1, epochs=None, lr=None, lr_decay_epoch=None, wd=None)
    p.set_defaults(save_interval=1)  # GluonCV's
    args = p.parse_args(argv)
    for key, value in DATASET_DEFAULTS[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return common.check_train_args(p, args)


def warmup_schedule(lr_warmup: int, factor: float, warmup_epochs: int = 0, warmup_lr: float = 0.0) -> dict:
    """``lr_at`` warmup arguments. GluonCV sets batch i's lr before its update (hence
    ``first_update=0``) and warms up over batches 0..W: ``lr * (f + (1 - f) * i / W)``, i.e. a
    linear warmup over W + 1 iterations from ``f * lr``. W <= 0: --warmup-epochs / --warmup-lr."""
    if lr_warmup > 0:
        return dict(warmup_iters=lr_warmup + 1, warmup_factor=factor)
    return dict(warmup_epochs=warmup_epochs, warmup_lr=warmup_lr)


def main(argv=None):
    args = parse_args(argv)
    return dist.run_in_process_group(run, args, args.device)


def run(args, ctx):
    family = "faster_rcnn_fpn" if args.use_fpn else "faster_rcnn"
    syncbn = args.syncbn or args.norm_layer == "syncbn"  # GluonCV's names: faster_rcnn_fpn_syncbn_...
    net_name = "_".join((family, *(["syncbn"] if syncbn else []), args.network, args.dataset))
    save_prefix = args.save_prefix + net_name
    batch_size = start_run(save_prefix=save_prefix, rank=ctx.rank, world_size=ctx.world_size, seed=args.seed,
                           batch_size=args.batch_size, settings=vars(args), name=logger.name,
                           accumulate=args.accumulate, num_workers=args.num_workers, threads=args.threads)
    short = parse_ints(args.short)
    short = short[0] if len(short) == 1 else tuple(short)

    train_set, val_set = build.build_datasets(args.dataset, args.data_root, args.num_samples)
    model_name, model_kwargs = build.zoo_name(family, args.network, args.dataset, val_set.classes)
    model_kwargs.update(short=short, max_size=args.max_size)
    loss = dict(label_smooth=args.label_smooth, label_smooth_eps=args.label_smooth_eps, mixup_mode=args.mixup_mode,
                rpn_smoothl1_rho=args.rpn_smoothl1_rho, rcnn_smoothl1_rho=args.rcnn_smoothl1_rho)
    custom = dict(scales=args.anchor_scales and tuple(float(x) for x in args.anchor_scales.split(",")),
                  roi_size=args.roi_size and tuple(parse_ints(args.roi_size)),
                  rpn_test_post_nms=args.rpn_test_post_nms, num_sample=args.rcnn_num_samples)
    model_kwargs.update({k: v for k, v in custom.items() if v is not None})
    if syncbn and args.use_fpn:  # MegDet's detector, GluonCV's faster_rcnn_fpn_syncbn_* network
        if model_name.endswith("_coco") and f"faster_rcnn_fpn_syncbn_{args.network}_coco" in model_zoo.list_models():
            model_name = f"faster_rcnn_fpn_syncbn_{args.network}_coco"  # by its zoo name: its weights load
        else:
            model_kwargs.update(fpn_syncbn_options(args.network))
    elif syncbn:  # trainable BatchNorm, cross-GPU across --bn-group-size processes under torchrun
        model_kwargs["norm_layer"] = nn.BatchNorm2d
    model = model_zoo.get_model(model_name, pretrained_base=args.pretrained_base or False, **model_kwargs)
    args.syncbn = syncbn
    model = common.prepare_model(args, model.configure_loss(**loss), ctx.device)
    short_min = short if isinstance(short, int) else min(short)
    inside, total = anchors_inside(model, (short_min, args.max_size))
    if not inside:  # the RPN would train on nothing: rpn losses 0 at every step
        raise ConfigError(f"no RPN anchor fits inside a {short_min}-pixel-high image (the smallest is "
                          f"{min_anchor_side(model):.0f} px; anchors crossing the border are not trained): "
                          f"the RPN would never learn. Use a larger --short or smaller --anchor-scales (e.g. 2,4,8)")
    logger.info("%d of %d RPN anchors fit inside a %dx%d image", inside, total, short_min, args.max_size)

    mixup = None
    if args.mixup:
        mixup = (build.MixupSettings(fixed=0.5) if args.mixup_mode == "gluoncv"
                 else build.MixupSettings(args.mixup_alpha, args.mixup_beta, args.mixup_fixed))
    train_loader, sampler, mixup_set = build.faster_rcnn_train_loader(
        train_set, batch_size=batch_size, short=short, max_size=args.max_size, num_workers=args.num_workers,
        seed=args.seed, rank=ctx.rank, world_size=ctx.world_size, mixup=mixup, data_aug=not args.no_data_aug)
    val_loader = build.faster_rcnn_val_loader(  # GluonCV: one image per device
        val_set, batch_size=1, short=short if isinstance(short, int) else short[-1], max_size=args.max_size,
        num_workers=args.num_workers, rank=ctx.rank, world_size=ctx.world_size)
    metric = make_metric("coco" if args.dataset == "coco" else "voc07", val_set)

    optimizer, lr_scheduler = common.optimizer_and_schedule(
        args, model, iters_per_epoch=len(sampler), first_update=0,
        **warmup_schedule(args.lr_warmup, args.lr_warmup_factor, args.warmup_epochs, args.warmup_lr))
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
