"""scripts/ablation.py: the incremental flag sets, the table arithmetic and --resume-rows."""
import json
import math
import os
import shlex

import pytest

import ablation

MANAGED = {"--no-data-aug", "--no-random-shape", "--syncbn", "--label-smooth", "--mixup"}


def dry_run(capsys, *extra):
    ablation.main(["--dry-run", "--seeds", "2", "--epochs", "7", "--out", "OUT", "--base-args", "--network x", *extra])
    lines = capsys.readouterr().out.splitlines()
    commands = [shlex.split(line) for line in lines if not line.startswith("[")]
    return lines, commands


def row_flags(cmd):
    """(row directory, seed, the row's switch flags) of one dry-run command."""
    i = cmd.index("--network")
    assert cmd[i + 1] == "x"  # --base-args pass through first
    flags = cmd[i + 2:cmd.index("--epochs")]
    assert cmd[cmd.index("--epochs") + 1] == "7"
    save = cmd[cmd.index("--save-prefix") + 1]
    return save.split(os.sep)[1], int(cmd[cmd.index("--seed") + 1]), flags


COSINE = ["--lr-mode", "cosine", "--warmup-epochs", "1"]


def test_dry_run_yolo3_one_process(capsys):
    lines, commands = dry_run(capsys)
    assert any("[+ SyncBN] n/a (1 process)" in line for line in lines)
    got = [row_flags(c) for c in commands]
    expected_rows = [("no_data_aug", ["--no-data-aug", "--no-random-shape"]), ("baseline", ["--no-random-shape"]),
                     ("random_shapes", []), ("cosine", COSINE), ("label_smoothing", COSINE + ["--label-smooth"]),
                     ("mixup", COSINE + ["--label-smooth", "--mixup"])]
    assert got == [(row, seed, flags) for row, flags in expected_rows for seed in (1, 2)]
    assert all(c[1].endswith("scripts/train_yolo3.py") for c in commands)


def test_dry_run_yolo3_torchrun_has_syncbn_row(capsys):
    _, commands = dry_run(capsys, "--nproc", "4", "--warmup-epochs", "3", "--seeds", "1")
    assert all(c[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "4"] for c in commands)
    cosine = ["--lr-mode", "cosine", "--warmup-epochs", "3"]
    assert [(r, set(f)) for r, _, f in map(row_flags, commands)] == [
        ("no_data_aug", {"--no-data-aug", "--no-random-shape"}), ("baseline", {"--no-random-shape"}),
        ("syncbn", {"--no-random-shape", "--syncbn"}), ("random_shapes", {"--syncbn"}),
        ("cosine", {"--syncbn", *cosine}), ("label_smoothing", {"--syncbn", *cosine, "--label-smooth"}),
        ("mixup", {"--syncbn", *cosine, "--label-smooth", "--mixup"})]


def test_dry_run_frcnn_rows_and_base_arg_clash(capsys):
    _, commands = dry_run(capsys, "--detector", "frcnn", "--seeds", "1")
    assert [row_flags(c)[::2] for c in commands] == [
        ("no_data_aug", ["--no-data-aug"]), ("baseline", []), ("cosine", COSINE),
        ("label_smoothing", COSINE + ["--label-smooth"]), ("mixup", COSINE + ["--label-smooth", "--mixup"])]
    assert all(c[1].endswith("scripts/train_faster_rcnn.py") for c in commands)
    with pytest.raises(SystemExit, match="--mixup"):
        ablation.main(["--dry-run", "--base-args", "--network x --mixup"])


def test_table_arithmetic_on_hand_numbers():
    rows = [("- data augmentation", [0.50, 0.52]), ("baseline", [0.60, 0.62]), ("+ SyncBN", None),
            ("+ random shapes", [0.70, 0.66]), ("+ cosine", [0.69, 0.69])]
    pooled, stats = ablation.summarize(rows, noise_factor=2.0)
    # seed variances .0002, .0002, .0008, 0 -> pooled std sqrt(.0003)
    assert pooled == pytest.approx(math.sqrt(0.0003))
    noaug, base, sync, shapes, cosine = stats
    assert sync["values"] is None
    assert (noaug["mean"], noaug["std"], noaug["delta"]) == (pytest.approx(0.51), pytest.approx(math.sqrt(2e-4)), None)
    assert noaug["cumulative"] == pytest.approx(-0.10) and noaug["beyond_noise"] is None
    assert base["delta"] == pytest.approx(0.10) and base["cumulative"] is None and base["beyond_noise"]
    # the n/a row is skipped: + random shapes compares with the baseline
    assert (shapes["min"], shapes["max"], shapes["std"]) == (0.66, 0.70, pytest.approx(math.sqrt(8e-4)))
    assert shapes["delta"] == pytest.approx(0.07) and shapes["beyond_noise"]  # .07 > 2 x .0173
    assert cosine["delta"] == pytest.approx(0.01) and not cosine["beyond_noise"]
    assert cosine["cumulative"] == pytest.approx(0.08)
    pooled, stats = ablation.summarize([("baseline", [0.5]), ("+ mixup", [0.6])])
    assert math.isnan(pooled) and stats[1]["beyond_noise"] is None and math.isnan(stats[1]["std"])
    assert "n/a (1 process)" in ablation.markdown(ablation.summarize(rows)[1], pooled, 2.0, {})


