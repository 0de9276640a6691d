#!/usr/bin/env python
"""The paper's incremental trick tables (Bag of Freebies, Table 3 for YOLOv3, Table 4 for Faster R-CNN)
as a series of training runs, several seeds per row, each row adding one freebie to the row above.

    python scripts/ablation.py --detector yolo3 --seeds 3 --epochs 200 --out runs/ablation_yolo3 \
        --base-args "--network darknet53 --dataset voc --data-root ~/VOCdevkit --batch-size 64"
    python scripts/ablation.py ... --dry-run         # print the commands only
    python scripts/ablation.py ... --resume-rows     # keep finished runs, run the rest

Rows (``rows_for``) and the flags each adds:
  YOLOv3 (Table 3): - data augmentation (--no-data-aug), baseline, + SyncBN (--syncbn), + random
      shapes (drops --no-random-shape), + cosine (--lr-mode cosine --warmup-epochs W), + label
      smoothing (--label-smooth), + mixup (--mixup).
  Faster R-CNN (Table 4): - data augmentation, baseline, + cosine, + label smoothing, + mixup
      (the paper's Table 4 has no SyncBN or random-shape row).
SyncBN needs several processes: with --nproc 1 its row is "n/a (1 process)" and the rows below it
run without --syncbn, unless --syncbn-row forces it (a no-op with a warning in one process).
``--no-mixup-epochs`` in --base-args goes to the mixup row only (the scripts refuse it without --mixup).

Before anything runs (and in --dry-run), every row's command is parsed by its training script and
the resolved settings compared with the row above: a row whose settings do not differ, or whose
trick would not act (mixup on in no epoch), is an error, so no table row claims a change it lacks.

Each run is a subprocess (``python -m torch.distributed.run --nproc_per_node N`` for --nproc N > 1)
writing under ``OUT/<row>/seed<S>/``; its score is the best validation mAP of the training script's
``*_history.json`` (``--score last``: the last validation), kept in ``result.json`` beside it
(with the run's wall seconds; ``ablation.json``'s ``run_seconds`` sums them, kept runs included).
Writes ``OUT/ablation.json``, ``OUT/ablation.md`` (the table) and ``OUT/ablation.png`` (mean mAP
per row, std as error bars, each seed a dot). A delta counts as beyond noise when
``|delta| > --noise-factor (2) x the pooled std`` (the root mean of the per-row seed variances).
"""
import argparse
import glob
import json
import math
import os
import shlex
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from gluon_bof.utils.cli import HelpFormatter, run_script  # noqa: E402

SCRIPTS = {"yolo3": "scripts/train_yolo3.py", "frcnn": "scripts/train_faster_rcnn.py"}
# flags the rows switch: --base-args must not set them
MANAGED = ("--no-data-aug", "--no-random-shape", "--syncbn", "--lr-mode", "--label-smooth", "--mixup")


def rows_for(detector: str, *, warmup_epochs: int = 1, syncbn: bool = False):
    """``[(row name, cumulative flags or None for a row that is not run)]`` in table order."""
    cosine = ["--lr-mode", "cosine", "--warmup-epochs", str(warmup_epochs)]
    if detector == "frcnn":
        return [("- data augmentation", ["--no-data-aug"]), ("baseline", []), ("+ cosine", cosine),
                ("+ label smoothing", cosine + ["--label-smooth"]),
                ("+ mixup", cosine + ["--label-smooth", "--mixup"])]
    if detector != "yolo3":
        raise ValueError(f"unknown detector {detector!r} (yolo3 or frcnn)")
    sync = ["--syncbn"] if syncbn else []
    return [("- data augmentation", ["--no-data-aug", "--no-random-shape"]),
            ("baseline", ["--no-random-shape"]),
            ("+ SyncBN", ["--no-random-shape", "--syncbn"] if syncbn else None),
            ("+ random shapes", sync),
            ("+ cosine", sync + cosine),
            ("+ label smoothing", sync + cosine + ["--label-smooth"]),
            ("+ mixup", sync + cosine + ["--label-smooth", "--mixup"])]


