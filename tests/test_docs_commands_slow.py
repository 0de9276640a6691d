"""Every command shown in README.md, docs/*.md and model_zoo/README.md runs, in a small form (issue 12).

Run: ``make test-slow`` (every slow test), ``make test-docs`` (both docs tests) or
``.venv/bin/python -m pytest -m slow tests/test_docs_commands_slow.py [-k README]``.
One case per shown command (``README.md:49:train_yolo3``), in document order, run as a subprocess
from the repository root as a user types it (``python scripts/...``; ``torchrun`` as
``python -m torch.distributed.run --standalone``). A command that fails fails the test. Commands
read what earlier ones wrote (checkpoints, eval.json): select whole files with -k, not single cases.

Each command keeps its script and flags; sizes, epochs, data and outputs shrink (``small_form``;
a rule applies only where the script has the flag; "+": added when the command does not show it):

- processes: torchrun's --nproc_per_node at most 2, several nodes become one; ablation.py --nproc 1
  (its rows are the training commands run under torchrun elsewhere; in one process it skips the
  SyncBN row, as docs/ablation.md says), --seeds 1, --epochs 2;
- training: --epochs/--num-epochs 1, or 2 when the command shows --warmup-epochs, --no-mixup-epochs
  or --mixup-off-epoch (which become 1); +--max-epoch-iters 2; --batch-size 2 per process;
  +--num-samples 8; +-j 0; +--threads 1; +--save-interval 0 / +--save-frequency 0 (fewer checkpoint
  writes); --bn-group-size at most the processes; an iteration warmup (Faster R-CNN on COCO,
  --lr-warmup) becomes --lr-warmup 1 with 3 updates (--max-epoch-iters 3);
- YOLOv3: --data-shape 64, +random shapes 64-96; evaluation sizes 64, 96, 128 (as many as shown);
- Faster R-CNN: --short 128 --max-size 160 (evaluation: 128/160, 144/176 ...), +--anchor-scales 2,4,8
  (C4; the FPN keeps one scale per level), +--rcnn-num-samples 8, +--rpn-test-post-nms 8 (the C4
  head runs ResNet's last stage on every RoI: 128 RoIs an image take ~40 s an update here);
- classifiers: --input-size 32; segmentation: --base-size 64 --crop-size 48, +--test-batch-size 2;
- data: --data-root the built-in data generated for the run (``python -m gluon_bof.data.synthetic
  --out DIR --num-trainval 24 --num-test 8``), its COCO conversion (``python -m
  gluon_bof.data.convert``) for --dataset coco, 8 + 4 generated segmentation scenes for ade20k;
  GLUON_BOF_DATA / GLUON_BOF_SEG_DATA point there, so commands without --data-root use them too;
  --data-dir: the built-in data's object crops (an image folder);
- outputs (--save-prefix, --save-dir, --out, --out-dir, benchmark_zoo's --table, and the defaults
  of those that write into the repository) go under the run's temporary folder, at the path shown;
- inputs (--checkpoint, --pretrained-base, --pretrained FILE, --model(s) FILE, compare.py's
  eval.json) are read where the commands above wrote them, the path shown taken from the repository
  root: a checkpoint written elsewhere fails the test (the docs point at the wrong file). Files no
  command writes are example inputs: the newest file of that name, else the newest checkpoint of
  that kind / eval.json (--pretrained-base: dropped, random weights); images (--images, --scene,
  --patch) are built-in test images (the patch an RGBA crop of a square, --patch-class square);
- others: elephant_in_the_room.py --grid 2 --num-scenes 2 --data-shape 64; mixup_study.py: its
  --cls-args/--det-args defaults shrunk by these rules; benchmark_metrics.py +--images 50 +--repeat 1;
  benchmark_pipeline.py +--num-images 8 +--warmup 2 +--size 64; benchmark_memory.py --size 64 64
  --batch-size 1 --repeat 1; model_stats.py +--models mobilenet0.25;
- placeholders (``DIR``, ``...``, ``$VAR``) are dropped with their flag unless a rule above gives the
  flag a value; no CUDA here: ``--dtype float16`` becomes float32 (the CPU refuses float16) and
  ``--device cuda`` commands are skipped.

Commands that download (``--pretrained`` without a file, ``--use-pretrained``, scripts/datasets/*.py
without --mirror, convert_gluoncv.py without --params) run offline (HTTP(S) proxies at a closed
port, an empty GLUON_BOF_HOME) and must fail with one line ``<script>: error: ... download ...`` and
exit status 2, no traceback.

Runtime: README.md's Tests section.
"""
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from docs_commands import (ROOT, Command, capture_parser, flag_of, import_target, is_placeholder,
                           mark_placeholders, shown_commands)