def test_resume_rows_runs_only_missing_seed(tmp_path, monkeypatch, capsys):
    out = tmp_path / "abl"
    kept = {"no_data_aug": 0.3, "baseline": 0.4, "random_shapes": 0.45, "cosine": 0.5, "label_smoothing": 0.52,
            "mixup": 0.55}
    for row, value in kept.items():
        for seed in (1, 2):
            if (row, seed) == ("mixup", 2):
                continue
            os.makedirs(out / row / f"seed{seed}")
            json.dump({"mAP": value + 0.01 * seed}, open(out / row / f"seed{seed}" / "result.json", "w"))
    calls = []

    def fake_call(cmd, **kwargs):  # a training run: writes the history JSON fit writes
        calls.append(cmd)
        save = cmd[cmd.index("--save-prefix") + 1]
        json.dump([{"epoch": 0, "val": {"mAP": 0.2}}, {"epoch": 1, "val": {"mAP": 0.6}}, {"epoch": 2}],
                  open(os.path.join(save, "yolo3_x_voc_history.json"), "w"))
        return 0

    monkeypatch.setattr(ablation.subprocess, "call", fake_call)
    stats = ablation.main(["--seeds", "2", "--resume-rows", "--out", str(out)])
    assert len(calls) == 1 and "mixup/seed2" in calls[0][calls[0].index("--save-prefix") + 1]
    assert stats[-1]["values"] == [pytest.approx(0.56), 0.6]  # kept seed 1, best mAP of the new run
    assert stats[0]["values"] == [pytest.approx(0.31), pytest.approx(0.32)]
    assert json.load(open(out / "mixup" / "seed2" / "result.json"))["mAP"] == 0.6
    saved = json.load(open(out / "ablation.json"))
    assert [r["row"] for r in saved["rows"]][2] == "+ SyncBN" and saved["rows"][2]["values"] is None
    assert "| + mixup |" in open(out / "ablation.md").read() and os.path.getsize(out / "ablation.png") > 1000
    assert ablation.read_score(str(out / "mixup" / "seed2"), "last") == 0.6


@pytest.mark.slow
def test_end_to_end_tiny_runs(synthetic_root, tmp_path):
    base = (f"--network mobilenet0.25 --head-channels 16,8,8 --batch-size 4 -j 0 --data-shape 64 "
            f"--random-shape-min 64 --random-shape-max 96 --max-epoch-iters 2 --save-interval 0 "
            f"--log-interval 0 --no-mixup-epochs 0 --data-root {synthetic_root}")
    stats = ablation.main(["--seeds", "2", "--epochs", "2",  # cosine: 2 iterations after 1 warmup epoch
                           "--out", str(tmp_path), "--base-args", base])
    assert len(stats) == 7 and all(s["values"] is None or len(s["values"]) == 2 for s in stats)
    assert os.path.isfile(tmp_path / "ablation.md") and os.path.isfile(tmp_path / "baseline" / "seed2" / "result.json")


def test_dry_run_checks_every_row_changes_what_it_claims(capsys):
    """Each row's command goes through its training script's parser: the '+ mixup' row must turn
    mixup on for some epochs (Faster R-CNN's 20-epoch VOC schedule: the last 2 without it)."""
    ablation.main(["--dry-run", "--detector", "frcnn", "--seeds", "1"])
    out = capsys.readouterr().out
    assert "[+ mixup] changes: mixup False -> True, no_mixup_epochs None -> 2" in out
    assert "[+ label smoothing] changes: label_smooth False -> True" in out


def test_a_row_that_would_not_mix_is_refused(capsys):
    # GluonCV's trap: --no-mixup-epochs 20 with 20 epochs never mixes; the table would show no effect
    with pytest.raises(SystemExit, match="row '[+] mixup': --mixup would never mix"):
        ablation.main(["--dry-run", "--detector", "frcnn", "--seeds", "1", "--base-args", "--no-mixup-epochs 20"])
    # and --no-mixup-epochs in --base-args reaches only the mixup row
    ablation.main(["--dry-run", "--detector", "frcnn", "--seeds", "1", "--base-args", "--no-mixup-epochs 5"])
    commands = [line for line in capsys.readouterr().out.splitlines() if line.endswith(os.sep)]
    assert [("--no-mixup-epochs" in c) for c in commands] == [False, False, False, False, True]


def test_rows_that_resolve_to_the_same_settings_are_refused(monkeypatch):
    same = [("baseline", []), ("+ nothing", [])]
    with pytest.raises(SystemExit, match="'[+] nothing' resolves to the same settings"):
        ablation.check_rows("yolo3", same)