def _row_args(flags, base_args):
    """``base_args`` for a row: ``--no-mixup-epochs N`` only where the row mixes."""
    if "--mixup" in flags:
        return list(base_args)
    out, skip = [], False
    for t in base_args:
        if skip:
            skip = False
        elif t == "--no-mixup-epochs":
            skip = True
        elif not t.startswith("--no-mixup-epochs="):
            out.append(t)
    return out


def effective_settings(detector: str, argv) -> dict:
    """The training script's resolved settings for ``argv`` (its own parser and checks); a
    ``SystemExit`` with the script's error message if it refuses them."""
    import contextlib
    import importlib
    import io

    sys.path.insert(0, os.path.join(REPO, "scripts"))
    module = importlib.import_module(os.path.splitext(os.path.basename(SCRIPTS[detector]))[0])
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = module.parse_args(list(argv))
    except SystemExit:
        last = (err.getvalue().strip().splitlines() or ["refused"])[-1]
        raise SystemExit(last.split("error: ", 1)[-1]) from None
    settings = vars(args)
    for key in ("seed", "save_prefix"):
        settings.pop(key, None)
    return settings


def check_rows(detector: str, rows, base_args=(), epochs=None):
    """``[(row, {setting: (before, after)})]``: what each run row changes against the row above,
    from the settings its training script resolves. Raises SystemExit when a row changes nothing
    or its mixup would be on in no epoch."""
    extra = ["--epochs", str(epochs)] if epochs else []
    out, prev = [], None
    for name, flags in rows:
        if flags is None:
            continue
        try:
            now = effective_settings(detector, [*_row_args(flags, base_args), *flags, *extra])
        except SystemExit as e:
            raise SystemExit(f"row '{name}': {e.code}") from None
        if now.get("mixup") and now.get("no_mixup_epochs") is not None and \
                now["epochs"] - now["no_mixup_epochs"] <= 0:
            raise SystemExit(f"row '{name}': mixup would be on in no epoch")
        if prev is not None:
            diff = {k: (prev.get(k), v) for k, v in now.items() if prev.get(k) != v}
            if not diff:
                raise SystemExit(f"row '{name}' resolves to the same settings as the row above")
            out.append((name, diff))
        prev = now
    return out


def slug(name: str) -> str:
    return {"- data augmentation": "no_data_aug"}.get(name, name.strip("+ ").replace(" ", "_").lower())


def run_command(detector: str, flags, *, seed: int, save_dir: str, base_args=(), epochs=None, nproc: int = 1):
    """The training command of one (row, seed) as an argument list."""
    script = os.path.join(REPO, SCRIPTS[detector])
    launch = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)] if nproc > 1
              else [sys.executable])
    extra = ["--epochs", str(epochs)] if epochs else []
    return launch + [script, *_row_args(flags, base_args), *flags, *extra, "--seed", str(seed), "--save-prefix",
                     save_dir + os.sep]


def read_score(save_dir: str, score: str = "best"):
    """Best (or last) validation mAP in the run's ``*_history.json``; None if there is none."""
    files = sorted(glob.glob(os.path.join(save_dir, "*_history.json")))
    if not files:
        return None
    with open(files[0]) as f:
        vals = [h["val"]["mAP"] for h in json.load(f) if "mAP" in h.get("val", {})]
    if not vals:
        return None
    return float(max(vals) if score == "best" else vals[-1])