pytestmark = pytest.mark.slow
COMMANDS = [c for c in shown_commands() if c.kind == "run"]
IDS = [f"{c.where}:{c.name.rsplit('.', 1)[-1]}" for c in COMMANDS]
TRAIN = {"train_yolo3", "train_faster_rcnn", "train_imagenet", "train_segmentation"}
EVALUATE = {"eval_yolo3": "yolo3_*_best.pth", "demo": "yolo3_*_best.pth", "elephant_in_the_room": "yolo3_*_best.pth",
            "benchmark_zoo": "yolo3_*_best.pth", "eval_faster_rcnn": "faster_rcnn_*_best.pth",
            "eval_segmentation": "*_best.pth"}
DATASET_SCRIPTS = {"pascal_voc", "mscoco", "ade20k"}
OFFLINE = "http://127.0.0.1:9"  # a closed port: every download fails at once
MADE_ELSEWHERE = ("runs/demo/",)  # inputs written by commands outside the docs' blocks (make demo)


class Workspace:
    """The run's temporary folder: generated data, and every file the commands write."""

    def __init__(self, root):
        from gluon_bof.data import synthetic, synthetic_segmentation
        from gluon_bof.data.classification import prepare_synthetic_classification
        from gluon_bof.data.convert import voc_to_coco

        self.root = root
        data = os.path.join(root, "data")
        self.synthetic = synthetic.generate(os.path.join(data, "synthetic"), num_trainval=24, num_test=8, seed=1)
        self.coco = voc_to_coco(self.synthetic, os.path.join(data, "synthetic_coco"))
        self.crops = prepare_synthetic_classification(os.path.join(data, "crops"), self.synthetic)
        home = os.path.join(root, "home")
        self.seg = synthetic_segmentation.generate(os.path.join(home, "datasets", "synthetic_seg"), 8, 4)
        self.env = dict(os.environ, GLUON_BOF_DATA=self.synthetic, GLUON_BOF_SEG_DATA=self.seg, GLUON_BOF_HOME=home,
                        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", http_proxy=OFFLINE,
                        https_proxy=OFFLINE, HTTP_PROXY=OFFLINE, HTTPS_PROXY=OFFLINE, no_proxy="", NO_PROXY="")

    def out(self, shown: str) -> str:
        """Where a path shown in the docs (relative to the repository root) is in this run."""
        clean = re.sub(r"\$\{?(\w+)\}?", lambda m: m.group(1).lower(), shown.lstrip("\0")).replace("__PH__", "x")
        path = os.path.join(self.root, "out", clean.lstrip("~/"))
        return path + "/" if (shown.endswith("/") or not clean) and not path.endswith("/") else path

    def newest(self, pattern: str):
        found = glob.glob(os.path.join(self.root, "out", "**", pattern), recursive=True)
        return max(found, key=os.path.getmtime) if found else None

    def find(self, shown: str, fallback: str = None):
        """The input file a shown path names (see the module docstring), or None."""
        path = self.out(shown)
        if os.path.isfile(path):
            return path
        other = self.newest(os.path.basename(path))
        if other and path.endswith(".pth") and not shown.lstrip("\0").startswith(MADE_ELSEWHERE):
            pytest.fail(f"{shown}: the commands above write it at {os.path.relpath(other, self.out(''))}, "
                        f"not at {shown} (paths from the repository root)")
        return other or (self.newest(fallback) if fallback else None)

    def copy(self, path: str) -> str:
        """A copy of a repository file that a command would write to (benchmark_zoo's --table)."""
        os.makedirs(self.out(""), exist_ok=True)
        return shutil.copy(path, self.out(os.path.basename(path)))

    def image(self, name: str) -> str:
        """A built-in test image saved as ``name``; a .png is a patch: an RGBA crop of a square."""
        import cv2
        import numpy as np
        from gluon_bof.data import VOCDetection

        path = os.path.join(self.root, "inputs", os.path.basename(name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        test = VOCDetection(self.synthetic, splits=((2007, "test"),))
        if name.endswith(".png"):
            square = test.classes.index("square")
            img, box = next((img, row) for img, label in (test[i] for i in range(len(test)))
                            for row in label if int(row[4]) == square)
            x0, y0, x1, y1 = (int(round(float(c))) for c in box[:4])
            cv2.imwrite(path, cv2.cvtColor(np.ascontiguousarray(img[y0:y1, x0:x1, ::-1]), cv2.COLOR_BGR2BGRA))
        else:
            img, _ = test[len(os.listdir(os.path.dirname(path))) % len(test)]
            cv2.imwrite(path, np.ascontiguousarray(img[:, :, ::-1]))
        return path


def _items(parser, args):
    """``[[flag or None, values...]]``: the arguments grouped by the flag they belong to."""
    items = []
    for a in args:
        flag = None if is_placeholder(a) else flag_of(a)
        if flag:
            items.append([flag] + ([a.split("=", 1)[1]] if "=" in a else []))
            continue
        action = parser._option_string_actions.get(items[-1][0]) if items and items[-1][0] else None
        room = {None: 1, "?": 1, "+": 99, "*": 99}.get(action.nargs, action.nargs) if action else 0
        if items and items[-1][0] and len(items[-1]) - 1 < room:
            items[-1].append(a)
        else:
            items.append([None, a])
    return items


def small_form(cmd, parser, ws: Workspace, nested=None):
    """``(arguments, expectation)`` of a shown command in its small form; expectation "ok", or
    "offline" for a command that downloads. ``nested``: ``(processes, epochs set by the caller)``
    when the arguments are an option string another script passes to a training script."""
    name = cmd.name.rsplit(".", 1)[-1]
    procs = nested[0] if nested else min(cmd.nproc or 1, 2)
    items = _items(parser, cmd.args)
    shown = {it[0]: it[1:] for it in items if it[0]}
    has = parser._option_string_actions
    dataset = (shown.get("--dataset") or [getattr(has.get("--dataset"), "default", "voc")])[0]
    data = {"coco": ws.coco, "ade20k": ws.seg}.get(dataset, ws.synthetic)
    # S: flag -> its values in the small form, or a function of the values shown (None: drop the
    # flag); A: flags added where the command does not show them
    S = {"-j": ["0"], "--num-workers": ["0"], "--workers": ["0"], "--data-root": [data], "--data-dir": [ws.crops],
         "--dtype": lambda v: None if v == ["float16"] and not _cuda() else v,
         "--resume": lambda v: [p] if (p := ws.find(v[0])) else None}
    A = {"-j": ["0"], "--threads": ["1"]}
    if dataset != "voc" and "--data-root" in has:
        A["--data-root"] = [data]
    if name in TRAIN:
        iter_warmup = name == "train_faster_rcnn" and (dataset == "coco" or "--lr-warmup" in shown)
        epochs = "2" if any(f in shown for f in ("--warmup-epochs", "--no-mixup-epochs", "--mixup-off-epoch")) else "1"
        iters = 3 if iter_warmup else 2
        size = {"--batch-size": [str(2 * procs)], "--num-samples": [str(max(8, 2 * procs * iters))],
                "--max-epoch-iters": [str(iters)], "--data-shape": ["64"], "--random-shape-min": ["64"],
                "--random-shape-max": ["96"], "--short": ["128"], "--max-size": ["160"], "--input-size": ["32"],
                "--base-size": ["64"], "--crop-size": ["48"]}
        if not (nested and nested[1]):
            size.update({"--epochs": [epochs], "--num-epochs": [epochs]})
        S.update(size, **{"--warmup-epochs": ["1"], "--no-mixup-epochs": ["1"], "--mixup-off-epoch": ["1"],
                          "--lr-warmup": ["1"], "--bn-group-size": lambda v: [str(min(int(v[0]), procs))],
                          "--pretrained-base": lambda v: v if v[0] == "gluoncv" else
                          [p] if (p := ws.find(v[0])) else None})
        A.update(size, **{"--save-interval": ["0"], "--save-frequency": ["0"], "--rcnn-num-samples": ["8"],
                          "--rpn-test-post-nms": ["8"], "--test-batch-size": ["2"]})
        if iter_warmup:
            A["--lr-warmup"] = ["1"]
        if name == "train_faster_rcnn" and "--use-fpn" not in shown:
            A["--anchor-scales"] = ["2,4,8"]
        if not nested:
            out = "--save-prefix" if "--save-prefix" in has and name != "train_imagenet" else "--save-dir"
            default = has[out].default
            if default is None:  # train_segmentation: runs/<dataset>/<model>/<backbone>/
                default = "runs/" + "/".join((shown.get(f) or [has[f].default])[0]
                                             for f in ("--dataset", "--model", "--backbone")) + "/"
            S[out], A[out] = (lambda v: [ws.out(v[0])]), [ws.out(default)]
    else:
        S["--data-shape"] = lambda v: [str(x) for x in (64, 96, 128)[:len(v) or 1]]
        S["--short"] = lambda v: [str(128 + 16 * i) for i in range(len(v) or 1)]
        S["--max-size"] = lambda v: [str(160 + 16 * i) for i in range(len(v) or 1)]
        for flag in ("--out", "--out-dir", "--save-dir"):
            S[flag] = lambda v: [ws.out(v[0])]
        if "--out" in has and has["--out"].default and not os.path.isabs(str(has["--out"].default)):
            A["--out"] = [ws.out(has["--out"].default)]
    if name in EVALUATE:
        kind = EVALUATE[name]
        S["--checkpoint"] = lambda v: [ws.find(v[0], kind) or v[0]]
        for flag in ("--model", "--models", "--weights"):
            S[flag] = lambda v: [ws.find(x, kind) or x if x.endswith(".pth") else x for x in v]
        S["--pretrained"] = lambda v: [ws.find(v[0]) or v[0]] if v else []
    if name == "benchmark_zoo":
        A["--table"] = [ws.copy(has["--table"].default)]  # the zoo table, not written in place
        if all(map(is_placeholder, shown.get("--models", ["x"]))):
            S["--models"] = ["yolo3_mobilenet1.0_voc"]  # a model GluonCV publishes weights of
    if name == "demo":
        S["--images"] = lambda v: [ws.image(x) for x in v]
    if name == "elephant_in_the_room":
        S.update({"--scene": lambda v: [ws.image(v[0])], "--patch": lambda v: [ws.image(v[0])],
                  "--patch-class": ["square"], "--grid": ["2"], "--num-scenes": ["2"], "--data-shape": ["64"]})
    if name in DATASET_SCRIPTS:
        S.update({"--root": lambda v: [ws.out(v[0])], "--download-dir": lambda v: [ws.out(v[0])]})
    if name == "synthetic":
        A.update({"--num-trainval": ["24"], "--num-test": ["8"]})
    if name == "synthetic_segmentation":
        A.update({"--num-train": ["8"], "--num-val": ["4"]})
    if name == "convert":
        S["--voc-root"] = [ws.synthetic]
    if name == "convert_gluoncv":
        A["--out"] = [ws.out("converted/")]
    if name == "benchmark_metrics":
        A.update({"--images": ["50"], "--repeat": ["1"]})
    if name == "benchmark_pipeline":
        A.update({"--num-images": ["8"], "--warmup": ["2"], "--size": ["64"], "--data-root": [ws.synthetic]})
    if name == "benchmark_memory":
        S.update({"--size": ["64", "64"], "--batch-size": ["1"], "--repeat": ["1"]})
        A.update({"--size": ["64", "64"], "--batch-size": ["1"]})
        if shown.get("--device") == ["cuda"] and not _cuda():
            pytest.skip("needs CUDA (--device cuda); none here")
    if name == "model_stats":
        A["--models"] = ["mobilenet0.25"]
    if name == "ablation":
        detector = (shown.get("--detector") or ["yolo3"])[0]
        S.update({"--seeds": ["1"], "--nproc": ["1"], "--epochs": ["2"], "--warmup-epochs": ["1"],
                  "--base-args": lambda v: [_nested(ws, v[0], detector, 1, epochs_set=True)]})
        A.update({"--seeds": ["1"], "--epochs": ["2"], "--base-args": [_nested(ws, "", detector, 1, True)]})
    if name == "mixup_study":
        study = import_target("scripts/mixup_study.py")
        S.update({"--cls-args": lambda v: [_nested(ws, v[0], "imagenet", 1)],
                  "--det-args": lambda v: [_nested(ws, v[0], "yolo3", 1)]})
        A.update({"--cls-args": [_nested(ws, study.CLS_SMALL, "imagenet", 1)],
                  "--det-args": [_nested(ws, study.DET_SMALL, "yolo3", 1)],
                  "--cls-mixup-args": ["--mixup --mixup-off-epoch 1"],
                  "--det-mixup-args": ["--mixup --no-mixup-epochs 1"]})
    downloads = (name in DATASET_SCRIPTS and "--mirror" not in shown
                 or name == "convert_gluoncv" and "--params" not in shown
                 or name in EVALUATE and shown.get("--pretrained") == []
                 or "--use-pretrained" in shown or shown.get("--pretrained-base") == ["gluoncv"]
                 or name == "train_segmentation" and "--pretrained" in shown)
    argv = []
    for flag, *values in items:
        if flag is None:  # a positional argument (compare.py's eval.json files, a zoo name)
            argv += [ws.find(v, "eval.json") or v if name == "compare" else v for v in values if not is_placeholder(v)]
            continue
        rule = S.get(flag, values)
        new = rule(values) if callable(rule) else rule
        if new is not None and not any(map(is_placeholder, new)):
            argv += [flag, *new]
    given = {has.get(f) for f in shown}
    for flag, values in A.items():
        if flag in has and has[flag] not in given:
            argv += [flag, *values]
            given.add(has[flag])
    return argv, "offline" if downloads else "ok"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _nested(ws, text, trainer, procs, epochs_set=False):
    """An option string another script passes to a training script, in its small form."""
    target = {"frcnn": "scripts/train_faster_rcnn.py", "yolo3": "scripts/train_yolo3.py",
              "imagenet": "scripts/train_imagenet.py"}[trainer]
    inner = Command("", text, target, mark_placeholders(shlex.split(text)))
    return shlex.join(small_form(inner, _parser(target), ws, nested=(procs, epochs_set))[0])


_PARSERS = {}


def _parser(target):
    if target not in _PARSERS:
        with pytest.MonkeyPatch.context() as mp:
            _PARSERS[target] = capture_parser(target, mp)
    return _PARSERS[target]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return Workspace(str(tmp_path_factory.mktemp("docs_commands")))


@pytest.mark.parametrize("cmd", COMMANDS, ids=IDS)
def test_shown_command_runs(cmd, ws):
    args, expect = small_form(cmd, _parser(cmd.target), ws)
    py = sys.executable
    if cmd.target.startswith("gluon_bof"):
        argv = [py, "-m", cmd.target, *args]
    elif cmd.nproc:
        argv = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(min(cmd.nproc, 2)),
                cmd.target, *args]
    else:
        argv = [py, cmd.target, *args]
    print(f"{cmd.where}: {cmd.text}\nsmall form: {shlex.join(argv)}")
    tic = time.time()
    proc = subprocess.run(argv, cwd=ROOT, env=dict(ws.env, **cmd.env), capture_output=True, text=True, timeout=900)
    print(f"{time.time() - tic:.1f} s, exit status {proc.returncode}")
    output = proc.stdout + proc.stderr
    if expect == "offline":
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        print(last)
        assert proc.returncode == 2 and "Traceback" not in output and re.match(r"\S+: error: .*download", last), \
            f"{cmd.where}: offline, a download should end in one line and exit status 2:\n{output[-3000:]}"
        return
    assert proc.returncode == 0, f"{cmd.where}: {cmd.text}\nsmall form failed:\n{output[-4000:]}"
