"""Every training command in gluon_bof/model_zoo/zoo.csv parses with the current scripts' flags."""
import shlex

import pytest

import train_faster_rcnn
import train_imagenet
import train_segmentation
import train_yolo3
from gluon_bof.model_zoo import zoo_table

SCRIPTS = {"scripts/train_yolo3.py": train_yolo3, "scripts/train_faster_rcnn.py": train_faster_rcnn,
           "scripts/train_imagenet.py": train_imagenet, "scripts/train_segmentation.py": train_segmentation}
ROWS = [r for r in zoo_table.read_table() if r["command"]]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['name']}@{r['gluoncv_metric']}" for r in ROWS])
def test_zoo_command_parses(row):
    argv = shlex.split(row["command"])
    script = next(a for a in argv if a.endswith(".py"))
    args = SCRIPTS[script].parse_args(argv[argv.index(script) + 1:])
    if script == "scripts/train_imagenet.py":  # the Bag of Tricks recipe, for this very model
        assert args.model == row["name"] and args.label_smoothing and args.no_wd and args.lr_mode == "cosine"
        assert args.lr * args.batch_size / args.lr_base_batch == pytest.approx(0.1 * args.batch_size / 256)
        return
    if script == "scripts/train_segmentation.py":  # GluonCV's FCN recipe for this very model (Table 9's)
        assert f"fcn_{args.backbone}_ade" == row["name"] and args.aux and args.dataset == "ade20k"
        assert args.lr == 0.01 and args.epochs == 120 and args.batch_size == 16
        return
    assert args.mixup and args.label_smooth  # the Bag of Freebies recipe
    assert row["name"].startswith("yolo3") == (script == "scripts/train_yolo3.py")


def test_every_row_has_a_command():
    """All but the segmentation models of data gluon-bof does not read (FCN on VOC and COCO:
    train_segmentation.py reads ADE20K only)."""
    rows = zoo_table.read_table()
    assert rows and all(r["command"] or (r["name"].startswith("fcn_") and not r["name"].endswith("_ade"))
                        for r in rows)
