"""Every training command in model_zoo/zoo.csv parses with the current scripts' flags."""
import shlex

import pytest

import train_faster_rcnn
import train_yolo3
from gluon_bof.model_zoo import zoo_table

SCRIPTS = {"scripts/train_yolo3.py": train_yolo3, "scripts/train_faster_rcnn.py": train_faster_rcnn}
ROWS = [r for r in zoo_table.read_table() if r["command"]]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['name']}@{r['gluoncv_metric']}" for r in ROWS])
def test_zoo_command_parses(row):
    argv = shlex.split(row["command"])
    script = next(a for a in argv if a.endswith(".py"))
    args = SCRIPTS[script].parse_args(argv[argv.index(script) + 1:])
    assert args.mixup and args.label_smooth  # the Bag of Freebies recipe
    assert row["name"].startswith("yolo3") == (script == "scripts/train_yolo3.py")


def test_detection_rows_have_commands():
    detectors = [r for r in zoo_table.read_table() if r["name"].startswith(("yolo3", "faster_rcnn"))]
    assert detectors and all(r["command"] for r in detectors)
