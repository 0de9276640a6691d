"""scripts/train_yolo3.py under torchrun (2 gloo processes on CPU) and with gradient accumulation.

torchrun is launched as ``python -m torch.distributed.run --nproc_per_node 2 --master-port P``
in a subprocess with OMP_NUM_THREADS=1.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

import train_yolo3
from gluon_bof.utils.checkpoint import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAME = "yolo3_mobilenet0.25_voc"
# 16 images, global batch 4: 2 processes x 2 images, 4 updates per epoch
TINY = ["--network", "mobilenet0.25", "--head-channels", "16,8,8", "--batch-size", "4", "-j", "0",
        "--random-shape-min", "64", "--random-shape-max", "96", "--data-shape", "64", "--lr", "0.01",
        "--lr-mode", "cosine", "--mixup", "--no-mixup-epochs", "1", "--label-smooth",
        "--log-interval", "1", "--num-samples", "16", "--save-interval", "0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(root, prefix, *extra, wait=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master-port",
           str(_free_port()), os.path.join(ROOT, "scripts", "train_yolo3.py"), *TINY, "--data-root", root,
           "--save-prefix", prefix, *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def test_two_processes_only_rank0_writes_and_logs_once(synthetic_root, tmp_path):
    _torchrun(synthetic_root, str(tmp_path) + "/", "--epochs", "1", "--no-mixup-epochs", "0", "--lr-base-batch", "2",
              "--accumulate", "2", "--grad-checkpoint")
    prefix = str(tmp_path / NAME)
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(prefix) + s for s in (
        "_train.log", "_lr.png", "_last.pth", "_last.json", "_best.pth", "_best.json", "_best_map.log",
        "_history.json", "_history.png"))
    log = open(prefix + "_train.log").read()
    assert log.count("arguments:") == 1 and log.count("[epoch 0] validation") == 1
    assert log.count("[epoch 0][batch 1/4]") == 1  # one process logs; 16 images / 4 per update
    assert "learning rate 0.02 for batch 4 (--lr 0.01 x batch 4 / --lr-base-batch 2" in log
    assert "batch 4 per update = 2 processes x 2 micro-batches x 1 images" in log
    state = load_checkpoint(prefix + "_last.pth")
    assert (state["epoch"], state["epoch_iter"]) == (1, 0)
    assert state["lr_scheduler"]["schedule"]["base_lr"] == pytest.approx(0.02)
    assert state["lr_scheduler"]["num_update"] == 4
    assert len(json.load(open(prefix + "_history.json"))) == 1


@pytest.mark.slow
def test_sigterm_under_torchrun_then_resume_equals_uninterrupted_run(synthetic_root, tmp_path):
    args = ("--epochs", "2", "--warmup-epochs", "1", "--checkpoint-iters", "1")
    _torchrun(synthetic_root, str(tmp_path / "full") + "/", *args)
    full = load_checkpoint(str(tmp_path / "full" / f"{NAME}_last.pth"))
    assert (full["epoch"], full["epoch_iter"]) == (2, 0)

    part = tmp_path / "part"
    ckpt = part / f"{NAME}_last.pth"
    proc = _torchrun(synthetic_root, str(part) + "/", *args, wait=False)
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)  # the first update's checkpoint: fit's signal handler is installed
    proc.send_signal(signal.SIGTERM)  # torchrun passes it to both workers (as a scheduler would)
    out, _ = proc.communicate(timeout=120)
    stopped = load_checkpoint(str(ckpt))
    assert (stopped["epoch"], stopped["epoch_iter"]) < (2, 0), "the run finished before the signal"
    assert "stopped at epoch" in out

    _torchrun(synthetic_root, str(part) + "/", *args, "--resume", str(ckpt))
    resumed = load_checkpoint(str(ckpt))
    assert (resumed["epoch"], resumed["epoch_iter"]) == (2, 0)
    for k, v in full["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert resumed["lr_scheduler"] == full["lr_scheduler"]
    m_full, m_res = full["optimizer"]["state"], resumed["optimizer"]["state"]
    assert all(torch.equal(m_full[i]["momentum_buffer"], m_res[i]["momentum_buffer"]) for i in m_full)


def test_accumulating_run_stopped_and_resumed_equals_uninterrupted_run(synthetic_root, tmp_path,
                                                                       stop_resume_and_compare):
    # one process, batch 4 as 2 micro-batches of 2: checkpoints fall on update boundaries
    def run(prefix, *extra):
        return train_yolo3.main(TINY + ["--epochs", "2", "--warmup-epochs", "1", "--accumulate", "2",
                                        "--log-interval", "0", "--data-root", synthetic_root,
                                        "--save-prefix", prefix, *extra])

    run(str(tmp_path / "full") + "/")
    full = load_checkpoint(str(tmp_path / "full" / f"{NAME}_last.pth"))
    assert full["lr_scheduler"]["num_update"] == 8  # 2 epochs x 16 / 4: one schedule step per update
    stop_resume_and_compare(run, str(tmp_path / "part") + "/", f"{NAME}_last.pth", full)


@pytest.mark.slow
def test_syncbn_trains_on_cpu_under_torchrun(synthetic_root, tmp_path):
    # --syncbn over gloo (torch's SyncBatchNorm could only train on CUDA): 2 updates, every
    # BatchNorm a cross-process one that updated its statistics twice
    _torchrun(synthetic_root, str(tmp_path) + "/", "--epochs", "1", "--no-mixup-epochs", "0", "--max-epoch-iters", "2",
              "--syncbn")
    model = load_checkpoint(str(tmp_path / f"{NAME}_last.pth"))["model"]
    tracked = {k: int(v) for k, v in model.items() if k.endswith("num_batches_tracked")}
    assert len(tracked) > 40 and set(tracked.values()) == {2}
    assert all(torch.isfinite(v).all() for k, v in model.items() if "running" in k)
