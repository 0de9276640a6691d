"""A user's mistake, typed as a user types it: one line on stderr naming what to change, exit
status 2, no traceback (scripts run as subprocesses, the way a user runs them)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(script, *args, env=None):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, **(env or {})))


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "error:" in last
    for fragment in fragments:
        assert fragment in last, last


@pytest.mark.parametrize("script, args, fragments", [
    ("train_faster_rcnn.py", ["--mixup", "--no-mixup-epochs", "20"], ["--mixup would never mix", "--epochs 20"]),
    ("train_yolo3.py", ["--no-mixup-epochs", "5"], ["has no effect without --mixup"]),
    ("train_yolo3.py", ["--gpus", "0,1"], ["torchrun --nproc_per_node 2"]),
    ("train_imagenet.py", ["--model", "mobilenet0.25", "--num-gpus", "4"], ["--num-gpus", "torchrun"]),
    ("train_imagenet.py", ["--model", "mobilenet0.25", "--mixup", "--mixup-off-epoch", "3", "--num-epochs", "3"],
     ["--mixup would never mix"]),
    ("eval_yolo3.py", ["--model", "yolo3_mobilenet0.25_custom"], ["random weights", "--pretrained"]),
    ("eval_yolo3.py", ["--model", "yolo3_mobilenet0.25_custom", "--pretrained"], ["no published weights"]),
    ("eval_yolo3.py", ["--checkpoint", "no/such/file_best.pth"], ["no/such/file_best.pth", "does not exist"]),
    ("eval_faster_rcnn.py", ["--model", "faster_rcnn_resnet50_v1b_voc"], ["random weights"]),
    ("demo.py", ["--checkpoint", "missing.pth", "--out", "x.png"], ["missing.pth"]),
    # at 128 px the C4 model's smallest anchor (87 px) fits inside no image: its RPN would never train
    ("train_faster_rcnn.py", ["--short", "128", "--max-size", "160", "-j", "0", "--save-prefix", "{tmp}/"],
     ["no RPN anchor fits inside a 128-pixel-high image", "--anchor-scales"]),
])
def test_mistakes_end_in_one_line_and_status_2(script, args, fragments, synthetic_root, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    needs_data = script.startswith(("eval", "demo", "train_faster_rcnn"))
    assert_one_line_error(run(script, *args, *(["--data-root", synthetic_root] if needs_data else [])), *fragments)


@pytest.mark.parametrize("rank", ["0", "1"])
def test_batch_that_does_not_split_over_processes_is_refused_once(rank):
    """What each of torchrun's 2 processes does with --batch-size 3: refuse before any process
    group exists, the message printed by rank 0 only (not twice on one line)."""
    proc = run("train_yolo3.py", "--batch-size", "3", env={"WORLD_SIZE": "2", "RANK": rank, "LOCAL_RANK": rank})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    if rank == "0":
        assert proc.stderr.strip().splitlines()[-1].endswith(
            "error: --batch-size 3 does not split over 2 processes (it is the global batch of one update)")
    else:
        assert proc.stderr == ""