def summarize(rows, *, noise_factor: float = 2.0):
    """Table arithmetic. ``rows``: ``[(name, [mAP per seed] or None for n/a)]``. Returns the pooled
    std and one dict per row: mean, std (ddof 1), min, max, delta vs the previous row that ran,
    cumulative delta vs 'baseline', and whether |delta| exceeds ``noise_factor`` x pooled std."""
    variances = [np.var(v, ddof=1) for _, v in rows if v and len(v) > 1]
    pooled = float(math.sqrt(np.mean(variances))) if variances else float("nan")
    base = next((np.mean(v) for n, v in rows if n == "baseline" and v), float("nan"))
    out, prev = [], None
    for name, values in rows:
        if not values:
            out.append(dict(row=name, values=None))
            continue
        mean = float(np.mean(values))
        delta = None if prev is None else mean - prev
        out.append(dict(row=name, values=[float(v) for v in values], mean=mean,
                        std=float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                        min=float(min(values)), max=float(max(values)), delta=delta,
                        cumulative=None if name == "baseline" else float(mean - base),
                        beyond_noise=None if delta is None or math.isnan(pooled)
                        else bool(abs(delta) > noise_factor * pooled)))
        prev = mean
    return pooled, out


def markdown(stats, pooled, noise_factor, flags, header: str = "") -> str:
    f = lambda x: "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.2f}"  # noqa: E731
    lines = [header] if header else []
    lines += ["| row | flags | mAP per seed | mean | std | min-max | delta prev | delta baseline | beyond noise |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in stats:
        if s["values"] is None:
            lines.append(f"| {s['row']} | n/a (1 process) | | | | | | | |")
            continue
        fl = f"`{' '.join(flags[s['row']])}`" if flags.get(s["row"]) else "(none)"
        seeds = ", ".join(f"{100 * v:.2f}" for v in s["values"])
        lines.append(f"| {s['row']} | {fl} | {seeds} | {100 * s['mean']:.2f} | {f(s['std']).lstrip('+')} | "
                     f"{100 * s['min']:.2f}-{100 * s['max']:.2f} | {f(s['delta'])} | {f(s['cumulative'])} | "
                     f"{'-' if s['beyond_noise'] is None else ('yes' if s['beyond_noise'] else 'no')} |")
    lines.append(f"\nmAP in %; pooled seed std {f(pooled).lstrip('+')}; beyond noise: |delta prev| > "
                 f"{noise_factor:g} x pooled std.")
    return "\n".join(lines) + "\n"


def plot(stats, path: str) -> None:
    from gluon_bof.utils.viz import plt, save_figure

    fig, ax = plt.subplots(figsize=(1.3 * len(stats) + 2, 4))
    for i, s in enumerate(stats):
        if s["values"] is None:
            ax.text(i, 0.5, "n/a", ha="center", transform=ax.get_xaxis_transform(), color="tab:gray")
            continue
        ax.errorbar(i, 100 * s["mean"], yerr=0 if math.isnan(s["std"]) else 100 * s["std"], fmt="o", capsize=4,
                    color="tab:blue")
        ax.scatter([i] * len(s["values"]), [100 * v for v in s["values"]], s=12, color="tab:gray", zorder=3)
    ax.set_xticks(range(len(stats)), [s["row"] for s in stats], rotation=20, ha="right")
    ax.set_ylabel("mAP (%)")
    ax.set_title("incremental freebies: mean +- std over seeds")
    save_figure(fig, path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--detector", default="yolo3", choices=sorted(SCRIPTS),
                   help="yolo3 (the paper's Table 3) or frcnn (Table 4)")
    p.add_argument("--base-args", default="", help="flags passed to every run (network, data, shapes, lr ...)")
    p.add_argument("--epochs", type=int, default=None, help="--epochs of every run (default: the script's)")
    p.add_argument("--seeds", type=int, default=3, help="runs per row")
    p.add_argument("--first-seed", type=int, default=1, help="seeds are first-seed .. first-seed + seeds - 1")
    p.add_argument("--warmup-epochs", type=int, default=1, help="warmup of the '+ cosine' row onward")
    p.add_argument("--nproc", type=int, default=1, help="processes per run (torchrun)")
    p.add_argument("--syncbn-row", action="store_true", help="run the SyncBN row even with --nproc 1")
    p.add_argument("--score", default="best", choices=["best", "last"], help="validation mAP kept per run")
    p.add_argument("--noise-factor", type=float, default=2.0,
                   help="a delta is beyond noise when |delta| > this x the pooled seed std")
    p.add_argument("--out", default="runs/ablation",
                   help="output folder: one sub-folder per row and seed, ablation.{json,md,png}")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--resume-rows", action="store_true", help="skip runs whose result.json exists")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    base = shlex.split(args.base_args)
    clash = [t for t in base if t.split("=")[0] in MANAGED]
    if clash:
        raise SystemExit(f"--base-args sets {clash}, which the rows switch themselves")
    if args.epochs and args.warmup_epochs >= args.epochs:
        raise SystemExit(f"--warmup-epochs {args.warmup_epochs} leaves no cosine epochs of --epochs {args.epochs}")
    rows = rows_for(args.detector, warmup_epochs=args.warmup_epochs,
                    syncbn=args.detector == "yolo3" and (args.nproc > 1 or args.syncbn_row))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    for name, diff in check_rows(args.detector, rows, base, args.epochs):
        print(f"[{name}] changes: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in
                                                (((k,) + v) for k, v in sorted(diff.items()))))
    results, tic, run_seconds = [], time.time(), 0.0
    for name, flags in rows:
        if flags is None:
            print(f"[{name}] n/a (1 process): SyncBN needs --nproc > 1 (or --syncbn-row)")
            results.append((name, None))
            continue
        values = []
        for seed in seeds:
            save_dir = os.path.join(args.out, slug(name), f"seed{seed}")
            cmd = run_command(args.detector, flags, seed=seed, save_dir=save_dir, base_args=base,
                              epochs=args.epochs, nproc=args.nproc)
            result_file = os.path.join(save_dir, "result.json")
            if args.dry_run:
                print(shlex.join(cmd))
                continue
            if args.resume_rows and os.path.isfile(result_file):
                with open(result_file) as f:
                    kept = json.load(f)
                values.append(kept["mAP"])
                run_seconds += kept.get("seconds", 0.0)
                print(f"[{name}] seed {seed}: kept {values[-1]:.4f} ({result_file})")
                continue
            os.makedirs(save_dir, exist_ok=True)
            t0 = time.time()
            with open(os.path.join(save_dir, "train.out"), "w") as log:
                rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            score = read_score(save_dir, args.score) if rc == 0 else None
            if score is None:
                raise SystemExit(f"[{name}] seed {seed} failed (exit {rc}); see {save_dir}/train.out")
            with open(result_file, "w") as f:
                json.dump({"row": name, "seed": seed, "mAP": score, "seconds": time.time() - t0, "cmd": cmd}, f)
            values.append(score)
            run_seconds += time.time() - t0
            print(f"[{name}] seed {seed}: mAP {score:.4f} in {time.time() - t0:.0f} s", flush=True)
        results.append((name, values))
    if args.dry_run:
        return None
    pooled, stats = summarize(results, noise_factor=args.noise_factor)
    header = (f"{args.detector}, seeds {seeds}, {args.score} validation mAP per run, "
              f"every run: `{shlex.join(base + (['--epochs', str(args.epochs)] if args.epochs else []))}`\n")
    table = markdown(stats, pooled, args.noise_factor, dict(rows), header)
    print("\n" + table)
    with open(os.path.join(args.out, "ablation.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.out, "ablation.json"), "w") as f:
        json.dump({"detector": args.detector, "base_args": base, "seeds": seeds, "score": args.score,
                   "pooled_std": pooled, "rows": stats, "flags": dict(rows), "seconds": time.time() - tic,
                   "run_seconds": run_seconds}, f,
                  indent=1)
    plot(stats, os.path.join(args.out, "ablation.png"))
    return stats


if __name__ == "__main__":
    run_script(main)
